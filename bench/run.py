"""vmctl benchmarks: every figure side by side with a baseline measured in the same run.

    .venv/bin/python bench/run.py [--runs N] [--only NAME ...] [--home DIR] [--no-write]

Benchmarks (names for --only): up, cli, ssh, destroy, box-add, disk, vagrant, snapshot,
snapshot-coreos, package.
`destroy` is measured on the machines that the `up` benchmark brings up, so
`--only destroy` runs `up` too. `vagrant` runs vagrant + vagrant-libvirt against its own
libvirtd in a network and mount namespace (bench/vagrant.py). A full run writes
docs/performance.md with the machine it ran on; `--only` prints without writing unless
--write is given.

Every figure is the median of --runs runs (default 5); the subject and its baseline
alternate within each round, so slow phases of a noisy machine hit both alike. The
benchmarks use their own VMCTL_HOME (default /tmp/vmctl-bench-home) and a throwaway
project whose Vagrantfile disables the default /vagrant sync and has no provisioner;
one warm-up `up`/`destroy` first pays the one-time libvirt capabilities probe and KVM
probe, which are cached afterwards. Nothing is left running.
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import http.server
import json
import os
import platform
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
VENV_BIN = ROOT / ".venv" / "bin"
PYTHON = str(VENV_BIN / "python") if (VENV_BIN / "python").exists() else sys.executable
VMCTL = str(VENV_BIN / "vmctl") if (VENV_BIN / "vmctl").exists() else shutil.which("vmctl") or "vmctl"
BOX = "vmctl/tiny"
NAMES = ("up", "cli", "ssh", "destroy", "box-add", "disk", "vagrant", "snapshot", "snapshot-coreos", "package")

VAGRANTFILE = """\
Vagrant.configure("2") do |config|
  config.vm.box = "vmctl/tiny"
  config.vm.synced_folder ".", "/vagrant", disabled: true
