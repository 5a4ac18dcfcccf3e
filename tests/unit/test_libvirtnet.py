"""Libvirt-managed networks (vmctl/libvirtnet.py): which URIs get them, the network XML,
sharing by name, and removal only of what vmctl defined, with a fake daemon."""

from __future__ import annotations

import dataclasses
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from vmctl import hostnet, libvirtnet
from vmctl.domain.network import BridgeNic, NetworkSpec, build_interfaces
from vmctl.errors import MachineError
from vmctl.machine import hardware
from vmctl.vagrantfile.model import MachineConfig, PrivateNetwork


def net(ip: str | None = "192.168.33.10", subnet: str = "192.168.33.0/24", **kw: object) -> PrivateNetwork:
    return PrivateNetwork(ip=ip, subnet=subnet, **kw)  # type: ignore[arg-type]


def host(uri: str, *, is_root: bool = False) -> hardware.Host:
    return hardware.Host(accel="tcg", uri=uri, embedded=uri.startswith("qemu:///embed"), is_root=is_root)


class FakeDaemon:
    """The network operations of hypervisor.Connection, on dicts."""

    def __init__(self) -> None:
        self.networks: dict[str, str] = {}
        self.active: set[str] = set()
        self.domains: dict[str, str] = {}  # name -> XML

    def network_xml(self, name: str) -> str | None:
        return self.networks.get(name)

    def network_xmls(self) -> dict[str, str]:
        return dict(self.networks)

    def define_network(self, xml: str) -> bool:
        name = ET.fromstring(xml).findtext("name") or ""
        if name in self.networks:
            return False
        self.networks[name] = xml
        return True

    def start_network(self, name: str) -> None:
        self.active.add(name)

    def remove_network(self, name: str) -> None:
        self.networks.pop(name)
        self.active.discard(name)

    def network_users(self, name: str) -> list[str]:
        return [d for d, x in self.domains.items() if name in libvirtnet.used_networks(x)]


def domain_on(*networks: str) -> str:
    nics = "".join(f"<interface type='network'><source network='{n}'/></interface>" for n in networks)
    return f"<domain><devices>{nics}<interface type='user'/></devices></domain>"


def test_daemon_uris_get_libvirt_networks_and_the_rules_of_the_others_hold() -> None:
    system = host("qemu:///system")
    assert system.daemon_networks and host("qemu+ssh://lab/system").daemon_networks
    assert host("qemu:///session", is_root=True).daemon_networks  # root's session is the system daemon
    assert not host("qemu:///session").daemon_networks
    assert not host("qemu:///embed?root=/h", is_root=True).daemon_networks
    assert hostnet.mode(net(), is_root=False, daemon=True) == "libvirt"
    assert hostnet.mode(net(), is_root=True, daemon=True) == "libvirt"
    # A public subnet never gets a host-only network, whoever makes it; tunnels stay tunnels.
    public = net("1.1.1.10", "1.1.1.0/24")
    assert hostnet.mode(public, is_root=False, daemon=True) == "mcast"
    note = hostnet.reachability_note(public, is_root=False, daemon=True)
    assert note is not None and "not private address space" in note
    assert hostnet.mode(net(tunnel_type="udp"), is_root=False, daemon=True) == "udp"
    assert hostnet.reachability_note(net(), is_root=False, daemon=True) is None
    cfg = MachineConfig(name="m", private_networks=(net(), net(None, "172.28.128.0/24", type="dhcp")))
    assert hardware.network_warnings(cfg, system) == []  # DHCP too: the daemon's dnsmasq
    remote = hardware.network_warnings(dataclasses.replace(cfg, private_networks=(net(),)),
                                       host("qemu+ssh://lab/system"))
    assert len(remote) == 1 and "libvirt network on lab" in remote[0]
    with pytest.raises(MachineError, match="host's own"):
        hardware.network_warnings(dataclasses.replace(cfg, private_networks=(net("192.168.33.1"),)), system)


def test_network_xml_isolated_unless_forwarded_with_the_planned_dhcp_range() -> None:
    lnet = libvirtnet.plan(net(None, "172.28.128.0/24", type="dhcp"))
    assert lnet.name == "vmctl-172.28.128.0-24" and not lnet.named
    assert lnet.spec.bridge.startswith("vmnet-") and len(lnet.spec.bridge) <= 15
    root = ET.fromstring(libvirtnet.network_xml(lnet))
    assert root.find("forward") is None
    assert root.find("ip").attrib == {"address": "172.28.128.1", "netmask": "255.255.255.0"}
    assert root.find("ip/dhcp/range").attrib == {"start": "172.28.128.2", "end": "172.28.128.254"}
    assert root.find("bridge").get("name") == lnet.spec.bridge
    parsed = libvirtnet.parse_network(libvirtnet.network_xml(lnet))
    assert parsed.ours and parsed.subnets == (("172.28.128.1", "172.28.128.0/24"),)
    nat = libvirtnet.plan(net(name="lab", forward_mode="nat", forward_device="eth0"))
    assert nat.named and nat.name == "lab"
    fwd = ET.fromstring(libvirtnet.network_xml(nat)).find("forward")
    assert fwd is not None and fwd.attrib == {"mode": "nat", "dev": "eth0"}
    assert ET.fromstring(libvirtnet.network_xml(nat)).find("ip/dhcp") is None
    with pytest.raises(MachineError, match="cannot name a libvirt network"):
        libvirtnet.plan(net(name="../x"))


