"""Box recipes without mmdebstrap: parsing, the cache key, the catalog, the cache and errors."""

from __future__ import annotations

import dataclasses
import errno
import gzip
import json
import os
import shutil
import stat
import time
from pathlib import Path

import pytest

from vmctl.boxes import build
from vmctl.boxes.build import (
    BootMode,
    BuildResult,
    Cpio,
    DiskLayoutMode,
    HostKernel,
    Recipe,
    build_recipe,
    cache_key,
    find_recipe,
    parse_recipe,
    render_catalog,
    render_metadata,
    render_vagrantfile,
    resolve_modules,
    sources_lines,
)
from vmctl.errors import BuildError, MissingToolError

TINY = Path(__file__).resolve().parents[2] / "boxes" / "tiny"
COREOS = Path(__file__).resolve().parents[2] / "boxes" / "coreos-like"
DEBIAN = Path(__file__).resolve().parents[2] / "boxes" / "debian"
KERNEL = "linux-image-6.1.0-99-cloud-amd64=6.1.999-1"


def write_recipe(folder: Path, text: str, files: dict[str, str] | None = None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "recipe.toml").write_text(text)
    for name, content in (files or {"initramfs/init": "#!/bin/sh\n"}).items():
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content)
    return folder


MINIMAL = 'name = "test/box"\nversion = "0.1.0"\n'
DISK = MINIMAL + '[boot]\nmode = "disk"\n'


# --- recipes ---------------------------------------------------------------------------------


def test_tiny_recipe_parses() -> None:
    recipe = parse_recipe(TINY)
    assert recipe.name == "vmctl/tiny"
    assert recipe.suite == "bookworm"
    assert {"busybox-static", "dropbear-bin", "sudo", "rsync"} <= set(recipe.packages)
    assert recipe.kernel.package == "linux-image-cloud-amd64"
    assert {"virtio_pci", "virtio_blk", "virtio_net"} <= set(recipe.kernel.modules)
    assert recipe.kernel.cmdline.startswith("root=/dev/vda rw console=ttyS0")
    assert recipe.box_filename == f"vmctl-tiny-{recipe.version}.box"
    assert recipe.catalog_filename == "vmctl-tiny.json"
    assert (TINY / recipe.overlay / "etc" / "inittab").is_file()


def test_coreos_like_recipe_parses() -> None:
    recipe = parse_recipe(COREOS)
    assert recipe.name == "vmctl/coreos-like"
    assert recipe.ssh_username == "core"
    assert recipe.kernel.root_modules is True
    assert {
        "systemd", "openssh-server", "sudo", "rsync", "podman", "podman-docker",
        "etcd-server", "etcd-client", "busybox-static", "ignition", "python3-yaml", "openssl",
    } <= set(recipe.packages)  # fmt: skip
    # /usr is its own partition (twice), chosen and mounted read-only by the initramfs.
    assert recipe.disk_layout is DiskLayoutMode.USR_AB
    assert "root=PARTLABEL=ROOT" in recipe.kernel.cmdline.split()
    assert {"qemu_fw_cfg", "softdog"} <= set(recipe.kernel.modules)
    units = COREOS / recipe.overlay / "etc" / "systemd" / "system"
    assert not (units / "usr.mount").exists()
    assert (units / "update-usr-confirm.service").is_file()
    for tool in ("update-usr", "coreos-cloudinit", "etcd-tls"):
        assert os.access(COREOS / recipe.overlay / "usr" / "bin" / tool, os.X_OK)
    for script in ("customize.sh", "etcdctl", "initramfs/init"):
        assert os.access(COREOS / script, os.X_OK)


def test_debian_recipe_parses() -> None:
    recipe = parse_recipe(DEBIAN)
    assert recipe.name == "vmctl/debian"
    assert recipe.boot is BootMode.DISK
    assert recipe.kernel.package == "linux-image-amd64"  # the generic kernel, not the cloud one
    assert "root=" not in recipe.kernel.cmdline
    assert recipe.kernel.cmdline.split()[-2:] == ["console=ttyS0", "quiet"]
    assert recipe.ssh_username is None  # Vagrant's default user, vagrant
    assert {
        "systemd", "systemd-resolved", "openssh-server", "openssh-sftp-server", "sudo", "rsync",
        "python3", "qemu-guest-agent", "util-linux", "pciutils", "iputils-ping",
    } <= set(recipe.packages)  # fmt: skip
    files = DEBIAN / recipe.overlay / "etc"
    network = (files / "systemd" / "network" / "80-dhcp.network").read_text()
    assert "Type=ether" in network and "Name=en* eth*" in network
    assert "ping_group_range = 0 2147483647" in (files / "sysctl.d" / "60-ping.conf").read_text()
    assert not list(files.glob("ssh/ssh_host_*"))  # host keys are made at first boot
    assert os.access(DEBIAN / "customize.sh", os.X_OK)
    assert os.access(files / "initramfs-tools" / "hooks" / "vmctl-disks", os.X_OK)


def test_boot_mode_defaults_to_direct_kernel_boot(tmp_path: Path) -> None:
    recipe = parse_recipe(write_recipe(tmp_path / "r", MINIMAL))
    assert recipe.boot is BootMode.KERNEL
    explicit = parse_recipe(write_recipe(tmp_path / "k", MINIMAL + '[boot]\nmode = "kernel"\n'))
    assert dataclasses.replace(explicit, folder=recipe.folder) == recipe


