"""Host-only networks: the bridges (and DHCP servers) that let the host reach a machine's
private_network address, as vagrant-libvirt's libvirt networks do.

Which kind a private network gets (`mode`): when the subnet is private IPv4 address space
(untrusted.host_network_problem: RFC 1918) and no `libvirt__tunnel_type` asks for an
unprivileged tunnel ("mcast", "udp"), a libvirt network the daemon makes when vmctl talks
to a libvirt daemon (vmctl/libvirtnet.py), else a host-only bridge vmctl makes itself when
it runs as root with the embedded driver (this module); otherwise the multicast segment on
loopback (vmctl/domain/network.py), which the host cannot reach.

A host-only network is a Linux bridge named `vmctl-` + a hash of (VMCTL_HOME, the network's
key) (15 characters, IFNAMSIZ), holding the host's address (the subnet's first, or
`libvirt__host_ip`), with forwarding off on it (isolated: the kernel does not route its
guests' packets anywhere; vmctl changes no firewall or routing setting of the host) unless
`libvirt__forward_mode` is "nat" or "route": then, as libvirt does, IPv4 forwarding is
turned on (net.ipv4.ip_forward = 1, left on, as libvirt leaves it) and the bridge gets two
chains of its own in vmctl's nftables table `inet vmctl` (nft_add: forwarded out of the
host, answers back, nothing else; nat masquerades), removed with the bridge; the host's
own tables are never touched, and the table goes when its last chain does.
Machines share it by key: `libvirt__network_name` when given, else the subnet, across
projects (two bridges cannot both hold one subnet on one host). A subnet that overlaps one
of the host's own networks (docker0's 172.17.0.0/16, say) stays a multicast segment, with a
warning (`foreign_overlap`): a bridge would take that network's traffic. A DHCP network also has a
dnsmasq bound to the bridge alone (no DNS, no router or DNS server handed out, infinite
leases), its pid and lease files in VMCTL_HOME/networks/.

Crash safety: the registry (VMCTL_HOME/networks/networks.json, changed only under the
`networks` lock) records a network and its users (machine ids) before the bridge is made,
and forgets it only after the bridge and dnsmasq are gone. Every ensure and release first
drops users that are no longer in the machine index (a machine destroyed while vmctl was
killed) and removes networks left without users (bridge, dnsmasq and nftables chains), so
a killed vmctl leaks nothing past the next `up` or `destroy`. The macvtaps vmctl makes for
public networks with the embedded driver (Macvtap) are recorded and cleaned up the same
way, per machine, in macvtaps.json. Bridges of another VMCTL_HOME are never touched: they
count as the host's interfaces, and a subnet one of them holds is refused.
"""

from __future__ import annotations

import contextlib
import hashlib
import ipaddress
import json
import logging
import os
import shutil
import signal
import time
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

from vmctl import paths, untrusted
from vmctl.errors import MachineError
from vmctl.vagrantfile.model import PrivateNetwork

log = logging.getLogger("vmctl.hostnet")

BRIDGE_PREFIX = "vmctl-"
TAP_PREFIX = "vmtap-"
IFNAMSIZ = 15  # characters, without the NUL


# --- the pure part: which kind, names, plans --------------------------------------------------

def mode(net: PrivateNetwork, *, is_root: bool, daemon: bool = False) -> str:
    """"bridge" (a host-only network vmctl makes, the host reaches it), "libvirt" (a
    host-only network the libvirt daemon makes: DAEMON, vmctl/libvirtnet.py), "mcast" (a
    multicast segment on loopback: machines only), "udp" (the point-to-point tunnel a
    Vagrantfile asked for) or "public" (a public_network: a host device, not a network
    vmctl makes). The one place that decides."""
    if net.public:
        return "public"
    if net.tunnel_type is not None:
        return net.tunnel_type
    if untrusted.host_network_problem(net.subnet):
        return "mcast"
    if daemon:
        return "libvirt"
    return "bridge" if is_root else "mcast"


