"""Build boxes from recipes: Debian packages in, a vagrant-libvirt box and its catalog out.

A recipe is a folder holding ``recipe.toml`` (see docs/recipes.md) and the files it names.
``build_recipe`` turns it into ``DIR/NAME-VERSION.box`` and the Vagrant catalog ``DIR/NAME.json``:

    mmdebstrap   a root directory from Debian's packages, plus the recipe's overlay and hooks
    kernel       the kernel of the host's installed kernel package (vmlinuz and its modules)
    initramfs    busybox and the recipe's modules (with their dependencies) and /init
    filesystem   mkfs.ext4 -d: the root directory becomes an ext4 image, nothing is mounted
    qcow2        qemu-img convert: a compressed, self-contained qcow2 (no backing file)
    archive      a plain tar: metadata.json, Vagrantfile, box.img, vmlinuz, initrd.img
    sha256       the box's checksum, for the catalog

That is direct kernel boot (``[boot] mode = "kernel"``, the default). A disk-booted box
(``mode = "disk"``) instead has the distribution's kernel and initramfs installed in the root by
apt, and its ``box.img`` is a whole GPT disk that GRUB boots under BIOS and UEFI (made by
``diskimage.make_disk``); its archive holds no kernel and its Vagrantfile names none.

Built boxes are cached in ``cache_home()/builds/KEY/``, where KEY hashes the recipe's files, the
builder's source (this module and diskimage.py) and the insecure public keys, and the kernel
package's version (or, for a disk-booted box, the suite's kernel package and the host's GRUB
packages): a rebuild with the same inputs links (or copies) the cached box to the output.
Everything is built in a temporary folder and renamed into place, so a failed or interrupted
build leaves no partial box behind.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import gzip
import hashlib
import io
import json
import os
import re
import shlex
import shutil
import stat
import tarfile
import time
import tomllib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path

from vmctl import paths, run
from vmctl.boxes import diskimage
from vmctl.boxes.diskimage import disk_full_error, make_ext4, step_error
from vmctl.errors import BuildError, MissingToolError, VmctlError

__all__ = [
    "BootMode",
    "DiskLayoutMode",
    "BuildResult",
    "Recipe",
    "KernelSpec",
    "build_recipe",
    "find_recipe",
    "parse_recipe",
    "cache_key",
    "render_catalog",
    "render_vagrantfile",
    "render_metadata",
]

RECIPE_FILE = "recipe.toml"
# Files of a recipe folder that do not change the box (and so do not change the cache key).
UNHASHED = frozenset({"README.md"})
DEFAULT_MIRROR = "http://deb.debian.org/debian"
DEFAULT_SECURITY_MIRROR = "http://deb.debian.org/debian-security"
INSECURE_KEYS = Path(__file__).resolve().parent.parent / "data" / "insecure-keys" / "vagrant.pub"
# Builds of one box name kept in the cache (the newest ones); older ones are removed.
KEEP_BUILDS = 3
# Fixed timestamp for archive members and the initramfs, so equal inputs give equal bytes.
EPOCH = 1_700_000_000
KERNEL_SOURCES = ("auto", "host", "mirror")
# The kernel command line of a disk-booted box when the recipe gives none (GRUB adds root=).
DISK_CMDLINE = "console=tty0 console=ttyS0"
DISK_CMDLINE_RE = re.compile(r"[A-Za-z0-9_.,:=/+@%-]+( [A-Za-z0-9_.,:=/+@%-]+)*")
# What a disk-booted box's root always gets from apt: the kernel (the recipe's kernel.package)
# and the tools that make its initramfs.
DISK_PACKAGES = ("initramfs-tools",)
USER_RE = re.compile(r"^[a-z_][a-z0-9_-]{0,31}$")
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*(/[A-Za-z0-9][A-Za-z0-9._-]*)?$")
VERSION_RE = re.compile(r"^[0-9]+(\.[0-9]+)*([.-][A-Za-z0-9.]+)?$")
VARIANTS = (
    "extract",
    "custom",
    "essential",
    "apt",
    "minbase",
    "buildd",
    "required",
    "important",
    "standard",
)


class BootMode(StrEnum):
    """How a box boots: ``[boot] mode`` in recipe.toml."""

    KERNEL = "kernel"  # direct kernel boot: vmlinuz and vmctl's initramfs beside box.img
    DISK = "disk"  # a GPT disk with GRUB for BIOS and UEFI, the kernel installed in the root


class DiskLayoutMode(StrEnum):
    """What box.img holds when the box boots directly: ``[disk] layout`` in recipe.toml."""

    FILESYSTEM = "filesystem"  # the root file system itself, no partition table
    USR_AB = "usr-ab"  # GPT: USR-A (/usr), USR-B (the next /usr, empty), ROOT (the rest)


@dataclass(frozen=True)
class KernelSpec:
    """Which kernel the box boots, and (direct kernel boot) how the initramfs is made.

    For a disk-booted box only ``package`` (installed in the root by apt) and ``cmdline`` (GRUB's
    kernel arguments; GRUB adds ``root=UUID=... rw``) apply.
    """

    package: str = "linux-image-cloud-amd64"
    source: str = (
        "auto"  # "host": the installed package; "mirror": downloaded; "auto": host if installed
    )
    modules: tuple[str, ...] = ()
    cmdline: str = "root=/dev/vda rw console=ttyS0"
    initramfs_init: str = "initramfs/init"
    root_modules: bool = False  # the kernel's modules also go into the root's /usr/lib/modules


@dataclass(frozen=True)
class Recipe:
    """A parsed recipe.toml; paths are relative to ``folder``."""

    folder: Path
    name: str
    version: str
    description: str = ""
    suite: str = "bookworm"
    variant: str = "essential"
    mirror: str = DEFAULT_MIRROR
    security_mirror: str = DEFAULT_SECURITY_MIRROR
    components: tuple[str, ...] = ("main",)
    packages: tuple[str, ...] = ()
    dpkg_exclude: tuple[str, ...] = ()
    dpkg_include: tuple[str, ...] = ()
    overlay: str | None = None
    customize: tuple[str, ...] = ()
    disk_size_gb: int = 4
    ssh_username: str | None = None  # config.ssh.username in the box's Vagrantfile
    kernel: KernelSpec = field(default_factory=KernelSpec)
    boot: BootMode = BootMode.KERNEL
    disk_layout: DiskLayoutMode = DiskLayoutMode.FILESYSTEM
    usr_size_mb: int = 1024  # each /usr partition's size with disk_layout usr-ab

    @property
    def file_stem(self) -> str:
        """NAME-VERSION with "/" replaced: vmctl/tiny 1.0.0 -> vmctl-tiny-1.0.0."""
        return f"{self.name.replace('/', '-')}-{self.version}"

    @property
    def box_filename(self) -> str:
        return f"{self.file_stem}.box"

    @property
    def catalog_filename(self) -> str:
        return f"{self.name.replace('/', '-')}.json"


@dataclass(frozen=True)
class BuildResult:
    name: str
    version: str
    box_path: Path
    catalog_path: Path
    sha256: str
    cached: bool


@dataclass(frozen=True)
class HostKernel:
    """The kernel of an installed package: its files and the versions that key the cache."""

    package: str  # the versioned package, e.g. linux-image-6.1.0-56-cloud-amd64
    version: str  # its Debian version, e.g. 6.1.192-2
    release: str  # uname -r of that kernel, e.g. 6.1.0-56-cloud-amd64
    vmlinuz: Path
    modules_dir: Path


# --------------------------------------------------------------------------------------------
# Recipes: finding and parsing


def find_recipe(recipe: str | Path) -> Path:
    """The folder of RECIPE: a path to a folder, or the name of a recipe shipped with vmctl."""
    text = str(recipe)
    candidate = Path(text).expanduser()
    if (candidate / RECIPE_FILE).is_file():
        return candidate.absolute()
    package_dir = Path(__file__).resolve().parent.parent
    if "/" not in text and text not in ("", ".", ".."):
        for folder in (package_dir / "recipes" / text, package_dir.parent / "boxes" / text):
            if (folder / RECIPE_FILE).is_file():
                return folder
    if candidate.is_dir():
        raise BuildError(
            f"{candidate} has no {RECIPE_FILE}",
            hint="a recipe folder holds recipe.toml; see docs/recipes.md",
        )
    raise BuildError(
        f"no recipe named {text!r}",
        hint=f"give a folder holding {RECIPE_FILE}, or one of: {', '.join(list_recipes()) or '(none shipped)'}",
    )


def list_recipes() -> list[str]:
    """Names of the recipes shipped with vmctl (or next to it, in a source checkout)."""
    package_dir = Path(__file__).resolve().parent.parent
    names: set[str] = set()
    for base in (package_dir / "recipes", package_dir.parent / "boxes"):
        if base.is_dir():
            names.update(p.parent.name for p in base.glob(f"*/{RECIPE_FILE}"))
    return sorted(names)


def parse_recipe(folder: Path) -> Recipe:
    """Read FOLDER/recipe.toml into a Recipe; errors name the file and quote the bad value."""
    folder = Path(folder)
    path = folder / RECIPE_FILE
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise BuildError(f"{path} does not exist") from None
    except tomllib.TOMLDecodeError as exc:
        raise BuildError(f"{path} is not valid TOML: {exc}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise BuildError(f"could not read {path}: {exc}") from None

    def bad(key: str, value: object, expected: str) -> BuildError:
        return BuildError(f"{path}: {key} = {value!r} is not valid: expected {expected}")

    def text(table: dict, key: str, default: str | None = None, prefix: str = "") -> str:
        if key not in table:
            if default is None:
                raise BuildError(f"{path}: {prefix}{key} is missing")
            return default
        value = table[key]
        if not isinstance(value, str):
            raise bad(prefix + key, value, "a string")
        return value

    def strings(table: dict, key: str, prefix: str = "") -> tuple[str, ...]:
        value = table.get(key, [])
        if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
            raise bad(prefix + key, value, "a list of strings")
        return tuple(value)

    def relative_file(key: str, value: str, *, directory: bool = False) -> str:
        target = (folder / value).resolve()
        if Path(value).is_absolute() or ".." in Path(value).parts:
            raise bad(key, value, "a path inside the recipe folder")
        if not (target.is_dir() if directory else target.is_file()):
            kind = "folder" if directory else "file"
            raise BuildError(f"{path}: {key} = {value!r}: no such {kind} in {folder}")
        return value

    known = {
        "name", "version", "description", "suite", "variant", "mirror", "security_mirror",
        "components", "packages", "dpkg_exclude", "dpkg_include", "overlay", "customize",
        "disk_size_gb", "ssh_username", "kernel", "boot", "disk",
    }  # fmt: skip
    unknown = sorted(set(data) - known)
    if unknown:
        raise BuildError(
            f"{path}: unknown key {unknown[0]!r}", hint=f"known keys: {', '.join(sorted(known))}"
        )

    name = text(data, "name")
    if not NAME_RE.match(name):
        raise bad("name", name, 'a box name such as "vmctl/tiny"')
    version = text(data, "version")
    if not VERSION_RE.match(version):
        raise bad("version", version, 'a version such as "1.0.0"')
    variant = text(data, "variant", "essential")
    if variant not in VARIANTS:
        raise bad("variant", variant, f"one of {', '.join(VARIANTS)}")
    disk = data.get("disk_size_gb", 4)
    if not isinstance(disk, int) or isinstance(disk, bool) or not 1 <= disk <= 2048:
        raise bad("disk_size_gb", disk, "a whole number of GB between 1 and 2048")
    overlay = data.get("overlay")
    if overlay is not None:
        if not isinstance(overlay, str):
            raise bad("overlay", overlay, "a folder name")
        relative_file("overlay", overlay, directory=True)
    customize = strings(data, "customize")
    for script in customize:
        relative_file("customize", script)
    ssh_username = data.get("ssh_username")
    if ssh_username is not None and (
        not isinstance(ssh_username, str) or not USER_RE.match(ssh_username)
    ):
        raise bad("ssh_username", ssh_username, 'a user name such as "core"')

    boot_table = data.get("boot", {})
    if not isinstance(boot_table, dict):
        raise bad("boot", boot_table, "a table ([boot])")
    unknown = sorted(set(boot_table) - {"mode"})
    if unknown:
        raise BuildError(f"{path}: unknown key boot.{unknown[0]}", hint="known keys: mode")
    mode = text(boot_table, "mode", BootMode.KERNEL.value, "boot.")
    if mode not in {m.value for m in BootMode}:
        raise bad("boot.mode", mode, f"one of {', '.join(m.value for m in BootMode)}")
    boot = BootMode(mode)

    disk_table = data.get("disk", {})
    if not isinstance(disk_table, dict):
        raise bad("disk", disk_table, "a table ([disk])")
    unknown = sorted(set(disk_table) - {"layout", "usr_size_mb"})
    if unknown:
        raise BuildError(
            f"{path}: unknown key disk.{unknown[0]}", hint="known keys: layout, usr_size_mb"
        )
    layout_text = text(disk_table, "layout", DiskLayoutMode.FILESYSTEM.value, "disk.")
    if layout_text not in {m.value for m in DiskLayoutMode}:
        raise bad("disk.layout", layout_text, f"one of {', '.join(m.value for m in DiskLayoutMode)}")
    disk_layout = DiskLayoutMode(layout_text)
    usr_size_mb = disk_table.get("usr_size_mb", 1024)
    if disk_layout is DiskLayoutMode.USR_AB and boot is not BootMode.KERNEL:
        raise BuildError(
            f'{path}: disk.layout = "usr-ab" needs boot.mode = "kernel"',
            hint="vmctl's initramfs chooses which /usr to mount; a disk-booted box has its own",
        )
    if "usr_size_mb" in disk_table and disk_layout is not DiskLayoutMode.USR_AB:
        raise BuildError(f'{path}: disk.usr_size_mb is only for disk.layout = "usr-ab"')
    if (
        not isinstance(usr_size_mb, int)
        or isinstance(usr_size_mb, bool)
        or not 64 <= usr_size_mb <= 65536
    ):
        raise bad("disk.usr_size_mb", usr_size_mb, "a whole number of MiB between 64 and 65536")
    if disk_layout is DiskLayoutMode.USR_AB and 2 * usr_size_mb + 256 > disk * 1024:
        raise bad(
            "disk.usr_size_mb", usr_size_mb, f"two /usr partitions and a root within {disk} GB"
        )

    kernel_table = data.get("kernel", {})
    if not isinstance(kernel_table, dict):
        raise bad("kernel", kernel_table, "a table ([kernel])")
    unknown = sorted(
        set(kernel_table)
        - {"package", "source", "modules", "cmdline", "initramfs_init", "root_modules"}
    )
    if unknown:
        raise BuildError(f"{path}: unknown key kernel.{unknown[0]}")
    if boot is BootMode.DISK:
        # The kernel comes from apt, into the root, with the distribution's own initramfs.
        direct_only = sorted(set(kernel_table) - {"package", "cmdline"})
        if direct_only:
            raise BuildError(
                f'{path}: kernel.{direct_only[0]} is for direct kernel boot, not with boot.mode = "disk"',
                hint="a disk-booted box installs kernel.package in the root with its own initramfs",
            )
    kernel = KernelSpec(
        package=text(kernel_table, "package", KernelSpec.package, "kernel."),
        source=text(kernel_table, "source", KernelSpec.source, "kernel."),
        modules=strings(kernel_table, "modules", "kernel."),
        cmdline=text(
            kernel_table,
            "cmdline",
            DISK_CMDLINE if boot is BootMode.DISK else KernelSpec.cmdline,
            "kernel.",
        ),
        initramfs_init=text(kernel_table, "initramfs_init", KernelSpec.initramfs_init, "kernel."),
        root_modules=kernel_table.get("root_modules", False),
    )
    if not isinstance(kernel.root_modules, bool):
        raise bad("kernel.root_modules", kernel.root_modules, "true or false")
    if boot is BootMode.KERNEL:
        relative_file("kernel.initramfs_init", kernel.initramfs_init)
    elif re.search(r"(^|\s)root=", kernel.cmdline):
        raise bad(
            "kernel.cmdline",
            kernel.cmdline,
            "arguments without root= (GRUB gives root=UUID=... of the box's root file system)",
        )
    elif not DISK_CMDLINE_RE.fullmatch(kernel.cmdline):
        # It becomes part of a grub.cfg line, where $, ;, braces and quotes mean something.
        raise bad(
            "kernel.cmdline",
            kernel.cmdline,
            "kernel arguments of letters, digits and _ . , : = / + @ % -, separated by spaces",
        )
    if kernel.source not in KERNEL_SOURCES:
        raise bad("kernel.source", kernel.source, f"one of {', '.join(KERNEL_SOURCES)}")
    if not re.fullmatch(r"linux-image-[a-z0-9][a-z0-9.+-]*", kernel.package):
        raise bad(
            "kernel.package", kernel.package, "a kernel package such as linux-image-cloud-amd64"
        )
    if '"' in kernel.cmdline or "\\" in kernel.cmdline:
        raise bad("kernel.cmdline", kernel.cmdline, "a command line without quotes or backslashes")

    return Recipe(
        folder=folder.absolute(),
        name=name,
        version=version,
        description=text(data, "description", ""),
        suite=text(data, "suite", "bookworm"),
        variant=variant,
        mirror=text(data, "mirror", DEFAULT_MIRROR),
        security_mirror=text(data, "security_mirror", DEFAULT_SECURITY_MIRROR),
        components=strings(data, "components") or ("main",),
        packages=strings(data, "packages"),
        dpkg_exclude=strings(data, "dpkg_exclude"),
        dpkg_include=strings(data, "dpkg_include"),
        overlay=overlay,
        customize=customize,
        disk_size_gb=disk,
        ssh_username=ssh_username,
        kernel=kernel,
        boot=boot,
        disk_layout=disk_layout,
        usr_size_mb=usr_size_mb,
    )


# --------------------------------------------------------------------------------------------
# The cache key


def recipe_files(folder: Path) -> list[Path]:
    """The recipe's files that make the box, sorted: everything but README.md and dotfiles."""
    found = []
    for path in sorted(folder.rglob("*")):
        rel = path.relative_to(folder)
        if any(part.startswith(".") or part == "__pycache__" for part in rel.parts):
            continue
        if rel.as_posix() in UNHASHED or not (path.is_file() or path.is_symlink()):
            continue
        found.append(path)
    return found


