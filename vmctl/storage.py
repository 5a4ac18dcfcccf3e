"""Where a machine's disks live: files in VMCTL_HOME, or volumes in a libvirt storage pool.

The embedded driver (the default) runs QEMU as the user running vmctl, on this computer:
disks are plain files under VMCTL_HOME (vmctl/machine/disks.py), as always. A libvirt
daemon (qemu:///system, qemu:///session, later a remote host) runs QEMU as its own user,
perhaps on another computer: there vmctl keeps every disk as a volume in the daemon's
storage pool (libvirt.storage_pool_name, default "default") and moves images through
libvirt's stream API, as vagrant-libvirt does. Nothing assumes that vmctl can read the
pool's folder.

Volume names (the pool is shared with other tools and other users of the daemon):
    NAME_vmctl_box_VERSION_PROVIDER_diskN_DIGEST.img   a box disk, uploaded once per pool
    NAME_vmctl_box_VERSION_PROVIDER_diskN_DIGEST.ok    empty: made once that upload was whole
    NAME_vmctl_box_VERSION_PROVIDER_diskN_DIGEST.lock  empty: a vmctl is uploading it (any user)
    vmctl-ID-FILE                                      machine ID's disk FILE (disk.qcow2,
                                                       disk-vdb.qcow2, nvram.fd, cidata.iso ...)
NAME is the box name with "/" written "-VAGRANTSLASH-" (Vagrant's escape), other characters
outside libvirt's safe set as "_"; DIGEST (10 hex digits) is a hash of the exact box name,
version, provider, disk number and the box file's sha256, so two boxes never share a volume
even when their names reduce to the same characters, and a box added again with other
content gets a new volume.

This module holds the pure parts (the decision, names, XML) and the few steps that need a
connection (vmctl.hypervisor.Connection's pool methods).
"""

from __future__ import annotations

import hashlib
import re
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vmctl import hypervisor, paths
from vmctl.errors import HypervisorError, MachineError

if TYPE_CHECKING:
    from vmctl.vagrantfile.model import LibvirtSettings

DEFAULT_POOL = "default"
# The default pool's folder on a daemon's host, as libvirt and vagrant-libvirt make it.
SYSTEM_POOL_PATH = "/var/lib/libvirt/images"
SESSION_POOL_PATH = "~/.local/share/libvirt/images"
# libvirt accepts nearly any pool name; vmctl (like vagrant-libvirt's users) keeps to these.
POOL_NAME_RE = re.compile(r"[A-Za-z0-9_.+-]{1,100}")
VOLUME_NAME_RE = re.compile(r"[A-Za-z0-9_+][A-Za-z0-9_.+-]{0,199}")
MACHINE_VOLUME_PREFIX = "vmctl-"
BOX_VOLUME_MARK = "_vmctl_box_"


def pool_name_problem(name: object) -> str | None:
    """Why NAME cannot be a storage pool's name here (None: it can)."""
    if not isinstance(name, str) or not POOL_NAME_RE.fullmatch(name):
        return "a pool name is 1-100 letters, digits, '_', '.', '+' or '-'"
    if name in (".", ".."):
        return "a pool name is not . or .."
    return None


def uses_pool(uri: str) -> bool:
    """The decision: a daemon URI keeps disks in a pool, the embedded driver in VMCTL_HOME."""
    return not hypervisor.is_embedded(uri)


def pool_for(uri: str, lv: LibvirtSettings) -> str | None:
    """The pool a new machine on URI keeps its disks in, or None for files in VMCTL_HOME."""
    if not uses_pool(uri):
        return None
    name = DEFAULT_POOL if lv.storage_pool_name is None else lv.storage_pool_name
    problem = pool_name_problem(name)
    if problem is not None:
        raise MachineError(f"libvirt.storage_pool_name {name[:60]!r}: {problem}")
    return name


