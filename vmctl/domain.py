"""libvirt domain XML, built with ElementTree by pure functions (testable without a VM).

Networking: the first NIC is QEMU user-mode networking given through <qemu:commandline>,
because Debian's libvirt 9.0 rejects the passt backend that <portForward> needs. The
forwards always name a host address (127.0.0.1 by default): an empty one would bind
every interface. The NIC needs an explicit PCI slot, or it collides with libvirt's own
devices. Private networks are unprivileged QEMU multicast sockets (<interface type='mcast'>).
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

from vmctl import untrusted

QEMU_NS = "http://libvirt.org/schemas/domain/qemu/1.0"
VMCTL_NS = "https://github.com/vmctl/vmctl/xmlns/machine/1"
ET.register_namespace("qemu", QEMU_NS)
ET.register_namespace("vmctl", VMCTL_NS)

# The first NIC's PCI slot: far from the slots libvirt assigns on its own.
USER_NIC_SLOT = "0x10"


@dataclass(frozen=True)
class Forward:
    host_ip: str
    host_port: int
    guest_port: int
    protocol: str = "tcp"


@dataclass(frozen=True)
class McastNic:
    mac: str
    group: str  # 230.x.y.z
    port: int


@dataclass(frozen=True)
class DomainSpec:
    name: str
    uuid: str
    memory_mib: int
    cpus: int
    accel: str  # "kvm" or "tcg"
    disk: Path
    console_log: Path
    mac: str
    forwards: tuple[Forward, ...] = ()
    private_nics: tuple[McastNic, ...] = ()
    kernel: Path | None = None
    initrd: Path | None = None
    cmdline: str | None = None
    # Identifies the machine for `global-status` and orphan cleanup.
    project: str = ""
    machine: str = ""
    machine_id: str = ""
    extra_qemu_args: tuple[str, ...] = field(default=())
    # cloud-init's seed (an ISO 9660 image), read-only on IDE: the "pc" machine has an IDE
    # controller, and Debian's cloud kernel (no AHCI) reads it through ata_piix.
    cdrom: Path | None = None


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
        rules.append(f"hostfwd={f.protocol}:{address}:{f.host_port}-:{f.guest_port}")
    return ",".join(rules)


def render_domain(spec: DomainSpec) -> str:
    dom = ET.Element("domain", {"type": "kvm" if spec.accel == "kvm" else "qemu"})
    _text(dom, "name", spec.name)
    _text(dom, "uuid", spec.uuid)
    _text(dom, "description", f"vmctl machine {spec.machine} of {spec.project}")

    metadata = ET.SubElement(dom, "metadata")
    ET.SubElement(
        metadata,
        f"{{{VMCTL_NS}}}machine",
        {"id": spec.machine_id, "name": spec.machine, "project": spec.project},
    )

    _text(dom, "memory", str(spec.memory_mib), unit="MiB")
    _text(dom, "vcpu", str(spec.cpus))

    os_el = ET.SubElement(dom, "os")
    _text(os_el, "type", "hvm", arch="x86_64", machine="pc")
    if spec.kernel is not None:
        _text(os_el, "kernel", str(spec.kernel))
        if spec.initrd is not None:
            _text(os_el, "initrd", str(spec.initrd))
        if spec.cmdline:
            _text(os_el, "cmdline", spec.cmdline)
    else:
        ET.SubElement(os_el, "boot", dev="hd")

    features = ET.SubElement(dom, "features")
    ET.SubElement(features, "acpi")
    if spec.accel == "kvm":
        ET.SubElement(dom, "cpu", mode="host-passthrough")

    ET.SubElement(dom, "clock", offset="utc")
    _text(dom, "on_poweroff", "destroy")
    _text(dom, "on_reboot", "restart")
    _text(dom, "on_crash", "destroy")

    devices = ET.SubElement(dom, "devices")
    disk = ET.SubElement(devices, "disk", type="file", device="disk")
    ET.SubElement(disk, "driver", name="qemu", type="qcow2", discard="unmap")
    ET.SubElement(disk, "source", file=str(spec.disk))
    ET.SubElement(disk, "target", dev="vda", bus="virtio")
    if spec.cdrom is not None:
        cd = ET.SubElement(devices, "disk", type="file", device="cdrom")
        ET.SubElement(cd, "driver", name="qemu", type="raw")
        ET.SubElement(cd, "source", file=str(spec.cdrom))
        ET.SubElement(cd, "target", dev="hdc", bus="ide")
        ET.SubElement(cd, "readonly")

    for i, nic in enumerate(spec.private_nics):
        iface = ET.SubElement(devices, "interface", type="mcast")
        ET.SubElement(iface, "mac", address=nic.mac)
        source = ET.SubElement(iface, "source", address=nic.group, port=str(nic.port))
        ET.SubElement(source, "local", address="127.0.0.1")
        ET.SubElement(iface, "model", type="virtio")
        # After the first NIC's slot, so the guest names the NAT NIC first (eth0) and
        # boxes that run DHCP on their first interface keep working.
        ET.SubElement(
            iface, "address", type="pci", domain="0x0000", bus="0x00",
            slot=f"0x{int(USER_NIC_SLOT, 16) + 1 + i:02x}", function="0x0",
        )  # fmt: skip

    serial = ET.SubElement(devices, "serial", type="file")
    ET.SubElement(serial, "source", path=str(spec.console_log))
    ET.SubElement(serial, "target", port="0")
    console = ET.SubElement(devices, "console", type="file")
    ET.SubElement(console, "source", path=str(spec.console_log))
    ET.SubElement(console, "target", type="serial", port="0")

    ET.SubElement(devices, "controller", type="usb", model="none")
    ET.SubElement(devices, "memballoon", model="none")
    rng = ET.SubElement(devices, "rng", model="virtio")
    _text(rng, "backend", "/dev/urandom", model="random")

    cmd = ET.SubElement(dom, f"{{{QEMU_NS}}}commandline")
    netdev = "user,id=vmnet0"
    rules = hostfwd_rules(spec.forwards)
    if rules:
        netdev += "," + rules
    args = [
        "-netdev", netdev,
        "-device", f"virtio-net-pci,netdev=vmnet0,addr={USER_NIC_SLOT},mac={spec.mac}",
        *spec.extra_qemu_args,
    ]  # fmt: skip
    for arg in args:
        ET.SubElement(cmd, f"{{{QEMU_NS}}}arg", value=arg)

    ET.indent(dom)
    return ET.tostring(dom, encoding="unicode")


def parse_machine_metadata(xml: str) -> dict[str, str] | None:
    """The vmctl metadata of a domain's XML, or None for domains vmctl did not make."""
    try:
        root = ET.fromstring(xml)
    except ET.ParseError:
        return None
    el = root.find(f"metadata/{{{VMCTL_NS}}}machine")
    return dict(el.attrib) if el is not None else None


def _text(parent: ET.Element, tag: str, text: str, **attrib: str) -> ET.Element:
    el = ET.SubElement(parent, tag, attrib)
    el.text = text
    return el
