"""Unpacking box archives safely, and checking what they hold.

A box is a tar archive (plain, gzip, bzip2, xz, or zstd) holding ``metadata.json``,
``box.img`` and optionally a ``Vagrantfile`` and other regular files (a kernel and initrd the
Vagrantfile names, for example). Every member is checked before anything is written: only
regular files and folders, no absolute path, no ``..``, no symbolic or hard link, no device or
FIFO. The caller unpacks into a scratch folder it deletes on any failure, so a refused box
leaves nothing behind. Sparse members (GNU tar --sparse, PAX sparse) are written region by
region, so the time taken follows the archive's data, never the size its holes declare.

``metadata.json`` must say ``provider: libvirt``, ``format: qcow2`` and give ``virtual_size``;
``box.img`` is inspected with ``qemu-img info --output=json`` and refused unless its format is
qcow2 or raw and it names no backing file and no external data file.
"""

from __future__ import annotations

import json
import os
import tarfile
from collections.abc import Callable, Iterator
from pathlib import Path, PurePosixPath
from typing import IO, Any

from vmctl.errors import BoxError

CHUNK = 1024 * 1024
RESERVED = frozenset({"vmctl-box.json"})
IMAGE_FORMATS = ("qcow2", "raw")

_MAGIC = (
    (b"\x28\xb5\x2f\xfd", "zstd"),
    (b"\x1f\x8b", "gzip"),
    (b"BZh", "bzip2"),
    (b"\xfd7zXZ\x00", "xz"),
)


def compression(path: Path) -> str | None:
    """The compression of the archive at PATH by its magic bytes (None: plain or unknown)."""
    with path.open("rb") as f:
        head = f.read(8)
    for magic, name in _MAGIC:
        if head.startswith(magic):
            return name
    return None


class _Counting:
    """A read-only file wrapper that reports how many bytes were read."""

    def __init__(self, f: IO[bytes], advance: Callable[[int], None]) -> None:
        self._f = f
        self._advance = advance

    def read(self, n: int = -1) -> bytes:
        data = self._f.read(n)
        self._advance(len(data))
        return data


def member_path(member: tarfile.TarInfo, archive: str) -> PurePosixPath | None:
    """The checked relative path of MEMBER (None for the archive's root "." entry)."""
    name = member.name

    def refuse(why: str) -> BoxError:
        return BoxError(
            f"refusing the box {archive}: member {name!r} {why}",
            hint="a box may hold only regular files and folders inside the box; nothing was installed",
        )

    if member.issym():
        raise refuse(f"is a symbolic link (to {member.linkname!r})")
    if member.islnk():
        raise refuse(f"is a hard link (to {member.linkname!r})")
    if member.ischr() or member.isblk():
        raise refuse("is a device")
    if member.isfifo():
        raise refuse("is a FIFO")
    if not (member.isreg() or member.isdir()):
        raise refuse("is not a regular file or folder")
    if name.startswith("/") or name.startswith("\\"):
        raise refuse("has an absolute path")
    parts = [p for p in name.replace("\\", "/").split("/") if p not in ("", ".")]
    if ".." in parts:
        raise refuse('has a ".." component (path traversal)')
    if not parts:
        if member.isdir():
            return None
        raise refuse("has an empty name")
    rel = PurePosixPath(*parts)
    if str(rel) in RESERVED:
        raise refuse("uses a file name vmctl keeps for itself")
    return rel