def embedded_pool_warning(uri: str, lv: LibvirtSettings) -> str | None:
    """What to say when pool settings are given but the embedded driver uses files."""
    if uses_pool(uri):
        return None
    named = [k for k in ("storage_pool_name", "storage_pool_path") if getattr(lv, k, None)]
    if not named:
        return None
    return (f"libvirt.{' and libvirt.'.join(named)}: applies to libvirt daemon URIs (qemu:///system ...); "
            "the embedded driver keeps the disks in VMCTL_HOME")


def new_pool_path(uri: str, name: str, configured: str | None) -> str | None:
    """Where a missing pool NAME is made: storage_pool_path, else libvirt's default folder for
    the "default" pool; None for another name with no path (vmctl does not guess one)."""
    if configured:
        return configured
    if name != DEFAULT_POOL:
        return None
    if "session" in uri.split("?")[0]:
        import os

        return os.path.expanduser(SESSION_POOL_PATH)
    return SYSTEM_POOL_PATH


def machine_volume(machine_id: str, file_name: str) -> str:
    """The volume of machine MACHINE_ID's disk that would be FILE_NAME in VMCTL_HOME."""
    name = f"{MACHINE_VOLUME_PREFIX}{machine_id}-{file_name}"
    check_volume_name(name)
    return name


def is_machine_volume(name: object, machine_id: str) -> bool:
    return (isinstance(name, str) and name.startswith(f"{MACHINE_VOLUME_PREFIX}{machine_id}-")
            and VOLUME_NAME_RE.fullmatch(name) is not None)


def box_volume(name: str, version: str, provider: str, disk: int, content: str) -> str:
    """The volume of disk number DISK (0 the boot disk) of box NAME VERSION for PROVIDER, whose
    box file's digest is CONTENT (see the module's docstring)."""
    digest = hashlib.sha256("\0".join((name, version, provider, str(disk), content)).encode()).hexdigest()[:10]
    safe = re.sub(r"[^A-Za-z0-9_.+-]", "_", name.replace("/", "-VAGRANTSLASH-"))
    rest = f"{BOX_VOLUME_MARK}{re.sub(r'[^A-Za-z0-9_.+-]', '_', version)[:40]}_{provider[:20]}_disk{disk}_{digest}.img"
    volume = safe[: 200 - len(rest)].lstrip(".-") + rest
    check_volume_name(volume)
    return volume


def upload_mark(volume: str) -> str:
    """The empty volume that says box volume VOLUME was uploaded whole (made after its last
    byte): what another VMCTL_HOME on the same host (another user) trusts and shares, where
    its own record of the upload is missing."""
    mark = (volume[: -len(".img")] if volume.endswith(".img") else volume[:196]) + ".ok"
    check_volume_name(mark)
    return mark


def upload_lock(volume: str) -> str:
    """The empty volume a vmctl makes before it uploads box volume VOLUME and removes after:
    libvirt makes a volume or refuses because it exists, so two users' vmctl (two
    VMCTL_HOMEs, whose file locks do not see each other) never upload one volume at once."""
    lock = (volume[: -len(".img")] if volume.endswith(".img") else volume[:194]) + ".lock"
    check_volume_name(lock)
    return lock


# How long a vmctl waits for another's upload of the same box volume, and the age after
# which an upload lock is taken to be that of a vmctl killed mid-upload.
UPLOAD_WAIT = 1800.0
STALE_UPLOAD_LOCK = 86400.0