def cache_key(folder: Path, host_inputs: str, builder: bytes | None = None) -> str:
    """sha256 over the recipe's file names, modes and contents, the builder, and HOST_INPUTS:
    what else goes into the box from outside the recipe (the kernel's version; for a
    disk-booted box, the kernel package and suite and the host's GRUB packages)."""
    digest = hashlib.sha256()

    def add(label: str, data: bytes) -> None:
        digest.update(f"{label}\0{len(data)}\0".encode())
        digest.update(data)

    add("builder", builder if builder is not None else builder_fingerprint())
    add("kernel", host_inputs.encode())
    for path in recipe_files(folder):
        rel = path.relative_to(folder).as_posix()
        if path.is_symlink():
            add(f"link:{rel}", os.readlink(path).encode())
        else:
            executable = os.access(path, os.X_OK)
            add(f"file:{rel}:{'x' if executable else '-'}", path.read_bytes())
    return digest.hexdigest()


def builder_fingerprint() -> bytes:
    """What else shapes the box: the builder's code (this module and the disk image's) and the
    insecure public keys."""
    sources = Path(__file__).read_bytes() + Path(diskimage.__file__).read_bytes()
    return hashlib.sha256(sources + INSECURE_KEYS.read_bytes()).digest()


# --------------------------------------------------------------------------------------------
# Small renderers (pure functions)


