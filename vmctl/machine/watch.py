"""`vmctl rsync-auto`: watch the host folders of the machines' rsync synced folders and copy
each change into the guests, as Vagrant's rsync-auto does.

The watching is the watchfiles library's (inotify on Linux), with a short debounce so that a
change reaches the guest within about a second. A change under a folder's excluded paths
(rsync__exclude, and vmctl's own .vmctl/.vagrant) starts no copy; a folder with
rsync__auto: false is not watched. Nothing is written on the host; stopping (Ctrl-C) at any
moment leaves the guests with the last copy that finished, and the next rsync or up copies
again.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from vmctl.errors import MachineError, VmctlError

if TYPE_CHECKING:
    from vmctl.machine.lifecycle import Machine
    from vmctl.vagrantfile.model import SyncedFolder

Emit = Callable[[str], None]
# watchfiles groups changes that arrive within DEBOUNCE ms of one another (its default,
# 1600 ms, would make a change wait longer than a second); STEP is how often it looks.
DEBOUNCE_MS = 150
STEP_MS = 50


@dataclass(frozen=True)
class Target:
    machine: Machine
    folder: SyncedFolder
    host: Path  # the folder's host path, symbolic links resolved (what inotify reports)


def targets(machines: Iterable[Machine]) -> list[Target]:
    out = []
    for m in machines:
        for f in m.config.synced_folders:
            if f.disabled or f.two_way or not f.rsync_auto:
                continue
            host = Path(f.host) if Path(f.host).is_absolute() else m.project_root / f.host
            out.append(Target(m, f, Path(os.path.realpath(host))))
    return out


def affected(target: Target, paths: Iterable[str]) -> bool:
    """Whether any of PATHS (changed host paths) is one the folder's rsync copies."""
    from vmctl.guest import rsync_excluded

    for p in paths:
        try:
            rel = Path(p).relative_to(target.host).as_posix()
        except ValueError:
            continue
        if rel in ("", ".") or not rsync_excluded(rel, target.folder.rsync_exclude):
            return True
    return False


def rsync_auto(machines: list[Machine], *, emit: Emit, stop: threading.Event | None = None) -> None:
    """Copy the rsync folders of MACHINES (running ones) once, then again on every change,
    until STOP is set or Ctrl-C. A copy that fails is reported and the watching goes on."""
    import watchfiles

    running = []
    for m in machines:
        try:
            m.require_running()
        except MachineError as exc:
            emit(f"==> {m.name}: {exc.message}; not watched")
            continue
        running.append(m)
    watched = targets(running)
    if not watched:
        raise MachineError("no running machine has rsync synced folders to watch",
                           hint="rsync-auto copies rsync folders (the default type); two-way folders need no copy")
    try:
        for t in watched:
            _sync(t, emit)
        for host in sorted({str(t.host) for t in watched}):
            emit(f"==> watching {host}")
        emit("==> rsync-auto is watching for changes (Ctrl-C stops it)")
        for changes in watchfiles.watch(*sorted({str(t.host) for t in watched}), debounce=DEBOUNCE_MS, step=STEP_MS,
                                        stop_event=stop, raise_interrupt=False, watch_filter=None):
            paths = {p for _, p in changes}
            for t in watched:
                if affected(t, paths):
                    _sync(t, emit)
    except KeyboardInterrupt:
        pass
    emit("==> rsync-auto stopped")


def _sync(t: Target, emit: Emit) -> None:
    from vmctl import guest

    m = t.machine
    emit(f"==> {m.name}: rsync: {t.folder.host} => {t.folder.guest}")
    try:
        with m._ssh_session() as s:
            guest.rsync_folder(s, m.endpoint(), m.login_key(), t.folder, m.project_root)
    except VmctlError as exc:
        emit(f"==> {m.name}: warning: {exc.message}")
