"""The same lifecycle through libvirtd (qemu:///system) instead of the embedded driver.
The test starts virtlogd and libvirtd itself when they are not running (no systemd here)."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest
from conftest import Vmctl, write_vagrantfile


def ensure_daemons() -> None:
    for daemon in ("virtlogd", "libvirtd"):
        if subprocess.run(["pgrep", "-x", daemon], capture_output=True).returncode != 0:
            binary = shutil.which(daemon) or f"/usr/sbin/{daemon}"
            subprocess.run([binary, "-d"], check=True)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if subprocess.run(["virsh", "-c", "qemu:///system", "version"], capture_output=True).returncode == 0:
            return
        time.sleep(0.3)
    raise AssertionError("libvirtd did not answer on qemu:///system")


@pytest.mark.skipif(os.geteuid() != 0, reason="qemu:///system needs root (CI runs as root)")
def test_lifecycle_on_qemu_system(vmctl: Vmctl, tiny_box: Path, project: Path) -> None:
    ensure_daemons()
    env = {"VMCTL_LIBVIRT_URI": "qemu:///system"}
    write_vagrantfile(project, """
        Vagrant.configure("2") do |config|
          config.vm.box = "vmctl/tiny"
          config.vm.hostname = "system-uri"
          config.vm.network "private_network", ip: "10.231.9.10"
          config.vm.provider :libvirt do |lv|
            lv.memory = 256
          end
        end
    """)
    try:
        vmctl("up", cwd=project, env=env)
        [m] = vmctl("status", "--json", cwd=project, env=env).json()["machines"]
        assert m["state"] == "running"
        listed = subprocess.run(["virsh", "-c", "qemu:///system", "list", "--name"],
                                capture_output=True, text=True, check=True).stdout.split()
        assert m["domain"] in listed
        assert vmctl("ssh", "-c", "hostname", cwd=project, env=env).stdout.strip() == "system-uri"
        # As root, the private network is a host-only bridge libvirtd attaches the machine to:
        # the host reaches the guest's SSH server on the private address.
        [net] = m["networks"]
        assert net["mode"] == "bridge"
        with socket.create_connection(("10.231.9.10", 22), timeout=15) as s:
            assert s.recv(64).startswith(b"SSH-")
        vmctl("halt", cwd=project, env=env)
        assert vmctl("status", "--json", cwd=project, env=env).json()["machines"][0]["state"] == "poweroff"
    finally:
        vmctl("destroy", "-f", cwd=project, env=env, check=False)
    listed = subprocess.run(["virsh", "-c", "qemu:///system", "list", "--all", "--name"],
                            capture_output=True, text=True, check=True).stdout.split()
    assert m["domain"] not in listed
    assert not Path("/sys/class/net", net["bridge"]).exists()
