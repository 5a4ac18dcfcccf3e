"""What is installed in the box store (VMCTL_HOME/boxes), read without installing anything.

    VMCTL_HOME/boxes/NAME-ESCAPED/VERSION/libvirt/   metadata.json, disks, Vagrantfile, ...

Every command that evaluates a Vagrantfile asks which box a machine names (for the box's own
Vagrantfile): this module answers with the standard library and vmctl's version parsing
only, so those commands do not load the downloader, the archive reader or the catalogs.
Adding and removing boxes is store.py's.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vmctl import paths
from vmctl.boxes.version import Version, parse_constraint, parse_version
from vmctl.errors import BoxError

PROVIDER = "libvirt"
# metadata.json and the box's Vagrantfile are read by every command that uses the box.
MAX_SMALL_FILE = 1024 * 1024

SLASH = "-VAGRANTSLASH-"
RECORD = "vmctl-box.json"
DIRECT_VERSION = "0"

_NAME_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._+@-]*(/[A-Za-z0-9_][A-Za-z0-9._+@-]*)*$")


@dataclass(frozen=True)
class InstalledBox:
    """One installed box: NAME at VERSION for PROVIDER, unpacked in DIR."""

    name: str
    version: str
    provider: str
    dir: Path
    metadata: dict[str, Any]
    source: str | None  # the catalog URL, or the box's URL or path

    @property
    def image(self) -> Path:
        """The first (boot) disk."""
        return self.disks[0][0]

    @property
    def disks(self) -> list[tuple[Path, str]]:
        """Every disk of the box in order (vda, vdb, ...): (file, format qemu-img found)."""
        found = self.record.get("disks")
        if isinstance(found, list) and found and all(isinstance(d, dict) for d in found):
            return [(self.dir / str(d.get("path")), str(d.get("format") or "qcow2")) for d in found]
        return [(self.dir / path, fmt or self.image_format) for path, fmt in disk_files(self.metadata)]

    @property
    def vagrantfile(self) -> Path | None:
        path = self.dir / "Vagrantfile"
        return path if path.is_file() else None

    @property
    def size_bytes(self) -> int:
        total = 0
        for root, _dirs, files in os.walk(self.dir):
            for f in files:
                with contextlib.suppress(OSError):
                    total += os.lstat(os.path.join(root, f)).st_size
        return total

    @property
    def record(self) -> dict[str, Any]:
        """vmctl's record of where the box came from (empty for boxes vmctl did not add)."""
        try:
            data = json.loads((self.dir / RECORD).read_text())
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    @property
    def image_format(self) -> str:
        """The format qemu-img found for box.img ("qcow2" or "raw")."""
        return str(self.record.get("image_format") or "qcow2")

    @property
    def catalog_url(self) -> str | None:
        value = self.record.get("catalog_url")
        return value if isinstance(value, str) else None


# --- names and places ----------------------------------------------------------------------

def parse_box_name(name: str) -> str:
    """NAME checked as a box name ("vmctl/tiny"), or BoxError quoting it."""
    text = (name or "").strip()
    if not _NAME_RE.match(text) or ".." in text.split("/") or SLASH in text:
        raise BoxError(
            f"invalid box name {name!r}",
            hint='box names are like "vmctl/tiny": letters, digits, ".", "_", "-", separated by "/"',
        )
    return text


def escape_name(name: str) -> str:
    return name.replace("/", SLASH)


def unescape_name(folder: str) -> str:
    return folder.replace(SLASH, "/")


def box_dir(name: str, version: str, provider: str = PROVIDER) -> Path:
    return paths.boxes_dir() / escape_name(name) / version / provider


# --- reading the store ---------------------------------------------------------------------

def _load(folder: Path, name: str, version: str, provider: str) -> InstalledBox | None:
    try:
        with (folder / "metadata.json").open("rb") as f:
            metadata = json.loads(f.read(MAX_SMALL_FILE + 1))
    except (OSError, ValueError, RecursionError):
        return None
    if not isinstance(metadata, dict):
        return None
    source = None
    try:
        record = json.loads((folder / RECORD).read_text())
        if isinstance(record, dict) and isinstance(record.get("source"), str):
            source = record["source"]
    except (OSError, ValueError):
        pass
    return InstalledBox(name=name, version=version, provider=provider, dir=folder,
                        metadata=metadata, source=source)


def _version_key(box: InstalledBox) -> tuple[str, Any]:
    try:
        return box.name, parse_version(box.version)
    except BoxError:
        return box.name, parse_version("0")


def list_boxes() -> list[InstalledBox]:
    """Every installed libvirt box, sorted by name and then version."""
    root = paths.boxes_dir()
    found: list[InstalledBox] = []
    if not root.is_dir():
        return found
    for name_dir in root.iterdir():
        if name_dir.name.startswith(".") or not name_dir.is_dir():
            continue
        for version_dir in name_dir.iterdir():
            folder = version_dir / PROVIDER
            if version_dir.name.startswith(".") or not folder.is_dir():
                continue
            box = _load(folder, unescape_name(name_dir.name), version_dir.name, PROVIDER)
            if box is not None:
                found.append(box)
    return sorted(found, key=_version_key)


def _installed(name: str) -> list[InstalledBox]:
    return [b for b in list_boxes() if b.name == name]


def find_box(name: str, constraint: str | None = None) -> InstalledBox | None:
    """The newest installed version of box NAME that satisfies CONSTRAINT, or None."""
    allowed = parse_constraint(constraint)
    best: tuple[Version, InstalledBox] | None = None
    for box in _installed(name):
        try:
            version = parse_version(box.version)
        except BoxError:
            continue
        if allowed.allows(version) and (best is None or version > best[0]):
            best = (version, box)
    return best[1] if best else None


def find_box_vagrantfile(name: str, constraint: str | None = None) -> Path | None:
    """The Vagrantfile the newest matching installed box carries, or None."""
    box = find_box(name, constraint)
    return box.vagrantfile if box is not None else None


def disk_files(metadata: dict[str, Any]) -> list[tuple[str, str | None]]:
    """The box's disks in order, as (file, declared format or None): metadata.json's
    "disks", else the one box.img."""
    disks = metadata.get("disks")
    if isinstance(disks, list) and disks:
        return [(d["path"], d.get("format")) for d in disks if isinstance(d, dict) and isinstance(d.get("path"), str)]
    # The top-level "format" says qcow2 for every box, raw images included: not a promise.
    return [("box.img", None)]
