"""Snapshots of a machine: save, restore, delete, push and pop, on vmctl's own overlays.

Where things live:
  PROJECT/.vmctl/machines/NAME/snapshots.json   the index: every snapshot (its name, its
                                                 layers, its parent), the head (the
                                                 snapshot the machine's disks continue
                                                 from) and the journal of the command that
                                                 is changing them (`pending`)
  VMCTL_HOME/machines/ID/disk.qcow2              the overlay `up` made: the active image,
                                                 or, once a snapshot froze it, that
                                                 snapshot's layer
  VMCTL_HOME/machines/ID/snapshots/LID-vda.qcow2 overlays made by snapshot commands: the
                                                 active image of a disk, or a frozen layer
  VMCTL_HOME/machines/ID/disk-NAME.{qcow2,raw}   an extra disk as `up` made it: likewise
  VMCTL_HOME/machines/ID/snapshots/SID.vmstate   the saved state (memory and devices) of a
                                                 snapshot of a running machine
  VMCTL_HOME/machines/ID/snapshots/SID.nvram     a stopped machine's UEFI variables store
  VMCTL_HOME/machines/ID/snapshots/SID.tpm.tar   and its emulated TPM's state files (a
                                                 running machine's are in its saved state)

A snapshot is, for each disk of the machine (disks_of: the box disk, a multi-disk box's
other disks, the extra disks; a raw one continues on a qcow2 overlay that records its
backing as raw), a frozen layer: the image the disk was using when the
snapshot was taken, made read-only, while the disk continues on a new overlay whose
backing file it is. Layers form a tree (a snapshot's parent is the one whose layer backs
its own); restoring makes a new overlay on the snapshot's layer. Deleting a snapshot
merges its layer into its only child (qemu-img commit or rebase, whichever copies less),
or, when the running machine reads it, into the active overlay (a live commit); a layer
two others build on stays, unnamed, until one of them goes. A running machine's memory
and disks are taken at one instant, and restored, inside its own QEMU (vmctl/vmstate.py).
Synced folders are not in snapshots.

Crash safety: the index says what a command is about to do (`pending`) before it creates
any file or touches QEMU, and each step can be repeated. The work done inside QEMU is one
request to the libvirt worker, which finishes it even if vmctl is killed. The next command
on the machine (every command that takes the machine's lock) first settles what is
pending by looking at the facts (which image the running disk uses, whether a saved state
is complete, which files exist): an interrupted save is finished if the machine's state
was saved and its disks switched, else undone; an interrupted restore or delete is always
finished. Either way the machine is as it was before the command or as it would be after
it, and the command says which. Ctrl-C waits for the step in QEMU to end.

Nothing here trusts the index more than the state file: ids, names, targets and file
names must have vmctl's shapes, and every path is made here from the machine's folder.
"""

from __future__ import annotations

import logging
import os
import random
import re
import secrets
import signal
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vmctl import hypervisor, paths, untrusted
from vmctl.errors import HypervisorError, SnapshotError, StateError, VmctlError
from vmctl.machine.disks import OVERLAY_RE, SNAPSHOTS_DIR, MachineDisk
from vmctl.machine.state import DISK_FILE, SNAPSHOT_INDEX, MachineState, Timer
from vmctl.state import read_json, write_json

if TYPE_CHECKING:
    from vmctl.machine.lifecycle import Emit, Machine

log = logging.getLogger("vmctl.snapshots")

ID_RE = re.compile(r"[0-9a-f]{12}")
TARGET_RE = re.compile(r"[a-z][a-z0-9]{1,11}")
VMSTATE_RE = re.compile(r"[0-9a-f]{12}\.vmstate")
# Per-snapshot copies of a stopped machine's UEFI variables store and emulated TPM's state.
STORE_RE = re.compile(r"[0-9a-f]{12}\.(nvram|tpm\.tar)")
# The files of swtpm's state (TPM 2 and 1.2) that a snapshot keeps; lock files and the rest stay.
TPM_FILE_RE = re.compile(r"tpm2?-\d\d\.(permall|volatilestate|savestate)")
PUSH_RE = re.compile(r"push_\d+_\d+")
NAME_MAX = 100
LAYER_FORMATS = ("qcow2", "raw")
LIVE = (hypervisor.RUNNING, hypervisor.PAUSED)


# --- names -------------------------------------------------------------------------------

def name_problem(name: str) -> str | None:
    """Why NAME cannot name a snapshot, or None. Names are shown in tables and lines of
    `--machine-readable` output, so no control characters (tabs and newlines included)."""
    if not name:
        return "it is empty"
    if len(name) > NAME_MAX:
        return f"it is longer than {NAME_MAX} characters"
    if name.startswith("-"):
        return "it starts with '-'"
    if name != name.strip():
        return "it starts or ends with white space"
    if any(ord(c) < 32 or ord(c) == 127 for c in name):
        return "it holds a control character"
    return None


def push_name() -> str:
    """Vagrant's name for a pushed snapshot: push_EPOCH_RANDOM."""
    return f"push_{int(time.time())}_{random.randint(0, 9999)}"  # noqa: S311 - a name, not a secret


# --- the index ---------------------------------------------------------------------------

@dataclass
class Snapshot:
    id: str
    name: str
    created: float
    parent: str | None  # the id of the snapshot whose layers back this one's
    memory: bool  # taken of a running machine: its state is saved too
    disks: dict[str, str]  # disk target -> its layer, relative to the machine's folder
    box: str | None = None
    box_version: str | None = None
    deleted: bool = False  # deleted, its layer still needed by others (merged later)


@dataclass
class Index:
    machine: str  # the machine id this index belongs to
    head: str | None = None  # the snapshot the active overlays continue from
    snapshots: list[Snapshot] = field(default_factory=list)
    pending: dict[str, Any] | None = None  # the journal of the command under way
    clock_behind: bool = False  # restored from memory: the guest's clock is yet to be set

    def live(self) -> list[Snapshot]:
        return sorted((s for s in self.snapshots if not s.deleted), key=lambda s: (s.created, s.name))

    def find(self, name: str) -> Snapshot | None:
        return next((s for s in self.snapshots if not s.deleted and s.name == name), None)

    def get(self, sid: str | None) -> Snapshot | None:
        return next((s for s in self.snapshots if s.id == sid), None)


def _rel_problem(rel: object) -> str | None:
    """Why REL (a path relative to the machine's folder) is not a layer vmctl makes, or
    None: the box disk's overlay, a file `up` made for a disk (disk-NAME.qcow2 or .raw), or
    an overlay a snapshot command made."""
    if not isinstance(rel, str):
        return "a layer is not a file name"
    if rel == DISK_FILE:
        return None
    if "/" not in rel:
        if (rel.startswith("disk-") and rel.rpartition(".")[2] in LAYER_FORMATS
                and untrusted.file_name_problem(rel) is None):
            return None
        return f"{rel!r} is not a layer vmctl makes"
    folder, _, name = rel.partition("/")
    if folder != SNAPSHOTS_DIR or not OVERLAY_RE.fullmatch(name):
        return f"{rel!r} is not a layer vmctl makes"
    return None


