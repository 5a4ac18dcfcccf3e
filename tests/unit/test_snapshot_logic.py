"""Snapshots without a VM: how the command line's words are read (as Vagrant reads them),
the index and what it may name, the journal settled after an interruption (against a fake
libvirt connection, with real qcow2 images where data must survive a merge), the JSON and
Vagrant's machine-readable lines, the empty qcow2 images vmctl writes itself, and the XML
of a saved state pointed at the current images."""

from __future__ import annotations

import hashlib
import json
import os
import stat
import subprocess
import types
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from cli_runner import run_main

from vmctl import hypervisor, paths, qcow2, term, vmstate
from vmctl.cli import machine_readable
from vmctl.errors import SnapshotError, StateError, UsageError
from vmctl.machine import MachineState, snapshots
from vmctl.machine.disks import is_overlay

T = 1700000000

TWO = """Vagrant.configure("2") do |config|
  config.vm.box = "vmctl/tiny"
  config.vm.define "web"
  config.vm.define "db"
end
"""


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    folder = tmp_path / "proj"
    folder.mkdir()
    (folder / "Vagrantfile").write_text(TWO)
    monkeypatch.chdir(folder)
    monkeypatch.setenv("VMCTL_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("VMCTL_KVM", "0")
    for name in list(os.environ):
        if name.startswith("VAGRANT_") or name in ("VMCTL_VAGRANTFILE", "VMCTL_DEBUG", "VMCTL_LIBVIRT_URI"):
            monkeypatch.delenv(name)
    monkeypatch.setattr(machine_readable, "time", types.SimpleNamespace(time=lambda: T + 0.2))
    yield folder
    term.set_modes()


def machine(folder: Path, name: str) -> Any:
    from vmctl.project import Project

    return Project(folder / "Vagrantfile").machines([name])[0]


def created(folder: Path, name: str) -> Any:
    """Machine NAME with a state file, an index entry and a 16 MiB disk overlay on a box
    image, as `up` leaves them; returns the Machine."""
    from vmctl.state import IndexEntry, index_lock, load_index, save_index

    m = machine(folder, name)
    machine_id = hashlib.sha256(f"{folder}/{name}".encode()).hexdigest()[:12]
    home = paths.machines_dir() / machine_id
    home.mkdir(parents=True)
    box = paths.vmctl_home() / "box.img"
    if not box.exists():
        subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(box), "16M"], check=True)
    qcow2.create(home / "disk.qcow2", 16 << 20, box)
    domain = f"vmctl-proj-{name}-{machine_id[:6]}"
    uri = "qemu:///embed?root=/nonexistent"
    m._state = MachineState(id=machine_id, domain=domain, uri=uri, disk=str(home / "disk.qcow2"),
                            console_log=str(home / "console.log"), ssh_port=2222, ssh_user="vagrant",
                            box_name="vmctl/tiny", box_version="1.0.0", phase="created")
    m._state_loaded = True
    with index_lock():
        entries = load_index()
        entries[machine_id] = IndexEntry(id=machine_id, name=name, project=str(folder), domain=domain, uri=uri)
        save_index(entries)
    m.save()
    return machine(folder, name)  # read back from disk, as a command would


class FakeLibvirt:
    """The Connection API the snapshot code uses, over a pretend domain: its state, the
    file each disk uses, and every call."""

    defines = True

    def __init__(self, state: str = hypervisor.RUNNING) -> None:
        self.states: dict[str, str] = {}
        self.default = state
        self.sources: dict[str, dict[str, str]] = {}
        self.calls: list[tuple[Any, ...]] = []
        self.fail: dict[str, Exception] = {}

    def _call(self, op: str, *args: Any) -> None:
        self.calls.append((op, *args))
        if op in self.fail:
            raise self.fail.pop(op)

    def state(self, name: str) -> str:
        return self.states.get(name, self.default)

    def disk_sources(self, name: str) -> dict[str, str] | None:
        return dict(self.sources.get(name, {})) if self.state(name) in snapshots.LIVE else None

    def define(self, xml: str) -> None:
        self._call("define", xml)

    def save_live(self, name: str, container: str, tag: str, overlays: dict[str, str]) -> None:
        self._call("save_live", name, tag, overlays)
        Path(container).write_bytes(b"state")
        self.sources[name] = dict(overlays)

    def load_live(self, name: str, container: str, tag: str, overlays: dict[str, str]) -> None:
        self._call("load_live", name, tag, overlays)
        self.sources.setdefault(name, {}).update(overlays)
        self.states[name] = hypervisor.RUNNING

    def commit_live(self, name: str, target: str, base: str) -> None:
        self._call("commit_live", name, target, base)
        self.sources.setdefault(name, {})[target] = base

    def start_paused(self, name: str) -> None:
        self._call("start_paused", name)
        self.states[name] = hypervisor.PAUSED

    def destroy(self, name: str, discard: bool = False) -> None:
        self._call("destroy", name)
        self.states[name] = hypervisor.POWEROFF

    def suspend(self, name: str) -> None:
        self._call("suspend", name)
        self.states[name] = hypervisor.SAVED

    def fix_saved_xml(self, name: str, sources: dict[str, str], formats: dict[str, str] | None = None) -> None:
        self._call("fix_saved_xml", name, sources, formats)

    def discard_saved(self, name: str) -> None:
        self._call("discard_saved", name)
        self.states[name] = hypervisor.POWEROFF

    def ops(self) -> list[str]:
        return [c[0] for c in self.calls]


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> FakeLibvirt:
    lv = FakeLibvirt()

    @contextmanager
    def connect(uri: str) -> Iterator[FakeLibvirt]:
        yield lv

    @contextmanager
    def no_direct_qemu(uri: str, domain: str) -> Iterator[None]:
        yield None

    monkeypatch.setattr(hypervisor, "connect", connect)
    monkeypatch.setattr(hypervisor, "connect_qemu", no_direct_qemu)
    monkeypatch.setattr(hypervisor, "qemu_alive", lambda uri, dom: lv.state(dom) in snapshots.LIVE)
    monkeypatch.setattr(hypervisor, "qemu_status", lambda uri, dom: None)
    return lv


def noop(_line: str) -> None:
    pass


def qemu_io(path: Path, command: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["qemu-io", "-f", "qcow2", "-c", command, str(path)], capture_output=True, text=True,
                          check=True)


def reads(path: Path, offset: int, pattern: int) -> bool:
    """Whether the 64 KiB at OFFSET of the image at PATH (through its backing files) are
    all PATTERN."""
    proc = subprocess.run(["qemu-io", "-r", "-U", "-f", "qcow2", "-c", f"read -P 0x{pattern:02x} {offset} 64k",
                           str(path)], capture_output=True, text=True, check=False)
    return proc.returncode == 0 and "Pattern verification failed" not in proc.stdout + proc.stderr


