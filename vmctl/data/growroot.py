"""Grow partition N of DISK to the end of the disk, and an ext4 file system mounted at a
folder to fill its device: vmctl runs this in a guest that has python3 but not growpart,
sfdisk or resize2fs (minimal boxes). Python's standard library only.

    python3 growroot.py part DISK N     GPT or MBR: the partition's end moves to the disk's end
    python3 growroot.py ext4 MOUNTPOINT DEVICE   online resize (the kernel's EXT4_IOC_RESIZE_FS)

The partition table is rewritten only when the partition is the last one on the disk; the
GPT's backup header and entries move to the disk's new end, as sfdisk does.
"""

import fcntl
import os
import struct
import sys
import zlib

SECTOR = 512
BLKGETSIZE64 = 0x80081272
EXT4_IOC_RESIZE_FS = 0x40086610


def disk_bytes(fd: int) -> int:
    buf = fcntl.ioctl(fd, BLKGETSIZE64, b"\0" * 8)
    return struct.unpack("<Q", buf)[0]


def grow_gpt(fd: int, number: int, sectors: int) -> bool:
    os.lseek(fd, SECTOR, 0)
    header = bytearray(os.read(fd, SECTOR))
    if header[:8] != b"EFI PART":
        return False
    size = struct.unpack_from("<I", header, 12)[0]
    entries_lba, count, entry_size = struct.unpack_from("<QII", header, 72)
    os.lseek(fd, entries_lba * SECTOR, 0)
    table = bytearray(os.read(fd, count * entry_size))
    last_lba = sectors - 1
    entry_sectors = (count * entry_size + SECTOR - 1) // SECTOR
    last_usable = last_lba - entry_sectors - 1
    spans = []
    for i in range(count):
        first, end = struct.unpack_from("<QQ", table, i * entry_size + 32)
        if table[i * entry_size:i * entry_size + 16] != b"\0" * 16:
            spans.append((end, i))
    if not spans or max(spans)[1] != number - 1:
        raise SystemExit(f"partition {number} is not the last one on the disk")
    offset = (number - 1) * entry_size
    first, end = struct.unpack_from("<QQ", table, offset + 32)
    new_end = last_usable - ((last_usable - first + 1) % 2048)  # whole MiB, as partitioning tools align
    if new_end <= end:
        return True
    struct.pack_into("<Q", table, offset + 40, new_end)
    table_crc = zlib.crc32(bytes(table)) & 0xFFFFFFFF

    def header_for(my_lba: int, other_lba: int, table_lba: int) -> bytes:
        h = bytearray(header)
        struct.pack_into("<QQ", h, 24, my_lba, other_lba)
        struct.pack_into("<Q", h, 48, last_usable)
        struct.pack_into("<Q", h, 72, table_lba)
        struct.pack_into("<I", h, 88, table_crc)
        struct.pack_into("<I", h, 16, 0)
        struct.pack_into("<I", h, 16, zlib.crc32(bytes(h[:size])) & 0xFFFFFFFF)
        return bytes(h)

    backup_table_lba = last_lba - entry_sectors
    os.lseek(fd, backup_table_lba * SECTOR, 0)
    os.write(fd, bytes(table))
    os.lseek(fd, last_lba * SECTOR, 0)
    os.write(fd, header_for(last_lba, 1, backup_table_lba))
    os.lseek(fd, entries_lba * SECTOR, 0)
    os.write(fd, bytes(table))
    os.lseek(fd, SECTOR, 0)
    os.write(fd, header_for(1, last_lba, entries_lba))
    # The protective MBR's partition covers the whole disk (up to 2 TiB).
    os.lseek(fd, 0, 0)
    mbr = bytearray(os.read(fd, SECTOR))
    if mbr[450] == 0xEE:
        struct.pack_into("<I", mbr, 458, min(sectors - 1, 0xFFFFFFFF))
        os.lseek(fd, 0, 0)
        os.write(fd, bytes(mbr))
    os.fsync(fd)
    return True


def grow_mbr(fd: int, number: int, sectors: int) -> bool:
    os.lseek(fd, 0, 0)
    mbr = bytearray(os.read(fd, SECTOR))
    if mbr[510:512] != b"\x55\xaa" or not 1 <= number <= 4:
        return False
    starts = [(struct.unpack_from("<II", mbr, 446 + 16 * i + 8), i) for i in range(4) if mbr[446 + 16 * i + 4]]
    if max(((s + n), i) for (s, n), i in starts)[1] != number - 1:
        raise SystemExit(f"partition {number} is not the last one on the disk")
    start, count = struct.unpack_from("<II", mbr, 446 + 16 * (number - 1) + 8)
    new_count = min(sectors, 0xFFFFFFFF) - start
    if new_count <= count:
        return True
    struct.pack_into("<I", mbr, 446 + 16 * (number - 1) + 12, new_count)
    os.lseek(fd, 0, 0)
    os.write(fd, bytes(mbr))
    os.fsync(fd)
    return True


def main() -> None:
    if sys.argv[1] == "part":
        disk, number = sys.argv[2], int(sys.argv[3])
        fd = os.open(disk, os.O_RDWR)
        try:
            sectors = disk_bytes(fd) // SECTOR
            if not (grow_gpt(fd, number, sectors) or grow_mbr(fd, number, sectors)):
                raise SystemExit("no GPT or MBR partition table")
        finally:
            os.close(fd)
    elif sys.argv[1] == "ext4":
        mountpoint, device = sys.argv[2], sys.argv[3]
        fd = os.open(device, os.O_RDONLY)
        try:
            size = disk_bytes(fd)
        finally:
            os.close(fd)
        st = os.statvfs(mountpoint)
        blocks = size // st.f_frsize
        fd = os.open(mountpoint, os.O_RDONLY)
        try:
            fcntl.ioctl(fd, EXT4_IOC_RESIZE_FS, struct.pack("<Q", blocks))
        finally:
            os.close(fd)


if __name__ == "__main__":
    main()