def reachability_note(net: PrivateNetwork, *, is_root: bool, daemon: bool = False) -> str | None:
    """What to tell a user whose private network the host cannot reach (None: it can, or
    the user asked for a tunnel)."""
    if net.tunnel_type is not None or mode(net, is_root=is_root, daemon=daemon) in ("bridge", "libvirt", "public"):
        return None
    where = net.ip or net.subnet
    if ipaddress.ip_network(net.subnet).version != 4:
        return (f"the private network {where} is IPv6: vmctl makes it a multicast segment between machines, which "
                "the host cannot reach; use forwarded ports to reach the machine from the host")
    problem = untrusted.host_network_problem(net.subnet)
    if problem and (is_root or daemon):
        return (f"the host cannot reach the private network address {where}: {problem}, so vmctl makes it a "
                "segment between machines; choose a private subnet (e.g. 192.168.56.0/24) for a host-only network, "
                "or use forwarded ports")
    return (f"the host cannot reach the private network address {where}: only root can make the host interface "
            "(a bridge) for it, so it is a segment between machines; run vmctl as root, or through a libvirt "
            "daemon (libvirt.uri = \"qemu:///system\"), for a host-only network, or use forwarded ports "
            "(config.vm.network \"forwarded_port\") to reach the machine from the host")


def bridge_name(home: str, key: str) -> str:
    digest = hashlib.sha256(f"{home}\0{key}".encode()).hexdigest()
    return (BRIDGE_PREFIX + digest)[:IFNAMSIZ]


def tap_name(machine_id: str, index: int) -> str:
    digest = hashlib.sha256(f"{machine_id}/{index}".encode()).hexdigest()
    return (TAP_PREFIX + digest)[:IFNAMSIZ]


@dataclass(frozen=True)
class HostNetwork:
    """A host-only network as the machines using it agree on it."""

    key: str  # what machines share: "name:NAME" or "subnet:CIDR"
    label: str  # for people: the name, or the subnet
    bridge: str
    subnet: str  # CIDR
    host_ip: str
    dhcp_start: str | None = None  # None: no DHCP server
    dhcp_stop: str | None = None
    forward_mode: str = "none"  # none (isolated) | nat | route
    forward_device: str | None = None  # the one interface it forwards out of (None: any but bridges)

    @property
    def interface(self) -> str:
        """The bridge's address with its prefix length (ip addr add ...)."""
        return f"{self.host_ip}/{ipaddress.ip_network(self.subnet).prefixlen}"

    @property
    def netmask(self) -> str:
        return str(ipaddress.ip_network(self.subnet).netmask)


def plan(net: PrivateNetwork, home: str) -> HostNetwork:
    """The host-only network NET is on, with vagrant-libvirt's defaults: the host holds the
    subnet's first address; DHCP (for type "dhcp", or libvirt__dhcp_enabled: true) hands out
    the rest of the subnet."""
    subnet = ipaddress.ip_network(net.subnet)
    problem = untrusted.host_network_problem(net.subnet)
    if problem:
        raise MachineError(f"the private network {subnet} cannot be a host-only network: {problem}")
    if subnet.prefixlen > 29:
        raise MachineError(f"the private network {subnet} is too small for a host-only network (at most /29)",
                           hint="give it a wider netmask, e.g. netmask: \"255.255.255.0\"")
    key = f"name:{net.name}" if net.name else f"subnet:{subnet}"
    host_ip = ipaddress.ip_address(net.host_ip) if net.host_ip else subnet.network_address + 1
    if net.ip is not None and ipaddress.ip_address(net.ip) == host_ip:
        raise MachineError(f"the private network address {net.ip} is the host's own on that network (the bridge holds "
                           f"the subnet's first address)",
                           hint="give the machine another address, or the host another with libvirt__host_ip")
    start = stop = None
    if net.type == "dhcp" or net.dhcp_enabled:
        first = host_ip + 1 if host_ip == subnet.network_address + 1 else subnet.network_address + 2
        start = ipaddress.ip_address(net.dhcp_start) if net.dhcp_start else first
        stop = ipaddress.ip_address(net.dhcp_stop) if net.dhcp_stop else subnet.broadcast_address - 1
        if start > stop:
            raise MachineError(f"the DHCP range of {subnet} is empty ({start} - {stop})")
    return HostNetwork(key=key, label=net.name or str(subnet), bridge=bridge_name(home, key), subnet=str(subnet),
                       host_ip=str(host_ip), dhcp_start=str(start) if start else None,
                       dhcp_stop=str(stop) if stop else None, forward_mode=net.forward_mode,
                       forward_device=net.forward_device)


