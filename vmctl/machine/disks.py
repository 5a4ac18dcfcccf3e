"""Every disk of a machine, as one list, and the one place that creates and removes them.

    VMCTL_HOME/machines/ID/disk.qcow2       the overlay on the box image (role "box")
    VMCTL_HOME/machines/ID/disk-box-N.qcow2 overlays on a multi-disk box's other images
    VMCTL_HOME/machines/ID/disk-NAME.FMT    extra disks (libvirt.storage, config.vm.disk)
    VMCTL_HOME/machines/ID/floppy-NAME.img  a blank floppy (config.vm.disk :floppy without file:)
    VMCTL_HOME/machines/ID/nvram.fd         the machine's copy of the UEFI variables store
    VMCTL_HOME/machines/ID/cidata.iso       cloud-init's seed, a read-only CD-ROM (written by boot.py)
    VMCTL_HOME/volumes/NAME                 a named volume (libvirt.storage path: NAME)
    LIBVIRT_ROOT/lib/swtpm/UUID             the emulated TPM's state (libvirt's swtpm keeps it)
    anywhere                                CD-ROM and floppy images the Vagrantfile names (read-only)

That is the embedded driver's layout. Under a libvirt daemon (qemu:///system ...) every disk
vmctl makes is instead a volume in the daemon's storage pool (vmctl/storage.py decides and
names them): the same list, each such disk with `pool` and `volume` set and `path` the
volume's path on the daemon's host. ensure() and remove_volumes() are the one place that
tells the two apart; the domain XML then names the pool and volume.

Each disk is a MachineDisk with an owner: "vmctl" (vmctl made it and removes it on
destroy), "libvirt" (libvirt made it and removes it when the domain is undefined), "user"
(it was there before, or allow_existing asked to keep it: never removed). The list is
written to state.json before any disk is made, so a killed `up` leaves a list that
`destroy` follows; making a disk that exists already is skipped, removing one that is gone
is fine. Snapshots (vmctl/machine/snapshots.py) freeze and layer the machine's own
writable disks of this list: once a snapshot is taken, such a disk's path is one of its
qcow2 overlays (snapshots/ID-TARGET.qcow2, format qcow2) on top of the file `up` made.

On each start of a stopped machine the list is planned again from the Vagrantfile: new
disks are made, grown ones resized (a disk never shrinks), and disks no longer named are
detached but kept until destroy (their data is not thrown away by an edit).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import stat
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vmctl import paths, untrusted
from vmctl.errors import MachineError
from vmctl.records import Frozen

if TYPE_CHECKING:
    from vmctl.vagrantfile.model import MachineConfig

log = logging.getLogger("vmctl.machine")

ROLES = ("box", "extra", "volume", "cdrom", "floppy", "nvram", "tpm")
OWNERS = ("vmctl", "libvirt", "user")
BOX_DISK = "disk.qcow2"
NVRAM_FILE = "nvram.fd"
CONSOLE_FILE = "console.log"
SEED_FILE = "cidata.iso"  # cloud-init's NoCloud seed, attached as a CD-ROM (vmctl/cloudinit.py)
# The files vmctl (or QEMU for it) makes in VMCTL_HOME/machines/ID: fixed names, and names
# with these prefixes. destroy removes these and nothing else there.
MACHINE_HOME_FILES = (BOX_DISK, CONSOLE_FILE, NVRAM_FILE, SEED_FILE)
MACHINE_HOME_PREFIXES = ("disk-", "floppy-", "serial-", "channel-")
# Overlays made by snapshot commands (vmctl/machine/snapshots.py): VMCTL_HOME/machines/ID/snapshots/LID-TARGET.qcow2
SNAPSHOTS_DIR = "snapshots"
OVERLAY_RE = re.compile(r"[0-9a-f]{12}-[a-z][a-z0-9]{1,11}\.qcow2")
FLOPPY_BYTES = 1474560


@dataclass
class MachineDisk:
    role: str  # one of ROLES
    name: str  # what status shows: "box", "vdb", the config.vm.disk name, "nvram", "tpm"
    path: str
    owner: str = "vmctl"  # one of OWNERS
    target: str | None = None  # the guest's device name (vda, sdb, hda, fda)
    bus: str | None = None
    format: str | None = None  # qcow2 | raw
    size: int | None = None  # bytes the guest sees (disks made by vmctl)
    source: str | None = None  # what it was made from (the box image, the NVRAM template)
    source_format: str | None = None  # the box image's format (qcow2 | raw)
    attached: bool = True  # False: no longer in the Vagrantfile, kept until destroy
    readonly: bool = False
    options: dict[str, Any] | None = None  # libvirt driver options: cache, io, discard, serial ...
    pool: str | None = None  # a volume in this libvirt storage pool (daemon URIs), else a file
    volume: str | None = None  # its name in the pool

    @classmethod
    def from_json(cls, data: Any, machine_id: str) -> MachineDisk:
        """DATA checked: an entry vmctl removes must name a file in vmctl's own folders."""
        if not isinstance(data, dict):
            raise ValueError("a disk is not a JSON object")
        disk = cls(**{k: v for k, v in data.items() if k in cls.__dataclass_fields__})
        if disk.role not in ROLES or disk.owner not in OWNERS or not isinstance(disk.path, str):
            raise ValueError(f"disk {disk.name!r} is not in vmctl's shape")
        if disk.pool is not None or disk.volume is not None:
            from vmctl import storage

            if storage.pool_name_problem(disk.pool) is not None or not isinstance(disk.volume, str):
                raise ValueError(f"disk {disk.name!r} names no pool volume vmctl makes")
            named = disk.role == "volume" and untrusted.file_name_problem(disk.volume) is None
            if disk.owner == "vmctl" and not (storage.is_machine_volume(disk.volume, machine_id) or named):
                raise ValueError(f"volume {disk.volume!r} is not one vmctl made for this machine")
        elif disk.owner == "vmctl" and not owned_path_ok(Path(disk.path), machine_id):
            raise ValueError(f"disk {disk.path!r} is not in vmctl's folders")
        return disk

    def json(self) -> dict[str, Any]:
        return asdict(self)


