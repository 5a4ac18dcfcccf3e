"""Two-way synced folders: host folders the guest mounts, as libvirt <filesystem> devices.

    virtiofs   <filesystem type='mount' accessmode='passthrough'> with <driver type='virtiofs'/>
               and virtiofsd's <binary path=...>: libvirt starts virtiofsd for the folder
               (sandboxed into it) and QEMU's vhost-user-fs device talks to it; the guest's
               memory must be shared with virtiofsd (see cpu.py: memfd, access shared).
    9p         <filesystem type='mount' accessmode='mapped|passthrough|squash'>: QEMU itself
               serves the folder (virtio-9p), confined to it.

The source folder was checked where it became a model value (vmctl/untrusted.py): an
absolute path, no comma (QEMU's option strings), no control character, no symlink
leading out of what the user named. Tags are vmctl's own (`vmctl0`, `vmctl1`, ...).
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

from vmctl.domain.xml import sub

DRIVERS = ("virtiofs", "9p")
ACCESS_MODES = ("passthrough", "mapped", "squash")
VIRTIOFSD = Path("/usr/lib/qemu/virtiofsd")
_TAG = re.compile(r"[a-z][a-z0-9]{0,35}")


@dataclass(frozen=True)
class SharedFolder:
    tag: str  # what the guest mounts (mount -t virtiofs TAG PATH)
    source: Path  # the host folder
    driver: str  # virtiofs | 9p
    accessmode: str = "passthrough"  # 9p: mapped | passthrough | squash; virtiofs: passthrough only
    readonly: bool = False
    binary: Path = VIRTIOFSD  # virtiofs only

    def __post_init__(self) -> None:
        if self.driver not in DRIVERS:
            raise ValueError(f"shared folder driver {self.driver!r}")
        if self.accessmode not in ACCESS_MODES or (self.driver == "virtiofs" and self.accessmode != "passthrough"):
            raise ValueError(f"shared folder access mode {self.accessmode!r} for {self.driver}")
        if not _TAG.fullmatch(self.tag):
            raise ValueError(f"shared folder tag {self.tag!r}")
        text = str(self.source)
        if not self.source.is_absolute() or "," in text or any(ord(c) < 32 or ord(c) == 127 for c in text):
            raise ValueError(f"shared folder source {text!r}")


def needs_shared_memory(folders: tuple[SharedFolder, ...]) -> bool:
    """Whether the guest's memory must be shared (virtiofsd maps it)."""
    return any(f.driver == "virtiofs" for f in folders)


def build_filesystems(devices: ET.Element, folders: tuple[SharedFolder, ...]) -> None:
    for f in folders:
        el = sub(devices, "filesystem", type="mount", accessmode=f.accessmode)
        if f.driver == "virtiofs":
            sub(el, "driver", type="virtiofs")
            sub(el, "binary", path=str(f.binary))
        else:
            sub(el, "driver", type="path")
        sub(el, "source", dir=str(f.source))
        sub(el, "target", dir=f.tag)
        if f.readonly:
            sub(el, "readonly")