@dataclass(frozen=True)
class Macvtap:
    """A public_network's macvtap vmctl makes itself (the embedded driver: libvirt 9.0's own
    type='direct' NICs crash it on stop, as it runs no netlink event service), given to
    QEMU as an unmanaged <interface type='ethernet'>. Removed with its machine."""

    name: str  # vmtap-...
    lower: str  # the host device
    mode: str  # bridge | vepa | private | passthrough
    mac: str  # the guest NIC's: macvtap passes frames for its own address


# --- the registry -----------------------------------------------------------------------------

@dataclass
class Record:
    network: HostNetwork
    users: list[str] = field(default_factory=list)  # machine ids


def networks_dir() -> Path:
    return paths.vmctl_home() / "networks"


def _registry_path() -> Path:
    return networks_dir() / "networks.json"


def load_registry() -> dict[str, Record]:
    try:
        data = json.loads(_registry_path().read_text())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        raise MachineError(f"the network registry {_registry_path()} cannot be read: {exc}",
                           hint="look at the bridges named vmctl-* (ip link), remove the file and run the command "
                           "again") from exc
    out: dict[str, Record] = {}
    for key, rec in data.get("networks", {}).items():
        out[key] = Record(HostNetwork(**rec["network"]), list(rec.get("users", [])))
    return out


def save_registry(registry: dict[str, Record]) -> None:
    from vmctl.state import write_atomic

    networks_dir().mkdir(parents=True, exist_ok=True, mode=0o700)
    data = {"networks": {k: {"network": asdict(r.network), "users": r.users} for k, r in registry.items()}}
    write_atomic(_registry_path(), (json.dumps(data, indent=2) + "\n").encode())


@contextlib.contextmanager
def _locked() -> Iterator[None]:
    from vmctl.state import file_lock

    with file_lock("networks"):
        yield


# --- what the host does (a seam for the unit tests) -------------------------------------------

class Ops(Protocol):
    def link_exists(self, name: str) -> bool: ...
    def add_bridge(self, net: HostNetwork) -> None: ...
    def delete_link(self, name: str) -> None: ...
    def host_prefixes(self) -> list[tuple[str, str]]: ...  # (interface, network) of addresses and routes
    def dhcp_running(self, net: HostNetwork) -> bool: ...
    def start_dhcp(self, net: HostNetwork) -> None: ...
    def stop_dhcp(self, net: HostNetwork) -> None: ...
    def start_forwarding(self, net: HostNetwork, isolated: list[HostNetwork]) -> None: ...
    def stop_forwarding(self, net: HostNetwork) -> None: ...
    def add_macvtap(self, tap: Macvtap) -> None: ...