def test_a_disk_booted_recipe_needs_no_initramfs_init(tmp_path: Path) -> None:
    folder = write_recipe(tmp_path / "d", DISK, files={})
    recipe = parse_recipe(folder)
    assert recipe.boot is BootMode.DISK
    assert recipe.kernel.cmdline == build.DISK_CMDLINE == "console=tty0 console=ttyS0"
    custom = write_recipe(
        tmp_path / "c",
        DISK
        + '[kernel]\npackage = "linux-image-amd64"\ncmdline = "console=ttyS0,115200n8 quiet"\n',
        files={},
    )
    assert parse_recipe(custom).kernel.cmdline == "console=ttyS0,115200n8 quiet"
    assert parse_recipe(custom).kernel.package == "linux-image-amd64"


@pytest.mark.parametrize(
    ("text", "quoted"),
    [
        (MINIMAL + '[boot]\nmode = "floppy"\n', "boot.mode = 'floppy'"),
        (MINIMAL + 'boot = "disk"\n', "boot = 'disk'"),
        (MINIMAL + '[boot]\nmode = "disk"\nfirmware = "uefi"\n', "unknown key boot.firmware"),
        (DISK + '[kernel]\nmodules = ["virtio_blk"]\n', "kernel.modules is for direct kernel boot"),
        (DISK + "[kernel]\nroot_modules = true\n", "kernel.root_modules is for direct"),
        (DISK + '[kernel]\nsource = "host"\n', "kernel.source is for direct"),
        (DISK + '[kernel]\ninitramfs_init = "init"\n', "kernel.initramfs_init is for direct"),
        (DISK + '[kernel]\ncmdline = "root=/dev/vda1 quiet"\n', "without root="),
        (DISK + '[kernel]\ncmdline = "quiet; halt"\n', "kernel.cmdline = 'quiet; halt'"),
        (DISK + '[kernel]\ncmdline = "init=$x"\n', "kernel.cmdline = 'init=$x'"),
        (DISK + '[kernel]\ncmdline = "a  b"\n', "kernel.cmdline = 'a  b'"),
    ],
)
def test_bad_boot_settings_are_refused_naming_the_value(
    tmp_path: Path, text: str, quoted: str
) -> None:
    folder = write_recipe(tmp_path / "r", text)
    with pytest.raises(BuildError) as info:
        parse_recipe(folder)
    assert quoted in str(info.value)
    assert "recipe.toml" in str(info.value)


def test_a_usr_ab_disk_layout(tmp_path: Path) -> None:
    plain = parse_recipe(write_recipe(tmp_path / "p", MINIMAL))
    assert plain.disk_layout is DiskLayoutMode.FILESYSTEM
    text = MINIMAL + 'disk_size_gb = 4\n[disk]\nlayout = "usr-ab"\nusr_size_mb = 512\n'
    recipe = parse_recipe(write_recipe(tmp_path / "r", text))
    assert recipe.disk_layout is DiskLayoutMode.USR_AB and recipe.usr_size_mb == 512
    default = parse_recipe(write_recipe(tmp_path / "d", MINIMAL + '[disk]\nlayout = "usr-ab"\n'))
    assert default.usr_size_mb == 1024


@pytest.mark.parametrize(
    ("text", "quoted"),
    [
        (MINIMAL + '[disk]\nlayout = "lvm"\n', "disk.layout = 'lvm'"),
        (MINIMAL + '[disk]\nlayout = "usr-ab"\nusr_size_mb = 10\n', "disk.usr_size_mb = 10"),
        (MINIMAL + '[disk]\nlayout = "usr-ab"\nusr_size_mb = "1G"\n', "disk.usr_size_mb = '1G'"),
        (MINIMAL + 'disk_size_gb = 1\n[disk]\nlayout = "usr-ab"\n', "disk.usr_size_mb = 1024"),
        (MINIMAL + "[disk]\nusr_size_mb = 512\n", 'only for disk.layout = "usr-ab"'),
        (MINIMAL + '[disk]\nlayout = "usr-ab"\nsize = 1\n', "unknown key disk.size"),
        (DISK + '[disk]\nlayout = "usr-ab"\n', 'needs boot.mode = "kernel"'),
        (MINIMAL + 'disk = "usr-ab"\n', "disk = 'usr-ab'"),
    ],
)
def test_bad_disk_layouts_are_refused(tmp_path: Path, text: str, quoted: str) -> None:
    with pytest.raises(BuildError) as info:
        parse_recipe(write_recipe(tmp_path / "r", text, files={"initramfs/init": "#!/bin/sh\n"}))
    assert quoted in str(info.value) and "recipe.toml" in str(info.value)


def test_ssh_username_and_root_modules(tmp_path: Path) -> None:
    text = MINIMAL + 'ssh_username = "core"\n[kernel]\nroot_modules = true\n'
    recipe = parse_recipe(write_recipe(tmp_path / "r", text))
    assert recipe.ssh_username == "core"
    assert recipe.kernel.root_modules is True
    plain = parse_recipe(write_recipe(tmp_path / "p", MINIMAL))
    assert plain.ssh_username is None and plain.kernel.root_modules is False


def test_defaults_of_a_minimal_recipe(tmp_path: Path) -> None:
    recipe = parse_recipe(write_recipe(tmp_path / "r", MINIMAL))
    assert recipe == Recipe(folder=(tmp_path / "r").absolute(), name="test/box", version="0.1.0")
    assert recipe.disk_size_gb == 4
    assert recipe.variant == "essential"


