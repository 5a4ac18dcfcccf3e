"""Property tests of the box unpacker (vmctl.boxes.archive) and the box store around it.

Whatever the archive (member names with "..", absolute paths, backslashes, very long or
non-UTF-8 names; symbolic and hard links, devices, FIFOs, unknown member types, GNU sparse
members; declared sizes that do not match the data; random metadata; truncated, corrupted,
garbage or compressed garbage bytes), unpacking ends within a time bound in a result or a
VmctlError, never another exception, and writes nothing outside its staging folder: only
regular files and folders, only under the destination.
"""

from __future__ import annotations

import bz2
import contextlib
import gzip
import json
import lzma
import os
import signal
import stat
import subprocess
import tarfile
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, assume, currently_in_test_context, event, given, settings
from hypothesis import strategies as st

from vmctl.boxes import add_box, archive, list_boxes
from vmctl.errors import BoxError, VmctlError

EXAMPLES = int(os.environ.get("VMCTL_FUZZ_EXAMPLES", "60"))
FUZZ = settings(max_examples=EXAMPLES * 3, deadline=None, suppress_health_check=list(HealthCheck))
WALL_BOUND = 5.0  # seconds for one example; the watchdog turns a hang into a failure


class Hang(BaseException):
    """Raised by the watchdog; a BaseException so that no `except Exception` swallows it."""


