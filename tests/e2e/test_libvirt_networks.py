"""Private networks through a libvirt daemon (qemu:///system) are libvirt networks the
daemon makes: the host reaches a machine's private address, a DHCP network's address (from
libvirt's dnsmasq) shows in status --json, and destroy removes the networks vmctl defined
and leaves alone one it did not. Public networks through the daemon: a DHCP address on an
existing bridge (a LAN stood in for by a libvirt network the test defines) shows in status
--json; on a plain device (a veth pair whose far end is in a namespace) it is libvirt's own
macvtap (type='direct'). One tiny-box machine, booted once for the module."""

from __future__ import annotations

import os
import subprocess
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import Vmctl, write_vagrantfile
from test_host_networks import icmp_ping
from test_system_uri import ensure_daemons, virsh

pytestmark = [
    pytest.mark.host_wide,
    pytest.mark.skipif(os.geteuid() != 0, reason="qemu:///system needs root (CI runs as root)"),
]

ENV = {"VMCTL_LIBVIRT_URI": "qemu:///system"}
STATIC = "10.231.21"
DHCP = "10.231.22"
USERS = "10.231.23"  # a network the user defined, not vmctl
USER_NET = f"vmctl-e2e-user-{os.getpid()}"
LAN = "10.231.24"  # a public network's DHCP server: another user-defined network
LAN_NET = f"vmctl-e2e-lan-{os.getpid()}"
LAN_BRIDGE = "vme2e-lan"
MACVTAP = "10.231.25"
MACVTAP_LOWER, MACVTAP_PEER, NS = "vme2e-mv0", "vme2e-mv1", "vme2e-ns"


def define_network(path: Path, name: str, xml: str) -> None:
    path.write_text(xml)
    virsh("net-define", str(path))
    virsh("net-start", name)


def ip(*args: str, check: bool = True) -> None:
    subprocess.run(["ip", *args], check=check, capture_output=True, timeout=30)


def remove_host_setup() -> None:
    for name in (USER_NET, LAN_NET):
        virsh("net-destroy", name, check=False)
        virsh("net-undefine", name, check=False)
    ip("link", "del", MACVTAP_LOWER, check=False)
    ip("netns", "del", NS, check=False)


