"""Disk images for disk-booted boxes: the layout, GRUB's configuration, the BIOS boot code's
embedding, sparse copies, and a whole small disk made with the real tools (sfdisk, mkfs.vfat,
mtools, grub-mkimage, mkfs.ext4: no root, no mount, no loop device)."""

from __future__ import annotations

import json
import os
import struct
import subprocess
import uuid
from pathlib import Path

import pytest

from vmctl.boxes import diskimage
from vmctl.boxes.diskimage import (
    MIB,
    SECTOR,
    Partition,
    embed_bios_boot,
    plan_disk,
    plan_usr_disk,
    render_early_config,
    render_fstab,
    render_grub_config,
)
from vmctl.errors import BuildError

GIB = 1024**3


# --- the layout ------------------------------------------------------------------------------


def test_layout_is_aligned_contiguous_and_leaves_room_for_the_backup_gpt() -> None:
    layout = plan_disk(20 * GIB, seed="key")
    parts = [layout.bios, layout.esp, layout.root]
    assert [p.name for p in parts] == ["bios", "esp", "root"]
    assert (layout.bios.offset, layout.bios.size) == (1 * MIB, 1 * MIB)
    assert (layout.esp.offset, layout.esp.size) == (2 * MIB, 64 * MIB)
    assert layout.root.offset == 66 * MIB
    for part in parts:
        assert part.offset % MIB == 0 and part.size % MIB == 0
    for before, after in zip(parts, parts[1:], strict=False):
        assert before.start + before.sectors == after.start
    end = layout.root.offset + layout.root.size
    assert end <= 20 * GIB - 33 * SECTOR and 20 * GIB - end < 2 * MIB
    assert layout.bios.type_guid == "21686148-6449-6E6F-744E-656564454649"
    assert layout.esp.type_guid == "C12A7328-F81F-11D2-BA4B-00A0C93EC93B"


def test_identifiers_follow_the_seed() -> None:
    one, again, other = plan_disk(GIB, "a"), plan_disk(GIB, "a"), plan_disk(GIB, "b")
    assert one == again
    ids = [one.disk_guid, one.bios.uuid, one.esp.uuid, one.root.uuid, one.root_uuid]
    assert len(set(ids)) == len(ids)
    assert one.root_uuid != other.root_uuid and one.disk_guid != other.disk_guid
    assert str(uuid.UUID(one.root_uuid)) == one.root_uuid  # lower case, as blkid shows it
    assert len(one.esp_volume_id) == 8 and int(one.esp_volume_id, 16) >= 0


def test_a_disk_too_small_is_refused() -> None:
    with pytest.raises(BuildError, match="too small"):
        plan_disk(200 * MIB, "a")


def test_sfdisk_script_names_every_partition_and_guid() -> None:
    layout = plan_disk(4 * GIB, "k")
    lines = layout.sfdisk_script().splitlines()
    assert lines[:4] == ["label: gpt", f"label-id: {layout.disk_guid}", "unit: sectors",
                         "first-lba: 2048"]  # fmt: skip
    assert lines[4] == (
        f"start=2048, size=2048, type=21686148-6449-6E6F-744E-656564454649, "
        f'uuid={layout.bios.uuid}, name="bios"'
    )
    assert lines[6].startswith(f"start={66 * MIB // SECTOR}, size={layout.root.sectors}, ")


def test_a_usr_ab_layout_has_two_usr_partitions_and_the_root_to_the_end() -> None:
    layout = plan_usr_disk(10 * GIB, 1024 * MIB, seed="key")
    parts = [layout.usr_a, layout.usr_b, layout.root]
    assert [p.name for p in parts] == ["USR-A", "USR-B", "ROOT"]
    assert layout.usr_a.offset == 1 * MIB
    assert layout.usr_a.size == layout.usr_b.size == 1024 * MIB
    for before, after in zip(parts, parts[1:], strict=False):
        assert before.start + before.sectors == after.start
    end = layout.root.offset + layout.root.size
    assert end <= 10 * GIB - 33 * SECTOR and 10 * GIB - end < 2 * MIB
    assert layout.usr_a.type_guid == layout.usr_b.type_guid == "8484680C-9521-48C6-9C11-B0720656F69E"
    assert layout.root.type_guid == diskimage.ROOT_TYPE
    assert layout == plan_usr_disk(10 * GIB, 1024 * MIB, seed="key")
    assert layout.root_uuid != plan_usr_disk(10 * GIB, 1024 * MIB, seed="other").root_uuid
    ids = [layout.disk_guid, layout.usr_a.uuid, layout.usr_b.uuid, layout.root.uuid]
    assert len(set(ids)) == 4
    script = layout.sfdisk_script()
    assert 'name="USR-A"' in script and 'name="USR-B"' in script and 'name="ROOT"' in script
    with pytest.raises(BuildError, match="too small"):
        plan_usr_disk(2 * GIB, 1024 * MIB, seed="key")
    with pytest.raises(BuildError, match="whole number"):
        plan_usr_disk(10 * GIB, 1000, seed="key")


