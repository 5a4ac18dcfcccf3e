"""Libvirt-managed networks: a private network's host-only network when vmctl talks to a
libvirt daemon (qemu:///system, or a remote .../system), as vagrant-libvirt makes them.

Which kind a private network gets is decided in one place, hostnet.mode ("libvirt" here);
the network itself is planned by hostnet.plan (the host's address, the DHCP range, the
forward mode, the same checks), so both kinds mean the same settings. The daemon, not
vmctl, then makes the bridge, its address, its dnsmasq (DHCP) and its forwarding rules:
what lets a user who is not root (in the libvirt group) get a network the host reaches.

A network is named by libvirt__network_name, else `vmctl-` + its subnet (192.168.56.0/24
-> vmctl-192.168.56.0-24): machines of every project (and every user of the daemon) that
name the same network share it. vmctl marks the networks it defines (<metadata>, NS
below); it removes such a network when the last domain naming it is undefined (any domain
of the daemon: another tool's machine keeps it), and never removes a network it did not
define (the user's "default", say), which it uses as it is when named.
"""

from __future__ import annotations

import hashlib
import ipaddress
import logging
import xml.etree.ElementTree as ET
from collections.abc import Iterable
from dataclasses import dataclass, replace
from typing import Any

from vmctl import hostnet, untrusted
from vmctl.errors import MachineError
from vmctl.vagrantfile.model import PrivateNetwork

log = logging.getLogger("vmctl.libvirtnet")

NS = "https://github.com/vmctl/vmctl/xmlns/network/1"
ET.register_namespace("vmctl", NS)
BRIDGE_PREFIX = "vmnet-"  # not hostnet's vmctl-: those are vmctl's own, per VMCTL_HOME


@dataclass(frozen=True)
class LibvirtNetwork:
    """A private network's libvirt network: NAME on the daemon, as SPEC describes it (its
    bridge is the one vmctl gives a network it defines)."""

    name: str
    spec: hostnet.HostNetwork

    @property
    def named(self) -> bool:
        """Whether the Vagrantfile named it (libvirt__network_name)."""
        return self.spec.key.startswith("name:")


def network_name(net: PrivateNetwork) -> str:
    return net.name or "vmctl-" + str(ipaddress.ip_network(net.subnet)).replace("/", "-")


def bridge_name(name: str) -> str:
    # Shared by every user of the daemon: derived from the network's name alone.
    return (BRIDGE_PREFIX + hashlib.sha256(name.encode()).hexdigest())[:hostnet.IFNAMSIZ]


def plan(net: PrivateNetwork) -> LibvirtNetwork:
    """NET's libvirt network, with hostnet.plan's defaults and checks."""
    name = network_name(net)
    if not name or len(name) > 100 or any(c in name for c in "/\\\0\n") or name.startswith("."):
        raise MachineError(f"libvirt__network_name {name!r} cannot name a libvirt network",
                           hint="use letters, digits, '-', '_' and '.'")
    spec = hostnet.plan(net, "")
    return LibvirtNetwork(name=name, spec=replace(spec, bridge=bridge_name(name)))


