"""One project spread over two libvirt hosts, reached over qemu+ssh.

Two "remote hosts" on this machine (tests/e2e/remote_hosts.py): each a libvirtd and an sshd in
a network and mount namespace of its own, joined to this machine by a veth pair and to each
other by another, reached as the aliases `vmctl-host-a` and `vmctl-host-b` of the user's
~/.ssh/config (in vmctl's own mount namespace). A two-machine project names one host per
machine: alpha in a per-machine provider block, beta by placement (VMCTL_HOSTS lists a host
that cannot be reached and host b); they share a private network, which vmctl makes a UDP
tunnel between the two hosts' addresses. One `up` serves every check.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import VMCTL, Vmctl, write_vagrantfile
from remote_hosts import RemoteHost, User, link

pytestmark = [
    pytest.mark.host_wide,  # network namespaces, veth pairs, /run/sshd
    pytest.mark.skipif(os.geteuid() != 0, reason="namespaces and a libvirtd need root (CI runs as root)"),
]

PROJECT = """
Vagrant.configure("2") do |config|
  config.vm.box = "vmctl/tiny"
  config.vm.provision "shell", inline: "echo provisioned on $(hostname) > /tmp/provisioned"
  config.vm.provider :libvirt do |lv|
    lv.memory = 256
  end
  config.vm.define "alpha" do |m|
    m.vm.hostname = "alpha"
    m.vm.network "private_network", ip: "192.168.91.10"
    m.vm.provider :libvirt do |lv|
      lv.uri = "qemu+ssh://root@vmctl-host-a/system"
    end
  end
  config.vm.define "beta" do |m|  # names no host: placed by VMCTL_HOSTS
    m.vm.hostname = "beta"
    m.vm.network "private_network", ip: "192.168.91.11"
  end