def test_a_usr_ab_disk_holds_usr_apart_from_the_root(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "usr" / "lib").mkdir(parents=True)
    (root / "etc").mkdir()
    (root / "usr" / "lib" / "os-release").write_text("ID=test\n")
    (root / "etc" / "hostname").write_text("box\n")
    (root / "bin").symlink_to("usr/bin")
    work = tmp_path / "work"
    work.mkdir()
    layout = plan_usr_disk(600 * MIB, 128 * MIB, seed="unit")
    disk = diskimage.make_usr_disk(root, work, layout)
    assert sorted(p.name for p in work.iterdir()) == ["disk.raw"]
    table = json.loads(
        subprocess.run(["sfdisk", "-J", disk], capture_output=True, check=True).stdout
    )["partitiontable"]
    assert [(p["name"], p["start"], p["size"]) for p in table["partitions"]] == [
        (p.name, p.start, p.sectors) for p in (layout.usr_a, layout.usr_b, layout.root)
    ]

    def extract(part: Partition, name: str) -> Path:
        path = tmp_path / name
        subprocess.run(
            ["dd", f"if={disk}", f"of={path}", "bs=1M", f"skip={part.offset // MIB}",
             f"count={part.size // MIB}", "conv=sparse", "status=none"],
            check=True,
        )  # fmt: skip
        return path

    def debugfs(image: Path, request: str) -> str:
        return subprocess.run(["debugfs", "-R", request, image], capture_output=True, text=True,
                              check=True).stdout  # fmt: skip

    usr = extract(layout.usr_a, "usr.img")
    assert debugfs(usr, "cat /lib/os-release") == "ID=test\n"
    features = subprocess.run(["dumpe2fs", "-h", usr], capture_output=True, text=True).stdout
    assert "has_journal" not in features  # mounted read-only only
    rootfs = extract(layout.root, "root.img")
    assert debugfs(rootfs, "cat /etc/hostname") == "box\n"
    assert "os-release" not in debugfs(rootfs, "ls -l /usr/lib") and "lib" not in debugfs(rootfs, "ls /usr")
    blkid = subprocess.run(["blkid", "-o", "export", rootfs], capture_output=True, text=True).stdout
    assert f"UUID={layout.root_uuid}" in blkid
    assert extract(layout.usr_b, "usr-b.img").read_bytes().count(0) == layout.usr_b.size  # empty


def test_a_usr_too_big_for_its_partition_is_refused(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "usr").mkdir(parents=True)
    (root / "usr" / "big").write_bytes(os.urandom(70 * MIB))
    layout = plan_usr_disk(600 * MIB, 64 * MIB, seed="unit")
    with pytest.raises(BuildError, match="does not fit") as info:
        diskimage.make_usr_disk(root, tmp_path, layout)
    assert "usr_size_mb" in (info.value.hint or "")


# --- configuration files ---------------------------------------------------------------------


def test_grub_config_boots_at_once_on_the_serial_console_by_uuid() -> None:
    text = render_grub_config("1234-uuid", "console=tty0 console=ttyS0 quiet")
    lines = [line.strip() for line in text.splitlines() if not line.startswith("#")]
    assert "set timeout=0" in lines
    assert "terminal_output serial console" in lines
    assert "linux /vmlinuz root=UUID=1234-uuid rw console=tty0 console=ttyS0 quiet" in lines
    assert "initrd /initrd.img" in lines
    assert "search --no-floppy --fs-uuid --set=root 1234-uuid" in lines
    # Hidden menus poll the serial terminal for seconds under emulation.
    assert "timeout_style" not in text
    # Nothing names a NIC or a disk device.
    assert "eth0" not in text and "/dev/" not in text


