"""Placement: `up` puts each new machine that names no libvirt host on one of the hosts of
VMCTL_HOSTS (libvirt URIs, separated by spaces or commas), the one with the most free memory
(libvirt's getFreeMemory, less the memory of the machines this `up` placed there already;
ties go to the host listed first). The machine's state records the URI it went to, so every
later command finds it there; a machine that names a host (libvirt.uri, libvirt.host, ...) or
runs under VMCTL_LIBVIRT_URI is not placed. A host that cannot be reached is skipped with a
warning; when none can be, `up` stops.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from vmctl.errors import MachineError, VmctlError

if TYPE_CHECKING:
    from vmctl.machine import Machine

ENV = "VMCTL_HOSTS"
MIB = 1024 * 1024
_URI = re.compile(r"[a-z0-9]+(?:\+[a-z0-9]+)?://[^\s,]*")


def hosts(value: str | None = None) -> list[str]:
    """The URIs of VMCTL_HOSTS (VALUE), in order, each once."""
    text = os.environ.get(ENV, "") if value is None else value
    out: list[str] = []
    for word in re.split(r"[\s,]+", text.strip()):
        if not word:
            continue
        if not _URI.fullmatch(word):
            raise MachineError(f"{ENV}: {word[:80]!r} is not a libvirt URI",
                               hint=f"{ENV}=\"qemu+ssh://root@kvm1/system qemu+ssh://root@kvm2/system\"")
        if word not in out:
            out.append(word)
    return out


def choose(free: dict[str, int | None]) -> str | None:
    """The URI of FREE (bytes free, None: not reached; in VMCTL_HOSTS's order) with the most
    free memory, or None when none was reached. Where none has room for the machine, it
    still goes to the one with the most (libvirt lets a host overcommit its memory)."""
    reached = [(uri, mem) for uri, mem in free.items() if mem is not None]
    if not reached:
        return None
    return max(reached, key=lambda item: item[1])[0]  # max keeps the first of equals


def place(machines: Sequence[Machine], emit: Callable[[str], None],
          free_memory: Callable[[str], int] | None = None) -> dict[str, str]:
    """Where each of MACHINES that is new and names no host goes (name -> URI); {} without
    VMCTL_HOSTS, or under VMCTL_LIBVIRT_URI."""
    uris = hosts()
    if not uris or os.environ.get("VMCTL_LIBVIRT_URI"):
        return {}
    new = [m for m in machines if m.state is None and not m.config.libvirt.uri]
    if not new:
        return {}
    from vmctl import remote

    ask = free_memory or _free_memory
    free: dict[str, int | None] = {}
    for uri in uris:
        try:
            free[uri] = ask(uri)
        except VmctlError as exc:
            emit(f"==> warning: {ENV}: {remote.host_of(uri) or uri} is left out: {exc.message}")
            free[uri] = None
    out: dict[str, str] = {}
    for m in new:
        need = m.config.memory * MIB
        uri = choose(free)
        if uri is None:
            raise MachineError(f"none of the hosts of {ENV} can be reached ({', '.join(uris)})",
                               hint="check that each host's libvirtd answers (virsh -c URI list), or unset "
                               f"{ENV} to run the machines on this computer")
        left = free[uri]
        assert left is not None
        emit(f"==> {m.name}: placed on {remote.host_of(uri) or uri} ({left // MIB} MiB free, of {ENV})")
        free[uri] = left - need
        out[m.name] = uri
    return out


def _free_memory(uri: str) -> int:
    from vmctl import hypervisor

    with hypervisor.connect(uri) as c:
        return int(c.free_memory())