def network_xml(lnet: LibvirtNetwork) -> str:
    """The libvirt network vmctl defines for LNET: isolated (no <forward>) unless its forward
    mode is nat or route; DHCP on the range planned; marked as vmctl's."""
    spec = lnet.spec
    root = ET.Element("network")
    ET.SubElement(root, "name").text = lnet.name
    meta = ET.SubElement(root, "metadata")
    ET.SubElement(meta, f"{{{NS}}}network", {"key": spec.key})
    if spec.forward_mode in ("nat", "route"):
        fwd = ET.SubElement(root, "forward", {"mode": spec.forward_mode})
        if spec.forward_device is not None:
            if untrusted.host_device_problem(spec.forward_device, public=False):
                raise ValueError(f"forward device {spec.forward_device!r}")
            fwd.set("dev", spec.forward_device)
    elif spec.forward_mode != "none":
        raise ValueError(f"forward mode {spec.forward_mode!r}")
    ET.SubElement(root, "bridge", {"name": spec.bridge, "stp": "on", "delay": "0"})
    ip = ET.SubElement(root, "ip", {"address": str(ipaddress.IPv4Address(spec.host_ip)), "netmask": spec.netmask})
    if spec.dhcp_start is not None and spec.dhcp_stop is not None:
        dhcp = ET.SubElement(ip, "dhcp")
        ET.SubElement(dhcp, "range", {"start": str(ipaddress.IPv4Address(spec.dhcp_start)),
                                      "end": str(ipaddress.IPv4Address(spec.dhcp_stop))})
    return ET.tostring(root, encoding="unicode")


@dataclass(frozen=True)
class Existing:
    """What a network on the daemon is, as far as vmctl compares it."""

    name: str
    ours: bool  # vmctl defined it
    bridge: str | None
    subnets: tuple[tuple[str, str], ...]  # (host address, subnet) of its IPv4 <ip>s
    forward_mode: str  # none | nat | route | ... (libvirt's)
    forward_device: str | None
    dhcp: tuple[str, str] | None  # the first range


def parse_network(xml: str) -> Existing:
    root = ET.fromstring(xml)
    name = root.findtext("name") or ""
    fwd = root.find("forward")
    subnets = []
    dhcp = None
    for ip in root.findall("ip"):
        if ip.get("family", "ipv4") != "ipv4" or not ip.get("address"):
            continue
        try:
            prefix = ip.get("prefix") or ip.get("netmask") or "24"
            iface = ipaddress.ip_interface(f"{ip.get('address')}/{prefix}")
        except ValueError:
            continue
        subnets.append((str(iface.ip), str(iface.network)))
        r = ip.find("dhcp/range")
        if dhcp is None and r is not None and r.get("start") and r.get("end"):
            dhcp = (str(r.get("start")), str(r.get("end")))
    bridge = root.find("bridge")
    return Existing(name=name, ours=root.find(f"metadata/{{{NS}}}network") is not None,
                    bridge=bridge.get("name") if bridge is not None else None, subnets=tuple(subnets),
                    forward_mode=fwd.get("mode", "nat") if fwd is not None else "none",
                    forward_device=fwd.get("dev") if fwd is not None else None, dhcp=dhcp)


def check_existing(lnet: LibvirtNetwork, have: Existing) -> None:
    """Stop where the network already on the daemon under LNET's name is not what the
    Vagrantfile says (a network vmctl did not define only needs to hold the subnet, and DHCP
    where the Vagrantfile wants it)."""
    spec = lnet.spec
    subnets = {s for _, s in have.subnets}
    if spec.subnet not in subnets:
        said = ", ".join(sorted(subnets)) or "no IPv4 subnet"
        raise MachineError(f"the libvirt network {lnet.name} is {said}, not {spec.subnet}",
                           hint="give the private network an address in that network, or another libvirt__network_name")
    if spec.dhcp_start is not None and have.dhcp is None:
        raise MachineError(f"the libvirt network {lnet.name} has no DHCP server, which the private network {spec.subnet} "
                           "wants", hint="give the machine a static ip:, or name another network")
    if not have.ours:
        return  # the user's own network: used as it is
    host_ip = next(h for h, s in have.subnets if s == spec.subnet)
    if host_ip != spec.host_ip:
        raise MachineError(f"the libvirt network {lnet.name} has the host at {host_ip}, not {spec.host_ip}",
                           hint="give it the same libvirt__host_ip, or another libvirt__network_name")
    if (have.forward_mode, have.forward_device) != (spec.forward_mode, spec.forward_device):
        said = have.forward_mode + (f" out of {have.forward_device}" if have.forward_device else "")
        raise MachineError(f"the libvirt network {lnet.name} has libvirt__forward_mode {said} for the machines "
                           "already on it", hint="give it the same libvirt__forward_mode (and libvirt__forward_device), "
                           "or another libvirt__network_name")
    want_dhcp = (spec.dhcp_start, spec.dhcp_stop) if spec.dhcp_start else None
    if have.dhcp != want_dhcp:
        said = f"DHCP {have.dhcp[0]} - {have.dhcp[1]}" if have.dhcp else "no DHCP"
        raise MachineError(f"the libvirt network {lnet.name} has {said} for the machines already on it",
                           hint="give it the same DHCP settings (type, libvirt__dhcp_*), or another "
                           "libvirt__network_name")


