"""`vmctl ssh`'s fast path (vmctl/cli/fast_ssh.py): the same OpenSSH command as the full
path for the same project and state, a fall-back to the full path whenever one check does
not pass, and none of the machine layer, typer or rich imported on the way."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from vmctl.cli import fast_ssh

ROOT = Path(__file__).resolve().parents[2]
ONE = 'Vagrant.configure("2") do |config|\n  config.vm.box = "vmctl/tiny"\n{extra}end\n'
PIN = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFakeFakeFakeFakeFakeFakeFakeFakeFakeFakeFake"


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "proj"
    folder.mkdir()
    (folder / "Vagrantfile").write_text(ONE.format(extra=""))
    monkeypatch.chdir(folder)
    monkeypatch.setenv("VMCTL_HOME", str(tmp_path / "home"))
    for name in list(os.environ):
        if name.startswith(("VAGRANT_", "VMCTL_")) and name != "VMCTL_HOME":
            monkeypatch.delenv(name)
    return folder


def created(folder: Path, name: str = "default", *, uri: str = "qemu:///session", key_inserted: bool = True,
            pin: bool = True, edit: Callable[[dict[str, Any]], None] | None = None) -> Path:
    """Machine NAME of FOLDER's project as `up` leaves it (state.json, index entry, machine
    key, pinned host key); EDIT changes the state's JSON first. Returns its state folder."""
    from vmctl import paths
    from vmctl.state import IndexEntry, index_lock, load_index, save_index

    machine_id = hashlib.sha256(f"{folder}/{name}".encode()).hexdigest()[:12]
    home = paths.machines_dir() / machine_id
    domain = f"vmctl-proj-{name}-{machine_id[:6]}"
    state = {"id": machine_id, "domain": domain, "uri": uri, "disk": str(home / "disk.qcow2"),
             "console_log": str(home / "console.log"), "ssh_port": 2222, "ssh_user": "vagrant",
             "forwards": [{"id": None, "guest": 80, "host": 8080, "host_ip": "127.0.0.1", "protocol": "tcp"}],
             "key_inserted": key_inserted, "phase": "created",
             "disks": [{"role": "box", "name": "box", "path": str(home / "disk.qcow2"), "target": "vda"}]}
    if edit is not None:
        edit(state)
    state_dir = paths.machine_state_dir(folder, name)
    state_dir.mkdir(parents=True, exist_ok=True)
    (state_dir / "state.json").write_text(json.dumps(state))
    for key in ("private_key", "insecure_private_key"):
        (state_dir / key).write_text("key\n")
        (state_dir / key).chmod(0o600)
    if pin:
        (state_dir / "known_hosts").write_text(f"vmctl-{machine_id} {PIN}\n")
    with index_lock():
        entries = load_index()
        entries[machine_id] = IndexEntry(id=machine_id, name=name, project=str(folder), domain=domain, uri=uri)
        save_index(entries)
    return state_dir


def full_path(args: list[str], monkeypatch: pytest.MonkeyPatch) -> list[str] | str:
    """What the full path does for `vmctl ARGS`: the argv it execs, or its error line."""
    from vmctl import cli, term

    seen: list[list[str]] = []
    with monkeypatch.context() as m:
        m.setattr(fast_ssh, "run", lambda args, extra: False)
        m.setattr(os, "execv", lambda binary, argv: seen.append(list(argv)))
        try:
            cli.main(args)
        except SystemExit as exc:
            return f"exit {exc.code}"
        finally:
            term.set_modes()
    assert seen, "the full path neither execs nor fails"
    return seen[-1]


def fast_path(args: list[str]) -> list[str] | None:
    """The argv the fast path execs for `vmctl ARGS`, or None when it leaves it to the full path."""
    from vmctl.cli import _split_ssh_extra
    from vmctl.cli.flags import split

    flags, rest = split(args)
    if flags.debug or flags.machine_readable:
        return None
    try:
        return fast_ssh.ssh_argv(*_split_ssh_extra(rest))
    except Exception:  # noqa: BLE001 - as fast_ssh.run: Fallback or any error, the full path runs
        return None