@pytest.mark.parametrize(
    ("text", "quoted"),
    [
        ('version = "1"\n', "name is missing"),
        ('name = "a b"\nversion = "1"\n', "'a b'"),
        ('name = "x"\nversion = "one"\n', "'one'"),
        (MINIMAL + 'variant = "huge"\n', "'huge'"),
        (MINIMAL + 'ssh_username = "Core User"\n', "ssh_username = 'Core User'"),
        (MINIMAL + "ssh_username = 500\n", "ssh_username = 500"),
        (MINIMAL + '[kernel]\nroot_modules = "yes"\n', "kernel.root_modules = 'yes'"),
        (MINIMAL + "disk_size_gb = 0\n", "disk_size_gb = 0"),
        (MINIMAL + 'disk_size_gb = "4"\n', "'4'"),
        (MINIMAL + 'packages = "sudo"\n', "'sudo'"),
        (MINIMAL + "colour = 1\n", "unknown key 'colour'"),
        (MINIMAL + '[kernel]\nmodule = ["x"]\n', "kernel.module"),
        (MINIMAL + 'customize = ["../escape.sh"]\n', "'../escape.sh'"),
        (MINIMAL + 'customize = ["missing.sh"]\n', "no such file"),
        (MINIMAL + 'overlay = "files"\n', "no such folder"),
        (MINIMAL + '[kernel]\ncmdline = "a=\\"b\\""\n', "kernel.cmdline"),
        ('name = "x"\nversion = \n', "not valid TOML"),
    ],
)
def test_bad_recipes_are_refused_naming_the_value(tmp_path: Path, text: str, quoted: str) -> None:
    folder = write_recipe(tmp_path / "r", text)
    with pytest.raises(BuildError) as info:
        parse_recipe(folder)
    assert quoted in str(info.value)
    assert "recipe.toml" in str(info.value)


def test_find_recipe_by_name_and_by_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert find_recipe("tiny") == TINY
    assert find_recipe(str(TINY)) == TINY
    monkeypatch.chdir(TINY.parent)
    assert find_recipe("tiny") == TINY  # a folder in the current directory works too
    with pytest.raises(BuildError, match="no recipe named 'nope'") as info:
        find_recipe("nope")
    assert "tiny" in (info.value.hint or "")
    with pytest.raises(BuildError, match="has no recipe.toml"):
        find_recipe(str(tmp_path))


def test_sources_include_updates_and_security_for_releases(tmp_path: Path) -> None:
    recipe = parse_recipe(write_recipe(tmp_path / "r", MINIMAL))
    assert sources_lines(recipe) == [
        "deb http://deb.debian.org/debian bookworm main",
        "deb http://deb.debian.org/debian bookworm-updates main",
        "deb http://deb.debian.org/debian-security bookworm-security main",
    ]
    sid = parse_recipe(write_recipe(tmp_path / "s", MINIMAL + 'suite = "sid"\n'))
    assert sources_lines(sid) == ["deb http://deb.debian.org/debian sid main"]


# --- the cache key ---------------------------------------------------------------------------


def test_cache_key_is_stable_and_independent_of_location(tmp_path: Path) -> None:
    copy = tmp_path / "tiny"
    shutil.copytree(TINY, copy)
    assert cache_key(TINY, KERNEL) == cache_key(TINY, KERNEL)
    assert cache_key(copy, KERNEL) == cache_key(TINY, KERNEL)
    assert len(cache_key(TINY, KERNEL)) == 64


def test_cache_key_follows_every_input(tmp_path: Path) -> None:
    folder = tmp_path / "tiny"
    shutil.copytree(TINY, folder)
    base = cache_key(folder, KERNEL)
    assert cache_key(folder, "linux-image-6.1.0-99-cloud-amd64=6.1.999-2") != base
    assert cache_key(folder, KERNEL, builder=b"another builder") != base

    inittab = folder / "files" / "etc" / "inittab"
    original = inittab.read_text()
    inittab.write_text(original + "# changed\n")
    assert cache_key(folder, KERNEL) != base
    inittab.write_text(original)
    assert cache_key(folder, KERNEL) == base

    extra = folder / "files" / "etc" / "motd"
    extra.write_text("hello\n")
    assert cache_key(folder, KERNEL) != base
    extra.unlink()

    inittab.chmod(0o755)  # the executable bit reaches the box
    assert cache_key(folder, KERNEL) != base
    inittab.chmod(0o644)

    renamed = folder / "files" / "etc" / "inittab2"
    inittab.rename(renamed)
    assert cache_key(folder, KERNEL) != base
    renamed.rename(inittab)
    assert cache_key(folder, KERNEL) == base


def test_readme_does_not_change_the_key(tmp_path: Path) -> None:
    folder = tmp_path / "tiny"
    shutil.copytree(TINY, folder)
    base = cache_key(folder, KERNEL)
    (folder / "README.md").write_text("measured again\n")
    assert cache_key(folder, KERNEL) == base


# --- renderers -------------------------------------------------------------------------------


def test_catalog_content() -> None:
    catalog = render_catalog("vmctl/tiny", "1.0.0", "vmctl-tiny-1.0.0.box", "ab" * 32)
    assert catalog == {
        "name": "vmctl/tiny",
        "versions": [
            {
                "version": "1.0.0",
                "providers": [
                    {
                        "name": "libvirt",
                        "url": "vmctl-tiny-1.0.0.box",
                        "checksum_type": "sha256",
                        "checksum": "ab" * 32,
                    }
                ],
            }
        ],
    }


def test_catalog_keeps_other_versions_and_replaces_the_same_one() -> None:
    first = render_catalog("vmctl/tiny", "1.0.0", "vmctl-tiny-1.0.0.box", "aa" * 32)
    second = render_catalog("vmctl/tiny", "1.10.0", "vmctl-tiny-1.10.0.box", "bb" * 32, first)
    third = render_catalog("vmctl/tiny", "1.2.0", "vmctl-tiny-1.2.0.box", "cc" * 32, second)
    again = render_catalog("vmctl/tiny", "1.0.0", "vmctl-tiny-1.0.0.box", "dd" * 32, third)
    assert [v["version"] for v in again["versions"]] == ["1.0.0", "1.2.0", "1.10.0"]
    assert again["versions"][0]["providers"][0]["checksum"] == "dd" * 32
    other = render_catalog("other/box", "2.0", "other-box-2.0.box", "ee" * 32, third)
    assert [v["version"] for v in other["versions"]] == ["2.0"]