class IpOps:
    """The real host: iproute2's `ip` and dnsmasq, through vmctl's subprocess funnel."""

    def _ip(self, *args: str, purpose: str, check: bool = True) -> Any:
        from vmctl.run import run

        return run(["ip", *args], purpose=purpose, check=check, timeout=30)

    def link_exists(self, name: str) -> bool:
        return Path("/sys/class/net", name).exists()

    def add_bridge(self, net: HostNetwork) -> None:
        br = net.bridge
        if not self.link_exists(br):
            self._ip("link", "add", "name", br, "type", "bridge", purpose=f"make the bridge {br}")
        # Isolated: nothing that comes in on the bridge is forwarded anywhere (unless its
        # forward mode says so: start_forwarding), and no IPv6 (the networks are IPv4; no
        # link-local address to reach guests by).
        forwarding = "0" if net.forward_mode == "none" else "1"
        for knob, value in ((f"/proc/sys/net/ipv4/conf/{br}/forwarding", forwarding),
                            (f"/proc/sys/net/ipv6/conf/{br}/disable_ipv6", "1")):
            with contextlib.suppress(OSError):
                Path(knob).write_text(value)
        have = self._ip("-j", "addr", "show", "dev", br, purpose=f"read the bridge {br}'s addresses").stdout
        addresses = {f"{a.get('local')}/{a.get('prefixlen')}" for i in json.loads(have or b"[]")
                     for a in i.get("addr_info", [])}
        if net.interface not in addresses:
            self._ip("addr", "add", net.interface, "dev", br, purpose=f"give the bridge {br} the address {net.interface}")
        self._ip("link", "set", br, "up", purpose=f"bring the bridge {br} up")

    def delete_link(self, name: str) -> None:
        if self.link_exists(name):
            self._ip("link", "del", name, purpose=f"remove the host interface {name}")

    def add_macvtap(self, tap: Macvtap) -> None:
        for name in (tap.name, tap.lower):
            if untrusted.host_device_problem(name, public=False) or "/" in name:
                raise ValueError(f"interface name {name!r}")
        if tap.mode not in ("bridge", "vepa", "private", "passthrough") or untrusted.parse_mac(tap.mac) != tap.mac:
            raise ValueError(f"macvtap {tap!r}")
        base = Path("/sys/class/net", tap.name)
        if base.exists():
            same = (base / f"lower_{tap.lower}").exists() and (base / "address").read_text().strip() == tap.mac
            if same:
                return
            self.delete_link(tap.name)
        self._ip("link", "add", "link", tap.lower, "name", tap.name, "address", tap.mac, "type", "macvtap",
                 "mode", tap.mode, purpose=f"make the macvtap {tap.name} on {tap.lower}")
        self._ip("link", "set", tap.name, "up", purpose=f"bring the macvtap {tap.name} up")

    def host_prefixes(self) -> list[tuple[str, str]]:
        out: list[tuple[str, str]] = []
        addrs = json.loads(self._ip("-j", "-4", "addr", "show", purpose="read the host's addresses").stdout or b"[]")
        for iface in addrs:
            for a in iface.get("addr_info", []):
                with contextlib.suppress(ValueError, KeyError):
                    out.append((iface["ifname"], str(ipaddress.ip_interface(f"{a['local']}/{a['prefixlen']}").network)))
        routes = json.loads(self._ip("-j", "-4", "route", "show", purpose="read the host's routes").stdout or b"[]")
        for r in routes:
            dst = r.get("dst")
            if dst and dst != "default":
                with contextlib.suppress(ValueError):
                    out.append((r.get("dev", "?"), str(ipaddress.ip_network(dst, strict=False))))
        return out

    def _files(self, net: HostNetwork) -> tuple[Path, Path]:
        return networks_dir() / f"{net.bridge}.pid", networks_dir() / f"{net.bridge}.leases"

    def _pid(self, net: HostNetwork) -> int | None:
        """The pid of this network's dnsmasq, when it runs (checked by its command line)."""
        pid_file, _ = self._files(net)
        try:
            pid = int(pid_file.read_text().strip())
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            status = Path(f"/proc/{pid}/stat").read_text()
        except (OSError, ValueError):
            return None
        alive = status.rsplit(")", 1)[-1].split()[0] not in ("Z", "X")
        ours = bool(cmdline) and cmdline[0].endswith(b"dnsmasq") and f"--interface={net.bridge}".encode() in cmdline
        return pid if alive and ours else None

    def dhcp_running(self, net: HostNetwork) -> bool:
        return self._pid(net) is not None

    def start_dhcp(self, net: HostNetwork) -> None:
        from vmctl.run import run

        pid_file, leases = self._files(net)
        networks_dir().mkdir(parents=True, exist_ok=True, mode=0o700)
        # Every value here was parsed as an address or made by vmctl (names, paths).
        run(["dnsmasq", *dnsmasq_args(net, pid_file, leases)], purpose=f"serve DHCP on {net.label}", timeout=30)

    def stop_dhcp(self, net: HostNetwork) -> None:
        pid = self._pid(net)
        if pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
            deadline = time.monotonic() + 5
            while self._pid(net) is not None and time.monotonic() < deadline:
                time.sleep(0.05)
        for f in self._files(net):
            with contextlib.suppress(FileNotFoundError):
                f.unlink()


    def _nft(self, script: str, purpose: str, check: bool = True) -> Any:
        from vmctl.run import run

        return run(["nft", "-f", "-"], input=script.encode(), purpose=purpose, check=check, timeout=30)

    def start_forwarding(self, net: HostNetwork, isolated: list[HostNetwork]) -> None:
        """Forward NET's subnet through the host (nat: masqueraded), as libvirt does: IP
        forwarding on (libvirt turns net.ipv4.ip_forward on and leaves it on), and the
        bridge's chains in vmctl's own nftables table."""
        # ip_forward=1 also turns forwarding on for every interface: isolated bridges get
        # theirs back off.
        knob = Path("/proc/sys/net/ipv4/ip_forward")
        try:
            if knob.read_text().strip() != "1":
                log.info("turning on IPv4 forwarding (net.ipv4.ip_forward = 1) for %s", net.label)
                knob.write_text("1")
            for other in isolated:
                with contextlib.suppress(OSError):
                    Path(f"/proc/sys/net/ipv4/conf/{other.bridge}/forwarding").write_text("0")
            Path(f"/proc/sys/net/ipv4/conf/{net.bridge}/forwarding").write_text("1")
        except OSError as exc:
            raise MachineError(f"the private network {net.label} needs IPv4 forwarding on this host "
                               f"(libvirt__forward_mode {net.forward_mode}), which cannot be turned on: {exc}",
                               hint="turn it on (sysctl -w net.ipv4.ip_forward=1) or leave libvirt__forward_mode "
                               "out for an isolated network") from exc
        self._nft(nft_remove(net, self._chains()) + nft_add(net), purpose=f"forward the network {net.label} ({net.forward_mode})")

    def _chains(self) -> set[str]:
        """The chains in vmctl's table (none: no table)."""
        r = self._nft_list()
        return {i["chain"]["name"] for i in r if "chain" in i}

    def _nft_list(self) -> list[dict[str, Any]]:
        from vmctl.run import run

        if not any(shutil.which("nft", path=p) for p in (None, "/usr/sbin:/sbin")):
            return []
        r = run(["nft", "-j", "list", "table", "inet", NFT_TABLE], purpose="read vmctl's nftables table",
                check=False, timeout=30)
        if r.returncode != 0:
            return []
        return list(json.loads(r.stdout or b"{}").get("nftables", []))

    def stop_forwarding(self, net: HostNetwork) -> None:
        chains = self._chains()
        script = nft_remove(net, chains)
        if script:
            self._nft(script, purpose=f"remove the forwarding of the network {net.label}")
            if not chains - set(nft_chain_names(net)):
                # Its last network (of any VMCTL_HOME): the table goes, unless one was added since.
                self._nft(f"delete table inet {NFT_TABLE}\n", purpose="remove vmctl's nftables table", check=False)