end
"""

NOTES_MARKER = "<!-- analysis: kept when bench/run.py rewrites the figures above -->"
TIMING = re.compile(r"timing: (\S+): (.+?) (\d+) ms")
OPENED = re.compile(r"libvirt: (?:opened|worker for) \S+ (?:ready )?in (\d+) ms")


# --- results ---------------------------------------------------------------------------

@dataclass
class Row:
    name: str
    subject: str
    baseline: str
    subject_s: float | None
    baseline_s: float | None
    figure: str  # "1.23x", "+0.45 s", "3.1%"
    budget: str
    met: bool | None  # None: no budget / not measured
    note: str = ""


@dataclass
class Results:
    rows: list[Row] = field(default_factory=list)
    phases: dict[str, float] = field(default_factory=dict)  # median ms per `up` phase
    notes: list[str] = field(default_factory=list)
    samples: dict[str, list[float]] = field(default_factory=dict)
    load: list[float] = field(default_factory=list)  # 1-minute load average at each step

    def add(self, row: Row) -> None:
        self.rows.append(row)
        mark = {True: "met", False: "MISSED", None: "-"}[row.met]
        print(f"  {row.name}: {row.figure} (budget {row.budget}: {mark}; {fmt_s(row.subject_s)} "
              f"vs {fmt_s(row.baseline_s)}) {row.note}".rstrip(), flush=True)


def median(values: list[float]) -> float:
    return statistics.median(values)


def fmt_s(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f} s"


# --- processes -------------------------------------------------------------------------

def bench_env(home: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["VMCTL_HOME"] = str(home)
    env.pop("VMCTL_DEBUG", None)
    # An installed vmctl runs from compiled bytecode (pip compiles it); a checkout under
    # PYTHONDONTWRITEBYTECODE=1 would recompile every module on every start (~70 ms).
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env.pop("VMCTL_VAGRANTFILE", None)
    env["NO_COLOR"] = "1"
    return env


def timed(argv: list[str], *, env: dict[str, str], cwd: Path | None = None,
          check: bool = True, timeout: float = 600) -> tuple[float, subprocess.CompletedProcess[str]]:
    """Wall time of ARGV from start to exit, stdin closed."""
    start = time.perf_counter()
    proc = subprocess.run(argv, env=env, cwd=cwd, stdin=subprocess.DEVNULL, capture_output=True,
                          text=True, timeout=timeout, check=False)
    elapsed = time.perf_counter() - start
    if check and proc.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed ({proc.returncode}):\n{proc.stdout}{proc.stderr}")
    return elapsed, proc


def vmctl(*args: str, env: dict[str, str], cwd: Path | None = None, check: bool = True,
          timeout: float = 600) -> tuple[float, subprocess.CompletedProcess[str]]:
    return timed([VMCTL, *args], env=env, cwd=cwd, check=check, timeout=timeout)


def phase_timings(stderr: str) -> dict[str, float]:
    return {m.group(2): float(m.group(3)) for m in TIMING.finditer(stderr)}


def opens_ms(stderr: str) -> list[float]:
    return [float(x) for x in OPENED.findall(stderr)]


# --- the bench project and the box -----------------------------------------------------

@dataclass
class Setup:
    home: Path
    env: dict[str, str]
    project: Path
    box_dir: Path
    kernel: Path
    initrd: Path
    cmdline: str
    memory: int
    cpus: int


def prepare(home: Path, work: Path) -> Setup:
    env = bench_env(home)
    home.mkdir(parents=True, exist_ok=True)
    print(f"setup: VMCTL_HOME={home}; building/adding {BOX} (cached by recipe hash)...", flush=True)
    vmctl("box", "build", "tiny", "--add", env=env, cwd=ROOT, timeout=1800)
    project = work / "project"
    project.mkdir(parents=True, exist_ok=True)
    (project / "Vagrantfile").write_text(VAGRANTFILE)
    _, proc = vmctl("validate", "--json", env=env, cwd=project)
    data = json.loads(proc.stdout)
    m = data["machines"][0]
    lv = m.get("libvirt") or m.get("provider") or {}
    kernel = Path(_find(m, "kernel") or lv.get("kernel"))
    initrd = Path(_find(m, "initrd") or lv.get("initrd"))
    cmdline = _find(m, "cmd_line") or lv.get("cmd_line") or ""
    memory = int(_find(m, "memory") or 512)
    cpus = int(_find(m, "cpus") or 1)
    return Setup(home, env, project, kernel.parent, kernel, initrd, cmdline, memory, cpus)


def _find(data: object, key: str) -> object | None:
    """The first value named KEY anywhere in DATA (validate's JSON nests settings)."""
    if isinstance(data, dict):
        if data.get(key) not in (None, ""):
            return data[key]
        for value in data.values():
            found = _find(value, key)
            if found not in (None, ""):
                return found
    elif isinstance(data, list):
        for value in data:
            found = _find(value, key)
            if found not in (None, ""):
                return found
    return None


def ensure_destroyed(s: Setup) -> None:
    vmctl("destroy", "-f", env=s.env, cwd=s.project, check=False)


# --- the floor: plain QEMU to an SSH login ----------------------------------------------

def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def ssh_login(port: int, key_path: Path, deadline: float) -> float:
    """Log in with paramiko until it works (short back-off); the time it happened."""
    import logging

    import paramiko

    logging.getLogger("paramiko").addHandler(logging.NullHandler())
    logging.getLogger("paramiko").propagate = False
    pkey = paramiko.Ed25519Key.from_private_key_file(str(key_path))
    delay = 0.02
    while time.monotonic() < deadline:
        sock = None
        try:
            sock = socket.create_connection(("127.0.0.1", port), timeout=2.0)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            t = paramiko.Transport(sock)
            t.banner_timeout = 2.0
            try:
                t.start_client(timeout=10)
                t.auth_publickey("vagrant", pkey)
                if t.is_authenticated():
                    return time.perf_counter()
            finally:
                t.close()
        except (OSError, EOFError, paramiko.SSHException):
            if sock is not None:
                sock.close()
        time.sleep(delay)
        delay = min(delay * 2, 0.2)
    raise RuntimeError("plain QEMU: no SSH login before the deadline")


def floor_boot(s: Setup, work: Path) -> float:
    """Seconds from Popen of qemu-system-x86_64 to a successful SSH login."""
    from vmctl.ssh import insecure_key_dir

    overlay = work / "floor.qcow2"
    overlay.unlink(missing_ok=True)
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", "-F", "qcow2", "-b",
                    str(s.box_dir / "box.img"), str(overlay)], check=True)
    port = free_port()
    argv = [
        "qemu-system-x86_64", "-machine", "pc,accel=tcg", "-m", str(s.memory),
        "-smp", str(s.cpus), "-nodefaults", "-display", "none", "-no-user-config",
        "-serial", f"file:{work / 'floor-console.log'}",
        "-kernel", str(s.kernel), "-initrd", str(s.initrd), "-append", s.cmdline,
        "-drive", f"file={overlay},if=virtio,format=qcow2,discard=unmap",
        "-netdev", f"user,id=vmnet0,hostfwd=tcp:127.0.0.1:{port}-:22",
        "-device", "virtio-net-pci,netdev=vmnet0,addr=0x10",
        "-device", "virtio-rng-pci",
    ]  # fmt: skip
    start = time.perf_counter()
    qemu = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    try:
        done = ssh_login(port, insecure_key_dir() / "vagrant.key.ed25519", time.monotonic() + 120)
        return done - start
    finally:
        qemu.send_signal(signal.SIGKILL)
        qemu.wait()
        overlay.unlink(missing_ok=True)


# --- benchmarks ------------------------------------------------------------------------

