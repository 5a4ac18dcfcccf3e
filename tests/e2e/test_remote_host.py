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
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
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
        super().__init__(root, ALIAS, 18, "rh", listen_tcp=True, tls=True)  # qemu+ssh, +tcp and +tls
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


def runner(vmctl: Vmctl, project: Path, remote_host: RemoteHost,  # type: ignore[no-untyped-def]
           home: Path | None = None):
    """vmctl run as the user in PROJECT (with its own VMCTL_HOME: another user of the host)."""
    env = {**vmctl.env, **({"VMCTL_HOME": str(home)} if home else {})}

    def run(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(remote_host.user(*VMCTL, *args, cwd=project), env=env, capture_output=True,
                              text=True, timeout=600, stdin=subprocess.DEVNULL)
        assert not check or proc.returncode == 0, f"vmctl {args} exited {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
        return proc

    return run


def remote_vagrantfile(project: Path, provision: str = "") -> None:
    write_vagrantfile(project, f"""
        Vagrant.configure("2") do |config|
          config.vm.box = "vmctl/tiny"
          config.vm.hostname = "far-away"
          {provision}
          config.vm.provider :libvirt do |lv|
            lv.host = "{ALIAS}"
            lv.username = "root"
            lv.connect_via_ssh = true
            lv.memory = 256
          end
        end
    """)


def machine_volumes(remote_host: RemoteHost) -> list[str]:
    """The volumes of vmctl machines in the host's pool, vmctl-ID-FILE (not the box's)."""
    listed = subprocess.run(remote_host.sandbox.command("virsh", "-c", "qemu:///system", "vol-list", "default"),
                            capture_output=True, text=True, timeout=60)
    if listed.returncode != 0:
        assert "no storage pool" in listed.stderr, listed.stderr  # not made yet: the first up makes it
        return []
    return [name for line in listed.stdout.splitlines()
            if re.match(r"vmctl-[0-9a-f]{12}-", name := line.strip().split(" ")[0])]


@pytest.mark.skipif(os.geteuid() != 0, reason="namespaces and a libvirtd need root (CI runs as root)")
def test_a_machine_on_a_remote_host_over_qemu_ssh(vmctl: Vmctl, tiny_box: Path, project: Path,
                                                   remote_host: RemoteHost) -> None:
    run = runner(vmctl, project, remote_host)
    remote_vagrantfile(project, 'config.vm.provision "shell", inline: "echo provisioned > /tmp/provisioned"\n'
                       '          config.vm.provision "ansible", playbook: "playbook.yml"\n'
                       '          config.vm.network "private_network", ip: "192.168.92.10"')
    # ansible-playbook runs on this computer and reaches the guest through the host (the
    # inventory's ProxyCommand); `raw` needs no Python in the tiny box
    (project / "playbook.yml").write_text(
        "- hosts: all\n  gather_facts: false\n  tasks:\n"
        "    - raw: echo \"ran by ansible on {{ inventory_hostname }}\" > /tmp/ansible-was-here\n")
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
            "far-away", "provisioned", "Vagrantfile", "playbook.yml"]
        assert run("ssh", "-c", "cat /tmp/ansible-was-here").stdout == "ran by ansible on default\n"
        # ssh-config as plain ssh uses it: its ProxyCommand's ssh reads the user's ~/.ssh/config
        config = project / "ssh.config"
        config.write_text(run("ssh-config").stdout)
        assert "ProxyCommand" in config.read_text()
        plain = subprocess.run(remote_host.user("ssh", "-F", str(config), "default", "echo", "plain", cwd=project),
                               capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
        assert plain.stdout.strip() == "plain", plain.stderr
        # port --json: where the ports are; port --tunnel: a local end for each, through the same hop
        ports = json.loads(run("port", "--json").stdout)["ports"]
        assert {(p["guest"], p["host"], p["libvirt_host"], p["tunnel"]) for p in ports} == {
            (22, m["ssh"]["port"], f"root@{ALIAS}", None)}
        tunnel = subprocess.Popen(remote_host.user(*VMCTL, "port", "--tunnel", "--json", cwd=project), env=vmctl.env,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL)
        try:
            assert tunnel.stdout is not None
            text = ""
            while not text.endswith("\n}\n"):  # the one JSON document, printed once the tunnels listen
                line = tunnel.stdout.readline()
                assert line, f"port --tunnel ended: {tunnel.wait()} {tunnel.stderr.read() if tunnel.stderr else ''}"
                text += line
            opened = json.loads(text)
            [p] = opened["ports"]
            local = p["tunnel"]["local_port"]
            assert p["tunnel"]["local_ip"] == "127.0.0.1" and ALIAS in opened["tunnel_command"]
            with socket.create_connection(("127.0.0.1", local), timeout=30) as conn:
                conn.settimeout(30)
                assert conn.recv(64).startswith(b"SSH-2.0-")  # the guest's sshd, through the host
        finally:
            tunnel.send_signal(signal.SIGINT)  # Ctrl-C
            _, err = tunnel.communicate(timeout=30)
        assert tunnel.returncode == 0 and "tunnels closed" in err, err
        with pytest.raises(OSError):
            socket.create_connection(("127.0.0.1", local), timeout=5).close()
        # another user (another VMCTL_HOME) on the same host: its machine takes other ports at
        # once (no collision to fix), and shares the box volume instead of sending it again
        other = project.parent / "other"
        other.mkdir(mode=0o755)
        other_home = Path(tempfile.mkdtemp(prefix="vmctl-e2e-other-"))
        other_home.chmod(0o755)
        run2 = runner(vmctl, other, remote_host, home=other_home)
        remote_vagrantfile(other)
        try:
            run2("box", "add", str(tiny_box / "vmctl-tiny.json"))
            up2 = run2("up")
            assert "uploading the box image" not in up2.stdout + up2.stderr, up2.stderr
            assert "fixed port collision" not in up2.stdout + up2.stderr, up2.stderr
            [o] = json.loads(run2("status", "--json").stdout)["machines"]
            assert o["ssh"]["port"] != m["ssh"]["port"] and o["domain"] != m["domain"]
            assert run2("ssh", "-c", "echo second").stdout.strip() == "second"
        finally:
            run2("destroy", "-f", check=False)
            shutil.rmtree(other_home, ignore_errors=True)
        assert run("ssh", "-c", "echo first").stdout.strip() == "first"  # the first user's machine: unharmed
        # halted, its SSH port taken on the host meanwhile: up chooses another (QEMU could not
        # bind it; vmctl cannot try the host's ports from here) and says so, as Vagrant does.
        # (SO_REUSEADDR, as QEMU binds: a connection of ansible's to the port may linger in TIME_WAIT)
        run("halt")
        old = m["ssh"]["port"]
        blocker = subprocess.Popen(remote_host.sandbox.command(
            "python3", "-c", "import socket, sys, time; s = socket.socket(); "
            "s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); s.bind(('127.0.0.1', int(sys.argv[1]))); "
            "s.listen(); print('ready', flush=True); time.sleep(600)", str(old)),
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE)
        try:
            assert blocker.stdout is not None and blocker.stdout.readline().strip() == b"ready"
            restarted = run("up")
            assert f"fixed port collision for 22 => {old}: now on port " in restarted.stderr + restarted.stdout
            [m3] = json.loads(run("status", "--json").stdout)["machines"]
            assert m3["state"] == "running" and m3["ssh"]["port"] != old
            assert run("ssh", "-c", "echo moved").stdout.strip() == "moved"
        finally:
            blocker.kill()
            blocker.wait()
        # the host down: the machine's state is unknown, with the reason, and status does not fail;
        # destroy cannot reach it: it says so and keeps the machine's record for the next try
        remote_host.stop_sshd()
        try:
            [m2] = json.loads(run("status", "--json").stdout)["machines"]
            assert m2["state"] == "unknown" and ALIAS in m2["reason"], m2
            failed = run("destroy", "-f", check=False)
            assert failed.returncode == 1 and "error:" in failed.stderr and ALIAS in failed.stderr, failed.stderr
        finally:
            remote_host.start_sshd()
        assert m["domain"] in remote_host.virsh("list", "--name").split()
        run("destroy", "-f")
        assert m["domain"] not in remote_host.virsh("list", "--all", "--name").split()
        left = remote_host.virsh("vol-list", "default")
        assert not [d for d in m["disks"] if d.get("volume") and d["volume"] in left], left
        assert "vmctl-192.168.92.0-24" not in remote_host.virsh("net-list", "--all", "--name").split()
    finally:
        run("destroy", "-f", check=False)


def domains(remote_host: RemoteHost) -> set[str]:
    return {n for n in remote_host.virsh("list", "--all", "--name").split() if n.startswith("vmctl-")}


def up_dropped_when(vmctl: Vmctl, project: Path, remote_host: RemoteHost,
                    made: Callable[[], bool]) -> tuple[str, str]:
    """`vmctl up`, the link to the host dropped as soon as MADE() says what it waits for is
    on the host; up's stdout and stderr (it must fail). The host stays down: start_sshd()."""
    up = subprocess.Popen(remote_host.user(*VMCTL, "up", cwd=project), env=vmctl.env, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 300
        while not made():
            assert up.poll() is None, f"up ended before the fault: {up.communicate()}"
            assert time.monotonic() < deadline, "nothing made after 300 s"
            time.sleep(0.05)
        remote_host.drop()
        out, err = up.communicate(timeout=300)
    finally:
        if up.poll() is None:
            up.kill()
            up.wait()
    assert up.returncode == 1, (out, err)
    assert "error:" in err and "could not be removed" in err and "vmctl destroy -f default" in err, err
    return out, err


@pytest.mark.skipif(os.geteuid() != 0, reason="namespaces and a libvirtd need root (CI runs as root)")
def test_the_link_to_the_host_drops_during_up(vmctl: Vmctl, tiny_box: Path, project: Path,
                                               remote_host: RemoteHost) -> None:
    """The link drops twice during up: once the machine's first volume is made, then (the
    next up) once its domain is defined. Each up fails with a clear error and the hint; status
    says the host is unreachable, then that the machine is half-made; the next up finishes the
    job (removes what is left, makes the machine). The link drops during destroy -g too; the
    next destroy leaves no domain or volume."""
    run = runner(vmctl, project, remote_host)
    remote_vagrantfile(project)
    assert not machine_volumes(remote_host) and not domains(remote_host)
    left: set[str] = set()
    try:
        up_dropped_when(vmctl, project, remote_host, lambda: bool(machine_volumes(remote_host)))
        left |= set(machine_volumes(remote_host))
        assert left  # what the fault left on the host: the next commands must remove it
        [m] = json.loads(run("status", "--json").stdout)["machines"]
        assert m["state"] == "unknown" and ALIAS in m["reason"] and m["interrupted"] is True, m
    finally:
        remote_host.start_sshd()
    try:
        assert "interrupted `vmctl up`" in run("status").stderr
        before = domains(remote_host)
        try:
            out, err = up_dropped_when(vmctl, project, remote_host, lambda: bool(domains(remote_host) - before))
            assert "cleaning up an interrupted creation" in out + err
            left |= set(machine_volumes(remote_host)) | {f"domain {d}" for d in domains(remote_host)}
        finally:
            remote_host.start_sshd()
        again = run("up")
        assert "cleaning up an interrupted creation" in again.stderr + again.stdout
        [m] = json.loads(run("status", "--json").stdout)["machines"]
        assert m["state"] == "running" and "interrupted" not in m, m
        now = set(machine_volumes(remote_host)) | {f"domain {d}" for d in domains(remote_host)}
        assert not left & now, left & now  # the interrupted ups' volumes and domain went
        assert domains(remote_host) == {m["domain"]}
        # the link drops during destroy -g (while the guest is asked to shut down): destroy
        # fails and keeps the record; the next destroy removes everything
        destroy = subprocess.Popen(remote_host.user(*VMCTL, "destroy", "-f", "-g", cwd=project), env=vmctl.env,
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL)
        try:
            assert destroy.stderr is not None
            said = ""
            while "shutting down gracefully" not in said:
                line = destroy.stderr.readline()
                assert line, f"destroy ended first: {said}"
                said += line
            remote_host.drop()
            out, err = destroy.communicate(timeout=300)
            assert destroy.returncode == 1 and "error:" in err, (out, said + err)
        finally:
            if destroy.poll() is None:
                destroy.kill()
                destroy.wait()
            remote_host.start_sshd()
        assert m["domain"] in domains(remote_host) and machine_volumes(remote_host)
    finally:
        run("destroy", "-f", check=False)
    assert not domains(remote_host)
    assert not machine_volumes(remote_host)


@pytest.mark.skipif(os.geteuid() != 0, reason="namespaces and a libvirtd need root (CI runs as root)")
@pytest.mark.parametrize("transport", ["tcp", "tls"])
def test_a_machine_on_a_remote_host_over_qemu_tcp_and_tls(vmctl: Vmctl, tiny_box: Path, project: Path,
                                                          remote_host: RemoteHost, transport: str) -> None:
    """libvirt's own transports (libvirt.uri = qemu+tcp://ADDRESS/system, and qemu+tls:// with
    the user's certificates in pkipath=): the connection is not SSH; the guest is still reached
    with OpenSSH through the host (the user's SSH settings for that address)."""
    run = runner(vmctl, project, remote_host)
    assert remote_host.pki is not None
    query = f"?pkipath={remote_host.pki / 'client'}" if transport == "tls" else ""
    write_vagrantfile(project, f"""
        Vagrant.configure("2") do |config|
          config.vm.box = "vmctl/tiny"
          config.vm.provider :libvirt do |lv|
            lv.uri = "qemu+{transport}://{remote_host.ip}/system{query}"
            lv.memory = 256
          end
        end
    """)
    try:
        run("up")
        [m] = json.loads(run("status", "--json").stdout)["machines"]
        assert (m["state"], m["host"]) == ("running", remote_host.ip), m
        assert m["domain"] in remote_host.virsh("list", "--name").split()
        assert run("ssh", "-c", f"echo over-{transport}").stdout.strip() == f"over-{transport}"
        run("destroy", "-f")
        assert m["domain"] not in remote_host.virsh("list", "--all", "--name").split()
        assert not machine_volumes(remote_host)
    finally:
        run("destroy", "-f", check=False)