def same(args: list[str], monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Run the full path (which also keeps the evaluation), then the fast path: the same argv."""
    slow = full_path(args, monkeypatch)
    assert isinstance(slow, list), slow
    assert fast_path(args) == slow
    return slow


# --- the same command ------------------------------------------------------------------------

SETTINGS = {
    "plain": "",
    "forwarding": '  config.ssh.forward_agent = true\n  config.ssh.forward_x11 = true\n'
                  '  config.ssh.forward_env = ["LANG", "LC_*"]\n  config.ssh.connect_timeout = 33\n',
    "keys not only": "  config.ssh.keys_only = false\n",
    "extra args": '  config.ssh.extra_args = ["-o", "ServerAliveInterval=5"]\n',
    "own key": '  config.ssh.private_key_path = ["keys/id_test", "/tmp/other"]\n',
    "ssh config": '  config.ssh.config = "ssh_extra.conf"\n',
    "reads env": '  config.vm.hostname = ENV.fetch("FAST_SSH_NAME", "x")\n',
    "file test": '  config.vm.hostname = File.exist?("flag") ? "a" : "b"\n',
    "argv": '  config.vm.hostname = ARGV.first\n',
}
COMMAND_LINES = [
    ["ssh", "-c", "echo foo"], ["ssh"], ["ssh", "-c", "tty", "-t"], ["ssh", "--no-tty", "--command=true"],
    ["ssh", "--plain", "-c", "true"], ["ssh", "default", "-c", "x"], ["ssh", "--", "-L", "8080:localhost:80", "ls"],
    ["ssh", "-c", "true", "--timestamp"], ["--no-color", "ssh", "-c", "true"], ["ssh", "-p"],
]


@pytest.mark.parametrize("setting", list(SETTINGS), ids=list(SETTINGS))
def test_the_fast_path_builds_the_full_paths_command(setting: str, project: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    (project / "Vagrantfile").write_text(ONE.format(extra=SETTINGS[setting]))
    (project / "ssh_extra.conf").write_text("ServerAliveInterval 7\n")
    (project / "keys").mkdir()
    (project / "keys" / "id_test").write_text("k\n")
    created(project)
    for args in COMMAND_LINES:
        same(args, monkeypatch)


@pytest.mark.parametrize("case", ["insecure key", "primary of two", "named of two", "vagrant_cwd",
                                  "vagrantfile name", "dotfile path", "vmctl_vagrantfile", "embedded, running"])
def test_the_same_command_in_other_layouts(case: str, project: Path, tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    args = ["ssh", "-c", "true"]
    if case == "insecure key":
        created(project, key_inserted=False)
    elif case in ("primary of two", "named of two"):
        (project / "Vagrantfile").write_text(
            ONE.format(extra='  config.vm.define "web"\n  config.vm.define "db", primary: true\n'))
        created(project, "db" if case == "primary of two" else "web")
        args = args if case == "primary of two" else ["ssh", "web", "-c", "true"]
    elif case == "vagrant_cwd":
        (project / "deep").mkdir()
        monkeypatch.chdir(tmp_path)
        monkeypatch.setenv("VAGRANT_CWD", str(project / "deep"))
        created(project)
    elif case == "vagrantfile name":
        (project / "Vagrantfile").rename(project / "Vagrantfile.ci")
        monkeypatch.setenv("VAGRANT_VAGRANTFILE", "Vagrantfile.ci")
        created(project)
    elif case == "dotfile path":
        monkeypatch.setenv("VAGRANT_DOTFILE_PATH", ".state")
        created(project)
    elif case == "vmctl_vagrantfile":
        monkeypatch.setenv("VMCTL_VAGRANTFILE", str(project / "Vagrantfile"))
        monkeypatch.chdir(tmp_path)
        created(project)
    else:  # a QEMU process of the domain (an embedded driver's pid file names it)
        root = tmp_path / "libvirt"
        state_dir = created(project, uri=f"qemu:///embed?root={root}")
        domain = json.loads((state_dir / "state.json").read_text())["domain"]
        qemu = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)", f"guest={domain},debug"])
        try:
            (root / "run" / "qemu").mkdir(parents=True)
            (root / "run" / "qemu" / f"{domain}.pid").write_text(f"{qemu.pid}\n")
            same(args, monkeypatch)
        finally:
            qemu.kill()
            qemu.wait()
        return
    same(args, monkeypatch)


# --- every other case: the full path ---------------------------------------------------------

def _stale_vagrantfile(p: Path, m: pytest.MonkeyPatch) -> None:
    (p / "Vagrantfile").write_text(ONE.format(extra='  config.vm.hostname = "changed"\n'))


def _stale_box_store(p: Path, m: pytest.MonkeyPatch) -> None:
    box = Path(os.environ["VMCTL_HOME"]) / "boxes" / "vmctl-VAGRANTSLASH-tiny" / "1.0.0" / "libvirt"
    box.mkdir(parents=True)
    (box / "metadata.json").write_text('{"provider": "libvirt"}')
    (box / "Vagrantfile").write_text('Vagrant.configure("2") do |c|\n  c.vm.hostname = "from-box"\nend\n')


def _edit_state(change: Callable[[dict[str, Any]], None]) -> Callable[[Path, pytest.MonkeyPatch], None]:
    def edit(p: Path, m: pytest.MonkeyPatch | None = None) -> None:
        path = p / ".vmctl" / "machines" / "default" / "state.json"
        data = json.loads(path.read_text())
        change(data)
        path.write_text(json.dumps(data))
    return edit


def _drop_index(p: Path, m: pytest.MonkeyPatch) -> None:
    (Path(os.environ["VMCTL_HOME"]) / "index.json").write_text('{"machines": {}}')


def _link_state_folder(p: Path, m: pytest.MonkeyPatch) -> None:
    state = p / ".vmctl"
    state.rename(p / "elsewhere")
    state.symlink_to(p / "elsewhere")


FALLBACKS: dict[str, tuple[Callable[[Path, pytest.MonkeyPatch], Any], list[str], bool]] = {
    # name: (what changes after a first, fast-path-ready run; the command line; the full path fails)
    "the Vagrantfile changed": (_stale_vagrantfile, ["ssh", "-c", "true"], False),
    "an ENV key it read changed": (lambda p, m: m.setenv("FAST_SSH_NAME", "y"), ["ssh", "-c", "true"], False),
    "a File.exist? answer changed": (lambda p, m: (p / "flag").write_text(""), ["ssh", "-c", "true"], False),
    "the box store changed": (_stale_box_store, ["ssh", "-c", "true"], False),
    "ARGV changed": (lambda p, m: None, ["ssh", "default", "-c", "true"], False),
    "the cache is off": (lambda p, m: m.setenv("VMCTL_EVAL_CACHE", "0"), ["ssh", "-c", "true"], False),
    "no cache entry": (lambda p, m: [f.unlink() for f in (Path(os.environ["VMCTL_HOME"]) / "cache").rglob("*.pickle")],
                       ["ssh", "-c", "true"], False),
    "VMCTL_HAS_PLUGIN changed": (lambda p, m: m.setenv("VMCTL_HAS_PLUGIN", "0"), ["ssh", "-c", "true"], False),
    "not created": (lambda p, m: (p / ".vmctl" / "machines" / "default" / "state.json").unlink(), ["ssh", "-c", "true"], True),
    "not in the index": (_drop_index, ["ssh", "-c", "true"], True),
    "a state of another shape": (_edit_state(lambda d: d.update(id="../../etc")), ["ssh", "-c", "true"], True),
    "a forward of another shape": (_edit_state(lambda d: d["forwards"][0].update(bogus=1)), ["ssh", "-c", "true"], True),
    "a disk outside vmctl's folders": (_edit_state(lambda d: d["disks"][0].update(path="/etc/passwd")),
                                       ["ssh", "-c", "true"], True),
    "a port that is no port": (_edit_state(lambda d: d.update(ssh_port=True)), ["ssh", "-c", "true"], True),
    "disks in a storage pool": (_edit_state(lambda d: d.update(pool="default")), ["ssh", "-c", "true"], False),
    "a remote libvirt host": (_edit_state(lambda d: d.update(uri="qemu+ssh://root@example.com/system")),
                              ["ssh", "-c", "true"], False),
    "a corrupt state file": (lambda p, m: (p / ".vmctl" / "machines" / "default" / "state.json").write_text("{"),
                             ["ssh", "-c", "true"], True),
    "a linked state folder": (_link_state_folder, ["ssh", "-c", "true"], True),
    "not running": (_edit_state(lambda d: d.update(uri="qemu:///embed?root=/nonexistent")), ["ssh", "-c", "true"], True),
    "no pinned host key": (lambda p, m: (p / ".vmctl" / "machines" / "default" / "known_hosts").unlink(),
                           ["ssh", "-c", "true"], False),
    "the insecure key's copy missing": (
        lambda p, m: (_edit_state(lambda d: d.update(key_inserted=False))(p),
                   (p / ".vmctl" / "machines" / "default" / "insecure_private_key").unlink()),
        ["ssh", "-c", "true"], False),
    "an unknown machine": (lambda p, m: None, ["ssh", "web", "-c", "true"], True),
    "several machines, none primary": (
        lambda p, m: (p / "Vagrantfile").write_text(ONE.format(extra='  config.vm.define "a"\n  config.vm.define "b"\n')),
        ["ssh", "-c", "true"], True),
    "the Vagrantfile prints": (lambda p, m: (p / "Vagrantfile").write_text('puts "hello"\n' + ONE.format(extra="")),
                               ["ssh", "-c", "true"], False),
    "another provider": (lambda p, m: m.setenv("VAGRANT_DEFAULT_PROVIDER", "docker"), ["ssh", "-c", "true"], True),
    "VAGRANT_LOG": (lambda p, m: m.setenv("VAGRANT_LOG", "info"), ["ssh", "-c", "true"], False),
    "VMCTL_DEBUG": (lambda p, m: m.setenv("VMCTL_DEBUG", "1"), ["ssh", "-c", "true"], False),
    "no Vagrantfile": (lambda p, m: m.setenv("VAGRANT_CWD", "/"), ["ssh", "-c", "true"], True),
    "a bad VAGRANT_VAGRANTFILE": (lambda p, m: m.setenv("VAGRANT_VAGRANTFILE", "a/b"), ["ssh", "-c", "true"], True),
    "help": (lambda p, m: None, ["ssh", "-h"], False),
    "an option it does not know": (lambda p, m: None, ["ssh", "-x"], True),
    "two names": (lambda p, m: None, ["ssh", "a", "b"], True),
    "a missing value": (lambda p, m: None, ["ssh", "-c"], True),
}


@pytest.mark.parametrize("case", list(FALLBACKS), ids=list(FALLBACKS))
def test_every_other_case_falls_back_to_the_full_path(case: str, project: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    (project / "Vagrantfile").write_text(ONE.format(extra='  config.vm.hostname = ENV.fetch("FAST_SSH_NAME", "x") + '
                                                          '(File.exist?("flag") ? "a" : "b") + ARGV.join\n'))
    monkeypatch.setenv("FAST_SSH_NAME", "x")
    created(project)
    same(["ssh", "-c", "true"], monkeypatch)  # the fast path is ready now
    change, args, fails = FALLBACKS[case]
    change(project, monkeypatch)
    assert fast_path(args) is None
    if case != "help":
        outcome = full_path(args, monkeypatch)
        assert isinstance(outcome, str) == fails, outcome


def test_the_full_path_runs_for_debug_and_machine_readable(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """main() does not ask the fast path for --debug (logs) and --machine-readable (its lines)."""
    from vmctl import cli

    created(project)
    asked: list[list[str]] = []
    monkeypatch.setattr(fast_ssh, "run", lambda args, extra: asked.append(args) or False)
    monkeypatch.setattr(os, "execv", lambda binary, argv: None)
    for flag in ("--debug", "--machine-readable"):
        cli.main(["ssh", "-c", "true", flag])
    assert asked == []
    cli.main(["ssh", "-c", "true", "--timestamp"])
    assert asked == [["ssh", "-c", "true"]]


def test_the_mirrored_constants_are_the_machine_layers() -> None:
    import dataclasses

    from vmctl.machine import disks, state
    from vmctl.state import IndexEntry

    def names(cls: type, required: bool = False) -> tuple[str, ...]:
        return tuple(f.name for f in dataclasses.fields(cls) if not required or (
            f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING))

    assert names(state.MachineState) == fast_ssh.STATE_FIELDS
    assert names(state.MachineState, True) == fast_ssh.STATE_REQUIRED
    assert names(state.ForwardState) == fast_ssh.FORWARD_FIELDS
    assert names(state.ForwardState, True) == fast_ssh.FORWARD_REQUIRED
    assert names(disks.MachineDisk) == fast_ssh.DISK_FIELDS
    assert names(disks.MachineDisk, True) == fast_ssh.DISK_REQUIRED
    assert names(IndexEntry) == fast_ssh.INDEX_FIELDS
    assert names(IndexEntry, True) == fast_ssh.INDEX_REQUIRED
    assert (disks.ROLES, disks.OWNERS, disks.BOX_DISK, disks.CONSOLE_FILE, disks.SNAPSHOTS_DIR,
            disks.MACHINE_HOME_FILES, disks.MACHINE_HOME_PREFIXES, disks.OVERLAY_RE.pattern) == (
        fast_ssh.ROLES, fast_ssh.OWNERS, fast_ssh.BOX_DISK, fast_ssh.CONSOLE_FILE, fast_ssh.SNAPSHOTS_DIR,
        fast_ssh.MACHINE_HOME_FILES, fast_ssh.MACHINE_HOME_PREFIXES, fast_ssh.OVERLAY_RE)
    assert (state.MACHINE_ID_RE.pattern, state.DOMAIN_NAME_RE.pattern, state.UUID_RE.pattern,
            state.MAC_RE.pattern) == (fast_ssh.MACHINE_ID_RE, fast_ssh.DOMAIN_NAME_RE, fast_ssh.UUID_RE,
                                      fast_ssh.MAC_RE)
    from vmctl import environment
    from vmctl import state as vstate

    assert environment.VAGRANTFILE_NAMES == fast_ssh.VAGRANTFILE_NAMES
    assert vstate.MAX_STATE_BYTES == fast_ssh.MAX_STATE_BYTES


@pytest.mark.parametrize(("path", "normal"), [
    ("/a/b", True), ("/", True), ("/a/../b", True), ("rel/x", True), (".", True),
    ("/a//b", False), ("/a/./b", False), ("/a/b/", False), ("a/", False), ("", False),
    ("//a", False),  # pathlib keeps two leading slashes; the fast path leaves them to it
])
def test_a_path_is_taken_as_it_is_only_where_pathlib_writes_it_so(path: str, normal: bool) -> None:
    assert fast_ssh._normal(path, relative_ok=True) == normal
    if normal:
        assert str(Path(path)) == path


# --- what it imports -------------------------------------------------------------------------

HEAVY = ("typer", "rich", "click", "vmctl.machine", "vmctl.project", "vmctl.hypervisor", "libvirt", "paramiko",
         "vmctl.vagrantfile.model", "vmctl.boxes", "vmctl.term", "dataclasses", "pathlib", "logging", "typing",
         "hashlib", "shutil", "subprocess", "ipaddress")


def test_the_fast_path_imports_none_of_the_machine_layer(project: Path, tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """Through the real entry point, in a new process: it execs (a stand-in for) ssh,
    having imported none of HEAVY."""
    created(project)
    same(["ssh", "-c", "true"], monkeypatch)  # keeps the evaluation
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "ssh").write_text("#!/bin/sh\necho \"ssh $*\"\n")
    (bin_dir / "ssh").chmod(0o755)
    code = ("import os, sys\n"
            "def execv(binary, argv):\n"
            "    print(sorted(m for m in sys.modules if m in HEAVY or m.startswith(tuple(h + '.' for h in HEAVY))))\n"
            "    print(argv[0]); sys.stdout.flush(); os._exit(0)\n"
            f"HEAVY = {HEAVY!r}\nos.execv = execv\n"
            "from vmctl.cli import main\nmain(['ssh', '-c', 'true'])\nprint('full path')\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=project,
                          env={**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "PYTHONPATH": str(ROOT)})
    assert proc.stdout.splitlines() == ["[]", str(bin_dir / "ssh")], proc.stdout + proc.stderr