def test_machines_share_a_network_by_name_and_the_last_one_removes_it() -> None:
    daemon = FakeDaemon()
    lab = libvirtnet.plan(net(name="lab"))
    libvirtnet.ensure(daemon, [lab])
    libvirtnet.ensure(daemon, [libvirtnet.plan(net("192.168.33.11", name="lab"))])  # another project
    assert list(daemon.networks) == ["lab"] and daemon.active == {"lab"}
    daemon.domains = {"a": domain_on("lab"), "b": domain_on("lab")}
    del daemon.domains["a"]
    libvirtnet.release(daemon, ["lab"])
    assert "lab" in daemon.networks  # b is still on it
    del daemon.domains["b"]
    libvirtnet.release(daemon, ["lab"])
    assert daemon.networks == {} and daemon.active == set()


def test_a_network_vmctl_did_not_define_is_used_as_it_is_and_never_removed() -> None:
    daemon = FakeDaemon()
    daemon.networks["default"] = ("<network><name>default</name><forward mode='nat'/><bridge name='virbr0'/>"
                                  "<ip address='192.168.122.1' netmask='255.255.255.0'><dhcp>"
                                  "<range start='192.168.122.2' end='192.168.122.254'/></dhcp></ip></network>")
    libvirtnet.ensure(daemon, [libvirtnet.plan(net("192.168.122.10", "192.168.122.0/24", name="default"))])
    assert daemon.active == {"default"}
    libvirtnet.release(daemon, ["default"])
    assert "default" in daemon.networks
    # Without the name, the subnet is taken: vmctl says which network holds it.
    with pytest.raises(MachineError, match="overlaps the libvirt network default") as err:
        libvirtnet.ensure(daemon, [libvirtnet.plan(net("192.168.122.10", "192.168.122.0/24"))])
    assert 'libvirt__network_name: "default"' in (err.value.hint or "")
    with pytest.raises(MachineError, match="is 192.168.122.0/24, not 192.168.33.0/24"):
        libvirtnet.ensure(daemon, [libvirtnet.plan(net(name="default"))])


def test_a_network_vmctl_defined_must_be_asked_for_the_same_way() -> None:
    daemon = FakeDaemon()
    libvirtnet.ensure(daemon, [libvirtnet.plan(net(name="lab"))])
    with pytest.raises(MachineError, match="forward_mode none"):
        libvirtnet.ensure(daemon, [libvirtnet.plan(net(name="lab", forward_mode="nat"))])
    with pytest.raises(MachineError, match="has no DHCP server"):
        libvirtnet.ensure(daemon, [libvirtnet.plan(net(None, name="lab", type="dhcp"))])
    with pytest.raises(MachineError, match="host at 192.168.33.1, not 192.168.33.2"):
        libvirtnet.ensure(daemon, [libvirtnet.plan(net(name="lab", host_ip="192.168.33.2"))])


def test_a_nic_on_a_libvirt_network_is_an_interface_of_type_network() -> None:
    devices = ET.Element("devices")
    build_interfaces(devices, NetworkSpec(management=None, private=(
        BridgeNic(mac="52:54:00:00:00:01", bridge="vmnet-x", tap=None, network="lab"),
        BridgeNic(mac="52:54:00:00:00:02", bridge="vmnet-y", tap="labtap0", network="vmctl-10.0.0.0-24"))))
    first, second = devices.findall("interface")
    assert first.get("type") == "network" and first.find("source").attrib == {"network": "lab"}
    assert first.find("target") is None and second.find("target").get("dev") == "labtap0"
    assert libvirtnet.used_networks(ET.tostring(ET.Element("domain")).decode()) == []
    xml = f"<domain>{ET.tostring(devices).decode()}</domain>"
    assert libvirtnet.used_networks(xml) == ["lab", "vmctl-10.0.0.0-24"]
    with pytest.raises(ValueError):
        build_interfaces(ET.Element("devices"), NetworkSpec(management=None, private=(
            BridgeNic(mac="52:54:00:00:00:01", bridge="vmnet-x", tap=None, network="a/b"),)))


def test_the_dhcp_address_a_guest_reports_is_checked_before_it_is_kept(tmp_path: Path,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    from vmctl import guest
    from vmctl.machine.state import MachineState

    assert guest.dhcp_address_said("noise\nvmctl-address 10.231.24.117/24\n") == "10.231.24.117"
    assert guest.dhcp_address_said("vmctl-address 10.0.0.1;reboot/24\n") is None
    assert guest.dhcp_address_said("") is None
    monkeypatch.setenv("VMCTL_HOME", str(tmp_path))
    from vmctl import paths

    home = paths.machines_dir() / "0123456789ab"
    base = {"id": "0123456789ab", "domain": "vmctl-p-default-0123456789ab", "uri": "qemu:///system",
            "disk": str(home / "disk.qcow2"), "console_log": str(home / "console.log"), "ssh_port": 2222,
            "ssh_user": "vagrant"}
    st = MachineState.from_json({**base, "dhcp_addresses": {"52:54:00:00:00:01": "10.231.24.117"}})
    assert st.dhcp_addresses == {"52:54:00:00:00:01": "10.231.24.117"}
    assert MachineState.from_json(base).dhcp_addresses == {}
    for bad in ({"52:54:00:00:00:01": "10.231.24.117; x"}, {"not a mac": "10.0.0.1"}, ["10.0.0.1"]):
        with pytest.raises(ValueError, match="DHCP address"):
            MachineState.from_json({**base, "dhcp_addresses": bad})
