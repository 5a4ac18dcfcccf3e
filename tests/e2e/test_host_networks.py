"""Host-only private networks (root): the host reaches a machine's private address, projects
naming one network share it, a DHCP network's address shows in status --json, and destroy
leaves no bridge, tap or dnsmasq behind. Three tiny-box machines, booted once for the module."""

from __future__ import annotations

import json
import os
import socket
import struct
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import Vmctl, write_vagrantfile

pytestmark = [pytest.mark.host_wide, pytest.mark.skipif(os.geteuid() != 0, reason="host-only networks need root (CI runs as root)")]

SHARED = "10.231.7"
OTHER = "10.231.8"


def project(ip: str, network: str, extra: str = "", name: str = "default") -> str:
    return f"""
        Vagrant.configure("2") do |config|
          config.vm.box = "vmctl/tiny"
          config.vm.synced_folder ".", "/vagrant", disabled: true
          config.vm.provider :libvirt do |lv|
            lv.memory = 256
          end
          config.vm.define "{name}" do |m|
            m.vm.network "private_network", ip: "{ip}", libvirt__network_name: "{network}"
            {extra}
          end
        end
    """


@pytest.fixture(scope="module")
def projects(vmctl: Vmctl, tiny_box: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Path]]:
    base = tmp_path_factory.mktemp("host-networks")
    folders = {"a": base / "a", "b": base / "b", "c": base / "c"}
    for folder in folders.values():
        folder.mkdir()
    # A: on the shared network, and on a DHCP network (vagrant-libvirt's default subnet).
    write_vagrantfile(folders["a"], project(f"{SHARED}.11", "e2e-shared",
                                            'm.vm.network "private_network", type: "dhcp"', name="web"))
    write_vagrantfile(folders["b"], project(f"{SHARED}.12", "e2e-shared"))
    write_vagrantfile(folders["c"], project(f"{OTHER}.13", "e2e-other"))
    try:
        for folder in folders.values():
            vmctl("up", cwd=folder)
        yield folders
    finally:
        for folder in folders.values():
            vmctl("destroy", "-f", cwd=folder, check=False, timeout=120)


def icmp_ping(address: str, timeout: float = 2.0, tries: int = 3) -> bool:
    """An ICMP echo from the host (a raw socket: root; the host has no ping command)."""
    with socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP) as s:
        s.settimeout(timeout)
        for seq in range(tries):
            header = struct.pack("!BBHHH", 8, 0, 0, 0x7D7D, seq)
            payload = b"vmctl-e2e"
            words = header + payload + b"\0" * (len(header + payload) % 2)
            total = sum(struct.unpack(f"!{len(words) // 2}H", words))
            total = (total >> 16) + (total & 0xFFFF)
            checksum = ~(total + (total >> 16)) & 0xFFFF
            s.sendto(struct.pack("!BBHHH", 8, 0, checksum, 0x7D7D, seq) + payload, (address, 0))
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                try:
                    data, (src, _) = s.recvfrom(1024)
                except TimeoutError:
                    break
                ihl = (data[0] & 0x0F) * 4
                if src == address and data[ihl] == 0 and struct.unpack("!H", data[ihl + 4:ihl + 6])[0] == 0x7D7D:
                    return True
    return False


def guest_ping(vmctl: Vmctl, folder: Path, address: str) -> bool:
    r = vmctl("ssh", "-c", f"ping -c 2 -W 2 {address}", cwd=folder, check=False, timeout=60)
    return r.returncode == 0


def our_links() -> set[str]:
    names = {Path(p).name for p in os.listdir("/sys/class/net")}
    return {n for n in names if n.startswith(("vmctl-", "vmtap-"))}


def bridge_of(link: str) -> str | None:
    master = Path("/sys/class/net", link, "master")
    return os.path.basename(os.readlink(master)) if master.exists() else None


def live_dnsmasq(bridges: set[str]) -> list[str]:
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[-1].split()[0]
        except OSError:
            continue
        if "dnsmasq" in cmdline and state != "Z" and any(f"--interface={b}\0" in cmdline for b in bridges):
            found.append(pid)
    return found


def networks(vmctl: Vmctl, folder: Path) -> list[dict]:
    (machine,) = vmctl("status", "--json", cwd=folder).json()["machines"]
    return machine["networks"]


