"""Forwarding private networks and public networks (root): a guest on a nat private network
reaches an address on the host outside its bridge, masqueraded, on a route network
unmasqueraded, and on an isolated network not at all; a public_network on an existing host bridge is reached from the host; one on
a plain device is macvtap; destroy leaves no tap, macvtap or nftables chain behind.

One tiny-box machine with five NICs, booted once for the module. The "outside" is a network
namespace the test makes: a veth pair whose far end (10.204.0.2) holds a TCP listener that
answers with the address it sees, and a second veth pair as macvtap's lower device, its far
end (10.205.0.1) in the namespace too.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import Vmctl, write_vagrantfile

pytestmark = [pytest.mark.host_wide, pytest.mark.skipif(os.geteuid() != 0, reason="host networks need root (CI runs as root)")]

NS = "vmctlt-ns"
BRIDGE = "vmctltestbr0"
MACVTAP_LOWER = "vmctlt-mv0"

VAGRANTFILE = f"""
    Vagrant.configure("2") do |config|
      config.vm.box = "vmctl/tiny"
      config.vm.synced_folder ".", "/vagrant", disabled: true
      config.vm.provider :libvirt do |lv|
        lv.memory = 256
      end
      config.vm.network "private_network", ip: "10.202.0.10", libvirt__forward_mode: "nat"
      config.vm.network "private_network", ip: "10.206.0.10"
      config.vm.network "public_network", dev: "{BRIDGE}", ip: "10.203.0.10"
      config.vm.network "public_network", dev: "{MACVTAP_LOWER}", mode: "bridge", ip: "10.205.0.10"
      config.vm.network "private_network", ip: "10.207.0.10", libvirt__forward_mode: "route",
        libvirt__forward_device: "vmctlt-h0"
    end
"""

# Answers each connection with the peer address it sees.
LISTENER = """
import socket
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("10.204.0.2", 8081))
s.listen(8)
print("listening", flush=True)
while True:
    c, (peer, _) = s.accept()
    c.sendall(f"seen {peer}\\n".encode())
    c.close()
