"""vmctl package: metadata.json, the box's Vagrantfile, the guest script, and what the
project reading the packaged box's Vagrantfile gets."""

from __future__ import annotations

import textwrap
from pathlib import Path

from vmctl.machine.package import disk_names, generic_script, render_metadata, render_vagrantfile
from vmctl.vagrantfile import load_project


def test_metadata_for_one_disk_and_several() -> None:
    assert render_metadata([3]) == {"provider": "libvirt", "format": "qcow2", "virtual_size": 3}
    several = render_metadata([3, 1, 2])
    assert several["disks"] == [
        {"path": "box.img", "format": "qcow2", "virtual_size": 3},
        {"path": "disk2.qcow2", "format": "qcow2", "virtual_size": 1},
        {"path": "disk3.qcow2", "format": "qcow2", "virtual_size": 2},
    ]
    assert several["provider"] == "libvirt"
    assert disk_names(2) == ["box.img", "disk2.qcow2"]


def test_vagrantfile_kernel_boot_and_username() -> None:
    text = render_vagrantfile(ssh_username="vagrant", kernel=True, initrd=True,
                              cmd_line='root=/dev/vda rw "#{x}"', include_vagrantfile=False)
    assert text.splitlines() == [
        'Vagrant.configure("2") do |config|',
        '  config.ssh.username = "vagrant"',
        "  config.vm.provider :libvirt do |libvirt|",
        '    libvirt.kernel = File.join(File.dirname(__FILE__), "vmlinuz")',
        '    libvirt.initrd = File.join(File.dirname(__FILE__), "initrd.img")',
        '    libvirt.cmd_line = "root=/dev/vda rw \\"\\#{x}\\""',
        "  end",
        "end",
    ]
    disk_booted = render_vagrantfile(ssh_username=None, kernel=False, initrd=False, cmd_line=None,
                                     include_vagrantfile=False)
    assert disk_booted.splitlines() == ['Vagrant.configure("2") do |config|', "end"]


def test_packaged_vagrantfile_loads_with_the_included_one(tmp_path: Path) -> None:
    box = tmp_path / "box"
    (box / "include").mkdir(parents=True)
    (box / "Vagrantfile").write_text(render_vagrantfile(
        ssh_username="core", kernel=True, initrd=False, cmd_line="console=ttyS0", include_vagrantfile=True))
    (box / "include" / "_Vagrantfile").write_text(
        'Vagrant.configure("2") do |config|\n  config.vm.provider :libvirt do |l|\n    l.memory = 333\n  end\nend\n')
    project = tmp_path / "project"
    project.mkdir()
    (project / "Vagrantfile").write_text(textwrap.dedent("""\
        Vagrant.configure("2") do |config|
          config.vm.box = "test/packaged"
        end
    """))
    cfg = load_project(project / "Vagrantfile", box_vagrantfile=lambda name, c: box / "Vagrantfile")
    (m,) = cfg.machines
    assert m.ssh.username == "core"
    assert m.libvirt.kernel == str(box / "vmlinuz")
    assert m.libvirt.initrd is None
    assert m.libvirt.cmd_line == "console=ttyS0"
    assert m.libvirt.memory == 333


def test_generic_script_drops_the_machine_key_and_host_keys() -> None:
    user, privileged = generic_script("AAAAmachineblob", "vmctl-0123")
    assert "-e AAAAmachineblob" in user and "-e vmctl-0123" in user and "authorized_keys" in user
    assert "/etc/ssh/ssh_host_*" in privileged and "/etc/dropbear/dropbear_*_host_key" in privileged
    assert ": > /etc/machine-id" in privileged


def test_a_stopped_machines_box_logs_in_with_its_packaged_key(tmp_path: Path) -> None:
    """A box packaged from a stopped machine names its vagrant_private_key, as Vagrant's do;
    the path resolves inside the box, so the box's Vagrantfile may name it."""
    box = tmp_path / "box"
    box.mkdir()
    (box / "Vagrantfile").write_text(render_vagrantfile(
        ssh_username="vagrant", kernel=False, initrd=False, cmd_line=None, include_vagrantfile=False,
        private_key=True))
    (box / "vagrant_private_key").write_text("key")
    assert 'config.ssh.private_key_path = File.expand_path("../vagrant_private_key", __FILE__)' in (
        box / "Vagrantfile").read_text()
    project = tmp_path / "project"
    project.mkdir()
    (project / "Vagrantfile").write_text('Vagrant.configure("2") do |config|\n  config.vm.box = "t/p"\nend\n')
    cfg = load_project(project / "Vagrantfile", box_vagrantfile=lambda name, c: box / "Vagrantfile")
    (m,) = cfg.machines
    assert m.ssh.private_key_path == (str(box / "vagrant_private_key"),)
    assert not cfg.warnings