def _layer_format(rel: str) -> str:
    """The format of layer REL (checked by _rel_problem): a snapshot's overlays and the box
    disk's are qcow2; a disk `up` made has its format as its file name's suffix
    (disk-vdb.raw), as vmctl/machine/disks.py names it. Never probed: a raw disk holds
    whatever the guest wrote, a qcow2 header included."""
    return "raw" if "/" not in rel and rel.endswith(".raw") else "qcow2"


def _check_disks(disks: object) -> dict[str, str]:
    if not isinstance(disks, dict) or not disks:
        raise ValueError("a snapshot without disks")
    for target, rel in disks.items():
        if not isinstance(target, str) or not TARGET_RE.fullmatch(target):
            raise ValueError(f"disk target {target!r}")
        problem = _rel_problem(rel)
        if problem:
            raise ValueError(problem)
    return dict(disks)


def _parse_snapshot(data: object) -> Snapshot:
    if not isinstance(data, dict):
        raise ValueError("a snapshot is not a JSON object")
    known = set(Snapshot.__dataclass_fields__)
    s = Snapshot(**{k: v for k, v in data.items() if k in known})
    if not isinstance(s.id, str) or not ID_RE.fullmatch(s.id):
        raise ValueError(f"snapshot id {s.id!r}")
    if not isinstance(s.name, str) or name_problem(s.name):
        raise ValueError(f"snapshot name {s.name!r}")
    if s.parent is not None and (not isinstance(s.parent, str) or not ID_RE.fullmatch(s.parent)):
        raise ValueError(f"parent {s.parent!r}")
    if isinstance(s.created, bool) or not isinstance(s.created, (int, float)):
        raise ValueError("created is not a time")
    if not isinstance(s.memory, bool) or not isinstance(s.deleted, bool):
        raise ValueError("memory and deleted must be true or false")
    for value in (s.box, s.box_version):
        if value is not None and (not isinstance(value, str) or name_problem(value)):
            raise ValueError("box is not a name")
    s.disks = _check_disks(s.disks)
    return s


def _check_pending(p: object) -> dict[str, Any] | None:
    """The journal, checked: every file it names must be one of vmctl's layers."""
    if p is None:
        return None
    if not isinstance(p, dict) or p.get("op") not in ("save", "restore", "merge"):
        raise ValueError("the pending operation is not one vmctl writes")
    for key in ("new", "old"):
        if key in p:
            _check_disks(p[key])
    if p["op"] == "save":
        _parse_snapshot(p.get("snapshot"))
    for key in ("snapshot", "replaces", "ghost", "child"):
        value = p.get(key)
        if key != "snapshot" and value is not None and (not isinstance(value, str) or not ID_RE.fullmatch(value)):
            raise ValueError(f"{key} {value!r}")
    if p["op"] == "restore" and not (isinstance(p.get("snapshot"), str) and ID_RE.fullmatch(p["snapshot"])):
        raise ValueError("restore of what?")
    return p


def index_path(m: Machine) -> Path:
    return m.dir / SNAPSHOT_INDEX


def load_index(m: Machine, st: MachineState) -> Index:
    """The machine's snapshot index (an empty one if it has none, or if the file is left
    from an earlier machine of that name). A file not in vmctl's shape is an error naming it."""
    path = index_path(m)
    data = read_json(path, None, what="snapshot index", follow_links=False)
    if data is None:
        return Index(machine=st.id)
    try:
        if not isinstance(data, dict):
            raise ValueError("not a JSON object")
        if data.get("machine") != st.id:
            return Index(machine=st.id)
        snaps = [_parse_snapshot(s) for s in data.get("snapshots", [])]
        ids = [s.id for s in snaps]
        if len(set(ids)) != len(ids):
            raise ValueError("two snapshots with one id")
        names = [s.name for s in snaps if not s.deleted]
        if len(set(names)) != len(names):
            raise ValueError("two snapshots with one name")
        for s in snaps:
            if s.parent is not None and s.parent not in ids:
                raise ValueError(f"snapshot {s.name!r} has an unknown parent")
        head = data.get("head")
        if head is not None and head not in ids:
            raise ValueError("the head is not a snapshot")
        return Index(machine=st.id, head=head, snapshots=snaps, pending=_check_pending(data.get("pending")),
                     clock_behind=data.get("clock_behind") is True)
    except (TypeError, ValueError) as exc:
        raise StateError(
            f"the snapshot index {path} is not in the expected shape ({exc})",
            hint=f"move it aside (mv {path} {path}.bad): the machine then has no snapshots "
            "(their files stay until vmctl destroy)",
        ) from exc


def save_index(m: Machine, idx: Index) -> None:
    data = {"machine": idx.machine, "head": idx.head, "snapshots": [asdict(s) for s in idx.snapshots],
            "pending": idx.pending, "clock_behind": idx.clock_behind}
    write_json(index_path(m), data, mode=0o600)


def count(m: Machine) -> int:
    """How many snapshots the machine has (status --json); 0 if the index is unreadable."""
    st = m.state
    if st is None or not index_path(m).exists():
        return 0
    try:
        return len(load_index(m, st).live())
    except VmctlError:
        return 0


# --- disks ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class Disk:
    target: str  # the guest's name for it (vda)
    path: Path  # its active image
    format: str = "qcow2"  # the active image's format: raw only for a raw disk before its first snapshot


def _is_main_box_disk(d: MachineDisk) -> bool:
    return d.role == "box" and d.name == "box"


def _box_target(st: MachineState) -> str:
    box = next((d for d in st.all_disks() if _is_main_box_disk(d)), None)
    return (box.target if box is not None else None) or "vda"


def _writable(d: MachineDisk) -> bool:
    return d.attached and d.target is not None and not d.readonly and d.role not in ("cdrom", "nvram", "tpm")


def _shareable(d: MachineDisk) -> bool:
    return bool((d.options or {}).get("shareable"))


def _is_held(d: MachineDisk) -> bool:
    """Whether snapshots hold disk D: the box disk, a multi-disk box's other disks, and the
    extra disks (libvirt.storage :file, config.vm.disk) made in the machine's folder;
    not a shareable disk (other machines write it too)."""
    return (_writable(d) and not _shareable(d) and d.role in ("box", "extra")
            and (d.format or "raw") in LAYER_FORMATS)


def _held(st: MachineState) -> list[MachineDisk]:
    return [d for d in st.all_disks() if _is_held(d)]