@contextmanager
def _upload_turn(c: Any, uri: str, pool: str, volume: str, notify: Callable[[str], None], ours: Path, *,
                 clock: Callable[[], float] = time.time, sleep: Callable[[float], None] = time.sleep,
                 ) -> Iterator[bool]:
    """True: this vmctl holds VOLUME's upload lock (removed on the way out, whatever
    happens); False: another vmctl's upload of it finished while this one waited.
    OURS is a local file that exists while this VMCTL_HOME holds the lock volume (the caller
    holds this VMCTL_HOME's file lock for VOLUME): found at the start, it says the lock volume
    is left from this VMCTL_HOME's own upload that was killed or lost its connection."""
    lock = upload_lock(volume)
    if ours.exists():
        notify(f"removing the upload lock {lock} left by an interrupted upload of this vmctl's")
        c.delete_volume(pool, lock)
        ours.unlink()
    deadline = clock() + UPLOAD_WAIT
    waiting = False
    while True:
        if c.volume_path(pool, volume) is not None and c.volume_path(pool, upload_mark(volume)) is not None:
            yield False  # uploaded whole (by another vmctl, while this one waited)
            return
        try:
            ours.touch(mode=0o600)
            c.create_volume(pool, volume_xml(lock, 0, "raw"))
            break
        except HypervisorError:
            ours.unlink()
            if c.volume_path(pool, lock) is None:
                raise  # not the lock's existence: libvirt's own error
        made = c.volume_ctime(pool, lock)
        if made is not None and clock() - made > STALE_UPLOAD_LOCK:
            notify(f"removing the upload lock {lock} of a vmctl that stopped uploading a day ago")
            c.delete_volume(pool, lock)
            continue
        if clock() > deadline:
            raise MachineError(f"another vmctl has been uploading {volume} into the storage pool {pool} at {uri} for "
                               f"over {int(UPLOAD_WAIT // 60)} minutes",
                               hint=f"if no vmctl is uploading it, remove its lock: virsh -c {uri} vol-delete "
                               f"--pool {pool} {lock}")
        if not waiting:
            notify(f"waiting for another vmctl's upload of {volume} into the storage pool {pool}")
            waiting = True
        sleep(2.0)
    try:
        yield True
    finally:
        # (the connection gone: the next upload finds the lock, waits, and takes it once stale)
        with suppress(HypervisorError):
            c.delete_volume(pool, lock)
            ours.unlink()


def check_volume_name(name: str) -> None:
    if not VOLUME_NAME_RE.fullmatch(name):
        raise MachineError(f"{name[:80]!r} is not a storage volume name vmctl makes",
                           hint="volume names are letters, digits, '_', '.', '+', '-', at most 200")


# -- XML ---------------------------------------------------------------------------------------

def pool_xml(name: str, path: str) -> str:
    """A directory pool NAME in folder PATH (on the daemon's host)."""
    if pool_name_problem(name) is not None:
        raise ValueError(f"pool name {name!r}")
    if not path.startswith("/") or any(c in path for c in "\n\r\0"):
        raise ValueError(f"pool path {path!r} is not an absolute path")
    pool = ET.Element("pool", type="dir")
    ET.SubElement(pool, "name").text = name
    target = ET.SubElement(pool, "target")
    ET.SubElement(target, "path").text = path
    perms = ET.SubElement(target, "permissions")
    ET.SubElement(perms, "mode").text = "0711"  # QEMU passes through; nobody lists the volumes
    return ET.tostring(pool, encoding="unicode")


def volume_xml(name: str, capacity: int, fmt: str, *, backing: str | None = None,
               backing_format: str | None = None) -> str:
    """A volume NAME of CAPACITY bytes in format FMT (qcow2 | raw), 0600, made empty (sparse),
    or as a qcow2 overlay on the volume at path BACKING."""
    check_volume_name(name)
    if fmt not in ("qcow2", "raw") or capacity < 0:
        raise ValueError(f"volume format {fmt!r} / capacity {capacity}")
    vol = ET.Element("volume")
    ET.SubElement(vol, "name").text = name
    ET.SubElement(vol, "capacity", unit="bytes").text = str(int(capacity))
    ET.SubElement(vol, "allocation", unit="bytes").text = "0"
    target = ET.SubElement(vol, "target")
    ET.SubElement(target, "format", type=fmt)
    perms = ET.SubElement(target, "permissions")
    ET.SubElement(perms, "mode").text = "0600"
    if backing is not None:
        store = ET.SubElement(vol, "backingStore")
        ET.SubElement(store, "path").text = backing
        ET.SubElement(store, "format", type=backing_format or "qcow2")
    return ET.tostring(vol, encoding="unicode")


# -- steps with a connection -------------------------------------------------------------------