def bench_up_and_destroy(s: Setup, work: Path, runs: int, r: Results, want: set[str]) -> None:
    print(f"up: {runs} rounds of plain QEMU (the floor) and vmctl up, then vmctl destroy -f", flush=True)
    floors, ups, destroys, phases, reaps = [], [], [], [], []
    reprobe_opens, all_opens = 0, 0
    for i in range(runs):
        ensure_destroyed(s)
        floor = floor_boot(s, work)
        up_s, proc = vmctl("--debug", "up", env=s.env, cwd=s.project)
        phases.append(phase_timings(proc.stderr))
        d_s, dproc = vmctl("--debug", "destroy", "-f", env=s.env, cwd=s.project)
        reaps.append(orphan_reap_latency())
        opens = opens_ms(proc.stderr) + opens_ms(dproc.stderr)
        all_opens += len(opens)
        reprobe_opens += sum(1 for o in opens if o > 1000)
        floors.append(floor)
        ups.append(up_s)
        destroys.append(d_s)
        print(f"  round {i + 1}: floor {floor:.2f} s, vmctl up {up_s:.2f} s "
              f"(+{up_s - floor:.2f} s), destroy {d_s:.2f} s, init reaped a killed orphan in {reaps[-1]:.2f} s",
              flush=True)
    r.samples.update({"floor": floors, "up": ups, "destroy": destroys, "orphan reaped": reaps})
    if "up" in want:
        diffs = [u - f for u, f in zip(ups, floors, strict=True)]
        diff = median(diffs)
        r.add(Row("up overhead", "vmctl up", "plain QEMU to SSH login", median(ups), median(floors),
                  f"+{diff:.2f} s", "<= +1.5 s", diff <= 1.5,
                  note=f"(median of per-round differences; {reprobe_opens} of {all_opens} libvirt opens re-probed QEMU)"))
        keys = [k for k in phases[0] if k != "total"] + ["total"]
        r.phases = {k: median([p.get(k, 0.0) for p in phases]) for k in keys}
        print("  phases (median ms): " + ", ".join(f"{k} {v:.0f}" for k, v in r.phases.items()), flush=True)
    if "destroy" in want:
        d = median(destroys)
        own = median([x - y for x, y in zip(destroys, reaps, strict=True)])
        r.add(Row("destroy -f (running)", "vmctl destroy -f", "init reaps a killed orphan", d, median(reaps),
                  f"{d:.2f} s", "< 2 s", d < 2.0,
                  note=f"(libvirt waits until the killed QEMU is reaped by the host's init; less that wait, "
                  f"a median {own:.2f} s)"))


def orphan_reap_latency() -> float:
    """How long this host's init takes to reap a killed orphan (a daemonized `sleep`, as
    QEMU is daemonized): libvirt's destroy cannot finish before the killed QEMU is reaped."""
    read_end, write_end = os.pipe()
    child = os.fork()
    if child == 0:  # pragma: no cover - the intermediate process
        grandchild = subprocess.Popen(["sleep", "60"], start_new_session=True)
        os.write(write_end, str(grandchild.pid).encode())
        os._exit(0)
    os.waitpid(child, 0)
    pid = int(os.read(read_end, 32))
    os.close(read_end)
    os.close(write_end)
    time.sleep(0.2)
    start = time.perf_counter()
    os.kill(pid, signal.SIGKILL)
    while os.path.exists(f"/proc/{pid}") and time.perf_counter() - start < 30:
        time.sleep(0.002)
    return time.perf_counter() - start


def bench_cli(s: Setup, runs: int, r: Results) -> None:
    n = max(runs, 10)
    print(f"cli: {n} rounds of python -c pass, vmctl --version, vmctl status, ssh-config, port "
          "(running machine)", flush=True)
    ensure_destroyed(s)
    vmctl("up", env=s.env, cwd=s.project)
    try:
        base, ver, st, cfg, prt, slow = [], [], [], [], [], 0
        for _ in range(n):
            base.append(timed([PYTHON, "-c", "pass"], env=s.env)[0])
            ver.append(vmctl("--version", env=s.env, cwd=s.project)[0])
            t, proc = vmctl("--debug", "status", env=s.env, cwd=s.project)
            assert "running" in proc.stdout, proc.stdout
            slow += any(o > 1000 for o in opens_ms(proc.stderr))
            st.append(t)
            cfg.append(vmctl("ssh-config", env=s.env, cwd=s.project)[0])
            prt.append(vmctl("port", env=s.env, cwd=s.project)[0])
        profiles = {cmd: import_profile(cmd, s) for cmd in ("--version", "status", "ssh-config")}
    finally:
        ensure_destroyed(s)
    b = median(base)
    r.samples.update({"python -c pass": base, "--version": ver, "status": st, "ssh-config": cfg,
                      "port": prt})
    r.add(Row("CLI start-up: --version", "vmctl --version", "python3 -c pass", median(ver), b,
              f"{median(ver) / b:.1f}x", "< 5x", median(ver) / b < 5))
    r.add(Row("CLI start-up: status", "vmctl status (1 running)", "python3 -c pass", median(st), b,
              f"{median(st) / b:.1f}x", "< 8x", median(st) / b < 8,
              note=f"({slow} of {n} runs hit libvirt's QEMU re-probe)"))
    r.add(Row("CLI start-up: ssh-config", "vmctl ssh-config", "python3 -c pass", median(cfg), b,
              f"{median(cfg) / b:.1f}x", "< 8x", median(cfg) / b < 8))
    r.add(Row("CLI start-up: port", "vmctl port", "python3 -c pass", median(prt), b,
              f"{median(prt) / b:.1f}x", "< 8x", median(prt) / b < 8))
    for cmd, (count, top) in profiles.items():
        r.notes.append(f"`vmctl {cmd}` imports {count} modules; the costliest (python -X importtime, "
                       f"cumulative): " + ", ".join(f"{m} {ms:.0f} ms" for m, ms in top))