NFT_TABLE = "vmctl"


def nft_chain_names(net: HostNetwork) -> tuple[str, str]:
    _check_bridge(net.bridge)
    return f"{net.bridge}-fwd", f"{net.bridge}-nat"


def _check_bridge(name: str) -> None:
    if not name.startswith(BRIDGE_PREFIX) or len(name) > IFNAMSIZ or not all(c.isalnum() or c == "-" for c in name):
        raise ValueError(f"bridge name {name!r}")


def nft_add(net: HostNetwork) -> str:
    """An nft script giving NET's bridge its own chains in vmctl's table (inet vmctl), as
    libvirt's rules for a nat or route network: forwarded from the subnet out of the host
    (FORWARD_DEVICE, else any interface but vmctl's bridges), answers back in; nothing else
    forwarded to or from the bridge; nat masquerades the subnet going elsewhere. Every value
    was parsed as an address or checked as an interface name."""
    if net.forward_mode not in ("nat", "route"):
        raise ValueError(f"forward mode {net.forward_mode!r}")
    subnet = str(ipaddress.IPv4Network(net.subnet))
    br = net.bridge
    out = ""
    if net.forward_device is not None:
        if untrusted.host_device_problem(net.forward_device, public=False):
            raise ValueError(f"forward device {net.forward_device!r}")
        out = f'oifname "{net.forward_device}" '
    fwd, nat = nft_chain_names(net)
    back = "ct state established,related " if net.forward_mode == "nat" else ""
    lines = [
        f"add table inet {NFT_TABLE}",
        f"add chain inet {NFT_TABLE} {fwd} {{ type filter hook forward priority filter; policy accept; }}",
        f'add rule inet {NFT_TABLE} {fwd} iifname "{br}" oifname "{BRIDGE_PREFIX}*" drop',
        f'add rule inet {NFT_TABLE} {fwd} iifname "{br}" {out}ip saddr {subnet} accept',
        f'add rule inet {NFT_TABLE} {fwd} oifname "{br}" ip daddr {subnet} {back}accept',
        f'add rule inet {NFT_TABLE} {fwd} iifname "{br}" drop',
        f'add rule inet {NFT_TABLE} {fwd} oifname "{br}" drop',
    ]
    if net.forward_mode == "nat":
        lines += [
            f"add chain inet {NFT_TABLE} {nat} {{ type nat hook postrouting priority srcnat; policy accept; }}",
            f"add rule inet {NFT_TABLE} {nat} ip saddr {subnet} ip daddr != {subnet} "
            f'ip daddr != {{ 224.0.0.0/24, 255.255.255.255 }} oifname != "{br}" {out}masquerade',
        ]
    return "\n".join(lines) + "\n"


