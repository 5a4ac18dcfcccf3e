"""A short-lived process that holds libvirt's embedded driver for one vmctl session.

libvirt's embedded QEMU driver claims its root (a pid-file lock) when a process first
opens it and keeps the claim until that process exits: closing the connection is not
enough. So that a vmctl command holds the root only around its libvirt calls (and two
`vmctl up` in different projects can wait for SSH at the same time), vmctl opens the
embedded driver in this worker, talks to it over a pipe, and lets it exit when done.

Protocol: one JSON object per line. Requests {"op": NAME, "args": [...]}; replies
{"ok": RESULT} or {"error": {"type": "HypervisorError"|..., "message": ..., "hint": ...}}.
The first line the worker writes is {"ok": "ready"} or an error.
"""

from __future__ import annotations

import json
import sys
from typing import Any

# The Connection methods a parent may call: nothing else crosses the pipe.
OPS = frozenset({
    "state", "exists", "define", "start", "shutdown", "destroy", "undefine", "suspend",
    "resume", "xml", "domain_names", "find_machine_domain", "pause", "set_autostart", "agent_addresses",
    "agent_ping",
    # snapshots (vmctl/vmstate.py, vmctl/machine/snapshots.py)
    "start_paused", "save_live", "load_live", "commit_live", "disk_sources", "fix_saved_xml",
    "discard_saved",
})  # fmt: skip


def _reply(out: Any, payload: dict[str, Any]) -> None:
    out.write(json.dumps(payload) + "\n")
    out.flush()


def _error(exc: BaseException) -> dict[str, Any]:
    from vmctl.errors import VmctlError

    if isinstance(exc, VmctlError):
        return {"error": {"type": type(exc).__name__, "message": exc.message, "hint": exc.hint}}
    return {"error": {"type": "HypervisorError", "message": f"libvirt worker: {exc}", "hint": None}}


def serve(uri: str, requests: Any = None, out: Any = None) -> int:
    from vmctl import hypervisor

    requests = requests if requests is not None else sys.stdin
    out = out if out is not None else sys.stdout
    try:
        session = hypervisor.open_in_process(uri)
    except BaseException as exc:  # noqa: BLE001 - reported to the parent
        _reply(out, _error(exc))
        return 1
    conn, close = session
    _reply(out, {"ok": "ready"})
    try:
        for line in requests:
            try:
                request = json.loads(line)
                op = request["op"]
                if op not in OPS:
                    raise ValueError(f"unknown operation {op!r}")
                result = getattr(conn, op)(*request.get("args", []))
                _reply(out, {"ok": result})
            except Exception as exc:  # noqa: BLE001 - every failure goes back to the parent
                _reply(out, _error(exc))
    finally:
        close()
    return 0


if __name__ == "__main__":
    sys.exit(serve(sys.argv[1]))
