"""Whole-disk images that boot with GRUB under BIOS and UEFI, assembled without mounting anything.

A disk-booted box (``[boot] mode = "disk"`` in a recipe) gets one raw disk, later made a qcow2:

    sector 0     protective MBR holding GRUB's boot.img (BIOS), pointing at core.img
    1 MiB        GPT 1  BIOS boot partition (1 MiB): GRUB's core.img for i386-pc
    2 MiB        GPT 2  EFI system partition (64 MiB, FAT32): EFI/BOOT/BOOTX64.EFI, GRUB for
                        x86_64-efi at the removable-media path, so firmware needs no NVRAM entry
    66 MiB       GPT 3  the root file system (ext4, to the last whole MiB): /boot/grub holds
                        grub.cfg and both platforms' modules

Both GRUB images come from the build host's grub-pc-bin and grub-efi-amd64-bin (grub-mkimage) with
the same small embedded configuration: find the root by its file system UUID, and read
``/boot/grub/grub.cfg`` there. That file boots ``/vmlinuz`` and ``/initrd.img``, the symbolic
links Debian's kernel packages keep pointing at the newest kernel, so a kernel upgraded inside the
guest boots without a bootloader update.

Nothing is mounted and no loop device is attached, so an interrupted build leaves nothing behind
but files in its temporary folder: the root is ``mkfs.ext4 -d`` into an image of the partition's
size, the EFI partition is ``mkfs.vfat`` on a file filled with mtools, both are copied into the
disk at their offsets (their data only: the disk stays sparse), the partition table is written
by ``sfdisk`` on the file, and GRUB's BIOS boot code is put in place by ``embed_bios_boot``, in
Python, exactly as ``grub-bios-setup`` embeds it (that tool insists on probing the device of the
folder its images are in, which only works with the target file system mounted).

Every identifier (GPT GUIDs, the root's UUID, the FAT volume id) is derived from a seed, the
build's cache key, so the same inputs give the same disk.

A box booted directly (vmctl's own initramfs, no bootloader) may instead get a disk whose /usr
lives apart from the root, twice, as CoreOS had it (``[disk] layout = "usr-ab"``):

    1 MiB        GPT 1  USR-A: /usr (ext4 without a journal, mounted read-only)
                 GPT 2  USR-B: the same size, empty: the next /usr is written here
                 GPT 3  ROOT: the root file system without /usr's contents (ext4)

made by ``make_usr_disk`` in the same way (no mount, no loop device); the initramfs finds the
partitions by their GPT names and chooses the /usr to mount.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import struct
import uuid
from dataclasses import dataclass
from pathlib import Path

from vmctl import paths, run
from vmctl.errors import BuildError, MissingToolError

__all__ = [
    "DiskLayout",
    "Grub",
    "Partition",
    "UsrDiskLayout",
    "embed_bios_boot",
    "find_grub",
    "make_disk",
    "make_ext4",
    "make_usr_disk",
    "plan_disk",
    "plan_usr_disk",
    "render_early_config",
    "render_fstab",
    "render_grub_config",
]

SECTOR = 512
MIB = 1024 * 1024
BIOS_BOOT_SIZE = 1 * MIB
ESP_SIZE = 64 * MIB
GPT_BACKUP_SECTORS = 33  # the backup GPT at the end: 32 sectors of entries and the header
# Partition type GUIDs (UEFI specification; the Discoverable Partitions Specification's x86-64 root).
BIOS_BOOT_TYPE = "21686148-6449-6E6F-744E-656564454649"
ESP_TYPE = "C12A7328-F81F-11D2-BA4B-00A0C93EC93B"
ROOT_TYPE = "4F68BCE3-E8CD-4DB1-96E7-FBCAF984B709"
USR_TYPE = "8484680C-9521-48C6-9C11-B0720656F69E"  # "Linux /usr (x86-64)"
# The partition names of a disk with two /usr partitions (CoreOS's), which its initramfs looks for.
USR_NAMES = ("USR-A", "USR-B")
ROOT_NAME = "ROOT"
GRUB_PC_DIR = Path("/usr/lib/grub/i386-pc")
GRUB_EFI_DIR = Path("/usr/lib/grub/x86_64-efi")
GRUB_PACKAGES = {"i386-pc": "grub-pc-bin", "x86_64-efi": "grub-efi-amd64-bin"}
# Built into both GRUB images: enough to find the root and boot Linux from grub.cfg without
# loading a module (the rest are in /boot/grub/PLATFORM/ for `insmod`).
GRUB_MODULES = (
    "part_gpt", "part_msdos", "ext2", "search", "search_fs_uuid", "normal", "configfile",
    "linux", "gzio", "echo", "test", "serial", "terminal", "sleep", "reboot", "halt",
)  # fmt: skip
GRUB_PLATFORM_MODULES = {"i386-pc": ("biosdisk",), "x86_64-efi": ("efi_gop", "efi_uga")}
# Fixed timestamp for the FAT file system's entries, as for the box's other members.
EPOCH = 1_700_000_000

# Where GRUB's boot.img keeps what grub-bios-setup fills in (grub/i386/pc/boot.h).
BOOT_BPB = slice(0x03, 0x5A)  # a BIOS parameter block, kept from the existing sector
BOOT_KERNEL_SECTOR = 0x5C  # 64-bit LBA of core.img's first sector
BOOT_DRIVE = 0x64  # 0xff: use the drive the BIOS booted from
BOOT_DRIVE_CHECK = 0x66  # a jump skipped (two NOPs) on hard disks
BOOT_PARTITION_TABLE = slice(0x1B8, 0x1FE)  # disk signature and the (protective) MBR entries
# core.img's first sector (diskboot.img) ends with a list of the sectors holding the rest:
# (start LBA u64, count u16, load segment u16), read from the end backwards, zero-terminated.
BLOCKLIST = struct.Struct("<QHH")
CORE_LOAD_SEGMENT = 0x820  # GRUB_BOOT_I386_PC_KERNEL_SEG + one sector (0x800 + 0x20)


@dataclass(frozen=True)
class Partition:
    name: str
    type_guid: str
    uuid: str
    start: int  # in sectors
    sectors: int

    @property
    def offset(self) -> int:
        return self.start * SECTOR

    @property
    def size(self) -> int:
        return self.sectors * SECTOR


@dataclass(frozen=True)
class DiskLayout:
    """The disk's size and partitions, and the identifiers derived from the build's seed."""

    size: int  # bytes
    disk_guid: str
    bios: Partition
    esp: Partition
    root: Partition
    root_uuid: str  # the ext4 file system's UUID (root=UUID=... on the kernel command line)
    esp_volume_id: str  # the FAT volume id, 8 hex digits

    def sfdisk_script(self) -> str:
        """Input for sfdisk: a GPT holding the three partitions, every GUID given."""
        return sfdisk_script(self.disk_guid, (self.bios, self.esp, self.root))


@dataclass(frozen=True)
class UsrDiskLayout:
    """A disk with two /usr partitions and the root (direct kernel boot: no bootloader)."""

    size: int  # bytes
    disk_guid: str
    usr_a: Partition
    usr_b: Partition
    root: Partition
    usr_uuid: str  # USR-A's file system
    root_uuid: str

    def sfdisk_script(self) -> str:
        return sfdisk_script(self.disk_guid, (self.usr_a, self.usr_b, self.root))


def sfdisk_script(disk_guid: str, partitions: tuple[Partition, ...]) -> str:
    """Input for sfdisk: a GPT holding PARTITIONS, every GUID and name given."""
    lines = ["label: gpt", f"label-id: {disk_guid}", "unit: sectors", "first-lba: 2048"]
    for part in partitions:
        lines.append(
            f"start={part.start}, size={part.sectors}, type={part.type_guid}, "
            f'uuid={part.uuid}, name="{part.name}"'
        )
    return "\n".join(lines) + "\n"


def derived_guid(seed: str, what: str) -> str:
    """A GUID for WHAT, derived from SEED: equal inputs give equal disks."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"vmctl-box:{seed}:{what}")).upper()