def import_profile(command: str, s: Setup) -> tuple[int, list[tuple[str, float]]]:
    """How many modules `vmctl COMMAND` imports, and the five costliest top-level imports
    (cumulative time, from python -X importtime)."""
    _, proc = timed([PYTHON, "-X", "importtime", "-m", "vmctl", command], env=s.env, cwd=s.project)
    rows = []
    for line in proc.stderr.splitlines():
        m = re.match(r"import time:\s+(\d+) \|\s+(\d+) \|( *)(\S+)", line)
        if m:
            rows.append((m.group(4), int(m.group(2)) / 1000, len(m.group(3))))
    top = sorted(((name, ms) for name, ms, depth in rows if depth == 1), key=lambda x: -x[1])[:5]
    return len(rows), top


def bench_ssh(s: Setup, runs: int, r: Results) -> None:
    n = max(runs, 10)
    print(f"ssh: {n} rounds of vmctl ssh -c true and ssh -F <(vmctl ssh-config) default true", flush=True)
    ensure_destroyed(s)
    vmctl("up", env=s.env, cwd=s.project)
    try:
        cfg = s.project / "ssh-config"
        cfg.write_text(vmctl("ssh-config", env=s.env, cwd=s.project)[1].stdout)
        ssh = shutil.which("ssh") or "ssh"
        # On a loaded host the tiny box may refuse the first logins for a few seconds after
        # `up` returns (docs/performance.md): wait for one, and say how long it took.
        waited = time.monotonic()
        while timed([ssh, "-F", str(cfg), "default", "true"], env=s.env, check=False)[1].returncode != 0:
            if time.monotonic() - waited > 60:
                raise RuntimeError("no OpenSSH login within 60 s of up")
            time.sleep(0.5)
        waited = time.monotonic() - waited
        ours, base = [], []
        for _ in range(n):
            ours.append(vmctl("ssh", "-c", "true", env=s.env, cwd=s.project)[0])
            base.append(timed([ssh, "-F", str(cfg), "default", "true"], env=s.env)[0])
    finally:
        ensure_destroyed(s)
    o, b = median(ours), median(base)
    r.samples.update({"vmctl ssh -c true": ours, "ssh -F": base})
    r.add(Row("command latency", "vmctl ssh -c true", "ssh -F CONFIG default true", o, b,
              f"{o / b:.2f}x", "<= 1.2x", o / b <= 1.2,
              note=f"(the config is written once, before timing; the first login worked {waited:.1f} s after up)"))


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - stdlib signature
        pass


BOX_ADD_RECIPES = ("tiny", "coreos-like")  # the two boxes vmctl ships: 42 MiB and 172 MiB


def bench_box_add(s: Setup, work: Path, runs: int, r: Results) -> None:
    for recipe in BOX_ADD_RECIPES:
        _bench_box_add(s, work, runs, r, recipe)


def _bench_box_add(s: Setup, work: Path, runs: int, r: Results, recipe: str) -> None:
    out = work / f"built-{recipe}"
    vmctl("box", "build", recipe, "--output", str(out), env=s.env, cwd=ROOT, timeout=3600)
    box_file = next(out.glob("*.box"))
    digest = hashlib.sha256(box_file.read_bytes()).hexdigest()
    size = box_file.stat().st_size
    print(f"box-add: {runs} rounds of vmctl box add and curl -o + sha256sum of the {recipe} box "
          f"({size / 2**20:.1f} MiB over HTTP on 127.0.0.1)", flush=True)

    def handler(*args: object, **kwargs: object) -> _QuietHandler:
        return _QuietHandler(*args, directory=str(out), **kwargs)  # type: ignore[arg-type]

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)  # type: ignore[arg-type]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{server.server_address[1]}/{box_file.name}"
    curl = shutil.which("curl") or "curl"
    ours, base = [], []
    try:
        for i in range(runs):
            fresh = work / f"box-home-{i}"
            env = {**s.env, "VMCTL_HOME": str(fresh)}
            ours.append(vmctl("box", "add", url, "--name", f"bench/{recipe}", "--checksum", digest,
                              env=env, cwd=work)[0])
            shutil.rmtree(fresh, ignore_errors=True)
            dest = work / "curl.box"
            start = time.perf_counter()
            subprocess.run([curl, "-sSf", "-o", str(dest), url], check=True)
            summed = subprocess.run(["sha256sum", str(dest)], check=True, capture_output=True, text=True)
            base.append(time.perf_counter() - start)
            assert summed.stdout.split()[0] == digest
            dest.unlink()
    finally:
        server.shutdown()
        server.server_close()
        shutil.rmtree(out, ignore_errors=True)
    o, b = median(ours), median(base)
    r.samples.update({f"box add {recipe}": ours, f"curl + sha256sum {recipe}": base})
    r.add(Row(f"box add: {recipe} ({size / 2**20:.0f} MiB, local HTTP)", "vmctl box add URL --checksum",
              "curl -o + sha256sum", o, b, f"{o / b:.2f}x", "<= 1.0x", o <= b,
              note="(vmctl also unpacks, checks and syncs the box; curl only downloads and hashes)"))


