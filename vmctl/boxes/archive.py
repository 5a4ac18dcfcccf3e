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

import errno
import fcntl
import json
import os
import subprocess
import tarfile
import threading
from collections.abc import Callable, Iterator
from contextlib import suppress
from pathlib import Path, PurePosixPath
from typing import IO, Any

from vmctl.boxes.installed import MAX_SMALL_FILE
from vmctl.errors import BoxError

CHUNK = 1024 * 1024
RESERVED = frozenset({"vmctl-box.json"})
# A box holds a handful of files: metadata.json, disk images, a Vagrantfile, a kernel...
MAX_MEMBERS = 10_000

SMALL_FILES = frozenset({"metadata.json", "Vagrantfile"})
# What a box may unpack to, in bytes of data (runs of zeros are holes and cost nothing):
# at most EXPANSION times the archive bytes read so far, plus a margin (real boxes are
# compressed qcow2 images, or raw images whose zeros are holes: they expand a few times
# at most); and once metadata.json has been read, at most the disks it declares plus
# a margin. So a small archive that expands to gigabytes is stopped early.
EXPANSION = 20
EXPANSION_MARGIN = 64 * 1024 * 1024
DECLARED_MARGIN = 1024 * 1024 * 1024
GB = 1024 ** 3
IMAGE_FORMATS = ("qcow2", "raw")

_ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"  # tarfile reads gzip, bzip2 and xz streams by itself


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


def unpack(archive: Path, dest: Path, *, label: str | None = None,
           advance: Callable[[int], None] | None = None) -> list[str]:
    """Unpack the box ARCHIVE into the empty folder DEST, checking every member. Returns the
    relative paths of the files written."""
    label = label or str(archive)
    unpacker = StreamUnpacker(dest, label=label)
    try:
        with archive.open("rb") as f:
            while chunk := f.read(CHUNK):
                unpacker.feed(chunk)
                if advance is not None:
                    advance(len(chunk))
    except OSError as exc:
        unpacker.abort()
        raise BoxError(f"could not read {archive}: {exc.strerror or exc}") from exc
    except BaseException:
        unpacker.abort()
        raise
    return unpacker.finish()