def _usable_end(size_bytes: int) -> int:
    """The last whole MiB (in sectors) before the backup GPT."""
    return (size_bytes // SECTOR - GPT_BACKUP_SECTORS) // (MIB // SECTOR) * (MIB // SECTOR)


def plan_disk(size_bytes: int, seed: str) -> DiskLayout:
    """The layout of a disk of SIZE_BYTES: BIOS boot, ESP, and the root to the last whole MiB."""
    def guid(what: str) -> str:
        return derived_guid(seed, what)

    bios_start = MIB // SECTOR
    esp_start = bios_start + BIOS_BOOT_SIZE // SECTOR
    root_start = esp_start + ESP_SIZE // SECTOR
    usable_end = _usable_end(size_bytes)
    if usable_end - root_start < 256 * MIB // SECTOR:
        raise BuildError(f"a disk of {size_bytes} bytes is too small for a disk-booted box")
    return DiskLayout(
        size=size_bytes,
        disk_guid=guid("disk"),
        bios=Partition("bios", BIOS_BOOT_TYPE, guid("bios"), bios_start, BIOS_BOOT_SIZE // SECTOR),
        esp=Partition("esp", ESP_TYPE, guid("esp"), esp_start, ESP_SIZE // SECTOR),
        root=Partition("root", ROOT_TYPE, guid("root"), root_start, usable_end - root_start),
        root_uuid=guid("root-filesystem").lower(),
        esp_volume_id=guid("esp-volume")[:8],
    )


def plan_usr_disk(size_bytes: int, usr_bytes: int, seed: str) -> UsrDiskLayout:
    """The layout of a disk of SIZE_BYTES with two /usr partitions of USR_BYTES (whole MiB)
    from 1 MiB on, and the root to the last whole MiB."""
    if usr_bytes % MIB or usr_bytes < 64 * MIB:
        raise BuildError(f"a /usr partition of {usr_bytes} bytes is not a whole number of MiB (at least 64)")
    def guid(what: str) -> str:
        return derived_guid(seed, what)

    usr_sectors = usr_bytes // SECTOR
    a_start = MIB // SECTOR
    b_start = a_start + usr_sectors
    root_start = b_start + usr_sectors
    usable_end = _usable_end(size_bytes)
    if usable_end - root_start < 256 * MIB // SECTOR:
        raise BuildError(
            f"a disk of {size_bytes} bytes is too small for two /usr partitions of "
            f"{usr_bytes // MIB} MiB and a root of at least 256 MiB"
        )
    return UsrDiskLayout(
        size=size_bytes,
        disk_guid=guid("disk"),
        usr_a=Partition(USR_NAMES[0], USR_TYPE, guid("usr-a"), a_start, usr_sectors),
        usr_b=Partition(USR_NAMES[1], USR_TYPE, guid("usr-b"), b_start, usr_sectors),
        root=Partition(ROOT_NAME, ROOT_TYPE, guid("root"), root_start, usable_end - root_start),
        usr_uuid=guid("usr-a-filesystem").lower(),
        root_uuid=guid("root-filesystem").lower(),
    )


# --------------------------------------------------------------------------------------------
# Configuration files (pure functions)


def render_early_config(root_uuid: str) -> str:
    """Embedded in both GRUB images: find the root, and take grub.cfg from its /boot/grub."""
    return f"search --no-floppy --fs-uuid --set=root {root_uuid}\nset prefix=($root)/boot/grub\n"


def render_grub_config(root_uuid: str, cmdline: str) -> str:
    """/boot/grub/grub.cfg: one entry, booted at once, the newest kernel, GRUB on the serial port
    as well as the screen (so its errors reach the console log).

    No ``timeout_style=hidden``: with a serial terminal GRUB then polls it for a key for about
    3 s under emulation before booting, even with a timeout of 0.
    """
    return (
        "# Written by vmctl's box builder. The kernel and initramfs are Debian's symbolic links\n"
        "# to the newest installed ones, so a kernel upgraded by apt boots without update-grub.\n"
        "serial --unit=0 --speed=115200\n"
        "terminal_input serial console\n"
        "terminal_output serial console\n"
        "set default=0\n"
        "set timeout=0\n"
        "menuentry 'Debian GNU/Linux' {\n"
        f"  search --no-floppy --fs-uuid --set=root {root_uuid}\n"
        f"  linux /vmlinuz root=UUID={root_uuid} rw {cmdline}\n"
        "  initrd /initrd.img\n"
        "}\n"
    )


def render_fstab(root_uuid: str) -> str:
    return (
        "# <file system> <mount point> <type> <options> <dump> <pass>\n"
        f"UUID={root_uuid} / ext4 rw,errors=remount-ro 0 1\n"
    )


# --------------------------------------------------------------------------------------------
# GRUB on the build host


@dataclass(frozen=True)
class Grub:
    """GRUB's files on the build host, and the package versions that key the cache."""

    pc_dir: Path
    efi_dir: Path
    versions: tuple[str, ...]  # e.g. ("grub-pc-bin=2.06-13+deb12u2", "grub-efi-amd64-bin=...")

    @property
    def identity(self) -> str:
        return ", ".join(self.versions)


def find_grub(pc_dir: Path = GRUB_PC_DIR, efi_dir: Path = GRUB_EFI_DIR) -> Grub:
    """GRUB for both platforms, or a MissingToolError naming the package to install."""
    run.require_tool("grub-mkimage", "make GRUB's boot images for a disk-booted box")
    versions = []
    for platform, folder, needed in (
        ("i386-pc", pc_dir, ("boot.img", "kernel.img", "biosdisk.mod")),
        ("x86_64-efi", efi_dir, ("kernel.img", "linux.mod")),
    ):
        package = GRUB_PACKAGES[platform]
        if not all((folder / name).is_file() for name in needed):
            raise MissingToolError(
                f"GRUB for {platform} is not installed ({folder}), which is required to build a disk-booted box",
                hint=f"install it: sudo apt-get install {package}",
            )
        versions.append(f"{package}={package_version(package)}")
    return Grub(pc_dir=pc_dir, efi_dir=efi_dir, versions=tuple(versions))


def package_version(package: str, admindir: Path | None = None) -> str:
    """The installed version of PACKAGE (on the host, or in the dpkg database ADMINDIR), or "?"."""
    argv: list[str | Path] = ["dpkg-query"]
    if admindir is not None:
        argv.append(f"--admindir={admindir}")
    argv += ["-W", "-f=${Version}", package]
    proc = run.run(argv, purpose="find an installed package's version", check=False)
    version = proc.stdout.decode(errors="replace").strip() if proc.returncode == 0 else ""
    return version or "?"


def install_grub_files(root: Path, grub: Grub, grub_cfg: str) -> None:
    """ROOT/boot/grub: grub.cfg and both platforms' modules (as grub-install copies them)."""
    target = root / "boot" / "grub"
    for platform, source in (("i386-pc", grub.pc_dir), ("x86_64-efi", grub.efi_dir)):
        folder = target / platform
        folder.mkdir(parents=True, exist_ok=True)
        for path in sorted(source.iterdir()):
            if path.suffix in (".mod", ".lst") and path.is_file():
                shutil.copyfile(path, folder / path.name)
    (target / "grub.cfg").write_text(grub_cfg)


def make_grub_image(grub: Grub, platform: str, early_config: Path, output: Path) -> None:
    folder = grub.pc_dir if platform == "i386-pc" else grub.efi_dir
    modules = (*GRUB_MODULES, *GRUB_PLATFORM_MODULES[platform])
    proc = run.run(
        ["grub-mkimage", "-O", platform, "-d", folder, "-c", early_config, "-p", "/boot/grub",
         "-o", output, *modules],
        purpose=f"make GRUB's {platform} image",
        check=False,
    )  # fmt: skip
    if proc.returncode != 0:
        raise step_error(f"grub-mkimage ({platform})", proc.stderr, proc.returncode)


# --------------------------------------------------------------------------------------------
# Writing the disk


def embed_bios_boot(disk: Path, boot_img: bytes, core_img: bytes, partition: Partition) -> None:
    """Install GRUB for BIOS into DISK as grub-bios-setup embeds it in a BIOS boot partition.

    core.img goes into PARTITION; its first sector's block list is pointed at its other
    sectors; boot.img goes into the first sector, keeping the partition table already there,
    and is pointed at core.img's first sector. (No Reed-Solomon codes: those only repair a
    core.img that something else overwrote in the MBR gap, which a GPT partition is not.)
    """
    if len(boot_img) != SECTOR:
        raise BuildError(f"GRUB's boot.img is {len(boot_img)} bytes, not {SECTOR}")
    sectors = -(-len(core_img) // SECTOR)
    if sectors > partition.sectors or sectors < 2:
        raise BuildError(
            f"GRUB's core.img ({len(core_img)} bytes) does not fit the BIOS boot partition"
        )
    core = bytearray(core_img.ljust(sectors * SECTOR, b"\0"))
    last = SECTOR - BLOCKLIST.size
    if BLOCKLIST.unpack_from(core, last)[2] != CORE_LOAD_SEGMENT:
        raise BuildError("GRUB's core.img is not an i386-pc disk image (no block list found)")
    BLOCKLIST.pack_into(core, last, partition.start + 1, sectors - 1, CORE_LOAD_SEGMENT)
    BLOCKLIST.pack_into(core, last - BLOCKLIST.size, 0, 0, 0)  # the terminator
    boot = bytearray(boot_img)
    with open(disk, "r+b") as handle:
        existing = handle.read(SECTOR)
        if existing[0x1FE:0x200] != b"\x55\xaa":
            raise BuildError(f"{disk} has no partition table to keep in its first sector")
        boot[BOOT_BPB] = existing[BOOT_BPB]
        boot[BOOT_PARTITION_TABLE] = existing[BOOT_PARTITION_TABLE]
        boot[0x1FE:0x200] = b"\x55\xaa"  # the boot signature (boot.img carries it too)
        struct.pack_into("<Q", boot, BOOT_KERNEL_SECTOR, partition.start)
        boot[BOOT_DRIVE] = 0xFF
        boot[BOOT_DRIVE_CHECK : BOOT_DRIVE_CHECK + 2] = b"\x90\x90"
        handle.seek(partition.offset)
        handle.write(core)
        handle.seek(0)
        handle.write(boot)


def copy_into(image: Path, disk: Path, offset: int, limit: int) -> None:
    """Copy IMAGE's data (not its holes) into DISK at OFFSET; IMAGE must fit in LIMIT bytes."""
    size = image.stat().st_size
    if size > limit:
        raise BuildError(f"{image.name} ({size} bytes) does not fit its partition ({limit} bytes)")
    with open(image, "rb") as source, open(disk, "r+b") as target:
        position = 0
        while position < size:
            try:
                start = os.lseek(source.fileno(), position, os.SEEK_DATA)
            except OSError as exc:
                if exc.errno == errno.ENXIO:  # only a hole is left
                    break
                raise
            end = os.lseek(source.fileno(), start, os.SEEK_HOLE)
            while start < end:
                chunk = os.pread(source.fileno(), min(end - start, 4 * MIB), start)
                if not chunk:
                    break
                os.pwrite(target.fileno(), chunk, offset + start)
                start += len(chunk)
            position = end


def make_ext4(
    root: Path,
    image: Path,
    size_bytes: int,
    *,
    uuid: str | None = None,
    label: str = "root",
    journal: bool = True,
) -> None:
    """mkfs.ext4 -d: ROOT becomes an ext4 image of SIZE_BYTES; nothing is mounted. A file
    system that is only ever mounted read-only needs no JOURNAL."""
    with open(image, "wb") as handle:
        handle.truncate(size_bytes)
    argv: list[str | Path] = ["mkfs.ext4", "-q", "-F", "-L", label, "-m", "1"]
    if not journal:
        argv += ["-O", "^has_journal", "-m", "0"]
    if uuid is not None:
        argv += ["-U", uuid, "-E", f"lazy_itable_init=0,lazy_journal_init=0,hash_seed={uuid}"]
    else:
        argv += ["-E", "lazy_itable_init=0,lazy_journal_init=0"]
    proc = run.run(
        [*argv, "-d", root, image],
        purpose="turn the root filesystem into a disk image",
        check=False,
        env={
            "PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"),
            "E2FSPROGS_FAKE_TIME": str(EPOCH),
        },
    )
    if proc.returncode != 0:
        raise step_error("mkfs.ext4", proc.stderr, proc.returncode)


def make_esp(image: Path, efi_binary: Path, layout: DiskLayout) -> None:
    """A FAT32 file system of the ESP's size holding EFI/BOOT/BOOTX64.EFI (mtools: no mount)."""
    with open(image, "wb") as handle:
        handle.truncate(layout.esp.size)
    env = {
        "PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"),
        "SOURCE_DATE_EPOCH": str(EPOCH),
        "MTOOLS_SKIP_CHECK": "1",
        "TZ": "UTC",
    }
    steps: list[tuple[str, list[str | Path]]] = [
        ("mkfs.vfat", ["mkfs.vfat", "-F", "32", "-s", "1", "-n", "EFI", "-i",
                       layout.esp_volume_id, image]),
        ("mmd", ["mmd", "-i", image, "::/EFI", "::/EFI/BOOT"]),
        ("mcopy", ["mcopy", "-m", "-i", image, efi_binary, "::/EFI/BOOT/BOOTX64.EFI"]),
    ]  # fmt: skip
    for step, argv in steps:
        proc = run.run(argv, purpose="make the EFI system partition", check=False, env=env)
        if proc.returncode != 0:
            raise step_error(step, proc.stderr, proc.returncode)


def write_partition_table(disk: Path, layout: DiskLayout | UsrDiskLayout) -> None:
    with open(disk, "wb") as handle:
        handle.truncate(layout.size)
    proc = run.run(
        ["sfdisk", "--quiet", "--no-reread", "--no-tell-kernel", disk],
        purpose="write the disk's partition table",
        check=False,
        input=layout.sfdisk_script().encode(),
    )
    if proc.returncode != 0:
        raise step_error("sfdisk", proc.stderr, proc.returncode)


def make_disk(root: Path, work: Path, layout: DiskLayout, grub: Grub, cmdline: str) -> Path:
    """The whole disk, WORK/disk.raw, from the root directory ROOT (which gets /etc/fstab and
    /boot/grub). Temporary images are made in WORK and removed; nothing is mounted."""
    (root / "etc" / "fstab").write_text(render_fstab(layout.root_uuid))
    install_grub_files(root, grub, render_grub_config(layout.root_uuid, cmdline))
    early = work / "grub-early.cfg"
    early.write_text(render_early_config(layout.root_uuid))
    core, efi = work / "core.img", work / "BOOTX64.EFI"
    make_grub_image(grub, "i386-pc", early, core)
    make_grub_image(grub, "x86_64-efi", early, efi)
    esp, rootfs, disk = work / "esp.img", work / "root.img", work / "disk.raw"
    make_esp(esp, efi, layout)
    make_ext4(root, rootfs, layout.root.size, uuid=layout.root_uuid)
    write_partition_table(disk, layout)
    copy_into(esp, disk, layout.esp.offset, layout.esp.size)
    copy_into(rootfs, disk, layout.root.offset, layout.root.size)
    embed_bios_boot(disk, (grub.pc_dir / "boot.img").read_bytes(), core.read_bytes(), layout.bios)
    for path in (early, core, efi, esp, rootfs):
        path.unlink()
    return disk


def tree_bytes(folder: Path) -> int:
    """The space FOLDER's files take (allocated blocks, links not followed)."""
    total = 0
    for dirpath, dirnames, filenames in os.walk(folder):
        for name in (*dirnames, *filenames):
            with contextlib.suppress(OSError):
                total += os.lstat(os.path.join(dirpath, name)).st_blocks * 512
    return total


def make_usr_disk(root: Path, work: Path, layout: UsrDiskLayout) -> Path:
    """The whole disk, WORK/disk.raw, from the root directory ROOT: its /usr goes into USR-A
    (ROOT/usr is left an empty mount point), the rest into ROOT; USR-B stays empty (a hole).
    Temporary images are made in WORK and removed; nothing is mounted."""
    usr = root / "usr"
    needed = tree_bytes(usr)
    # ext4's own structures (inode tables, bitmaps) take some 5 % more; keep a margin.
    if needed * 1.15 > layout.usr_a.size:
        raise BuildError(
            f"/usr ({needed // MIB} MiB) does not fit a /usr partition of {layout.usr_a.size // MIB} MiB",
            hint="raise [disk] usr_size_mb in recipe.toml",
        )
    tree = work / "usr-tree"
    os.rename(usr, tree)
    usr.mkdir()
    os.chmod(usr, 0o755)
    usr_image, root_image, disk = work / "usr.img", work / "root.img", work / "disk.raw"
    make_ext4(tree, usr_image, layout.usr_a.size, uuid=layout.usr_uuid, label="usr", journal=False)
    shutil.rmtree(tree)
    make_ext4(root, root_image, layout.root.size, uuid=layout.root_uuid, label="root")
    write_partition_table(disk, layout)
    copy_into(usr_image, disk, layout.usr_a.offset, layout.usr_a.size)
    copy_into(root_image, disk, layout.root.offset, layout.root.size)
    for path in (usr_image, root_image):
        path.unlink()
    return disk


# --------------------------------------------------------------------------------------------
# Errors of the build's steps (shared with build.py)


def step_error(step: str, stderr: bytes | None, status: int) -> BuildError:
    text = (stderr or b"").decode(errors="replace")
    if "No space left on device" in text:
        return disk_full_error(step)
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith(("E:", "error", "Error"))] or lines
    # dpkg names the first package whose scripts failed (what apt's last lines do not say).
    first_dpkg = next((line for line in lines if "dpkg: error processing" in line), None)
    detail = "; ".join(([first_dpkg] if first_dpkg else []) + errors[-3:])
    return BuildError(
        f"{step} failed with exit status {status}" + (f": {detail}" if detail else ""),
        hint="run again with --debug to see the command",
    )


def disk_full_error(step: str) -> BuildError:
    return BuildError(
        f"the disk is full: {step} ran out of space while building the box",
        hint=f"free some space in {paths.cache_home()} and the output folder, then build again",
    )