def is_overlay(home: Path, path: object) -> bool:
    """Whether PATH is the box disk's image in the machine folder HOME: the overlay `up`
    makes, or one a snapshot made (snapshots/ID-TARGET.qcow2)."""
    if not isinstance(path, str):
        return False
    if path == str(home / BOX_DISK):
        return True
    folder = str(home / SNAPSHOTS_DIR) + "/"
    return path.startswith(folder) and OVERLAY_RE.fullmatch(path[len(folder):]) is not None


def is_snapshot_overlay(path: object) -> bool:
    """Whether PATH names an overlay a snapshot command made (a machine's
    snapshots/ID-TARGET.qcow2): always qcow2, whatever the format of the disk it continues."""
    if not isinstance(path, str):
        return False
    p = Path(path)
    return p.parent.name == SNAPSHOTS_DIR and OVERLAY_RE.fullmatch(p.name) is not None


def owned_path_ok(path: Path, machine_id: str) -> bool:
    """Whether PATH is a file vmctl may remove for machine MACHINE_ID."""
    home = paths.machines_dir() / machine_id
    if is_overlay(home, str(path)):
        return True
    if path.parent == home:
        name = path.name
        return name in MACHINE_HOME_FILES or (name.startswith(MACHINE_HOME_PREFIXES)
                                              and untrusted.file_name_problem(name) is None)
    return path.parent == paths.volumes_dir() and untrusted.file_name_problem(path.name) is None


# -- planning: the Vagrantfile's disks as a list ---------------------------------------------

class Box(Frozen):
    """What planning needs of the box: its first (boot) disk, and the others of a multi-disk
    box (vagrant-libvirt's `disks` in metadata.json), each (image, format, size in bytes).
    Made a dataclass when first used (vmctl/records.py): status reads this module, only
    up plans disks."""

    image: Path
    format: str  # qcow2 | raw
    virtual_size: int  # bytes
    more: tuple[tuple[Path, str, int], ...] = ()


