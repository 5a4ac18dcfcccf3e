"""Box archives that try to escape, carry links or devices, or hold images and metadata
vmctl refuses: each is refused with a clear error and leaves nothing behind."""

from __future__ import annotations

import io
import json
import subprocess
import tarfile
from collections.abc import Callable
from pathlib import Path

import pytest

from vmctl.boxes import add_box, list_boxes
from vmctl.errors import BoxError


def _assert_nothing_installed(home: Path) -> None:
    assert list_boxes() == []
    boxes = home / "boxes"
    leftovers = [p for p in boxes.rglob("*")] if boxes.exists() else []
    assert leftovers == [], leftovers


def _add_special(tar: tarfile.TarFile, name: str, kind: bytes, linkname: str = "") -> None:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = linkname
    tar.addfile(info)


@pytest.mark.parametrize(
    ("member", "kind", "linkname", "problem"),
    [
        ("../evil", tarfile.REGTYPE, "", "path traversal"),
        ("./files/../../evil", tarfile.REGTYPE, "", "path traversal"),
        ("/tmp/evil-absolute", tarfile.REGTYPE, "", "absolute path"),
        ("link", tarfile.SYMTYPE, "/etc/passwd", "symbolic link"),
        ("hard", tarfile.LNKTYPE, "box.img", "hard link"),
        ("console", tarfile.CHRTYPE, "", "device"),
        ("disk", tarfile.BLKTYPE, "", "device"),
        ("pipe", tarfile.FIFOTYPE, "", "FIFO"),
    ],
)
def test_dangerous_members_are_refused(
    box_home: Path, box_make: Callable[..., Path], tmp_path: Path,
    member: str, kind: bytes, linkname: str, problem: str,
) -> None:
    def extra(tar: tarfile.TarFile) -> None:
        if kind == tarfile.REGTYPE:
            info = tarfile.TarInfo(member)
            info.size = 4
            tar.addfile(info, io.BytesIO(b"evil"))
        else:
            _add_special(tar, member, kind, linkname)

    box = box_make(extra=extra)
    with pytest.raises(BoxError) as exc:
        add_box(str(box), name="test/evil")
    assert repr(member) in exc.value.message
    assert problem in exc.value.message
    _assert_nothing_installed(box_home)
    assert not (tmp_path / "evil").exists()
    assert not (box_home / "evil").exists()


def test_duplicate_member_is_refused(box_home: Path, box_make: Callable[..., Path]) -> None:
    def extra(tar: tarfile.TarFile) -> None:
        info = tarfile.TarInfo("./metadata.json")
        data = json.dumps({"provider": "libvirt", "format": "qcow2", "virtual_size": 1}).encode()
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))

    with pytest.raises(BoxError, match="more than once"):
        add_box(str(box_make(extra=extra)), name="test/dup")
    _assert_nothing_installed(box_home)


def test_reserved_file_name_is_refused(box_home: Path, box_make: Callable[..., Path]) -> None:
    with pytest.raises(BoxError, match="vmctl-box.json"):
        add_box(str(box_make(files={"vmctl-box.json": b"{}"})), name="test/reserved")
    _assert_nothing_installed(box_home)


def _image(tmp_path: Path, *args: str) -> bytes:
    path = tmp_path / "made.img"
    path.unlink(missing_ok=True)
    subprocess.run(["qemu-img", "create", "-q", *args, str(path), "1M"], check=True, cwd=tmp_path)
    return path.read_bytes()


@pytest.mark.parametrize(
    ("args", "problem"),
    [
        (["-f", "qcow2", "-u", "-b", "/etc/shadow", "-F", "raw"], "backing file ('/etc/shadow')"),
        (["-f", "qcow2", "-o", "data_file=/tmp/vmctl-test-data-file.raw"], "external data file"),
        (["-f", "vmdk"], "format 'vmdk'"),
    ],
)
def test_images_that_are_not_self_contained_are_refused(
    box_home: Path, box_make: Callable[..., Path], tmp_path: Path, args: list[str], problem: str
) -> None:
    image = _image(tmp_path, *args)
    Path("/tmp/vmctl-test-data-file.raw").unlink(missing_ok=True)
    with pytest.raises(BoxError) as exc:
        add_box(str(box_make(image=image)), name="test/image")
    assert problem in exc.value.message
    assert "box.img" in exc.value.message
    _assert_nothing_installed(box_home)


def test_raw_image_is_accepted_and_recorded(box_home: Path, box_make: Callable[..., Path], tmp_path: Path) -> None:
    raw = b"\x00" * 512 + b"bootsector" + b"\x00" * 100_000 + b"end"
    box = add_box(str(box_make(image=raw)), name="test/raw")
    assert box.image.read_bytes() == raw  # sparse writing keeps the content exact
    assert box.image_format == "raw"


@pytest.mark.parametrize(
    ("metadata", "problem"),
    [
        ({"provider": "virtualbox", "format": "qcow2", "virtual_size": 1}, "provider 'virtualbox'"),
        ({"format": "qcow2", "virtual_size": 1}, 'no "provider"'),
        ({"provider": "libvirt", "format": "raw", "virtual_size": 1}, "format 'raw'"),
        ({"provider": "libvirt", "format": "qcow2"}, 'no "virtual_size"'),
        ({"provider": "libvirt", "format": "qcow2", "virtual_size": "10"}, '"virtual_size" \'10\''),
        ({"provider": "libvirt", "format": "qcow2", "virtual_size": True}, '"virtual_size" True'),
        (b"{not json", "not valid JSON"),
        (b"[]", "not a JSON object"),
    ],
)
def test_bad_metadata_is_refused(
    box_home: Path, box_make: Callable[..., Path], metadata: dict | bytes, problem: str
) -> None:
    with pytest.raises(BoxError) as exc:
        add_box(str(box_make(metadata=metadata)), name="test/meta")
    assert problem in exc.value.message
    assert "metadata.json" in exc.value.message
    _assert_nothing_installed(box_home)