def disks_of(m: Machine) -> list[Disk]:
    """Every disk of the machine that snapshots hold, with its active image: the one
    place that knows what a machine's disks are."""
    st = m.require_state()
    return [Disk(d.target or "vda", Path(st.disk) if _is_main_box_disk(d) else Path(d.path),
                 "qcow2" if _is_main_box_disk(d) else d.format or "raw") for d in _held(st)]


def unheld_disks(st: MachineState) -> list[str]:
    """The machine's writable disks a snapshot cannot hold, with the reason: a named volume
    (VMCTL_HOME/volumes) outlives the machine (allow_existing keeps it across destroy), and
    what is written after a snapshot would live in the machine's overlays, gone with it;
    a blank floppy image."""
    out = []
    for d in st.all_disks():
        if not _writable(d) or _is_held(d) or _shareable(d):
            continue
        if d.role == "volume":
            out.append(f"{d.target} (the named volume {d.name}: it outlives the machine)")
        else:
            out.append(f"{d.target} ({d.role} {d.name})")
    return out


def shareable_disks(st: MachineState) -> list[str]:
    """Writable disks other machines share: not in a snapshot (restoring one machine must
    not rewind the others' disk)."""
    return [d.target or d.name for d in st.all_disks() if _writable(d) and _shareable(d)]


def _set_active(m: Machine, st: MachineState, target: str, path: Path) -> None:
    """Record PATH as disk TARGET's active image (the caller saves the state): one of the
    snapshot overlays made for TARGET, or a file `up` made (a merge can bring a disk back
    onto it). The format follows from the file name (_layer_format)."""
    del m
    disk = next((d for d in _held(st) if d.target == target), None)
    if disk is None:
        raise SnapshotError(f"the machine has no disk {target} a snapshot holds now",
                            hint="the Vagrantfile's disks changed since the snapshot was taken")
    try:
        rel = str(path.relative_to(_home(st)))
    except ValueError:
        rel = ""
    main = _is_main_box_disk(disk)
    fits = (_rel_problem(rel) is None and (
        rel.endswith(f"-{target}.qcow2") if "/" in rel else (rel == DISK_FILE) == main))
    if not fits:
        raise SnapshotError(f"cannot make {path} the image of disk {target}")
    disk.path = str(path)
    disk.format = _layer_format(rel)
    if main:
        st.disk = str(path)


def _home(st: MachineState) -> Path:
    return paths.machines_dir() / st.id


def _path(st: MachineState, rel: str) -> Path:
    problem = _rel_problem(rel)
    if problem:
        raise SnapshotError(f"refusing a snapshot layer: {problem}")
    return _home(st) / rel


def _rel(st: MachineState, path: Path) -> str:
    rel = str(path.relative_to(_home(st)))
    if _rel_problem(rel):
        raise SnapshotError(f"{path} is not an image vmctl made")
    return rel


def _vmstate(st: MachineState, sid: str) -> Path:
    if not ID_RE.fullmatch(sid):
        raise SnapshotError(f"snapshot id {sid!r}")
    return _home(st) / SNAPSHOTS_DIR / f"{sid}.vmstate"


def _stores(st: MachineState) -> tuple[Path | None, Path | None]:
    """The machine's UEFI variables store (nvram.fd) and its emulated TPM's state folder,
    where it has them."""
    nvram = next((Path(d.path) for d in st.all_disks() if d.role == "nvram" and d.attached and d.path), None)
    tpm = next((Path(d.path) for d in st.all_disks() if d.role == "tpm" and d.attached and d.path), None)
    return nvram, tpm


def _store_copies(st: MachineState, sid: str) -> tuple[Path, Path]:
    """Where snapshot SID keeps its copy of the NVRAM and of the TPM state."""
    _vmstate(st, sid)  # checks the id
    folder = _home(st) / SNAPSHOTS_DIR
    return folder / f"{sid}.nvram", folder / f"{sid}.tpm.tar"


def _tpm_files(folder: Path) -> list[str]:
    """swtpm's state files in FOLDER (and one level below: libvirt keeps them in tpm2/),
    relative to it; never through a link."""
    found = []
    for sub in ("", "tpm2", "tpm1.2"):
        where = folder / sub if sub else folder
        try:
            entries = list(os.scandir(where))
        except (FileNotFoundError, NotADirectoryError):
            continue
        found += [f"{sub}/{e.name}" if sub else e.name for e in entries
                  if TPM_FILE_RE.fullmatch(e.name) and e.is_file(follow_symlinks=False)]
    return sorted(found)


def _copy_stores(st: MachineState, sid: str) -> None:
    """Copy a stopped machine's NVRAM and TPM state into snapshot SID (each written whole
    under a temporary name, then renamed: a copy that exists is complete)."""
    import tarfile

    nvram, tpm = _stores(st)
    nvram_copy, tpm_copy = _store_copies(st, sid)
    nvram_copy.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    try:
        if nvram is not None and nvram.is_file():
            _write_atomically(nvram_copy, nvram.read_bytes())
        if tpm is not None and _tpm_files(tpm):
            tmp = tpm_copy.with_name(f".{tpm_copy.name}.tmp")
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "wb") as f, tarfile.open(fileobj=f, mode="w") as tar:
                for rel in _tpm_files(tpm):
                    tar.add(tpm / rel, arcname=rel, recursive=False)
            os.replace(tmp, tpm_copy)
    except OSError as exc:
        import errno

        if exc.errno == errno.ENOSPC:
            raise _disk_full("copy the UEFI variables and TPM state") from exc
        raise SnapshotError(f"could not copy the UEFI variables or TPM state: {exc}") from exc


