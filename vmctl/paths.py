"""Where vmctl keeps things (the contract of DESIGN.md).

    VMCTL_HOME (default $XDG_DATA_HOME/vmctl, else ~/.local/share/vmctl)
      boxes/NAME-ESCAPED/VERSION/libvirt/   installed boxes
      machines/ID/                          disk overlays and console logs
      libvirt/                              the embedded libvirt root
      downloads/                            partial downloads (resumable)
      index.json, ports.json, locks/        the machine index and reservations

    PROJECT/.vmctl/                         per-project state (keys, known_hosts, ids)
"""

from __future__ import annotations

import os
from pathlib import Path

from vmctl.errors import ConfigError


def vmctl_home() -> Path:
    env = os.environ.get("VMCTL_HOME")
    if env:
        return Path(env).expanduser().absolute()
    xdg = os.environ.get("XDG_DATA_HOME")
    base = Path(xdg) if xdg else Path.home() / ".local" / "share"
    return (base / "vmctl").absolute()


def cache_home() -> Path:
    """Built boxes are cached here, outside VMCTL_HOME, so test homes share them."""
    env = os.environ.get("VMCTL_CACHE")
    if env:
        return Path(env).expanduser().absolute()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg) if xdg else Path.home() / ".cache"
    return (base / "vmctl").absolute()


def boxes_dir() -> Path:
    return vmctl_home() / "boxes"


def machines_dir() -> Path:
    return vmctl_home() / "machines"


def downloads_dir() -> Path:
    return vmctl_home() / "downloads"


def libvirt_root() -> Path:
    return vmctl_home() / "libvirt"


def locks_dir() -> Path:
    return vmctl_home() / "locks"


def find_vagrantfile(start: Path | None = None) -> Path | None:
    """VMCTL_VAGRANTFILE, else the Vagrantfile (named "Vagrantfile" or "vagrantfile", or
    VAGRANT_VAGRANTFILE) in START (default: VAGRANT_CWD, else the current folder) or its
    nearest parent."""
    from vmctl import environment

    env = os.environ.get("VMCTL_VAGRANTFILE")
    if env:
        path = Path(env).expanduser().absolute()
        if not path.is_file():
            raise ConfigError(
                f"VMCTL_VAGRANTFILE names {path}, which is not a file",
                hint="unset VMCTL_VAGRANTFILE or point it at your Vagrantfile",
            )
        return path
    names = environment.vagrantfile_names()
    here = (start or environment.search_start()).absolute()
    for folder in (here, *here.parents):
        for name in names:
            candidate = folder / name
            if candidate.is_file():
                return candidate
    return None


def require_vagrantfile(start: Path | None = None) -> Path:
    from vmctl import environment

    path = find_vagrantfile(start)
    if path is None:
        raise ConfigError(
            f"no {environment.vagrantfile_names()[0]} here or in any parent folder",
            hint="run vmctl in a project folder, or set VMCTL_VAGRANTFILE",
        )
    return path


def project_state_dir(vagrantfile: Path) -> Path:
    return vagrantfile.parent / ".vmctl"


def machine_state_dir(project_root: Path, name: str) -> Path:
    """PROJECT/.vmctl/machines/NAME: the machine's state.json, key and known_hosts."""
    return project_state_dir(project_root / "Vagrantfile") / "machines" / name
