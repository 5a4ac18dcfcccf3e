"""The machine and its firmware: <os> (machine type, architecture, loader and NVRAM,
direct kernel boot, boot order, SMBIOS), <sysinfo> (SMBIOS blocks and fw_cfg entries),
<features> (ACPI and friends, Hyper-V enlightenments, a hidden KVM), <clock> and
<launchSecurity>.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

from vmctl.domain.xml import sub

BOOT_DEVICES = ("hd", "cdrom", "network", "fd")
# vagrant-libvirt's sysinfo block names -> libvirt's elements.
SMBIOS_BLOCKS = {"bios": "bios", "system": "system", "base board": "baseBoard", "chassis": "chassis",
                 "oem strings": "oemStrings"}


@dataclass(frozen=True)
class Feature:
    name: str  # acpi, apic, pae, gic, smm, ...
    attrs: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class HypervFeature:
    name: str  # relaxed, vapic, spinlocks, ...
    state: str  # on | off
    retries: int | None = None  # spinlocks only
    value: str | None = None  # vendor_id only


@dataclass(frozen=True)
class Timer:
    name: str
    track: str | None = None
    tickpolicy: str | None = None
    frequency: int | None = None
    mode: str | None = None
    present: bool | None = None


@dataclass(frozen=True)
class Clock:
    offset: str = "utc"  # utc | localtime | timezone | variable | absolute
    timezone: str | None = None
    basis: str | None = None  # variable: utc | localtime
    adjustment: int | None = None  # variable: seconds
    start: int | None = None  # absolute: epoch seconds
    timers: tuple[Timer, ...] = ()


@dataclass(frozen=True)
class SmbiosBlock:
    block: str  # a key of SMBIOS_BLOCKS
    entries: tuple[tuple[str | None, str], ...]  # (name, text); oem strings have no name


@dataclass(frozen=True)
class FwCfgEntry:
    name: str  # opt/com.example/NAME
    text: str | None = None
    file: Path | None = None


@dataclass(frozen=True)
class LaunchSecurity:
    cbitpos: int = 47
    reduced_phys_bits: int = 1
    policy: str = "0x0003"


@dataclass(frozen=True)
class FirmwareSpec:
    machine: str = "pc"  # pc | q35 | a full name such as pc-q35-7.2
    arch: str = "x86_64"
    loader: Path | None = None
    loader_type: str = "rom"  # rom | pflash
    loader_secure: bool | None = None
    nvram: Path | None = None
    kernel: Path | None = None
    initrd: Path | None = None
    cmdline: str | None = None
    dtb: Path | None = None
    boot: tuple[str, ...] = ("hd",)  # <os><boot dev=...>, unless devices carry their own order
    per_device_boot: bool = False
    bootmenu: bool = False
    smbios: tuple[SmbiosBlock, ...] = ()
    fw_cfg: tuple[FwCfgEntry, ...] = ()
    features: tuple[Feature, ...] = (Feature("acpi"),)
    hyperv: tuple[HypervFeature, ...] = ()
    kvm_hidden: bool = False
    clock: Clock = field(default_factory=Clock)
    launch_security: LaunchSecurity | None = None

    def __post_init__(self) -> None:
        if self.loader_type not in ("rom", "pflash"):
            raise ValueError(f"loader type {self.loader_type!r}")
        if any(b not in BOOT_DEVICES for b in self.boot):
            raise ValueError(f"boot devices {self.boot!r}")
        if any(b.block not in SMBIOS_BLOCKS for b in self.smbios):
            raise ValueError("sysinfo block")


def build_sysinfo(dom: ET.Element, spec: FirmwareSpec) -> None:
    if spec.smbios:
        sysinfo = sub(dom, "sysinfo", type="smbios")
        for block in spec.smbios:
            el = sub(sysinfo, SMBIOS_BLOCKS[block.block])
            for name, text in block.entries:
                sub(el, "entry", text, name=name)
    if spec.fw_cfg:
        fwcfg = sub(dom, "sysinfo", type="fwcfg")
        for entry in spec.fw_cfg:
            sub(fwcfg, "entry", entry.text, name=entry.name,
                file=str(entry.file) if entry.file is not None else None)


def build_os(dom: ET.Element, spec: FirmwareSpec) -> None:
    os_el = sub(dom, "os")
    sub(os_el, "type", "hvm", arch=spec.arch, machine=spec.machine)
    if spec.loader is not None:
        sub(os_el, "loader", str(spec.loader), readonly=True, type=spec.loader_type, secure=spec.loader_secure)
    if spec.nvram is not None:
        sub(os_el, "nvram", str(spec.nvram))
    if spec.kernel is not None:
        sub(os_el, "kernel", str(spec.kernel))
        if spec.initrd is not None:
            sub(os_el, "initrd", str(spec.initrd))
        if spec.cmdline:
            sub(os_el, "cmdline", spec.cmdline)
        if spec.dtb is not None:
            sub(os_el, "dtb", str(spec.dtb))
    elif not spec.per_device_boot:
        for dev in spec.boot:
            sub(os_el, "boot", dev=dev)
    if spec.bootmenu:
        sub(os_el, "bootmenu", enable=True)
    if spec.smbios:
        sub(os_el, "smbios", mode="sysinfo")


def build_features(dom: ET.Element, spec: FirmwareSpec) -> None:
    if not (spec.features or spec.hyperv or spec.kvm_hidden):
        return
    features = sub(dom, "features")
    for feature in spec.features:
        sub(features, feature.name, **dict(feature.attrs))
    if spec.hyperv:
        hyperv = sub(features, "hyperv", mode="custom")
        for h in spec.hyperv:
            sub(hyperv, h.name, state=h.state, retries=h.retries, value=h.value)
    if spec.kvm_hidden:
        sub(sub(features, "kvm"), "hidden", state="on")


def build_clock(dom: ET.Element, spec: FirmwareSpec) -> None:
    c = spec.clock
    clock = sub(dom, "clock", offset=c.offset, timezone=c.timezone, basis=c.basis,
                adjustment=c.adjustment, start=c.start)
    for t in c.timers:
        sub(clock, "timer", name=t.name, track=t.track, tickpolicy=t.tickpolicy, frequency=t.frequency,
            mode=t.mode, present=t.present)


def build_launch_security(dom: ET.Element, spec: FirmwareSpec) -> None:
    ls = spec.launch_security
    if ls is None:
        return
    el = sub(dom, "launchSecurity", type="sev")
    sub(el, "cbitpos", ls.cbitpos)
    sub(el, "reducedPhysBits", ls.reduced_phys_bits)
    sub(el, "policy", ls.policy)