def _write_atomically(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _put_back_stores(st: MachineState, sid: str) -> None:
    """Write snapshot SID's NVRAM and TPM state back (QEMU and swtpm stopped), into the
    files in place: their owner and labels stay what libvirt made them. Repeatable."""
    import tarfile

    nvram, tpm = _stores(st)
    nvram_copy, tpm_copy = _store_copies(st, sid)
    if nvram is not None and nvram_copy.is_file():
        _write_in_place(nvram, nvram_copy.read_bytes())
    if tpm is not None and tpm_copy.is_file():
        with tarfile.open(tpm_copy) as tar:
            kept = {}
            for member in tar.getmembers():
                folder, _, name = member.name.rpartition("/")
                if not (member.isfile() and folder in ("", "tpm2", "tpm1.2") and TPM_FILE_RE.fullmatch(name)):
                    raise SnapshotError(f"the TPM state copy {tpm_copy} holds {member.name!r}, which vmctl does not write")
                data = tar.extractfile(member)
                assert data is not None
                kept[member.name] = data.read()
        for rel in _tpm_files(tpm):
            if rel not in kept:
                _unlink(tpm / rel)  # made after the snapshot (the volatile state of a later run)
        for rel, data in kept.items():
            (tpm / rel).parent.mkdir(exist_ok=True, mode=0o700)
            _write_in_place(tpm / rel, data)


def _write_in_place(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
        f.truncate()
        f.flush()
        os.fsync(f.fileno())


def _drop_stores(st: MachineState, sid: str) -> None:
    for path in _store_copies(st, sid):
        _unlink(path)


def _new_id() -> str:
    return secrets.token_hex(6)


# --- files ---------------------------------------------------------------------------------

def _qemu_img(*args: str, purpose: str) -> None:
    from vmctl.run import run

    try:
        run(["qemu-img", *args], purpose=purpose)
    except VmctlError as exc:
        if "No space left" in exc.message:
            raise _disk_full(purpose) from exc
        raise


def _disk_full(purpose: str) -> SnapshotError:
    return SnapshotError(f"the disk is full: could not {purpose}",
                         hint="free some disk space where VMCTL_HOME is, then run the command again")


def _create_image(path: Path, size: int, backing: Path | None, purpose: str, backing_format: str = "qcow2", *,
                  sync: bool = True) -> None:
    """An empty qcow2 image (0600) at PATH, on BACKING (an image of BACKING_FORMAT) if given;
    synced to the disk unless not SYNC."""
    import errno

    from vmctl import qcow2

    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    if size > qcow2.MAX_SIZE:
        argv = ["create", "-q", "-f", "qcow2",
                *(["-F", backing_format, "-u", "-b", str(backing)] if backing else []), str(path), str(size)]
        _qemu_img(*argv, purpose=purpose)
        os.chmod(path, 0o600)
        return
    try:
        qcow2.create(path, size, backing, backing_format, sync=sync)
    except OSError as exc:
        if exc.errno == errno.ENOSPC:
            raise _disk_full(purpose) from exc
        raise SnapshotError(f"could not {purpose}: {exc.strerror} ({path})") from exc


def _create_overlays(pairs: list[tuple[Path, Path, str]]) -> None:
    """Create each NEW overlay on its BACKING image of FORMAT (one of vmctl's layers: a
    raw one is a raw disk `up` made, its overlay records `raw` so that nothing probes it)."""
    from vmctl import qcow2

    for new, backing, fmt in pairs:
        try:
            size = qcow2.virtual_size(backing) if fmt == "qcow2" else os.stat(backing).st_size
        except (OSError, ValueError) as exc:
            raise SnapshotError(f"cannot read the image {backing}: {exc}") from exc
        _create_image(new, size, backing, "create a snapshot overlay", fmt)


def _create_container(path: Path) -> None:
    """The file QEMU writes the machine's state into. Not synced here: QEMU syncs it when
    the state is written, before the save counts as done, and one lost in a crash before
    that reads as incomplete (_state_complete), so the save is undone."""
    _create_image(path, 1 << 20, None, "create the file for the machine's state", sync=False)


def _info(path: Path) -> dict[str, Any] | None:
    """qemu-img's view of an image (read even while QEMU has it open), None if it is
    missing or not a readable image."""
    import json

    from vmctl.run import run

    if not path.exists():
        return None
    proc = run(["qemu-img", "info", "-U", "-f", "qcow2", "--output=json", str(path)], purpose="read an image",
               check=False)
    if proc.returncode != 0:
        return None
    try:
        data = json.loads(proc.stdout)
    except ValueError:
        return None
    return data if isinstance(data, dict) else None


def _is_overlay_of(path: Path, backing: Path) -> bool:
    info = _info(path)
    return info is not None and info.get("full-backing-filename", info.get("backing-filename")) == str(backing)


def _state_complete(container: Path, tag: str) -> bool:
    info = _info(container)
    return info is not None and any(s.get("name") == tag and s.get("vm-state-size", 0) > 0
                                    for s in info.get("snapshots", []))


def _unlink(path: Path) -> None:
    with suppress(FileNotFoundError):
        path.unlink()


def _allocated(path: Path) -> int:
    try:
        return os.lstat(path).st_blocks * 512
    except OSError:
        return 0


def remove_files(home: Path) -> None:
    """Remove a machine's snapshot files (destroy): the files in HOME/snapshots that
    have vmctl's names, then the folder if that emptied it; anything else stays."""
    folder = home / SNAPSHOTS_DIR
    try:
        names = [e.name for e in os.scandir(folder)]
    except (FileNotFoundError, NotADirectoryError):
        return
    ours = [n for n in names if OVERLAY_RE.fullmatch(n) or VMSTATE_RE.fullmatch(n) or STORE_RE.fullmatch(n)]
    ours += [n for n in names if n.startswith(".") and n.endswith(".tmp") and STORE_RE.fullmatch(n[1:-4])]
    left = paths.remove_owned_dir(folder, ours)
    if left:
        log.warning("left %s in place: it holds files vmctl did not make (%s)", folder, ", ".join(sorted(left)[:5]))


# --- interruptions ---------------------------------------------------------------------------

@contextmanager
def _uninterrupted() -> Iterator[None]:
    """Ctrl-C waits until the block is done (a step half done in QEMU is worse than a
    second's wait), then interrupts."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught: list[int] = []
    previous = signal.signal(signal.SIGINT, lambda signum, frame: caught.append(signum))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
    if caught:
        raise KeyboardInterrupt


# --- commands ------------------------------------------------------------------------------

@contextmanager
def _connection(m: Machine, st: MachineState, *, qemu: bool = True) -> Iterator[Any]:
    """The machine's running QEMU directly when it runs under libvirt's embedded driver
    (and QEMU), which saves starting libvirt; libvirt otherwise."""
    if qemu:
        with hypervisor.connect_qemu(st.uri, st.domain) as q:
            if q is not None and q.state(st.domain) in LIVE:
                log.debug("%s: talking to QEMU directly", m.name)
                yield q
                return
    with hypervisor.connect(st.uri) as c:
        yield c


def ensure_defined(m: Machine, c: Any) -> None:
    """Make libvirt's definition of the domain name the machine's current disk images
    before it starts: a snapshot taken or restored through QEMU alone leaves that for
    the next start (lifecycle calls this before starting a domain)."""
    import xml.etree.ElementTree as ET

    st = m.state
    if st is None:
        return
    xml = c.xml(st.domain)
    if xml is None:
        return
    defined = {}
    for disk in ET.fromstring(xml).iterfind("devices/disk"):
        target, source = disk.find("target"), disk.find("source")
        if target is not None and source is not None:
            defined[target.get("dev")] = source.get("file")
    if any(defined.get(d.target) != str(d.path) for d in disks_of(m)):
        log.debug("%s: libvirt's definition names older images; defining it again", m.name)
        c.define(m._render(st))


def require(m: Machine, name: str) -> Snapshot:
    """The machine's snapshot NAME, or an error listing the ones it has."""
    st = m.require_state()
    idx = load_index(m, st)
    snap = idx.find(name)
    if snap is None:
        have = [s.name for s in idx.live()]
        raise SnapshotError(
            f"machine {m.name} has no snapshot named {name!r}",
            hint=f"its snapshots: {', '.join(have)}" if have else f"it has no snapshots (take one with vmctl snapshot save {m.name} NAME)",
        )
    return snap


def save(m: Machine, name: str, *, force: bool, emit: Emit) -> Snapshot:
    """Snapshot the machine as NAME (the lock held): disks, and memory when it runs.
    An existing NAME is an error unless FORCE, which replaces it once the new one is safe."""
    problem = name_problem(name)
    if problem:
        raise SnapshotError(f"refusing the snapshot name {name!r}: {problem}")
    st = m.require_state()
    if st.pool is not None:
        raise SnapshotError(
            f"snapshots are not supported on storage pools yet: machine {m.name} keeps its disks in the libvirt "
            f"storage pool {st.pool} ({st.uri})",
            hint="snapshots work with vmctl's default embedded driver (no libvirt.uri / VMCTL_LIBVIRT_URI); "
            f"libvirt's own can be used meanwhile: virsh -c {st.uri} snapshot-create-as {st.domain} NAME",
        )
    unheld = unheld_disks(st)
    if unheld:
        raise SnapshotError(
            f"machine {m.name} has disks a snapshot cannot hold: {', '.join(unheld)}",
            hint="snapshots hold the box disk and the extra disks made for the machine (libvirt.storage :file "
            "without path:, config.vm.disk); detach the others, or copy them yourself",
        )
    idx = load_index(m, st)
    old = idx.find(name)
    if old is not None and not force:
        raise SnapshotError(
            f"machine {m.name} already has a snapshot named {name!r}",
            hint="choose another name, or replace it with --force",
        )
    timer = Timer(m.name)
    with _connection(m, st) as c:
        state = m.status(c)
        live = state in (*LIVE, hypervisor.SAVED)
        shared = [f"{f.guest} ({kind})" for f, kind, _ in m.shared_folders()]
        if live and shared:
            raise SnapshotError(
                f"machine {m.name} shares {', '.join(shared)} two-way, and QEMU cannot save the memory of a "
                "machine with a mounted virtiofs or 9p folder", hint=f"halt it first (vmctl halt {m.name}): a stopped machine's "
                "snapshot holds its disks")
        what = "memory and disks" if live else "disks; the machine is stopped"
        emit(f"==> {m.name}: snapshotting the machine as {name!r} ({what})...")
        shareable = shareable_disks(st)
        if shareable:
            emit(f"==> {m.name}: {', '.join(shareable)}: shareable (other machines write it), not in the snapshot")
        disks = disks_of(m)
        snap = Snapshot(id=_new_id(), name=name, created=time.time(), parent=idx.head, memory=live,
                        disks={d.target: _rel(st, d.path) for d in disks}, box=st.box_name,
                        box_version=st.box_version)
        new = {d.target: f"{SNAPSHOTS_DIR}/{_new_id()}-{d.target}.qcow2" for d in disks}
        idx.pending = {"op": "save", "snapshot": asdict(snap), "replaces": old.id if old else None,
                       "new": new, "state": state}
        failure: VmctlError | None = None
        with _uninterrupted():
            save_index(m, idx)
            try:
                if not live:
                    _copy_stores(st, snap.id)  # first: a snapshot whose overlays exist has its copies
                _create_overlays([(_path(st, new[d.target]), d.path, d.format) for d in disks])
                if live:
                    container = _vmstate(st, snap.id)
                    _create_container(container)
                    timer.mark("files")
                    if state == hypervisor.SAVED:
                        c.start_paused(st.domain)
                    c.save_live(st.domain, str(container), snap.id, {t: str(_path(st, r)) for t, r in new.items()})
                    timer.mark("save in QEMU")
            except VmctlError as exc:
                failure = exc
            done = _settle(m, st, c, idx)
            timer.mark("commit")
        if not done:
            if failure is not None and live:
                _explain_full_disk(m, _vmstate(st, snap.id).parent, failure)
            raise failure or SnapshotError(f"the snapshot {name!r} of machine {m.name} could not be saved")
        if failure is not None:
            log.warning("%s: %s (the snapshot was saved nonetheless)", m.name, failure)
        _compact(m, st, c, load_index(m, st))
    timer.total()
    emit(f"==> {m.name}: snapshot {name!r} saved")
    return snap


def restore(m: Machine, name: str, *, provision: bool | None, only: set[str] | None, start: bool,
            emit: Emit, emit_output: Emit, delete_after: bool = False) -> None:
    """Bring the machine back to snapshot NAME (the lock held). A snapshot with memory
    continues where it was (and its clock is set); one of a stopped machine boots, unless
    not START. Provisioners run as on `up` of an existing machine: `always` ones, all with
    PROVISION, none with PROVISION=False. DELETE_AFTER (pop): delete it once restored."""
    st = m.require_state()
    idx = load_index(m, st)
    snap = require(m, name)
    held = {d.target for d in disks_of(m)}
    gone = sorted(set(snap.disks) - held)
    if gone:
        raise SnapshotError(
            f"the snapshot {name!r} of machine {m.name} holds disks the machine no longer has: {', '.join(gone)}",
            hint="put them back in the Vagrantfile (the same devices) and run vmctl reload, then restore")
    timer = Timer(m.name)
    emit(f"==> {m.name}: restoring the snapshot {name!r}...")
    added = sorted(held - set(snap.disks))
    if added:
        emit(f"==> {m.name}: {', '.join(added)}: added after the snapshot, kept as they are")
    with _connection(m, st, qemu=snap.memory and start) as c:
        state = m.status(c)
        new = {t: f"{SNAPSHOTS_DIR}/{_new_id()}-{t}.qcow2" for t in snap.disks}
        old = {d.target: _rel(st, d.path) for d in disks_of(m) if d.target in snap.disks}
        idx.pending = {"op": "restore", "snapshot": snap.id, "new": new, "old": old, "start": start,
                       "state": state}
        with _uninterrupted():
            save_index(m, idx)
            _settle(m, st, c, idx)
            timer.mark("restore")
        if delete_after:
            _delete(m, st, c, snap.id, emit)
        _compact(m, st, c, load_index(m, st))
    _after_restore(m, st, snap, start=start, provision=provision, only=only, emit=emit,
                   emit_output=emit_output)
    timer.total()


def _explain_full_disk(m: Machine, folder: Path, failure: VmctlError) -> None:
    """QEMU reports a full disk while it writes the machine's state as an I/O error: say
    it is the disk when the folder's file system has less room than the machine's memory."""
    import shutil

    try:
        free = shutil.disk_usage(folder if folder.exists() else folder.parent).free
    except OSError:
        return
    if free < m.config.memory * 2**20:
        failure.message = (f"the disk is full: {free // 2**20} MiB free in {folder}, where the machine's "
                           f"state (up to {m.config.memory} MiB) is written ({failure.message})")
        failure.hint = "free some disk space where VMCTL_HOME is, then run the command again"


def _after_restore(m: Machine, st: MachineState, snap: Snapshot, *, start: bool, provision: bool | None,
                   only: set[str] | None, emit: Emit, emit_output: Emit) -> None:
    """What follows a restore outside libvirt: the clock and provisioners of a machine
    that continues, the boot of one restored to a stopped snapshot."""
    if not start:
        emit(f"==> {m.name}: snapshot {snap.name!r} restored; the machine is "
             f"{'suspended (vmctl up resumes it)' if snap.memory else 'stopped (vmctl up boots it)'}")
        return
    if not snap.memory:
        m._up_existing(st, provision=provision, emit=emit, emit_output=emit_output, timer=Timer(m.name),
                       cancel=None, only=only)
        emit(f"==> {m.name}: snapshot {snap.name!r} restored")
        return
    timer = Timer(m.name)
    session = m._wait_ssh(st, cancel=None)
    timer.mark("wait for SSH")
    try:
        m._set_clock(session)
        _clock_set(m, st)
        timer.mark("clock")
        m._provision(session, emit=emit, emit_output=emit_output, forced=bool(provision), only=only,
                     first_run=not st.provisioned, skip=provision is False)
    finally:
        session.close()
    emit(f"==> {m.name}: snapshot {snap.name!r} restored")


def _clock_set(m: Machine, st: MachineState) -> None:
    idx = load_index(m, st)
    if idx.clock_behind:
        idx.clock_behind = False
        save_index(m, idx)


def delete(m: Machine, name: str, *, emit: Emit) -> None:
    """Delete snapshot NAME (the lock held); its layer is merged away."""
    st = m.require_state()
    snap = require(m, name)
    emit(f"==> {m.name}: deleting the snapshot {name!r}...")
    with _connection(m, st) as c:
        _delete(m, st, c, snap.id, emit)
        _compact(m, st, c, load_index(m, st))
    emit(f"==> {m.name}: snapshot {name!r} deleted")


def _delete(m: Machine, st: MachineState, c: Any, sid: str, emit: Emit) -> None:
    idx = load_index(m, st)
    snap = idx.get(sid)
    if snap is None or snap.deleted:
        return
    snap.deleted = True  # from here on the name is free; the files follow
    save_index(m, idx)
    _unlink(_vmstate(st, sid))
    _drop_stores(st, sid)


def latest_push(m: Machine) -> Snapshot | None:
    """The snapshot `pop` restores: the last one `push` made."""
    st = m.require_state()
    pushed = [s for s in load_index(m, st).live() if PUSH_RE.fullmatch(s.name)]
    return pushed[-1] if pushed else None


def describe(m: Machine) -> list[dict[str, Any]]:
    """The machine's snapshots as `list --json` shows them, oldest first."""
    st = m.state
    if st is None:
        return []
    idx = load_index(m, st)
    out = []
    for s in idx.live():
        parent = idx.get(s.parent)
        while parent is not None and parent.deleted:
            parent = idx.get(parent.parent)
        size = sum(_allocated(_path(st, rel)) for rel in s.disks.values())
        if s.memory:
            size += _allocated(_vmstate(st, s.id))
        size += sum(_allocated(path) for path in _store_copies(st, s.id))
        out.append({
            "name": s.name,
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(s.created)),
            "parent": parent.name if parent is not None else None,
            "memory": s.memory,
            "size_bytes": size,
            "box": s.box,
            "box_version": s.box_version,
        })  # fmt: skip
    return out


# --- settling what is pending ------------------------------------------------------------------

def recover(m: Machine) -> None:
    """Finish, or undo, a snapshot command that was interrupted (called with the machine's
    lock held, before any command changes the machine) and say which; set the clock of a
    guest restored from memory if that was not done."""
    st = m.state
    if st is None:
        return
    idx = load_index(m, st)
    if idx.pending is not None:
        _recover_pending(m, st, idx)
        idx = load_index(m, st)
    if idx.clock_behind:
        if m._qemu_running():
            with suppress(VmctlError), m._ssh_session() as s:
                m._set_clock(s)
        _clock_set(m, st)


def _recover_pending(m: Machine, st: MachineState, idx: Index) -> None:
    from vmctl import term

    p = idx.pending
    assert p is not None
    if p["op"] == "save":
        what = f"snapshot save {p['snapshot']['name']!r}"
    elif p["op"] == "restore":
        snap = idx.get(p["snapshot"])
        what = f"snapshot restore {snap.name if snap else p['snapshot']!r}"
    else:
        what = "merge of a deleted snapshot's layer"
    term.warn(f"{m.name}: the {what} was interrupted (vmctl was stopped during it); settling it now")
    with hypervisor.connect(st.uri) as c:
        done = _settle(m, st, c, idx)
        _compact(m, st, c, load_index(m, st))
    if p["op"] == "save":
        term.warn(f"{m.name}: " + ("finished: the snapshot is saved" if done else
                                   "undone: the machine is as it was before, without the snapshot"))
    elif p["op"] == "restore":
        term.warn(f"{m.name}: finished: the machine is restored to the snapshot")
    else:
        term.warn(f"{m.name}: finished")


def _settle(m: Machine, st: MachineState, c: Any, idx: Index) -> bool:
    """Bring the pending operation of IDX to an end, from the facts; whether it was done
    (True) or undone (False). Every step may be repeated."""
    p = idx.pending
    assert p is not None
    if p["op"] == "save":
        return _settle_save(m, st, c, idx, p)
    if p["op"] == "restore":
        _settle_restore(m, st, c, idx, p)
        return True
    _settle_merge(m, st, c, idx, p)
    return True


def _settle_save(m: Machine, st: MachineState, c: Any, idx: Index, p: dict[str, Any]) -> bool:
    snap = _parse_snapshot(p["snapshot"])
    new = {t: _path(st, r) for t, r in p["new"].items()}
    container = _vmstate(st, snap.id)
    state = m.status(c)
    sources = c.disk_sources(st.domain) if state in LIVE else None
    if snap.memory:
        if sources is not None:
            done = all(sources.get(t) == str(path) for t, path in new.items())
        else:  # QEMU is gone: the snapshot holds if its state was saved
            done = _state_complete(container, snap.id) and all(path.exists() for path in new.values())
    else:
        done = all(_is_overlay_of(new[t], _path(st, rel)) for t, rel in snap.disks.items())
        if sources is not None and not all(sources.get(t) == str(path) for t, path in new.items()):
            done = False  # started meanwhile on the old image: the freeze did not happen
    if not done:
        if state == hypervisor.PAUSED and p.get("state") == hypervisor.RUNNING:
            c.resume(st.domain)  # paused by the save, which did not get to resume it
        for path in new.values():
            _unlink(path)
        _unlink(container)
        _drop_stores(st, snap.id)
        idx.pending = None
        save_index(m, idx)
        _back_to_saved(m, st, c, p)
        return False
    for rel in snap.disks.values():
        with suppress(FileNotFoundError):
            os.chmod(_path(st, rel), 0o400)
    if p.get("replaces"):
        replaced = idx.get(p["replaces"])
        if replaced is not None:
            replaced.deleted = True
            _unlink(_vmstate(st, replaced.id))
            _drop_stores(st, replaced.id)
    if idx.get(snap.id) is None:
        idx.snapshots.append(snap)
    idx.head = snap.id
    _switch(m, st, c, new)
    idx.pending = None
    save_index(m, idx)
    _back_to_saved(m, st, c, p)
    return True


def _back_to_saved(m: Machine, st: MachineState, c: Any, p: dict[str, Any]) -> None:
    """A suspended machine is started paused to be saved: suspend it again."""
    if p.get("state") == hypervisor.SAVED and c.state(st.domain) in LIVE:
        c.suspend(st.domain)
        fix_saved_xml(m, c)


def fix_saved_xml(m: Machine, c: Any) -> None:
    """Point the domain's managed-save image at the disks' current images (libvirt's view is
    what QEMU opened when it started)."""
    st = m.require_state()
    disks = disks_of(m)
    c.fix_saved_xml(st.domain, {d.target: str(d.path) for d in disks}, {d.target: d.format for d in disks})


def _switch(m: Machine, st: MachineState, c: Any, active: dict[str, Path]) -> None:
    """Make ACTIVE the disks' images in the state and in libvirt's definition (so the
    next start opens them; through QEMU alone, that is left to ensure_defined, and the
    XML is not rendered: it costs a running machine's save tens of milliseconds)."""
    for target, path in active.items():
        _set_active(m, st, target, path)
    m.save()
    if c.defines:
        c.define(m._render(st))


def _settle_restore(m: Machine, st: MachineState, c: Any, idx: Index, p: dict[str, Any]) -> None:
    snap = idx.get(p["snapshot"])
    if snap is None:
        idx.pending = None
        save_index(m, idx)
        raise SnapshotError("the snapshot being restored is gone from the index")
    new = {t: _path(st, r) for t, r in p["new"].items()}
    missing = [(new[t], _path(st, rel), _layer_format(rel)) for t, rel in snap.disks.items()
               if not _is_overlay_of(new[t], _path(st, rel))]
    for path, _, _ in missing:
        _unlink(path)
    _create_overlays(missing)
    state = m.status(c)
    container = _vmstate(st, snap.id)
    start = p.get("start", True)
    failure: HypervisorError | None = None
    if snap.memory:
        try:
            if state in LIVE:
                sources = c.disk_sources(st.domain) or {}
                if state == hypervisor.PAUSED or any(sources.get(t) != str(path) for t, path in new.items()):
                    _load(m, st, c, container, snap, new)
                _switch(m, st, c, new)
            else:
                if state == hypervisor.SAVED:
                    c.discard_saved(st.domain)
                _switch(m, st, c, new)
                _start_paused(m, st, c)
                _load(m, st, c, container, snap, {})
            if not start:
                c.suspend(st.domain)
                fix_saved_xml(m, c)
        except HypervisorError as exc:
            # QEMU could not take the state back: the machine stays stopped on the
            # snapshot's disks (never between two states), and the error says so.
            failure = exc
            c.destroy(st.domain, True)
            st.halted = True
            _switch(m, st, c, new)
            exc.message += (f"; machine {m.name} is stopped, on the disks of snapshot {snap.name!r}"
                            " (vmctl up boots them)")
    else:
        if state in LIVE:
            sources = c.disk_sources(st.domain) or {}
            if any(sources.get(t) != str(path) for t, path in new.items()):
                c.destroy(st.domain, True)  # the state it had is being thrown away
        elif state == hypervisor.SAVED:
            c.discard_saved(st.domain)
        if c.state(st.domain) not in LIVE:
            _put_back_stores(st, snap.id)
        _switch(m, st, c, new)
        if c.state(st.domain) not in LIVE and not st.halted:
            st.halted = True  # stopped on purpose: poweroff, not crashed
            m.save()
    idx = load_index(m, st)
    idx.head = snap.id
    old = p.get("old", {})
    # A guest brought back from memory believes it is the snapshot's moment: its clock is
    # set over SSH once it answers; until then the journal says so.
    idx.clock_behind = snap.memory and start and failure is None
    idx.pending = None
    save_index(m, idx)
    kept = {rel for s in idx.snapshots for rel in s.disks.values()}
    for target, rel in old.items():
        if rel not in kept and rel != p["new"].get(target):
            _unlink(_path(st, rel))
    if failure is not None:
        raise failure


def _load(m: Machine, st: MachineState, c: Any, container: Path, snap: Snapshot, overlays: dict[str, Path]) -> None:
    """Load SNAPSHOT's state into the running (or paused) QEMU, switching the disks to
    OVERLAYS first."""
    del m
    c.load_live(st.domain, str(container), snap.id, {t: str(p) for t, p in overlays.items()})


def _start_paused(m: Machine, st: MachineState, c: Any) -> None:
    """Start the domain paused; choose the host ports again if one was taken meanwhile."""
    if st.halted:
        st.halted = False
        m.save()
    m._start_choosing_ports(c, st, lambda _line: None, c.start_paused)


# --- merging deleted snapshots' layers -----------------------------------------------------------

def _children(idx: Index, sid: str) -> list[Snapshot]:
    return [s for s in idx.snapshots if s.parent == sid]


def _running_chain(idx: Index) -> set[str]:
    chain = set()
    s = idx.get(idx.head)
    while s is not None:
        chain.add(s.id)
        s = idx.get(s.parent)
    return chain


def _compact(m: Machine, st: MachineState, c: Any, idx: Index) -> None:
    """Merge away the layers of deleted snapshots where that is possible now: a layer
    nothing builds on is removed; one with a single child is merged into it (offline, or
    into the running machine's active overlay by a live commit); one the running machine
    reads below another snapshot's layer waits for the machine to stop."""
    for _ in range(len(idx.snapshots) + 1):
        if idx.pending is not None:
            return
        state = m.status(c)
        in_use = _running_chain(idx) if state in (*LIVE, hypervisor.SAVED) else set()
        changed = False
        for ghost in [s for s in idx.snapshots if s.deleted]:
            children = _children(idx, ghost.id)
            active = idx.head == ghost.id
            if not children and not active:
                idx.snapshots.remove(ghost)
                save_index(m, idx)
                for rel in ghost.disks.values():
                    _unlink(_path(st, rel))
                _unlink(_vmstate(st, ghost.id))
                _drop_stores(st, ghost.id)
                changed = True
            elif len(children) + active == 1:
                if ghost.id not in in_use:
                    child = children[0].id if children else None
                    idx.pending = {"op": "merge", "method": "offline", "ghost": ghost.id, "child": child,
                                   "steps": _merge_plan(m, st, idx, ghost, child)}
                elif active and state in LIVE and all(_layer_format(r) == "qcow2" for r in ghost.disks.values()):
                    # (QEMU commits into qcow2 layers only: a raw one waits for the machine to stop)
                    idx.pending = {"op": "merge", "method": "live", "ghost": ghost.id, "child": None,
                                   "old": {d.target: _rel(st, d.path) for d in disks_of(m)}}
                else:
                    continue
                save_index(m, idx)
                _settle_merge(m, st, c, idx, idx.pending)
                changed = True
            if changed:
                break
        if not changed:
            break
        idx = load_index(m, st)
    if idx.pending is None:
        _collect_garbage(m, st, idx)


def _merge_plan(m: Machine, st: MachineState, idx: Index, ghost: Snapshot, child: str | None) -> dict[str, str]:
    """For each disk: "commit" (the child's data into the ghost's layer, which then takes
    the child's place) or "rebase" (the ghost's data into the child), whichever copies less."""
    steps = {}
    for target, rel in ghost.disks.items():
        child_file = _child_file(m, st, idx, child, target)
        # A raw layer cannot take a qcow2 child's place (its name and the images above
        # it say qcow2): its data goes into the child.
        raw = _layer_format(rel) == "raw"
        steps[target] = "commit" if not raw and _allocated(child_file) <= _allocated(_path(st, rel)) else "rebase"
    return steps


def _child_file(m: Machine, st: MachineState, idx: Index, child: str | None, target: str) -> Path:
    if child is None:
        active = next((d.path for d in disks_of(m) if d.target == target), None)
        if active is None:
            raise SnapshotError(f"the machine has no disk {target} a snapshot holds now")
        return active
    snap = idx.get(child)
    assert snap is not None
    return _path(st, snap.disks[target])


def _settle_merge(m: Machine, st: MachineState, c: Any, idx: Index, p: dict[str, Any]) -> None:
    ghost = idx.get(p["ghost"])
    if ghost is None:
        idx.pending = None
        save_index(m, idx)
        return
    if p["method"] == "live":
        _settle_live_merge(m, st, c, idx, ghost, p)
        return
    child = p.get("child")
    for target, method in p["steps"].items():
        layer = _path(st, ghost.disks[target])
        raw = _layer_format(ghost.disks[target]) == "raw"
        below = None if raw else _backing_of(layer)
        if raw:
            method = "rebase"  # see _merge_plan
        into = _child_file(m, st, idx, child, target)
        if not layer.exists():
            continue  # done: the ghost's file took the child's place, or was removed
        mode = os.stat(into).st_mode & 0o777
        os.chmod(into, 0o600)  # qemu-img opens it for writing (a frozen layer is 0400)
        if method == "commit":
            os.chmod(layer, 0o600)
            _qemu_img("commit", "-q", "-d", "-f", "qcow2", str(into), purpose="merge a deleted snapshot's layer")
            os.chmod(layer, mode)
            os.replace(layer, into)
        else:
            if below is None:
                _qemu_img("rebase", "-q", "-f", "qcow2", "-b", "", str(into), purpose="merge a deleted snapshot's layer")
            else:
                _qemu_img("rebase", "-q", "-f", "qcow2", "-F", below[1], "-b", below[0], str(into),
                          purpose="merge a deleted snapshot's layer")
            os.chmod(into, mode)
            _unlink(layer)
    _drop_ghost(m, idx, ghost, child)


def _backing_of(layer: Path) -> tuple[str, str] | None:
    info = _info(layer)
    if info is None:
        return None
    backing = info.get("full-backing-filename") or info.get("backing-filename")
    return (backing, info.get("backing-filename-format", "qcow2")) if backing else None


def _drop_ghost(m: Machine, idx: Index, ghost: Snapshot, child: str | None) -> None:
    if child is None:
        idx.head = ghost.parent
    else:
        snap = idx.get(child)
        if snap is not None:
            snap.parent = ghost.parent
    idx.snapshots.remove(ghost)
    idx.pending = None
    save_index(m, idx)


def _settle_live_merge(m: Machine, st: MachineState, c: Any, idx: Index, ghost: Snapshot, p: dict[str, Any]) -> None:
    """The running machine's active overlays merged into the deleted head's layers,
    which become the active images."""
    base = {t: _path(st, rel) for t, rel in ghost.disks.items()}
    sources = c.disk_sources(st.domain) if m.status(c) in LIVE else None
    if sources is None:  # QEMU went away: leave it to an offline merge
        idx.pending = None
        save_index(m, idx)
        return
    for target, path in base.items():
        if sources.get(target) != str(path):
            os.chmod(path, 0o600)
            c.commit_live(st.domain, target, str(path))
    _switch(m, st, c, base)
    idx.head = ghost.parent
    idx.snapshots.remove(ghost)
    idx.pending = None
    save_index(m, idx)
    for target, rel in p.get("old", {}).items():
        if _path(st, rel) != base.get(target):
            _unlink(_path(st, rel))


def _collect_garbage(m: Machine, st: MachineState, idx: Index) -> None:
    """Remove files in the snapshots folder that nothing refers to (left by a command
    interrupted before it wrote its journal, or after it)."""
    folder = _home(st) / SNAPSHOTS_DIR
    try:
        names = [e.name for e in os.scandir(folder)]
    except FileNotFoundError:
        return
    wanted = {Path(rel).name for s in idx.snapshots for rel in s.disks.values()}
    wanted |= {d.path.name for d in disks_of(m)}
    wanted |= {f"{s.id}.vmstate" for s in idx.snapshots if s.memory and not s.deleted}
    wanted |= {p.name for s in idx.snapshots if not s.deleted for p in _store_copies(st, s.id)}
    for name in names:
        if (OVERLAY_RE.fullmatch(name) or VMSTATE_RE.fullmatch(name) or STORE_RE.fullmatch(name)) \
                and name not in wanted:
            log.debug("%s: removing %s, which no snapshot refers to", m.name, name)
            _unlink(folder / name)