def plan(cfg: MachineConfig, machine_id: str, box: Box, *, machine_type: str, tpm_dir: Path | None,
         nvram_template: Path | None) -> list[MachineDisk]:
    """Every disk the Vagrantfile asks for, in the order the guest sees them."""
    lv = cfg.libvirt
    home = paths.machines_dir() / machine_id
    disks: list[MachineDisk] = []
    used: set[str] = set()

    def take(prefix: str) -> str:
        for letter in "abcdefghijklmnopqrstuvwxyz":
            if prefix + letter not in used:
                used.add(prefix + letter)
                return prefix + letter
        raise MachineError(f"no free disk device name {prefix}a-{prefix}z is left", hint="attach fewer disks")

    # The box disk: disk_device / disk_bus as vagrant-libvirt derives them.
    box_bus = lv.disk_bus or ("scsi" if (lv.disk_device or "").startswith("sd") else "virtio")
    box_target = lv.disk_device or ("sda" if box_bus == "scsi" else "vda")
    used.add(box_target)
    requested = [size for size in (
        (lv.machine_virtual_size or 0) * 1024**3,
        next((d.size or 0 for d in cfg.disks if d.primary), 0),
    ) if size]
    size = max([box.virtual_size, *requested])
    disks.append(MachineDisk(role="box", name="box", path=str(home / BOX_DISK), target=box_target, bus=box_bus,
                             format="qcow2", size=size, source=str(box.image), source_format=box.format,
                             options=_driver_options(cfg)))
    prefix = box_target[:2]
    for i, (image, fmt, vsize) in enumerate(box.more, 1):
        # A multi-disk box: each further disk an overlay of its own, after the first (vdb ...).
        disks.append(MachineDisk(role="box", name=f"box-{i}", path=str(home / f"disk-box-{i}.qcow2"),
                                 target=take(prefix), bus=box_bus, format="qcow2", size=vsize, source=str(image),
                                 source_format=fmt, options=_driver_options(cfg)))

    for d in lv.disks:
        bus = d.bus
        target = d.device
        if target is not None:
            if target in used:
                raise MachineError(f"libvirt.storage: the device {target} is taken (by the box disk or another disk)")
            used.add(target)
        else:
            target = take(_prefix_for(bus, prefix))
        options = {k: v for k, v in (("cache", d.cache), ("io", d.io), ("copy_on_read", d.copy_on_read),
                                     ("discard", d.discard), ("detect_zeroes", d.detect_zeroes),
                                     ("serial", d.serial), ("wwn", d.wwn), ("address_type", d.address_type))
                   if v is not None}
        if d.shareable:
            options["shareable"] = True
        if d.path is not None:
            disks.append(MachineDisk(role="volume", name=d.path, path=str(paths.volumes_dir() / d.path),
                                     owner="user" if d.allow_existing else "vmctl", target=target, bus=bus,
                                     format=d.type, size=d.size, options=options))
        else:
            disks.append(MachineDisk(role="extra", name=target, path=str(home / f"disk-{target}.{d.type}"),
                                     target=target, bus=bus, format=d.type, size=d.size, options=options))
    for d in cfg.disks:
        if d.type == "disk" and not d.primary:
            target = take(prefix)
            disks.append(MachineDisk(role="extra", name=d.name, path=str(home / f"disk-{d.name}.qcow2"),
                                     target=target, bus=_bus_for(prefix), format="qcow2", size=d.size))

    optical_bus = "sata" if _is_q35(machine_type) else "ide"
    cdroms = [(c.path, c.dev, c.bus, "cdrom") for c in lv.cdroms]
    cdroms += [(d.file, None, None, d.name) for d in cfg.disks if d.type == "dvd"]
    for path, dev, bus, name in cdroms:
        bus = bus or optical_bus
        if dev is not None:
            if dev in used:
                raise MachineError(f"the CD-ROM device {dev} is taken by another disk")
            used.add(dev)
        else:
            dev = take("hd" if bus == "ide" else "sd")
        disks.append(MachineDisk(role="cdrom", name=name if name != "cdrom" else dev, path=path or "",
                                 owner="user", target=dev, bus=bus, format="raw", readonly=True))
    floppies: list[tuple[str | None, str | None, str | None]] = [(f.path, f.dev, None) for f in lv.floppies]
    floppies += [(d.file, None, d.name) for d in cfg.disks if d.type == "floppy"]
    for path, dev, name in floppies:
        if dev is None:
            dev = take("fd")
        elif dev in used:
            raise MachineError(f"the floppy device {dev} is taken by another floppy")
        used.add(dev)
        if path is None and name is not None:  # config.vm.disk :floppy without file: a blank one
            disks.append(MachineDisk(role="floppy", name=name, path=str(home / f"floppy-{name}.img"), target=dev,
                                     bus="fdc", format="raw", size=FLOPPY_BYTES))
        else:
            disks.append(MachineDisk(role="floppy", name=name or dev, path=path or "", owner="user", target=dev,
                                     bus="fdc", format="raw", readonly=True))

    if nvram_template is not None:
        disks.append(MachineDisk(role="nvram", name="nvram", path=str(home / NVRAM_FILE), format="raw",
                                 source=str(nvram_template)))
    if tpm_dir is not None:
        disks.append(MachineDisk(role="tpm", name="tpm", path=str(tpm_dir), owner="libvirt"))
    return disks


