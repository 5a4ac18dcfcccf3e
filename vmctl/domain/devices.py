"""Devices other than disks and NICs: the emulator, display and video, sound, input,
serial ports and the console, channels (the QEMU guest agent's among them), the random
number generator, the watchdog, the TPM, a smartcard, USB (controller, redirection and its
filters), host devices passed through, and the memory balloon.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

from vmctl.domain.xml import hex_of, pci_address, sub

GRAPHICS = ("vnc", "spice")
VIDEO_MODELS = ("cirrus", "vga", "qxl", "virtio", "bochs", "ramfb", "vmvga", "none")


@dataclass(frozen=True)
class Graphics:
    type: str  # vnc | spice
    listen: str = "127.0.0.1"
    port: int | None = None  # None: chosen by libvirt (autoport)
    autoport: bool = True
    websocket: int | None = None  # vnc only
    passwd: str | None = None
    keymap: str | None = None
    gl: bool = False

    def __post_init__(self) -> None:
        if self.type not in GRAPHICS:
            raise ValueError(f"graphics type {self.type!r}")


@dataclass(frozen=True)
class Video:
    model: str  # cirrus | vga | qxl | virtio | ...
    vram: int | None = None  # KiB
    accel3d: bool = False

    def __post_init__(self) -> None:
        if self.model not in VIDEO_MODELS:
            raise ValueError(f"video model {self.model!r}")


@dataclass(frozen=True)
class Input:
    type: str  # mouse | tablet | keyboard
    bus: str  # ps2 | usb | virtio


@dataclass(frozen=True)
class Serial:
    """A serial port: a pty, or a file. A pty's output can be logged to a file as well."""

    type: str  # pty | file
    path: Path | None = None  # file: where the output goes
    append: bool = False
    log: Path | None = None  # pty: a copy of the output

    def __post_init__(self) -> None:
        if self.type not in ("pty", "file") or (self.type == "file") != (self.path is not None):
            raise ValueError(f"serial {self!r}")


@dataclass(frozen=True)
class Channel:
    type: str  # unix | spicevmc | pty
    target_type: str = "virtio"  # virtio | guestfwd
    target_name: str | None = None  # e.g. org.qemu.guest_agent.0
    target_address: str | None = None  # guestfwd
    target_port: int | None = None  # guestfwd
    source_mode: str | None = None  # unix: bind | connect
    source_path: Path | None = None  # unix: None lets libvirt choose


@dataclass(frozen=True)
class Tpm:
    model: str = "tpm-tis"  # tpm-tis | tpm-crb
    backend: str = "emulator"  # emulator (swtpm) | passthrough
    version: str | None = None  # 1.2 | 2.0
    device: Path | None = None  # passthrough: the host's /dev/tpmN


@dataclass(frozen=True)
class Smartcard:
    type: str = "spicevmc"  # spicevmc | tcp
    source_mode: str | None = None  # tcp: bind | connect
    source_host: str | None = None
    source_service: str | None = None


@dataclass(frozen=True)
class RedirFilter:
    allow: bool
    class_: str = "-1"
    vendor: str = "-1"
    product: str = "-1"
    version: str = "-1"


@dataclass(frozen=True)
class PciHostdev:
    domain: int
    bus: int
    slot: int
    function: int
    guest: tuple[int, int, int, int] | None = None  # domain, bus, slot, function in the guest


@dataclass(frozen=True)
class UsbHostdev:
    vendor: str | None = None  # 0x1234
    product: str | None = None
    bus: int | None = None
    device: int | None = None
    startup_policy: str | None = None  # mandatory | requisite | optional


@dataclass(frozen=True)
class Memballoon:
    model: str = "none"  # none | virtio | virtio-transitional | ...
    pci_bus: str | None = None
    pci_slot: str | None = None


@dataclass(frozen=True)
class Watchdog:
    model: str  # i6300esb | ib700 | itco | diag288
    action: str = "reset"


@dataclass(frozen=True)
class DevicesSpec:
    serials: tuple[Serial, ...]
    emulator: Path | None = None
    graphics: Graphics | None = None
    video: Video | None = None
    sound: str | None = None
    inputs: tuple[Input, ...] = ()
    channels: tuple[Channel, ...] = ()
    rng: bool = True
    watchdog: Watchdog | None = None
    tpm: Tpm | None = None
    smartcard: Smartcard | None = None
    usb_controller: str = "none"
    usb_ports: int | None = None
    redirdevs: tuple[str, ...] = ()  # their types: spicevmc
    redirfilters: tuple[RedirFilter, ...] = ()
    pci: tuple[PciHostdev, ...] = ()
    usb: tuple[UsbHostdev, ...] = ()
    memballoon: Memballoon = field(default_factory=Memballoon)
    iommu: bool = False  # virtio devices behind an IOMMU (SEV guests need it)