@pytest.fixture(scope="module")
def machine(vmctl: Vmctl, tiny_box: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    ensure_daemons()
    folder = tmp_path_factory.mktemp("libvirt-networks")
    folder.chmod(0o755)
    remove_host_setup()
    nets = tmp_path_factory.mktemp("user-nets")
    define_network(nets / "user.xml", USER_NET, f"<network><name>{USER_NET}</name><bridge name='vme2e-usr'/>"
                   f"<ip address='{USERS}.1' netmask='255.255.255.0'/></network>")
    define_network(nets / "lan.xml", LAN_NET, f"<network><name>{LAN_NET}</name><bridge name='{LAN_BRIDGE}'/>"
                   f"<ip address='{LAN}.1' netmask='255.255.255.0'><dhcp><range start='{LAN}.100' "
                   f"end='{LAN}.150'/></dhcp></ip></network>")
    ip("netns", "add", NS)
    ip("link", "add", MACVTAP_LOWER, "type", "veth", "peer", "name", MACVTAP_PEER, "netns", NS)
    ip("link", "set", MACVTAP_LOWER, "up")
    ip("-n", NS, "addr", "add", f"{MACVTAP}.1/24", "dev", MACVTAP_PEER)
    ip("-n", NS, "link", "set", MACVTAP_PEER, "up")
    write_vagrantfile(folder, f"""
        Vagrant.configure("2") do |config|
          config.vm.box = "vmctl/tiny"
          config.vm.synced_folder ".", "/vagrant", disabled: true
          config.vm.network "private_network", ip: "{STATIC}.10"
          config.vm.network "private_network", type: "dhcp", libvirt__network_address: "{DHCP}.0"
          config.vm.network "private_network", ip: "{USERS}.10", libvirt__network_name: "{USER_NET}"
          config.vm.network "public_network", dev: "{LAN_BRIDGE}"
          config.vm.network "public_network", dev: "{MACVTAP_LOWER}", mode: "bridge", ip: "{MACVTAP}.10"
          config.vm.provider :libvirt do |lv|
            lv.memory = 256
          end
        end
    """)
    try:
        vmctl("up", cwd=folder, env=ENV)
        yield folder
    finally:
        vmctl("destroy", "-f", cwd=folder, env=ENV, check=False, timeout=120)
        remove_host_setup()
        for name in (f"vmctl-{STATIC}.0-24", f"vmctl-{DHCP}.0-24"):
            virsh("net-destroy", name, check=False)
            virsh("net-undefine", name, check=False)


def networks(vmctl: Vmctl, folder: Path) -> list[dict]:
    (m,) = vmctl("status", "--json", cwd=folder, env=ENV).json()["machines"]
    return m["networks"]


def libvirt_networks() -> set[str]:
    return set(virsh("net-list", "--all", "--name").stdout.split())


def test_the_host_reaches_a_private_address_on_a_libvirt_network(vmctl: Vmctl, machine: Path) -> None:
    static = networks(vmctl, machine)[0]
    assert static["mode"] == "libvirt" and static["network"] == f"vmctl-{STATIC}.0-24"
    assert static["host_reachable"] and static["host_ip"] == f"{STATIC}.1" and static["ip"] == f"{STATIC}.10"
    # The daemon made it: active, isolated (no <forward>), the bridge holding the subnet's .1.
    assert "Active:         yes" in virsh("net-info", static["network"]).stdout
    xml = virsh("net-dumpxml", static["network"]).stdout
    assert "<forward" not in xml and f"address='{STATIC}.1'" in xml
    assert Path("/sys/class/net", static["bridge"], "bridge").is_dir()
    assert icmp_ping(f"{STATIC}.10")
    # A TCP service in the guest, fetched from the host on the private address.
    vmctl("ssh", "-c", "(printf 'HTTP/1.0 200 OK\\r\\nContent-Type: text/plain\\r\\n\\r\\nhello over libvirt\\n' "
          "| setsid nc -l -p 8080 >/dev/null 2>&1 &) ; sleep 0.5", cwd=machine, env=ENV)
    with urllib.request.urlopen(f"http://{STATIC}.10:8080/", timeout=15) as response:
        assert response.read() == b"hello over libvirt\n"


def test_a_dhcp_address_from_the_networks_dnsmasq_shows_in_status(vmctl: Vmctl, machine: Path) -> None:
    dhcp = networks(vmctl, machine)[1]
    assert dhcp["type"] == "dhcp" and dhcp["mode"] == "libvirt" and dhcp["subnet"] == f"{DHCP}.0/24"
    assert dhcp["ip"] is not None and dhcp["ip"].startswith(f"{DHCP}."), dhcp
    assert f"{dhcp['ip']}/24" in vmctl("ssh", "-c", "ip -4 addr", cwd=machine, env=ENV).stdout
    assert icmp_ping(dhcp["ip"])


def test_a_dhcp_public_networks_address_shows_in_status(vmctl: Vmctl, machine: Path) -> None:
    lan = networks(vmctl, machine)[3]
    assert lan["mode"] == "public" and lan["type"] == "dhcp"
    assert lan["ip"] is not None and lan["ip"].startswith(f"{LAN}."), lan
    assert 100 <= int(lan["ip"].rsplit(".", 1)[1]) <= 150
    assert f"{lan['ip']}/24" in vmctl("ssh", "-c", "ip -4 addr", cwd=machine, env=ENV).stdout
    assert icmp_ping(lan["ip"])


def test_a_public_network_on_a_device_is_libvirts_macvtap(vmctl: Vmctl, machine: Path) -> None:
    (m,) = vmctl("status", "--json", cwd=machine, env=ENV).json()["machines"]
    mac = m["networks"][4]["mac"]
    xml = virsh("dumpxml", m["domain"]).stdout
    assert f"<source dev='{MACVTAP_LOWER}' mode='bridge'/>" in xml and "<interface type='direct'>" in xml
    taps = [n for n in os.listdir("/sys/class/net") if Path(f"/sys/class/net/{n}/lower_{MACVTAP_LOWER}").exists()]
    assert len(taps) == 1
    details = subprocess.run(["ip", "-d", "link", "show", taps[0]], capture_output=True, text=True, check=True).stdout
    assert "macvtap mode bridge" in details and mac in details
    assert vmctl("ssh", "-c", f"ping -c 2 -W 2 {MACVTAP}.1", cwd=machine, env=ENV, check=False,
                 timeout=60).returncode == 0


def test_a_network_the_user_defined_is_used_and_kept(vmctl: Vmctl, machine: Path, tmp_path: Path) -> None:
    users = networks(vmctl, machine)[2]
    assert users["mode"] == "libvirt" and users["network"] == USER_NET and users["bridge"] == "vme2e-usr"
    assert icmp_ping(f"{USERS}.10")
    # Its subnet without its name: refused before anything is made, with the name to use.
    other = tmp_path / "other"
    other.mkdir()
    write_vagrantfile(other, f"""
        Vagrant.configure("2") do |config|
          config.vm.box = "vmctl/tiny"
          config.vm.network "private_network", ip: "{USERS}.20"
        end
    """)
    refused = vmctl("up", cwd=other, env=ENV, check=False)
    assert refused.returncode == 1 and f"overlaps the libvirt network {USER_NET}" in refused.stderr, refused.stderr
    assert f'libvirt__network_name: "{USER_NET}"' in refused.stderr
    assert vmctl("status", "--json", cwd=other, env=ENV).json()["machines"][0]["state"] == "not_created"
    mine = {n["network"] for n in networks(vmctl, machine) if n["mode"] == "libvirt"} - {USER_NET}
    assert mine <= libvirt_networks()
    vmctl("destroy", "-f", cwd=machine, env=ENV)
    left = libvirt_networks()
    assert USER_NET in left and not mine & left, left
    assert "Active:         yes" in virsh("net-info", USER_NET).stdout
    # libvirt removed its macvtap with the domain.
    assert not [n for n in os.listdir("/sys/class/net") if Path(f"/sys/class/net/{n}/lower_{MACVTAP_LOWER}").exists()]