def overlapping(lnet: LibvirtNetwork, networks: Iterable[Existing]) -> Existing | None:
    """Another network of the daemon whose subnet overlaps LNET's (libvirt would refuse to
    start a second network there)."""
    mine = ipaddress.ip_network(lnet.spec.subnet)
    for other in networks:
        if other.name != lnet.name and any(ipaddress.ip_network(s).overlaps(mine) for _, s in other.subnets):
            return other
    return None


# --- through a connection (hypervisor.Connection's network operations) ------------------------

def check(conn: Any, wanted: Iterable[LibvirtNetwork]) -> None:
    """Stop where a network in WANTED cannot be had on CONN's daemon: the one of its name is
    not what the Vagrantfile says, or (missing) its subnet is another network's. Nothing is
    changed: `up` asks before it makes anything."""
    others: list[Existing] | None = None
    for lnet in wanted:
        xml = conn.network_xml(lnet.name)
        if xml is not None:
            check_existing(lnet, parse_network(xml))
            continue
        if others is None:
            others = [parse_network(x) for x in conn.network_xmls().values()]
        other = overlapping(lnet, others)
        if other is not None:
            hint = (f"to use that network, name it: libvirt__network_name: \"{other.name}\"" if not lnet.named
                    else "choose another subnet, or that network's name")
            raise MachineError(f"the private network {lnet.spec.subnet} overlaps the libvirt network {other.name} "
                               f"({', '.join(s for _, s in other.subnets)})", hint=hint)


def ensure(conn: Any, wanted: Iterable[LibvirtNetwork]) -> None:
    """Every network in WANTED defined (by vmctl, when missing) and active on CONN's daemon.
    Idempotent: run before every start."""
    wanted = list(wanted)
    check(conn, wanted)
    for lnet in wanted:
        if conn.network_xml(lnet.name) is None:
            log.debug("defining the libvirt network %s", lnet.name)
            if not conn.define_network(network_xml(lnet)):  # another vmctl defined it meanwhile
                check_existing(lnet, parse_network(conn.network_xml(lnet.name) or ""))
        conn.start_network(lnet.name)


def used_networks(domain_xml: str | None) -> list[str]:
    """The libvirt networks a domain's NICs name."""
    if not domain_xml:
        return []
    try:
        root = ET.fromstring(domain_xml)
    except ET.ParseError:
        return []
    return sorted({s.get("network", "") for s in root.findall("devices/interface[@type='network']/source")} - {""})


def release(conn: Any, names: Iterable[str]) -> None:
    """After a domain that named NAMES was undefined: each of them vmctl defined that no
    domain of the daemon names any more is stopped and undefined."""
    for name in names:
        xml = conn.network_xml(name)
        if xml is None or not parse_network(xml).ours:
            continue
        users = conn.network_users(name)
        if users:
            log.debug("keeping the libvirt network %s: %s still on it", name, ", ".join(users))
            continue
        log.debug("removing the libvirt network %s", name)
        conn.remove_network(name)


def dhcp_address(conn: Any, name: str, mac: str) -> str | None:
    """The address the network's DHCP server leased to MAC, or None."""
    leases = conn.network_leases(name, mac)
    return leases[-1] if leases else None