def test_early_config_and_fstab_find_the_root_by_uuid() -> None:
    assert render_early_config("u-1").splitlines() == [
        "search --no-floppy --fs-uuid --set=root u-1",
        "set prefix=($root)/boot/grub",
    ]
    assert "UUID=u-1 / ext4 rw,errors=remount-ro 0 1" in render_fstab("u-1").splitlines()


# --- GRUB's BIOS boot code -------------------------------------------------------------------


def fake_disk(path: Path, sectors: int = 8192) -> bytes:
    """A disk whose first sector holds a recognisable BPB and partition table."""
    mbr = bytearray(SECTOR)
    mbr[0x03:0x5A] = b"B" * (0x5A - 0x03)
    mbr[0x1B8:0x1FE] = bytes(range(0x1FE - 0x1B8))
    mbr[0x1FE:0x200] = b"\x55\xaa"
    path.write_bytes(bytes(mbr) + bytes((sectors - 1) * SECTOR))
    return bytes(mbr)


def fake_core(sectors: int) -> bytes:
    """A core.img as grub-mkimage leaves it: diskboot's block list (start 2, len, 0x820)."""
    core = bytearray(os.urandom(sectors * SECTOR - 100))
    struct.pack_into("<QHH", core, SECTOR - 12, 2, sectors - 1, 0x820)
    return bytes(core)


def test_bios_boot_code_is_embedded_as_grub_bios_setup_does(tmp_path: Path) -> None:
    disk = tmp_path / "disk.raw"
    mbr = fake_disk(disk)
    boot = bytes([0xEB, 0x63, 0x90]) + os.urandom(SECTOR - 3)
    core = fake_core(5)
    part = Partition("bios", diskimage.BIOS_BOOT_TYPE, "u", start=2048, sectors=2048)
    embed_bios_boot(disk, boot, core, part)
    data = disk.read_bytes()
    first = data[:SECTOR]
    assert first[:3] == boot[:3] and first[0x5A:0x5C] == boot[0x5A:0x5C]
    assert first[0x03:0x5A] == mbr[0x03:0x5A]  # the BPB kept
    assert first[0x1B8:0x200] == mbr[0x1B8:0x200]  # the partition table and signature kept
    assert struct.unpack_from("<Q", first, 0x5C) == (2048,)  # core.img's first sector
    assert first[0x64] == 0xFF and first[0x66:0x68] == b"\x90\x90"
    written = data[2048 * SECTOR : 2048 * SECTOR + 5 * SECTOR]
    assert struct.unpack_from("<QHH", written, SECTOR - 12) == (2049, 4, 0x820)
    assert struct.unpack_from("<QHH", written, SECTOR - 24) == (0, 0, 0)
    assert written[SECTOR:] == core[SECTOR:].ljust(4 * SECTOR, b"\0")
    assert data[2048 * SECTOR + 5 * SECTOR :].count(0) == len(data) - 2053 * SECTOR


def test_bios_boot_code_refuses_what_it_cannot_embed(tmp_path: Path) -> None:
    disk = tmp_path / "disk.raw"
    fake_disk(disk)
    part = Partition("bios", diskimage.BIOS_BOOT_TYPE, "u", start=2048, sectors=4)
    with pytest.raises(BuildError, match="does not fit"):
        embed_bios_boot(disk, bytes(SECTOR), fake_core(5), part)
    with pytest.raises(BuildError, match="not an i386-pc"):
        embed_bios_boot(disk, bytes(SECTOR), bytes(3 * SECTOR), part)
    with pytest.raises(BuildError, match="512"):
        embed_bios_boot(disk, bytes(100), fake_core(2), part)
    disk.write_bytes(bytes(8192 * SECTOR))
    with pytest.raises(BuildError, match="no partition table"):
        embed_bios_boot(disk, bytes(SECTOR), fake_core(2), part)


# --- copies ----------------------------------------------------------------------------------


def test_copies_keep_data_and_holes(tmp_path: Path) -> None:
    image = tmp_path / "part.img"
    with open(image, "wb") as handle:
        handle.truncate(64 * MIB)
        handle.seek(5 * MIB)
        handle.write(b"first")
        handle.seek(40 * MIB)
        handle.write(b"second" * 1000)
    disk = tmp_path / "disk.raw"
    with open(disk, "wb") as handle:
        handle.truncate(128 * MIB)
    diskimage.copy_into(image, disk, 2 * MIB, 64 * MIB)
    with open(disk, "rb") as handle:
        handle.seek(7 * MIB)
        assert handle.read(5) == b"first"
        handle.seek(42 * MIB)
        assert handle.read(6000) == b"second" * 1000
    assert disk.stat().st_blocks * 512 < 8 * MIB  # still sparse
    with pytest.raises(BuildError, match="does not fit"):
        diskimage.copy_into(image, disk, 0, 32 * MIB)


