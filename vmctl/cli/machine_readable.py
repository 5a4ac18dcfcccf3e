"""Vagrant's machine-readable output (`--machine-readable`), for scripts that parse it.

Every line is `TIMESTAMP,TARGET,TYPE,DATA...` on stdout: TIMESTAMP in whole seconds
since the epoch (UTC), TARGET the machine's name or empty, TYPE what the line carries
(`state`, `provider-name`, `ui`, ...), then the data fields. In each field a comma becomes
`%!(VAGRANT_COMMA)`, a newline the two characters `\\n` and a carriage return `\\r`, as
Vagrant's `Vagrant::UI::MachineReadable#machine` writes them. Messages that vmctl would
print for people become `ui` lines (`ui,info`, `ui,warn`, `ui,error`, `ui,output`,
`ui,detail`); a message about one machine ("==> NAME: ...") names it as TARGET.

Only the standard library: the fastest commands use this.
"""

from __future__ import annotations

import re
import time

COMMA = "%!(VAGRANT_COMMA)"
PROVIDER = "libvirt"

_PREFIXED = re.compile(r"^(?:==> | {4})([^\s:]+): ")


def escape(value: object) -> str:
    """VALUE as one field: commas, newlines and carriage returns replaced as Vagrant does."""
    return str(value).replace(",", COMMA).replace("\n", "\\n").replace("\r", "\\r")


def format_line(kind: str, *data: object, target: str = "", timestamp: float | None = None) -> str:
    """One line: `TIMESTAMP,TARGET,KIND,DATA...`."""
    stamp = int(time.time() if timestamp is None else timestamp)
    return ",".join([str(stamp), escape(target), kind, *(escape(d) for d in data)])


def emit(kind: str, *data: object, target: str = "") -> None:
    """Print one machine-readable line on stdout."""
    from vmctl import term

    term.raw(format_line(kind, *data, target=target))


def target_of(message: str) -> str:
    """The machine a message is about ("==> NAME: ..." or "    NAME: ..."), else ""."""
    m = _PREFIXED.match(message)
    return m.group(1) if m else ""


def ui(kind: str, message: str) -> None:
    """A message for people as a `ui` line (the hook term.set_modes takes)."""
    emit("ui", kind, message, target=target_of(message))


def provider(target: str) -> None:
    """`metadata,provider,libvirt`: Vagrant says this once for each machine it loads."""
    emit("metadata", "provider", PROVIDER, target=target)


def error_exit(exc: BaseException) -> None:
    """The last line of a failed command: `error-exit,CLASS,MESSAGE`."""
    emit("error-exit", type(exc).__name__, str(exc))