def bench_disk(s: Setup, work: Path, r: Results) -> None:
    """Ten overlays made by vmctl.machine.disks.ensure, the code path `vmctl up` uses."""
    os.environ["VMCTL_HOME"] = str(s.home)
    from vmctl.boxes.store import find_box
    from vmctl.machine.disks import MachineDisk, ensure
    from vmctl.run import run

    box = find_box(BOX)
    assert box is not None, "the tiny box is not installed"
    disks = work / "disks"
    disks.mkdir(exist_ok=True)
    allocated = 0
    for i in range(10):
        disk = disks / f"disk-{i}.qcow2"
        disk.unlink(missing_ok=True)
        ensure(MachineDisk(role="box", name="box", path=str(disk), format="qcow2", source=str(box.image),
                           source_format=box.image_format), run=run)
        allocated += disk.stat().st_blocks * 512
    image = Path(box.image)
    image_size = image.stat().st_size
    image_alloc = image.stat().st_blocks * 512
    shutil.rmtree(disks)
    share = allocated / image_size
    print(f"disk: ten overlays allocate {allocated} bytes; box.img is {image_size} bytes "
          f"({image_alloc} allocated)", flush=True)
    r.add(Row("disk: 10 overlays before boot", f"{allocated / 1024:.0f} KiB allocated",
              f"box.img {image_size / 2**20:.1f} MiB", None, None, f"{share * 100:.2f}%", "< 10%",
              share < 0.10, note="(st_blocks * 512, summed over the ten overlays)"))


def bench_vagrant(s: Setup, work: Path, runs: int, r: Results) -> None:
    """vagrant + vagrant-libvirt against vmctl on the same box, rounds alternating (bench/vagrant.py)."""
    import vagrant  # bench/vagrant.py, beside this script

    lacking = vagrant.missing()
    if lacking:
        what = "not installed" if lacking == "vagrant" else f"{lacking} not installed"
        print(f"vagrant: {what}, skipped", flush=True)
        r.notes.append(f"vagrant: {what}, skipped (up, ssh -c true, status and destroy "
                       "against vagrant-libvirt were not measured)")
        return
    os.environ["VMCTL_HOME"] = str(s.home)
    from vmctl.hypervisor import kvm_works

    # The accelerator vmctl picks (TCG where KVM does not really work), so both run the guest alike.
    driver = "kvm" if kvm_works(s.kernel) else "qemu"
    out = work / "built-vagrant"
    vmctl("box", "build", "tiny", "--output", str(out), env=s.env, cwd=ROOT, timeout=1800)
    print(f"vagrant: {runs} rounds of vagrant and vmctl {', '.join(vagrant.OPERATIONS)} on {BOX}, "
          "after one warm-up round of each", flush=True)

    def run_vmctl(*args: str) -> tuple[float, str]:
        seconds, proc = vmctl(*args, env=s.env, cwd=s.project)
        return seconds, proc.stdout

    ensure_destroyed(s)
    try:
        samples = vagrant.side_by_side(next(out.glob("*.box")), run_vmctl, runs, driver, s.memory,
                                       s.cpus)
    finally:
        ensure_destroyed(s)
        shutil.rmtree(out, ignore_errors=True)
    for op, (theirs, ours) in samples.items():
        v, o = median(theirs), median(ours)
        r.samples.update({f"vagrant {op}": theirs, f"vmctl {op} (beside vagrant)": ours})
        r.add(Row(f"vagrant {op} / vmctl {op}", f"vagrant {op}", f"vmctl {op}", v, o, f"{v / o:.1f}x",
                  "-", None))
    r.notes.append(f"vagrant: vagrant and vagrant-libvirt with `libvirt.driver = \"{driver}\"`, the memory "
                   "and CPUs vmctl gives the box and vagrant-libvirt's other defaults (VNC display, NAT "
                   "management network), against their own libvirtd in a network and mount namespace")


# --- snapshots (issue 13) -------------------------------------------------------------------

COREOS_VAGRANTFILE = """\
Vagrant.configure("2") do |config|
  config.vm.box = "vmctl/coreos-like"
  config.vm.synced_folder ".", "/vagrant", disabled: true
  config.vm.provision "shell", inline: "systemctl start etcd && etcdctl put bench ready"
end
"""
ETCD_READY = "etcdctl get bench --print-value-only | grep -qx ready"


def _until_ok(argv: list[str], *, env: dict[str, str], cwd: Path, deadline: float) -> float:
    """Run ARGV until it exits 0; the time it did."""
    while time.monotonic() < deadline:
        proc = subprocess.run(argv, env=env, cwd=cwd, stdin=subprocess.DEVNULL, capture_output=True, check=False)
        if proc.returncode == 0:
            return time.perf_counter()
        time.sleep(0.05)
    raise RuntimeError(f"{' '.join(argv)} never succeeded")


