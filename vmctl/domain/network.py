"""Networks: the management NIC (QEMU user-mode networking, with the SSH and other
forwards) and the private networks' NICs.

Both are given through <qemu:commandline>. The management NIC because Debian's libvirt 9.0
rejects the passt backend that <portForward> needs; the forwards always name a host
address (127.0.0.1 by default): an empty one would bind every interface. Private networks
are unprivileged QEMU multicast sockets bound to loopback (`localaddr=127.0.0.1`): libvirt
9.0's <interface type='mcast'> has no way to say so (its schema refuses <local>, and it
drops the element), and without it the segment's traffic goes out on the host's default
interface, where anyone on the LAN could join the group. A "udp" tunnel is a socket from one
address to one other (loopback on one host, the two hosts' addresses between two hosts). Each NIC needs an explicit PCI
slot, or it collides with libvirt's own devices.

A private network on a host-only bridge (vmctl/hostnet.py, as root) is a libvirt
<interface type='bridge'> instead: libvirt makes the tap (named by vmctl), puts it on the
bridge and removes it when QEMU ends. It takes the same PCI slot a multicast NIC in its
place would, so the guest's interface order follows the Vagrantfile's either way. On a
libvirt network a daemon made (vmctl/libvirtnet.py) it is an <interface type='network'>.

The strings made here are QEMU option strings (comma-separated options): every part is
checked where the string is made.
"""

from __future__ import annotations

import ipaddress
import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass

from vmctl import untrusted
from vmctl.domain.xml import sub

# The management NIC's PCI slot: far from the slots libvirt assigns on its own. The
# private networks' NICs follow it, so the guest names the management NIC first (eth0)
# and boxes that run DHCP on their first interface keep working.
USER_NIC_SLOT = "0x10"
# libvirt's <model type> for a NIC -> QEMU's device for the management NIC.
NIC_DEVICES = {
    "virtio": "virtio-net-pci", "e1000": "e1000", "e1000e": "e1000e", "rtl8139": "rtl8139",
    "ne2k_pci": "ne2k_pci", "pcnet": "pcnet", "vmxnet3": "vmxnet3", "i82559er": "i82559er",
}
_MAC = re.compile(r"[0-9a-f]{2}(:[0-9a-f]{2}){5}")
_IFNAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,14}")


@dataclass(frozen=True)
class Forward:
    host_ip: str
    host_port: int
    guest_port: int
    protocol: str = "tcp"
    guest_ip: str | None = None  # None: QEMU's first DHCP address (the guest's)


@dataclass(frozen=True)
class McastNic:
    mac: str
    group: str  # 230.x.y.z
    port: int
    boot_order: int | None = None


@dataclass(frozen=True)
class UdpNic:
    """A point-to-point UDP tunnel (libvirt__tunnel_type: "udp"): on loopback between two
    machines of one host, or between two hosts' addresses (vmctl/tunnels.py)."""

    mac: str
    remote: str  # IPv4 unicast address (the other end's host)
    port: int
    local: str
    local_port: int
    boot_order: int | None = None


@dataclass(frozen=True)
class BridgeNic:
    """A NIC on a host-only network: a bridge vmctl made (<interface type='bridge'>), or the
    libvirt network NETWORK a daemon made (<interface type='network'>; BRIDGE is unused)."""

    mac: str
    bridge: str  # a bridge vmctl made (vmctl-...)
    tap: str | None  # the host's tap device libvirt makes for it (None: libvirt names it)
    boot_order: int | None = None
    network: str | None = None


@dataclass(frozen=True)
class PublicNic:
    """A public_network's NIC: on an existing host bridge (ATTACH "bridge": libvirt's
    <interface type='bridge'>), or macvtap on a host device (ATTACH "direct")."""

    mac: str
    attach: str  # bridge | direct
    dev: str  # the host bridge or device
    tap: str  # the host interface libvirt makes for it (tap or macvtap), named by vmctl
    mode: str = "bridge"  # macvtap mode: bridge | vepa | private | passthrough
    boot_order: int | None = None
    # The macvtap TAP is made by vmctl (hostnet.Macvtap), not libvirt: an unmanaged
    # <interface type='ethernet'> (the embedded driver crashes stopping type='direct').
    premade: bool = False