def ensure_pool(c: Any, uri: str, name: str, configured_path: str | None) -> None:
    """Pool NAME defined, started and autostarted on C's host (made as a directory pool when
    missing, see new_pool_path)."""
    c.ensure_pool(name, new_pool_path(uri, name, configured_path))


def upload_box_disks(c: Any, uri: str, pool: str, box: Any, disks: list[tuple[Any, str]],
                     notify: Any) -> list[str]:
    """Each disk of BOX ((local image, format) in DISKS) as a volume in POOL, uploaded the first
    time only; their paths on the daemon's host. The uploads are recorded in the box store
    (for box remove), under a lock so two machines of one box upload it once."""
    from vmctl.boxes import pools as box_pools
    from vmctl.state import file_lock

    paths_out = []
    content = str(box.record.get("sha256") or f"{box.dir}:{box.record.get('added', '')}")
    for i, (image, _fmt) in enumerate(disks):
        volume = box_volume(box.name, box.version, box.provider, i, content)
        lock = "pool-upload-" + hashlib.sha256(f"{uri}\0{pool}\0{volume}".encode()).hexdigest()[:16]
        with file_lock(lock):
            recorded = box_pools.recorded(box, uri, pool, volume)
            existing = c.volume_path(pool, volume)
            if existing is not None and (recorded or c.volume_path(pool, upload_mark(volume)) is not None):
                # ours, or uploaded whole by another user's vmctl: used as it is, and recorded
                # here too, so whichever box remove finds no overlay on it removes it
                # (remove_box_volumes); never deleted and sent again from under them
                if not recorded:
                    box_pools.record(box, uri, pool, volume)
                paths_out.append(existing)
                continue
            with _upload_turn(c, uri, pool, volume, notify, paths.locks_dir() / f"{lock}.holds-volume") as mine:
                existing = c.volume_path(pool, volume)
                if not mine or (existing is not None and c.volume_path(pool, upload_mark(volume)) is not None):
                    # another user's vmctl uploaded it whole while this one waited for its turn
                    assert existing is not None
                    box_pools.record(box, uri, pool, volume)
                    paths_out.append(existing)
                    continue
                if existing is not None:  # an upload that was interrupted: its bytes are not trusted
                    c.delete_volume(pool, volume)
                notify(f"uploading the box image {image.name} into the storage pool {pool} as {volume}")
                path = c.upload_volume(pool, volume, str(image))
                c.delete_volume(pool, upload_mark(volume))
                c.create_volume(pool, volume_xml(upload_mark(volume), 0, "raw"))
                box_pools.record(box, uri, pool, volume)
                paths_out.append(path)
    return paths_out


class Kept(str):
    """Why a box volume was left in its pool on purpose (other volumes stand on it)."""


def remove_box_volumes(box: Any) -> list[tuple[dict[str, str], str | None]]:
    """Remove BOX's volumes from every pool it was uploaded to: each recorded upload, with
    None once removed (or found gone), else why it could not be, or a Kept reason: a volume
    that another machine's overlay stands on (another VMCTL_HOME's or user's, sharing the
    upload) stays, with its upload mark."""
    from vmctl.boxes import pools as box_pools
    from vmctl.errors import VmctlError

    out: list[tuple[dict[str, str], str | None]] = []
    for entry in box_pools.entries(box):
        try:
            with hypervisor.connect(entry["uri"]) as c:
                path = c.volume_path(entry["pool"], entry["volume"])
                users = c.volumes_backed_by(entry["pool"], path) if path is not None else []
                if users:
                    out.append((entry, Kept(f"{len(users)} volume(s) of other machines stand on it "
                                            f"({', '.join(users[:3])}{', ...' if len(users) > 3 else ''})")))
                    continue
                c.delete_volume(entry["pool"], upload_mark(entry["volume"]))  # first: a half-removed box is not "whole"
                c.delete_volume(entry["pool"], entry["volume"])
            out.append((entry, None))
        except VmctlError as exc:
            out.append((entry, exc.message))
    return out