def build_devices(devices: ET.Element, spec: DevicesSpec) -> None:
    """Every device of SPEC, in libvirt's order, into DEVICES (after disks and NICs)."""
    iommu = "on" if spec.iommu else None
    for i, s in enumerate(spec.serials):
        _serial(devices, "serial", s, i)
    if spec.serials:
        _serial(devices, "console", spec.serials[0], 0, console=True)
    for ch in spec.channels:
        _channel(devices, ch)
    for inp in spec.inputs:
        el = sub(devices, "input", type=inp.type, bus=inp.bus)
        if iommu and inp.bus == "virtio":
            sub(el, "driver", iommu=iommu)
    if spec.tpm is not None:
        _tpm(devices, spec.tpm)
    if spec.graphics is not None:
        _graphics(devices, spec.graphics)
    if spec.sound is not None:
        sub(devices, "sound", model=spec.sound)
    if spec.video is not None:
        v = spec.video
        model = sub(sub(devices, "video"), "model", type=v.model, vram=v.vram,
                    heads=1 if v.model != "none" else None)
        if v.accel3d:
            sub(model, "acceleration", accel3d=True)
    for hd in spec.pci:
        el = sub(devices, "hostdev", mode="subsystem", type="pci", managed=True)
        # The host's address: the same parts as a guest PCI address, without type='pci'.
        sub(sub(el, "source"), "address", domain=hex_of(hd.domain, 4), bus=hex_of(hd.bus, 2),
            slot=hex_of(hd.slot, 2), function=hex_of(hd.function, 1))
        if hd.guest is not None:
            domain, bus, slot, function = hd.guest
            pci_address(el, slot, bus=bus, function=function, domain=domain)
    for u in spec.usb:
        el = sub(devices, "hostdev", mode="subsystem", type="usb")
        source = sub(el, "source", startupPolicy=u.startup_policy)
        if u.vendor is not None:
            sub(source, "vendor", id=u.vendor)
        if u.product is not None:
            sub(source, "product", id=u.product)
        if u.bus is not None and u.device is not None:
            sub(source, "address", bus=u.bus, device=u.device)
    for kind in spec.redirdevs:
        sub(devices, "redirdev", bus="usb", type=kind)
    if spec.redirfilters and spec.redirdevs:
        rf = sub(devices, "redirfilter")
        for f in spec.redirfilters:
            sub(rf, "usbdev", class_=f.class_, vendor=f.vendor, product=f.product, version=f.version, allow=f.allow)
    if spec.smartcard is not None:
        _smartcard(devices, spec.smartcard)
    ctl = sub(devices, "controller", type="usb", model=spec.usb_controller, ports=spec.usb_ports)
    if iommu and spec.usb_controller != "none":
        sub(ctl, "driver", iommu=iommu)
    if spec.watchdog is not None:
        sub(devices, "watchdog", model=spec.watchdog.model, action=spec.watchdog.action)
    balloon = sub(devices, "memballoon", model=spec.memballoon.model)
    if spec.memballoon.model != "none":
        if iommu:
            sub(balloon, "driver", iommu=iommu)
        if spec.memballoon.pci_slot is not None:
            pci_address(balloon, spec.memballoon.pci_slot, bus=spec.memballoon.pci_bus or 0)
    if spec.rng:
        rng = sub(devices, "rng", model="virtio")
        sub(rng, "backend", "/dev/urandom", model="random")
        if iommu:
            sub(rng, "driver", iommu=iommu)


def _serial(devices: ET.Element, tag: str, s: Serial, port: int, *, console: bool = False) -> None:
    el = sub(devices, tag, type=s.type)
    if s.type == "file":
        sub(el, "source", path=str(s.path), append="on" if s.append else None)
    if console:
        sub(el, "target", type="serial", port=port)
        return
    sub(el, "target", port=port)
    if s.log is not None:
        sub(el, "log", file=str(s.log), append="on" if s.append else "off")


def _channel(devices: ET.Element, ch: Channel) -> None:
    el = sub(devices, "channel", type=ch.type)
    if ch.type == "unix":
        sub(el, "source", mode=ch.source_mode or "bind",
            path=str(ch.source_path) if ch.source_path is not None else None)
    sub(el, "target", type=ch.target_type, name=ch.target_name, address=ch.target_address, port=ch.target_port)


def _tpm(devices: ET.Element, t: Tpm) -> None:
    el = sub(devices, "tpm", model=t.model)
    backend = sub(el, "backend", type=t.backend, version=t.version)
    if t.backend == "passthrough" and t.device is not None:
        sub(backend, "device", path=str(t.device))


def _graphics(devices: ET.Element, g: Graphics) -> None:
    el = sub(devices, "graphics", type=g.type,
             port=g.port if g.port is not None else (-1 if g.type == "vnc" else None),
             autoport=g.autoport, websocket=g.websocket if g.type == "vnc" else None,
             listen=g.listen, keymap=g.keymap, passwd=g.passwd)
    sub(el, "listen", type="address", address=g.listen)
    if g.gl:
        sub(el, "gl", enable=True)


def _smartcard(devices: ET.Element, s: Smartcard) -> None:
    el = sub(devices, "smartcard", mode="passthrough", type=s.type)
    if s.type == "tcp":
        sub(el, "source", mode=s.source_mode, host=s.source_host, service=s.source_service)
        sub(el, "protocol", type="raw")