MACVTAP_MODES = ("bridge", "vepa", "private", "passthrough")


@dataclass(frozen=True)
class UserNic:
    mac: str
    forwards: tuple[Forward, ...] = ()
    model: str = "virtio"  # a key of NIC_DEVICES
    slot: str = USER_NIC_SLOT
    boot_order: int | None = None  # QEMU's bootindex (libvirt's <boot order> of its own devices)


@dataclass(frozen=True)
class NetworkSpec:
    management: UserNic | None
    private: tuple[McastNic | UdpNic | BridgeNic | PublicNic, ...] = ()  # and the public ones, in order
    private_model: str = "virtio"  # <model type> of the private networks' NICs


def hostfwd_rules(forwards: tuple[Forward, ...]) -> str:
    """QEMU's hostfwd options. This string is comma-separated options: every part is
    checked here (an address with a comma in it would add options such as guestfwd=)."""
    rules = []
    for f in forwards:
        address = untrusted.parse_address(f.host_ip)
        if address is None:
            raise ValueError(f"a forwarded port needs a host address, not {f.host_ip!r}")
        if ":" in address:
            address = f"[{address}]"
        if f.protocol not in ("tcp", "udp"):
            raise ValueError(f"forwarded port protocol {f.protocol!r}")
        for port in (f.host_port, f.guest_port):
            if isinstance(port, bool) or not isinstance(port, int) or not 0 < port < 65536:
                raise ValueError(f"forwarded port {port!r}")
        guest = ""
        if f.guest_ip is not None:
            guest = untrusted.parse_address(f.guest_ip) or ""
            if not guest or ":" in guest:
                raise ValueError(f"a forwarded port's guest address must be IPv4, not {f.guest_ip!r}")
        rules.append(f"hostfwd={f.protocol}:{address}:{f.host_port}-{guest}:{f.guest_port}")
    return ",".join(rules)


def management_args(nic: UserNic | None) -> list[str]:
    """The QEMU arguments of the management NIC (none without one)."""
    if nic is None:
        return []
    if nic.model not in NIC_DEVICES:
        raise ValueError(f"NIC model {nic.model!r}")
    if not _MAC.fullmatch(nic.mac):
        raise ValueError(f"MAC address {nic.mac!r}")
    if not re.fullmatch(r"0x[0-9a-f]{1,2}", nic.slot):
        raise ValueError(f"PCI slot {nic.slot!r}")
    netdev = "user,id=vmnet0"
    rules = hostfwd_rules(nic.forwards)
    if rules:
        netdev += "," + rules
    device = f"{NIC_DEVICES[nic.model]},netdev=vmnet0,addr={nic.slot},mac={nic.mac}"
    if nic.boot_order is not None:
        device += f",bootindex={_boot_index(nic.boot_order)}"
    return ["-netdev", netdev, "-device", device]


