"""The domain XML, checked structurally (no VM)."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from vmctl import domain, network


def spec(**overrides):
    base = dict(
        name="vmctl-proj-default-abc123",
        uuid="6f1c1f0e-8d5e-4b71-9a55-000000000001",
        memory_mib=512,
        cpus=2,
        accel="tcg",
        disk=Path("/home/u/.local/share/vmctl/machines/abc/disk.qcow2"),
        console_log=Path("/home/u/.local/share/vmctl/machines/abc/console.log"),
        mac="52:54:00:aa:bb:cc",
        forwards=(domain.Forward("127.0.0.1", 2200, 22), domain.Forward("127.0.0.1", 8080, 80)),
        kernel=Path("/boxes/tiny/vmlinuz"),
        initrd=Path("/boxes/tiny/initrd.img"),
        cmdline="root=/dev/vda rw console=ttyS0",
        project="/home/u/proj & <co>",
        machine="default",
        machine_id="abc123",
    )
    base.update(overrides)
    return domain.DomainSpec(**base)


def qemu_args(root: ET.Element) -> list[str]:
    return [a.get("value") for a in root.iter(f"{{{domain.QEMU_NS}}}arg")]


def test_tcg_domain_structure():
    root = ET.fromstring(domain.render_domain(spec()))
    assert root.get("type") == "qemu"
    assert root.findtext("name") == "vmctl-proj-default-abc123"
    assert root.find("memory").get("unit") == "MiB" and root.findtext("memory") == "512"
    assert root.findtext("vcpu") == "2"
    assert root.find("cpu") is None  # TCG: QEMU's default model
    assert root.findtext("os/kernel") == "/boxes/tiny/vmlinuz"
    assert root.findtext("os/initrd") == "/boxes/tiny/initrd.img"
    assert root.findtext("os/cmdline") == "root=/dev/vda rw console=ttyS0"
    disk = root.find("devices/disk")
    assert disk.find("source").get("file").endswith("disk.qcow2")
    assert disk.find("target").get("dev") == "vda" and disk.find("target").get("bus") == "virtio"
    assert disk.find("driver").get("type") == "qcow2"
    assert root.find("devices/serial/source").get("path").endswith("console.log")


def test_kvm_domain_uses_host_cpu():
    root = ET.fromstring(domain.render_domain(spec(accel="kvm")))
    assert root.get("type") == "kvm"
    assert root.find("cpu").get("mode") == "host-passthrough"


def test_forwards_bind_loopback_and_nic_has_fixed_slot():
    args = qemu_args(ET.fromstring(domain.render_domain(spec())))
    netdev = args[args.index("-netdev") + 1]
    assert netdev == (
        "user,id=vmnet0,hostfwd=tcp:127.0.0.1:2200-:22,hostfwd=tcp:127.0.0.1:8080-:80"
    )
    device = args[args.index("-device") + 1]
    assert "addr=0x10" in device and "mac=52:54:00:aa:bb:cc" in device


def test_empty_host_address_is_refused():
    with pytest.raises(ValueError):
        domain.hostfwd_rules((domain.Forward("", 2200, 22),))


def test_boot_from_disk_without_kernel():
    root = ET.fromstring(domain.render_domain(spec(kernel=None, initrd=None, cmdline=None)))
    assert root.find("os/kernel") is None
    assert root.find("os/boot").get("dev") == "hd"


def test_text_is_escaped_and_metadata_round_trips():
    xml = domain.render_domain(spec())
    assert "&amp;" in xml and "&lt;co&gt;" in xml
    meta = domain.parse_machine_metadata(xml)
    assert meta == {"id": "abc123", "name": "default", "project": "/home/u/proj & <co>"}
    assert domain.parse_machine_metadata("<domain/>") is None
    assert domain.parse_machine_metadata("not xml") is None


def test_private_networks_are_mcast_on_loopback():
    group, port = network.mcast_group("project:/p:172.17.8.0/24")
    nic = domain.McastNic(mac="52:54:00:01:02:03", group=group, port=port)
    root = ET.fromstring(domain.render_domain(spec(private_nics=(nic,))))
    iface = root.find("devices/interface")
    assert iface.get("type") == "mcast"
    assert iface.find("source").get("address") == group
    assert iface.find("source/local").get("address") == "127.0.0.1"
    assert iface.find("model").get("type") == "virtio"
    assert iface.find("address").get("slot") == "0x11"  # after the NAT NIC at 0x10


def test_mcast_segments_differ_per_project_and_are_stable():
    a = network.mcast_group("project:/a:172.17.8.0/24")
    b = network.mcast_group("project:/b:172.17.8.0/24")
    assert a != b
    assert a == network.mcast_group("project:/a:172.17.8.0/24")
    assert a[0].startswith("230.") and 20000 <= a[1] < 40000


def test_macs_are_stable_and_local():
    assert network.mac_for("abc", 0) == network.mac_for("abc", 0)
    assert network.mac_for("abc", 0) != network.mac_for("abc", 1)
    assert network.mac_for("abc").startswith("52:54:00:")
