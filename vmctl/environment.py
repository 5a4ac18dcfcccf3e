"""Vagrant's environment variables, read in one place.

A CI script written for Vagrant sets Vagrant's variables; vmctl honours those that mean
something for it, with Vagrant's meaning, and its own VMCTL_* names win where both are set:

    VAGRANT_CWD                  the folder where the search for the Vagrantfile starts
    VAGRANT_VAGRANTFILE          the Vagrantfile's file NAME, looked up like "Vagrantfile"
    VAGRANT_DEFAULT_PROVIDER     must be libvirt (or unset): vmctl has no other provider
    VAGRANT_NO_COLOR             like --no-color
    VAGRANT_FORCE_COLOR          like --color
    VAGRANT_LOG                  debug or info: logs on stderr (like --debug)
    VAGRANT_LOG_TIMESTAMP        timestamps on those logs (like --timestamp)
    VAGRANT_NO_PARALLEL          machines one after another (like --no-parallel)

The others (VAGRANT_BOX_UPDATE_CHECK_DISABLE, VAGRANT_CHECKPOINT_DISABLE, ...) have no
meaning for vmctl; docs/from-vagrant.md says why, variable by variable. Nothing here
imports more than the standard library's `os`, so the fastest commands can use it.
"""

from __future__ import annotations

import os
from pathlib import Path

from vmctl.errors import ConfigError, UsageError

PROVIDER = "libvirt"
VAGRANTFILE_NAMES = ("Vagrantfile", "vagrantfile")


def _set(name: str) -> str | None:
    """The value of NAME, or None when it is unset or empty (as Vagrant treats both)."""
    value = os.environ.get(name)
    return value if value else None


def vagrantfile_names() -> tuple[str, ...]:
    """The file names the Vagrantfile is looked up by: VAGRANT_VAGRANTFILE, else
    "Vagrantfile" and "vagrantfile". VAGRANT_VAGRANTFILE is a file name, not a path
    (VMCTL_VAGRANTFILE takes a path)."""
    name = _set("VAGRANT_VAGRANTFILE")
    if name is None:
        return VAGRANTFILE_NAMES
    if "/" in name or name in (".", ".."):
        raise ConfigError(
            f"VAGRANT_VAGRANTFILE is {name!r}, which is not a file name",
            hint="VAGRANT_VAGRANTFILE names the file looked up in each folder (e.g. "
            "Vagrantfile.ci); to point at one file, set VMCTL_VAGRANTFILE to its path",
        )
    return (name,)


def search_start() -> Path:
    """Where the search for the Vagrantfile starts: VAGRANT_CWD, else the current folder."""
    cwd = _set("VAGRANT_CWD")
    if cwd is None:
        return Path.cwd()
    path = Path(cwd).expanduser().absolute()
    if not path.is_dir():
        raise ConfigError(
            f"VAGRANT_CWD names {path}, which is not a folder",
            hint="unset VAGRANT_CWD or point it at the folder holding your Vagrantfile",
        )
    return path


def require_provider(name: str | None, *, source: str = "--provider") -> None:
    """NAME (from SOURCE: --provider, or VAGRANT_DEFAULT_PROVIDER) must be libvirt."""
    if name is None or name == PROVIDER:
        return
    error = UsageError if source.startswith("--") else ConfigError
    raise error(
        f"{source} asks for the provider {name!r}, but vmctl provides only {PROVIDER!r}",
        hint=f"use {source}={PROVIDER}" if source.startswith("--")
        else f"unset {source} or set it to {PROVIDER}",
    )


def require_default_provider() -> None:
    """VAGRANT_DEFAULT_PROVIDER, when set, must be libvirt."""
    require_provider(_set("VAGRANT_DEFAULT_PROVIDER"), source="VAGRANT_DEFAULT_PROVIDER")


def no_parallel() -> bool:
    """VAGRANT_NO_PARALLEL (any non-empty value): bring machines up one after another."""
    return _set("VAGRANT_NO_PARALLEL") is not None


def color() -> bool | None:
    """True to force colour (VAGRANT_FORCE_COLOR), False to turn it off (VAGRANT_NO_COLOR),
    None to decide by the terminal. Forcing wins, as in Vagrant."""
    if _set("VAGRANT_FORCE_COLOR") is not None:
        return True
    if _set("VAGRANT_NO_COLOR") is not None:
        return False
    return None


LOG_LEVELS = {"debug": 10, "info": 20, "warn": 30, "error": 40}


def log_level() -> int | None:
    """The logging level VMCTL_DEBUG (1: debug) or else VAGRANT_LOG asks for (debug, info,
    warn, error); None for no logs. Vagrant treats an unknown level as "fatal" (no logs)."""
    vmctl_debug = _set("VMCTL_DEBUG")
    if vmctl_debug is not None:  # vmctl's own name wins
        return LOG_LEVELS["debug"] if vmctl_debug == "1" else None
    value = _set("VAGRANT_LOG")
    return LOG_LEVELS.get(value.lower()) if value else None


def log_timestamps() -> bool:
    return _set("VAGRANT_LOG_TIMESTAMP") is not None