def unpack(archive: Path, dest: Path, *, scratch: Path, label: str | None = None,
           advance: Callable[[int], None] | None = None) -> list[str]:
    """Unpack the box ARCHIVE into the empty folder DEST, checking every member.

    SCRATCH is a folder (on the same filesystem, deleted by the caller) for a decompressed copy
    of a zstd archive. Returns the relative paths of the files written.
    """
    label = label or str(archive)
    tick = advance or (lambda _n: None)
    kind = compression(archive)
    source = archive
    if kind == "zstd":
        from vmctl.errors import MissingToolError, VmctlError
        from vmctl.run import run

        source = scratch / "box.tar"
        try:
            run(["zstd", "-d", "-q", "-f", "-o", source, archive],
                purpose="decompress a zstd box archive", timeout=3600)
        except MissingToolError:
            raise
        except VmctlError as exc:  # corrupt data, or no room for the decompressed copy
            source.unlink(missing_ok=True)
            raise BoxError(f"{label} could not be decompressed: {exc.message}",
                           hint="the box file is damaged, or the disk under VMCTL_HOME is full") from exc
    written: list[str] = []
    dest.mkdir(parents=True, exist_ok=True)
    try:
        with source.open("rb") as raw:
            reader = _Counting(raw, tick) if source == archive else raw
            with _open_tar(reader, label) as tar:
                for member in _members(tar, label):
                    rel = member_path(member, label)
                    if rel is None:
                        continue
                    target = dest.joinpath(*rel.parts)
                    _make_parents(dest, rel)
                    if member.isdir():
                        if target.exists() and not target.is_dir():
                            raise BoxError(f"refusing the box {label}: {str(rel)!r} is both a file and a folder")
                        target.mkdir(mode=0o755, exist_ok=True)
                        continue
                    if member.sparse is not None:
                        _write_sparse(target, tar, member, label, str(rel))
                        written.append(str(rel))
                        continue
                    src = tar.extractfile(member)
                    if src is None:  # pragma: no cover - isreg() members always have data
                        raise BoxError(f"refusing the box {label}: cannot read member {member.name!r}")
                    _write_file(target, src, member.size, label, str(rel))
                    written.append(str(rel))
    except tarfile.TarError as exc:
        raise _unreadable(label, exc) from exc
    except EOFError as exc:
        raise BoxError(f"the box archive {label} is truncated") from exc
    except OSError as exc:
        raise BoxError(f"could not unpack {label}: {exc.strerror or exc}",
                       hint="check the free disk space under VMCTL_HOME") from exc
    finally:
        if source != archive:
            source.unlink(missing_ok=True)
    return written


def _unreadable(label: str, exc: BaseException) -> BoxError:
    return BoxError(
        f"{label} is not a box archive that can be read ({exc or type(exc).__name__})",
        hint="a box is a tar archive (optionally gzip, bzip2, xz or zstd compressed) "
        "holding metadata.json and box.img",
    )


# tarfile lets some damage through as other exceptions: a PAX header's non-numeric size or
# sparse map (ValueError), a gzip header cut short (TypeError from ord()).
_TARFILE_SLIPS = (ValueError, TypeError, IndexError, OverflowError)


def _open_tar(reader: Any, label: str) -> tarfile.TarFile:
    try:
        return tarfile.open(fileobj=reader, mode="r|*")
    except _TARFILE_SLIPS as exc:
        raise _unreadable(label, exc) from exc


def _members(tar: tarfile.TarFile, label: str) -> Iterator[tarfile.TarInfo]:
    """The members of TAR, as tarfile reads them, with tarfile's slips translated."""
    members = iter(tar)
    while True:
        try:
            member = next(members)
        except StopIteration:
            return
        except _TARFILE_SLIPS as exc:
            raise _unreadable(label, exc) from exc
        yield member


def _make_parents(dest: Path, rel: PurePosixPath) -> None:
    folder = dest
    for part in rel.parts[:-1]:
        folder = folder / part
        if folder.is_symlink() or (folder.exists() and not folder.is_dir()):
            raise BoxError(f"refusing the box: {str(rel)!r} lies under something that is not a folder")
        folder.mkdir(mode=0o755, exist_ok=True)


def _create(target: Path, label: str, rel: str) -> int:
    try:
        return os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
    except FileExistsError as exc:
        raise BoxError(f"refusing the box {label}: member {rel!r} appears more than once") from exc


_ZEROS = bytes(CHUNK)

def _copy(src: IO[bytes], out: IO[bytes], length: int | None) -> None:
    """Copy LENGTH bytes (None: to the end) from SRC to OUT, seeking over runs of zeros."""
    left = length
    while left is None or left > 0:
        chunk = src.read(CHUNK if left is None else min(CHUNK, left))
        if not chunk:
            if left is not None:
                raise EOFError("a member ends early")
            return
        if left is not None:
            left -= len(chunk)
        if chunk == _ZEROS[: len(chunk)]:  # a memcmp: counting the zeros cost ~25 ms per box
            out.seek(len(chunk), os.SEEK_CUR)
        else:
            out.write(chunk)


def _write_file(target: Path, src: IO[bytes], size: int, label: str, rel: str) -> None:
    """Write SRC to TARGET (which must not exist), keeping runs of zeros sparse."""
    with os.fdopen(_create(target, label, rel), "wb") as out:
        _copy(src, out, None)
        out.truncate(size)