def render_vagrantfile(cmdline: str | None, ssh_username: str | None = None) -> str:
    """The box's own Vagrantfile: direct kernel boot with CMDLINE, paths relative to the box;
    with CMDLINE None (a disk-booted box), no kernel at all: the disk's bootloader boots.

    With SSH_USERNAME, it also sets config.ssh.username, so projects need not.
    """
    ssh = f'  config.ssh.username = "{ssh_username}"\n' if ssh_username else ""
    kernel = (
        "  config.vm.provider :libvirt do |libvirt|\n"
        '    libvirt.kernel = File.join(File.dirname(__FILE__), "vmlinuz")\n'
        '    libvirt.initrd = File.join(File.dirname(__FILE__), "initrd.img")\n'
        f'    libvirt.cmd_line = "{cmdline}"\n'
        "  end\n"
    )
    return f'Vagrant.configure("2") do |config|\n{ssh}{kernel if cmdline is not None else ""}end\n'


def render_metadata(disk_size_gb: int) -> str:
    return (
        json.dumps(
            {"provider": "libvirt", "format": "qcow2", "virtual_size": disk_size_gb}, indent=2
        )
        + "\n"
    )


def render_catalog(
    name: str, version: str, box_filename: str, sha256: str, existing: dict | None = None
) -> dict:
    """The Vagrant catalog for NAME with VERSION; other versions of EXISTING are kept."""
    entry = {
        "version": version,
        "providers": [
            {"name": "libvirt", "url": box_filename, "checksum_type": "sha256", "checksum": sha256}
        ],
    }
    versions = []
    if existing and existing.get("name") == name and isinstance(existing.get("versions"), list):
        versions = [
            v for v in existing["versions"] if isinstance(v, dict) and v.get("version") != version
        ]
    versions.append(entry)
    versions.sort(key=lambda v: version_sort_key(str(v.get("version", ""))))
    return {"name": name, "versions": versions}


