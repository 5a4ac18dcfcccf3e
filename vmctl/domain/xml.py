"""What every builder of the domain XML shares: the namespaces and one way to add an
element (attributes that are None are left out; every value becomes text here, once)."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

QEMU_NS = "http://libvirt.org/schemas/domain/qemu/1.0"
VMCTL_NS = "https://github.com/vmctl/vmctl/xmlns/machine/1"
ET.register_namespace("qemu", QEMU_NS)
ET.register_namespace("vmctl", VMCTL_NS)

Value = str | int | bool | Path | None


def text_of(value: str | int | bool | Path) -> str:
    """VALUE as libvirt writes it: booleans as yes/no, numbers in decimal."""
    if value is True:
        return "yes"
    if value is False:
        return "no"
    return str(value)


def sub(parent: ET.Element, tag: str, text: Value = None, /, **attrs: Value) -> ET.Element:
    """A child TAG of PARENT with the attributes that are not None (a trailing underscore
    in a keyword is dropped: class_ -> class) and, when given, TEXT."""
    el = ET.SubElement(parent, tag, {k.rstrip("_"): text_of(v) for k, v in attrs.items() if v is not None})
    if text is not None:
        el.text = text_of(text)
    return el


def pci_address(parent: ET.Element, slot: int | str, *, bus: int | str = 0, function: int | str = 0,
                domain: int | str = 0) -> ET.Element:
    """<address type='pci' .../> with each part in libvirt's hexadecimal form."""
    return sub(parent, "address", type="pci", domain=hex_of(domain, 4), bus=hex_of(bus, 2),
               slot=hex_of(slot, 2), function=hex_of(function, 1))


def hex_of(value: int | str, width: int) -> str:
    """0x-prefixed hexadecimal of VALUE (an int, or text already in 0x or decimal form)."""
    number = value if isinstance(value, int) else int(value, 0)
    return f"0x{number:0{width}x}"
