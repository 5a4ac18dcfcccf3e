"""Storage pools under libvirt daemons (vmctl/storage.py): the file-or-volume decision, volume
names, pool and volume XML (checked against libvirt's schemas), a machine's disks as volumes,
and the domain XML that names them."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path
from types import SimpleNamespace

import pytest
from libvirt_schema import validate, validate_domain

from vmctl import domain, storage
from vmctl.errors import HypervisorError, MachineError

EMBEDDED = "qemu:///embed?root=/home/u/.local/share/vmctl/libvirt"


def lv(**kw: object) -> SimpleNamespace:
    return SimpleNamespace(**{"storage_pool_name": None, "storage_pool_path": None, **kw})


# --- the decision ------------------------------------------------------------------------------

def test_the_embedded_driver_keeps_files_and_daemons_use_a_pool() -> None:
    assert storage.pool_for(EMBEDDED, lv()) is None
    assert storage.pool_for(EMBEDDED, lv(storage_pool_name="fast")) is None
    assert storage.pool_for("qemu:///system", lv()) == "default"
    assert storage.pool_for("qemu:///session", lv(storage_pool_name="fast")) == "fast"
    assert storage.pool_for("qemu+ssh://host/system", lv()) == "default"


def test_pool_settings_with_the_embedded_driver_say_why_they_do_nothing() -> None:
    note = storage.embedded_pool_warning(EMBEDDED, lv(storage_pool_name="fast"))
    assert note is not None and "storage_pool_name" in note and "VMCTL_HOME" in note
    assert storage.embedded_pool_warning(EMBEDDED, lv()) is None
    assert storage.embedded_pool_warning("qemu:///system", lv(storage_pool_name="fast")) is None


@pytest.mark.parametrize("name", ["", "a/b", "x" * 101, "a b", "..", "pool\n", "é"])
def test_pool_names_are_checked(name: str) -> None:
    assert storage.pool_name_problem(name) is not None
    with pytest.raises(MachineError):
        storage.pool_for("qemu:///system", lv(storage_pool_name=name))


def test_where_a_missing_pool_is_made() -> None:
    assert storage.new_pool_path("qemu:///system", "default", None) == "/var/lib/libvirt/images"
    assert storage.new_pool_path("qemu:///session", "default", None).endswith("/.local/share/libvirt/images")
    assert storage.new_pool_path("qemu:///system", "fast", "/srv/pools/fast") == "/srv/pools/fast"
    assert storage.new_pool_path("qemu:///system", "fast", None) is None  # no folder is guessed


# --- names ---------------------------------------------------------------------------------------

def test_box_volume_names_are_clear_and_collision_free() -> None:
    name = storage.box_volume("generic/debian12", "4.3.12", "libvirt", 0, "ab" * 32)
    assert name.startswith("generic-VAGRANTSLASH-debian12_vmctl_box_4.3.12_libvirt_disk0_") and name.endswith(".img")
    assert storage.box_volume("generic/debian12", "4.3.12", "libvirt", 0, "ab" * 32) == name
    others = {
        storage.box_volume("generic/debian12", "4.3.12", "libvirt", 1, "ab" * 32),  # the second disk
        storage.box_volume("generic/debian12", "4.3.13", "libvirt", 0, "ab" * 32),  # another version
        storage.box_volume("generic/debian12", "4.3.12", "libvirt", 0, "cd" * 32),  # added again, other bytes
        storage.box_volume("generic-VAGRANTSLASH-debian12", "4.3.12", "libvirt", 0, "ab" * 32),  # same characters
    }
    assert name not in others and len(others) == 4


def test_long_and_odd_box_names_still_make_valid_volume_names() -> None:
    name = storage.box_volume("o/" + "n" * 300, "1@2", "libvirt", 0, "x")
    assert len(name) <= 200 and storage.VOLUME_NAME_RE.fullmatch(name)
    assert storage.box_volume(".hidden", "1", "libvirt", 0, "x")[0] != "."


def test_machine_volumes_are_named_for_the_machine() -> None:
    assert storage.machine_volume("0123456789ab", "disk.qcow2") == "vmctl-0123456789ab-disk.qcow2"
    assert storage.is_machine_volume("vmctl-0123456789ab-nvram.fd", "0123456789ab")
    assert not storage.is_machine_volume("vmctl-0123456789ac-disk.qcow2", "0123456789ab")
    assert not storage.is_machine_volume("other.qcow2", "0123456789ab")
    with pytest.raises(MachineError):
        storage.machine_volume("0123456789ab", "../x")


# --- XML ------------------------------------------------------------------------------------------

def test_pool_xml_is_a_directory_pool_libvirt_accepts() -> None:
    xml = storage.pool_xml("default", "/var/lib/libvirt/images")
    validate(xml, "storagepool")
    root = ET.fromstring(xml)
    assert root.get("type") == "dir" and root.findtext("target/path") == "/var/lib/libvirt/images"
    with pytest.raises(ValueError):
        storage.pool_xml("default", "relative/path")


def test_volume_xml_libvirt_accepts() -> None:
    empty = storage.volume_xml("vmctl-0123456789ab-disk-vdb.qcow2", 10 * 1024**3, "qcow2")
    validate(empty, "storagevol")
    assert ET.fromstring(empty).find("backingStore") is None
    overlay = storage.volume_xml("vmctl-0123456789ab-disk.qcow2", 4 * 1024**3, "qcow2",
                                 backing="/var/lib/libvirt/images/b_vmctl_box_1_libvirt_disk0_0123456789.img",
                                 backing_format="qcow2")
    validate(overlay, "storagevol")
    root = ET.fromstring(overlay)
    assert root.findtext("capacity") == str(4 * 1024**3) and root.find("target/format").get("type") == "qcow2"
    assert root.findtext("backingStore/path").endswith("disk0_0123456789.img")
    assert root.findtext("target/permissions/mode") == "0600"
    with pytest.raises(ValueError):
        storage.volume_xml("x.img", 1, "vmdk")


# --- a machine's disks as volumes, and its domain -------------------------------------------------

def _machine(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, extra: str = "") -> tuple[object, object, Path]:
    from vmctl.machine import disks, hardware
    from vmctl.machine.state import MachineState
    from vmctl.vagrantfile.loader import evaluate_project

    monkeypatch.setenv("VMCTL_HOME", str(tmp_path / "home"))
    project = tmp_path / "project"
    project.mkdir()
    (project / "tools.iso").write_bytes(b"")
    (project / "Vagrantfile").write_text(
        'Vagrant.configure("2") do |config|\n  config.vm.box = "vmctl/debian"\n'
        '  config.vm.provider :libvirt do |lv|\n    lv.storage :file, size: "1G"\n'
        f'    lv.storage :file, size: "1G", path: "shared.qcow2", allow_existing: true\n{extra}  end\nend\n')
    cfg = evaluate_project(project / "Vagrantfile", env={"HOME": "/home/tester"}).machines[0]
    mid = "0123456789ab"
    folder = tmp_path / "home" / "machines" / mid
    st = MachineState(id=mid, domain="vmctl-p-default-012345", uri="qemu:///system",
                      disk=str(folder / "disk.qcow2"), console_log=str(folder / "console.log"), ssh_port=2222,
                      ssh_user="vagrant", uuid=hardware.domain_uuid(mid), pool="default")
    planned = disks.plan(cfg, mid, disks.Box(Path("/var/lib/libvirt/images/box.img"), "qcow2", 2 * 1024**3),
                         machine_type="pc", tpm_dir=None, nvram_template=None)
    st.disks = disks.in_pool(planned, "default", mid)
    return cfg, st, project


def test_every_disk_vmctl_makes_becomes_a_volume(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from vmctl.machine import disks
    from vmctl.machine.state import MachineState

    _, st, project = _machine(tmp_path, monkeypatch, '    lv.storage :file, device: :cdrom, path: "tools.iso"\n')
    by_name = {d.name: d for d in st.disks}
    assert by_name["box"].volume == "vmctl-0123456789ab-disk.qcow2"
    assert by_name["box"].source == "/var/lib/libvirt/images/box.img"  # the overlay stands on the box volume
    assert by_name["vdb"].volume == "vmctl-0123456789ab-disk-vdb.qcow2"
    assert (by_name["shared.qcow2"].volume, by_name["shared.qcow2"].owner) == ("shared.qcow2", "user")
    cdrom = next(d for d in st.disks if d.role == "cdrom")
    assert cdrom.pool is None and cdrom.path == str(project / "tools.iso")  # a host image stays a path
    assert all(d.pool == "default" for d in st.disks if d.role != "cdrom")
    # The state round-trips, and a state naming another machine's volume is refused.
    data = {**st.__dict__, "disks": [d.json() for d in st.disks], "forwards": []}
    again = MachineState.from_json(data)
    assert again.pool == "default" and again.disks == st.disks
    bad = dict(data, disks=[dict(st.disks[0].json(), volume="vmctl-ffffffffffff-disk.qcow2")])
    with pytest.raises(ValueError):
        MachineState.from_json(bad)
    with pytest.raises(ValueError):
        MachineState.from_json(dict(data, pool="a/b"))
    assert disks.status_json(st.disks)[0]["pool"] == "default"


def test_the_domain_names_pool_volumes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from vmctl.machine import disks, hardware

    cfg, st, project = _machine(tmp_path, monkeypatch)
    seed = disks.seed_disk(Path("/x/cidata.iso"), st.disks, machine_type="pc")
    from dataclasses import replace

    seed = replace(seed, pool="default", volume=storage.machine_volume(st.id, disks.SEED_FILE))
    host = hardware.Host(accel="tcg", uri=st.uri, embedded=False, is_root=True)
    spec, _ = hardware.build(cfg, st, [*st.all_disks(), seed], project_root=project, host=host, private_nics=(),
                             forwards=(domain.Forward("127.0.0.1", 2222, 22),))
    xml = domain.render_domain(spec)
    validate_domain(xml)
    found = {d.find("target").get("dev"): d for d in ET.fromstring(xml).findall("devices/disk")}
    assert found["vda"].get("type") == "volume"
    assert found["vda"].find("source").attrib == {"pool": "default", "volume": "vmctl-0123456789ab-disk.qcow2"}
    assert found["hdc"].find("source").get("volume") == "vmctl-0123456789ab-cidata.iso"
    assert found["hdc"].get("device") == "cdrom"


def test_ensure_makes_volumes_through_the_connection() -> None:
    """The pool branch of disks.ensure: an overlay volume on the box volume, grown later."""
    from vmctl.machine import disks

    class Pool:
        def __init__(self) -> None:
            self.volumes: dict[str, tuple[str, int]] = {}

        def volume_path(self, pool: str, name: str) -> str | None:
            return f"/pools/{pool}/{name}" if name in self.volumes else None

        def create_volume(self, pool: str, xml: str) -> str:
            root = ET.fromstring(xml)
            self.volumes[root.findtext("name")] = (xml, int(root.findtext("capacity")))
            return f"/pools/{pool}/{root.findtext('name')}"

        def volume_capacity(self, pool: str, name: str) -> int:
            return self.volumes[name][1]

        def resize_volume(self, pool: str, name: str, capacity: int) -> None:
            self.volumes[name] = (self.volumes[name][0], capacity)

    conn = Pool()
    disk = disks.MachineDisk(role="box", name="box", path="", target="vda", format="qcow2", size=2 * 1024**3,
                             source="/pools/default/box.img", source_format="qcow2", pool="default",
                             volume="vmctl-0123456789ab-disk.qcow2")

    def no_run(*_a: object, **_k: object) -> None:
        raise AssertionError("a pool volume is never made with a local command")

    disks.ensure(disk, run=no_run, conn=conn)
    assert disk.path == "/pools/default/vmctl-0123456789ab-disk.qcow2"
    xml, _ = conn.volumes["vmctl-0123456789ab-disk.qcow2"]
    assert ET.fromstring(xml).findtext("backingStore/path") == "/pools/default/box.img"
    disk.size = 3 * 1024**3
    grown: list[str] = []
    disks.ensure(disk, run=no_run, conn=conn, emit=grown.append)
    assert conn.volumes["vmctl-0123456789ab-disk.qcow2"][1] == 3 * 1024**3 and grown


# --- box remove: the box's volumes, and the pools that cannot be reached ---------------------------

def test_box_uploads_are_recorded_and_removed_or_reported(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from vmctl.boxes import pools

    monkeypatch.setenv("VMCTL_HOME", str(tmp_path / "home"))
    box = SimpleNamespace(dir=tmp_path)
    assert pools.entries(box) == []  # type: ignore[arg-type]
    # libvirt's test driver (no daemon) has a pool, which no longer holds the volume: done.
    pools.record(box, "test:///default", "default-pool", "b_vmctl_box_1_libvirt_disk0_0123456789.img")  # type: ignore[arg-type]
    unreachable = "qemu+unix:///system?socket=/nonexistent/libvirt-sock"
    pools.record(box, unreachable, "default", "b_vmctl_box_1_libvirt_disk0_0123456789.img")  # type: ignore[arg-type]
    pools.record(box, unreachable, "default", "b_vmctl_box_1_libvirt_disk0_0123456789.img")  # type: ignore[arg-type]
    assert len(pools.entries(box)) == 2  # type: ignore[arg-type]
    assert pools.recorded(box, unreachable, "default", "b_vmctl_box_1_libvirt_disk0_0123456789.img")  # type: ignore[arg-type]
    results = storage.remove_box_volumes(box)
    assert [problem is None for _, problem in results] == [True, False]
    assert "could not connect" in (results[1][1] or "")
    # A record that is not vmctl's shape is ignored, never trusted.
    (tmp_path / pools.POOLS_RECORD).write_text('[{"uri": 1}, "x", {"uri": "a", "pool": "b"}]')
    assert pools.entries(box) == []  # type: ignore[arg-type]


def test_pool_settings_from_a_vagrantfile_are_checked_and_never_silently_ignored(tmp_path: Path) -> None:
    from vmctl.errors import ConfigError
    from vmctl.machine import hardware
    from vmctl.vagrantfile.loader import evaluate_project

    def settings(body: str) -> object:
        (tmp_path / "Vagrantfile").write_text(
            f'Vagrant.configure("2") do |config|\n  config.vm.box = "b"\n'
            f'  config.vm.provider :libvirt do |lv|\n    {body}\n  end\nend\n')
        return evaluate_project(tmp_path / "Vagrantfile", env={"HOME": "/home/tester"}).machines[0]

    for bad in ('lv.storage_pool_path = "images"', 'lv.storage_pool_path = "/a b"', 'lv.storage_pool_name = "a/b"'):
        with pytest.raises(ConfigError):
            settings(bad)
    cfg = settings('lv.storage_pool_name = "fast"\n    lv.storage_pool_path = "/srv/fast"')
    assert storage.pool_for("qemu:///system", cfg.libvirt) == "fast"  # type: ignore[attr-defined]
    host = hardware.Host(accel="tcg", uri=EMBEDDED, embedded=True)
    assert any("storage_pool_name and libvirt.storage_pool_path" in w
               for w in hardware.check_host(cfg, host))  # type: ignore[arg-type]


def test_a_box_volume_another_user_uploaded_whole_is_shared_never_deleted(tmp_path: Path,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """Two VMCTL_HOMEs (two users) on one libvirt host: the second finds the box volume the
    first uploaded. Its upload mark says it is whole: it is used as it is, not deleted and sent
    again (the first user's machines are backed by it), and recorded as the second's too (box
    remove deletes it only when no overlay stands on it).
    Without the mark (an upload cut off) it is deleted and uploaded again, then marked."""
    from vmctl.boxes import pools

    class Pool:
        def __init__(self) -> None:
            self.volumes: set[str] = set()
            self.log: list[str] = []

        def volume_path(self, pool: str, name: str) -> str | None:
            return f"/pools/{pool}/{name}" if name in self.volumes else None

        def delete_volume(self, pool: str, name: str) -> bool:
            self.log.append(f"delete {name}")
            gone = name in self.volumes
            self.volumes.discard(name)
            return gone

        def upload_volume(self, pool: str, name: str, local: str) -> str:
            self.log.append(f"upload {name}")
            self.volumes.add(name)
            return f"/pools/{pool}/{name}"

        def create_volume(self, pool: str, xml: str) -> str:
            name = ET.fromstring(xml).findtext("name") or ""
            if name in self.volumes:
                raise HypervisorError(f"storage volume '{name}' exists already")
            self.log.append(f"create {name}")
            self.volumes.add(name)
            return f"/pools/{pool}/{name}"

        def volume_ctime(self, pool: str, name: str) -> float | None:
            return self.ctime.get(name) if name in self.volumes else None

    image = tmp_path / "box.img"
    image.write_bytes(b"qcow2")
    box = SimpleNamespace(dir=tmp_path, name="vmctl/tiny", version="1.0.0", provider="libvirt",
                          record={"sha256": "ab" * 32})
    volume = storage.box_volume("vmctl/tiny", "1.0.0", "libvirt", 0, "ab" * 32)
    mark = storage.upload_mark(volume)
    lock = storage.upload_lock(volume)
    assert mark.endswith("_libvirt_disk0_" + volume.rsplit("_", 1)[1].removesuffix(".img") + ".ok")
    assert lock == mark.removesuffix(".ok") + ".lock"
    conn = Pool()
    conn.ctime = {}
    # user one uploads it: the volume, then its mark
    monkeypatch.setenv("VMCTL_HOME", str(tmp_path / "one"))
    storage.upload_box_disks(conn, "qemu+ssh://h/system", "default", box, [(image, "qcow2")], notify=lambda _t: None)
    assert conn.log == [f"create {lock}", f"upload {volume}", f"delete {mark}", f"create {mark}", f"delete {lock}"]
    # user two: used as it is, and recorded as theirs too
    monkeypatch.setenv("VMCTL_HOME", str(tmp_path / "two"))
    (tmp_path / pools.POOLS_RECORD).unlink()  # the record lives in the box folder of each home's store
    conn.log.clear()
    got = storage.upload_box_disks(conn, "qemu+ssh://h/system", "default", box, [(image, "qcow2")],
                                   notify=lambda _t: None)
    assert got == [f"/pools/default/{volume}"] and conn.log == []
    assert pools.recorded(box, "qemu+ssh://h/system", "default", volume)  # type: ignore[arg-type]
    (tmp_path / pools.POOLS_RECORD).unlink()
    # an upload that was cut off (no mark): not trusted
    conn.volumes.discard(mark)
    storage.upload_box_disks(conn, "qemu+ssh://h/system", "default", box, [(image, "qcow2")], notify=lambda _t: None)
    assert conn.log == [f"create {lock}", f"delete {volume}", f"upload {volume}", f"delete {mark}", f"create {mark}",
                        f"delete {lock}"]


def test_box_remove_keeps_a_box_volume_other_machines_stand_on(tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """Another VMCTL_HOME's (another user's) overlay on the shared box volume: box remove
    keeps the volume and its upload mark, and says why; once no overlay stands on it, it goes.
    libvirt's test driver, held open so that its pool lives across vmctl's connections."""
    import libvirt

    from vmctl.boxes import pools

    monkeypatch.setenv("VMCTL_HOME", str(tmp_path / "home"))
    held = libvirt.open("test:///default")
    try:
        pool = held.storagePoolLookupByName("default-pool")
        volume = storage.box_volume("vmctl/tiny", "1.0.0", "libvirt", 0, "cd" * 32)
        box_vol = pool.createXML(storage.volume_xml(volume, 1 << 20, "qcow2"), 0)
        pool.createXML(storage.volume_xml(storage.upload_mark(volume), 0, "raw"), 0)
        overlay = pool.createXML(storage.volume_xml("vmctl-0123456789ab-disk.qcow2", 1 << 20, "qcow2",
                                                    backing=box_vol.path()), 0)
        box = SimpleNamespace(dir=tmp_path)
        pools.record(box, "test:///default", "default-pool", volume)  # type: ignore[arg-type]
        [(_, kept)] = storage.remove_box_volumes(box)
        assert isinstance(kept, storage.Kept) and "vmctl-0123456789ab-disk.qcow2" in kept
        assert {volume, storage.upload_mark(volume)} <= set(pool.listVolumes())
        overlay.delete(0)
        assert storage.remove_box_volumes(box) == [(pools.entries(box)[0], None)]  # type: ignore[arg-type]
        assert not {volume, storage.upload_mark(volume)} & set(pool.listVolumes())
    finally:
        held.close()


def test_a_second_vmctl_waits_for_the_upload_lock_of_the_first(tmp_path: Path) -> None:
    """Two users upload one box volume: the second finds the first's lock volume and waits
    for its mark (then shares the volume); a lock a day old is a killed vmctl's and is taken;
    a lock this VMCTL_HOME left (its local record says so) is removed at once; a wait past
    UPLOAD_WAIT stops with the command that removes the lock."""
    ours = tmp_path / "holds-volume"
    volume = storage.box_volume("vmctl/tiny", "1.0.0", "libvirt", 0, "ef" * 32)
    lock, mark = storage.upload_lock(volume), storage.upload_mark(volume)

    class Pool:
        def __init__(self, *names: str) -> None:
            self.volumes, self.ctime, self.log = set(names), {lock: 1000.0}, []

        def create_volume(self, pool: str, xml: str) -> str:
            name = ET.fromstring(xml).findtext("name") or ""
            if name in self.volumes:
                raise HypervisorError(f"storage volume '{name}' exists already")
            self.volumes.add(name)
            self.log.append(f"create {name}")
            return name

        def volume_path(self, pool: str, name: str) -> str | None:
            return name if name in self.volumes else None

        def volume_ctime(self, pool: str, name: str) -> float | None:
            return self.ctime.get(name) if name in self.volumes else None

        def delete_volume(self, pool: str, name: str) -> bool:
            self.log.append(f"delete {name}")
            self.volumes.discard(name)
            return True

    now = [2000.0]
    said: list[str] = []

    def turn(conn: Pool) -> bool:
        def sleep(seconds: float) -> None:
            now[0] += seconds
            if now[0] > 2010:  # the other vmctl's upload ends
                conn.volumes |= {volume, mark}
                conn.volumes.discard(lock)
        with storage._upload_turn(conn, "qemu+ssh://h/system", "default", volume, said.append, ours,
                                  clock=lambda: now[0], sleep=sleep) as mine:
            assert ours.exists() == mine  # held: recorded here
            return mine

    # another's upload in progress: wait, then share it (no lock of ours made or removed)
    busy = Pool(lock, volume)
    assert turn(busy) is False and busy.log == [] and "waiting for another vmctl's upload" in said[0]
    # a lock a day old: taken, and removed again on the way out
    stale = Pool(lock)
    now[0] = 1000.0 + storage.STALE_UPLOAD_LOCK + 1
    assert turn(stale) is True and stale.log == [f"delete {lock}", f"create {lock}", f"delete {lock}"]
    assert not ours.exists()
    # this VMCTL_HOME's own lock, left by an upload that lost its connection: removed at once
    left = Pool(lock)
    left.ctime[lock] = now[0] = 3000.0
    ours.touch()
    assert turn(left) is True and left.log == [f"delete {lock}", f"create {lock}", f"delete {lock}"]
    assert "interrupted upload" in said[-1] and not ours.exists()
    # a live lock that never goes: an error naming the command that removes it
    stuck = Pool(lock)
    stuck.ctime[lock] = now[0] = 5000.0

    def never(seconds: float) -> None:
        now[0] += seconds

    with pytest.raises(MachineError) as err, storage._upload_turn(stuck, "qemu+ssh://h/system", "default", volume,
                                                                  said.append, ours, clock=lambda: now[0],
                                                                  sleep=never):
        pass
    assert f"vol-delete --pool default {lock}" in (err.value.hint or "")
