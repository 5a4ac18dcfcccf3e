"""Where an installed box was uploaded: the storage pools holding a volume of its disks.

    VMCTL_HOME/boxes/NAME-ESCAPED/VERSION/libvirt/vmctl-pools.json
        [{"uri": "qemu:///system", "pool": "default", "volume": "..."}]

Written after an upload has finished (vmctl/storage.py), so an entry names a complete
volume; read by `box remove`, which removes those volumes, and by the next upload, which
reuses them. The file is vmctl's, not the box's: `box repackage` leaves it out.
"""

from __future__ import annotations

import json
from typing import Any

from vmctl.boxes.installed import InstalledBox

POOLS_RECORD = "vmctl-pools.json"


def entries(box: InstalledBox) -> list[dict[str, str]]:
    """The recorded uploads of BOX, each checked to be three strings."""
    try:
        data = json.loads((box.dir / POOLS_RECORD).read_text())
    except (OSError, ValueError):
        return []
    if not isinstance(data, list):
        return []
    keys = ("uri", "pool", "volume")
    return [{k: e[k] for k in keys} for e in data
            if isinstance(e, dict) and all(isinstance(e.get(k), str) for k in keys)]


def recorded(box: InstalledBox, uri: str, pool: str, volume: str) -> bool:
    return {"uri": uri, "pool": pool, "volume": volume} in entries(box)


def record(box: InstalledBox, uri: str, pool: str, volume: str) -> None:
    from vmctl.state import write_json

    found: list[dict[str, Any]] = list(entries(box))
    entry = {"uri": uri, "pool": pool, "volume": volume}
    if entry not in found:
        write_json(box.dir / POOLS_RECORD, [*found, entry], mode=0o600)