def version_sort_key(version: str) -> tuple:
    return tuple((0, int(p), "") if p.isdigit() else (1, 0, p) for p in re.split(r"[.-]", version))


def sources_lines(recipe: Recipe) -> list[str]:
    """The apt sources mmdebstrap uses: the suite, and its updates and security for releases."""
    components = " ".join(recipe.components)
    mirror = os.environ.get("VMCTL_DEBIAN_MIRROR") or recipe.mirror
    lines = [f"deb {mirror} {recipe.suite} {components}"]
    if recipe.suite not in ("sid", "unstable", "experimental", "rc-buggy"):
        lines.append(f"deb {mirror} {recipe.suite}-updates {components}")
        if recipe.security_mirror:
            lines.append(f"deb {recipe.security_mirror} {recipe.suite}-security {components}")
    return lines


# --------------------------------------------------------------------------------------------
# Building


def build_recipe(
    recipe: str,
    output: Path | None = None,
    *,
    notify: Callable[[str], None] = lambda s: None,
) -> BuildResult:
    """Build RECIPE (a folder or a shipped recipe's name) into OUTPUT (default ./build).

    Returns where the box and its catalog are, the box's sha256, and whether it came from the
    cache. Raises BuildError (including disk full) or MissingToolError.
    """
    folder = find_recipe(recipe)
    parsed = parse_recipe(folder)
    out_dir = Path(output) if output is not None else Path.cwd() / "build"
    kernel: HostKernel | None = None
    grub: diskimage.Grub | None = None
    if parsed.boot is BootMode.DISK:
        grub = diskimage.find_grub()
        identity = f"{disk_kernel_identity(parsed)}; {grub.identity}"
    else:
        kernel = find_kernel(parsed)
        identity = kernel_identity(parsed, kernel)
    key = cache_key(folder, identity)
    builds = paths.cache_home() / "builds"
    cached_dir = builds / key

    try:
        builds.mkdir(parents=True, exist_ok=True)
        with lock(builds / f".{key}.lock"):
            info = read_cached(cached_dir, parsed)
            cached = info is not None
            if info is None:
                info = build_into_cache(parsed, kernel, builds, key, notify, grub=grub)
            else:
                notify(f"cached: {parsed.box_filename} ({key[:12]})")
            box_path = publish(cached_dir / parsed.box_filename, out_dir / parsed.box_filename)
            catalog_path = write_catalog(out_dir, parsed, info["sha256"])
    except OSError as exc:
        raise translate_os_error(exc, "build the box") from exc
    except (BuildError, MissingToolError):
        raise
    except VmctlError as exc:  # from the subprocess funnel: still a build failure
        raise BuildError(exc.message, hint=exc.hint) from exc
    return BuildResult(
        name=parsed.name,
        version=parsed.version,
        box_path=box_path,
        catalog_path=catalog_path,
        sha256=info["sha256"],
        cached=cached,
    )


def read_cached(cached_dir: Path, recipe: Recipe) -> dict | None:
    """The build record of a complete cached build, or None."""
    try:
        info = json.loads((cached_dir / "build.json").read_text())
        box = cached_dir / recipe.box_filename
        if box.stat().st_size == info["size"] and re.fullmatch(r"[0-9a-f]{64}", info["sha256"]):
            return info
    except (OSError, ValueError, KeyError, TypeError):
        pass
    return None


def find_kernel(recipe: Recipe) -> HostKernel | None:
    """The installed kernel to use, or None when it is to be downloaded from the mirror."""
    if recipe.kernel.source == "mirror":
        return None
    try:
        return find_host_kernel(recipe.kernel.package)
    except MissingToolError:
        if recipe.kernel.source == "host":
            raise
        return None


def kernel_identity(recipe: Recipe, kernel: HostKernel | None) -> str:
    """The kernel's part of the cache key: its exact version when it is known before building."""
    if kernel is not None:
        return f"{kernel.package}={kernel.version}"
    return f"{recipe.kernel.package} from {recipe.suite} (mirror)"


def disk_kernel_identity(recipe: Recipe) -> str:
    """A disk-booted box's kernel is apt's choice during the build (build.json records it)."""
    return f"{recipe.kernel.package} from {recipe.suite} (installed in the root)"


def require_root() -> None:
    if os.geteuid() != 0:
        raise BuildError(
            "building a box needs root: mmdebstrap's root mode and mkfs.ext4 -d keep file owners only as root",
            hint="run the build as root (for example with sudo); cached builds need no root",
        )


