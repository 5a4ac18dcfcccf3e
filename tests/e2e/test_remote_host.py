"""A machine on a remote libvirt host over qemu+ssh.

The "remote host" is on this machine (tests/e2e/remote_hosts.py): a network and mount
namespace with its own libvirtd (bench/vagrant.py's Sandbox) and its own sshd, joined to the
host by a veth pair. vmctl runs in a mount namespace of its own whose /root holds the user's
~/.ssh: a config with the alias `vmctl-remote` for the host, a test-only key and the host's
pinned key. Nothing is written to the real /root. The Vagrantfile names the host as vagrant-libvirt users do
(libvirt.host, username, connect_via_ssh), so the URI is composed from those settings.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import VMCTL, Vmctl, write_vagrantfile
from remote_hosts import RemoteHost as Host
from remote_hosts import User

pytestmark = pytest.mark.host_wide  # a network namespace, a veth pair, /run/sshd

ALIAS = "vmctl-remote"


class RemoteHost(Host):
    """The host and its user (remote_hosts.py)."""

    def __init__(self, root: Path) -> None:
        super().__init__(root, ALIAS, 18, "rh")
        self.person = User(root)

    def start(self) -> None:  # type: ignore[override]
        super().start(self.person)
        self.person.start()

    def user(self, *argv: str, cwd: Path) -> list[str]:
        return self.person.command(*argv, cwd=cwd)

    def stop(self) -> None:
        super().stop()
        self.person.stop()


@pytest.fixture(scope="module")
def remote_host() -> Iterator[RemoteHost]:
    root = Path(tempfile.mkdtemp(prefix="vmctl-remote-"))
    root.chmod(0o755)  # the host's QEMU (another user) reaches its pool under it
    host = RemoteHost(root)
    try:
        host.start()
        yield host
    finally:
        host.stop()
        shutil.rmtree(root, ignore_errors=True)


@pytest.mark.skipif(os.geteuid() != 0, reason="namespaces and a libvirtd need root (CI runs as root)")
def test_a_machine_on_a_remote_host_over_qemu_ssh(vmctl: Vmctl, tiny_box: Path, project: Path,
                                                   remote_host: RemoteHost) -> None:
    def run(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(remote_host.user(*VMCTL, *args, cwd=project), env=vmctl.env, capture_output=True,
                              text=True, timeout=600, stdin=subprocess.DEVNULL)
        assert not check or proc.returncode == 0, f"vmctl {args} exited {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
        return proc

    write_vagrantfile(project, f"""
        Vagrant.configure("2") do |config|
          config.vm.box = "vmctl/tiny"
          config.vm.hostname = "far-away"
          config.vm.provision "shell", inline: "echo provisioned > /tmp/provisioned"
          config.vm.network "private_network", ip: "192.168.92.10"
          config.vm.provider :libvirt do |lv|
            lv.host = "{ALIAS}"
            lv.username = "root"
            lv.connect_via_ssh = true
            lv.memory = 256
          end
        end
    """)
    try:
        run("up")
        [m] = json.loads(run("status", "--json").stdout)["machines"]
        assert (m["state"], m["host"]) == ("running", f"root@{ALIAS}")
        assert f"root@{ALIAS}" in run("status").stdout
        assert f"(host 127.0.0.1 of root@{ALIAS}, tcp)" in run("port").stdout
        # the domain and its volumes are the remote host's, the forward binds its 127.0.0.1
        assert m["domain"] in remote_host.virsh("list", "--name").split()
        volumes = remote_host.virsh("vol-list", "default")
        assert all(d["volume"] in volumes for d in m["disks"] if d.get("volume"))
        # the private network is a libvirt network of the host's daemon: that host reaches the guest
        assert "vmctl-192.168.92.0-24" in remote_host.virsh("net-list", "--name").split()
        banner = remote_host.run("timeout", "20", "bash", "-c", "exec 3<>/dev/tcp/192.168.92.10/22; head -c 4 <&3")
        assert banner.stdout == "SSH-"  # the guest's sshd, from the host, over the network
        listening = subprocess.run(remote_host.sandbox.command("ss", "-ltnH"), capture_output=True, text=True,
                                   check=True).stdout
        assert f"127.0.0.1:{m['ssh']['port']} " in listening
        # ssh, and a provisioner and the rsync folder went through the hop
        assert run("ssh", "-c", "hostname; cat /tmp/provisioned; ls /vagrant").stdout.split() == [
            "far-away", "provisioned", "Vagrantfile"]
        # ssh-config as plain ssh uses it: its ProxyCommand's ssh reads the user's ~/.ssh/config
        config = project / "ssh.config"
        config.write_text(run("ssh-config").stdout)
        assert "ProxyCommand" in config.read_text()
        plain = subprocess.run(remote_host.user("ssh", "-F", str(config), "default", "echo", "plain", cwd=project),
                               capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
        assert plain.stdout.strip() == "plain", plain.stderr
        # the host down: the machine's state is unknown, with the reason, and status does not fail
        remote_host.stop_sshd()
        try:
            [m2] = json.loads(run("status", "--json").stdout)["machines"]
            assert m2["state"] == "unknown" and ALIAS in m2["reason"], m2
        finally:
            remote_host.start_sshd()
        run("destroy", "-f")
        assert m["domain"] not in remote_host.virsh("list", "--all", "--name").split()
        left = remote_host.virsh("vol-list", "default")
        assert not [d for d in m["disks"] if d.get("volume") and d["volume"] in left], left
        assert "vmctl-192.168.92.0-24" not in remote_host.virsh("net-list", "--all", "--name").split()
    finally:
        run("destroy", "-f", check=False)
