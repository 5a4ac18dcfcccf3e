"""Private networks across libvirt hosts: which become udp tunnels, and their ends (tunnels.py)."""

from __future__ import annotations

from dataclasses import replace

import pytest

from vmctl import tunnels
from vmctl.errors import MachineError
from vmctl.vagrantfile.model import PrivateNetwork

A, B = "qemu+ssh://root@kvm-a/system", "qemu+ssh://kvm-b:2222/system"
ADDRESSES = {"kvm-a": "192.0.2.10", "kvm-b": "198.51.100.20"}


def net(ip: str = "192.168.90.10", **kw: object) -> PrivateNetwork:
    return PrivateNetwork(ip=ip, netmask="255.255.255.0", subnet="192.168.90.0/24", **kw)  # type: ignore[arg-type]


def member(name: str, uri: str, *nets: PrivateNetwork, key: str = "wire") -> tunnels.Member:
    return tunnels.Member(name, uri, tuple((key, n) for n in nets))


def address_of(uri: str) -> str:
    key = tunnels.host_key(uri)
    assert key is not None
    return ADDRESSES[key]


def test_a_network_across_two_hosts_becomes_a_udp_tunnel_between_their_addresses() -> None:
    web, db = member("web", A, net("192.168.90.10")), member("db", B, net("192.168.90.11"))
    [a] = tunnels.plan(web, [web, db], address_of)
    [b] = tunnels.plan(db, [web, db], address_of)
    web_port, db_port = tunnels.tunnel_port("wire", "web"), tunnels.tunnel_port("wire", "db")
    assert 40000 <= web_port < 50000 and 40000 <= db_port < 50000 and web_port != db_port
    assert (a.tunnel_type, a.tunnel_ip, a.tunnel_port, a.tunnel_local_ip, a.tunnel_local_port) == (
        "udp", "198.51.100.20", db_port, "192.0.2.10", web_port)
    assert (b.tunnel_ip, b.tunnel_port, b.tunnel_local_ip, b.tunnel_local_port) == (
        "192.0.2.10", web_port, "198.51.100.20", db_port)
    assert a.ip == "192.168.90.10"  # the guest's own settings stay


def test_what_the_vagrantfile_wrote_is_used_and_the_other_end_agrees() -> None:
    web = member("web", A, net(tunnel_type="udp", tunnel_local_port=41001, tunnel_port=41002,
                               tunnel_local_ip="10.9.0.1"))
    db = member("db", B, net("192.168.90.11"))
    [a] = tunnels.plan(web, [web, db], address_of)
    [b] = tunnels.plan(db, [web, db], address_of)
    assert (a.tunnel_ip, a.tunnel_port, a.tunnel_local_ip, a.tunnel_local_port) == (
        "198.51.100.20", 41002, "10.9.0.1", 41001)
    assert (b.tunnel_ip, b.tunnel_port, b.tunnel_local_ip, b.tunnel_local_port) == (
        "10.9.0.1", 41001, "198.51.100.20", 41002)


def test_crossing_names_the_networks_that_go_to_another_host_without_asking_addresses() -> None:
    web = tunnels.Member("web", A, (("wire", net()), ("local", net("192.168.80.10")), ("wire", net(public=True))))
    db = tunnels.Member("db", B, (("wire", net("192.168.90.11")),))
    cache = tunnels.Member("cache", A, (("local", net("192.168.80.11")),))
    assert tunnels.crossing(web, [web, db, cache]) == {0}
    assert tunnels.crossing(cache, [web, db, cache]) == set()


def test_machines_on_one_host_keep_their_network() -> None:
    web, db = member("web", A, net()), member("db", A.replace("root@", ""), net("192.168.90.11"))
    assert tunnels.plan(web, [web, db], address_of) == [net()]
    alone = member("solo", A, net())
    assert tunnels.plan(alone, [alone], address_of) == [net()]
    # another network of the project is another wire
    other = member("db", B, net("192.168.90.11"), key="other-wire")
    assert tunnels.plan(web, [web, other], address_of) == [net()]


def test_what_a_tunnel_between_hosts_cannot_be_is_refused() -> None:
    web, db, cache = member("web", A, net()), member("db", B, net("192.168.90.11")), member("cache", A, net("192.168.90.12"))
    with pytest.raises(MachineError, match="joins 3 machines on several hosts.*point-to-point"):
        tunnels.plan(web, [web, db, cache], address_of)
    with pytest.raises(MachineError, match="multicast stays on one host"):
        tunnels.plan(member("web", A, net(tunnel_type="mcast")), [db], address_of)
    with pytest.raises(MachineError, match="wants DHCP"):
        tunnels.plan(member("web", A, replace(net(), ip=None, type="dhcp")), [db], address_of)
    with pytest.raises(MachineError, match="loopback address 127.0.0.1"):
        tunnels.plan(member("web", A, net(tunnel_type="udp", tunnel_local_ip="127.0.0.1")), [db], address_of)
    # a machine on this computer: its address as the remote host sees it is not known here
    with pytest.raises(MachineError, match="this computer") as info:
        tunnels.plan(member("web", "qemu:///system", net()), [db], tunnels.host_address)
    assert "libvirt__tunnel_ip" in (info.value.hint or "")


def test_a_hosts_address_is_the_hostname_openssh_would_connect_to() -> None:
    seen: list[list[str]] = []

    def ssh_g(out: str):  # noqa: ANN202
        def run(argv: list[str]) -> str:
            seen.append(argv)
            return out
        return run

    assert tunnels.host_address(A, run=ssh_g("user root\nhostname 10.233.30.2\nport 22\n")) == "10.233.30.2"
    assert seen[-1] == ["ssh", "-G", "-l", "root", "--", "kvm-a"]
    tunnels.host_address(B, run=ssh_g("hostname 10.0.0.7\n"))
    assert seen[-1] == ["ssh", "-G", "-p", "2222", "--", "kvm-b"]
    # a name is resolved; what cannot be an end of a tunnel stops, with a hint
    for out, message in (("hostname localhost\n", "loopback"), ("hostname 224.0.0.1\n", "unicast"),
                         ("hostname no-such-host.invalid\n", "no IPv4 address")):
        with pytest.raises(MachineError, match=message) as info:
            tunnels.host_address(A, run=ssh_g(out))
        assert "libvirt__tunnel_ip" in (info.value.hint or "")
