"""`vmctl package`: a machine of the tiny box with an extra disk packaged running (made
generic) and stopped (as it is, with its login key, as Vagrant does), each box added and
booted again with both disks."""

from __future__ import annotations

import json
import tarfile
from pathlib import Path

from conftest import Vmctl, write_vagrantfile

HOST_KEY = "sudo -n dropbearkey -y -f /etc/dropbear/dropbear_ed25519_host_key | grep '^ssh-ed25519'"
READ_DISK2 = "sudo -n head -c 13 /dev/vdb"


def _members(box: Path) -> tuple[set[str], dict, str]:
    with tarfile.open(box) as tar:
        names = set(tar.getnames())
        metadata = json.loads(tar.extractfile("metadata.json").read())  # type: ignore[union-attr]
        vagrantfile = tar.extractfile("Vagrantfile").read().decode()  # type: ignore[union-attr]
    return names, metadata, vagrantfile


def _project_of(folder: Path, box: str) -> None:
    write_vagrantfile(folder, f"""
        Vagrant.configure("2") do |config|
          config.vm.box = "{box}"
          config.vm.provider :libvirt do |lv|
            lv.memory = 256
          end
        end
    """)


def test_package_round_trip(vmctl: Vmctl, tiny_box: Path, tmp_path: Path, destroy_after: list[Path]) -> None:
    first, second = tmp_path / "first", tmp_path / "second"
    for folder in (first, second):
        folder.mkdir()
        folder.chmod(0o755)
    write_vagrantfile(first, """
        Vagrant.configure("2") do |config|
          config.vm.box = "vmctl/tiny"
          config.vm.provider :libvirt do |lv|
            lv.memory = 256
            lv.storage :file, size: "16M"
          end
        end
    """)
    destroy_after += [first, second]
    vmctl("up", cwd=first)
    vmctl("ssh", "-c", "echo packaged > ~/kept.txt && echo disk2-marker | sudo -n dd of=/dev/vdb conv=fsync "
          "2>/dev/null && sync", cwd=first)
    first_key = vmctl("ssh", "-c", HOST_KEY, cwd=first).stdout.strip()
    assert first_key.startswith("ssh-ed25519 ")

    box = tmp_path / "X.box"
    r = vmctl("package", "--output", str(box), cwd=first, timeout=600)
    assert "halting the machine to package it" in r.stderr + r.stdout
    names, metadata, vagrantfile = _members(box)
    assert {"box.img", "disk2.qcow2", "metadata.json", "Vagrantfile", "vmlinuz", "initrd.img"} <= names
    assert "vagrant_private_key" not in names
    assert metadata["provider"] == "libvirt" and metadata["format"] == "qcow2"
    assert [d["path"] for d in metadata["disks"]] == ["box.img", "disk2.qcow2"]
    assert 'config.ssh.username = "vagrant"' in vagrantfile and "libvirt.kernel" in vagrantfile
    # never over an existing file
    again = vmctl("package", "--output", str(box), cwd=first, check=False)
    assert again.returncode == 1 and "error:" in again.stderr

    vmctl("box", "add", str(box), "--name", "test/packaged")
    _project_of(second, "test/packaged")
    vmctl("up", cwd=second)
    assert vmctl("ssh", "-c", "cat ~/kept.txt", cwd=second).stdout == "packaged\n"
    assert vmctl("ssh", "-c", READ_DISK2, cwd=second).stdout == "disk2-marker\n"
    second_key = vmctl("ssh", "-c", HOST_KEY, cwd=second).stdout.strip()
    assert second_key.startswith("ssh-ed25519 ") and second_key != first_key
    vmctl("destroy", "-f", cwd=second)
    # The packaged machine itself comes up again: a new machine key, its new host key pinned.
    vmctl("up", cwd=first)
    assert vmctl("ssh", "-c", "cat ~/kept.txt", cwd=first).stdout == "packaged\n"
    assert vmctl("ssh", "-c", HOST_KEY, cwd=first).stdout.strip() != first_key

    # Stopped: packaged as it is, with its login key, which the new machine logs in with.
    vmctl("halt", cwd=first)
    stopped = tmp_path / "stopped.box"
    r = vmctl("package", "--output", str(stopped), cwd=first, timeout=600)
    assert "its login key goes in the box as vagrant_private_key" in r.stderr + r.stdout
    names, metadata, vagrantfile = _members(stopped)
    assert {"box.img", "disk2.qcow2", "vagrant_private_key"} <= names
    assert "config.ssh.private_key_path" in vagrantfile
    vmctl("destroy", "-f", cwd=first)
    vmctl("box", "add", str(stopped), "--name", "test/packaged-stopped")
    _project_of(second, "test/packaged-stopped")
    vmctl("up", cwd=second)
    assert vmctl("ssh", "-c", "cat ~/kept.txt", cwd=second).stdout == "packaged\n"
    assert vmctl("ssh", "-c", READ_DISK2, cwd=second).stdout == "disk2-marker\n"
    vmctl("destroy", "-f", cwd=second)
    for name in ("test/packaged", "test/packaged-stopped"):
        vmctl("box", "remove", name, "--force", check=False)
