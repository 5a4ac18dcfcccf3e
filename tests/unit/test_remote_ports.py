"""Forwarded ports on a shared or remote libvirt host: the ports other vmctl domains hold
(read from their XML), the choice that skips the local probe for a remote host and says
when a machine's SSH port moved, and `vmctl port --tunnel`'s plan and ssh command."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from vmctl import network, port_tunnel
from vmctl.remote import Jump

NS = 'xmlns:qemu="http://libvirt.org/schemas/domain/qemu/1.0"'
META = '<metadata><vmctl:machine xmlns:vmctl="https://github.com/vmctl/vmctl/xmlns/machine/1" id="{id}" name="default" project="/p"/></metadata>'


def domain_xml(machine_id: str | None, netdev: str) -> str:
    meta = META.format(id=machine_id) if machine_id else ""
    return (f"<domain type='qemu' {NS}><name>d</name>{meta}<qemu:commandline>"
            f"<qemu:arg value='-netdev'/><qemu:arg value='{netdev}'/>"
            "<qemu:arg value='-device'/><qemu:arg value='virtio-net-pci,netdev=vmnet0'/>"
            "</qemu:commandline></domain>")


def test_a_domains_forwarded_ports_are_read_from_its_hostfwd_rules() -> None:
    xml = domain_xml("aaaaaaaaaaaa", "user,id=vmnet0,hostfwd=tcp:127.0.0.1:2200-:22,"
                     "hostfwd=udp:0.0.0.0:5353-10.0.2.15:53,hostfwd=tcp:[::1]:8080-:80,hostfwd=tcp::9000-:9000")
    assert network.domain_ports(xml) == {2200, 5353, 8080, 9000}
    assert network.domain_ports("<domain") == set()
    assert network.domain_ports("<domain><name>x</name></domain>") == set()


def test_other_machines_ports_are_reserved_not_our_own_nor_foreign_domains() -> None:
    xmls = {
        "ours": domain_xml("aaaaaaaaaaaa", "user,id=vmnet0,hostfwd=tcp:127.0.0.1:2200-:22"),
        "other-user": domain_xml("bbbbbbbbbbbb", "user,id=vmnet0,hostfwd=tcp:127.0.0.1:2201-:22"),
        "not-vmctl": domain_xml(None, "user,id=vmnet0,hostfwd=tcp:127.0.0.1:2202-:22"),
    }
    assert network.ports_of_machines(xmls, "aaaaaaaaaaaa") == {2201}
    assert network.ports_of_machines(xmls, None) == {2200, 2201}


def test_a_remote_hosts_ports_are_chosen_without_probing_this_computer(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_probe(host: str, port: int) -> bool:
        raise AssertionError("probed this computer")

    monkeypatch.setattr(network, "port_is_free", no_probe)
    assert network.pick_port(range(2200, 2300), {2200, 2201}, probe=False) == 2202


@pytest.fixture
def machine(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    """A machine of a one-machine project whose state says it is on a remote host."""
    from vmctl import paths
    from vmctl.machine import MachineState
    from vmctl.project import Project

    monkeypatch.setenv("VMCTL_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("VMCTL_LIBVIRT_URI", raising=False)
    (tmp_path / "Vagrantfile").write_text('Vagrant.configure("2") do |config|\n  config.vm.box = "b"\n'
                                          '  config.vm.network "forwarded_port", guest: 80, host: 8080, '
                                          'auto_correct: true\nend\n')
    m = Project(tmp_path / "Vagrantfile").machines(["default"])[0]
    home = paths.machines_dir() / "cccccccccccc"
    m._state = MachineState(id="cccccccccccc", domain="vmctl-p-default-cccccc", uri="qemu+ssh://root@kvm1/system",
                            disk=str(home / "disk.qcow2"), console_log=str(home / "console.log"), ssh_port=0,
                            ssh_user="vagrant", pool="default")
    m._state_loaded = True
    return m


def test_ports_held_by_another_users_domains_are_avoided_and_a_moved_ssh_port_is_said(
        machine, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setattr(network, "port_is_free", lambda host, port: (_ for _ in ()).throw(AssertionError(port)))
    monkeypatch.setattr(type(machine), "_ports_of_daemon", lambda self, st: {2200, 8080})
    said: list[str] = []
    st = machine.state
    machine._reserve_ports(st, said.append)  # a new machine: no SSH port before, nothing to say
    assert st.ssh_port == 2201 and [(f.guest, f.host) for f in st.forwards] == [(80, 2202)]
    assert said == ["==> default: fixed port collision for 80 => 8080: now on port 2202."]
    said.clear()
    # the machine was halted; its SSH port was taken meanwhile (QEMU could not bind it)
    machine._reserve_ports(st, said.append, exclude={2201})
    assert st.ssh_port == 2202  # its own ports are not taken from it
    assert said[0] == "==> default: fixed port collision for 22 => 2201: now on port 2202."
    # a restart whose port is still free keeps it, silently
    said.clear()
    machine._reserve_ports(st, said.append)
    assert st.ssh_port == 2202 and not [s for s in said if "22 =>" in s]


# --- vmctl port --tunnel ---------------------------------------------------------------------

PORTS = [
    {"id": "ssh", "guest": 22, "host": 2200, "host_ip": "127.0.0.1", "protocol": "tcp"},
    {"id": None, "guest": 80, "host": 8080, "host_ip": "0.0.0.0", "protocol": "tcp"},
    {"id": None, "guest": 53, "host": 5353, "host_ip": "127.0.0.1", "protocol": "udp"},
    {"id": None, "guest": 443, "host": 8443, "host_ip": "::1", "protocol": "tcp"},
]


def test_a_tunnel_keeps_the_port_number_when_it_is_free_here() -> None:
    spare = iter([40001, 40002])
    got = port_tunnel.plan(PORTS, is_free=lambda port: port != 8080, spare=lambda: next(spare))
    assert [(t.guest, t.local_port, t.remote_ip, t.remote_port) for t in got] == [
        (22, 2200, "127.0.0.1", 2200), (80, 40001, "127.0.0.1", 8080), (443, 8443, "::1", 8443)]


def test_two_tunnels_never_share_a_local_port() -> None:
    spare = iter([40001, 2200, 40002])
    got = port_tunnel.plan([PORTS[0], {**PORTS[0], "guest": 23}], is_free=lambda port: True, spare=lambda: next(spare))
    assert [t.local_port for t in got] == [2200, 40001]


def test_the_tunnels_ssh_command_goes_through_the_same_hop_as_vmctl_ssh() -> None:
    got = port_tunnel.plan(PORTS, is_free=lambda port: True)
    argv = port_tunnel.ssh_argv(Jump("kvm1", "root", 2222, "/home/u/.ssh/kvm"), got)
    assert argv == [
        "ssh", "-N", "-o", "BatchMode=yes", "-o", "ExitOnForwardFailure=yes", "-o", "ServerAliveInterval=15",
        "-o", "ServerAliveCountMax=3", "-l", "root", "-p", "2222", "-i", "/home/u/.ssh/kvm",
        "-L", "127.0.0.1:2200:127.0.0.1:2200", "-L", "127.0.0.1:8080:127.0.0.1:8080",
        "-L", "127.0.0.1:8443:[::1]:8443", "--", "kvm1"]
    # an alias of the user's ssh config: nothing but the name, the config supplies the rest
    assert port_tunnel.ssh_argv(Jump("[fe80::1]"), got[:1])[-3:] == ["127.0.0.1:2200:127.0.0.1:2200", "--", "fe80::1"]
    assert port_tunnel.command_line(Jump("my host"), got[:1]).endswith("-- 'my host'")


@pytest.mark.parametrize(("host_ip", "target"), [
    ("127.0.0.1", "127.0.0.1"), ("0.0.0.0", "127.0.0.1"), ("", "127.0.0.1"), (None, "127.0.0.1"),
    ("::", "127.0.0.1"), ("[::]", "127.0.0.1"), ("192.168.1.5", "192.168.1.5"), ("::1", "::1"),
])
def test_a_wildcard_forward_is_reached_on_the_hosts_loopback(host_ip: str | None, target: str) -> None:
    assert port_tunnel.target_address(host_ip) == target


def test_listening_ports_are_read_without_binding_them() -> None:
    text = ("  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n"
            "   0: 0100007F:0898 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1\n"
            "   1: 00000000:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 2\n"
            "   2: 0100007F:0899 0100007F:D2F0 01 00000000:00000000 00:00000000 00000000     0        0 3\n"
            "   3: 0502A8C0:0050 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 4\n")
    assert port_tunnel.parse_listening(text) == {2200, 8080}


def test_the_tunnel_holds_until_ctrl_c_and_takes_ssh_down(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """hold() with a stand-in for ssh that listens like ssh -L would: READY once the port
    listens, Ctrl-C (KeyboardInterrupt) ends it with 0 and the process with it."""
    fake = tmp_path / "ssh"
    fake.write_text("#!/bin/sh\nexec python3 -c 'import socket,time; s=socket.socket(); "
                    "s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); "
                    "s.bind((\"127.0.0.1\", int(\"'\"$PORT\"'\"))); s.listen(); time.sleep(60)'\n")
    fake.chmod(0o755)
    port = port_tunnel.ephemeral_port()
    monkeypatch.setenv("PORT", str(port))
    monkeypatch.setenv("PATH", f"{tmp_path}:{os.environ['PATH']}")
    started: list[object] = []

    def ready() -> None:
        started.append(1)
        raise KeyboardInterrupt

    t = port_tunnel.Tunnel(guest=22, remote_ip="127.0.0.1", remote_port=2200, local_port=port)
    assert port_tunnel.hold(Jump("kvm1"), [t], ready=ready, timeout=20) == 0
    assert started == [1]
    assert port not in port_tunnel.listening()


def test_an_ssh_that_fails_before_the_tunnels_open_is_a_clear_error(tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    from vmctl.errors import VmctlError

    fake = tmp_path / "ssh"
    fake.write_text("#!/bin/sh\necho 'ssh: connect to host kvm1 port 22: Connection refused' >&2\nexit 255\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}:{os.environ['PATH']}")
    t = port_tunnel.Tunnel(guest=22, remote_ip="127.0.0.1", remote_port=2200, local_port=port_tunnel.ephemeral_port())
    with pytest.raises(VmctlError, match=r"ssh to root@kvm1 ended \(exit status 255\) before the tunnels were open"):
        port_tunnel.hold(Jump("kvm1", "root"), [t], ready=lambda: None)


def test_a_half_made_machine_is_interrupted_only_when_no_command_is_at_work_on_it(machine) -> None:  # type: ignore[no-untyped-def]
    """An up that lost its host leaves phase "creating" behind: status says so, unless an up
    holds the machine's lock right now (then it is being made, not half-made)."""
    from vmctl.state import file_lock

    assert machine.state.phase == "creating" and machine.interrupted()
    with file_lock(machine.lock_name()):
        assert not machine.interrupted()
    machine.state.phase = "created"
    assert not machine.interrupted()


@pytest.mark.parametrize(("message", "busy", "local", "first", "again"), [
    ("Could not set up host forwarding rule 'tcp:127.0.0.1:2200-:22'", False, False, False, True),
    ("Address already in use", False, True, False, True),
    # libvirt 9 often says only that QEMU died early: a remote host gets one more try
    ("failed to connect to monitor socket: Connection refused", False, False, True, True),
    ("failed to connect to monitor socket: Connection refused", False, False, False, False),
    # on this computer: when one of the machine's ports is taken
    ("internal error: qemu unexpectedly closed the monitor", True, True, False, True),
    ("internal error: qemu unexpectedly closed the monitor", False, True, True, False),
    ("unsupported configuration: no such device", True, False, True, False),
])
def test_a_start_that_failed_is_retried_with_other_ports_only_for_a_likely_clash(
        message: str, busy: bool, local: bool, first: bool, again: bool) -> None:
    from vmctl.machine.boot import port_clash

    assert port_clash(message, busy=busy, local=local, first=first) is again