def in_pool(disks: list[MachineDisk], pool: str, machine_id: str) -> list[MachineDisk]:
    """DISKS as volumes of POOL: every disk vmctl makes (and named volumes) becomes the
    volume vmctl-ID-FILE (a named volume keeps its name); host images (CD-ROMs, floppies the
    Vagrantfile names) and libvirt's own TPM state stay what they are."""
    from vmctl import storage

    out = []
    for d in disks:
        if d.role == "volume":
            out.append(replace(d, pool=pool, volume=d.name, path=""))
        elif d.owner == "vmctl" and d.role in ("box", "extra", "floppy", "nvram"):
            out.append(replace(d, pool=pool, volume=storage.machine_volume(machine_id, Path(d.path).name), path=""))
        else:
            out.append(d)
    return out


def seed_disk(seed: Path, attached: list[MachineDisk], *, machine_type: str) -> MachineDisk:
    """cloud-init's seed as a read-only CD-ROM after the machine's other disks: IDE on the
    "pc" machine (Debian's cloud kernel has no AHCI but reads it through ata_piix), SATA on q35."""
    bus = "sata" if _is_q35(machine_type) else "ide"
    prefix = "hd" if bus == "ide" else "sd"
    used = {d.target for d in attached if d.attached}
    target = next((t for t in (prefix + c for c in "cdefghijklmnopqrstuvwxyz") if t not in used), None)
    if target is None:
        raise MachineError(f"no free device name is left for cloud-init's seed on the {bus} bus", hint="attach fewer disks")
    return MachineDisk(role="cdrom", name="cidata", path=str(seed), target=target, bus=bus, format="raw", readonly=True)


def _prefix_for(bus: str, box_prefix: str) -> str:
    return {"virtio": "vd", "scsi": "sd", "sata": "sd", "usb": "sd", "ide": "hd"}.get(bus, box_prefix)


def _bus_for(prefix: str) -> str:
    return {"vd": "virtio", "sd": "scsi", "hd": "ide"}.get(prefix, "virtio")


def _is_q35(machine_type: str) -> bool:
    return "q35" in machine_type


def _driver_options(cfg: MachineConfig) -> dict[str, Any]:
    """The box disk's driver: disk_driver, else the deprecated volume_cache."""
    lv = cfg.libvirt
    opts: dict[str, Any] = dict(lv.disk_driver_opts)
    if not opts and lv.volume_cache:
        opts["cache"] = lv.volume_cache
    opts.pop("type", None)  # the overlay is qcow2 whatever the box's format
    if lv.disk_address_type:
        opts["address_type"] = lv.disk_address_type
    return opts


