"""State on disk: atomic JSON files, file locks, and the global machine index.

Every write goes to a temporary file in the same folder, is fsynced and renamed over the
old one, so a killed process or a full disk leaves either the old or the new file, never
half of one. Locks are fcntl locks on files under VMCTL_HOME/locks: the kernel drops them
when a process dies, so a SIGKILL never leaves a stale lock behind.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import stat
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from vmctl import paths
from vmctl.errors import MachineError, StateError, VmctlError

MAX_STATE_BYTES = 1024 * 1024


def write_atomic(path: Path, data: bytes, mode: int = 0o644) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    # A new file of a random name, as tempfile.mkstemp makes one, without importing
    # tempfile (with shutil and the compression modules): a snapshot of a running machine
    # writes state on its timed path.
    tmp = path.parent / f".{path.name}.{os.urandom(6).hex()}.tmp"
    made = False
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        made = True
        with os.fdopen(fd, "wb") as f:
            os.fchmod(f.fileno(), mode)
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        if made:
            with suppress(OSError):
                os.unlink(tmp)
        if exc.errno == errno.ENOSPC:
            raise VmctlError(f"no space left on the device to write {path}",
                             hint="free some disk space and run the command again") from exc
        raise VmctlError(f"could not write {path}: {exc.strerror}") from exc


def write_json(path: Path, data: Any, mode: int = 0o644) -> None:
    write_atomic(path, (json.dumps(data, indent=2, sort_keys=True) + "\n").encode(), mode)


def read_json(path: Path, default: Any = None, *, what: str = "state file", follow_links: bool = True) -> Any:
    """The JSON in PATH, DEFAULT if it does not exist, StateError naming it if corrupt.
    Without FOLLOW_LINKS, a symbolic link is refused (state in a project folder)."""
    try:
        if follow_links:
            text = path.read_text()
        else:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
            with os.fdopen(fd, "rb") as f:
                if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
                    raise StateError(f"the {what} {path} is not a regular file",
                                     hint=f"move it aside: mv {path} {path}.bad")
                text = f.read(MAX_STATE_BYTES + 1).decode("utf-8", "replace")
            if len(text) > MAX_STATE_BYTES:
                raise StateError(f"the {what} {path} is too large to be vmctl's",
                                 hint=f"move it aside: mv {path} {path}.bad")
    except FileNotFoundError:
        return default
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise StateError(f"refusing the {what} {path}: it is a symbolic link",
                             hint=f"remove it (rm {path}); vmctl writes its state files itself") from exc
        raise StateError(f"could not read the {what} {path}: {exc.strerror}") from exc
    try:
        return json.loads(text)
    except ValueError as exc:
        raise StateError(
            f"the {what} {path} is corrupt ({exc})",
            hint=f"move it aside (mv {path} {path}.bad) and run the command again; "
            "vmctl rebuilds what it can by asking libvirt",
        ) from exc


@contextmanager
def file_lock(name: str, *, wait: bool = True, busy_message: str | None = None) -> Iterator[int]:
    """Hold the lock VMCTL_HOME/locks/NAME.lock; without WAIT, raise MachineError if busy.
    Yields the locked file descriptor (a child process given it keeps the lock held)."""
    lock_dir = paths.locks_dir()
    lock_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(lock_dir / f"{name}.lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        flags = fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB)
        try:
            fcntl.flock(fd, flags)
        except BlockingIOError as exc:
            raise MachineError(
                busy_message or f"{name} is busy: another vmctl command is using it",
                hint="wait for the other command to finish, then try again",
            ) from exc
        yield fd
    finally:
        os.close(fd)


# --- the global machine index ------------------------------------------------------------

@dataclass
class IndexEntry:
    """One vmctl machine on this host, whatever its project."""

    id: str
    name: str
    project: str  # the folder holding the Vagrantfile
    domain: str
    uri: str
    box_name: str | None = None
    box_version: str | None = None
    ports: list[int] = field(default_factory=list)  # host ports reserved for it
    created: float = field(default_factory=time.time)


def _index_path() -> Path:
    return paths.vmctl_home() / "index.json"


@contextmanager
def index_lock() -> Iterator[None]:
    with file_lock("index"):
        yield


def load_index() -> dict[str, IndexEntry]:
    data = read_json(_index_path(), {"machines": {}}, what="machine index")
    try:
        return {k: IndexEntry(**v) for k, v in data.get("machines", {}).items()}
    except (TypeError, AttributeError) as exc:
        raise StateError(
            f"the machine index {_index_path()} is not in the expected shape",
            hint=f"move it aside (mv {_index_path()} {_index_path()}.bad) and run the command again",
        ) from exc


def save_index(entries: dict[str, IndexEntry]) -> None:
    write_json(_index_path(), {"machines": {k: asdict(v) for k, v in sorted(entries.items())}})


def machines_using_box(name: str, version: str | None = None) -> list[IndexEntry]:
    """Machines created from box NAME (any version when VERSION is None)."""
    return [
        e
        for e in load_index().values()
        if e.box_name == name and (version is None or e.box_version == version)
    ]