def nft_remove(net: HostNetwork, chains: set[str]) -> str:
    """An nft script removing NET's chains among CHAINS (what vmctl's table holds)."""
    script = ""
    for name in nft_chain_names(net):
        if name in chains:
            script += f"flush chain inet {NFT_TABLE} {name}\ndelete chain inet {NFT_TABLE} {name}\n"
    return script


def dnsmasq_args(net: HostNetwork, pid_file: Path, leases: Path) -> list[str]:
    """dnsmasq's arguments for NET: DHCP only (no DNS), on its bridge alone, handing out no
    router and no DNS server (the guest keeps its management NIC's), leases that never end."""
    if net.dhcp_start is None or net.dhcp_stop is None:
        raise ValueError(f"{net.label} has no DHCP range")
    for a in (net.host_ip, net.dhcp_start, net.dhcp_stop):
        ipaddress.IPv4Address(a)
    _check_bridge(net.bridge)
    return [
        "--conf-file=/dev/null", f"--pid-file={pid_file}", f"--dhcp-leasefile={leases}",
        f"--interface={net.bridge}", "--bind-interfaces", "--except-interface=lo", f"--listen-address={net.host_ip}",
        "--port=0", f"--dhcp-range={net.dhcp_start},{net.dhcp_stop},{net.netmask},infinite",
        "--dhcp-option=3", "--dhcp-option=6", "--dhcp-authoritative", "--dhcp-no-override",
    ]


# --- ensure and release -----------------------------------------------------------------------

def _overlaps(a: str, b: str) -> bool:
    return ipaddress.ip_network(a).overlaps(ipaddress.ip_network(b))


def _prune(registry: dict[str, Record], live: set[str], ops: Ops) -> bool:
    """Drop users not in LIVE; tear down networks left without users. Whether anything changed."""
    changed = False
    for key in list(registry):
        rec = registry[key]
        users = [u for u in rec.users if u in live]
        if users != rec.users:
            rec.users = users
            changed = True
        if not rec.users:
            _teardown(rec.network, ops)
            del registry[key]
            changed = True
    return changed


def _teardown(net: HostNetwork, ops: Ops) -> None:
    log.debug("removing the host-only network %s (%s)", net.label, net.bridge)
    if net.forward_mode != "none":
        ops.stop_forwarding(net)
    ops.stop_dhcp(net)
    ops.delete_link(net.bridge)


