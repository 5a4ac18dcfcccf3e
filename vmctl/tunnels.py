"""Private networks across libvirt hosts: a point-to-point UDP tunnel between two guests' NICs.

A private network of a project is one wire, named by its key (network.segment_key: the
libvirt__network_name, else the project and the subnet). When all the machines on a wire run
on one host it is that host's (a libvirt network, a bridge, a multicast segment on its
loopback: vmctl/hostnet.py decides). When they run on two hosts, the wire becomes vagrant-
libvirt's "udp" tunnel: each guest's NIC is a QEMU socket that sends its frames to the other
host's address and receives them on its own host's address (`-netdev socket,udp=...,
localaddr=...`). What the Vagrantfile wrote (libvirt__tunnel_ip / _port / _local_ip /
_local_port) is used as it is; vmctl fills in the rest:

- a host's address: what this computer resolves the host to. For an ssh URI that is the
  HostName OpenSSH would connect to (`ssh -G`, so an alias of ~/.ssh/config counts), then
  resolved to an IPv4 address if it is a name; for tcp/tls URIs, the URI's host resolved.
  The hosts must reach each other at those addresses (docs/remote.md).
- the ports: each end's own, from a hash of the wire's key and the machine's name, in
  40000-49999 (tunnel_port).

A tunnel joins two NICs: a wire with three or more machines on more than one host is
refused (QEMU's udp socket has one peer), and so are DHCP on such a wire (no host serves it)
and a "mcast" tunnel across hosts (multicast stays on one host's loopback).
"""

from __future__ import annotations

import hashlib
import socket
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

from vmctl import remote, untrusted
from vmctl import run as funnel
from vmctl.errors import MachineError, VmctlError
from vmctl.vagrantfile.model import PrivateNetwork

PORTS = (40000, 50000)


@dataclass(frozen=True)
class Member:
    """A machine of the project with the host it runs on and its networks (key, network)."""

    name: str
    uri: str
    networks: tuple[tuple[str, PrivateNetwork], ...]


def host_key(uri: str) -> str | None:
    """Which host URI runs on, as far as sharing a wire goes: the host's name (the user and
    port do not make another host), or None for this computer."""
    jump = remote.jump_of(uri)
    return jump.host.lower() if jump is not None else None


def tunnel_port(key: str, machine: str) -> int:
    """The port MACHINE's end of the tunnel of network KEY listens on. Each end has its own,
    so the tunnel works even when both "hosts" turn out to be one address."""
    digest = hashlib.sha256(f"udp-tunnel\0{key}\0{machine}".encode()).digest()
    return PORTS[0] + int.from_bytes(digest[:4], "big") % (PORTS[1] - PORTS[0])


def where(uri: str) -> str:
    return remote.host_of(uri) or "this computer"


def crossing(me: Member, others: Sequence[Member]) -> set[int]:
    """The indices of ME's networks that it shares with a machine of OTHERS on another host
    (those plan makes tunnels of), without asking for any address."""
    out = set()
    for i, (key, net) in enumerate(me.networks):
        if net.public:
            continue
        hosts = {host_key(m.uri) for m in others if m.name != me.name
                 for k, n in m.networks if k == key and not n.public}
        if hosts - {host_key(me.uri)}:
            out.add(i)
    return out