def build_into_cache(
    recipe: Recipe,
    kernel: HostKernel | None,
    builds: Path,
    key: str,
    notify: Callable[[str], None],
    *,
    grub: diskimage.Grub | None = None,
) -> dict:
    """Build RECIPE into builds/KEY/ (through a temporary folder); its build record.

    KERNEL is the host's kernel for direct kernel boot (None: download it); GRUB, the host's
    GRUB, is what a disk-booted box needs instead.
    """
    disk = recipe.boot is BootMode.DISK
    if disk and grub is None:
        raise BuildError("a disk-booted box needs GRUB on the build host")
    tools = {
        "mmdebstrap": "build the root filesystem from Debian packages",
        "mkfs.ext4": "turn the root filesystem into a disk image",
        "qemu-img": "convert the disk image to qcow2",
    }
    if disk:
        tools.update(
            {
                "sfdisk": "write the disk's partition table",
                "mkfs.vfat": "make the EFI system partition",
                "mmd": "fill the EFI system partition",
                "mcopy": "fill the EFI system partition",
            }
        )
    elif kernel is None:
        tools["dpkg-deb"] = "unpack the kernel package"
    for tool, purpose in tools.items():
        run.require_tool(tool, purpose)
    require_root()
    check_free_space(builds, recipe)
    for stale in builds.glob(f".tmp-{key}-*"):
        remove_tree(stale)  # left by a build that was killed; we hold the key's lock
    work = builds / f".tmp-{key}-{os.getpid()}"
    work.mkdir()
    started = time.monotonic()
    try:
        root = work / "root"
        packages = [*recipe.packages, *(disk_packages(recipe) if disk else ())]
        notify(f"mmdebstrap: {recipe.suite} {recipe.variant} + {', '.join(packages) or 'nothing'}")
        if grub is not None:
            make_root(recipe, root)
            members, kernel_record = make_disk_image(recipe, root, work, grub, key, notify)
        else:
            members, kernel_record = make_kernel_image(recipe, root, work, kernel, notify, key)
        notify(f"archive: {recipe.box_filename}")
        box = work / recipe.box_filename
        write_box(box, work, recipe, members)
        for name in members:
            (work / name).unlink()
        notify("sha256: checksumming the box")
        digest = sha256_file(box)
        info = {
            "name": recipe.name,
            "version": recipe.version,
            "sha256": digest,
            "size": box.stat().st_size,
            **kernel_record,
            "key": key,
            "build_seconds": round(time.monotonic() - started, 1),
        }
        (work / "build.json").write_text(json.dumps(info, indent=2) + "\n")
        fsync_dir_files(work)
        final = builds / key
        if final.exists():
            remove_tree(final)  # an incomplete record: replace it
        os.rename(work, final)
        prune_cache(builds, recipe.name, keep=KEEP_BUILDS, current=key)
        return info
    except BaseException:
        remove_tree(work)
        raise


def make_kernel_image(
    recipe: Recipe,
    root: Path,
    work: Path,
    kernel: HostKernel | None,
    notify: Callable[[str], None],
    key: str = "",
) -> tuple[tuple[str, ...], dict]:
    """Direct kernel boot: WORK/box.img (the root file system, or with ``[disk] layout =
    "usr-ab"`` a GPT disk with two /usr partitions, identifiers seeded by KEY), vmlinuz and
    initrd.img.

    Returns the archive's members made in WORK and the kernel's part of the build record.
    """
    debs = work / "kernel-debs"
    source = "mirror" if kernel is None else "host"
    make_root(recipe, root, kernel_debs=debs if kernel is None else None)
    if kernel is None:
        kernel = unpack_kernel(debs, work / "kernel")
    notify(f"kernel: {kernel.package} {kernel.version}")
    shutil.copyfile(kernel.vmlinuz, work / "vmlinuz")
    if recipe.kernel.root_modules:
        notify(f"modules: {kernel.release} into the root's /usr/lib/modules")
        install_modules(kernel, root)
    notify(f"initramfs: busybox + {', '.join(recipe.kernel.modules) or 'no modules'}")
    (work / "initrd.img").write_bytes(make_initramfs(recipe, root, kernel))
    raw = work / "disk.raw"
    record: dict = {}
    if recipe.disk_layout is DiskLayoutMode.USR_AB:
        layout = diskimage.plan_usr_disk(
            recipe.disk_size_gb * 1024**3, recipe.usr_size_mb * diskimage.MIB, seed=key
        )
        notify(
            f"disk: GPT, USR-A (/usr) + USR-B (empty), {recipe.usr_size_mb} MiB each, "
            f"+ ROOT (ext4), {recipe.disk_size_gb} GB"
        )
        raw = diskimage.make_usr_disk(root, work, layout)
        record["layout"] = DiskLayoutMode.USR_AB.value
    else:
        notify(f"filesystem: ext4, {recipe.disk_size_gb} GB")
        make_ext4(root, raw, recipe.disk_size_gb * 1024**3)
    remove_tree(root)
    remove_tree(debs)
    remove_tree(work / "kernel")
    notify("qcow2: compressing the disk image")
    make_qcow2(raw, work / "box.img")
    raw.unlink()
    record = {"kernel": f"{kernel.package}={kernel.version}", "kernel_source": source, **record}
    return ("box.img", "vmlinuz", "initrd.img"), record


def make_disk_image(
    recipe: Recipe,
    root: Path,
    work: Path,
    grub: diskimage.Grub,
    key: str,
    notify: Callable[[str], None],
) -> tuple[tuple[str, ...], dict]:
    """A disk-booted box: WORK/box.img, a whole GPT disk with GRUB for BIOS and UEFI, from the
    root mmdebstrap made (with the kernel and its initramfs installed).

    Returns the archive's members made in WORK and the kernel's part of the build record.
    """
    release, package = find_root_kernel(root)
    version = diskimage.package_version(package, admindir=root / "var/lib/dpkg")
    notify(f"kernel: {package} {version} (in the root, initramfs by initramfs-tools)")
    layout = diskimage.plan_disk(recipe.disk_size_gb * 1024**3, seed=key)
    notify(
        f"disk: GPT, BIOS boot + EFI system partition + ext4 root, {recipe.disk_size_gb} GB; "
        f"GRUB for i386-pc and x86_64-efi ({grub.identity})"
    )
    raw = diskimage.make_disk(root, work, layout, grub, recipe.kernel.cmdline)
    remove_tree(root)
    notify("qcow2: compressing the disk image")
    make_qcow2(raw, work / "box.img")
    raw.unlink()
    record = {
        "kernel": f"{package}={version}",
        "kernel_source": "root",
        "kernel_release": release,
        "boot": BootMode.DISK.value,
        "grub": list(grub.versions),
    }
    return ("box.img",), record


def disk_packages(recipe: Recipe) -> list[str]:
    """What a disk-booted box's root gets beside the recipe's packages: kernel and initramfs."""
    wanted = [recipe.kernel.package, *DISK_PACKAGES]
    return [p for p in wanted if p not in recipe.packages]


def find_root_kernel(root: Path) -> tuple[str, str]:
    """The kernel apt installed in ROOT: its release and its versioned package.

    Makes sure the root's /vmlinuz and /initrd.img (which grub.cfg boots) point at it.
    """
    boot = root / "boot"
    kernels = sorted(boot.glob("vmlinuz-*"), key=lambda p: version_sort_key(p.name[8:]))
    if not kernels:
        raise BuildError(
            "the root has no kernel in /boot: a disk-booted box installs kernel.package there",
            hint="check that kernel.package names a kernel package of the suite",
        )
    release = kernels[-1].name.removeprefix("vmlinuz-")
    for link, target in (
        ("vmlinuz", f"vmlinuz-{release}"),
        ("initrd.img", f"initrd.img-{release}"),
    ):
        if not (boot / target).is_file():
            raise BuildError(
                f"the root has no /boot/{target}: the initramfs was not made",
                hint="a disk-booted box needs initramfs-tools in the root (the builder adds it)",
            )
        path = root / link
        if path.is_symlink() and os.readlink(path) == f"boot/{target}":
            continue
        if path.is_symlink() or path.exists():
            path.unlink()
        path.symlink_to(f"boot/{target}")
    return release, f"linux-image-{release}"