def private_args(spec: NetworkSpec) -> list[str]:
    """The QEMU arguments of the private networks' NICs: a multicast socket on loopback
    each, in the PCI slots after the management NIC's."""
    if spec.private_model not in NIC_DEVICES:
        raise ValueError(f"NIC model {spec.private_model!r}")
    args: list[str] = []
    first = int(USER_NIC_SLOT, 16) + 1
    for i, nic in enumerate(spec.private):
        if isinstance(nic, BridgeNic | PublicNic):
            continue  # a libvirt <interface> (build_interfaces)
        if isinstance(nic, UdpNic):
            ends = []
            for address, port in ((nic.remote, nic.port), (nic.local, nic.local_port)):
                if untrusted.tunnel_address_problem(address) is not None:
                    raise ValueError(f"udp tunnel address {address!r}")
                if isinstance(port, bool) or not isinstance(port, int) or not 0 < port < 65536:
                    raise ValueError(f"udp tunnel port {port!r}")
                ends.append(f"{address}:{port}")
            if untrusted.is_loopback(nic.remote) != untrusted.is_loopback(nic.local):
                raise ValueError(f"udp tunnel from {nic.local!r} to {nic.remote!r}: one end on loopback only")
            netdev = f"socket,id=vmpriv{i},udp={ends[0]},localaddr={ends[1]}"
        else:
            group = untrusted.parse_address(nic.group)
            if group is None or not ipaddress.ip_address(group).is_multicast or ":" in group:
                raise ValueError(f"multicast group {nic.group!r}")
            if isinstance(nic.port, bool) or not isinstance(nic.port, int) or not 0 < nic.port < 65536:
                raise ValueError(f"multicast port {nic.port!r}")
            netdev = f"socket,id=vmpriv{i},mcast={group}:{nic.port},localaddr=127.0.0.1"
        if not _MAC.fullmatch(nic.mac):
            raise ValueError(f"MAC address {nic.mac!r}")
        device = f"{NIC_DEVICES[spec.private_model]},netdev=vmpriv{i},addr=0x{first + i:02x},mac={nic.mac}"
        if nic.boot_order is not None:
            device += f",bootindex={_boot_index(nic.boot_order)}"
        args += ["-netdev", netdev, "-device", device]
    return args


def build_interfaces(devices: ET.Element, spec: NetworkSpec) -> None:
    """The private NICs on host-only bridges and the public ones: <interface type='bridge'>
    (or type='direct', macvtap), each in the PCI slot its place among the NICs gives it."""
    first = int(USER_NIC_SLOT, 16) + 1
    for i, nic in enumerate(spec.private):
        if not isinstance(nic, BridgeNic | PublicNic):
            continue
        if spec.private_model not in NIC_DEVICES:
            raise ValueError(f"NIC model {spec.private_model!r}")
        if not _MAC.fullmatch(nic.mac):
            raise ValueError(f"MAC address {nic.mac!r}")
        source = nic.bridge if isinstance(nic, BridgeNic) else nic.dev
        for name in (source, nic.tap):
            if name is not None and not _IFNAME.fullmatch(name):
                raise ValueError(f"interface name {name!r}")
        if isinstance(nic, BridgeNic) and nic.network is not None:
            if not nic.network or any(c in nic.network for c in "/\\\0\n"):
                raise ValueError(f"libvirt network name {nic.network!r}")
            iface = sub(devices, "interface", type="network")
            sub(iface, "mac", address=nic.mac)
            sub(iface, "source", network=nic.network)
        elif isinstance(nic, PublicNic) and nic.attach == "direct" and nic.premade:
            iface = sub(devices, "interface", type="ethernet")
            sub(iface, "mac", address=nic.mac)
        elif isinstance(nic, PublicNic) and nic.attach == "direct":
            if nic.mode not in MACVTAP_MODES:
                raise ValueError(f"macvtap mode {nic.mode!r}")
            iface = sub(devices, "interface", type="direct")
            sub(iface, "mac", address=nic.mac)
            sub(iface, "source", dev=source, mode=nic.mode)
        elif isinstance(nic, BridgeNic) or nic.attach == "bridge":
            iface = sub(devices, "interface", type="bridge")
            sub(iface, "mac", address=nic.mac)
            sub(iface, "source", bridge=source)
        else:
            raise ValueError(f"public NIC attachment {nic.attach!r}")
        if isinstance(nic, PublicNic) and nic.premade:
            sub(iface, "target", dev=nic.tap, managed="no")
        elif nic.tap is not None:
            sub(iface, "target", dev=nic.tap)
        sub(iface, "model", type=spec.private_model)
        if nic.boot_order is not None:
            sub(iface, "boot", order=str(_boot_index(nic.boot_order)))
        sub(iface, "address", type="pci", domain="0x0000", bus="0x00", slot=f"0x{first + i:02x}", function="0x0")


def _boot_index(order: object) -> int:
    if isinstance(order, bool) or not isinstance(order, int) or not 0 < order < 100:
        raise ValueError(f"boot order {order!r}")
    return order