def plan(me: Member, others: Sequence[Member], address_of: Callable[[str], str]) -> list[PrivateNetwork]:
    """ME's networks, each one it shares with a machine of OTHERS on another host made the udp
    tunnel to that machine (tunnel_* filled in); the rest as they are. ADDRESS_OF(uri): the
    IPv4 address of URI's host (host_address)."""
    out = []
    for key, net in me.networks:
        if net.public:
            out.append(net)
            continue
        peers = [(m, n) for m in others if m.name != me.name for k, n in m.networks if k == key and not n.public]
        if {host_key(me.uri)} == {host_key(m.uri) for m, _ in peers} or not peers:
            out.append(net)
            continue
        label = net.name or net.ip or net.subnet
        if len(peers) != 1:
            on = ", ".join(f"{m.name} ({where(m.uri)})" for m, _ in [(me, net), *peers])
            raise MachineError(f"the private network {label} joins {len(peers) + 1} machines on several hosts: {on}; "
                               "between hosts vmctl joins exactly two machines (a point-to-point UDP tunnel)",
                               hint="put the machines of this network on one host, or give each pair of machines "
                               "on two hosts a network of its own")
        peer, pnet = peers[0]
        if "mcast" in (net.tunnel_type, pnet.tunnel_type):
            raise MachineError(f"the private network {label} asks for a multicast tunnel (libvirt__tunnel_type: "
                               f"\"mcast\"), and its machines {me.name} and {peer.name} are on two hosts "
                               f"({where(me.uri)}, {where(peer.uri)}): multicast stays on one host",
                               hint="leave libvirt__tunnel_type out (vmctl makes a udp tunnel), or set it to \"udp\"")
        if net.type == "dhcp" or net.dhcp_enabled:
            raise MachineError(f"the private network {label} of {me.name} wants DHCP, and its machines are on two hosts "
                               f"({where(me.uri)}, {where(peer.uri)}): the UDP tunnel between them has no DHCP server",
                               hint="give each machine a static ip: on this network")
        remote_ip = net.tunnel_ip or pnet.tunnel_local_ip
        local_ip = net.tunnel_local_ip or pnet.tunnel_ip
        for end, uri in ((remote_ip, peer.uri), (local_ip, me.uri)):
            if end is None and host_key(uri) is None:
                host_address(uri)  # stops: this computer's address is not known here
        filled = replace(
            net, tunnel_type="udp",
            tunnel_ip=remote_ip or address_of(peer.uri),
            tunnel_port=net.tunnel_port or pnet.tunnel_local_port or tunnel_port(key, peer.name),
            tunnel_local_ip=local_ip or address_of(me.uri),
            tunnel_local_port=net.tunnel_local_port or pnet.tunnel_port or tunnel_port(key, me.name),
        )
        for address in (filled.tunnel_ip, filled.tunnel_local_ip):
            assert address is not None
            if untrusted.is_loopback(address):
                raise MachineError(f"the private network {label} joins {me.name} and {peer.name} on two hosts, and one "
                                   f"end of its tunnel is the loopback address {address}",
                                   hint="set libvirt__tunnel_ip and libvirt__tunnel_local_ip to the hosts' addresses")
        out.append(filled)
    return out


def host_address(uri: str, *, run: Callable[[list[str]], str] | None = None) -> str:
    """The IPv4 address of URI's host as this computer reaches it (see the module's doc).
    Stops when it cannot say: this computer's own address is not known here."""
    jump = remote.jump_of(uri)
    if jump is None:
        raise MachineError("a private network joins a machine on this computer and one on a remote host: vmctl does "
                           "not know which address of this computer the remote host reaches",
                           hint="set libvirt__tunnel_ip and libvirt__tunnel_local_ip on that network in both "
                           "machines (the other host's address and this one's), or run both on remote hosts")
    name = jump.host.strip("[]")
    if uri.split(":", 1)[0].endswith(("+ssh", "+libssh", "+libssh2")):
        argv = ["ssh", "-G", *(["-l", jump.user] if jump.user else []), *(["-p", str(jump.port)] if jump.port else []),
                "--", name]
        try:
            out = run(argv) if run is not None else funnel.run(
                argv, purpose=f"learn the address of {jump.host} (ssh -G)", timeout=20).stdout.decode(errors="replace")
        except VmctlError as exc:
            raise MachineError(f"could not ask OpenSSH for the address of {jump.host}: {exc.message}",
                               hint="set libvirt__tunnel_ip and libvirt__tunnel_local_ip on the network") from exc
        for line in out.splitlines():
            word, _, value = line.partition(" ")
            if word.lower() == "hostname" and value.strip():
                name = value.strip()
                break
    address = untrusted.parse_address(name)
    if address is None:
        try:
            found = socket.getaddrinfo(name, None, socket.AF_INET, socket.SOCK_DGRAM)
        except (OSError, UnicodeError) as exc:
            raise MachineError(f"the host {jump.host} ({name}) has no IPv4 address here: {exc}",
                               hint="set libvirt__tunnel_ip and libvirt__tunnel_local_ip on the network") from exc
        address = str(found[0][4][0])
    problem = untrusted.tunnel_address_problem(address)
    if problem or untrusted.is_loopback(address):
        raise MachineError(f"the host {jump.host} is {address} here, which cannot be an end of a tunnel between hosts"
                           f" ({problem or 'a loopback address'})",
                           hint="set libvirt__tunnel_ip and libvirt__tunnel_local_ip on the network")
    return address