def foreign_overlap(net: HostNetwork, prefixes: list[tuple[str, str]]) -> str | None:
    """The host's own network (an address or route of an interface that is not one of this
    VMCTL_HOME's bridges) that NET's subnet overlaps, as "PREFIX on IFACE", or None.
    PREFIXES: Ops.host_prefixes()."""
    ours = {r.network.bridge for r in load_registry().values()} | {net.bridge}
    for iface, prefix in prefixes:
        if iface not in ours and _overlaps(prefix, net.subnet):
            return f"{prefix} on {iface}"
    return None


def overlap_note(net: PrivateNetwork, overlap: str) -> str:
    return (f"the host cannot reach the private network address {net.ip or net.subnet}: its subnet {net.subnet} "
            f"overlaps the host's network {overlap}, which a host-only bridge would take traffic from, so vmctl "
            "makes it a segment between machines; choose another subnet for a host-only network")


def _live_machines() -> set[str]:
    from vmctl.state import load_index

    return set(load_index())


def ensure(machine_id: str, wanted: Iterable[HostNetwork], *, ops: Ops | None = None,
           live: set[str] | None = None) -> None:
    """Make MACHINE_ID a user of exactly the networks WANTED, making what is missing (the
    bridge, its address, its dnsmasq): idempotent, and run before every start."""
    ops = ops or IpOps()
    wanted = list(wanted)
    with _locked():
        registry = load_registry()
        alive = (live if live is not None else _live_machines()) | {machine_id}
        for rec in registry.values():
            if machine_id in rec.users and rec.network.key not in {w.key for w in wanted}:
                rec.users.remove(machine_id)
        _prune(registry, alive, ops)
        ours = {r.network.bridge for r in registry.values()}
        prefixes = None
        for net in wanted:
            rec = registry.get(net.key)
            if rec is not None and rec.network != net and set(rec.users) <= {machine_id}:
                # This machine's own network, its Vagrantfile changed: made again as it says now.
                _teardown(rec.network, ops)
                del registry[net.key]
                rec = None
            if rec is not None:
                old = rec.network
                if (old.subnet, old.host_ip) != (net.subnet, net.host_ip):
                    raise MachineError(
                        f"the private network {net.label} is {old.subnet} with the host at {old.host_ip} for the "
                        f"machines already on it, not {net.subnet} with the host at {net.host_ip}",
                        hint="give it the same subnet (and libvirt__host_ip), or another libvirt__network_name")
                if (old.forward_mode, old.forward_device) != (net.forward_mode, net.forward_device):
                    have = old.forward_mode + (f" out of {old.forward_device}" if old.forward_device else "")
                    raise MachineError(f"the private network {net.label} has libvirt__forward_mode {have} for the "
                                       "machines already on it",
                                       hint="give it the same libvirt__forward_mode (and libvirt__forward_device), "
                                       "or another libvirt__network_name")
                if (old.dhcp_start, old.dhcp_stop) != (net.dhcp_start, net.dhcp_stop):
                    have = f"DHCP {old.dhcp_start} - {old.dhcp_stop}" if old.dhcp_start else "no DHCP"
                    raise MachineError(f"the private network {net.label} has {have} for the machines already on it",
                                       hint="give it the same DHCP settings (type, libvirt__dhcp_*), or another "
                                       "libvirt__network_name")
                if machine_id not in rec.users:
                    rec.users.append(machine_id)
                continue
            for other in registry.values():
                if _overlaps(other.network.subnet, net.subnet):
                    raise MachineError(
                        f"the private network {net.label} ({net.subnet}) overlaps the network "
                        f"{other.network.label} ({other.network.subnet}) other vmctl machines are on",
                        hint="use the same libvirt__network_name (or none) to share that network, or another subnet")
            if prefixes is None:
                prefixes = ops.host_prefixes()
            for iface, prefix in prefixes:
                if iface not in ours and iface != net.bridge and _overlaps(prefix, net.subnet):
                    raise MachineError(
                        f"the private network {net.label} ({net.subnet}) overlaps the host's network {prefix} on "
                        f"{iface}: a bridge there would take that traffic from it",
                        hint="choose another subnet for the private network, or keep it between machines only "
                        "with libvirt__tunnel_type: \"mcast\"")
            registry[net.key] = Record(net, [machine_id])
        save_registry(registry)  # the intent, before anything is made on the host
        isolated = [r.network for r in registry.values() if r.network.forward_mode == "none"]
        for net in wanted:
            ops.add_bridge(net)
            if net.forward_mode != "none":
                ops.start_forwarding(net, isolated)
            if net.dhcp_start is not None and not ops.dhcp_running(net):
                ops.start_dhcp(net)