def make_root(recipe: Recipe, root: Path, kernel_debs: Path | None = None) -> None:
    """mmdebstrap the root directory, copy the overlay in, run the customize scripts.

    With KERNEL_DEBS, the kernel package is also downloaded there (not installed in the root).
    """
    disk = recipe.boot is BootMode.DISK
    argv: list[str | Path] = [
        "mmdebstrap",
        "--mode=root",
        f"--variant={recipe.variant}",
        "--hook-dir=/usr/share/mmdebstrap/hooks/merged-usr",
    ]
    packages = [*recipe.packages, *(disk_packages(recipe) if disk else ())]
    if packages:
        argv.append("--include=" + ",".join(packages))
    argv += [f"--dpkgopt=path-exclude={p}" for p in recipe.dpkg_exclude]
    argv += [f"--dpkgopt=path-include={p}" for p in recipe.dpkg_include]
    if kernel_debs is not None:  # first: the recipe's scripts may remove apt's lists
        kernel_debs.mkdir(parents=True, exist_ok=True)
        argv.append("--customize-hook=" + download_kernel_hook(recipe.kernel.package, kernel_debs))
    if recipe.overlay:
        overlay = recipe.folder / recipe.overlay
        # tar as a pipe: owner root, no group/other write bits, directory symlinks kept.
        argv.append(
            "--customize-hook="
            f"tar -C {shlex.quote(str(overlay))} -c --owner=0 --group=0 --numeric-owner --mode=go-w . "
            '| tar -C "$1" -x --keep-directory-symlink --no-overwrite-dir'
        )
    for script in recipe.customize:
        argv.append(f'--customize-hook=sh {shlex.quote(str(recipe.folder / script))} "$1"')
    if disk:
        # The initramfs is made once, last, so that it follows the overlay's and the scripts'
        # initramfs-tools settings (INITRD=No below keeps the kernel's postinst from making one).
        argv.append('--customize-hook=chroot "$1" update-initramfs -c -k all')
    argv += [recipe.suite, root, *sources_lines(recipe)]
    env = dict(os.environ)
    env.update(
        {
            "VMCTL_AUTHORIZED_KEYS": str(INSECURE_KEYS),
            "VMCTL_RECIPE_DIR": str(recipe.folder),
            "VMCTL_BOX_NAME": recipe.name,
            "VMCTL_BOX_VERSION": recipe.version,
            "LC_ALL": "C.UTF-8",
        }
    )
    if disk:
        env["INITRD"] = "No"  # read by /etc/kernel/postinst.d/initramfs-tools
    env.pop("TMPDIR", None)
    proc = run.run(
        argv, purpose="build the root filesystem from Debian packages", check=False, env=env
    )
    if proc.returncode != 0:
        raise step_error("mmdebstrap", proc.stderr, proc.returncode)


def download_kernel_hook(package: str, folder: Path) -> str:
    """Shell for a hook: download PACKAGE's kernel (a metapackage's versioned image) to FOLDER."""
    apt = 'APT_CONFIG="$MMDEBSTRAP_APT_CONFIG"'
    return (
        f"set -e; cd {shlex.quote(str(folder))}; pkg={shlex.quote(package)}; "
        'case "$pkg" in linux-image-[0-9]*) ;; *) '
        f'pkg=$({apt} apt-cache depends "$pkg" '
        "| sed -n 's/^ *Depends: \\(linux-image-[0-9][^ ]*\\).*/\\1/p' | head -n 1) ;; esac; "
        f'{apt} apt-get -q -o APT::Sandbox::User=root download "$pkg"'
    )


def unpack_kernel(debs: Path, target: Path) -> HostKernel:
    """Unpack the downloaded kernel package; its vmlinuz and modules, as for an installed one."""
    packages = sorted(debs.glob("linux-image-*.deb"))
    if len(packages) != 1:
        raise BuildError(f"expected one downloaded kernel package in {debs}, found {len(packages)}")
    deb = packages[0]
    purpose = "unpack the kernel package"
    run.run(["dpkg-deb", "-x", deb, target], purpose=purpose)
    fields = run.run(["dpkg-deb", "-f", deb, "Package", "Version"], purpose=purpose).stdout.decode()
    info = dict(line.split(": ", 1) for line in fields.splitlines() if ": " in line)
    found = sorted((target / "boot").glob("vmlinuz-*"))
    if not found:
        raise BuildError(f"{deb.name} holds no /boot/vmlinuz-*")
    release = found[0].name.removeprefix("vmlinuz-")
    for modules_dir in (target / "lib/modules" / release, target / "usr/lib/modules" / release):
        if modules_dir.is_dir():
            break
    else:
        raise BuildError(f"{deb.name} holds no modules for {release}")
    return HostKernel(
        package=info.get("Package", deb.name.split("_")[0]),
        version=info.get("Version", "?"),
        release=release,
        vmlinuz=found[0],
        modules_dir=modules_dir,
    )


def find_host_kernel(package: str) -> HostKernel:
    """The installed kernel that PACKAGE (a metapackage such as linux-image-cloud-amd64) names."""
    run.require_tool("dpkg-query", "find the installed kernel package")
    proc = run.run(
        ["dpkg-query", "-W", "-f=${Status}\t${Version}\t${Depends}\n", package],
        purpose="find the installed kernel package",
        check=False,
    )
    fields = (
        proc.stdout.decode(errors="replace").strip().split("\t") if proc.returncode == 0 else []
    )
    if len(fields) != 3 or "installed" not in fields[0].split():
        raise MissingToolError(
            f"the kernel package {package} is not installed, which is required to build this box",
            hint=f"install it: sudo apt-get install {package}",
        )
    versioned = package
    if (
        not package.startswith("linux-image-")
        or not (Path("/boot") / f"vmlinuz-{package[12:]}").exists()
    ):
        match = re.search(r"\b(linux-image-[0-9][^\s,(|]*)", fields[2])
        if match is None:
            raise BuildError(
                f"could not tell which kernel {package} installs (depends: {fields[2]})"
            )
        versioned = match.group(1).removesuffix("-unsigned")
    release = versioned.removeprefix("linux-image-")
    proc = run.run(
        ["dpkg-query", "-W", "-f=${Version}", versioned],
        purpose="find the installed kernel package",
        check=False,
    )
    version = proc.stdout.decode().strip() if proc.returncode == 0 else fields[1]
    vmlinuz = Path("/boot") / f"vmlinuz-{release}"
    modules_dir = Path("/lib/modules") / release
    for needed in (vmlinuz, modules_dir / "modules.dep"):
        if not needed.exists():
            raise BuildError(
                f"{needed} is missing although {versioned} is installed",
                hint=f"reinstall it: sudo apt-get install --reinstall {versioned}",
            )
    return HostKernel(
        package=versioned,
        version=version,
        release=release,
        vmlinuz=vmlinuz,
        modules_dir=modules_dir,
    )