def bench_snapshot(s: Setup, work: Path, runs: int, r: Results, box: str) -> None:
    """Restore of a running snapshot until the guest answers (`vmctl ssh -c true`, or etcd
    for the coreos-like box) against a fresh `vmctl up` until the same; `snapshot save` of
    the running machine against dd writing its memory size to the same disk (synced, as
    the saved state is). Rounds alternate subject and baseline."""
    recipe = "tiny" if box == "tiny" else "coreos-like"
    project = work / f"snapshot-{recipe}"
    project.mkdir(exist_ok=True)
    if recipe == "tiny":
        (project / "Vagrantfile").write_text(VAGRANTFILE)
        probe = [VMCTL, "ssh", "-c", "true"]
    else:
        vmctl("box", "build", "coreos-like", "--add", env=s.env, cwd=ROOT, timeout=3600)
        (project / "Vagrantfile").write_text(COREOS_VAGRANTFILE)
        probe = [VMCTL, "ssh", "-c", ETCD_READY]
    memory = int(_find(json.loads(vmctl("validate", "--json", env=s.env, cwd=project)[1].stdout), "memory") or 512)
    print(f"snapshot ({recipe}): {runs} rounds of a fresh up and a restore of a running snapshot until "
          f"`{' '.join(probe[1:])}` answers; save of the running machine against dd of {memory} MiB", flush=True)
    ups, restores, saves, dds, states = [], [], [], [], []
    try:
        for i in range(runs):
            vmctl("destroy", "-f", env=s.env, cwd=project, check=False)
            start = time.perf_counter()
            vmctl("up", env=s.env, cwd=project, timeout=900)
            ups.append(_until_ok(probe, env=s.env, cwd=project, deadline=time.monotonic() + 300) - start)
            state = json.loads((project / ".vmctl/machines/default/state.json").read_text())
            folder = s.home / "machines" / state["id"] / "snapshots"
            folder.mkdir(exist_ok=True)
            saved, _ = vmctl("snapshot", "save", "base", env=s.env, cwd=project)
            saves.append(saved)
            target = folder / "dd.bench"
            start = time.perf_counter()
            subprocess.run(["dd", "if=/dev/zero", f"of={target}", "bs=1M", f"count={memory}", "conv=fdatasync"],
                           check=True, capture_output=True)
            dds.append(time.perf_counter() - start)
            target.unlink()
            states.append(sum(p.stat().st_size for p in folder.glob("*.vmstate")))
            vmctl("ssh", "-c", "rm -rf /tmp/* 2>/dev/null; echo changed > ~/changed", env=s.env, cwd=project)
            start = time.perf_counter()
            vmctl("snapshot", "restore", "base", env=s.env, cwd=project)
            restores.append(_until_ok(probe, env=s.env, cwd=project, deadline=time.monotonic() + 300) - start)
            print(f"  round {i + 1}: up {ups[-1]:.2f} s, restore {restores[-1]:.2f} s "
                  f"({restores[-1] / ups[-1]:.2f}x); save {saves[-1]:.2f} s, dd {dds[-1]:.2f} s "
                  f"({saves[-1] / dds[-1]:.2f}x; state {states[-1] / 2**20:.0f} MiB)", flush=True)
    finally:
        vmctl("destroy", "-f", env=s.env, cwd=project, check=False)
    u, rs, sv, dd = median(ups), median(restores), median(saves), median(dds)
    what = "etcd answers" if recipe != "tiny" else "ssh -c true answers"
    r.samples.update({f"up until {what} ({recipe})": ups, f"restore until {what} ({recipe})": restores,
                      f"snapshot save ({recipe})": saves, f"dd {memory} MiB ({recipe})": dds})
    r.add(Row(f"snapshot restore ({recipe}, running)", f"snapshot restore until {what}",
              f"fresh vmctl up until {what}", rs, u, f"{rs / u:.2f}x", "<= 0.3x", rs / u <= 0.3,
              note=f"(median of {runs}; per-round ratios {', '.join(f'{a / b:.2f}' for a, b in zip(restores, ups, strict=True))})"))
    r.add(Row(f"snapshot save ({recipe}, running, {memory} MiB)", "vmctl snapshot save",
              f"dd of {memory} MiB, fdatasync, same disk", sv, dd, f"{sv / dd:.2f}x", "<= 1.5x", sv / dd <= 1.5,
              note=f"(the machine's state file: a median {median(states) / 2**20:.0f} MiB; QEMU writes no "
              "page of zeros)"))