def backing(path: Path) -> str | None:
    info = json.loads(subprocess.run(["qemu-img", "info", "-U", "--output=json", str(path)], capture_output=True,
                                     text=True, check=True).stdout)
    return info.get("backing-filename")


# --- the words of the command line, as Vagrant reads them --------------------------------

@pytest.mark.parametrize(("command", "words", "expect"), [
    ("save", ["s1"], (["web", "db"], "s1", False)),
    ("save", ["db", "s1"], (["db"], "s1", True)),
    # One word is the snapshot, even when a machine has that name (Vagrant >= 2.2.6; 2.2.5
    # read it as the machine too: hashicorp/vagrant#11139).
    ("restore", ["web"], (["web", "db"], "web", False)),
    ("delete", ["web", "web"], (["web"], "web", True)),
    ("list", [], (["web", "db"], None, False)),
    ("push", ["db"], (["db"], None, True)),
    ("pop", [], (["web", "db"], None, False)),
])  # fmt: skip
def test_words_are_read_as_vagrant_reads_them(project: Path, command: str, words: list[str],
                                              expect: tuple[list[str], str | None, bool]) -> None:
    from vmctl.cli.snapshot import _machines

    takes = command in ("save", "restore", "delete")
    machines, name, named = _machines(command, words, takes_snapshot=takes)
    assert ([m.name for m in machines], name, named) == expect


@pytest.mark.parametrize(("command", "words"), [
    ("save", ["a", "b", "c"]), ("restore", []), ("list", ["web", "db"]), ("pop", ["a", "b"]),
])  # fmt: skip
def test_too_many_or_too_few_words_are_a_usage_error(project: Path, command: str, words: list[str]) -> None:
    from vmctl.cli.snapshot import _machines

    with pytest.raises(UsageError):
        _machines(command, words, takes_snapshot=command in ("save", "restore", "delete"))


def test_a_lone_machine_name_that_is_no_snapshot_says_how_to_name_the_machine(project: Path, fake: FakeLibvirt) -> None:
    created(project, "web")
    created(project, "db")
    out = run_main("snapshot", "restore", "web")
    assert out.code == 1
    assert "error: no snapshot named 'web' on machines web, db" in out.stderr
    assert "web is a machine: to name it, give the snapshot too (vmctl snapshot restore web SNAPSHOT)" in out.stderr


def test_restoring_a_name_that_does_not_exist_lists_the_ones_that_do(project: Path, fake: FakeLibvirt) -> None:
    created(project, "web")
    for name in ("one", "two"):
        assert run_main("snapshot", "save", "web", name).code == 0
    out = run_main("snapshot", "restore", "web", "three")
    assert out.code == 1
    assert out.stderr.splitlines()[-2:] == ["error: machine web has no snapshot named 'three'",
                                            "hint: its snapshots: one, two"]


def test_save_skips_machines_not_created_and_refuses_a_taken_name(project: Path, fake: FakeLibvirt) -> None:
    created(project, "web")
    first = run_main("snapshot", "save", "s")
    assert first.code == 0
    assert "==> db: not created; it has no snapshot to take." in first.stderr
    again = run_main("snapshot", "save", "s")
    assert again.code == 1
    assert "error: machine web already has a snapshot named 's'" in again.stderr
    assert "hint: choose another name, or replace it with --force" in again.stderr
    assert run_main("snapshot", "save", "db", "s").code == 1  # named, not created: an error
    forced = run_main("snapshot", "save", "--force", "s")
    assert forced.code == 0
    m = machine(project, "web")
    idx = snapshots.load_index(m, m.state)
    # The replaced one is gone by name; its layer, which the running machine reads below the
    # new one's, is merged once the machine stops.
    assert [s.name for s in idx.live()] == ["s"] and [s.deleted for s in idx.snapshots] == [True, False]


def test_snapshot_names_that_are_refused(project: Path, fake: FakeLibvirt) -> None:
    created(project, "web")
    for bad in ("-x", "a\tb", "line\nbreak", " padded", "x" * 101):
        out = run_main("snapshot", "save", "web", bad)
        assert out.code != 0, bad
    assert run_main("snapshot", "save", "web", "with space").code == 0


def test_pop_with_nothing_pushed_says_so(project: Path, fake: FakeLibvirt) -> None:
    created(project, "web")
    out = run_main("snapshot", "pop", "web")
    assert out.code == 0
    assert "==> web: no pushed snapshot to pop (vmctl snapshot push saves one)." in out.stderr


def test_push_then_pop_restores_and_deletes_the_last_push(project: Path, fake: FakeLibvirt) -> None:
    m = created(project, "web")
    monkey_after = []
    snapshots_after = snapshots._after_restore
    snapshots._after_restore = lambda *a, **k: monkey_after.append(a[2].name)  # type: ignore[assignment]
    try:
        assert run_main("snapshot", "push", "web").code == 0
        assert run_main("snapshot", "save", "web", "between").code == 0
        assert run_main("snapshot", "push", "web").code == 0
        names = [s.name for s in snapshots.load_index(m, machine(project, "web").state).live()]
        assert names[1] == "between" and all(n.startswith("push_") for n in (names[0], names[2]))
        assert run_main("snapshot", "pop", "web").code == 0
        assert monkey_after == [names[2]]
        left = [s.name for s in snapshots.load_index(m, machine(project, "web").state).live()]
        assert left == names[:2]
        assert run_main("snapshot", "pop", "--no-delete", "web").code == 0
        assert monkey_after == [names[2], names[0]]
        assert [s.name for s in snapshots.load_index(m, machine(project, "web").state).live()] == names[:2]
    finally:
        snapshots._after_restore = snapshots_after  # type: ignore[assignment]


# --- the fast parser reads snapshot commands as typer does ---------------------------------

FAST = [
    ["snapshot", "save", "s"], ["snapshot", "save", "web", "s", "--force"], ["snapshot", "save", "-f", "s"],
    ["snapshot", "restore", "s"], ["snapshot", "restore", "web", "s", "--no-provision", "--no-start"],
    ["snapshot", "restore", "s", "--provision-with", "a,b"], ["snapshot", "restore", "s", "--provision"],
    ["snapshot", "list"], ["snapshot", "list", "web", "--json"], ["snapshot", "delete", "web", "s"],
    ["snapshot", "push"], ["snapshot", "push", "web"], ["snapshot", "pop", "--no-delete", "--no-start"],
    ["snapshot", "pop", "web", "--provision-with=shell"],
]  # fmt: skip