def install_modules(kernel: HostKernel, root: Path) -> None:
    """Copy KERNEL's modules into ROOT/usr/lib/modules/RELEASE (for modprobe at run time)."""
    target = root / "usr/lib/modules" / kernel.release
    if target.exists():
        remove_tree(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    # build and source point at headers on the build host: not part of the box.
    shutil.copytree(
        kernel.modules_dir,
        target,
        symlinks=True,
        ignore=lambda folder, names: (
            ["build", "source"] if Path(folder) == kernel.modules_dir else []
        ),
    )
    if not (target / "modules.dep").is_file():  # unpacked from a package: depmod never ran
        run.run(
            ["depmod", "-b", root, kernel.release],
            purpose="index the kernel modules (kmod)",
        )


def resolve_modules(modules_dir: Path, wanted: tuple[str, ...]) -> list[Path]:
    """The .ko files of WANTED and their dependencies, in load order; built-in ones skipped."""
    deps: dict[str, list[str]] = {}
    by_name: dict[str, str] = {}
    dep_file = modules_dir / "modules.dep"
    if dep_file.is_file():
        for line in dep_file.read_text().splitlines():
            if ":" not in line:
                continue
            target, _, rest = line.partition(":")
            deps[target] = rest.split()
            by_name[module_name(target)] = target
    else:  # a package unpacked, not installed: depmod never ran; read each module's modinfo
        for path in sorted(modules_dir.rglob("*.ko*")):
            by_name.setdefault(module_name(path.name), path.relative_to(modules_dir).as_posix())
        for name in list(wanted):
            pending = [by_name.get(name.replace("-", "_"))]
            while pending:
                target = pending.pop()
                if target is None or target in deps:
                    continue
                needs = [
                    by_name[d]
                    for d in module_depends(module_bytes(modules_dir / target))
                    if d in by_name
                ]
                deps[target] = needs
                pending.extend(needs)
    builtin: set[str] = set()
    with contextlib.suppress(FileNotFoundError):
        builtin = {module_name(p) for p in (modules_dir / "modules.builtin").read_text().split()}
    order: list[str] = []

    def visit(path: str, chain: tuple[str, ...]) -> None:
        if path in order or path in chain:
            return
        for dep in reversed(deps.get(path, [])):
            visit(dep, (*chain, path))
        order.append(path)

    for name in wanted:
        key = name.replace("-", "_")
        if key in builtin:
            continue
        if key not in by_name:
            raise BuildError(
                f"the kernel has no module named {name!r} (looked in {modules_dir}/modules.dep)"
            )
        visit(by_name[key], ())
    return [modules_dir / p for p in order]


def module_bytes(path: Path) -> bytes:
    """A module file's contents, decompressed."""
    data = path.read_bytes()
    if path.name.endswith(".xz"):
        import lzma

        return lzma.decompress(data)
    if path.name.endswith(".gz"):
        return gzip.decompress(data)
    if path.name.endswith(".zst"):
        return run.run(["zstd", "-dc", path], purpose="decompress kernel modules").stdout
    return data


def module_depends(data: bytes) -> list[str]:
    """The depends= entry of a module's .modinfo."""
    match = re.search(rb"(?:^|\0)depends=([^\0]*)\0", data)
    if match is None:
        return []
    return [d.decode().replace("-", "_") for d in match.group(1).split(b",") if d]


def module_name(path: str) -> str:
    base = path.rsplit("/", 1)[-1]
    for suffix in (".ko.xz", ".ko.zst", ".ko.gz", ".ko"):
        if base.endswith(suffix):
            base = base[: -len(suffix)]
            break
    return base.replace("-", "_")


def make_initramfs(recipe: Recipe, root: Path, kernel: HostKernel) -> bytes:
    """A gzip'd newc cpio: busybox from the root, the modules, /etc/modules and /init."""
    busybox = root / "usr/bin/busybox"
    if not busybox.is_file():
        busybox = root / "bin/busybox"
    if not busybox.is_file():
        raise BuildError(
            "the root filesystem has no /bin/busybox", hint='add "busybox-static" to packages'
        )
    modules = resolve_modules(kernel.modules_dir, recipe.kernel.modules)
    applets = run.run([busybox, "--list"], purpose="list busybox applets").stdout.decode().split()
    archive = Cpio()
    for folder in (
        "bin",
        "dev",
        "etc",
        "lib",
        "lib/modules",
        "newroot",
        "proc",
        "run",
        "sys",
        "tmp",
    ):
        archive.directory(folder)
    archive.device("dev/console", 0o600, 5, 1)
    archive.device("dev/null", 0o666, 1, 3)
    archive.file("bin/busybox", busybox.read_bytes(), 0o755)
    for applet in applets:
        if applet != "busybox" and "/" not in applet:
            archive.symlink(f"bin/{applet}", "busybox")
    names = []
    for module in modules:
        data = module_bytes(module)
        name = module_name(module.name)
        archive.file(f"lib/modules/{name}.ko", data, 0o644)
        names.append(name)
    archive.file("etc/modules", "".join(f"{n}\n" for n in names).encode(), 0o644)
    archive.file("init", (recipe.folder / recipe.kernel.initramfs_init).read_bytes(), 0o755)
    return gzip.compress(archive.finish(), compresslevel=6, mtime=EPOCH)


class Cpio:
    """A newc ("070701") cpio archive written in memory: enough for an initramfs."""

    def __init__(self) -> None:
        self.buffer = io.BytesIO()
        self.inode = 1

    def entry(
        self, name: str, mode: int, data: bytes = b"", rdev: tuple[int, int] = (0, 0)
    ) -> None:
        encoded = name.encode() + b"\0"
        fields = (
            self.inode, mode, 0, 0, 2 if stat.S_ISDIR(mode) else 1, EPOCH, len(data),
            0, 0, rdev[0], rdev[1], len(encoded), 0,
        )  # fmt: skip
        self.inode += 1
        header = b"070701" + b"".join(f"{f:08x}".encode() for f in fields)
        self.buffer.write(header + encoded)
        self.buffer.write(b"\0" * (-(len(header) + len(encoded)) % 4))
        self.buffer.write(data)
        self.buffer.write(b"\0" * (-len(data) % 4))

    def directory(self, name: str, mode: int = 0o755) -> None:
        self.entry(name, stat.S_IFDIR | mode)

    def file(self, name: str, data: bytes, mode: int) -> None:
        self.entry(name, stat.S_IFREG | mode, data)

    def symlink(self, name: str, target: str) -> None:
        self.entry(name, stat.S_IFLNK | 0o777, target.encode())

    def device(self, name: str, mode: int, major: int, minor: int) -> None:
        self.entry(name, stat.S_IFCHR | mode, rdev=(major, minor))

    def finish(self) -> bytes:
        self.inode = 0
        self.entry("TRAILER!!!", 0)
        return self.buffer.getvalue()


def make_qcow2(raw: Path, qcow2: Path) -> None:
    proc = run.run(
        ["qemu-img", "convert", "-f", "raw", "-O", "qcow2", "-c", raw, qcow2],
        purpose="convert the disk image to qcow2",
        check=False,
    )
    if proc.returncode != 0:
        raise step_error("qemu-img convert", proc.stderr, proc.returncode)


def write_box(box: Path, work: Path, recipe: Recipe, files: tuple[str, ...]) -> None:
    """A plain tar (its big members are compressed already), members owned by root: the
    metadata, the Vagrantfile, and FILES from WORK."""
    cmdline = recipe.kernel.cmdline if recipe.boot is BootMode.KERNEL else None
    members = {
        "metadata.json": render_metadata(recipe.disk_size_gb).encode(),
        "Vagrantfile": render_vagrantfile(cmdline, recipe.ssh_username).encode(),
    }
    with tarfile.open(box, "w", format=tarfile.GNU_FORMAT) as tar:
        for name, data in members.items():
            tar.addfile(tar_info(name, len(data)), io.BytesIO(data))
        for name in files:
            with open(work / name, "rb") as handle:
                tar.addfile(tar_info(name, os.fstat(handle.fileno()).st_size), handle)


def tar_info(name: str, size: int) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.size = size
    info.mode = 0o644
    info.mtime = EPOCH
    info.uid = info.gid = 0
    info.uname = info.gname = "root"
    return info


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


# --------------------------------------------------------------------------------------------
# Publishing to the output folder


def publish(source: Path, target: Path) -> Path:
    """Hardlink (or copy) SOURCE to TARGET atomically; an equal file already there is kept."""
    target.parent.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(OSError):
        if os.path.samefile(source, target):
            return target
    temp = target.with_name(f".{target.name}.tmp-{os.getpid()}")
    with contextlib.suppress(FileNotFoundError):
        temp.unlink()
    try:
        try:
            os.link(source, temp)
        except OSError:
            shutil.copyfile(source, temp)
        os.replace(temp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            temp.unlink()
        raise
    return target


def write_catalog(out_dir: Path, recipe: Recipe, sha256: str) -> Path:
    path = out_dir / recipe.catalog_filename
    existing = None
    with contextlib.suppress(OSError, ValueError):
        existing = json.loads(path.read_text())
        if isinstance(existing, dict) and isinstance(existing.get("versions"), list):
            # Keep only versions whose box file is still beside the catalog.
            existing["versions"] = [
                v
                for v in existing["versions"]
                if isinstance(v, dict)
                and all(
                    isinstance(p, dict) and (out_dir / str(p.get("url", ""))).is_file()
                    for p in v.get("providers", [])
                )
            ]
    catalog = render_catalog(recipe.name, recipe.version, recipe.box_filename, sha256, existing)
    temp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    temp.write_text(json.dumps(catalog, indent=2) + "\n")
    os.replace(temp, path)
    return path


# --------------------------------------------------------------------------------------------
# Plumbing: locks, space, errors, safe removal


@contextlib.contextmanager
def lock(path: Path) -> Iterator[None]:
    """An exclusive lock on PATH, so two builds of one recipe do not race."""
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def prune_cache(builds: Path, name: str, *, keep: int, current: str) -> None:
    """Remove all but the KEEP newest cached builds of box NAME (never CURRENT, never one in use)."""
    found = []
    for folder in builds.iterdir():
        if folder.name.startswith(".") or folder.name == current:
            continue
        with contextlib.suppress(OSError, ValueError, AttributeError):
            record = folder / "build.json"
            if json.loads(record.read_text()).get("name") == name:
                found.append((record.stat().st_mtime, folder))
    found.sort(reverse=True)
    for _, folder in found[max(keep - 1, 0) :]:
        lock_path = builds / f".{folder.name}.lock"
        with open(lock_path, "a") as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                continue  # another build is using it
            remove_tree(folder)
            lock_path.unlink(missing_ok=True)


def check_free_space(folder: Path, recipe: Recipe) -> None:
    # The root directory, the ext4 image and the box, with room to spare; a disk-booted box
    # also has a kernel's modules in its root, and the whole disk beside the root's image.
    # A disk with two /usr partitions holds /usr's image beside the root's.
    need = (3 if recipe.boot is BootMode.DISK else 1) * 1024**3
    if recipe.disk_layout is DiskLayoutMode.USR_AB:
        need += recipe.usr_size_mb * 1024**2
    free = shutil.disk_usage(folder).free
    if free < need:
        raise BuildError(
            f"not enough free disk space in {folder}: {free // 1024**2} MB free, about {need // 1024**2} MB needed",
            hint="free some space, or point VMCTL_CACHE at a bigger disk",
        )


def translate_os_error(exc: OSError, what: str) -> VmctlError:
    if exc.errno == errno.ENOSPC:
        return disk_full_error(what)
    where = f" ({exc.filename})" if exc.filename else ""
    return BuildError(f"could not {what}: {exc.strerror or exc}{where}")


def fsync_dir_files(folder: Path) -> None:
    for path in folder.iterdir():
        if path.is_file():
            with open(path, "rb") as handle:
                os.fsync(handle.fileno())


def mounts_under(folder: Path) -> list[str]:
    """Mount points at or below FOLDER (deepest first), from /proc/self/mountinfo."""
    prefix = str(folder.resolve())
    found = []
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/mountinfo").read_text().splitlines():
            point = line.split()[4].encode().decode("unicode_escape")
            if point == prefix or point.startswith(prefix + "/"):
                found.append(point)
    return sorted(found, key=len, reverse=True)


def remove_tree(folder: Path) -> None:
    """Remove FOLDER; first unmount anything a killed mmdebstrap left mounted inside it."""
    if not folder.exists() and not folder.is_symlink():
        return
    for point in mounts_under(folder):
        run.run(["umount", "-l", point], purpose="unmount what a build left mounted", check=False)
    if mounts_under(folder):
        raise BuildError(f"{folder} still has file systems mounted inside; not removing it")
    if folder.is_dir() and not folder.is_symlink():
        shutil.rmtree(folder, ignore_errors=True)
    else:
        folder.unlink()
