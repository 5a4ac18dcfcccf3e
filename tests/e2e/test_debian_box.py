"""The debian box (boxes/debian): a disk-booted box, GRUB for BIOS and UEFI, Debian's generic
kernel. Booted through vmctl (SeaBIOS: a box whose Vagrantfile names no kernel boots its disk)
and with plain QEMU under OVMF (UEFI), both under TCG.

Run directly to measure boot-to-SSH times under both firmwares:
``python tests/e2e/test_debian_box.py [RUNS] [MiB]`` (from the repository, as root).
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from conftest import Vmctl, write_vagrantfile
from qemu_guest import (
    OVMF_CODE,
    Guest,
    box_setting,
    console_tail,
    make_overlay,
    power_off,
    running,
    ssh,
    unpack_box,
)

SSH_DEADLINE = 300.0  # generous: about 35-50 s on this shared host, over 80 s when it is busy
MEMORY_MIB = 512  # vmctl's default
# What the login user runs to show the box's promises (and what the later tests rely on).
PING = "ping -c 1 -W 10 10.0.2.2"  # QEMU's user-mode gateway answers ICMP echo


def check(guest: Guest, command: str, timeout: float = 120) -> str:
    status, output = ssh(guest, command, timeout=timeout)
    assert status == 0, f"{command!r} exited {status}:\n{output}"
    return output


def assert_generic_kernel(release: str) -> None:
    release = release.strip()
    assert release.endswith("-amd64") and "cloud" not in release, release


def test_debian_box_through_vmctl(
    vmctl: Vmctl, debian_box: Path, project: Path, destroy_after: list[Path]
) -> None:
    # A generous boot_timeout: this box needs 35-50 s of CPU to reach SSH under TCG, and libvirt
    # puts every guest of this host in one CPU cgroup (/machine), so on a busy shared host a
    # guest started through libvirt gets a small share and has taken over 300 s.
    write_vagrantfile(project, """
        Vagrant.configure("2") do |config|
          config.vm.box = "vmctl/debian"
          config.vm.hostname = "debian-e2e"
          config.vm.boot_timeout = 900
        end
    """)
    destroy_after.append(project)
    vmctl("up", cwd=project, timeout=1200)

    # One `vmctl ssh -c` for all the checks (each login costs seconds under TCG): every command's
    # output under its own name.
    commands = {
        "kernel": "uname -r",
        "cmdline": "cat /proc/cmdline",
        "firmware": "test -d /sys/firmware/efi && echo uefi || echo bios",
        "disk": "lsblk -lno NAME,TYPE /dev/vda",
        "root": "findmnt -no SOURCE /",
        "user": "id -un; id -u",
        "sudo": "sudo -n id -u",
        "ping": PING,
        "hostname": "hostname",
        "vagrant": "ls /vagrant",
        "failed": "systemctl --failed --no-legend --plain",
        "python": "python3 -c 'print(42)'",
    }
    script = "".join(f"echo '>>> {name}'; {command} 2>&1\n" for name, command in commands.items())
    output = vmctl("ssh", "-c", script, cwd=project, timeout=300).stdout
    found = {
        name: body.split()
        for name, _, body in (part.partition("\n") for part in output.split(">>> ")[1:])
    }
    assert list(found) == list(commands), output

    # Booted by SeaBIOS and GRUB from the disk: Debian's generic kernel and initramfs.
    assert_generic_kernel(" ".join(found["kernel"]))
    assert any(arg.startswith("root=UUID=") for arg in found["cmdline"]), output
    assert found["firmware"] == ["bios"]
    # The virtio disk with its three partitions, the root on the third.
    assert found["disk"] == ["vda", "disk", "vda1", "part", "vda2", "part", "vda3", "part"]
    assert found["root"] == ["/dev/vda3"]
    # The login user: vagrant, uid 1000, passwordless sudo, and ping without privileges.
    assert found["user"] == ["vagrant", "1000"]
    assert found["sudo"] == ["0"]
    assert "0% packet loss" in " ".join(found["ping"]), output
    # What vmctl did: the hostname (hostnamectl) and the /vagrant synced folder (rsync).
    assert found["hostname"] == ["debian-e2e"]
    assert "Vagrantfile" in found["vagrant"]
    # Every unit started; Python for Ansible.
    assert found["failed"] == [], output
    assert found["python"] == ["42"]


def test_debian_box_boots_under_uefi(debian_box: Path, tmp_path: Path) -> None:
    if not OVMF_CODE.is_file():
        pytest.fail(f"{OVMF_CODE} is missing: install the ovmf package (scripts/bootstrap does)")
    [box_file] = debian_box.glob("vmctl-debian-*.box")
    box_dir = unpack_box(box_file, tmp_path / "box")
    assert box_setting(box_dir, "cmd_line") is None and not (box_dir / "vmlinuz").exists()
    overlay = make_overlay(box_dir, "uefi.qcow2")
    with running(box_dir, overlay, firmware="uefi", deadline=SSH_DEADLINE) as guest:
        assert guest.user == "vagrant"
        # One host key, ed25519, made on this first boot.
        assert guest.host_key.startswith("ssh-ed25519 ")
        assert check(guest, "ls /etc/ssh | grep host").split() == [
            "ssh_host_ed25519_key",
            "ssh_host_ed25519_key.pub",
        ]
        # OVMF started GRUB from EFI/BOOT/BOOTX64.EFI on the EFI system partition.
        assert check(guest, "cat /sys/firmware/efi/fw_platform_size") == "64\n"
        assert_generic_kernel(check(guest, "uname -r"))
        assert "vda3" in check(guest, "lsblk -lno NAME /dev/vda").split()
        assert " 0% packet loss" in check(guest, PING)
        assert check(guest, "sudo -n id -u") == "0\n"
        # Power off (asked without waiting, so that the command's own status comes back): QEMU
        # exits once the guest is down.
        check(guest, "sudo -n systemctl poweroff --no-block")
        assert guest.proc.wait(timeout=300) == 0


def measure(runs: int, memory_mib: int) -> None:
    """Boot RUNS fresh overlays under each firmware, one after another; print the medians."""
    from vmctl.boxes.build import build_recipe

    with tempfile.TemporaryDirectory() as temp:
        started = time.monotonic()
        result = build_recipe("debian", Path(temp) / "out")
        built = time.monotonic() - started
        folder = unpack_box(result.box_path, Path(temp) / "box")
        medians, cpu_medians = {}, {}
        for firmware in ("bios", "uefi"):
            times, cpus = [], []
            for index in range(runs):
                overlay = make_overlay(folder, f"{firmware}{index}.qcow2")
                options = {"firmware": firmware, "memory_mib": memory_mib, "deadline": 300}
                with running(folder, overlay, **options) as guest:
                    times.append(guest.seconds_to_ssh)
                    cpus.append(guest.cpu_to_ssh)
                    try:
                        halt = f"{power_off(guest, timeout=120):.2f} s"
                    except subprocess.TimeoutExpired:
                        halt = "not within 120 s (QEMU killed); console:\n"
                        halt += console_tail(guest.console)
                print(
                    f"{firmware} run {index + 1}: SSH after {guest.seconds_to_ssh:.2f} s "
                    f"(QEMU's CPU time {guest.cpu_to_ssh:.1f} s, load {os.getloadavg()[0]:.1f}), "
                    f"poweroff {halt}",
                    flush=True,
                )
            medians[firmware] = statistics.median(times)
            cpu_medians[firmware] = statistics.median(cpus)
        size = os.path.getsize(result.box_path) / 1e6
        print(
            f"median over {runs} runs with {memory_mib} MiB: BIOS {medians['bios']:.2f} s, "
            f"UEFI {medians['uefi']:.2f} s; QEMU's CPU time to SSH: BIOS "
            f"{cpu_medians['bios']:.1f} s, UEFI {cpu_medians['uefi']:.1f} s "
            f"(box {size:.1f} MB, build {built:.1f} s, {'cached' if result.cached else 'cold'})"
        )


if __name__ == "__main__":
    measure(
        int(sys.argv[1]) if len(sys.argv) > 1 else 3,
        int(sys.argv[2]) if len(sys.argv) > 2 else MEMORY_MIB,
    )