def release(machine_id: str | None = None, *, ops: Ops | None = None, live: set[str] | None = None) -> None:
    """MACHINE_ID uses no network any more; networks left without users (and those of
    machines no longer in the index) are removed, as are their macvtaps."""
    if not _registry_path().exists() and not _macvtaps_path().exists():
        return
    ops = ops or IpOps()
    with _locked():
        registry = load_registry()
        alive = (live if live is not None else _live_machines()) - ({machine_id} if machine_id else set())
        if _prune(registry, alive, ops):
            save_registry(registry)
        taps = _load_macvtaps()
        if _prune_macvtaps(taps, alive, ops):
            _save_macvtaps(taps)


# --- macvtaps ---------------------------------------------------------------------------------

def _macvtaps_path() -> Path:
    return networks_dir() / "macvtaps.json"


def _load_macvtaps() -> dict[str, tuple[Macvtap, str]]:
    """name -> (the macvtap, its machine id)."""
    try:
        data = json.loads(_macvtaps_path().read_text())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        raise MachineError(f"the macvtap registry {_macvtaps_path()} cannot be read: {exc}",
                           hint="look at the interfaces named vmtap-* (ip link), remove the file and run the command "
                           "again") from exc
    return {name: (Macvtap(**rec["macvtap"]), rec["user"]) for name, rec in data.get("macvtaps", {}).items()}


def _save_macvtaps(taps: dict[str, tuple[Macvtap, str]]) -> None:
    from vmctl.state import write_atomic

    networks_dir().mkdir(parents=True, exist_ok=True, mode=0o700)
    data = {"macvtaps": {n: {"macvtap": asdict(t), "user": u} for n, (t, u) in taps.items()}}
    write_atomic(_macvtaps_path(), (json.dumps(data, indent=2) + "\n").encode())


def _prune_macvtaps(taps: dict[str, tuple[Macvtap, str]], live: set[str], ops: Ops) -> bool:
    gone = [name for name, (_, user) in taps.items() if user not in live]
    for name in gone:
        ops.delete_link(name)
        del taps[name]
    return bool(gone)


def ensure_macvtaps(machine_id: str, wanted: Iterable[Macvtap], *, ops: Ops | None = None,
                    live: set[str] | None = None) -> None:
    """Make MACHINE_ID's macvtaps exactly WANTED (recorded before they are made, so a killed
    vmctl's are removed by the next command, as bridges are)."""
    ops = ops or IpOps()
    wanted = list(wanted)
    if not wanted and not _macvtaps_path().exists():
        return
    with _locked():
        taps = _load_macvtaps()
        alive = (live if live is not None else _live_machines()) | {machine_id}
        names = {t.name for t in wanted}
        for name, (_, user) in list(taps.items()):
            if user == machine_id and name not in names:
                ops.delete_link(name)
                del taps[name]
        _prune_macvtaps(taps, alive, ops)
        for tap in wanted:
            if tap.name in taps and taps[tap.name][0] != tap:
                ops.delete_link(tap.name)  # its device, mode or MAC changed: made again
            taps[tap.name] = (tap, machine_id)
        _save_macvtaps(taps)
        for tap in wanted:
            ops.add_macvtap(tap)


def dhcp_address(net: HostNetwork, mac: str) -> str | None:
    """The address dnsmasq leased to MAC on NET, or None."""
    try:
        lines = (networks_dir() / f"{net.bridge}.leases").read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        parts = line.split()
        if len(parts) >= 3 and parts[1].lower() == mac.lower():
            return parts[2]
    return None