@pytest.mark.parametrize("argv", FAST, ids=" ".join)
def test_fast_parser_agrees_with_typer(argv: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    from vmctl.cli import app, fast
    from vmctl.cli import snapshot as module

    parsed = fast.parse(argv, [])
    assert parsed is not None
    function, kwargs = parsed
    got: list[dict[str, Any]] = []
    for name in ("save", "restore", "list_snapshots", "delete", "push", "pop"):
        monkeypatch.setattr(module, name, lambda *a, _n=name, **kw: got.append({"fn": _n, "words": a[0], **kw}))
    with pytest.raises(SystemExit) as exited:
        app.run(argv, [])
    assert exited.value.code in (0, None)
    assert got[0].pop("fn") == function.__name__
    assert got[0] == kwargs


@pytest.mark.parametrize("argv", [["snapshot"], ["snapshot", "save"], ["snapshot", "save", "-h"],
                                  ["snapshot", "bogus"], ["snapshot", "restore", "s", "--nope"]], ids=" ".join)
def test_fast_parser_leaves_the_rest_to_typer(argv: list[str]) -> None:
    from vmctl.cli import fast

    assert fast.parse(argv, []) is None


# --- list: the table, JSON and Vagrant's machine-readable lines ------------------------------

def test_list_json_table_and_machine_readable(project: Path, fake: FakeLibvirt, monkeypatch: pytest.MonkeyPatch) -> None:
    created(project, "web")
    monkeypatch.setattr(snapshots.time, "time", lambda: T)
    assert run_main("snapshot", "save", "web", "base").code == 0
    fake.states = {}
    fake.default = hypervisor.POWEROFF
    monkeypatch.setattr(snapshots.time, "time", lambda: T + 60)
    assert run_main("snapshot", "save", "web", "cold").code == 0
    data = json.loads(run_main("snapshot", "list", "--json").stdout)
    assert [m["name"] for m in data["machines"]] == ["web", "db"]
    web, db = data["machines"]
    assert db == {"name": "db", "snapshots": []}
    assert [{k: v for k, v in s.items() if k != "size_bytes"} for s in web["snapshots"]] == [
        {"name": "base", "created": "2023-11-14T22:13:20Z", "parent": None, "memory": True,
         "box": "vmctl/tiny", "box_version": "1.0.0"},
        {"name": "cold", "created": "2023-11-14T22:14:20Z", "parent": "base", "memory": False,
         "box": "vmctl/tiny", "box_version": "1.0.0"},
    ]
    assert all(isinstance(s["size_bytes"], int) and s["size_bytes"] > 0 for s in web["snapshots"])
    table = run_main("snapshot", "list").stdout.splitlines()
    assert table[0] == "MACHINE\tSNAPSHOT\tCREATED\tMEMORY\tSIZE\tPARENT"
    assert [line.split("\t")[:4] for line in table[1:]] == [["web", "base", "2023-11-14T22:13:20Z", "yes"],
                                                          ["web", "cold", "2023-11-14T22:14:20Z", "no"]]
    assert [line.split("\t")[5] for line in table[1:]] == ["-", "base"]
    mr = run_main("snapshot", "list", "--machine-readable").stdout.splitlines()
    assert mr == [
        f"{T},web,metadata,provider,libvirt",
        f"{T},web,ui,output,==> web: ",
        f"{T},web,ui,detail,base",
        f"{T},web,ui,detail,cold",
        f"{T},db,metadata,provider,libvirt",
        f"{T},db,ui,info,==> db: VM not created. Moving on...",
    ]
    status = json.loads(run_main("status", "--json").stdout)["machines"]
    assert [m["snapshots"] for m in status] == [2, 0]


def test_list_machine_readable_without_snapshots(project: Path, fake: FakeLibvirt) -> None:
    created(project, "db")
    mr = run_main("snapshot", "list", "db", "--machine-readable").stdout.splitlines()
    assert mr[:2] == [f"{T},db,metadata,provider,libvirt", f"{T},db,ui,output,==> db: No snapshots have been taken yet!"]
    assert mr[2].startswith(f"{T},db,ui,detail,    db: You can take a snapshot using `vmctl snapshot save`.")
    assert len(mr) == 3


# --- saving and restoring, against the fake -------------------------------------------------------

def test_save_of_a_running_machine_freezes_its_image_and_continues_on_a_new_one(project: Path, fake: FakeLibvirt) -> None:
    m = created(project, "web")
    old = Path(m.state.disk)
    snap = snapshots.save(m, "s1", force=False, emit=noop)
    m = machine(project, "web")
    new = Path(m.state.disk)
    assert new != old and is_overlay(old.parent, str(new))
    assert backing(new) == str(old)
    assert stat.S_IMODE(old.stat().st_mode) == 0o400 and stat.S_IMODE(new.stat().st_mode) == 0o600
    assert snap.memory and snap.disks == {"vda": "disk.qcow2"}
    assert (old.parent / "snapshots" / f"{snap.id}.vmstate").exists()
    assert fake.ops() == ["save_live", "define"]
    assert str(new) in fake.calls[1][1]  # the definition names the new image
    assert snapshots.load_index(m, m.state).pending is None


def test_save_of_a_stopped_machine_is_its_disks(project: Path, fake: FakeLibvirt) -> None:
    fake.default = hypervisor.POWEROFF
    m = created(project, "web")
    snap = snapshots.save(m, "cold", force=False, emit=noop)
    assert not snap.memory and fake.ops() == ["define"]
    assert not list((Path(m.state.disk).parent / "snapshots").glob("*.vmstate"))


def with_disk_list(folder: Path, name: str, *extra: str, raw: tuple[str, ...] = (), **more: Any) -> Any:
    """Machine NAME as `up` leaves it now: the state's disk list holds the box disk, EXTRA
    qcow2 disks and RAW raw disks by target (1 MiB files in the machine's folder), and MORE
    disk entries (MachineDisk fields by target)."""
    from vmctl.machine.disks import MachineDisk

    m = created(folder, name)
    st = m.state
    home = Path(st.disk).parent
    st.disks = [MachineDisk(role="box", name="box", path=st.disk, target="vda", bus="virtio", format="qcow2")]
    for t in (*extra, *raw):
        fmt = "raw" if t in raw else "qcow2"
        path = home / f"disk-{t}.{fmt}"
        subprocess.run(["qemu-img", "create", "-q", "-f", fmt, str(path), "1M"], check=True)
        st.disks.append(MachineDisk(role="extra", name=t, path=str(path), target=t, bus="virtio", format=fmt))
    for t, fields in more.items():
        st.disks.append(MachineDisk(target=t, **fields))
    m.save()
    return machine(folder, name)


def test_save_follows_the_box_disk_in_the_disk_list(project: Path, fake: FakeLibvirt) -> None:
    m = with_disk_list(project, "web")
    snapshots.save(m, "s1", force=False, emit=noop)
    m = machine(project, "web")  # the state, read back, accepts the snapshot's overlay as vmctl's own
    box = next(d for d in m.state.disks if d.role == "box")
    assert box.path == m.state.disk and "/snapshots/" in box.path
    assert str(m.state.disk) in fake.calls[-1][1]  # the definition names the new image


def io(path: Path, fmt: str, command: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["qemu-io", "-f", fmt, "-c", command, str(path)], capture_output=True, text=True, check=True)


def image_of(m: Any, target: str) -> Path:
    return Path(next(d.path for d in m.state.disks if d.target == target))


def test_save_of_a_running_machine_holds_every_disk_in_the_one_pause(project: Path, fake: FakeLibvirt) -> None:
    m = with_disk_list(project, "web", "vdb", raw=("vdc",))
    home = Path(m.state.disk).parent
    snap = snapshots.save(m, "s1", force=False, emit=noop)
    assert snap.disks == {"vda": "disk.qcow2", "vdb": "disk-vdb.qcow2", "vdc": "disk-vdc.raw"}
    assert fake.ops() == ["save_live", "define"]
    assert sorted(fake.calls[0][3]) == ["vda", "vdb", "vdc"]  # one request: every disk switched together
    m = machine(project, "web")
    for t, fmt in (("vdb", "qcow2"), ("vdc", "raw")):
        disk = next(d for d in m.state.disks if d.target == t)
        assert disk.format == "qcow2" and "/snapshots/" in disk.path and disk.path.endswith(f"-{t}.qcow2")
        info = json.loads(subprocess.run(["qemu-img", "info", "-U", "--output=json", disk.path], capture_output=True,
                                         text=True, check=True).stdout)
        assert info["backing-filename"] == str(home / f"disk-{t}.{fmt}")
        assert info["backing-filename-format"] == fmt  # a raw disk is never probed
        assert stat.S_IMODE((home / f"disk-{t}.{fmt}").stat().st_mode) == 0o400
    define = fake.calls[1][1]
    assert "disk-vdc.raw" not in define and "-vdc.qcow2" in define  # the raw disk now runs on a qcow2 overlay


@pytest.mark.parametrize("method", ["commit", "rebase"])
def test_every_disk_of_a_stopped_machine_comes_back_and_survives_merges(project: Path, fake: FakeLibvirt,
                                                                        monkeypatch: pytest.MonkeyPatch,
                                                                        method: str) -> None:
    fake.default = hypervisor.POWEROFF
    m = with_disk_list(project, "web", "vdb", raw=("vdc",))
    io(image_of(m, "vdb"), "qcow2", "write -P 0x11 0 64k")
    io(image_of(m, "vdc"), "raw", "write -P 0x12 0 64k")
    snapshots.save(m, "a", force=False, emit=noop)
    m = machine(project, "web")
    io(image_of(m, "vdb"), "qcow2", "write -P 0x21 64k 64k")
    io(image_of(m, "vdc"), "qcow2", "write -P 0x22 64k 64k")
    snapshots.save(m, "b", force=False, emit=noop)
    m = machine(project, "web")
    io(image_of(m, "vdb"), "qcow2", "write -P 0x31 0 128k")
    io(image_of(m, "vdc"), "qcow2", "write -P 0x32 0 128k")
    snapshots.restore(m, "b", provision=None, only=None, start=False, emit=noop, emit_output=noop)
    m = machine(project, "web")
    for t, first, second in (("vdb", 0x11, 0x21), ("vdc", 0x12, 0x22)):
        assert reads(image_of(m, t), 0, first) and reads(image_of(m, t), 64 << 10, second), t
    # Deleting "a" merges its layers into "b"'s (a raw layer always by rebase), then "b" into the active images.
    monkeypatch.setattr(snapshots, "_merge_plan", lambda m, st, idx, g, c: {t: method for t in g.disks})
    snapshots.delete(m, "a", emit=noop)
    snapshots.delete(machine(project, "web"), "b", emit=noop)
    m = machine(project, "web")
    assert snapshots.load_index(m, m.state).snapshots == []
    for t, first, second in (("vdb", 0x11, 0x21), ("vdc", 0x12, 0x22)):
        assert reads(image_of(m, t), 0, first) and reads(image_of(m, t), 64 << 10, second), t
        assert next(d for d in m.state.disks if d.target == t).format == "qcow2"
    home = paths.machines_dir() / m.state.id
    left = sorted(p.name for p in (home / "snapshots").iterdir())
    assert left == sorted(image_of(m, t).name for t in ("vda", "vdb", "vdc") if "/snapshots/" in str(image_of(m, t)))


def test_deleting_the_head_of_a_running_machine_with_a_raw_layer_waits_for_it_to_stop(
        project: Path, fake: FakeLibvirt) -> None:
    m = with_disk_list(project, "web", raw=("vdb",))
    snapshots.save(m, "s", force=False, emit=noop)
    fake.calls.clear()
    snapshots.delete(machine(project, "web"), "s", emit=noop)
    m = machine(project, "web")
    assert "commit_live" not in fake.ops()  # QEMU commits into qcow2 layers only
    assert [(s.name, s.deleted) for s in snapshots.load_index(m, m.state).snapshots] == [("s", True)]
    fake.default = hypervisor.POWEROFF
    fake.states.clear()
    snapshots.recover(m)
    with m.locked():
        pass
    snapshots.save(machine(project, "web"), "t", force=False, emit=noop)  # any snapshot command merges it now
    m = machine(project, "web")
    assert [s.name for s in snapshots.load_index(m, m.state).snapshots] == ["t"]


def test_a_save_killed_after_qemu_switched_is_finished_for_every_disk(project: Path, fake: FakeLibvirt,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    m = with_disk_list(project, "web", "vdb", raw=("vdc",))
    with monkeypatch.context() as mp:
        interrupted(mp, "_settle")
        with pytest.raises(BaseException):  # noqa: B017 - the pretend SIGKILL
            snapshots.save(m, "s1", force=False, emit=noop)
    with machine(project, "web").locked():
        pass
    m = machine(project, "web")
    assert [s.name for s in snapshots.load_index(m, m.state).live()] == ["s1"]
    assert {d.target: d.path for d in m.state.disks} == fake.sources[m.state.domain]


def test_a_save_killed_before_qemu_switched_is_undone_for_every_disk(project: Path, fake: FakeLibvirt,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    m = with_disk_list(project, "web", "vdb", raw=("vdc",))
    before = {d.target: (d.path, d.format) for d in m.state.disks}
    fake.sources[m.state.domain] = {t: p for t, (p, _) in before.items()}
    with monkeypatch.context() as mp:
        mp.setattr(FakeLibvirt, "save_live", lambda *a: (_ for _ in ()).throw(KeyboardInterrupt()))
        with pytest.raises(KeyboardInterrupt):
            snapshots.save(m, "s1", force=False, emit=noop)
    with machine(project, "web").locked():
        pass
    m = machine(project, "web")
    assert {d.target: (d.path, d.format) for d in m.state.disks} == before
    assert list((Path(m.state.disk).parent / "snapshots").iterdir()) == []


def test_save_refuses_only_the_disks_it_cannot_hold(project: Path, fake: FakeLibvirt, tmp_path: Path) -> None:
    volume = paths.vmctl_home() / "volumes" / "data"
    m = with_disk_list(project, "web", vdb={"role": "volume", "name": "data", "path": str(volume), "format": "raw"})
    with pytest.raises(SnapshotError, match=r"disks a snapshot cannot hold: vdb \(the named volume data: it outlives"):
        snapshots.save(m, "s1", force=False, emit=noop)
    assert fake.ops() == [] and not (Path(m.state.disk).parent / "snapshots").exists()
    # Read-only and shareable disks need nothing: the snapshot is taken, and says what it left out.
    lines: list[str] = []
    m = with_disk_list(project, "db", vdb={"role": "extra", "name": "vdb", "path": "/srv/shared.img", "owner": "user",
                                           "format": "raw", "options": {"shareable": True}},
                       hdc={"role": "cdrom", "name": "hdc", "path": "/srv/x.iso", "owner": "user", "readonly": True})
    snap = snapshots.save(m, "s1", force=False, emit=lines.append)
    assert snap.disks == {"vda": "disk.qcow2"}
    assert any("vdb: shareable" in line and "not in the snapshot" in line for line in lines)


def test_restore_refuses_a_snapshot_of_disks_the_machine_no_longer_has(project: Path, fake: FakeLibvirt) -> None:
    m = with_disk_list(project, "web", "vdb")
    snapshots.save(m, "s1", force=False, emit=noop)
    m = machine(project, "web")
    m.state.disks = [d for d in m.state.disks if d.target != "vdb"]
    m.save()
    fake.calls.clear()
    with pytest.raises(SnapshotError, match="holds disks the machine no longer has: vdb"):
        snapshots.restore(machine(project, "web"), "s1", provision=None, only=None, start=False, emit=noop,
                          emit_output=noop)
    assert fake.ops() == []


def test_nvram_and_tpm_state_of_a_stopped_machine_come_back(project: Path, fake: FakeLibvirt) -> None:
    fake.default = hypervisor.POWEROFF
    tpm = paths.vmctl_home() / "swtpm" / "uuid"
    (tpm / "tpm2").mkdir(parents=True)
    (tpm / "tpm2" / "tpm2-00.permall").write_bytes(b"tpm-before")
    (tpm / "tpm2" / ".lock").write_bytes(b"")
    nvram = paths.machines_dir() / hashlib.sha256(f"{project}/db".encode()).hexdigest()[:12] / "nvram.fd"
    m = with_disk_list(project, "db", nvram={"role": "nvram", "name": "nvram", "path": str(nvram), "format": "raw"},
                       tpm={"role": "tpm", "name": "tpm", "path": str(tpm), "owner": "libvirt"})
    nvram.write_bytes(b"vars-before")
    snap = snapshots.save(m, "s1", force=False, emit=noop)
    home = paths.machines_dir() / m.state.id
    assert (home / "snapshots" / f"{snap.id}.nvram").read_bytes() == b"vars-before"
    nvram.write_bytes(b"vars-after, longer")
    (tpm / "tpm2" / "tpm2-00.permall").write_bytes(b"tpm-after")
    (tpm / "tpm2" / "tpm2-00.volatilestate").write_bytes(b"later")
    inode = nvram.stat().st_ino
    listed = snapshots.describe(machine(project, "db"))
    assert listed[0]["size_bytes"] > 0
    snapshots.restore(machine(project, "db"), "s1", provision=None, only=None, start=False, emit=noop,
                      emit_output=noop)
    assert nvram.read_bytes() == b"vars-before" and nvram.stat().st_ino == inode  # written in place
    assert (tpm / "tpm2" / "tpm2-00.permall").read_bytes() == b"tpm-before"
    assert not (tpm / "tpm2" / "tpm2-00.volatilestate").exists() and (tpm / "tpm2" / ".lock").exists()
    snapshots.delete(machine(project, "db"), "s1", emit=noop)
    assert not list((home / "snapshots").glob(f"{snap.id}.*"))


def test_a_running_snapshot_leaves_nvram_and_tpm_to_the_saved_state(project: Path, fake: FakeLibvirt) -> None:
    nvram = paths.machines_dir() / hashlib.sha256(f"{project}/db".encode()).hexdigest()[:12] / "nvram.fd"
    m = with_disk_list(project, "db", nvram={"role": "nvram", "name": "nvram", "path": str(nvram), "format": "raw"})
    nvram.write_bytes(b"vars")
    snap = snapshots.save(m, "s1", force=False, emit=noop)
    assert not list((nvram.parent / "snapshots").glob(f"{snap.id}.nvram"))


@pytest.mark.parametrize(("rel", "ok"), [
    ("disk.qcow2", True), ("disk-vdb.raw", True), ("disk-box-1.qcow2", True), ("disk-data.qcow2", True),
    ("snapshots/a1b2c3d4e5f6-vdb.qcow2", True), ("disk-vdb.vmdk", False), ("nvram.fd", False),
    ("../disk-vdb.raw", False), ("disk-../x.raw", False), ("snapshots/disk-vdb.raw", False), ("cidata.iso", False),
])
def test_layers_an_index_may_name(rel: str, ok: bool) -> None:
    assert (snapshots._rel_problem(rel) is None) == ok


def test_a_disk_moved_onto_a_snapshot_overlay_stays_qcow2_when_planned_again() -> None:
    from vmctl.machine.disks import MachineDisk, merge

    planned = [MachineDisk(role="extra", name="vdb", path="/h/disk-vdb.raw", target="vdb", format="raw")]
    recorded = [MachineDisk(role="extra", name="vdb", path="/h/snapshots/a1b2c3d4e5f6-vdb.qcow2", target="vdb",
                            format="qcow2")]
    assert merge(recorded, planned)[0].format == "qcow2"
    assert merge(planned, planned)[0].format == "raw"


def test_restore_of_a_running_snapshot_loads_it_in_place(project: Path, fake: FakeLibvirt) -> None:
    m = created(project, "web")
    snapshots.save(m, "s1", force=False, emit=noop)
    m = machine(project, "web")
    discarded = Path(m.state.disk)
    fake.calls.clear()
    snapshots.restore(m, "s1", provision=None, only=None, start=False, emit=noop, emit_output=noop)
    m = machine(project, "web")
    assert fake.ops() == ["load_live", "define", "suspend", "fix_saved_xml"]
    assert fake.calls[0][3] == {"vda": m.state.disk}
    assert backing(Path(m.state.disk)) == str(Path(m.state.disk).parent.parent / "disk.qcow2")
    assert not discarded.exists()  # the state it had is thrown away


def test_restore_of_a_disk_snapshot_on_a_running_machine_stops_it_first(project: Path, fake: FakeLibvirt) -> None:
    m = created(project, "web")
    fake.default = hypervisor.POWEROFF
    snapshots.save(m, "cold", force=False, emit=noop)
    fake.default = hypervisor.RUNNING
    fake.calls.clear()
    snapshots.restore(machine(project, "web"), "cold", provision=None, only=None, start=False, emit=noop,
                      emit_output=noop)
    assert fake.ops() == ["destroy", "define"]
    assert machine(project, "web").state.halted


# --- interrupted commands are settled by the next one -----------------------------------------------

def interrupted(monkeypatch: pytest.MonkeyPatch, where: str) -> None:
    """Make the operation stop (as a SIGKILL would) right before WHERE runs."""

    class Killed(BaseException):
        pass

    def die(*a: Any, **k: Any) -> None:
        raise Killed

    monkeypatch.setattr(snapshots, where, die)


def test_a_save_killed_after_qemu_switched_is_finished(project: Path, fake: FakeLibvirt,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    m = created(project, "web")
    with monkeypatch.context() as mp:
        interrupted(mp, "_settle")  # the worker finished in QEMU; vmctl died before recording it
        with pytest.raises(BaseException):  # noqa: B017 - the pretend SIGKILL
            snapshots.save(m, "s1", force=False, emit=noop)
    m = machine(project, "web")
    assert snapshots.load_index(m, m.state).pending["op"] == "save"
    with m.locked():  # what the next command does first
        pass
    m = machine(project, "web")
    idx = snapshots.load_index(m, m.state)
    assert idx.pending is None and [s.name for s in idx.live()] == ["s1"]
    assert m.state.disk == fake.sources[m.state.domain]["vda"]


def test_a_save_killed_before_qemu_switched_is_undone(project: Path, fake: FakeLibvirt,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    m = created(project, "web")
    before = m.state.disk
    fake.sources[m.state.domain] = {"vda": before}
    with monkeypatch.context() as mp:
        mp.setattr(FakeLibvirt, "save_live", lambda *a: (_ for _ in ()).throw(KeyboardInterrupt()))
        with pytest.raises(KeyboardInterrupt):
            snapshots.save(m, "s1", force=False, emit=noop)
    m = machine(project, "web")
    pending = snapshots.load_index(m, m.state).pending
    assert pending is not None
    with m.locked():
        pass
    m = machine(project, "web")
    assert m.state.disk == before
    assert snapshots.load_index(m, m.state).live() == []
    leftovers = list((Path(before).parent / "snapshots").iterdir())
    assert leftovers == [], leftovers


def test_a_restore_killed_halfway_is_finished(project: Path, fake: FakeLibvirt, monkeypatch: pytest.MonkeyPatch) -> None:
    m = created(project, "web")
    snapshots.save(m, "s1", force=False, emit=noop)
    with monkeypatch.context() as mp:
        mp.setattr(FakeLibvirt, "load_live", lambda *a: (_ for _ in ()).throw(KeyboardInterrupt()))
        with pytest.raises(KeyboardInterrupt):
            snapshots.restore(machine(project, "web"), "s1", provision=None, only=None, start=True, emit=noop,
                              emit_output=noop)
    m = machine(project, "web")
    assert snapshots.load_index(m, m.state).pending["op"] == "restore"
    monkeypatch.setattr(type(m), "_set_clock", lambda self, s: None)
    with m.locked():
        pass
    m = machine(project, "web")
    idx = snapshots.load_index(m, m.state)
    assert idx.pending is None and idx.head == idx.find("s1").id
    assert fake.sources[m.state.domain]["vda"] == m.state.disk


def test_a_corrupt_or_foreign_index_is_refused(project: Path, fake: FakeLibvirt) -> None:
    m = created(project, "web")
    path = snapshots.index_path(m)
    good = {"machine": m.state.id, "head": None, "pending": None,
            "snapshots": [{"id": "0123456789ab", "name": "x", "created": 1.0, "parent": None, "memory": False,
                           "disks": {"vda": "disk.qcow2"}}]}
    path.write_text(json.dumps(good))
    assert [s.name for s in snapshots.load_index(m, m.state).live()] == ["x"]
    for layer in ("../../../etc/passwd", "/etc/passwd", "snapshots/../disk.qcow2", "snapshots/x.qcow2"):
        bad = json.loads(json.dumps(good))
        bad["snapshots"][0]["disks"]["vda"] = layer
        path.write_text(json.dumps(bad))
        with pytest.raises(StateError, match="not in the expected shape"):
            snapshots.load_index(m, m.state)
    bad = {**good, "pending": {"op": "merge", "ghost": "0123456789ab", "child": "../x", "steps": {}}}
    path.write_text(json.dumps(bad))
    with pytest.raises(StateError):
        snapshots.load_index(m, m.state)
    # An index left by an earlier machine of that name is no index.
    path.write_text(json.dumps({**good, "machine": "fedcba987654"}))
    assert snapshots.load_index(m, m.state).snapshots == []


def test_machine_state_may_name_snapshot_overlays_only(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VMCTL_HOME", str(tmp_path))
    home = paths.machines_dir() / "0123456789ab"
    assert is_overlay(home, str(home / "disk.qcow2"))
    assert is_overlay(home, str(home / "snapshots" / "a1b2c3d4e5f6-vda.qcow2"))
    for bad in (home / "snapshots" / "x-vda.qcow2", home / "other.qcow2", tmp_path / "disk.qcow2",
                home / "snapshots" / ".." / "disk.qcow2"):
        assert not is_overlay(home, str(bad))


# --- merging: the data of every snapshot survives ---------------------------------------------------

@pytest.mark.parametrize("method", ["commit", "rebase"])
def test_deleting_a_snapshot_merges_its_layer_and_keeps_every_byte(project: Path, fake: FakeLibvirt, method: str,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    fake.default = hypervisor.POWEROFF
    m = created(project, "web")
    base = Path(m.state.disk)
    qemu_io(base, "write -P 0x11 0 64k")
    snapshots.save(m, "a", force=False, emit=noop)
    m = machine(project, "web")
    qemu_io(Path(m.state.disk), "write -P 0x22 64k 64k")
    snapshots.save(m, "b", force=False, emit=noop)
    m = machine(project, "web")
    active = Path(m.state.disk)
    qemu_io(active, "write -P 0x33 128k 64k")
    # Merge "a" into "b" the way the test asks (an interrupted merge must be repeatable).
    monkeypatch.setattr(snapshots, "_merge_plan", lambda m, st, idx, g, c: {"vda": method})
    idx = snapshots.load_index(m, m.state)
    b_layer = snapshots._path(m.state, idx.find("b").disks["vda"])
    snapshots.delete(m, "a", emit=noop)
    m = machine(project, "web")
    idx = snapshots.load_index(m, m.state)
    assert [s.name for s in idx.snapshots] == ["b"] and idx.find("b").parent is None
    assert not base.exists() or method == "commit"
    assert backing(b_layer) == str(paths.vmctl_home() / "box.img")
    for offset, pattern in ((0, 0x11), (64 << 10, 0x22), (128 << 10, 0x33)):
        assert reads(active, offset, pattern)
    assert reads(b_layer, 0, 0x11) and reads(b_layer, 64 << 10, 0x22) and not reads(b_layer, 128 << 10, 0x33)
    # Deleting the head of a stopped machine merges into its active image.
    snapshots.delete(m, "b", emit=noop)
    m = machine(project, "web")
    assert snapshots.load_index(m, m.state).snapshots == []
    assert backing(Path(m.state.disk)) == str(paths.vmctl_home() / "box.img")
    for offset, pattern in ((0, 0x11), (64 << 10, 0x22), (128 << 10, 0x33)):
        assert reads(Path(m.state.disk), offset, pattern)
    assert sorted(p.name for p in (Path(m.state.disk).parent).rglob("*.qcow2")) == [Path(m.state.disk).name]


def test_deleting_the_head_of_a_running_machine_commits_live(project: Path, fake: FakeLibvirt) -> None:
    m = created(project, "web")
    snapshots.save(m, "s", force=False, emit=noop)
    m = machine(project, "web")
    top = Path(m.state.disk)
    fake.calls.clear()
    snapshots.delete(m, "s", emit=noop)
    m = machine(project, "web")
    assert fake.ops() == ["commit_live", "define"]
    assert m.state.disk.endswith("/disk.qcow2") and not top.exists()
    assert stat.S_IMODE(Path(m.state.disk).stat().st_mode) == 0o600


def test_a_layer_the_running_machine_reads_below_another_waits(project: Path, fake: FakeLibvirt) -> None:
    m = created(project, "web")
    snapshots.save(m, "a", force=False, emit=noop)
    snapshots.save(machine(project, "web"), "b", force=False, emit=noop)
    fake.calls.clear()
    snapshots.delete(machine(project, "web"), "a", emit=noop)
    m = machine(project, "web")
    idx = snapshots.load_index(m, m.state)
    assert fake.ops() == [] and [(s.name, s.deleted) for s in idx.snapshots] == [("a", True), ("b", False)]
    fake.default = hypervisor.POWEROFF
    snapshots.delete(m, "b", emit=noop)  # stopped now: both merge away
    m = machine(project, "web")
    assert snapshots.load_index(m, m.state).snapshots == []


def test_destroy_removes_only_the_snapshot_files_vmctl_made(tmp_path: Path) -> None:
    home = tmp_path / "m"
    folder = home / "snapshots"
    folder.mkdir(parents=True)
    for name in ("a1b2c3d4e5f6-vda.qcow2", "a1b2c3d4e5f6.vmstate"):
        (folder / name).write_text("x")
    snapshots.remove_files(home)
    assert not folder.exists()
    folder.mkdir()
    (folder / "a1b2c3d4e5f6.vmstate").write_text("x")
    (folder / "mine.txt").write_text("user")
    snapshots.remove_files(home)
    assert sorted(p.name for p in folder.iterdir()) == ["mine.txt"]


# --- files vmctl writes itself, and the XML of a saved state ----------------------------------------

@pytest.mark.parametrize(("size", "with_backing"), [(1 << 20, False), (4 << 30, True), (10 << 30, True),
                                                    (600 << 20, False), (12345 * 512, True), (qcow2.MAX_SIZE, True)])
def test_empty_qcow2_images_are_what_qemu_img_makes(tmp_path: Path, size: int, with_backing: bool) -> None:
    base = tmp_path / "base.qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(base), "1G"], check=True)
    ours, theirs = tmp_path / "ours.qcow2", tmp_path / "theirs.qcow2"
    qcow2.create(ours, size, base if with_backing else None)
    argv = ["qemu-img", "create", "-q", "-f", "qcow2"]
    argv += ["-F", "qcow2", "-u", "-b", str(base)] if with_backing else []
    subprocess.run([*argv, str(theirs), str(size)], check=True)
    check = subprocess.run(["qemu-img", "check", str(ours)], capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr
    assert stat.S_IMODE(ours.stat().st_mode) == 0o600
    assert qcow2.virtual_size(ours) == size
    assert ours.read_bytes() == theirs.read_bytes()


def test_an_empty_image_beyond_one_l1_cluster_is_refused() -> None:
    with pytest.raises(ValueError):
        qcow2.image_bytes(qcow2.MAX_SIZE + 1)


def test_saved_xml_points_at_the_current_images() -> None:
    xml = """<domain type='qemu'><name>d</name><devices>
      <disk type='file' device='disk'><driver name='qemu' type='qcow2'/>
        <source file='/h/disk.qcow2' index='2'/>
        <backingStore type='file' index='3'><format type='qcow2'/><source file='/box.img'/><backingStore/></backingStore>
        <target dev='vda' bus='virtio'/></disk>
      <disk type='file' device='disk'><source file='/h/other.qcow2'/><backingStore/><target dev='vdb' bus='virtio'/></disk>
    </devices>
    <qemu:commandline xmlns:qemu='http://libvirt.org/schemas/domain/qemu/1.0'><qemu:arg value='-x'/></qemu:commandline>
    </domain>"""
    fixed = vmstate.fix_saved_xml(xml, {"vda": "/h/snapshots/a1b2c3d4e5f6-vda.qcow2"})
    assert "backingStore" not in fixed
    assert "<source file=\"/h/snapshots/a1b2c3d4e5f6-vda.qcow2\" />" in fixed
    assert "/h/other.qcow2" in fixed and "index=" not in fixed
    assert 'xmlns:qemu="http://libvirt.org/schemas/domain/qemu/1.0"' in fixed
    raw = xml.replace("<source file='/h/other.qcow2'/>", "<driver name='qemu' type='raw'/><source file='/h/disk-vdb.raw'/>")
    fixed = vmstate.fix_saved_xml(raw, {"vdb": "/h/snapshots/a1b2c3d4e5f6-vdb.qcow2"}, {"vdb": "qcow2"})
    assert "type=\"raw\"" not in fixed and fixed.count("type=\"qcow2\"") == 2


def test_errors_name_their_class_for_machine_readable_output() -> None:
    assert issubclass(SnapshotError, Exception) and SnapshotError("x").exit_code == 1


# --- QEMU's side: the order of the QMP commands, and their transports ----------------------

class FakeMonitor(vmstate.Monitor):
    """A QEMU that answers the commands vmstate sends, with one disk vda on IMAGE."""

    XML = """<domain><devices><disk device='disk'><source file='/h/disk.qcow2'/><target dev='vda'/>
             <alias name='virtio-disk0'/></disk></devices></domain>"""

    def __init__(self, image: str = "/h/disk.qcow2", fail: str | None = None) -> None:
        self.image = image
        self.log: list[str] = []
        self.is_running = True
        self.fail = fail
        self.jobs: dict[str, dict[str, Any]] = {}

    def xml(self) -> str:
        return self.XML

    def pause(self) -> bool:
        self.log.append("pause")
        was, self.is_running = self.is_running, False
        return was

    def resume(self) -> None:
        self.log.append("resume")
        self.is_running = True

    def execute(self, message: dict[str, Any]) -> dict[str, Any]:
        command, args = message["execute"], message.get("arguments", {})
        if command not in ("query-jobs", "query-block", "query-named-block-nodes"):
            self.log.append(command)
        if command == self.fail:
            return {"error": {"class": "GenericError", "desc": "No space left on device"}}
        if command == "query-block":
            return {"return": [{"qdev": "/machine/peripheral/virtio-disk0/virtio-backend",
                                "inserted": {"node-name": "libvirt-1-format", "file": self.image}}]}
        if command == "query-named-block-nodes":
            return {"return": [{"node-name": "libvirt-1-format", "drv": "qcow2", "file": self.image},
                               {"node-name": "libvirt-2-format", "drv": "qcow2", "file": "/h/base.qcow2"}]}
        if command in ("snapshot-save", "snapshot-load", "blockdev-mirror", "block-commit"):
            self.jobs[args["job-id"]] = {"id": args["job-id"], "status": "ready" if "mirror" in command or "commit" in command else "concluded"}
            if command == "blockdev-mirror":
                self.pending_image = "/h/new.qcow2"
            if command == "block-commit":
                self.pending_image = "/h/base.qcow2"
        if command == "job-complete":
            self.jobs[args["id"]]["status"] = "concluded"
            self.image = self.pending_image
        if command == "job-dismiss":
            self.jobs.pop(args["id"])
        if command == "query-jobs":
            return {"return": list(self.jobs.values())}
        if command == "transaction":
            self.image = "/h/new.qcow2"
        if command == "blockdev-del" and args["node-name"].startswith("libvirt-"):
            return {"error": {"class": "GenericError", "desc": "Node is in use"}}
        return {"return": {}}


def test_save_in_qemu_pauses_saves_switches_and_resumes() -> None:
    mon = FakeMonitor()
    vmstate.save_live(mon, container="/h/s.vmstate", tag="t", overlays={"vda": "/h/new.qcow2"})
    assert mon.log == ["pause", "blockdev-add", "snapshot-save", "job-dismiss", "blockdev-del", "blockdev-add",
                       "transaction", "resume"]
    assert vmstate.disk_sources(mon) == {"vda": "/h/new.qcow2"} and mon.is_running


def test_save_in_qemu_that_fails_changes_nothing_and_resumes() -> None:
    mon = FakeMonitor(fail="snapshot-save")
    with pytest.raises(vmstate.QMPError, match="No space left") as failed:
        vmstate.save_live(mon, container="/h/s.vmstate", tag="t", overlays={"vda": "/h/new.qcow2"})
    assert failed.value.hint and "free some disk space" in failed.value.hint
    assert mon.log == ["pause", "blockdev-add", "snapshot-save", "blockdev-del", "resume"]
    assert vmstate.disk_sources(mon) == {"vda": "/h/disk.qcow2"} and mon.is_running
    mon = FakeMonitor(fail="transaction")
    with pytest.raises(vmstate.QMPError):
        vmstate.save_live(mon, container="/h/s.vmstate", tag="t", overlays={"vda": "/h/new.qcow2"})
    assert mon.log[-3:] == ["transaction", "blockdev-del", "resume"]  # the new overlay's node closed again


def test_load_in_qemu_swaps_the_disk_then_loads_and_runs() -> None:
    mon = FakeMonitor()
    vmstate.load_live(mon, container="/h/s.vmstate", tag="t", overlays={"vda": "/h/new.qcow2"})
    assert mon.log[:5] == ["pause", "blockdev-add", "blockdev-mirror", "job-complete", "job-dismiss"]
    assert mon.log[-5:] == ["blockdev-add", "snapshot-load", "job-dismiss", "blockdev-del", "resume"]
    assert vmstate.disk_sources(mon) == {"vda": "/h/new.qcow2"}
    # Already on the overlay (a second try after an interruption): no swap, only the load.
    again = FakeMonitor(image="/h/new.qcow2")
    vmstate.load_live(again, container="/h/s.vmstate", tag="t", overlays={"vda": "/h/new.qcow2"})
    assert "blockdev-mirror" not in again.log and "snapshot-load" in again.log


def test_live_commit_continues_on_the_base() -> None:
    mon = FakeMonitor()
    vmstate.commit_live(mon, target="vda", base="/h/base.qcow2")
    assert "block-commit" in mon.log and vmstate.disk_sources(mon) == {"vda": "/h/base.qcow2"}
    with pytest.raises(Exception, match="not in the backing chain"):
        vmstate.commit_live(FakeMonitor(), target="vda", base="/elsewhere.qcow2")


def test_socket_monitor_skips_events_and_matches_replies(tmp_path: Path) -> None:
    import socket
    import threading

    path = tmp_path / "mon.sock"
    status = tmp_path / "status.xml"
    status.write_text(f"<domstatus><monitor path='{path}' type='unix'/>{FakeMonitor.XML}</domstatus>")
    server = socket.socket(socket.AF_UNIX)
    server.bind(str(path))
    server.listen(1)
    seen: list[dict[str, Any]] = []

    def serve() -> None:
        conn, _ = server.accept()
        lines = conn.makefile("rb")
        conn.sendall(b'{"QMP": {"version": {}}}\n')
        for line in lines:
            request = json.loads(line)
            seen.append(request)
            conn.sendall(b'{"event": "STOP", "timestamp": {}}\n')
            status_reply = {"running": True, "status": "running"} if request["execute"] == "query-status" else {}
            conn.sendall(json.dumps({"return": status_reply, "id": request.get("id")}).encode() + b"\n")

    threading.Thread(target=serve, daemon=True).start()
    mon = vmstate.SocketMonitor(status)
    try:
        assert mon.running()
        assert mon.pause() is True
        assert [r["execute"] for r in seen] == ["qmp_capabilities", "query-status", "query-status", "stop"]
        assert vmstate._aliases(mon) == {"vda": "virtio-disk0"}
    finally:
        mon.close()
        server.close()


def test_libvirts_definition_is_brought_up_to_date_before_a_start(project: Path, fake: FakeLibvirt) -> None:
    m = created(project, "web")
    defined: list[str] = []

    class Definition:
        def __init__(self, disk: str) -> None:
            self.disk = disk

        def xml(self, name: str) -> str:
            return (f"<domain><devices><disk device='disk'><source file='{self.disk}'/><target dev='vda'/>"
                    "</disk></devices></domain>")

        def define(self, xml: str) -> None:
            defined.append(xml)

    snapshots.ensure_defined(m, Definition(m.state.disk))
    assert defined == []
    snapshots.ensure_defined(m, Definition(str(Path(m.state.disk).parent / "snapshots" / "a1b2c3d4e5f6-vda.qcow2")))
    assert len(defined) == 1 and m.state.disk in defined[0]