def _write_sparse(target: Path, tar: tarfile.TarFile, member: tarfile.TarInfo, label: str,
                  rel: str) -> None:
    """Write the sparse MEMBER (GNU or PAX sparse) to TARGET: only its data regions are read
    and written, the holes are left as holes. (tarfile's own reader makes up every byte of
    the holes, so a few bytes of archive declaring a terabyte of holes would take hours.)"""
    stream = tar.fileobj
    assert stream is not None and member.sparse is not None
    stream.seek(member.offset_data)
    with os.fdopen(_create(target, label, rel), "wb") as out:
        end = 0
        for offset, length in member.sparse:
            if length == 0:  # unused slots of the map
                continue
            if offset < end or length < 0 or offset + length > member.size:
                raise BoxError(f"refusing the box {label}: member {rel!r} has a bad sparse map")
            out.seek(offset)
            _copy(stream, out, length)
            end = offset + length
        out.truncate(member.size)


# --- what the box holds --------------------------------------------------------------------

def check_metadata(box_dir: Path, label: str) -> dict[str, Any]:
    """The box's metadata.json, checked; BoxError naming the problem otherwise."""
    path = box_dir / "metadata.json"

    def bad(problem: str) -> BoxError:
        return BoxError(
            f"refusing the box {label}: {problem}",
            hint='a libvirt box has metadata.json like {"provider": "libvirt", "format": "qcow2", "virtual_size": 10}',
        )

    if not path.is_file():
        raise bad("it has no metadata.json")
    try:
        data = json.loads(path.read_text())
    except (ValueError, UnicodeDecodeError) as exc:
        raise bad(f"metadata.json is not valid JSON ({exc})") from exc
    if not isinstance(data, dict):
        raise bad("metadata.json is not a JSON object")
    provider = data.get("provider")
    if provider != "libvirt":
        raise bad(
            f"metadata.json says provider {provider!r}; vmctl runs libvirt boxes"
            if provider is not None else 'metadata.json has no "provider" (expected "libvirt")'
        )
    fmt = data.get("format")
    if fmt != "qcow2":
        raise bad(
            f"metadata.json says format {fmt!r}; expected \"qcow2\""
            if fmt is not None else 'metadata.json has no "format" (expected "qcow2")'
        )
    size = data.get("virtual_size")
    if size is None:
        raise bad('metadata.json has no "virtual_size"')
    if isinstance(size, bool) or not isinstance(size, int | float) or size <= 0:
        raise bad(f'metadata.json has "virtual_size" {size!r}; expected a positive number of GB')
    return data


def inspect_image(image: Path, label: str) -> dict[str, Any]:
    """`qemu-img info` of the box's image, refused unless it is a self-contained qcow2 or raw."""
    from vmctl.errors import VmctlError
    from vmctl.run import run

    if image.is_symlink() or not image.is_file():
        raise BoxError(f"refusing the box {label}: it has no box.img")
    try:
        proc = run(["qemu-img", "info", "--output=json", image], purpose="inspect box images",
                   timeout=120)
    except VmctlError as exc:
        if type(exc) is not VmctlError:  # MissingToolError and friends pass through
            raise
        raise BoxError(f"refusing the box {label}: qemu-img cannot read box.img ({exc.message})") from exc
    try:
        info = json.loads(proc.stdout)
    except ValueError as exc:
        raise BoxError(f"qemu-img info gave output vmctl cannot read for {image}") from exc

    def refuse(problem: str) -> BoxError:
        return BoxError(
            f"refusing the box {label}: box.img {problem}",
            hint="a box image must be a self-contained qcow2 or raw image; nothing was installed",
        )

    fmt = info.get("format")
    if fmt not in IMAGE_FORMATS:
        raise refuse(f"is in format {fmt!r}; only qcow2 and raw are accepted")
    if info.get("backing-filename") or info.get("full-backing-filename"):
        raise refuse(f"names a backing file ({info.get('backing-filename') or info.get('full-backing-filename')!r})")
    specific = (info.get("format-specific") or {}).get("data") or {}
    if specific.get("data-file"):
        raise refuse(f"names an external data file ({specific['data-file']!r})")
    if info.get("encrypted"):
        raise refuse("is encrypted")
    return info
