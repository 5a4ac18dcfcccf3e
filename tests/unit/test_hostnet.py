"""Host-only networks (vmctl/hostnet.py): which kind a private network gets, names, plans,
dnsmasq's arguments, and the registry's sharing and clean-up with a fake host."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from vmctl import hostnet
from vmctl.errors import MachineError
from vmctl.vagrantfile.model import PrivateNetwork


def net(ip: str | None = "192.168.33.10", subnet: str = "192.168.33.0/24", **kw: object) -> PrivateNetwork:
    return PrivateNetwork(ip=ip, subnet=subnet, **kw)  # type: ignore[arg-type]


class FakeHost:
    """The host as hostnet sees it: links, addresses, DHCP servers."""

    def __init__(self, prefixes: list[tuple[str, str]] | None = None) -> None:
        self.links: dict[str, str] = {}  # bridge -> address
        self.dhcp: set[str] = set()
        self.prefixes = prefixes or [("eth0", "192.0.2.0/24"), ("lo", "127.0.0.0/8")]

    def link_exists(self, name: str) -> bool:
        return name in self.links

    def add_bridge(self, n: hostnet.HostNetwork) -> None:
        self.links[n.bridge] = n.interface

    def delete_link(self, name: str) -> None:
        self.links.pop(name, None)

    def host_prefixes(self) -> list[tuple[str, str]]:
        return self.prefixes + [(b, str(__import__("ipaddress").ip_interface(a).network)) for b, a in self.links.items()]

    def dhcp_running(self, n: hostnet.HostNetwork) -> bool:
        return n.bridge in self.dhcp

    def start_dhcp(self, n: hostnet.HostNetwork) -> None:
        self.dhcp.add(n.bridge)

    def stop_dhcp(self, n: hostnet.HostNetwork) -> None:
        self.dhcp.discard(n.bridge)

    forwarding: dict[str, str]

    def start_forwarding(self, n: hostnet.HostNetwork, isolated: list[hostnet.HostNetwork]) -> None:
        self.__dict__.setdefault("forwarding", {})[n.bridge] = n.forward_mode
        assert all(i.forward_mode == "none" for i in isolated)

    def stop_forwarding(self, n: hostnet.HostNetwork) -> None:
        self.__dict__.setdefault("forwarding", {}).pop(n.bridge, None)

    def add_macvtap(self, tap: hostnet.Macvtap) -> None:
        self.links[tap.name] = f"macvtap on {tap.lower}"


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("VMCTL_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


def test_mode_bridge_only_as_root_for_ipv4_without_a_tunnel() -> None:
    assert hostnet.mode(net(), is_root=True) == "bridge"
    assert hostnet.mode(net(), is_root=False) == "mcast"
    assert hostnet.mode(net(tunnel_type="mcast"), is_root=True) == "mcast"
    assert hostnet.mode(net(tunnel_type="udp"), is_root=True) == "udp"
    assert hostnet.mode(net("fd00::10", "fd00::/64"), is_root=True) == "mcast"
    # Not private address space: a host route there would take the host's own traffic.
    public = net("1.1.1.10", "1.1.1.0/24")
    assert hostnet.mode(public, is_root=True) == "mcast"
    note = hostnet.reachability_note(public, is_root=True)
    assert note is not None and "not private address space" in note
    with pytest.raises(MachineError, match="not private address space"):
        hostnet.plan(public, "/h")
    assert hostnet.mode(net("172.31.0.5", "172.31.0.0/16"), is_root=True) == "bridge"
    assert hostnet.mode(net("172.32.0.5", "172.32.0.0/16"), is_root=True) == "mcast"


def test_reachability_note_says_what_to_do() -> None:
    note = hostnet.reachability_note(net(), is_root=False)
    assert note is not None and "cannot reach" in note and "192.168.33.10" in note
    assert "root" in note and "forwarded" in note
    assert hostnet.reachability_note(net(), is_root=True) is None
    assert hostnet.reachability_note(net(tunnel_type="mcast"), is_root=False) is None  # asked for


def test_names_fit_ifnamsiz_and_are_stable() -> None:
    a = hostnet.bridge_name("/h", "subnet:192.168.33.0/24")
    assert a == hostnet.bridge_name("/h", "subnet:192.168.33.0/24")
    assert a.startswith("vmctl-") and len(a) == 15
    assert a != hostnet.bridge_name("/other-home", "subnet:192.168.33.0/24")
    assert a != hostnet.bridge_name("/h", "name:lab")
    tap = hostnet.tap_name("0123456789ab", 1)
    assert tap.startswith("vmtap-") and len(tap) == 15 and tap != hostnet.tap_name("0123456789ab", 2)
    # A network name with anything in it still makes a safe interface name.
    assert hostnet.bridge_name("/h", "name:../../x y\n;rm").isalnum() is False
    assert all(c.isalnum() or c == "-" for c in hostnet.bridge_name("/h", "name:../../x y\n;rm"))


def test_plan_defaults_follow_vagrant_libvirt() -> None:
    p = hostnet.plan(net(), "/h")
    assert (p.key, p.label, p.subnet, p.host_ip, p.interface) == (
        "subnet:192.168.33.0/24", "192.168.33.0/24", "192.168.33.0/24", "192.168.33.1", "192.168.33.1/24")
    assert p.dhcp_start is None  # a static network runs no DHCP server unless asked
    d = hostnet.plan(net(None, "172.28.128.0/24", type="dhcp"), "/h")
    assert (d.dhcp_start, d.dhcp_stop) == ("172.28.128.2", "172.28.128.254")
    named = hostnet.plan(net(name="lab", host_ip="192.168.33.254", dhcp_enabled=True, dhcp_start="192.168.33.100",
                             dhcp_stop="192.168.33.110"), "/h")
    assert (named.key, named.host_ip, named.dhcp_start, named.dhcp_stop) == (
        "name:lab", "192.168.33.254", "192.168.33.100", "192.168.33.110")


def test_plan_refuses_the_hosts_own_address_and_tiny_subnets() -> None:
    with pytest.raises(MachineError, match="host's own"):
        hostnet.plan(net("192.168.33.1"), "/h")
    with pytest.raises(MachineError, match="too small"):
        hostnet.plan(net("10.0.0.1", "10.0.0.0/31"), "/h")


def test_dnsmasq_serves_dhcp_only_on_its_bridge() -> None:
    p = hostnet.plan(net(None, "172.28.128.0/24", type="dhcp"), "/h")
    args = hostnet.dnsmasq_args(p, Path("/v/n.pid"), Path("/v/n.leases"))
    assert f"--interface={p.bridge}" in args and "--bind-interfaces" in args and "--except-interface=lo" in args
    assert "--port=0" in args  # no DNS
    assert "--dhcp-option=3" in args and "--dhcp-option=6" in args  # no router, no DNS server handed out
    assert "--dhcp-range=172.28.128.2,172.28.128.254,255.255.255.0,infinite" in args
    assert "--conf-file=/dev/null" in args
    with pytest.raises(ValueError):
        hostnet.dnsmasq_args(dataclasses.replace(p, dhcp_start="1.2.3.4,5"), Path("/p"), Path("/l"))


def test_machines_share_a_network_and_the_last_one_removes_it(home: Path) -> None:
    host = FakeHost()
    p = hostnet.plan(net(), str(home))
    hostnet.ensure("aaaaaaaaaaaa", [p], ops=host, live={"aaaaaaaaaaaa"})
    hostnet.ensure("bbbbbbbbbbbb", [p], ops=host, live={"aaaaaaaaaaaa", "bbbbbbbbbbbb"})
    assert host.links == {p.bridge: "192.168.33.1/24"}
    assert hostnet.load_registry()[p.key].users == ["aaaaaaaaaaaa", "bbbbbbbbbbbb"]
    hostnet.release("aaaaaaaaaaaa", ops=host, live={"aaaaaaaaaaaa", "bbbbbbbbbbbb"})
    assert p.bridge in host.links
    hostnet.release("bbbbbbbbbbbb", ops=host, live={"bbbbbbbbbbbb"})
    assert host.links == {} and hostnet.load_registry() == {}


def test_a_machine_gone_from_the_index_leaks_nothing(home: Path) -> None:
    host = FakeHost()
    d = hostnet.plan(net(None, "172.28.128.0/24", type="dhcp"), str(home))
    hostnet.ensure("aaaaaaaaaaaa", [d], ops=host, live={"aaaaaaaaaaaa"})
    assert host.dhcp == {d.bridge}
    # vmctl was killed after the machine left the index but before it released the network:
    # the next command (any ensure or release) removes the bridge and the DHCP server.
    hostnet.release(None, ops=host, live=set())
    assert host.links == {} and host.dhcp == set() and hostnet.load_registry() == {}


def test_a_machine_leaves_networks_it_is_no_longer_on(home: Path) -> None:
    host = FakeHost()
    a, b = hostnet.plan(net(), str(home)), hostnet.plan(net("10.5.0.2", "10.5.0.0/24"), str(home))
    hostnet.ensure("aaaaaaaaaaaa", [a, b], ops=host, live=set())
    hostnet.ensure("aaaaaaaaaaaa", [b], ops=host, live=set())
    assert set(host.links) == {b.bridge}


def test_conflicts_are_refused(home: Path) -> None:
    host = FakeHost(prefixes=[("eth0", "192.0.2.0/24"), ("docker0", "172.17.0.0/16")])
    lab = hostnet.plan(net(name="lab"), str(home))
    hostnet.ensure("aaaaaaaaaaaa", [lab], ops=host, live=set())
    with pytest.raises(MachineError, match="overlaps the network lab"):
        hostnet.ensure("bbbbbbbbbbbb", [hostnet.plan(net(name="other"), str(home))], ops=host, live={"aaaaaaaaaaaa"})
    with pytest.raises(MachineError, match="host's network 172.17.0.0/16 on docker0"):
        hostnet.ensure("bbbbbbbbbbbb", [hostnet.plan(net("172.17.8.101", "172.17.8.0/24"), str(home))], ops=host,
                       live={"aaaaaaaaaaaa"})
    with pytest.raises(MachineError, match="DHCP"):
        hostnet.ensure("bbbbbbbbbbbb", [hostnet.plan(net(name="lab", dhcp_enabled=True), str(home))], ops=host,
                       live={"aaaaaaaaaaaa"})
    with pytest.raises(MachineError, match="host at 192.168.33.1"):
        hostnet.ensure("bbbbbbbbbbbb", [hostnet.plan(net(name="lab", host_ip="192.168.33.2"), str(home))], ops=host,
                       live={"aaaaaaaaaaaa"})
    # A bridge of another VMCTL_HOME is the host's, not ours.
    host.prefixes.append(("vmctl-0123456789", "10.9.0.0/24"))
    with pytest.raises(MachineError, match="vmctl-0123456789"):
        hostnet.ensure("bbbbbbbbbbbb", [hostnet.plan(net("10.9.0.5", "10.9.0.0/24"), str(home))], ops=host,
                       live={"aaaaaaaaaaaa"})
    assert hostnet.load_registry()[lab.key].users == ["aaaaaaaaaaaa"]


def test_dhcp_address_reads_the_lease_file(home: Path) -> None:
    d = hostnet.plan(net(None, "172.28.128.0/24", type="dhcp"), str(home))
    hostnet.networks_dir().mkdir(parents=True)
    (hostnet.networks_dir() / f"{d.bridge}.leases").write_text(
        "0 52:54:00:aa:bb:cc 172.28.128.7 tiny 01:52:54:00:aa:bb:cc\n")
    assert hostnet.dhcp_address(d, "52:54:00:AA:BB:CC") == "172.28.128.7"
    assert hostnet.dhcp_address(d, "52:54:00:aa:bb:cd") is None


def test_up_says_what_the_host_cannot_reach_and_refuses_dhcp_without_root(tmp_path: Path) -> None:
    from vmctl.machine import hardware
    from vmctl.vagrantfile.model import MachineConfig

    user = hardware.Host(accel="tcg", uri="qemu:///embed", embedded=True, is_root=False)
    root = dataclasses.replace(user, is_root=True)
    cfg = MachineConfig(name="m", private_networks=(net(iface_name="labtap0"),))
    reach, iface = hardware.network_warnings(cfg, user)
    assert "cannot reach" in reach and "192.168.33.10" in reach
    assert "labtap0" in iface and "no host interface" in iface
    assert hardware.network_warnings(dataclasses.replace(cfg, private_networks=(net(tunnel_type="mcast"),)), user) == []
    assert hardware.network_warnings(dataclasses.replace(cfg, private_networks=(net(),)), root) == []
    dhcp = dataclasses.replace(cfg, private_networks=(net(None, "172.28.128.0/24", type="dhcp"),))
    with pytest.raises(MachineError, match="needs a host-only network"):
        hardware.network_warnings(dhcp, user)
    with pytest.raises(MachineError, match="host's own"):
        hardware.network_warnings(dataclasses.replace(cfg, private_networks=(net("192.168.33.1"),)), root)
    with pytest.raises(MachineError, match="the host has an interface of that name"):
        hardware.network_warnings(dataclasses.replace(cfg, private_networks=(net(iface_name="lo"),)), root)


def test_a_subnet_on_one_of_the_hosts_networks_is_named(home: Path) -> None:
    host = FakeHost(prefixes=[("eth0", "192.0.2.0/24"), ("docker0", "172.17.0.0/16")])
    coreos = hostnet.plan(net("172.17.8.101", "172.17.8.0/24"), str(home))
    assert hostnet.foreign_overlap(coreos, host.host_prefixes()) == "172.17.0.0/16 on docker0"
    lab = hostnet.plan(net(), str(home))
    hostnet.ensure("aaaaaaaaaaaa", [lab], ops=host, live=set())
    # This VMCTL_HOME's own bridges are not the host's networks.
    assert hostnet.foreign_overlap(lab, host.host_prefixes()) is None
    note = hostnet.overlap_note(net("172.17.8.101", "172.17.8.0/24"), "172.17.0.0/16 on docker0")
    assert "cannot reach" in note and "docker0" in note and "another subnet" in note


def test_a_forwarding_network_gets_its_chains_and_loses_them_with_its_last_machine(home: Path) -> None:
    host = FakeHost()
    nat = hostnet.plan(net(forward_mode="nat"), str(home))
    assert nat.forward_mode == "nat"
    hostnet.ensure("aaaaaaaaaaaa", [nat], ops=host, live=set())
    assert host.forwarding == {nat.bridge: "nat"}
    # Another machine asking for the same network isolated is refused; alone, a machine's
    # changed Vagrantfile remakes its network.
    with pytest.raises(MachineError, match="libvirt__forward_mode nat"):
        hostnet.ensure("bbbbbbbbbbbb", [hostnet.plan(net(), str(home))], ops=host, live={"aaaaaaaaaaaa"})
    route = hostnet.plan(net(forward_mode="route", forward_device="eth0"), str(home))
    hostnet.ensure("aaaaaaaaaaaa", [route], ops=host, live=set())
    assert host.forwarding == {route.bridge: "route"}
    assert hostnet.load_registry()[route.key].network == route
    hostnet.release(None, ops=host, live=set())  # killed vmctl: the next command cleans up
    assert host.forwarding == {} and host.links == {}


def test_nft_rules_stay_in_vmctls_table_and_name_only_checked_values(home: Path) -> None:
    nat = hostnet.plan(net(forward_mode="nat"), str(home))
    script = hostnet.nft_add(nat)
    fwd, natc = hostnet.nft_chain_names(nat)
    lines = script.splitlines()
    assert lines[0] == "add table inet vmctl"
    assert all(line.startswith(("add table inet vmctl", f"add chain inet vmctl {fwd}", f"add rule inet vmctl {fwd}",
                                f"add chain inet vmctl {natc}", f"add rule inet vmctl {natc}")) for line in lines)
    assert f'iifname "{nat.bridge}" ip saddr 192.168.33.0/24 accept' in script
    assert "ct state established,related accept" in script and "masquerade" in script
    assert f'oifname != "{nat.bridge}" masquerade' in script
    route = hostnet.plan(net(forward_mode="route", forward_device="eth1"), str(home))
    script = hostnet.nft_add(route)
    assert "masquerade" not in script and "hook postrouting" not in script
    assert 'oifname "eth1" ip saddr 192.168.33.0/24 accept' in script
    assert hostnet.nft_remove(nat, {fwd, "vmctl-other-fwd"}) == (
        f"flush chain inet vmctl {fwd}\ndelete chain inet vmctl {fwd}\n")
    assert hostnet.nft_remove(nat, set()) == ""
    with pytest.raises(ValueError):
        hostnet.nft_add(dataclasses.replace(route, forward_device="eth1; flush ruleset"))
    with pytest.raises(ValueError):
        hostnet.nft_add(dataclasses.replace(route, bridge="eth0"))
    with pytest.raises(ValueError):
        hostnet.nft_add(dataclasses.replace(route, forward_mode="none"))


def test_public_networks_need_privileges_and_an_existing_device(tmp_path: Path) -> None:
    from vmctl.machine import hardware
    from vmctl.vagrantfile.model import MachineConfig

    user = hardware.Host(accel="tcg", uri="qemu:///embed", embedded=True, is_root=False)
    root = dataclasses.replace(user, is_root=True)
    daemon = dataclasses.replace(user, uri="qemu:///system", embedded=False)
    public = net("10.203.0.10", "10.203.0.0/24", public=True, devs=("lo-missing0", "lo"))
    assert hostnet.mode(public, is_root=True) == "public" and hostnet.reachability_note(public, is_root=False) is None
    with pytest.raises(MachineError, match="needs privileges"):
        hardware.public_attachment(public, user)
    with pytest.raises(MachineError, match="no device lo-missing0 or lo") as err:
        hardware.public_attachment(public, daemon)
    assert "lo" not in (err.value.hint or "").split(": ", 1)[1].split(", ")
    devs = hardware.host_devices()
    if devs:
        dev = devs[0]
        attach = "bridge" if hardware.is_bridge(dev) else "direct"
        assert hardware.public_attachment(dataclasses.replace(public, devs=("nope0", dev)), root) == (attach, dev)
        cfg = MachineConfig(name="m", private_networks=(dataclasses.replace(public, devs=(dev,)),))
        assert hardware.network_warnings(cfg, root) == []
        if attach == "direct":
            with pytest.raises(MachineError, match="is not a bridge"):
                hardware.public_attachment(dataclasses.replace(public, devs=(dev,), attach="bridge"), root)


def test_macvtaps_vmctl_makes_go_with_their_machine(home: Path) -> None:
    host = FakeHost()
    tap = hostnet.Macvtap(name="vmtap-0123456789", lower="eth0", mode="bridge", mac="52:54:00:01:02:03")
    hostnet.ensure_macvtaps("aaaaaaaaaaaa", [tap], ops=host, live=set())
    assert host.links == {tap.name: "macvtap on eth0"}
    hostnet.ensure_macvtaps("aaaaaaaaaaaa", [tap], ops=host, live=set())  # every start: idempotent
    vepa = dataclasses.replace(tap, mode="vepa", lower="eth1")
    hostnet.ensure_macvtaps("aaaaaaaaaaaa", [vepa], ops=host, live=set())  # the Vagrantfile changed
    assert host.links == {tap.name: "macvtap on eth1"}
    hostnet.ensure_macvtaps("aaaaaaaaaaaa", [tap], ops=host, live=set())
    other = dataclasses.replace(tap, name="vmtap-abcdefabcd")
    hostnet.ensure_macvtaps("bbbbbbbbbbbb", [other], ops=host, live={"aaaaaaaaaaaa"})
    hostnet.release("aaaaaaaaaaaa", ops=host, live={"aaaaaaaaaaaa", "bbbbbbbbbbbb"})
    assert set(host.links) == {other.name}
    # A machine that left the index while vmctl was killed: the next command removes its macvtap.
    hostnet.release(None, ops=host, live=set())
    assert host.links == {}


def test_macvtap_names_and_values_are_checked() -> None:
    ops = hostnet.IpOps()
    for bad in (hostnet.Macvtap("vmtap-1", "eth0; reboot", "bridge", "52:54:00:01:02:03"),
                hostnet.Macvtap("vmtap-1", "eth0", "bridged", "52:54:00:01:02:03"),
                hostnet.Macvtap("vmtap-1", "eth0", "bridge", "01:00:5e:00:00:01")):
        with pytest.raises(ValueError):
            ops.add_macvtap(bad)


def test_a_box_may_not_add_a_public_network_or_forwarding(tmp_path: Path) -> None:
    import textwrap

    from vmctl.vagrantfile.loader import evaluate_project

    project, box_dir = tmp_path / "project", tmp_path / "box"
    project.mkdir()
    box_dir.mkdir()
    (project / "Vagrantfile").write_text('Vagrant.configure("2") do |config|\n  config.vm.box = "test/box"\nend\n')
    (box_dir / "Vagrantfile").write_text(textwrap.dedent("""
        Vagrant.configure("2") do |config|
          config.vm.network "public_network", dev: "eth0"
          config.vm.network "private_network", ip: "10.9.0.5", libvirt__forward_mode: "nat"
        end
    """))
    cfg = evaluate_project(project / "Vagrantfile", env={"HOME": "/home/tester"},
                           box_vagrantfile=lambda name, version: box_dir / "Vagrantfile")
    (m,) = cfg.machines
    assert [(n.public, n.forward_mode) for n in m.private_networks] == [(False, "none")]
    assert any("adds a public_network" in w and "which a box may not do" in w for w in cfg.warnings)
    assert any('libvirt__forward_mode: "nat"' in w and "which a box may not do" in w for w in cfg.warnings)
