"""Every disk of a machine: made, grown, kept and removed in one place (vmctl/machine/disks.py),
domain names as vagrant-libvirt makes them, and destroy's care with what is not its own.
qemu-img runs; no VM."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from vmctl import hypervisor
from vmctl.machine import Machine, disks
from vmctl.machine.lifecycle import domain_name
from vmctl.machine.state import MachineState
from vmctl.run import run
from vmctl.state import IndexEntry, save_index
from vmctl.vagrantfile.model import LibvirtSettings, MachineConfig

MID = "0123456789ab"


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("VMCTL_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


def image_size(path: Path) -> int:
    out = subprocess.run(["qemu-img", "info", "--output=json", str(path)], capture_output=True, check=True).stdout
    return int(json.loads(out)["virtual-size"])


def test_disks_are_made_grown_and_never_shrunk(tmp_path: Path, home: Path) -> None:
    box = tmp_path / "box.img"
    run(["qemu-img", "create", "-q", "-f", "qcow2", str(box), "1G"], purpose="a box")
    folder = home / "machines" / MID
    made = [
        disks.MachineDisk(role="box", name="box", path=str(folder / "disk.qcow2"), format="qcow2", size=2 * 1024**3,
                          source=str(box), source_format="qcow2"),
        disks.MachineDisk(role="extra", name="vdb", path=str(folder / "disk-vdb.raw"), format="raw", size=64 * 1024**2),
        disks.MachineDisk(role="volume", name="keep.qcow2", path=str(home / "volumes" / "keep.qcow2"), owner="user",
                          format="qcow2", size=32 * 1024**2),
        disks.MachineDisk(role="nvram", name="nvram", path=str(folder / "nvram.fd"),
                          source="/usr/share/OVMF/OVMF_VARS_4M.fd"),
        disks.MachineDisk(role="floppy", name="answers", path=str(folder / "floppy-answers.img"), format="raw",
                          size=disks.FLOPPY_BYTES),
    ]
    for d in made:
        disks.ensure(d, run=run)
        disks.ensure(d, run=run)  # idempotent
    assert image_size(folder / "disk.qcow2") == 2 * 1024**3
    backing = json.loads(subprocess.run(["qemu-img", "info", "--output=json", str(folder / "disk.qcow2")],
                                        capture_output=True, check=True).stdout)["backing-filename"]
    assert backing == str(box)
    assert image_size(folder / "disk-vdb.raw") == 64 * 1024**2
    assert (folder / "nvram.fd").read_bytes() == Path("/usr/share/OVMF/OVMF_VARS_4M.fd").read_bytes()
    assert (folder / "floppy-answers.img").stat().st_size == disks.FLOPPY_BYTES
    for name in ("disk.qcow2", "disk-vdb.raw", "nvram.fd"):
        assert (folder / name).stat().st_mode & 0o777 == 0o600
    made[1].size = 128 * 1024**2
    disks.ensure(made[1], run=run)
    assert image_size(folder / "disk-vdb.raw") == 128 * 1024**2
    made[1].size = 16 * 1024**2  # merge() never plans a smaller disk; ensure never shrinks one either
    disks.ensure(made[1], run=run)
    assert image_size(folder / "disk-vdb.raw") == 128 * 1024**2


def test_remove_takes_what_vmctl_made_and_nothing_else(tmp_path: Path, home: Path) -> None:
    folder = home / "machines" / MID
    volumes = home / "volumes"
    folder.mkdir(parents=True)
    volumes.mkdir()
    for name in ("disk.qcow2", "console.log", "nvram.fd", "disk-vdb.qcow2", "serial-x.log", "channel-a.sock"):
        (folder / name).write_text("vmctl's")
    (folder / "notes.txt").write_text("the user's")
    (volumes / "made.qcow2").write_text("vmctl's")
    (volumes / "kept.qcow2").write_text("allow_existing")
    (volumes / "other.qcow2").write_text("another machine's")
    listed = [
        disks.MachineDisk(role="volume", name="made.qcow2", path=str(volumes / "made.qcow2")),
        disks.MachineDisk(role="volume", name="kept.qcow2", path=str(volumes / "kept.qcow2"), owner="user"),
        disks.MachineDisk(role="cdrom", name="hda", path=str(tmp_path / "image.iso"), owner="user"),
    ]
    (tmp_path / "image.iso").write_text("iso")
    left = disks.remove(listed, MID)
    assert left == ["notes.txt"]
    assert sorted(p.name for p in folder.iterdir()) == ["notes.txt"]
    assert sorted(p.name for p in volumes.iterdir()) == ["kept.qcow2", "other.qcow2"]
    assert (tmp_path / "image.iso").exists()
    assert disks.remove(listed, MID) == ["notes.txt"]  # again: nothing more to do


@pytest.mark.parametrize("entry", [
    {"role": "extra", "name": "x", "path": "/etc/passwd"},
    {"role": "extra", "name": "x", "path": "{home}/machines/0123456789ab/../../../precious"},
    {"role": "extra", "name": "x", "path": "{home}/machines/0123456789ab/notes.txt"},
    {"role": "volume", "name": "x", "path": "{home}/volumes/sub/x.qcow2"},
    {"role": "nvram", "name": "x", "path": "{home}/machines/ffffffffffff/nvram.fd"},
    {"role": "disk", "name": "x", "path": "{home}/machines/0123456789ab/disk.qcow2"},
    {"role": "extra", "name": "x", "path": "{home}/machines/0123456789ab/disk-x.qcow2", "owner": "root"},
])
def test_a_state_naming_files_outside_vmctls_folders_is_refused(home: Path, entry: dict[str, Any]) -> None:
    data = json.loads(json.dumps(entry).replace("{home}", str(home)))
    with pytest.raises(ValueError):
        disks.MachineDisk.from_json(data, MID)


def test_a_state_of_vmctls_shape_is_accepted(home: Path) -> None:
    folder = home / "machines" / MID
    for path in (folder / "disk-vdb.qcow2", folder / "nvram.fd", home / "volumes" / "data.qcow2"):
        disks.MachineDisk.from_json({"role": "extra", "name": "x", "path": str(path)}, MID)
    user = disks.MachineDisk.from_json({"role": "cdrom", "name": "x", "path": "/isos/x.iso", "owner": "user"}, MID)
    assert user.owner == "user"


def config(name: str = "default", **libvirt: Any) -> MachineConfig:
    return MachineConfig(name=name, libvirt=LibvirtSettings(**libvirt))


def test_domain_names() -> None:
    project = Path("/home/u/work")
    assert domain_name(config(), project, MID) == "vmctl-work-default-012345"
    # vagrant-libvirt's: the prefix as written, then the machine name, reduced to [-a-z0-9_.]
    assert domain_name(config(default_prefix="changed_default_prefix"), project, MID) == "changed_default_prefixdefault"
    assert domain_name(config("web 1", default_prefix="My Project/"), project, MID) == "MyProjectweb1"
    assert domain_name(config(default_prefix=""), project, MID) == "default"
    named = domain_name(config(default_prefix="p_", random_hostname=True), project, MID)
    assert named.startswith("p_default_") and named.endswith(MID)


@contextmanager
def fake_connect(xml: str | None, calls: list[str]) -> Iterator[Any]:
    class Conn:
        def xml(self, name: str) -> str | None:
            return xml

        def destroy(self, name: str, discard: bool = False) -> None:
            calls.append(f"destroy {name}")

        def undefine(self, name: str) -> None:
            calls.append(f"undefine {name}")

    yield Conn()


@pytest.mark.parametrize(("meta_id", "touched"), [(MID, True), ("ffffffffffff", False), (None, False)])
def test_destroy_removes_a_domain_only_when_its_metadata_says_it_is_the_machines(
        tmp_path: Path, home: Path, monkeypatch: pytest.MonkeyPatch, meta_id: str | None, touched: bool) -> None:
    project = tmp_path / "project"
    project.mkdir()
    folder = home / "machines" / MID
    folder.mkdir(parents=True)
    (folder / "disk.qcow2").write_text("disk")
    st = MachineState(id=MID, domain="work_default", uri="qemu:///embed?root=/nowhere", disk=str(folder / "disk.qcow2"),
                      console_log=str(folder / "console.log"), ssh_port=2222, ssh_user="vagrant", phase="created")
    state_dir = project / ".vmctl" / "machines" / "default"
    state_dir.mkdir(parents=True)
    from dataclasses import asdict

    (state_dir / "state.json").write_text(json.dumps(asdict(st)))
    save_index({MID: IndexEntry(id=MID, name="default", project=str(project), domain="work_default", uri=st.uri)})
    metadata = "" if meta_id is None else (
        f'<metadata><vmctl:machine xmlns:vmctl="https://github.com/vmctl/vmctl/xmlns/machine/1" id="{meta_id}"/></metadata>')
    calls: list[str] = []
    monkeypatch.setattr(hypervisor, "connect", lambda uri: fake_connect(f"<domain>{metadata}</domain>", calls))
    m = Machine(project, config())
    assert m.destroy(emit=lambda text: None)
    assert calls == (["destroy work_default", "undefine work_default"] if touched else [])
    assert not folder.exists()  # vmctl's own files go either way
    assert not (state_dir / "state.json").exists()


def test_status_json_lists_every_disk(tmp_path: Path, home: Path) -> None:
    project = tmp_path / "project"
    project.mkdir()
    folder = home / "machines" / MID
    st = MachineState(id=MID, domain="vmctl-p-default-012345", uri="qemu:///embed?root=/x", disk=str(folder / "disk.qcow2"),
                      console_log=str(folder / "console.log"), ssh_port=2222, ssh_user="vagrant", phase="created",
                      disks=[disks.MachineDisk(role="box", name="box", path=str(folder / "disk.qcow2"), target="vda",
                                               bus="virtio", format="qcow2", size=20 * 1024**3),
                             disks.MachineDisk(role="extra", name="vdb", path=str(folder / "disk-vdb.qcow2"), target="vdb",
                                               bus="virtio", format="qcow2", size=1024**3, attached=False)])
    m = Machine(project, config())
    m._state, m._state_loaded = st, True
    shown = m.status_json("poweroff")["disks"]
    assert [(d["name"], d["device"], d["size"], d["attached"]) for d in shown] == [
        ("box", "vda", 20 * 1024**3, True), ("vdb", "vdb", 1024**3, False)]
    assert os.environ["VMCTL_HOME"] == str(home)