def bench_package(s: Setup, work: Path, runs: int, r: Results) -> None:
    """`vmctl package` of a stopped machine of the tiny box (after 64 MiB of random data and
    64 MiB of text were written in it) against what vagrant-libvirt's package does with the
    same overlay: `qemu-img convert -O qcow2 -c`, then `tar -czf` of the same members."""
    project = work / "package"
    project.mkdir(exist_ok=True)
    (project / "Vagrantfile").write_text(VAGRANTFILE)
    out = work / "package-out"
    out.mkdir(exist_ok=True)
    print(f"package: {runs} rounds of vmctl package of a stopped machine against qemu-img convert -c + tar -czf",
          flush=True)
    subjects, baselines, sizes = [], [], []
    try:
        vmctl("up", env=s.env, cwd=project, timeout=900)
        vmctl("ssh", "-c", "head -c 64M /dev/urandom > ~/random && yes 'a line of text' | head -c 64M > ~/text"
              " && sync", env=s.env, cwd=project, timeout=600)
        vmctl("halt", env=s.env, cwd=project, timeout=600)
        state = json.loads((project / ".vmctl/machines/default/state.json").read_text())
        overlay = state["disks"][0]["path"] if state.get("disks") else state["disk"]
        for i in range(runs):
            box = out / "vmctl.box"
            elapsed, _ = vmctl("package", "--output", str(box), env=s.env, cwd=project, timeout=1800)
            subjects.append(elapsed)
            sizes.append(box.stat().st_size)
            box.unlink()
            stage = out / "stage"
            stage.mkdir()
            start = time.perf_counter()
            subprocess.run(["qemu-img", "convert", "-O", "qcow2", "-c", overlay, str(stage / "box.img")],
                           check=True, capture_output=True)
            (stage / "metadata.json").write_text('{"provider": "libvirt", "format": "qcow2", "virtual_size": 1}\n')
            (stage / "Vagrantfile").write_text('Vagrant.configure("2") do |config|\nend\n')
            shutil.copy(s.kernel, stage / "vmlinuz")
            shutil.copy(s.initrd, stage / "initrd.img")
            subprocess.run(["tar", "-C", str(stage), "-czf", str(out / "baseline.box"), "box.img", "metadata.json",
                            "Vagrantfile", "vmlinuz", "initrd.img"], check=True, capture_output=True)
            baselines.append(time.perf_counter() - start)
            (out / "baseline.box").unlink()
            shutil.rmtree(stage)
            print(f"  round {i + 1}: vmctl package {subjects[-1]:.2f} s, baseline {baselines[-1]:.2f} s "
                  f"({subjects[-1] / baselines[-1]:.2f}x)", flush=True)
    finally:
        vmctl("destroy", "-f", env=s.env, cwd=project, check=False)
        shutil.rmtree(out, ignore_errors=True)
    sub, base = median(subjects), median(baselines)
    r.samples.update({"vmctl package (stopped tiny machine)": subjects, "qemu-img convert -c + tar -czf": baselines})
    r.add(Row("package (stopped machine)", "vmctl package", "qemu-img convert -c + tar -czf", sub, base,
              f"{sub / base:.2f}x", "<= 1.5x", sub / base <= 1.5,
              note=f"(median of {runs}; a {median(sizes) / 2**20:.0f} MiB box; the machine holds 64 MiB of "
              "random data and 64 MiB of text)"))


# --- the machine it ran on -------------------------------------------------------------