@contextlib.contextmanager
def watchdog(seconds: float) -> Iterator[None]:
    def fire(_signum: int, _frame: object) -> None:
        raise Hang(f"no result after {seconds} s")

    previous = signal.signal(signal.SIGALRM, fire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


# --- archives -------------------------------------------------------------------------------

# A folder beside the staging folder, which ".." names aim at; absolute names aim at /tmp.
OUTSIDE = "outside"
SAFE_NAMES = ["metadata.json", "box.img", "Vagrantfile", "vmlinuz", "initrd.img", "boot/vmlinuz",
              "a/b/c", "./box.img", "./", ".", "a", "a/", "dir/file", "vmctl-box.json"]
EVIL_NAMES = ["..", "../x", "../../outside/pwned", "../../../outside/pwned", "a/../../outside/pwned",
              "./../outside/pwned", "/tmp/vmctl-fuzz-pwned", "/tmp/", "/tmp/vmctl-fuzz-pwned/x", "//etc/passwd", "\\..\\..\\outside\\pwned",
              "a\\..\\..\\..\\outside\\pwned", "a/./../../outside", "....//", "...", "a/..", "/", "",
              "box.img/../../outside/pwned"]
TYPES = [tarfile.REGTYPE, tarfile.AREGTYPE, tarfile.DIRTYPE, tarfile.SYMTYPE, tarfile.LNKTYPE,
         tarfile.CHRTYPE, tarfile.BLKTYPE, tarfile.FIFOTYPE, tarfile.CONTTYPE, b"V", b"M", b"Z", b"\xff"]


def name_strategy() -> st.SearchStrategy[str]:
    segment = st.text(
        st.characters(blacklist_characters="\x00/", blacklist_categories=("Cs",)), min_size=1, max_size=12
    ) | st.sampled_from(["..", ".", "...", "\\..", "box.img"])
    return st.one_of(
        st.sampled_from(SAFE_NAMES),
        st.sampled_from(EVIL_NAMES),
        st.lists(segment, min_size=1, max_size=6).map("/".join),
        st.integers(100, 300).map(lambda n: "d/" * (n // 2) + "f"),  # long: GNU/PAX long names
        st.binary(min_size=1, max_size=20).map(lambda b: b.replace(b"\0", b"x").decode("utf-8", "surrogateescape")),
    )


def metadata_strategy() -> st.SearchStrategy[bytes]:
    scalar = st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats() | st.text(max_size=10)
    value = st.recursive(scalar, lambda kids: st.lists(kids, max_size=3) | st.dictionaries(st.text(max_size=5), kids, max_size=3), max_leaves=10)
    good = st.fixed_dictionaries({
        "provider": st.sampled_from(["libvirt", "virtualbox", None, 1]),
        "format": st.sampled_from(["qcow2", "raw", "vmdk", None]),
        "virtual_size": st.one_of(st.integers(-5, 2**64), st.floats(allow_nan=True), st.booleans(), st.text(max_size=4)),
    }, optional={"extra": value})
    as_json = st.one_of(good, value).map(lambda v: json.dumps(v, allow_nan=True).encode())
    return st.one_of(as_json, st.binary(max_size=40), st.just(b"\xff\xfe{}"), st.just(b'{"provider": "libvirt"'))


@st.composite
def member(draw: st.DrawFn) -> tuple[tarfile.TarInfo, bytes]:
    name = draw(name_strategy())
    kind = draw(st.sampled_from(TYPES))
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = draw(st.sampled_from(["", "box.img", "/etc/passwd", "../../outside", "/tmp", "../x"]))
    info.mode = draw(st.integers(0, 0o7777))
    info.uid = draw(st.integers(0, 2**21 - 1))
    info.gid = draw(st.integers(0, 2**21 - 1))
    info.mtime = draw(st.integers(0, 2**33 - 1))
    info.devmajor = draw(st.integers(0, 255))
    info.devminor = draw(st.integers(0, 255))
    if name.endswith("metadata.json"):
        data = draw(metadata_strategy())
    else:
        data = draw(st.binary(max_size=64) | st.sampled_from([b"\0" * 4096, b"QFI\xfb" + b"\0" * 60]))
    # The declared size: the real one, or a lie (bigger than the data, even huge, or smaller).
    info.size = draw(st.one_of(st.just(len(data)), st.integers(0, 2**36), st.just(8**11 - 1)))
    return info, data


def sparse_member(name: str, realsize: int, regions: list[tuple[int, int]]) -> bytes:
    """A GNU sparse member: a header whose map names REGIONS (up to 4) of a file of REALSIZE."""
    info = tarfile.TarInfo(name)
    stored = sum(n for _, n in regions)
    info.size = stored
    header = bytearray(info.tobuf(format=tarfile.GNU_FORMAT)[:512])
    header[156:157] = tarfile.GNUTYPE_SPARSE

    def number(n: int) -> bytes:
        return b"%011o\0" % n if 0 <= n < 8**11 else bytes([0x80]) + n.to_bytes(11, "big")

    for i, (offset, length) in enumerate(regions[:4]):
        header[386 + 24 * i : 398 + 24 * i] = number(offset)
        header[398 + 24 * i : 410 + 24 * i] = number(length)
    header[483:495] = number(realsize)
    header[148:156] = b" " * 8
    header[148:156] = b"%06o\0 " % sum(header)
    data = bytes(range(256)) * (stored // 256 + 1)
    return bytes(header) + data[:stored] + b"\0" * (-stored % 512)


@st.composite
def archive_bytes(draw: st.DrawFn) -> bytes:
    fmt = draw(st.sampled_from([tarfile.GNU_FORMAT, tarfile.PAX_FORMAT, tarfile.USTAR_FORMAT]))
    out = bytearray()
    members = draw(st.lists(member(), max_size=draw(st.sampled_from([0, 1, 3, 6]))))
    if draw(st.booleans()):  # start from a box that would install, then add the random members
        good = [("metadata.json", json.dumps({"provider": "libvirt", "format": "qcow2", "virtual_size": 1}).encode()),
                ("box.img", b"\x01" * 512)]
        for name, data in reversed(good):
            info = tarfile.TarInfo(draw(st.sampled_from(["", "./"])) + name)
            info.size = len(data)
            members.insert(0, (info, data))
    for info, data in members:
        if fmt == tarfile.PAX_FORMAT and draw(st.booleans()):
            info.pax_headers = draw(st.dictionaries(
                st.sampled_from(["path", "linkpath", "size", "uid", "mtime", "GNU.sparse.size",
                                 "GNU.sparse.map", "GNU.sparse.major", "x"]),
                st.text(max_size=12), max_size=3))
        try:
            header = info.tobuf(format=fmt, encoding="utf-8", errors="surrogateescape")
        except (ValueError, UnicodeError, OverflowError):
            continue  # this format cannot say it; another example will
        # The declared size is in the header; the data that follows may be shorter or longer.
        body = data if info.isreg() or info.type not in tarfile.SUPPORTED_TYPES else b""
        out += header + body + b"\0" * (-len(body) % 512)
    if draw(st.booleans()):
        realsize = draw(st.integers(0, 2**50))
        regions = draw(st.lists(st.tuples(st.integers(0, 2**50), st.integers(0, 3000)), max_size=4))
        out += sparse_member(draw(st.sampled_from(["box.img", "../sparse", "s"])), realsize, regions)
    if draw(st.booleans()):
        out += b"\0" * 1024
    data = bytes(out)
    # Damage: none, truncation, flipped bytes, garbage appended, or garbage instead.
    damage = draw(st.sampled_from(["none", "none", "truncate", "flip", "append", "garbage"]))
    if damage == "truncate" and data:
        data = data[: draw(st.integers(0, len(data) - 1))]
    elif damage == "flip" and data:
        buf = bytearray(data)
        for _ in range(draw(st.integers(1, 8))):
            buf[draw(st.integers(0, len(buf) - 1))] = draw(st.integers(0, 255))
        data = bytes(buf)
    elif damage == "append":
        data += draw(st.binary(max_size=600))
    elif damage == "garbage":
        data = draw(st.binary(max_size=2000))
    compression = draw(st.sampled_from(["none", "gz", "bz2", "xz", "zst", "gz-garbage", "xz-garbage", "zst-garbage"]))
    if compression == "gz":
        data = gzip.compress(data, mtime=0)
    elif compression == "bz2":
        data = bz2.compress(data)
    elif compression == "xz":
        data = lzma.compress(data)
    elif compression == "zst":
        data = subprocess.run(["zstd", "-q", "-c"], input=data, capture_output=True, check=True).stdout
    elif compression.endswith("-garbage"):
        magic = {"gz": b"\x1f\x8b", "xz": b"\xfd7zXZ\x00", "zst": b"\x28\xb5\x2f\xfd"}[compression.split("-")[0]]
        data = magic + draw(st.binary(max_size=300))
    if compression != "none" and draw(st.booleans()) and len(data) > 2:
        data = data[: draw(st.integers(1, len(data) - 1))]  # a cut-off compressed stream
    return data


def note(text: str) -> None:
    """Count an outcome in hypothesis' statistics (--hypothesis-show-statistics)."""
    if currently_in_test_context():
        event(text)


def snapshot(root: Path, skip: Path) -> dict[str, tuple[int, int]]:
    """Every path under ROOT except SKIP and what it holds: (mode, size)."""
    found = {}
    for folder, dirs, files in os.walk(root):
        here = Path(folder)
        if here == skip or skip in here.parents:
            dirs[:] = []
            continue
        for entry in dirs + files:
            path = here / entry
            if path == skip:
                continue
            st_ = os.lstat(path)
            found[str(path.relative_to(root))] = (st_.st_mode, st_.st_size if not stat.S_ISDIR(st_.st_mode) else 0)
    return found


def check_unpack(data: bytes | None = None, draw: st.DataObject | None = None) -> None:
    """Unpack DATA (or an archive drawn from DRAW, aimed at this run's folders) and check."""
    with tempfile.TemporaryDirectory(prefix="vmctl-fuzz-") as tmp:
        root = Path(tmp)
        (root / OUTSIDE).mkdir()
        if data is None:
            assert draw is not None
            data = draw.draw(archive_bytes())
        stage = root / "boxes" / ".staging-fuzz"
        stage.mkdir(parents=True)
        path = root / "fuzz.box"
        path.write_bytes(data)
        before = snapshot(root, stage)
        dest = stage / "libvirt"
        started = time.monotonic()
        with watchdog(WALL_BOUND):
            try:
                written = archive.unpack(path, dest, label="fuzz.box")
            except VmctlError as exc:
                assert exc.message
                note(f"unpack refused: {type(exc).__name__}")
                written = None
            if written is not None:
                try:
                    archive.check_metadata(dest, "fuzz.box")
                    note("unpacked, metadata accepted")
                except BoxError as exc:
                    assert "metadata.json" in exc.message
                    note("unpacked, metadata refused")
        assert time.monotonic() - started < WALL_BOUND
        # Nothing outside the staging folder changed, and nothing landed at the absolute names.
        assert snapshot(root, stage) == before
        assert list((root / OUTSIDE).iterdir()) == []
        assert not Path("/tmp/vmctl-fuzz-pwned").exists()
        # Inside it: only regular files and folders, no decompressed leftovers on failure.
        for folder, dirs, files in os.walk(stage):
            for entry in dirs + files:
                mode = os.lstat(Path(folder) / entry).st_mode
                assert stat.S_ISREG(mode) or stat.S_ISDIR(mode), (entry, oct(mode))
                assert not mode & (stat.S_ISUID | stat.S_ISGID), (entry, oct(mode))
        if written is not None:
            assert all(not Path(w).is_absolute() and ".." not in Path(w).parts for w in written)
            assert all((dest / w).is_file() for w in written)
        else:
            assert not (stage / "box.tar").exists()


@FUZZ
@given(st.data())
def test_unpacking_any_archive_ends_in_a_result_or_a_box_error(data: st.DataObject) -> None:
    check_unpack(draw=data)


@pytest.mark.parametrize(
    "realsize",
    [2**20, 2**31, 2**40, 2**43, 2**50],  # 1 MB to 1 PB of holes, from a few KB of archive
)
def test_sparse_bombs_take_no_longer_than_their_data(realsize: int) -> None:
    data = sparse_member("box.img", realsize, [(0, 512), (realsize - 1000, 1000)]) + b"\0" * 1024
    started = time.monotonic()
    check_unpack(data)
    assert time.monotonic() - started < 1.0


def test_sparse_members_unpack_exactly(tmp_path: Path) -> None:
    image = tmp_path / "src" / "box.img"
    image.parent.mkdir()
    with image.open("wb") as f:
        f.truncate(64 * 2**20)
        f.seek(4096)
        f.write(b"start")
        f.seek(40 * 2**20)
        f.write(os.urandom(300_000))
    for fmt in (["--format=gnu"], ["--format=posix", "--sparse-version=1.0"], ["--format=posix", "--sparse-version=0.1"]):
        box = tmp_path / "sparse.box"
        subprocess.run(["tar", "--sparse", *fmt, "-czf", str(box), "-C", str(image.parent), "box.img"], check=True)
        with tarfile.open(box) as members:
            assert members.getmember("box.img").sparse, fmt  # it really is a sparse member
        dest = tmp_path / "out"
        assert archive.unpack(box, dest) == ["box.img"]
        assert (dest / "box.img").read_bytes() == image.read_bytes(), fmt
        assert os.stat(dest / "box.img").st_blocks * 512 < 2 * 2**20  # the holes stayed holes
        for p in dest.iterdir():
            p.unlink()
        dest.rmdir()


@settings(max_examples=EXAMPLES * 2, deadline=None, suppress_health_check=list(HealthCheck))
@given(metadata_strategy())
def test_any_metadata_is_checked_or_refused(raw: bytes) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "metadata.json").write_bytes(raw)
        try:
            result = archive.check_metadata(Path(tmp), "fuzz")
        except BoxError as exc:
            assert "metadata.json" in exc.message
        else:
            assert result["provider"] == "libvirt" and result["format"] == "qcow2"
            size = result["virtual_size"]
            assert not isinstance(size, bool) and isinstance(size, int | float) and size > 0


@settings(max_examples=max(EXAMPLES // 2, 10), deadline=None, suppress_health_check=list(HealthCheck))
@given(st.data())
def test_box_add_of_any_archive_installs_a_box_or_nothing(data: st.DataObject) -> None:
    """The whole of `box add` on a local file, with qemu-img inspecting box.img: a box, or a
    BoxError and nothing in the store (no staging folder left)."""
    with tempfile.TemporaryDirectory(prefix="vmctl-fuzz-") as tmp:
        root = Path(tmp)
        (root / OUTSIDE).mkdir()
        raw = data.draw(archive_bytes())
        assume(raw)
        path = root / "fuzz.box"
        path.write_bytes(raw)
        home = root / "home"
        old = os.environ.get("VMCTL_HOME")
        os.environ["VMCTL_HOME"] = str(home)
        try:
            with watchdog(WALL_BOUND * 2):
                try:
                    box = add_box(str(path), name="fuzz/box")
                except VmctlError as exc:
                    assert exc.message
                    note(f"box add refused: {type(exc).__name__}")
                    assert list_boxes() == []
                    boxes = home / "boxes"
                    left = list(boxes.rglob("*")) if boxes.exists() else []
                    assert left == [], left
                else:
                    note("box installed")
                    assert box.metadata["provider"] == "libvirt"
                    assert box.image.is_file() and not box.image.is_symlink()
        finally:
            if old is None:
                os.environ.pop("VMCTL_HOME", None)
            else:
                os.environ["VMCTL_HOME"] = old
        assert list((root / OUTSIDE).iterdir()) == []
        assert sorted(p.name for p in root.iterdir()) == sorted([OUTSIDE, "fuzz.box", "home"][: 3 if home.exists() else 2])