@pytest.mark.parametrize(("omit", "problem"), [("metadata.json", "no metadata.json"), ("box.img", "no box.img")])
def test_missing_files_are_refused(box_home: Path, box_make: Callable[..., Path], omit: str, problem: str) -> None:
    with pytest.raises(BoxError, match=problem):
        add_box(str(box_make(omit=(omit,))), name="test/missing")
    _assert_nothing_installed(box_home)


def test_not_an_archive(box_home: Path, tmp_path: Path) -> None:
    path = tmp_path / "junk.box"
    path.write_bytes(b"this is not a tar archive at all" * 40)
    with pytest.raises(BoxError, match="not a box archive"):
        add_box(str(path), name="test/junk")
    _assert_nothing_installed(box_home)


def test_truncated_archive(box_home: Path, box_make: Callable[..., Path], tmp_path: Path) -> None:
    data = box_make(compression="").read_bytes()
    path = tmp_path / "cut.box"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(BoxError):
        add_box(str(path), name="test/cut")
    _assert_nothing_installed(box_home)


@pytest.mark.parametrize("compression", ["", "gz", "bz2", "xz", "zst"])
def test_every_compression_unpacks(box_home: Path, box_make: Callable[..., Path], tmp_path: Path,
                                   compression: str) -> None:
    if compression == "zst":
        plain = box_make("plain.box", compression="")
        subprocess.run(["zstd", "-q", "-f", str(plain), "-o", str(tmp_path / "z.box")], check=True)
        path = tmp_path / "z.box"
    else:
        path = box_make(compression=compression)
    box = add_box(str(path), name=f"test/c{compression or 'none'}")
    assert box.metadata["provider"] == "libvirt"
    assert box.vagrantfile is not None
    assert not (box.dir / "box.tar").exists()


def test_members_without_dot_prefix_and_subfolders(box_home: Path, box_make: Callable[..., Path]) -> None:
    box = add_box(str(box_make(prefix="", files={"boot/vmlinuz": b"kernel", "initrd.img": b"initrd"})),
                  name="test/files")
    assert (box.dir / "boot" / "vmlinuz").read_bytes() == b"kernel"
    assert (box.dir / "initrd.img").read_bytes() == b"initrd"


def test_a_packaged_login_key_is_unpacked_for_its_owner_only(box_home: Path, box_make: Callable[..., Path]) -> None:
    """ssh refuses a private key others can read: a box's vagrant_private_key is made 0600
    (the rest stays 0644, which QEMU under a system daemon needs to read the disk)."""
    box = add_box(str(box_make(files={"vagrant_private_key": b"key"})), name="test/key")
    assert (box.dir / "vagrant_private_key").stat().st_mode & 0o777 == 0o600
    assert (box.dir / "box.img").stat().st_mode & 0o777 == 0o644


# --- unpacking while the bytes arrive ---------------------------------------------------------

def test_data_after_the_end_of_the_archive_is_read_through(box_home: Path, box_make: Callable[..., Path],
                                                          tmp_path: Path) -> None:
    """The unpacking thread stops reading at the end-of-archive marker; what follows (tar's
    record padding, or more) is drained, so the feeding side never blocks on a full pipe."""
    path = tmp_path / "padded.box"
    path.write_bytes(box_make(compression="").read_bytes() + bytes(8 * 1024 * 1024))
    box = add_box(str(path), name="test/padded")
    assert (box.dir / "box.img").exists()


def test_damaged_zstd_says_so(box_home: Path, box_make: Callable[..., Path], tmp_path: Path) -> None:
    plain = box_make("plain.box", compression="")
    packed = subprocess.run(["zstd", "-q", "-c", str(plain)], capture_output=True, check=True).stdout
    path = tmp_path / "bad.box"
    path.write_bytes(packed[: len(packed) // 2] + b"\0garbage" * 64)
    with pytest.raises(BoxError, match="could not be decompressed|truncated|not a box archive"):
        add_box(str(path), name="test/badzstd")
    _assert_nothing_installed(box_home)


def test_a_staging_folder_in_use_is_left_alone(box_home: Path, box_make: Callable[..., Path]) -> None:
    """Another box add unpacking right now keeps its (locked) staging folder; a killed one's
    (unlocked) folder is removed by the next add."""
    import fcntl
    import os

    boxes = box_home / "boxes"
    busy, stale = boxes / ".staging-busy", boxes / ".staging-stale"
    for folder in (busy, stale):
        (folder / "libvirt").mkdir(parents=True)
    fd = os.open(busy, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        add_box(str(box_make()), name="test/staging")
        assert busy.exists() and not stale.exists()
    finally:
        os.close(fd)


def test_two_box_adds_at_once_both_install(box_home: Path, box_make: Callable[..., Path]) -> None:
    """Each add unpacks into its own locked staging folder; neither removes the other's."""
    from concurrent.futures import ThreadPoolExecutor

    first, second = box_make("first.box"), box_make("second.box")
    with ThreadPoolExecutor(2) as pool:
        boxes = list(pool.map(lambda a: add_box(str(a[0]), name=a[1]),
                              [(first, "test/first"), (second, "test/second")]))
    assert sorted(b.name for b in boxes) == ["test/first", "test/second"]
    assert all((b.dir / "box.img").exists() for b in boxes)
    assert not list((box_home / "boxes").glob(".staging-*"))
