"""libvirt domain XML, built with ElementTree by pure functions (testable without a VM).

One builder and one frozen spec per device family; `render_domain` composes them:

    cpu.py       CpuSpec        <memory>, <memoryBacking>, <memtune>, <vcpu>, <cputune>, <cpu>
    firmware.py  FirmwareSpec   <sysinfo>, <os>, <features>, <clock>, <launchSecurity>
    disks.py     DisksSpec      <disk>s and the SCSI controllers they need
    network.py   NetworkSpec    the NICs: management (QEMU user networking), private (multicast,
                                or host-only bridges)
    devices.py   DevicesSpec    display, video, sound, input, serial, channels, rng, TPM, USB, ...
    filesystems.py SharedFolder two-way synced folders: virtiofs (virtiofsd) and 9p

The machine layer decides every value (defaults, what a setting means on this host); the
builders only write what they are given.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass, field

from vmctl.domain.cpu import CpuSpec, build_cpu, build_memory, build_vcpus
from vmctl.domain.devices import DevicesSpec, build_devices
from vmctl.domain.disks import Disk, DisksSpec, build_disks
from vmctl.domain.filesystems import SharedFolder, build_filesystems, needs_shared_memory
from vmctl.domain.firmware import (
    FirmwareSpec,
    build_clock,
    build_features,
    build_launch_security,
    build_os,
    build_sysinfo,
)
from vmctl.domain.network import (
    USER_NIC_SLOT,
    BridgeNic,
    Forward,
    McastNic,
    NetworkSpec,
    PublicNic,
    UdpNic,
    UserNic,
    build_interfaces,
    hostfwd_rules,
    management_args,
    private_args,
)
from vmctl.domain.xml import QEMU_NS, VMCTL_NS, sub

__all__ = [
    "Identity",
    "QEMU_NS", "USER_NIC_SLOT", "VMCTL_NS", "BridgeNic", "CpuSpec", "DevicesSpec", "Disk", "DisksSpec", "DomainSpec",
    "FirmwareSpec", "Forward", "McastNic", "NetworkSpec", "PublicNic", "SharedFolder", "UdpNic", "UserNic", "hostfwd_rules",
    "needs_shared_memory", "parse_machine_metadata", "render_domain",
]


@dataclass(frozen=True)
class Identity:
    """What names the domain, and what identifies it as vmctl's (global-status, orphan
    cleanup, and destroy's check that a domain is the machine's before removing it)."""

    name: str
    uuid: str
    machine_id: str
    project: str = ""
    machine: str = ""
    title: str | None = None
    description: str | None = None


@dataclass(frozen=True)
class DomainSpec:
    identity: Identity
    accel: str  # "kvm" or "tcg"
    cpu: CpuSpec
    firmware: FirmwareSpec
    disks: DisksSpec
    network: NetworkSpec
    devices: DevicesSpec
    # Two-way synced folders (virtiofs ones need cpu.memory_backing to share the memory).
    folders: tuple[SharedFolder, ...] = ()
    # Extra QEMU arguments and environment (libvirt.qemuargs / qemuenv), after the NIC's.
    qemu_args: tuple[str, ...] = ()
    qemu_env: tuple[tuple[str, str], ...] = field(default=())

    def __post_init__(self) -> None:
        if self.accel not in ("kvm", "tcg"):
            raise ValueError(f"accelerator {self.accel!r}")
        if needs_shared_memory(self.folders):
            backing = {m.name: dict(m.attrs) for m in self.cpu.memory_backing}
            if backing.get("access", {}).get("mode") != "shared":
                raise ValueError("virtiofs needs the guest's memory shared (memoryBacking access mode='shared')")


def render_domain(spec: DomainSpec) -> str:
    ident = spec.identity
    dom = ET.Element("domain", {"type": "kvm" if spec.accel == "kvm" else "qemu"})
    sub(dom, "name", ident.name)
    sub(dom, "uuid", ident.uuid)
    if ident.title:
        sub(dom, "title", ident.title)
    sub(dom, "description", ident.description or f"vmctl machine {ident.machine} of {ident.project}")
    metadata = sub(dom, "metadata")
    sub(metadata, f"{{{VMCTL_NS}}}machine", id=ident.machine_id, name=ident.machine, project=ident.project)

    build_memory(dom, spec.cpu)
    build_vcpus(dom, spec.cpu)
    build_sysinfo(dom, spec.firmware)
    build_os(dom, spec.firmware)
    build_features(dom, spec.firmware)
    build_cpu(dom, spec.cpu)
    build_clock(dom, spec.firmware)
    sub(dom, "on_poweroff", "destroy")
    sub(dom, "on_reboot", "restart")
    sub(dom, "on_crash", "destroy")

    devices = sub(dom, "devices")
    if spec.devices.emulator is not None:
        sub(devices, "emulator", str(spec.devices.emulator))
    build_disks(devices, spec.disks)
    build_interfaces(devices, spec.network)
    build_devices(devices, spec.devices)
    build_filesystems(devices, spec.folders)
    build_launch_security(dom, spec.firmware)

    args = [*management_args(spec.network.management), *private_args(spec.network), *spec.qemu_args]
    if args or spec.qemu_env:
        cmd = sub(dom, f"{{{QEMU_NS}}}commandline")
        for arg in args:
            sub(cmd, f"{{{QEMU_NS}}}arg", value=arg)
        for name, value in spec.qemu_env:
            sub(cmd, f"{{{QEMU_NS}}}env", name=name, value=value)

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