def test_metadata_and_vagrantfile() -> None:
    assert json.loads(render_metadata(4)) == {
        "provider": "libvirt",
        "format": "qcow2",
        "virtual_size": 4,
    }
    text = render_vagrantfile("root=/dev/vda rw console=ttyS0")
    assert text.splitlines() == [
        'Vagrant.configure("2") do |config|',
        "  config.vm.provider :libvirt do |libvirt|",
        '    libvirt.kernel = File.join(File.dirname(__FILE__), "vmlinuz")',
        '    libvirt.initrd = File.join(File.dirname(__FILE__), "initrd.img")',
        '    libvirt.cmd_line = "root=/dev/vda rw console=ttyS0"',
        "  end",
        "end",
    ]


def test_vagrantfile_with_an_ssh_username() -> None:
    lines = render_vagrantfile("root=/dev/vda rw", ssh_username="core").splitlines()
    assert lines[:3] == [
        'Vagrant.configure("2") do |config|',
        '  config.ssh.username = "core"',
        "  config.vm.provider :libvirt do |libvirt|",
    ]
    assert lines[3:] == render_vagrantfile("root=/dev/vda rw").splitlines()[2:]


def test_a_disk_booted_box_vagrantfile_names_no_kernel() -> None:
    assert render_vagrantfile(None).splitlines() == ['Vagrant.configure("2") do |config|', "end"]
    assert render_vagrantfile(None, ssh_username="admin").splitlines() == [
        'Vagrant.configure("2") do |config|',
        '  config.ssh.username = "admin"',
        "end",
    ]


def test_a_disk_booted_box_boots_its_disk_in_vmctl(tmp_path: Path) -> None:
    from vmctl.vagrantfile import load_project

    box_file = tmp_path / "box" / "Vagrantfile"
    box_file.parent.mkdir()
    box_file.write_text(render_vagrantfile(None, "admin"))
    project = tmp_path / "Vagrantfile"
    project.write_text(
        'Vagrant.configure("2") do |config|\n  config.vm.box = "vmctl/debian"\nend\n'
    )
    machine = load_project(project, box_vagrantfile=lambda name, version: box_file).primary()
    assert machine.ssh.username == "admin"
    assert machine.libvirt.kernel is None and machine.libvirt.cmd_line is None


def test_the_box_vagrantfile_gives_projects_its_ssh_user(tmp_path: Path) -> None:
    from vmctl.vagrantfile import load_project

    box_file = tmp_path / "box" / "Vagrantfile"
    box_file.parent.mkdir()
    box_file.write_text(render_vagrantfile("root=/dev/vda rw console=ttyS0", "core"))
    project = tmp_path / "Vagrantfile"
    project.write_text(
        'Vagrant.configure("2") do |config|\n  config.vm.box = "vmctl/coreos-like"\nend\n'
    )
    machine = load_project(project, box_vagrantfile=lambda name, version: box_file).primary()
    assert machine.ssh.username == "core"
    assert machine.libvirt.cmd_line == "root=/dev/vda rw console=ttyS0"
    assert machine.libvirt.kernel == str(box_file.parent / "vmlinuz")


# --- the initramfs parts ---------------------------------------------------------------------


def fake_modules(folder: Path) -> Path:
    folder.mkdir(parents=True)
    (folder / "modules.dep").write_text(
        "kernel/drivers/virtio/virtio_ring.ko:\n"
        "kernel/drivers/virtio/virtio.ko: kernel/drivers/virtio/virtio_ring.ko\n"
        "kernel/drivers/virtio/virtio_pci.ko: kernel/drivers/virtio/virtio_pci_legacy_dev.ko "
        "kernel/drivers/virtio/virtio.ko kernel/drivers/virtio/virtio_ring.ko\n"
        "kernel/drivers/virtio/virtio_pci_legacy_dev.ko:\n"
        "kernel/drivers/block/virtio_blk.ko: kernel/drivers/virtio/virtio.ko "
        "kernel/drivers/virtio/virtio_ring.ko\n"
    )
    (folder / "modules.builtin").write_text("kernel/fs/ext4/ext4.ko\n")
    return folder


def test_modules_come_after_their_dependencies_once(tmp_path: Path) -> None:
    folder = fake_modules(tmp_path / "modules")
    order = [p.name for p in resolve_modules(folder, ("virtio_pci", "virtio-blk", "ext4"))]
    assert order == [
        "virtio_ring.ko",
        "virtio.ko",
        "virtio_pci_legacy_dev.ko",
        "virtio_pci.ko",
        "virtio_blk.ko",
    ]
    with pytest.raises(BuildError, match="no module named 'virtio_gpu'"):
        resolve_modules(folder, ("virtio_gpu",))


def test_modules_of_an_unpacked_package_are_resolved_from_modinfo(tmp_path: Path) -> None:
    folder = tmp_path / "lib" / "modules" / "6.1.0-99-cloud-amd64"
    infos = {
        "drivers/virtio/virtio_ring.ko": b"depends=",
        "drivers/virtio/virtio.ko": b"depends=virtio_ring",
        "drivers/net/net_failover.ko": b"depends=failover",
        "net/core/failover.ko": b"depends=",
        "drivers/net/virtio_net.ko.xz": b"depends=net_failover,virtio,virtio_ring",
    }
    import lzma

    for name, info in infos.items():
        path = folder / "kernel" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        data = b"\x7fELF...\0license=GPL\0" + info + b"\0name=x\0"
        path.write_bytes(lzma.compress(data) if name.endswith(".xz") else data)
    order = [p.name for p in resolve_modules(folder, ("virtio_net",))]
    assert order.index("virtio_net.ko.xz") == len(order) - 1
    assert set(order) == {p.rsplit("/", 1)[-1] for p in infos}
    assert order.index("failover.ko") < order.index("net_failover.ko")
    assert order.index("virtio_ring.ko") < order.index("virtio.ko")


