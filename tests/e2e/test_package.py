"""`vmctl package`: a machine of the tiny box packaged, added as a box, and booted again."""

from __future__ import annotations

import json
import tarfile
from pathlib import Path

from conftest import Vmctl, write_vagrantfile

HOST_KEY = "sudo -n dropbearkey -y -f /etc/dropbear/dropbear_ed25519_host_key | grep '^ssh-ed25519'"


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
          end
        end
    """)
    destroy_after += [first, second]
    vmctl("up", cwd=first)
    vmctl("ssh", "-c", "echo packaged > ~/kept.txt && sync", cwd=first)
    first_key = vmctl("ssh", "-c", HOST_KEY, cwd=first).stdout.strip()
    assert first_key.startswith("ssh-ed25519 ")

    box = tmp_path / "X.box"
    r = vmctl("package", "--output", str(box), cwd=first, timeout=600)
    assert "halting the machine to package it" in r.stderr + r.stdout
    with tarfile.open(box) as tar:
        names = set(tar.getnames())
        metadata = json.loads(tar.extractfile("metadata.json").read())  # type: ignore[union-attr]
        vagrantfile = tar.extractfile("Vagrantfile").read().decode()  # type: ignore[union-attr]
    assert {"box.img", "metadata.json", "Vagrantfile", "vmlinuz", "initrd.img"} <= names
    assert metadata["provider"] == "libvirt" and metadata["format"] == "qcow2"
    assert 'config.ssh.username = "vagrant"' in vagrantfile and "libvirt.kernel" in vagrantfile
    # never over an existing file
    again = vmctl("package", "--output", str(box), cwd=first, check=False)
    assert again.returncode == 1 and "error:" in again.stderr

    vmctl("box", "add", str(box), "--name", "test/packaged")
    write_vagrantfile(second, """
        Vagrant.configure("2") do |config|
          config.vm.box = "test/packaged"
          config.vm.provider :libvirt do |lv|
            lv.memory = 256
          end
        end
    """)
    vmctl("up", cwd=second)
    assert vmctl("ssh", "-c", "cat ~/kept.txt", cwd=second).stdout == "packaged\n"
    second_key = vmctl("ssh", "-c", HOST_KEY, cwd=second).stdout.strip()
    assert second_key.startswith("ssh-ed25519 ") and second_key != first_key
    vmctl("destroy", "-f", cwd=second)
    # The packaged machine itself comes up again: a new machine key, its new host key pinned.
    vmctl("up", cwd=first)
    assert vmctl("ssh", "-c", "cat ~/kept.txt", cwd=first).stdout == "packaged\n"
    assert vmctl("ssh", "-c", HOST_KEY, cwd=first).stdout.strip() != first_key
    vmctl("destroy", "-f", cwd=first)
    vmctl("box", "remove", "test/packaged", "--force", check=False)
