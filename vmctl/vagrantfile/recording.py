"""What one evaluation read from the host, so that its result can be used again (cache.py).

Every input the evaluator takes from outside the Vagrantfile's own text passes through a
Recorder: environment variables (by name, or all of them), the working folder, ARGV, the
files read (where each really leads, and a hash of its bytes), file tests, folder listings,
the number of CPUs, and the box Vagrantfile lookups. Each is a probe: (kind, argument) and
the answer it got. `still_answers` asks each again; a cached result is used only when every
probe gets its answer.

Nothing here imports the evaluator: a command that finds its result in the cache never
loads the parser. Only `os` and `stat` at the top: `vmctl ssh`'s fast path
(vmctl/cli/fast_ssh.py) asks the probes again with this module, before it hands over to
OpenSSH, and pathlib or hashlib would cost it more than everything else it does.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Mapping

TYPE_CHECKING = False  # typing itself costs the fast path a few milliseconds
if TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from pathlib import Path
    from typing import Any

    Key = tuple[str, Any]
    BoxLookup = Callable[[str, str | None], Path | None]

MAX_FILE_BYTES = 1024 * 1024  # as objects.MAX_FILE_BYTES, without importing it

# File and folder tests by their Ruby name: the evaluator and the cache ask the same. With
# os.path's functions, which answer as pathlib's do here (file_test turns an error into false).
FILE_TESTS: dict[str, Callable[[Any], bool]] = {
    "exist?": os.path.exists,
    "file?": os.path.isfile,
    "directory?": os.path.isdir,
    "readable?": lambda p: os.access(p, os.R_OK),
    "executable?": lambda p: os.access(p, os.X_OK),
    "symlink?": os.path.islink,
    "zero?": lambda p: os.path.exists(p) and os.stat(p).st_size == 0,
    "size?": lambda p: os.path.exists(p) and os.stat(p).st_size > 0,
    "dir_empty?": lambda p: os.path.isdir(p) and not os.listdir(p),
}


def file_test(name: str, path: Any) -> bool:
    try:
        return FILE_TESTS[name](path)
    except OSError:
        return False


def file_size(path: Any) -> int | None:
    try:
        return os.stat(path).st_size
    except OSError:
        return None


def listing(folder: str) -> tuple[tuple[str, bool], ...] | None:
    """FOLDER's entries (name, is a folder without following links), sorted; None if it
    cannot be listed."""
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return None
    return tuple(sorted((e.name, e.is_dir(follow_symlinks=False)) for e in entries))


def sha256(data: bytes) -> Any:
    """hashlib.sha256, from the built-in module when there is one (importing hashlib loads
    OpenSSL's bindings: a few milliseconds of every fast command)."""
    try:
        from _sha256 import sha256 as new
    except ImportError:  # a Python built without it
        from hashlib import sha256 as new
    return new(data)


def digest(data: bytes) -> str:
    return sha256(data).hexdigest()  # type: ignore[no-any-return]


def file_answer(path: Any) -> tuple[str, str]:
    """(where PATH really leads, the sha256 of its bytes or why there are none)."""
    real = os.path.realpath(path)
    try:
        fd = os.open(real, os.O_RDONLY | os.O_NONBLOCK)
    except OSError as exc:
        return real, f"error:{exc.errno}"
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return real, "not-a-file"
        with os.fdopen(fd, "rb", closefd=False) as f:
            return real, digest(f.read(MAX_FILE_BYTES + 1))
    except OSError as exc:
        return real, f"error:{exc.errno}"
    finally:
        os.close(fd)


def environ_digest(env: Mapping[str, str]) -> str:
    return digest(repr(sorted(env.items())).encode())


class Recorder:
    """The probes of one evaluation, in the order first asked."""

    def __init__(self) -> None:
        self.probes: dict[Key, Any] = {}

    def note(self, kind: str, arg: Any, answer: Any) -> Any:
        self.probes.setdefault((kind, arg), answer)
        return answer


class RecordingEnv(Mapping[str, str]):
    """The environment as the evaluator sees it: each name asked for is a probe; listing
    them all makes the whole environment one."""

    def __init__(self, env: Mapping[str, str], recorder: Recorder) -> None:
        self._env = env
        self._recorder = recorder

    def get(self, key: str, default: Any = None) -> Any:  # type: ignore[override]
        value = self._env.get(key)
        self._recorder.note("env", key, value)
        return default if value is None else value

    def __getitem__(self, key: str) -> str:
        value = self.get(key)
        if value is None:
            raise KeyError(key)
        return value  # type: ignore[no-any-return]

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and self.get(key) is not None

    def __iter__(self) -> Iterator[str]:
        self._recorder.note("environ", None, environ_digest(self._env))
        return iter(dict(self._env))

    def __len__(self) -> int:
        self._recorder.note("environ", None, environ_digest(self._env))
        return len(self._env)


def still_answers(key: Key, answer: Any, *, argv: tuple[str, ...], box_lookup: BoxLookup | None) -> bool:
    """Whether probe KEY still gets ANSWER now."""
    kind, arg = key
    try:
        if kind == "env":
            return os.environ.get(arg) == answer
        if kind == "environ":
            return environ_digest(os.environ) == answer
        if kind == "cwd":
            from pathlib import Path

            return str(Path.cwd()) == answer
        if kind == "argv":
            return tuple(argv) == tuple(answer)
        if kind == "file":
            real, was = answer
            if was == "refused":  # the policy's inputs (environment, boxes) are probes too
                return os.path.realpath(arg) == real
            return file_answer(arg) == (real, was)
        if kind == "test":
            name, path = arg
            return file_test(name, path) == answer
        if kind == "size":
            return file_size(arg) == answer
        if kind == "listdir":
            return listing(arg) == answer
        if kind == "lexists":
            return os.path.lexists(arg) == answer
        if kind == "cpus":
            return (os.cpu_count() or 1) == answer
        if kind == "boxstore":
            return box_store(arg) == answer
        if kind == "box":
            if box_lookup is None:
                return False
            found = box_lookup(*arg)
            return (str(found) if found is not None else None) == answer
    except Exception:  # noqa: BLE001 - a probe that cannot be asked again is not the same
        return False
    return False


# -- the box store ------------------------------------------------------------------------------

class StoreLookup:
    """A box Vagrantfile lookup that reads only the box store in ROOT
    (boxes.installed.find_box_vagrantfile): an evaluation that uses it records the store's
    fingerprint (`box_store`) before its first lookup, and an unchanged fingerprint
    vouches for every answer the lookup gave. That is how `vmctl ssh`'s fast path checks
    the box probes without loading the box store's code."""

    def __init__(self, root: str, lookup: Callable[[str, str | None], Path | None]) -> None:
        self.root = root
        self.lookup = lookup

    def __call__(self, name: str, constraint: str | None) -> Path | None:
        return self.lookup(name, constraint)


def _kind(path: str) -> Any:
    """What PATH is, following links: "dir", "file", "other", or the error that stat gave."""
    try:
        mode = os.stat(path).st_mode
    except OSError as exc:
        return ("error", exc.errno)
    return "dir" if stat.S_ISDIR(mode) else "file" if stat.S_ISREG(mode) else "other"


def _names(folder: str) -> Any:
    try:
        return sorted(os.listdir(folder))
    except OSError as exc:
        return ("error", exc.errno)


def box_store(root: str) -> Any:
    """Everything a box lookup reads of the box store ROOT (NAME/VERSION/libvirt/): each
    folder's kind, the hash of each metadata.json's first bytes, whether each box holds a
    Vagrantfile. A superset of what boxes.installed reads: the same fingerprint means the
    same answer to every lookup."""
    entries = []
    names = _names(root)
    for name in names if isinstance(names, list) else ():
        name_dir = os.path.join(root, name)
        versions = []
        listed = _names(name_dir) if _kind(name_dir) == "dir" else None
        for version in listed if isinstance(listed, list) else ():
            folder = os.path.join(name_dir, version, "libvirt")
            kind = _kind(folder)
            if kind != "dir":
                versions.append((version, kind))
                continue
            versions.append((version, kind, _head_digest(os.path.join(folder, "metadata.json")),
                             _kind(os.path.join(folder, "Vagrantfile"))))
        entries.append((name, _kind(name_dir), listed if not isinstance(listed, list) else None, tuple(versions)))
    return (_kind(root), names if not isinstance(names, list) else None, tuple(entries))


def _head_digest(path: str) -> str:
    """The sha256 of PATH's first MAX_FILE_BYTES + 1 bytes (what the box store reads of a
    metadata.json), or the error."""
    try:
        with open(path, "rb") as f:
            return digest(f.read(MAX_FILE_BYTES + 1))
    except OSError as exc:
        return f"error:{exc.errno}"
