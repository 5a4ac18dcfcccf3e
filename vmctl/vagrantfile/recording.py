"""What one evaluation read from the host, so that its result can be used again (cache.py).

Every input the evaluator takes from outside the Vagrantfile's own text passes through a
Recorder: environment variables (by name, or all of them), the working folder, ARGV, the
files read (where each really leads, and a hash of its bytes), file tests, folder listings,
the number of CPUs, and the box Vagrantfile lookups. Each is a probe: (kind, argument) and
the answer it got. `still_answers` asks each again; a cached result is used only when every
probe gets its answer.

Nothing here imports the evaluator: a command that finds its result in the cache never
loads the parser.
"""

from __future__ import annotations

import hashlib
import os
import stat
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

MAX_FILE_BYTES = 1024 * 1024  # as objects.MAX_FILE_BYTES, without importing it

Key = tuple[str, Any]
BoxLookup = Callable[[str, "str | None"], "Path | None"]

# File and folder tests by their Ruby name: the evaluator and the cache ask the same.
FILE_TESTS: dict[str, Callable[[Path], bool]] = {
    "exist?": lambda p: p.exists(),
    "file?": lambda p: p.is_file(),
    "directory?": lambda p: p.is_dir(),
    "readable?": lambda p: os.access(p, os.R_OK),
    "executable?": lambda p: os.access(p, os.X_OK),
    "symlink?": lambda p: p.is_symlink(),
    "zero?": lambda p: p.exists() and p.stat().st_size == 0,
    "size?": lambda p: p.exists() and p.stat().st_size > 0,
    "dir_empty?": lambda p: p.is_dir() and not any(p.iterdir()),
}


def file_test(name: str, path: Path) -> bool:
    try:
        return FILE_TESTS[name](path)
    except OSError:
        return False


def file_size(path: Path) -> int | None:
    try:
        return path.stat().st_size
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


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def file_answer(path: Path) -> tuple[str, str]:
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
            return str(Path.cwd()) == answer
        if kind == "argv":
            return tuple(argv) == tuple(answer)
        if kind == "file":
            real, was = answer
            if was == "refused":  # the policy's inputs (environment, boxes) are probes too
                return os.path.realpath(arg) == real
            return file_answer(Path(arg)) == (real, was)
        if kind == "test":
            name, path = arg
            return file_test(name, Path(path)) == answer
        if kind == "size":
            return file_size(Path(arg)) == answer
        if kind == "listdir":
            return listing(arg) == answer
        if kind == "lexists":
            return os.path.lexists(arg) == answer
        if kind == "cpus":
            return (os.cpu_count() or 1) == answer
        if kind == "box":
            if box_lookup is None:
                return False
            found = box_lookup(*arg)
            return (str(found) if found is not None else None) == answer
    except Exception:  # noqa: BLE001 - a probe that cannot be asked again is not the same
        return False
    return False
