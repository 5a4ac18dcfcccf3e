"""Private networks through a libvirt daemon (qemu:///system) are libvirt networks the
daemon makes: the host reaches a machine's private address, a DHCP network's address (from
libvirt's dnsmasq) shows in status --json, and destroy removes the networks vmctl defined
and leaves alone one it did not. One tiny-box machine, booted once for the module."""

from __future__ import annotations

import os
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


@pytest.fixture(scope="module")
def machine(vmctl: Vmctl, tiny_box: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    ensure_daemons()
    folder = tmp_path_factory.mktemp("libvirt-networks")
    folder.chmod(0o755)
    user_net = tmp_path_factory.mktemp("user-net") / "net.xml"
    user_net.write_text(f"<network><name>{USER_NET}</name><bridge name='vme2e-usr' stp='on' delay='0'/>"
                        f"<ip address='{USERS}.1' netmask='255.255.255.0'/></network>")
    virsh("net-define", str(user_net))
    virsh("net-start", USER_NET)
    write_vagrantfile(folder, f"""
        Vagrant.configure("2") do |config|
          config.vm.box = "vmctl/tiny"
          config.vm.synced_folder ".", "/vagrant", disabled: true
          config.vm.network "private_network", ip: "{STATIC}.10"
          config.vm.network "private_network", type: "dhcp", libvirt__network_address: "{DHCP}.0"
          config.vm.network "private_network", ip: "{USERS}.10", libvirt__network_name: "{USER_NET}"
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
        virsh("net-destroy", USER_NET, check=False)
        virsh("net-undefine", USER_NET, check=False)
        for name in (f"vmctl-{STATIC}.0-24", f"vmctl-{DHCP}.0-24"):
            virsh("net-destroy", name, check=False)
            virsh("net-undefine", name, check=False)


def networks(vmctl: Vmctl, folder: Path) -> list[dict]:
    (m,) = vmctl("status", "--json", cwd=folder, env=ENV).json()["machines"]
    return m["networks"]


def libvirt_networks() -> set[str]:
    return set(virsh("net-list", "--all", "--name").stdout.split())


def test_the_host_reaches_a_private_address_on_a_libvirt_network(vmctl: Vmctl, machine: Path) -> None:
    static, _, _ = networks(vmctl, machine)
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
    _, dhcp, _ = networks(vmctl, machine)
    assert dhcp["type"] == "dhcp" and dhcp["mode"] == "libvirt" and dhcp["subnet"] == f"{DHCP}.0/24"
    assert dhcp["ip"] is not None and dhcp["ip"].startswith(f"{DHCP}."), dhcp
    assert f"{dhcp['ip']}/24" in vmctl("ssh", "-c", "ip -4 addr", cwd=machine, env=ENV).stdout
    assert icmp_ping(dhcp["ip"])


def test_a_network_the_user_defined_is_used_and_kept(vmctl: Vmctl, machine: Path) -> None:
    _, _, users = networks(vmctl, machine)
    assert users["mode"] == "libvirt" and users["network"] == USER_NET and users["bridge"] == "vme2e-usr"
    assert icmp_ping(f"{USERS}.10")
    mine = {n["network"] for n in networks(vmctl, machine)} - {USER_NET}
    assert mine <= libvirt_networks()
    vmctl("destroy", "-f", cwd=machine, env=ENV)
    left = libvirt_networks()
    assert USER_NET in left and not mine & left, left
    assert "Active:         yes" in virsh("net-info", USER_NET).stdout