class StreamUnpacker:
    """Unpacks a box archive while its bytes still arrive (from a download, or a file).

    feed() takes the archive's bytes in order and writes them into a pipe; a thread reads
    the pipe as a tar stream (through `zstd -d` for a zstd archive: tarfile reads gzip,
    bzip2 and xz itself) and unpacks it into DEST. So a downloaded box is unpacked while
    it downloads and is hashed, and never read back. finish() waits for the thread and
    raises its error; abort() stops it. `error` keeps the unpacking's own failure, so a
    caller can tell a bad archive (or a full disk) from a failed download.
    """

    def __init__(self, dest: Path, *, label: str) -> None:
        self.dest = dest
        self.label = label
        self.error: BaseException | None = None
        self.budget = Budget(label)
        self._files: list[str] = []
        self._pipe: int | None = None  # the write end
        self._thread: threading.Thread | None = None
        self._zstd: subprocess.Popen[bytes] | None = None

    def feed(self, data: bytes) -> None:
        if self._thread is None:
            self._start(data[:8])
        assert self._pipe is not None
        self.budget.fed += len(data)
        view = memoryview(data)
        try:
            while view:
                view = view[os.write(self._pipe, view):]
        except BrokenPipeError:
            # The unpacking stopped early: its error says why.
            self._close_pipe()
            self._join()
            if self.error is None:
                self.error = BoxError(f"the box archive {self.label} has data after its end")
            raise self.error  # noqa: B904 - its own cause (a full disk, say) is what matters

    def finish(self) -> list[str]:
        """Every byte was fed: the files written, once the unpacking has ended."""
        if self._thread is None:
            self._start(b"")
        self._close_pipe()
        self._join()
        if self.error is not None:
            raise self.error
        return self._files

    def abort(self) -> None:
        """Stop unpacking (the caller removes DEST)."""
        self._close_pipe()
        self._join()

    def _start(self, head: bytes) -> None:
        read_end, self._pipe = os.pipe()
        with suppress(OSError):  # a bigger pipe means fewer switches between the threads
            fcntl.fcntl(self._pipe, fcntl.F_SETPIPE_SZ, CHUNK)
        if head.startswith(_ZSTD_MAGIC):
            from vmctl.run import require_tool

            try:
                self._zstd = subprocess.Popen(
                    [require_tool("zstd", "decompress a zstd box archive"), "-d", "-q", "-c"],
                    stdin=read_end, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                )  # fmt: skip
            finally:
                os.close(read_end)
            assert self._zstd.stdout is not None
            source: IO[bytes] = self._zstd.stdout
        else:
            source = os.fdopen(read_end, "rb", buffering=CHUNK)
        self._thread = threading.Thread(target=self._run, args=(source,), name="box-unpack", daemon=True)
        self._thread.start()

    def _run(self, source: IO[bytes]) -> None:
        try:
            with source:  # closed on the way out: a writer still feeding gets EPIPE
                self._files = _unpack_stream(source, self.dest, self.label, self.budget)
                while source.read(CHUNK):  # the end-of-archive padding: never leave the writer blocked
                    pass
        except BaseException as exc:  # noqa: BLE001 - handed to the feeding thread
            self.error = exc

    def _close_pipe(self) -> None:
        if self._pipe is not None:
            os.close(self._pipe)
            self._pipe = None

    def _join(self) -> None:
        if self._thread is not None:
            self._thread.join()
        if self._zstd is not None:
            assert self._zstd.stderr is not None
            problem = self._zstd.stderr.read().decode(errors="replace").strip()
            self._zstd.stderr.close()
            failed = self._zstd.wait() != 0
            if failed and self.error is not None and not isinstance(self.error.__cause__, OSError):
                # zstd's complaint explains a damaged archive better than the cut-off tar does.
                self.error = BoxError(f"{self.label} could not be decompressed: {problem or 'zstd failed'}",
                                      hint="the box file is damaged")
            self._zstd = None


QCOW2_MAGIC = b"QFI\xfb"
PLAIN_IMAGE = "box.img"


