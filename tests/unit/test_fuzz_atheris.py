"""A short, bounded run of the atheris (libFuzzer) harness of the box unpacker,
tests/fuzz/fuzz_box_archive.py: it must finish its runs with no crash, hang or escape.
Longer campaigns: run the script itself (see its docstring). atheris is not a dependency
of vmctl; where it is not installed this test is skipped and says so."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

HARNESS = Path(__file__).resolve().parent.parent / "fuzz" / "fuzz_box_archive.py"


def test_atheris_box_archive_smoke_run(tmp_path: Path) -> None:
    pytest.importorskip("atheris", reason="pip install atheris to run the coverage-guided fuzzer")
    runs = int(os.environ.get("VMCTL_ATHERIS_RUNS", "1500"))
    proc = subprocess.run(
        [sys.executable, str(HARNESS), f"-runs={runs}", "-max_total_time=20", "-timeout=5",
         f"-artifact_prefix={tmp_path}/", "-print_final_stats=1"],
        env={**os.environ, "VMCTL_ATHERIS_INSTRUMENT": "vmctl", "VMCTL_ATHERIS_WORK": str(tmp_path / "work")},
        cwd=tmp_path,
        capture_output=True, text=True, timeout=120, check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Done" in proc.stderr and "stat::number_of_executed_units" in proc.stderr, proc.stderr[-2000:]
    executed = int(proc.stderr.split("stat::number_of_executed_units:")[1].split()[0])
    assert executed >= min(runs, 200)  # it really ran, not just started
    assert not list(tmp_path.glob("crash-*")) and not list(tmp_path.glob("timeout-*"))