# -- reconciling with what exists ------------------------------------------------------------

def merge(recorded: list[MachineDisk], planned: list[MachineDisk]) -> list[MachineDisk]:
    """The list to record for a machine that has RECORDED disks and whose Vagrantfile now
    asks for PLANNED: planned disks (keeping the recorded path of one that exists), then
    recorded ones no longer asked for, detached."""
    by_key = {(d.role, d.name): d for d in recorded}
    out = []
    for want in planned:
        want = replace(want, attached=True)
        have = by_key.pop((want.role, want.name), None)
        if have is not None and want.role in ("box", "extra", "volume", "nvram", "tpm"):
            if have.path != want.path and is_snapshot_overlay(have.path):
                want.format = "qcow2"  # a snapshot moved the disk onto one of its qcow2 overlays
            want.path = have.path
            want.pool, want.volume = have.pool, have.volume
            want.source = have.source or want.source
            want.source_format = have.source_format or want.source_format
            if have.size and want.size and want.size < have.size:
                log.warning("%s: disk %s stays %d bytes: a disk never shrinks", want.role, want.name, have.size)
                want.size = have.size
        out.append(want)
    for gone in by_key.values():
        if gone.owner == "user" and gone.role in ("cdrom", "floppy"):
            continue  # a host image that is no longer attached: nothing of vmctl's to keep
        out.append(replace(gone, attached=False))
    return out


def ensure(disk: MachineDisk, *, run: Any, emit: Any | None = None, conn: Any = None) -> None:
    """Make DISK if it is vmctl's and missing, or grow it to its size. Idempotent. A pool
    volume is made through CONN (an open hypervisor connection to its daemon)."""
    if disk.role in ("cdrom", "tpm") or not disk.attached:
        return
    if disk.pool is not None:
        _ensure_volume(disk, conn, emit)
        return
    path = Path(disk.path)
    if disk.role == "floppy" and disk.owner != "vmctl":
        return
    if disk.role == "volume" and disk.owner == "user":
        if not path.exists():
            _create(disk, run)  # allow_existing: made the first time, kept ever after
        return
    if disk.owner != "vmctl":
        return
    if not path.exists():
        _create(disk, run)
        return
    if disk.role in ("box", "extra", "volume") and disk.size:
        current = _virtual_size(path, run)
        if current is not None and disk.size > current:
            if emit is not None:
                emit(f"growing the disk {disk.name} to {disk.size / 1024**3:.1f} GiB")
            run(["qemu-img", "resize", "-q", *(["-f", disk.format] if disk.format else []), str(path), str(disk.size)],
                purpose=f"grow the disk {disk.name}")


def _ensure_volume(disk: MachineDisk, c: Any, emit: Any | None) -> None:
    """ensure() for a disk that is a volume of a storage pool; sets its path (on the
    daemon's host). An overlay's backing is the box's volume (DISK.source, a path there)."""
    from vmctl import storage

    assert c is not None and disk.pool is not None and disk.volume is not None
    pool, name = disk.pool, disk.volume
    if disk.owner not in ("vmctl", "user") or (disk.role == "floppy" and disk.owner != "vmctl"):
        return
    path = c.volume_path(pool, name)
    if path is None:
        if disk.role == "box":
            xml = storage.volume_xml(name, disk.size or 0, "qcow2", backing=disk.source,
                                     backing_format="raw" if disk.source_format == "raw" else "qcow2")
            path = c.create_volume(pool, xml)
        elif disk.role == "nvram":
            assert disk.source is not None
            path = c.upload_volume(pool, name, disk.source)  # the template, a file on this computer
        elif disk.role == "floppy":
            path = c.create_volume(pool, storage.volume_xml(name, FLOPPY_BYTES, "raw"))
        else:
            path = c.create_volume(pool, storage.volume_xml(name, disk.size or 0, disk.format or "qcow2"))
    elif disk.owner == "vmctl" and disk.role in ("box", "extra", "volume") and disk.size:
        current = c.volume_capacity(pool, name)
        if current is not None and disk.size > current:
            if emit is not None:
                emit(f"growing the disk {disk.name} to {disk.size / 1024**3:.1f} GiB")
            c.resize_volume(pool, name, disk.size)
    disk.path = path