class PlainImageWriter:
    """Writes a plain qcow2 disk image (a cloud image: Debian's genericcloud, Ubuntu's, Fedora
    Cloud), as it arrives, to DEST/box.img. The store checks it (qemu-img info) and writes
    the metadata.json a box would carry."""

    def __init__(self, dest: Path, *, label: str) -> None:
        self.dest = dest
        self.label = label
        self.error: BaseException | None = None
        self._file: IO[bytes] | None = None

    def feed(self, data: bytes) -> None:
        try:
            if self._file is None:
                self.dest.mkdir(parents=True, exist_ok=True)
                self._file = open(self.dest / PLAIN_IMAGE, "xb")  # noqa: SIM115 - closed in finish/abort
            self._file.write(data)
        except OSError as exc:
            self.error = BoxError(f"could not write the image {self.label}: {exc.strerror or exc}")
            self.error.__cause__ = exc
            self.abort()
            raise self.error from exc

    def finish(self) -> list[str]:
        if self._file is None:
            raise BoxError(f"the image {self.label} is empty")
        try:
            self._file.flush()
            os.fsync(self._file.fileno())
        finally:
            self.abort()
        return [PLAIN_IMAGE]

    def abort(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


class SourceUnpacker:
    """A box archive (StreamUnpacker), or a plain qcow2 image (PlainImageWriter): which one,
    the first bytes say."""

    def __init__(self, dest: Path, *, label: str) -> None:
        self.dest = dest
        self.label = label
        self.inner: StreamUnpacker | PlainImageWriter | None = None

    @property
    def plain_image(self) -> bool:
        return isinstance(self.inner, PlainImageWriter)

    @property
    def error(self) -> BaseException | None:
        return self.inner.error if self.inner is not None else None

    def feed(self, data: bytes) -> None:
        if self.inner is None:
            writer = PlainImageWriter if data.startswith(QCOW2_MAGIC) else StreamUnpacker
            self.inner = writer(self.dest, label=self.label)
        self.inner.feed(data)

    def finish(self) -> list[str]:
        if self.inner is None:
            self.inner = StreamUnpacker(self.dest, label=self.label)
        return self.inner.finish()

    def abort(self) -> None:
        if self.inner is not None:
            self.inner.abort()


def plain_image_metadata(info: dict[str, Any]) -> dict[str, Any]:
    """The metadata.json of a box made from a plain image whose `qemu-img info` is INFO."""
    size = info.get("virtual-size")
    gb = max(1, -(-int(size) // GB)) if isinstance(size, int) and size > 0 else 1
    return {"provider": "libvirt", "format": "qcow2", "virtual_size": gb}


class Budget:
    """How many bytes of data the box may still write (see EXPANSION): `fed` counts the
    archive's bytes read so far, `declared` the bytes metadata.json's disks allow."""

    def __init__(self, label: str) -> None:
        self.label = label
        self.fed = 0
        self.written = 0
        self.declared: int | None = None

    def spend(self, n: int) -> None:
        self.written += n
        limit = EXPANSION * self.fed + EXPANSION_MARGIN
        if self.declared is not None:
            limit = min(limit, self.declared)
        if self.written > limit:
            why = ("more than its metadata.json declares" if self.declared is not None and limit == self.declared
                   else f"more than {EXPANSION} times its own size")
            raise BoxError(f"refusing the box {self.label}: it unpacks to {why}",
                           hint="a box archive that expands this far is a decompression bomb; nothing was installed")

    def declare(self, metadata_file: Path) -> None:
        """Bound the rest by the disk sizes metadata.json declares (if it can be read now;
        check_metadata judges it later either way)."""
        try:
            data = json.loads(metadata_file.read_bytes())
        except (OSError, ValueError):
            return
        sizes = [data.get("virtual_size")] if isinstance(data, dict) else []
        if isinstance(data, dict) and isinstance(data.get("disks"), list):
            sizes += [d.get("virtual_size") for d in data["disks"] if isinstance(d, dict)]
        gb = sum(x for x in sizes if isinstance(x, int | float) and not isinstance(x, bool) and x > 0)
        if gb:
            self.declared = int(gb * GB * 1.1) + DECLARED_MARGIN


def _unpack_stream(reader: IO[bytes], dest: Path, label: str, budget: Budget | None = None) -> list[str]:
    written: list[str] = []
    budget = budget or Budget(label)
    dest.mkdir(parents=True, exist_ok=True)
    count = 0
    try:
        with _open_tar(reader, label) as tar:
            for member in _members(tar, label):
                count += 1
                if count > MAX_MEMBERS:
                    raise BoxError(f"refusing the box {label}: it holds more than {MAX_MEMBERS} files",
                                   hint="a box holds metadata.json, its disk images and a few small files; nothing was installed")
                rel = member_path(member, label)
                if rel is None:
                    continue
                if str(rel) in SMALL_FILES and member.size > MAX_SMALL_FILE:
                    raise BoxError(f"refusing the box {label}: its {rel} is {member.size} bytes "
                                   f"(at most {MAX_SMALL_FILE} are allowed)")
                target = dest.joinpath(*rel.parts)
                _make_parents(dest, rel)
                if member.isdir():
                    if target.exists() and not target.is_dir():
                        raise BoxError(f"refusing the box {label}: {str(rel)!r} is both a file and a folder")
                    target.mkdir(mode=0o755, exist_ok=True)
                    continue
                if member.sparse is not None:
                    _write_sparse(target, tar, member, label, str(rel), budget)
                    written.append(str(rel))
                    continue
                src = tar.extractfile(member)
                if src is None:  # pragma: no cover - isreg() members always have data
                    raise BoxError(f"refusing the box {label}: cannot read member {member.name!r}")
                _write_file(target, src, member.size, label, str(rel), budget)
                written.append(str(rel))
                if str(rel) == "metadata.json":
                    budget.declare(target)
    except tarfile.TarError as exc:
        raise _unreadable(label, exc) from exc
    except EOFError as exc:
        raise BoxError(f"the box archive {label} is truncated") from exc
    except OSError as exc:
        if exc.errno == errno.ENOSPC:
            raise BoxError(f"could not unpack {label}: the disk is full ({exc.strerror})",
                           hint="free some disk space under VMCTL_HOME and run the command again") from exc
        raise BoxError(f"could not unpack {label}: {exc.strerror or exc}",
                       hint="check the free disk space under VMCTL_HOME") from exc
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
        return tarfile.open(fileobj=reader, mode="r|*", bufsize=CHUNK)
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


# A box made by `package` from a stopped machine carries that machine's login key, as
# Vagrant's do; ssh refuses a private key that others can read.
PRIVATE_FILES = frozenset({"vagrant_private_key"})


def _create(target: Path, label: str, rel: str) -> int:
    mode = 0o600 if rel in PRIVATE_FILES else 0o644
    try:
        return os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, mode)
    except FileExistsError as exc:
        raise BoxError(f"refusing the box {label}: member {rel!r} appears more than once") from exc


_ZEROS = bytes(CHUNK)

def _copy(src: IO[bytes], out: IO[bytes], length: int | None, budget: Budget) -> None:
    """Copy LENGTH bytes (None: to the end) from SRC to OUT, seeking over runs of zeros;
    the data written is charged to BUDGET."""
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
            budget.spend(len(chunk))
            out.write(chunk)


def _write_file(target: Path, src: IO[bytes], size: int, label: str, rel: str, budget: Budget) -> None:
    """Write SRC to TARGET (which must not exist), keeping runs of zeros sparse."""
    with os.fdopen(_create(target, label, rel), "wb") as out:
        _copy(src, out, None, budget)
        out.truncate(size)


def _write_sparse(target: Path, tar: tarfile.TarFile, member: tarfile.TarInfo, label: str,
                  rel: str, budget: Budget) -> None:
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
            _copy(stream, out, length, budget)
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
    if path.stat().st_size > MAX_SMALL_FILE:
        raise bad(f"metadata.json is larger than {MAX_SMALL_FILE} bytes")
    try:
        data = json.loads(path.read_text())
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise bad(f"metadata.json is not valid JSON ({str(exc)[:200]})") from exc
    if not isinstance(data, dict):
        raise bad("metadata.json is not a JSON object")
    provider = data.get("provider")
    if provider != "libvirt":
        raise bad(
            f"metadata.json says provider {provider!r}; vmctl runs libvirt boxes"
            if provider is not None else 'metadata.json has no "provider" (expected "libvirt")'
        )
    if "disks" in data:
        # vagrant-libvirt's multi-disk boxes: each disk names its file (and format); the
        # top-level format and virtual_size are not needed.
        disks = data["disks"]
        if not isinstance(disks, list) or not disks or len(disks) > 26:
            raise bad('metadata.json\'s "disks" must be a list of 1 to 26 disks')
        seen = set()
        for i, disk in enumerate(disks):
            if not isinstance(disk, dict) or not isinstance(disk.get("path"), str):
                raise bad(f'metadata.json\'s disks[{i}] has no "path"')
            rel = disk["path"]
            parts = [x for x in rel.split("/") if x not in ("", ".")]
            if rel.startswith("/") or ".." in parts or not parts or rel in seen:
                raise bad(f"metadata.json's disks[{i}] path {rel!r} is not a file of the box")
            seen.add(rel)
            if not (box_dir / rel).is_file() or (box_dir / rel).is_symlink():
                raise bad(f"metadata.json names the disk {rel!r}, which the box does not hold")
            if disk.get("format") not in (None, *IMAGE_FORMATS):
                raise bad(f"metadata.json's disks[{i}] has format {disk.get('format')!r}; expected qcow2 or raw")
        return data
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
        raise BoxError(f"refusing the box {label}: it has no {image.name}")
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
            f"refusing the box {label}: {image.name} {problem}",
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
