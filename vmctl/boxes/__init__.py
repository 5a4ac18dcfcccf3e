"""Boxes: the store of installed boxes, Vagrant catalogs, verified resumable downloads.

The machine layer uses this API; the CLI (`vmctl box ...`) is a thin layer over it.

    find_box(name, constraint)        the newest installed version satisfying a constraint
    find_box_vagrantfile(name, ...)   the Vagrantfile that box carries, if any
    add_box(source, ...)              install from a .box (path or URL) or a catalog JSON
    remove_box(name, ...)             uninstall, refusing while machines use it
    list_boxes()                      every installed box
    update_box(name, constraint)      install a newer version from the box's catalog
    repackage_box(name, version, out) an installed box back into a .box file

The names are loaded when first used: `vmctl.boxes.installed` (what is installed, read by
every command that evaluates a Vagrantfile) must not pull in the downloader and the
archive reader that installing needs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from vmctl.boxes.installed import InstalledBox, find_box, find_box_vagrantfile, list_boxes
    from vmctl.boxes.store import (
        add_box,
        check_outdated,
        prune_boxes,
        remove_box,
        repackage_box,
        update_box,
    )

__all__ = [
    "InstalledBox",
    "add_box",
    "check_outdated",
    "find_box",
    "find_box_vagrantfile",
    "list_boxes",
    "prune_boxes",
    "remove_box",
    "repackage_box",
    "update_box",
]

_INSTALLED = frozenset({"InstalledBox", "find_box", "find_box_vagrantfile", "list_boxes"})


def __getattr__(name: str) -> Any:
    if name not in __all__:
        raise AttributeError(f"module 'vmctl.boxes' has no attribute {name!r}")
    import importlib

    module = importlib.import_module("vmctl.boxes.installed" if name in _INSTALLED else "vmctl.boxes.store")
    return getattr(module, name)