def remove_volumes(c: Any, disks: list[MachineDisk], machine_id: str, pool: str | None) -> None:
    """Remove the pool volumes vmctl made for machine MACHINE_ID: those in its list, and any
    other volume named for it in POOL (the cloud-init seed, one an interrupted up made)."""
    from vmctl import storage

    for d in disks:
        if d.pool is not None and d.volume is not None and d.owner == "vmctl":
            c.delete_volume(d.pool, d.volume)
    if pool is not None:
        for name in c.volume_names(pool, f"{storage.MACHINE_VOLUME_PREFIX}{machine_id}-"):
            if storage.is_machine_volume(name, machine_id):
                c.delete_volume(pool, name)


def _create(disk: MachineDisk, run: Any) -> None:
    path = Path(disk.path)
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o711)
    if disk.role == "box":
        argv = ["qemu-img", "create", "-q", "-f", "qcow2", "-F", "raw" if disk.source_format == "raw" else "qcow2",
                "-b", str(disk.source), str(path)]
        if disk.size:
            argv.append(str(disk.size))
        run(argv, purpose="create the machine's disk overlay")
    elif disk.role == "nvram":
        import shutil  # here: status reads the disk list on every call and copies nothing

        assert disk.source is not None
        tmp = path.with_name(f".{path.name}.tmp")
        shutil.copyfile(disk.source, tmp)
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)
        return
    elif disk.role == "floppy":
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.ftruncate(fd, FLOPPY_BYTES)
        finally:
            os.close(fd)
        return
    else:
        run(["qemu-img", "create", "-q", "-f", disk.format or "qcow2", str(path), str(disk.size)],
            purpose=f"create the disk {disk.name}")
    os.chmod(path, 0o600)


def _virtual_size(path: Path, run: Any) -> int | None:
    import subprocess  # here: status reads the disk list on every call and runs nothing

    try:
        out = subprocess.run(["qemu-img", "info", "--output=json", "-U", str(path)], capture_output=True,
                             check=True, stdin=subprocess.DEVNULL, timeout=60).stdout
        return int(json.loads(out)["virtual-size"])
    except (OSError, subprocess.SubprocessError, ValueError, KeyError):
        return None


def remove(disks: list[MachineDisk], machine_id: str) -> list[str]:
    """Remove what vmctl made for machine MACHINE_ID: its owned volumes, then the files of
    its folder (by name, never a tree) and the folder. Idempotent. Returns what was left
    in the folder because vmctl did not make it."""
    for disk in disks:
        if disk.pool is None and disk.owner == "vmctl" and disk.role == "volume" and owned_path_ok(Path(disk.path), machine_id):
            _unlink_file(Path(disk.path))
    left = paths.remove_owned_dir(paths.machines_dir() / machine_id, MACHINE_HOME_FILES,
                                  temp_prefixes=(*MACHINE_HOME_PREFIXES, f".{NVRAM_FILE}."))
    return left


def _unlink_file(path: Path) -> None:
    """Remove PATH if it is a regular file (never through a link, never a folder)."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if stat.S_ISREG(st.st_mode):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
    else:
        log.warning("left %s in place: it is not a regular file", path)


def status_json(disks: list[MachineDisk]) -> list[dict[str, Any]]:
    """The machine's disks as `status --json` shows them."""
    return [
        {"name": d.name, "role": d.role, "path": d.path, "device": d.target, "bus": d.bus, "format": d.format,
         "size": d.size, "owner": d.owner, "attached": d.attached, "readonly": d.readonly,
         **({"pool": d.pool, "volume": d.volume} if d.pool is not None else {})}
        for d in disks
    ]