def test_kernel_source_auto_falls_back_to_the_mirror(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def missing(package: str) -> HostKernel:
        raise MissingToolError(f"the kernel package {package} is not installed")

    monkeypatch.setattr(build, "find_host_kernel", missing)
    auto = parse_recipe(write_recipe(tmp_path / "a", MINIMAL))
    assert auto.kernel.source == "auto"
    assert build.find_kernel(auto) is None
    assert build.kernel_identity(auto, None) == "linux-image-cloud-amd64 from bookworm (mirror)"
    host = parse_recipe(write_recipe(tmp_path / "h", MINIMAL + '[kernel]\nsource = "host"\n'))
    with pytest.raises(MissingToolError, match="linux-image-cloud-amd64"):
        build.find_kernel(host)
    with pytest.raises(BuildError, match="'sometimes'"):
        parse_recipe(write_recipe(tmp_path / "b", MINIMAL + '[kernel]\nsource = "sometimes"\n'))


def test_the_kernel_download_hook_asks_apt_for_the_versioned_image() -> None:
    hook = build.download_kernel_hook("linux-image-cloud-amd64", Path("/tmp/debs dir"))
    assert hook.startswith("set -e; cd '/tmp/debs dir'; pkg=linux-image-cloud-amd64; ")
    assert 'APT_CONFIG="$MMDEBSTRAP_APT_CONFIG" apt-cache depends "$pkg"' in hook
    assert hook.endswith('apt-get -q -o APT::Sandbox::User=root download "$pkg"')


def read_cpio(data: bytes) -> dict[str, tuple[int, bytes, tuple[int, int]]]:
    """name -> (mode, data, (rdevmajor, rdevminor)) of a newc archive."""
    entries = {}
    offset = 0
    while True:
        assert data[offset : offset + 6] == b"070701"
        fields = [int(data[offset + 6 + 8 * i : offset + 14 + 8 * i], 16) for i in range(13)]
        namesize, filesize = fields[11], fields[6]
        start = offset + 110
        name = data[start : start + namesize - 1].decode()
        body = start + namesize + (-(110 + namesize) % 4)
        if name == "TRAILER!!!":
            return entries
        entries[name] = (fields[1], data[body : body + filesize], (fields[9], fields[10]))
        offset = body + filesize + (-filesize % 4)


def test_cpio_archive_round_trips() -> None:
    archive = Cpio()
    archive.directory("dev")
    archive.device("dev/console", 0o600, 5, 1)
    archive.file("init", b"#!/bin/sh\necho hi\n", 0o755)
    archive.symlink("bin/sh", "busybox")
    entries = read_cpio(archive.finish())
    assert stat.S_ISDIR(entries["dev"][0])
    assert stat.S_ISCHR(entries["dev/console"][0]) and entries["dev/console"][2] == (5, 1)
    assert entries["init"][1] == b"#!/bin/sh\necho hi\n" and entries["init"][0] & 0o777 == 0o755
    assert stat.S_ISLNK(entries["bin/sh"][0]) and entries["bin/sh"][1] == b"busybox"


def test_initramfs_holds_busybox_modules_and_init(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "usr" / "bin").mkdir(parents=True)
    busybox = root / "usr" / "bin" / "busybox"
    busybox.write_text("#!/bin/sh\necho sh mount switch_root\n")
    busybox.chmod(0o755)
    modules = fake_modules(tmp_path / "modules")
    for name in ("virtio_ring", "virtio", "virtio_blk"):
        path = modules / "kernel" / "drivers" / ("block" if name == "virtio_blk" else "virtio")
        path.mkdir(parents=True, exist_ok=True)
        (path / f"{name}.ko").write_bytes(name.encode())
    recipe_dir = write_recipe(
        tmp_path / "r",
        MINIMAL + '[kernel]\nmodules = ["virtio_blk"]\n',
        {"initramfs/init": "#!/bin/sh\n# init\n"},
    )
    kernel = HostKernel("linux-image-x", "1", "x", tmp_path / "vmlinuz", modules)
    entries = read_cpio(
        gzip.decompress(build.make_initramfs(parse_recipe(recipe_dir), root, kernel))
    )
    assert entries["init"][1] == b"#!/bin/sh\n# init\n"
    assert entries["etc/modules"][1] == b"virtio_ring\nvirtio\nvirtio_blk\n"
    assert entries["lib/modules/virtio_blk.ko"][1] == b"virtio_blk"
    assert entries["bin/mount"][1] == b"busybox"
    assert stat.S_ISCHR(entries["dev/console"][0])


def test_root_modules_are_copied_without_the_build_links(tmp_path: Path) -> None:
    modules = fake_modules(tmp_path / "lib" / "modules" / "6.1.0-99-cloud-amd64")
    (modules / "kernel" / "fs").mkdir(parents=True)
    (modules / "kernel" / "fs" / "overlay.ko").write_bytes(b"overlay")
    (modules / "build").symlink_to("/usr/src/linux-headers-6.1.0-99-cloud-amd64")
    kernel = HostKernel("linux-image-x", "1", modules.name, tmp_path / "vmlinuz", modules)
    root = tmp_path / "root"
    (root / "usr" / "lib").mkdir(parents=True)
    (root / "lib").symlink_to("usr/lib")
    build.install_modules(kernel, root)
    target = root / "usr" / "lib" / "modules" / modules.name
    assert (target / "kernel" / "fs" / "overlay.ko").read_bytes() == b"overlay"
    assert (target / "modules.dep").read_text() == (modules / "modules.dep").read_text()
    assert not (target / "build").exists() and not (target / "build").is_symlink()


def test_root_modules_of_an_unpacked_package_are_indexed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    modules = tmp_path / "unpacked" / "lib" / "modules" / "6.1.0-99-cloud-amd64"
    (modules / "kernel").mkdir(parents=True)
    (modules / "kernel" / "veth.ko").write_bytes(b"veth")
    kernel = HostKernel("linux-image-x", "1", modules.name, tmp_path / "vmlinuz", modules)
    calls: list[list[str]] = []
    monkeypatch.setattr(build.run, "run", lambda argv, **kw: calls.append([str(a) for a in argv]))
    root = tmp_path / "root"
    build.install_modules(kernel, root)
    assert (root / "usr" / "lib" / "modules" / modules.name / "kernel" / "veth.ko").is_file()
    assert calls == [["depmod", "-b", str(root), modules.name]]


# --- building, with the heavy steps replaced -------------------------------------------------


@pytest.fixture
def fake_kernel(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> HostKernel:
    kernel = HostKernel(
        "linux-image-6.1.0-99-cloud-amd64",
        "6.1.999-1",
        "6.1.0-99-cloud-amd64",
        tmp_path / "vmlinuz",
        tmp_path / "modules",
    )
    monkeypatch.setattr(build, "find_host_kernel", lambda package: kernel)
    monkeypatch.setenv("VMCTL_CACHE", str(tmp_path / "cache"))
    return kernel


def seed_cache(kernel: HostKernel, content: bytes = b"a box") -> tuple[Path, str]:
    """A finished build of boxes/tiny in the cache, as build_into_cache leaves it."""
    import hashlib

    recipe = parse_recipe(TINY)
    key = cache_key(TINY, f"{kernel.package}={kernel.version}")
    folder = build.paths.cache_home() / "builds" / key
    folder.mkdir(parents=True)
    (folder / recipe.box_filename).write_bytes(content)
    digest = hashlib.sha256(content).hexdigest()
    (folder / "build.json").write_text(json.dumps({"sha256": digest, "size": len(content)}))
    return folder, digest


def test_a_cached_build_is_published_quickly(tmp_path: Path, fake_kernel: HostKernel) -> None:
    _, digest = seed_cache(fake_kernel)
    lines: list[str] = []
    start = time.monotonic()
    result = build_recipe(str(TINY), tmp_path / "out", notify=lines.append)
    assert time.monotonic() - start < 1.0
    version = parse_recipe(TINY).version
    assert result == BuildResult(
        name="vmctl/tiny",
        version=version,
        box_path=tmp_path / "out" / f"vmctl-tiny-{version}.box",
        catalog_path=tmp_path / "out" / "vmctl-tiny.json",
        sha256=digest,
        cached=True,
    )
    assert result.box_path.read_bytes() == b"a box"
    catalog = json.loads(result.catalog_path.read_text())
    assert catalog["name"] == "vmctl/tiny"
    assert catalog["versions"][0]["providers"][0] == {
        "name": "libvirt",
        "url": f"vmctl-tiny-{version}.box",
        "checksum_type": "sha256",
        "checksum": digest,
    }
    assert lines and lines[0].startswith("cached:")
    # Again, into the same folder: nothing changes, nothing is left behind.
    build_recipe("tiny", tmp_path / "out")
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        f"vmctl-tiny-{version}.box",
        "vmctl-tiny.json",
    ]


def test_default_output_is_build_in_the_current_folder(
    tmp_path: Path, fake_kernel: HostKernel, monkeypatch: pytest.MonkeyPatch
) -> None:
    seed_cache(fake_kernel)
    monkeypatch.chdir(tmp_path)
    result = build_recipe("tiny")
    assert result.box_path.parent == tmp_path / "build"


def test_missing_tool_is_named(
    tmp_path: Path, fake_kernel: HostKernel, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_which = shutil.which
    monkeypatch.setattr(
        build.run.shutil,
        "which",
        lambda name, path=None: None if name == "mmdebstrap" else real_which(name, path=path),
    )
    with pytest.raises(MissingToolError, match="'mmdebstrap'") as info:
        build_recipe("tiny", tmp_path / "out")
    assert "apt-get install mmdebstrap" in (info.value.hint or "")
    assert not (tmp_path / "out").exists()


def test_missing_kernel_package_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(
        build.run,
        "run",
        lambda argv, **kw: type("P", (), {"returncode": 1, "stdout": b"", "stderr": b""})(),
    )
    monkeypatch.setattr(build.run, "require_tool", lambda name, purpose: name)
    with pytest.raises(MissingToolError, match="linux-image-cloud-amd64"):
        build.find_host_kernel("linux-image-cloud-amd64")


def tools_present(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(build.run, "require_tool", lambda name, purpose: name)
    monkeypatch.setattr(build, "require_root", lambda: None)


def test_building_needs_root(
    tmp_path: Path, fake_kernel: HostKernel, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(build.run, "require_tool", lambda name, purpose: name)
    monkeypatch.setattr(build.os, "geteuid", lambda: 1000)
    with pytest.raises(BuildError, match="needs root"):
        build_recipe("tiny", tmp_path / "out")
    seed_cache(fake_kernel)
    assert build_recipe("tiny", tmp_path / "out").cached  # a cached build needs no root


def test_a_failed_build_leaves_nothing(
    tmp_path: Path, fake_kernel: HostKernel, monkeypatch: pytest.MonkeyPatch
) -> None:
    tools_present(monkeypatch)

    def broken(recipe: Recipe, root: Path, kernel_debs: Path | None = None) -> None:
        (root / "etc").mkdir(parents=True)
        (root / "etc" / "half").write_text("x")
        raise BuildError("mmdebstrap failed with exit status 1: E: boom")

    monkeypatch.setattr(build, "make_root", broken)
    with pytest.raises(BuildError, match="boom"):
        build_recipe("tiny", tmp_path / "out")
    builds = build.paths.cache_home() / "builds"
    assert [p.name for p in builds.iterdir() if not p.name.endswith(".lock")] == []
    assert not (tmp_path / "out").exists()


def test_an_interrupted_build_leaves_nothing(
    tmp_path: Path, fake_kernel: HostKernel, monkeypatch: pytest.MonkeyPatch
) -> None:
    tools_present(monkeypatch)

    def interrupted(recipe: Recipe, root: Path, kernel_debs: Path | None = None) -> None:
        root.mkdir(parents=True)
        raise KeyboardInterrupt

    monkeypatch.setattr(build, "make_root", interrupted)
    with pytest.raises(KeyboardInterrupt):
        build_recipe("tiny", tmp_path / "out")
    builds = build.paths.cache_home() / "builds"
    assert [p.name for p in builds.iterdir() if not p.name.endswith(".lock")] == []


def test_stale_temporary_folders_are_cleaned(
    tmp_path: Path, fake_kernel: HostKernel, monkeypatch: pytest.MonkeyPatch
) -> None:
    tools_present(monkeypatch)
    key = cache_key(TINY, f"{fake_kernel.package}={fake_kernel.version}")
    stale = build.paths.cache_home() / "builds" / f".tmp-{key}-12345"
    (stale / "root").mkdir(parents=True)
    monkeypatch.setattr(
        build,
        "make_root",
        lambda recipe, root, kernel_debs=None: (_ for _ in ()).throw(BuildError("stop")),
    )
    with pytest.raises(BuildError):
        build_recipe("tiny", tmp_path / "out")
    assert not stale.exists()


def test_disk_full_is_a_clear_build_error(
    tmp_path: Path, fake_kernel: HostKernel, monkeypatch: pytest.MonkeyPatch
) -> None:
    tools_present(monkeypatch)

    def full(recipe: Recipe, root: Path, kernel_debs: Path | None = None) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(root))

    monkeypatch.setattr(build, "make_root", full)
    with pytest.raises(BuildError, match="disk is full"):
        build_recipe("tiny", tmp_path / "out")
    error = build.step_error("mkfs.ext4", b"mkfs.ext4: No space left on device while writing", 1)
    assert "disk is full" in str(error) and "mkfs.ext4" in str(error)


def test_step_errors_quote_the_tool_and_its_error() -> None:
    error = build.step_error(
        "mmdebstrap", b"I: chroot\nE: Unable to locate package nope\nI: x\n", 100
    )
    assert str(error) == "mmdebstrap failed with exit status 100: E: Unable to locate package nope"


def test_old_builds_of_the_same_box_are_pruned(tmp_path: Path) -> None:
    builds = tmp_path / "builds"
    for index, name in enumerate(["a", "a", "a", "a", "b"]):
        folder = builds / f"key{index}"
        folder.mkdir(parents=True)
        (folder / "build.json").write_text(json.dumps({"name": name}))
        os.utime(folder / "build.json", (1000 + index, 1000 + index))
    (builds / "current").mkdir()
    build.prune_cache(builds, "a", keep=3, current="current")
    assert sorted(p.name for p in builds.iterdir() if not p.name.startswith(".")) == [
        "current",
        "key2",
        "key3",
        "key4",
    ]


# --- disk-booted boxes, with the heavy steps replaced ----------------------------------------


@pytest.fixture
def fake_grub(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> build.diskimage.Grub:
    grub = build.diskimage.Grub(
        tmp_path / "grub-pc", tmp_path / "grub-efi", ("grub-pc-bin=1", "grub-efi-amd64-bin=1")
    )
    monkeypatch.setattr(build.diskimage, "find_grub", lambda: grub)
    monkeypatch.setenv("VMCTL_CACHE", str(tmp_path / "cache"))
    return grub


def fake_debian_root(recipe: Recipe, root: Path, kernel_debs: Path | None = None) -> None:
    """What mmdebstrap leaves for a disk-booted recipe: two kernels, their initramfs, and a
    stale /vmlinuz link (the builder points the links at the newest kernel)."""
    (root / "boot").mkdir(parents=True)
    for release in ("6.1.0-9-amd64", "6.1.0-10-amd64"):
        (root / "boot" / f"vmlinuz-{release}").write_bytes(b"kernel")
        (root / "boot" / f"initrd.img-{release}").write_bytes(b"initramfs")
    (root / "vmlinuz").symlink_to("boot/vmlinuz-6.1.0-9-amd64")


def disk_recipe(tmp_path: Path) -> Path:
    text = MINIMAL + 'ssh_username = "admin"\n[boot]\nmode = "disk"\n'
    return write_recipe(tmp_path / "disk-recipe", text, files={})


def test_a_disk_booted_box_holds_its_disk_and_no_kernel(
    tmp_path: Path, fake_grub: build.diskimage.Grub, monkeypatch: pytest.MonkeyPatch
) -> None:
    tools_present(monkeypatch)
    monkeypatch.setattr(build, "make_root", fake_debian_root)
    versions: list[tuple[str, Path | None]] = []
    monkeypatch.setattr(
        build.diskimage,
        "package_version",
        lambda package, admindir=None: versions.append((package, admindir)) or "6.1.999-1",
    )
    made: dict = {}

    def make_disk(root: Path, work: Path, layout, grub, cmdline: str) -> Path:
        made.update(layout=layout, grub=grub, cmdline=cmdline)
        made["links"] = (os.readlink(root / "vmlinuz"), os.readlink(root / "initrd.img"))
        (work / "disk.raw").write_bytes(b"a whole disk")
        return work / "disk.raw"

    monkeypatch.setattr(build.diskimage, "make_disk", make_disk)
    monkeypatch.setattr(build, "make_qcow2", lambda raw, qcow2: shutil.copyfile(raw, qcow2))
    folder = disk_recipe(tmp_path)
    lines: list[str] = []
    result = build_recipe(str(folder), tmp_path / "out", notify=lines.append)
    assert not result.cached

    import tarfile

    with tarfile.open(result.box_path) as tar:
        assert tar.getnames() == ["metadata.json", "Vagrantfile", "box.img"]
        assert tar.extractfile("box.img").read() == b"a whole disk"
        vagrantfile = tar.extractfile("Vagrantfile").read().decode()
        metadata = json.loads(tar.extractfile("metadata.json").read())
    assert vagrantfile == render_vagrantfile(None, "admin")
    assert metadata == {"provider": "libvirt", "format": "qcow2", "virtual_size": 4}

    key = cache_key(
        folder,
        "linux-image-cloud-amd64 from bookworm (installed in the root); "
        "grub-pc-bin=1, grub-efi-amd64-bin=1",
    )
    record = json.loads((build.paths.cache_home() / "builds" / key / "build.json").read_text())
    assert record["kernel"] == "linux-image-6.1.0-10-amd64=6.1.999-1"
    assert record["boot"] == "disk" and record["kernel_source"] == "root"
    assert record["grub"] == ["grub-pc-bin=1", "grub-efi-amd64-bin=1"]
    assert versions[0][0] == "linux-image-6.1.0-10-amd64" and versions[0][1] is not None
    # The newest kernel, its initramfs; identifiers seeded by the build's key.
    assert made["links"] == ("boot/vmlinuz-6.1.0-10-amd64", "boot/initrd.img-6.1.0-10-amd64")
    assert made["layout"] == build.diskimage.plan_disk(4 * 1024**3, seed=key)
    assert made["cmdline"] == build.DISK_CMDLINE and made["grub"] is fake_grub
    assert any(line.startswith("disk: GPT") for line in lines)

    # Cached; another GRUB is another build.
    assert build_recipe(str(folder), tmp_path / "out").cached
    monkeypatch.setattr(
        build.diskimage,
        "find_grub",
        lambda: dataclasses.replace(fake_grub, versions=("grub-pc-bin=2", "grub-efi-amd64-bin=1")),
    )
    assert not build_recipe(str(folder), tmp_path / "out").cached


def test_mmdebstrap_installs_the_kernel_and_makes_the_initramfs_last(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[tuple[list[str], dict]] = []

    def fake_run(argv, **kw):
        calls.append(([str(a) for a in argv], kw.get("env") or {}))
        return type("P", (), {"returncode": 0, "stdout": b"", "stderr": b""})()

    monkeypatch.setattr(build.run, "run", fake_run)
    text = MINIMAL + 'packages = ["sudo", "initramfs-tools"]\n[boot]\nmode = "disk"\n'
    text += '[kernel]\npackage = "linux-image-amd64"\n'
    build.make_root(parse_recipe(write_recipe(tmp_path / "d", text, files={})), tmp_path / "root")
    argv, env = calls[-1]
    assert "--include=sudo,initramfs-tools,linux-image-amd64" in argv
    hooks = [a for a in argv if a.startswith("--customize-hook=")]
    assert hooks[-1] == '--customize-hook=chroot "$1" update-initramfs -c -k all'
    assert env["INITRD"] == "No"  # the kernel's own postinst makes no initramfs

    build.make_root(parse_recipe(write_recipe(tmp_path / "k", MINIMAL)), tmp_path / "root2")
    argv, env = calls[-1]
    assert "INITRD" not in env and not any("update-initramfs" in a for a in argv)
    assert not any(a.startswith("--include=") for a in argv)


def test_the_root_kernel_must_be_there_with_its_initramfs(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "boot").mkdir(parents=True)
    with pytest.raises(BuildError, match="no kernel in /boot"):
        build.find_root_kernel(root)
    (root / "boot" / "vmlinuz-6.1.0-9-amd64").write_bytes(b"kernel")
    with pytest.raises(BuildError, match="initrd.img-6.1.0-9-amd64"):
        build.find_root_kernel(root)
    (root / "boot" / "initrd.img-6.1.0-9-amd64").write_bytes(b"initramfs")
    (root / "initrd.img").write_text("not a link")
    assert build.find_root_kernel(root) == ("6.1.0-9-amd64", "linux-image-6.1.0-9-amd64")
    assert os.readlink(root / "initrd.img") == "boot/initrd.img-6.1.0-9-amd64"
    assert os.readlink(root / "vmlinuz") == "boot/vmlinuz-6.1.0-9-amd64"


def test_an_interrupted_disk_build_leaves_nothing(
    tmp_path: Path, fake_grub: build.diskimage.Grub, monkeypatch: pytest.MonkeyPatch
) -> None:
    tools_present(monkeypatch)
    monkeypatch.setattr(build, "make_root", fake_debian_root)
    monkeypatch.setattr(build.diskimage, "package_version", lambda package, admindir=None: "1")

    def interrupted(root: Path, work: Path, layout, grub, cmdline: str) -> Path:
        (work / "root.img").write_bytes(b"half a file system")
        raise KeyboardInterrupt  # Ctrl-C while the disk is being assembled

    monkeypatch.setattr(build.diskimage, "make_disk", interrupted)
    with pytest.raises(KeyboardInterrupt):
        build_recipe(str(disk_recipe(tmp_path)), tmp_path / "out")
    builds = build.paths.cache_home() / "builds"
    assert [p.name for p in builds.iterdir() if not p.name.endswith(".lock")] == []
    assert not (tmp_path / "out").exists()