# --- a whole disk, with the real tools -------------------------------------------------------


def test_a_whole_disk_boots_nothing_but_holds_everything(tmp_path: Path) -> None:
    grub = diskimage.find_grub()
    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    (root / "boot").mkdir()
    (root / "etc" / "hostname").write_text("box\n")
    work = tmp_path / "work"
    work.mkdir()
    layout = plan_disk(400 * MIB, seed="unit")
    disk = diskimage.make_disk(root, work, layout, grub, "console=ttyS0")
    assert sorted(p.name for p in work.iterdir()) == ["disk.raw"]  # temporary images removed
    assert disk.stat().st_size == 400 * MIB

    def extract(part: Partition, name: str) -> Path:
        path = tmp_path / name
        subprocess.run(
            ["dd", f"if={disk}", f"of={path}", "bs=1M", f"skip={part.offset // MIB}",
             f"count={part.size // MIB}", "conv=sparse", "status=none"],
            check=True,
        )  # fmt: skip
        return path

    table = json.loads(
        subprocess.run(["sfdisk", "-J", disk], capture_output=True, check=True).stdout
    )["partitiontable"]
    assert table["label"] == "gpt" and table["id"] == layout.disk_guid
    found = [(p["start"], p["size"], p["type"], p["uuid"]) for p in table["partitions"]]
    assert found == [
        (p.start, p.sectors, p.type_guid, p.uuid) for p in (layout.bios, layout.esp, layout.root)
    ]

    with open(disk, "rb") as handle:
        data = handle.read(layout.bios.offset + SECTOR)
    boot_img = (grub.pc_dir / "boot.img").read_bytes()
    assert data[:0x03] == boot_img[:0x03] and data[0x1FE:0x200] == b"\x55\xaa"
    assert struct.unpack_from("<Q", data, 0x5C) == (layout.bios.start,)
    core_block = struct.unpack_from("<QHH", data, layout.bios.offset + SECTOR - 12)
    assert core_block[0] == layout.bios.start + 1 and core_block[2] == 0x820

    esp = extract(layout.esp, "esp.img")
    listing = subprocess.run(
        ["mdir", "-b", "-i", esp, "::/EFI/BOOT"], capture_output=True, text=True, check=True,
        env={**os.environ, "MTOOLS_SKIP_CHECK": "1"},
    ).stdout  # fmt: skip
    assert "BOOTX64.EFI" in listing.upper()

    rootfs = extract(layout.root, "root.img")
    blkid = subprocess.run(
        ["blkid", "-o", "export", rootfs], capture_output=True, text=True, check=True
    ).stdout
    assert f"UUID={layout.root_uuid}" in blkid.splitlines() and "TYPE=ext4" in blkid

    def cat(path: str) -> str:
        return subprocess.run(
            ["debugfs", "-R", f"cat {path}", rootfs], capture_output=True, text=True, check=True
        ).stdout

    assert f"root=UUID={layout.root_uuid}" in cat("/boot/grub/grub.cfg")
    assert cat("/etc/fstab") == render_fstab(layout.root_uuid)
    modules = subprocess.run(
        ["debugfs", "-R", "ls -l /boot/grub/x86_64-efi", rootfs], capture_output=True,
        text=True, check=True,
    ).stdout  # fmt: skip
    assert "linux.mod" in modules


def test_missing_grub_is_named_with_its_package(tmp_path: Path) -> None:
    from vmctl.errors import MissingToolError

    with pytest.raises(MissingToolError, match="i386-pc") as info:
        diskimage.find_grub(pc_dir=tmp_path / "none", efi_dir=diskimage.GRUB_EFI_DIR)
    assert info.value.hint == "install it: sudo apt-get install grub-pc-bin"
    with pytest.raises(MissingToolError, match="x86_64-efi") as info:
        diskimage.find_grub(pc_dir=diskimage.GRUB_PC_DIR, efi_dir=tmp_path / "none")
    assert info.value.hint == "install it: sudo apt-get install grub-efi-amd64-bin"
    found = diskimage.find_grub()
    assert [v.split("=")[0] for v in found.versions] == ["grub-pc-bin", "grub-efi-amd64-bin"]