"""


def ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, timeout=30)


def cleanup_host() -> None:
    for link in (BRIDGE, "vmctlt-h0", MACVTAP_LOWER):
        subprocess.run(["ip", "link", "del", link], capture_output=True, timeout=30)
    subprocess.run(["ip", "netns", "del", NS], capture_output=True, timeout=30)


@pytest.fixture(scope="module")
def outside() -> Iterator[None]:
    """The host side of the test: the namespace, its veths, the bridge, the listener."""
    cleanup_host()
    ip("netns", "add", NS)
    listener = None
    try:
        ip("link", "add", "vmctlt-h0", "type", "veth", "peer", "name", "vmctlt-n0")
        ip("link", "set", "vmctlt-n0", "netns", NS)
        ip("addr", "add", "10.204.0.1/24", "dev", "vmctlt-h0")
        ip("link", "set", "vmctlt-h0", "up")
        ip("link", "add", MACVTAP_LOWER, "type", "veth", "peer", "name", "vmctlt-mv1")
        ip("link", "set", "vmctlt-mv1", "netns", NS)
        ip("link", "set", MACVTAP_LOWER, "up")
        for args in (("addr", "add", "10.204.0.2/24", "dev", "vmctlt-n0"), ("link", "set", "vmctlt-n0", "up"),
                     ("addr", "add", "10.205.0.1/24", "dev", "vmctlt-mv1"), ("link", "set", "vmctlt-mv1", "up"),
                     ("link", "set", "lo", "up"), ("route", "add", "10.207.0.0/24", "via", "10.204.0.1")):
            ip("netns", "exec", NS, "ip", *args)
        ip("link", "add", BRIDGE, "type", "bridge")
        ip("addr", "add", "10.203.0.1/24", "dev", BRIDGE)
        ip("link", "set", BRIDGE, "up")
        listener = subprocess.Popen(["ip", "netns", "exec", NS, sys.executable, "-c", LISTENER],
                                    stdout=subprocess.PIPE, text=True)
        assert listener.stdout is not None and listener.stdout.readline().strip() == "listening"
        yield
    finally:
        if listener is not None:
            listener.kill()
            listener.wait(10)
        cleanup_host()


@pytest.fixture(scope="module")
def machine(vmctl: Vmctl, tiny_box: Path, outside: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    folder = tmp_path_factory.mktemp("forwarding-networks")
    write_vagrantfile(folder, VAGRANTFILE)
    try:
        vmctl("up", cwd=folder)
        yield folder
    finally:
        vmctl("destroy", "-f", cwd=folder, check=False, timeout=120)


def networks(vmctl: Vmctl, folder: Path) -> list[dict]:
    (m,) = vmctl("status", "--json", cwd=folder).json()["machines"]
    return m["networks"]


def nft_chains() -> set[str]:
    r = subprocess.run(["nft", "-j", "list", "table", "inet", "vmctl"], capture_output=True, text=True, timeout=30)
    if r.returncode != 0:
        return set()
    return {i["chain"]["name"] for i in json.loads(r.stdout)["nftables"] if "chain" in i}


def fetch_outside(vmctl: Vmctl, folder: Path, gateway: str) -> str:
    """What the listener outside saw, connecting from the guest through GATEWAY (the host's
    address on one of the guest's private networks): "" when it could not connect."""
    script = (f"sudo ip route replace 10.204.0.2/32 via {gateway} && "
              "nc -w 5 10.204.0.2 8081 </dev/null; sudo ip route del 10.204.0.2/32")
    return vmctl("ssh", "-c", script, cwd=folder, check=False, timeout=60).stdout.strip()


def test_a_nat_network_reaches_outside_masqueraded_and_an_isolated_one_does_not(vmctl: Vmctl, machine: Path) -> None:
    nat, isolated, _, _, route = networks(vmctl, machine)
    assert nat["mode"] == "bridge" and nat["forward_mode"] == "nat" and isolated["forward_mode"] == "none"
    assert route["forward_mode"] == "route" and f"{route['bridge']}-nat" not in nft_chains()
    assert {f"{nat['bridge']}-fwd", f"{nat['bridge']}-nat"} <= nft_chains()
    assert not any(c.startswith(isolated["bridge"]) for c in nft_chains())
    assert Path("/proc/sys/net/ipv4/ip_forward").read_text().strip() == "1"
    assert Path(f"/proc/sys/net/ipv4/conf/{isolated['bridge']}/forwarding").read_text().strip() == "0"
    # Masqueraded: the listener sees the host's address on its side, not 10.202.0.10.
    assert fetch_outside(vmctl, machine, "10.202.0.1") == "seen 10.204.0.1"
    assert fetch_outside(vmctl, machine, "10.206.0.1") == ""
    # Routed: the listener sees the guest's own address (it has a route back through the host).
    assert fetch_outside(vmctl, machine, "10.207.0.1") == "seen 10.207.0.10"


def test_a_public_network_on_a_host_bridge_is_reached_from_the_host(vmctl: Vmctl, machine: Path) -> None:
    public = networks(vmctl, machine)[2]
    assert public["mode"] == "public" and public["ip"] == "10.203.0.10" and public["devs"] == [BRIDGE]
    taps = os.listdir(f"/sys/class/net/{BRIDGE}/brif")
    assert len(taps) == 1 and taps[0].startswith("vmtap-")
    vmctl("ssh", "-c", "(printf 'HTTP/1.0 200 OK\\r\\n\\r\\nhello from the bridge\\n' "
          "| setsid nc -l -p 8080 >/dev/null 2>&1 &) ; sleep 0.5", cwd=machine)
    with urllib.request.urlopen("http://10.203.0.10:8080/", timeout=15) as response:
        assert response.read() == b"hello from the bridge\n"


def test_a_public_network_on_a_device_is_macvtap(vmctl: Vmctl, machine: Path) -> None:
    mac = networks(vmctl, machine)[3]["mac"]
    definitions = [ET.parse(f).getroot() for f in (vmctl.home / "libvirt" / "etc" / "qemu").glob("*.xml")]
    (iface,) = [i for d in definitions for i in d.iterfind("devices/interface")
                if i.find("mac") is not None and i.find("mac").get("address") == mac]  # type: ignore[union-attr]
    # The embedded driver: a macvtap vmctl made, handed to QEMU as an unmanaged interface
    # (libvirt 9.0's embedded driver crashes stopping its own type='direct').
    assert iface.get("type") == "ethernet"
    target = iface.find("target")
    assert target is not None and target.get("managed") == "no"
    tap = target.get("dev")
    assert Path(f"/sys/class/net/{tap}/lower_{MACVTAP_LOWER}").exists()
    details = subprocess.run(["ip", "-d", "link", "show", tap], capture_output=True, text=True, check=True).stdout
    assert "macvtap mode bridge" in details and mac in details
    # The guest has the NIC with its address, and reaches the lower device's far end.
    assert "10.205.0.10/24" in vmctl("ssh", "-c", "ip -4 addr", cwd=machine).stdout
    assert vmctl("ssh", "-c", "ping -c 2 -W 2 10.205.0.1", cwd=machine, check=False, timeout=60).returncode == 0


def test_destroy_leaves_no_tap_macvtap_or_chain(vmctl: Vmctl, machine: Path) -> None:
    bridges = [n["bridge"] for n in networks(vmctl, machine) if n["mode"] == "bridge"]
    assert len(bridges) == 3
    vmctl("destroy", "-f", cwd=machine)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and os.listdir(f"/sys/class/net/{BRIDGE}/brif"):
        time.sleep(0.2)
    assert os.listdir(f"/sys/class/net/{BRIDGE}/brif") == []
    assert not [n for n in os.listdir("/sys/class/net") if n.startswith("vmtap-")
                and Path(f"/sys/class/net/{n}/lower_{MACVTAP_LOWER}").exists()]
    for bridge in bridges:
        assert not Path(f"/sys/class/net/{bridge}").exists()
        assert not any(c.startswith(bridge) for c in nft_chains())