def machine_info(home: Path) -> dict[str, str]:
    def first_line(argv: list[str]) -> str:
        try:
            return subprocess.run(argv, capture_output=True, text=True, check=False).stdout.splitlines()[0]
        except (OSError, IndexError):
            return "?"

    cpu = "?"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    mem = "?"
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal"):
            mem = f"{int(line.split()[1]) / 2**20:.1f} GiB"
    try:
        import libvirt

        v = libvirt.getVersion()
        lv = f"{v // 1000000}.{v // 1000 % 1000}.{v % 1000}"
    except Exception:  # noqa: BLE001 - only for the report
        lv = "?"
    accel = "?"
    try:
        probe = json.loads((home / "kvm-probe.json").read_text())
        accel = "KVM" if probe.get("works") else "TCG (KVM probed and not usable)"
    except (OSError, ValueError):
        pass
    if os.environ.get("VMCTL_KVM") in ("0", "1"):
        accel = "KVM (forced)" if os.environ["VMCTL_KVM"] == "1" else "TCG (forced)"
    commit = first_line(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"])
    return {
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "cpu": cpu,
        "cores": str(os.cpu_count()),
        "memory": mem,
        "kernel": platform.release(),
        "os": first_line(["sh", "-c", ". /etc/os-release && echo $PRETTY_NAME"]),
        "qemu": first_line(["qemu-system-x86_64", "--version"]),
        "libvirt": lv,
        "accel": accel,
        "python": platform.python_version(),
        "vmctl": f"{first_line([VMCTL, '--version'])} (git {commit})",
        "openssh": subprocess.run(["ssh", "-V"], capture_output=True, text=True, check=False).stderr.strip(),
    }


# --- report ----------------------------------------------------------------------------

def render_markdown(r: Results, info: dict[str, str], runs: int) -> str:
    lines = [
        "# Performance",
        "",
        "Measured by `bench/run.py` (`.venv/bin/python bench/run.py [--runs N] [--only NAME]`).",
        "Every figure is a median of the runs below, measured side by side with its baseline in",
        "the same run (subject and baseline alternate within each round). This file is written",
        "by the script; run it again to refresh it.",
        "",
        "## The machine",
        "",
        "| | |",
        "|---|---|",
        f"| date | {info['date']} |",
        f"| CPU | {info['cpu']} |",
        f"| cores | {info['cores']} |",
        f"| memory | {info['memory']} |",
        f"| OS, kernel | {info['os']}, {info['kernel']} |",
        f"| QEMU | {info['qemu']} |",
        f"| libvirt | {info['libvirt']} (embedded driver `qemu:///embed`) |",
        f"| guests run under | {info['accel']} |",
        f"| Python | {info['python']} |",
        f"| OpenSSH | {info['openssh']} |",
        f"| vmctl | {info['vmctl']} |",
        f"| runs per figure | {runs} (10 at least for the short commands) |",
        f"| 1-minute load average during the run | {', '.join(f'{x:.1f}' for x in r.load)} "
        "(other work on this machine; the subject and its baseline share it) |",
        "",
        "A warm-up `vmctl up` and `vmctl destroy -f` ran first in the benchmark's VMCTL_HOME, so",
        "libvirt's QEMU capabilities probe and vmctl's KVM probe (about 4 s each, once per",
        "VMCTL_HOME) are not in the figures.",
        "",
        "## Results",
        "",
        "| benchmark | subject | baseline | subject (median) | baseline (median) | figure | budget | met |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for row in r.rows:
        met = {True: "yes", False: "**no**", None: "-"}[row.met]
        lines.append(f"| {row.name} | {row.subject} | {row.baseline} | {fmt_s(row.subject_s)} | "
                     f"{fmt_s(row.baseline_s)} | {row.figure} | {row.budget} | {met} |")
    notes = [row for row in r.rows if row.note]
    if notes or r.notes:
        lines.append("")
        for row in notes:
            lines.append(f"- {row.name}: {row.note.strip('()')}.")
        for note in r.notes:
            lines.append(f"- {note}.")
    if r.phases:
        lines += ["", "## Where `vmctl up` spends its time", "",
                  "Median of the `--debug` phase timings (`timing: default: PHASE N ms`):", "",
                  "| phase | median |", "|---|---|"]
        lines += [f"| {k} | {v:.0f} ms |" for k, v in r.phases.items()]
    if r.samples:
        lines += ["", "## Raw samples (seconds)", ""]
        for k, v in r.samples.items():
            lines.append(f"- {k}: " + ", ".join(f"{x:.3f}" for x in v))
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=5, help="runs per figure (median; at least 5)")
    ap.add_argument("--only", action="append", choices=NAMES, help="run only this benchmark (repeatable)")
    ap.add_argument("--home", type=Path, default=Path("/tmp/vmctl-bench-home"), help="VMCTL_HOME to use")
    ap.add_argument("--write", action="store_true", help="write docs/performance.md even with --only")
    ap.add_argument("--no-write", action="store_true", help="do not write docs/performance.md")
    ap.add_argument("--output", type=Path, default=ROOT / "docs" / "performance.md")
    args = ap.parse_args(argv)
    if args.runs < 5:
        ap.error("--runs must be at least 5 (medians of fewer runs are noise here)")
    want = set(args.only or NAMES)
    r = Results()
    work = Path(tempfile.mkdtemp(prefix="vmctl-bench-"))
    s = prepare(args.home, work)
    steps: list[tuple[set[str], Callable[[], None]]] = [
        ({"up", "destroy"}, lambda: bench_up_and_destroy(s, work, args.runs, r, want)),
        ({"cli"}, lambda: bench_cli(s, args.runs, r)),
        ({"ssh"}, lambda: bench_ssh(s, args.runs, r)),
        ({"box-add"}, lambda: bench_box_add(s, work, args.runs, r)),
        ({"disk"}, lambda: bench_disk(s, work, r)),
        ({"vagrant"}, lambda: bench_vagrant(s, work, args.runs, r)),
        ({"snapshot"}, lambda: bench_snapshot(s, work, args.runs, r, "tiny")),
        ({"snapshot-coreos"}, lambda: bench_snapshot(s, work, args.runs, r, "coreos-like")),
        ({"package"}, lambda: bench_package(s, work, args.runs, r)),
    ]
    try:
        if want & {"up", "destroy", "cli", "ssh", "snapshot", "snapshot-coreos", "package"}:
            print("warm-up: one vmctl up and destroy (libvirt capabilities, KVM probe)", flush=True)
            ensure_destroyed(s)
            vmctl("up", env=s.env, cwd=s.project)
            ensure_destroyed(s)
        for names, step in steps:
            if want & names:
                r.load.append(os.getloadavg()[0])
                step()
        r.load.append(os.getloadavg()[0])
    finally:
        ensure_destroyed(s)
        shutil.rmtree(work, ignore_errors=True)
    print()
    for row in r.rows:
        met = {True: "met", False: "MISSED", None: "-"}[row.met]
        print(f"{row.name:32} {row.figure:>10}  budget {row.budget:10} {met}")
    for note in r.notes:
        print(note)
    if not args.no_write and (args.only is None or args.write):
        # Hand-written analysis below the marker survives a refresh of the figures.
        kept = ""
        if args.output.exists():
            old = args.output.read_text()
            if NOTES_MARKER in old:
                kept = "\n" + old[old.index(NOTES_MARKER):]
        args.output.write_text(render_markdown(r, machine_info(args.home), args.runs) + kept)
        print(f"wrote {args.output}")
    return 0 if all(row.met is not False for row in r.rows) else 1


if __name__ == "__main__":
    sys.exit(main())
