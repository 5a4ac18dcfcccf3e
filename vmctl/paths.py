"""Where vmctl keeps things (the contract of DESIGN.md).

    VMCTL_HOME (default $XDG_DATA_HOME/vmctl, else ~/.local/share/vmctl)
      boxes/NAME-ESCAPED/VERSION/libvirt/   installed boxes
      machines/ID/                          disk overlays and console logs
      libvirt/                              the embedded libvirt root
      downloads/                            partial downloads (resumable)
      index.json, ports.json, locks/        the machine index and reservations

    PROJECT/.vmctl/                         per-project state (keys, known_hosts, ids)

Everything under PROJECT/.vmctl may have come with the project's files: folders there are
checked to be real folders (no symbolic links), and vmctl removes only the files it knows.
"""

from __future__ import annotations

import contextlib
import os
import stat
from collections.abc import Iterable
from pathlib import Path

from vmctl.errors import ConfigError, StateError
from vmctl.untrusted import machine_name_problem


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
    """PROJECT/.vmctl, or the folder VMCTL_DOTFILE_PATH (else Vagrant's VAGRANT_DOTFILE_PATH)
    names, relative to the project folder unless absolute."""
    env = os.environ.get("VMCTL_DOTFILE_PATH") or os.environ.get("VAGRANT_DOTFILE_PATH")
    if env:
        return (vagrantfile.parent / Path(env).expanduser()).absolute()
    return vagrantfile.parent / ".vmctl"


def machine_state_dir(project_root: Path, name: str) -> Path:
    """PROJECT/.vmctl/machines/NAME: the machine's state.json, key and known_hosts. NAME
    must have the machine-name shape; nothing on the way may be a symbolic link."""
    problem = machine_name_problem(name)
    if problem is not None:
        raise StateError(f"refusing the machine name {name!r}: {problem}")
    state = project_state_dir(project_root / "Vagrantfile")
    return require_real_dirs(state.parent, state / "machines" / name)


def require_real_dirs(base: Path, path: Path) -> Path:
    """PATH (inside BASE), after checking that no existing folder between BASE and PATH,
    PATH included, is a symbolic link or not a folder: a project may ship `.vmctl` as a
    link into the user's home, and vmctl writes and removes below it."""
    rel = path.relative_to(base)
    if ".." in rel.parts:
        raise StateError(f"refusing the path {path}: it leaves {base}")
    current = base
    for part in rel.parts:
        current = current / part
        try:
            st = os.lstat(current)
        except FileNotFoundError:
            break
        except OSError as exc:
            raise StateError(f"cannot check {current}: {exc.strerror}") from exc
        if stat.S_ISLNK(st.st_mode):
            raise StateError(
                f"refusing {current}: it is a symbolic link, and vmctl keeps its state only in real folders",
                hint=f"remove the link (rm {current}); if it came with the project's files, "
                "the project is trying to make vmctl write elsewhere",
            )
        if not stat.S_ISDIR(st.st_mode):
            raise StateError(f"refusing {current}: it is not a folder", hint=f"move it aside: mv {current} {current}.bad")
    return path


def remove_owned_dir(folder: Path, names: Iterable[str], *, temp_prefixes: Iterable[str] = ()) -> list[str]:
    """Remove the files NAMES (and leftovers of atomic writes starting with TEMP_PREFIXES)
    from FOLDER, then FOLDER itself if that left it empty. Never recursive, never through a
    link: what vmctl did not put there stays, and is returned (so the caller can say so)."""
    try:
        st = os.lstat(folder)
    except FileNotFoundError:
        return []
    if not stat.S_ISDIR(st.st_mode):
        return [str(folder)]
    names = set(names)
    prefixes = tuple(temp_prefixes)
    left = []
    for entry in os.scandir(folder):
        ours = entry.name in names or (prefixes and entry.name.startswith(prefixes))
        if ours and not entry.is_dir(follow_symlinks=False):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(entry.path)
        else:
            left.append(entry.name)
    if not left:
        with contextlib.suppress(FileNotFoundError):
            os.rmdir(folder)
    return left
