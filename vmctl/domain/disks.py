"""Disks: the machine's own disk (the overlay on the box image), extra disks, CD-ROMs and
floppies, with the controllers their buses need.

libvirt's rules followed here: a disk on the scsi bus needs a SCSI controller (each holds
seven disks); a CD-ROM or floppy is read-only; <boot order='N'/> on a device replaces the
<os><boot dev=...> list (the firmware family leaves that out when any device has one).
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

from vmctl.domain.xml import sub

DEVICES = ("disk", "cdrom", "floppy")
BUSES = ("virtio", "scsi", "sata", "ide", "usb", "fdc")


@dataclass(frozen=True)
class Disk:
    """One <disk>. SOURCE None is an empty drive (a CD-ROM without a medium)."""

    target: str  # vda, sdb, hda, fda ...
    source: Path | None
    device: str = "disk"  # disk | cdrom | floppy
    bus: str = "virtio"
    format: str = "qcow2"  # the driver's type: qcow2 | raw
    cache: str | None = None
    io: str | None = None
    discard: str | None = None
    detect_zeroes: str | None = None
    copy_on_read: str | None = None
    readonly: bool = False
    shareable: bool = False
    serial: str | None = None
    wwn: str | None = None
    address_type: str | None = None  # e.g. "drive", "pci", "ccw"
    boot_order: int | None = None
    alias: str | None = None  # libvirt's user alias, "ua-..."
    pool: str | None = None  # with VOLUME: a volume of a libvirt storage pool instead of SOURCE
    volume: str | None = None

    def __post_init__(self) -> None:
        if self.device not in DEVICES:
            raise ValueError(f"disk device {self.device!r}")
        if self.bus not in BUSES:
            raise ValueError(f"disk bus {self.bus!r}")


@dataclass(frozen=True)
class DisksSpec:
    disks: tuple[Disk, ...]
    # The model of the SCSI controllers, when any disk is on the scsi bus.
    scsi_controller_model: str = "virtio-scsi"


def build_disks(devices: ET.Element, spec: DisksSpec) -> None:
    """The <controller type='scsi'> elements the disks need, then the <disk> elements."""
    on_scsi = sum(1 for d in spec.disks if d.bus == "scsi")
    for index in range((on_scsi + 6) // 7):
        sub(devices, "controller", type="scsi", index=index, model=spec.scsi_controller_model)
    for disk in spec.disks:
        _disk(devices, disk)


def _disk(devices: ET.Element, d: Disk) -> None:
    el = sub(devices, "disk", type="file" if d.pool is None else "volume", device=d.device)
    # A floppy's driver takes no format-specific options (libvirt: raw only).
    sub(el, "driver", name="qemu", type=d.format, cache=d.cache, io=d.io, discard=d.discard,
        detect_zeroes=d.detect_zeroes, copy_on_read=d.copy_on_read)
    if d.pool is not None:
        sub(el, "source", pool=d.pool, volume=d.volume)
    elif d.source is not None:
        sub(el, "source", file=str(d.source))
    sub(el, "target", dev=d.target, bus=d.bus)
    if d.boot_order is not None:
        sub(el, "boot", order=d.boot_order)
    if d.readonly or d.device == "cdrom":
        sub(el, "readonly")
    if d.shareable:
        sub(el, "shareable")
    if d.serial is not None:
        sub(el, "serial", d.serial)
    if d.wwn is not None:
        sub(el, "wwn", d.wwn)
    if d.alias is not None:
        sub(el, "alias", name=d.alias)
    if d.address_type is not None:
        sub(el, "address", type=d.address_type)