end
"""


@dataclass
class Cluster:
    folder: Path
    user: User
    hosts: dict[str, RemoteHost]  # machine name -> its host
    vmctl: Vmctl
    machines: dict[str, dict]  # status --json after up, by name

    def run(self, *args: str, check: bool = True, timeout: float = 600,
            env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(self.user.command(*VMCTL, *args, cwd=self.folder), env={**self.vmctl.env, **(env or {})},
                              capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)
        assert not check or proc.returncode == 0, f"vmctl {args} exited {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
        return proc

    def ssh(self, name: str, command: str) -> str:
        return self.run("ssh", name, "-c", command).stdout


@pytest.fixture(scope="module")
def cluster(vmctl: Vmctl, tiny_box: Path) -> Iterator[Cluster]:
    root = Path(tempfile.mkdtemp(prefix="vmctl-two-hosts-"))
    root.chmod(0o755)  # each host's QEMU (another user) reaches its pool under it
    user = User(root)
    pid = os.getpid()
    a = RemoteHost(root / "a", "vmctl-host-a", 21, "2ha", netns=f"vmctl-2ha-{pid}")
    b = RemoteHost(root / "b", "vmctl-host-b", 22, "2hb", netns=f"vmctl-2hb-{pid}")
    folder = root / "project"
    started: list[RemoteHost] = []
    c: Cluster | None = None
    try:
        for host in (a, b):
            host.root.mkdir()
            started.append(host)
            host.start(user)
        link(a, b, 23, "2h")
        user.start()
        folder.mkdir()
        write_vagrantfile(folder, PROJECT)
        c = Cluster(folder, user, {"alpha": a, "beta": b}, vmctl, {})
        hosts = "qemu+ssh://root@vmctl-nowhere/system, qemu+ssh://root@vmctl-host-b/system"
        up = c.run("up", timeout=900, env={"VMCTL_HOSTS": hosts})
        assert "vmctl-nowhere is left out" in up.stdout + up.stderr, up.stdout + up.stderr
        assert "beta: placed on root@vmctl-host-b" in up.stderr, up.stderr  # (progress goes to stderr)
        c.machines = {m["name"]: m for m in json.loads(c.run("status", "--json").stdout)["machines"]}
        yield c
    finally:
        try:
            if c is not None:
                c.run("destroy", "-f", check=False, timeout=300)
        finally:
            user.stop()
            for host in started:
                host.stop()
            shutil.rmtree(root, ignore_errors=True)


def test_each_machine_runs_on_its_own_host(cluster: Cluster) -> None:
    m = cluster.machines
    assert {(n, x["state"], x["host"]) for n, x in m.items()} == {
        ("alpha", "running", "root@vmctl-host-a"), ("beta", "running", "root@vmctl-host-b")}
    for name, host in cluster.hosts.items():
        assert host.virsh("list", "--name").split() == [m[name]["domain"]]
    text = cluster.run("status").stdout
    assert "root@vmctl-host-a" in text and "root@vmctl-host-b" in text
    listed = json.loads(cluster.run("global-status", "--json").stdout)["machines"]
    assert {(x["name"], x["state"], x["host"]) for x in listed if x["project"] == str(cluster.folder)} == {
        ("alpha", "running", "root@vmctl-host-a"), ("beta", "running", "root@vmctl-host-b")}
    # the private network is a udp socket from each host's address to the other's
    assert [(n["mode"], n["ip"]) for n in m["alpha"]["networks"]] == [("udp", "192.168.91.10")]
    a, b = cluster.hosts["alpha"], cluster.hosts["beta"]
    xml = a.virsh("dumpxml", m["alpha"]["domain"])
    assert f"localaddr={a.ip}:" in xml and f"udp={b.ip}:" in xml, xml
    assert f"localaddr={b.ip}:" in b.virsh("dumpxml", m["beta"]["domain"])


def test_ssh_and_the_provisioner_on_both_hosts(cluster: Cluster) -> None:
    assert cluster.ssh("alpha", "hostname; cat /tmp/provisioned").split() == [
        "alpha", "provisioned", "on", "alpha"]
    assert cluster.ssh("beta", "hostname; cat /tmp/provisioned; ls /vagrant").split() == [
        "beta", "provisioned", "on", "beta", "Vagrantfile"]


def test_ssh_config_with_plain_ssh(cluster: Cluster) -> None:
    config = cluster.folder / "ssh.config"
    config.write_text(cluster.run("ssh-config").stdout)
    for name in ("alpha", "beta"):
        plain = subprocess.run(cluster.user.command("ssh", "-F", str(config), name, "hostname", cwd=cluster.folder),
                               capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
        assert plain.stdout.strip() == name, plain.stderr


def test_the_guests_reach_each_other_over_the_private_network(cluster: Cluster) -> None:
    # (ssh -c fails with the command: ping exits 0 once a reply came; the first may wait for ARP)
    cluster.ssh("alpha", "ping -c 1 -W 10 192.168.91.11 || ping -c 1 -W 10 192.168.91.11")
    cluster.ssh("beta", "ping -c 1 -W 10 alpha")  # by name: /etc/hosts names the project's machines


def test_a_host_that_is_down_leaves_the_other_machine_answered(cluster: Cluster) -> None:
    b = cluster.hosts["beta"]
    b.stop_sshd()
    try:
        status = cluster.run("status", "--json")  # exits 0
        m = {x["name"]: x for x in json.loads(status.stdout)["machines"]}
        assert m["alpha"]["state"] == "running"
        assert m["beta"]["state"] == "unknown" and "vmctl-host-b" in m["beta"]["reason"], m["beta"]
    finally:
        b.start_sshd()


def test_destroy_leaves_nothing_on_either_host(cluster: Cluster) -> None:
    volumes = {name: [d["volume"] for d in m["disks"] if d.get("volume")] for name, m in cluster.machines.items()}
    assert all(volumes.values()), volumes
    cluster.run("destroy", "-f", timeout=300)
    for name, host in cluster.hosts.items():
        assert host.virsh("list", "--all", "--name").split() == []
        left = host.virsh("vol-list", "default")
        assert not [v for v in volumes[name] if v in left], left
        assert "vmctl-" not in host.virsh("net-list", "--all", "--name")  # no libvirt network was made for it
    assert json.loads(cluster.run("status", "--json").stdout)["machines"][0]["state"] == "not_created"
