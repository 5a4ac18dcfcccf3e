"""`snapshot save` of one running machine by two vmctl builds in alternation, each save
followed by dd of the machine's memory size (fdatasync) into its snapshots folder, as
bench/run.py's snapshot benchmark measures it. On a shared, loaded host the two builds then
meet the same load, which separate bench runs minutes apart do not.

    .venv/bin/python bench/save_ab.py --project DIR --home VMCTL_HOME \\
        --vmctl main=/work/main/.venv/bin/vmctl --vmctl branch=.venv/bin/vmctl [--rounds 10]

The machine in DIR must be up (any box); each round takes and deletes a snapshot `ab`.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import time
from pathlib import Path


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--project", type=Path, required=True)
    ap.add_argument("--home", type=Path, required=True, help="the VMCTL_HOME the machine lives in")
    ap.add_argument("--vmctl", action="append", required=True, metavar="NAME=PATH")
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--memory", type=int, default=512, help="MiB dd writes")
    args = ap.parse_args()
    builds = dict(v.split("=", 1) for v in args.vmctl)
    env = {**os.environ, "VMCTL_HOME": str(args.home), "NO_COLOR": "1"}
    env.pop("PYTHONDONTWRITEBYTECODE", None)  # as an installed vmctl runs
    state = json.loads((args.project / ".vmctl/machines/default/state.json").read_text())
    folder = args.home / "machines" / state["id"] / "snapshots"
    folder.mkdir(exist_ok=True)
    saves: dict[str, list[float]] = {k: [] for k in builds}
    dds: dict[str, list[float]] = {k: [] for k in builds}
    for i in range(args.rounds):
        for name in list(builds) if i % 2 == 0 else list(reversed(builds)):
            run = [builds[name], "snapshot"]
            start = time.perf_counter()
            subprocess.run([*run, "save", "ab"], env=env, cwd=args.project, check=True, capture_output=True)
            saves[name].append(time.perf_counter() - start)
            start = time.perf_counter()
            subprocess.run(["dd", "if=/dev/zero", f"of={folder / 'dd.bench'}", "bs=1M", f"count={args.memory}",
                            "conv=fdatasync"], check=True, capture_output=True)
            dds[name].append(time.perf_counter() - start)
            (folder / "dd.bench").unlink()
            subprocess.run([*run, "delete", "ab"], env=env, cwd=args.project, check=True, capture_output=True)
            print(f"round {i + 1} {name}: save {saves[name][-1]:.3f} s, dd {dds[name][-1]:.3f} s, "
                  f"load {os.getloadavg()[0]:.1f}", flush=True)
    for name in builds:
        s, d = statistics.median(saves[name]), statistics.median(dds[name])
        print(f"{name}: median save {s:.3f} s, median dd {d:.3f} s ({s / d:.2f}x)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