def test_the_host_reaches_a_private_address(vmctl: Vmctl, projects: dict[str, Path]) -> None:
    a = projects["a"]
    assert icmp_ping(f"{SHARED}.11")
    # A TCP service in the guest, fetched from the host on the private address.
    vmctl("ssh", "-c", "(printf 'HTTP/1.0 200 OK\\r\\nContent-Type: text/plain\\r\\n\\r\\nhello from web\\n' "
          "| setsid nc -l -p 8080 >/dev/null 2>&1 &) ; sleep 0.5", cwd=a)
    with urllib.request.urlopen(f"http://{SHARED}.11:8080/", timeout=15) as response:
        assert response.read() == b"hello from web\n"
    (shared, dhcp) = networks(vmctl, a)
    assert shared["mode"] == "bridge" and shared["host_reachable"] and shared["ip"] == f"{SHARED}.11"
    assert shared["host_ip"] == f"{SHARED}.1" and bridge_of(shared["bridge"]) is None
    assert Path("/sys/class/net", shared["bridge"], "bridge").is_dir()


def test_projects_naming_a_network_share_it_and_others_do_not(vmctl: Vmctl, projects: dict[str, Path]) -> None:
    a, b, c = projects["a"], projects["b"], projects["c"]
    # B and A reach each other on their private NICs (the subnet is on-link there).
    assert guest_ping(vmctl, b, f"{SHARED}.11")
    assert guest_ping(vmctl, a, f"{SHARED}.12")
    # A reboot (a new tap on the same bridge) keeps it on the network.
    vmctl("reload", cwd=b)
    assert guest_ping(vmctl, a, f"{SHARED}.12") and icmp_ping(f"{SHARED}.12")
    # The third project is on another bridge: on its private NIC, the shared network's
    # guests do not answer. (Through its management NIC, QEMU's user-mode NAT, a process of
    # the host, it reaches what the host reaches: docs/vagrantfile.md says so.)
    mac = networks(vmctl, c)[0]["mac"]
    probe = (f'dev=$(for d in /sys/class/net/*; do [ "$(cat $d/address)" = "{mac}" ] && echo ${{d##*/}}; done); '
             f"sudo ip route add {SHARED}.0/24 dev $dev && ping -c 2 -W 2 {SHARED}.11; "
             f"r=$?; sudo ip route del {SHARED}.0/24 dev $dev; exit $r")
    assert vmctl("ssh", "-c", probe, cwd=c, check=False, timeout=60).returncode != 0
    shared = networks(vmctl, a)[0]["bridge"]
    other = networks(vmctl, c)[0]["bridge"]
    assert shared == networks(vmctl, b)[0]["bridge"] and shared != other
    taps = {t: bridge_of(t) for t in our_links() if t.startswith("vmtap-")}
    assert sorted(taps.values()).count(shared) == 2 and list(taps.values()).count(other) == 1


def test_a_dhcp_address_shows_in_status(vmctl: Vmctl, projects: dict[str, Path]) -> None:
    a = projects["a"]
    dhcp = networks(vmctl, a)[1]
    assert dhcp["type"] == "dhcp" and dhcp["subnet"] == "172.28.128.0/24" and dhcp["mode"] == "bridge"
    assert dhcp["ip"] is not None and dhcp["ip"].startswith("172.28.128.")
    assert f"{dhcp['ip']}/24" in vmctl("ssh", "-c", "ip -4 addr", cwd=a).stdout
    assert icmp_ping(dhcp["ip"])
    # Only an address: the guest's default route stays on its management NIC.
    routes = vmctl("ssh", "-c", "ip route", cwd=a).stdout.splitlines()
    defaults = [r for r in routes if r.startswith("default")]
    assert defaults and not any("172.28.128" in r or "eth2" in r for r in defaults), routes
    assert len(live_dnsmasq({dhcp["bridge"]})) == 1


def test_destroy_leaves_no_bridge_tap_or_dnsmasq(vmctl: Vmctl, projects: dict[str, Path]) -> None:
    a, b, c = projects["a"], projects["b"], projects["c"]
    shared, dhcp = (n["bridge"] for n in networks(vmctl, a))
    other = networks(vmctl, c)[0]["bridge"]
    before = our_links()
    vmctl("destroy", "-f", cwd=a)
    # B still uses the shared network; the DHCP network was A's alone.
    assert shared in our_links() and dhcp not in our_links()
    assert live_dnsmasq({dhcp}) == []
    vmctl("destroy", "-f", cwd=b)
    vmctl("destroy", "-f", cwd=c)
    left = our_links() & (before | {shared, dhcp, other})
    assert left == set(), json.dumps(sorted(left))
    assert [t for t in our_links() if t.startswith("vmtap-")] == []
    assert live_dnsmasq({shared, dhcp, other}) == []
