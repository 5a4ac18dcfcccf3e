"""Commands: vmctl status, vmctl global-status. Thin: parse, ask the core, print.

Both are in vmctl/cli/fast.py's reach (status) or called by scripts in loops, so this
module imports nothing beyond the standard library at its top; typer only in register().
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import typer

# Vagrant's MachineState: an id, a short and a long description (`vagrant status`).
LONG_DESCRIPTIONS = {
    "not_created": "The machine is not created. Run `vmctl up` to create it.",
    "running": "The machine is running. To stop it, run `vmctl halt`; to remove it, "
               "run `vmctl destroy`.",
    "poweroff": "The machine is not running. Run `vmctl up` to start it.",
    "paused": "The machine is paused. Run `vmctl resume` to resume it.",
    "saved": "The machine's memory is saved on disk (suspended). Run `vmctl resume` or "
             "`vmctl up` to resume it.",
    "crashed": "The machine stopped unexpectedly (its QEMU exited). Run `vmctl up` to start "
               "it again, or `vmctl destroy` to remove it.",
}  # fmt: skip
LISTING = ("This environment represents multiple machines. They are all listed above with "
           "their current state. For more information about a specific machine, run "
           "`vmctl status NAME`.")


def short_description(state: str) -> str:
    return state.replace("_", " ")


def long_description(state: str) -> str:
    return LONG_DESCRIPTIONS.get(state, f"The machine's state is {short_description(state)}.")


def status(names: list[str], *, as_json: bool) -> None:
    """Show the state of the project's machines (asks libvirt)."""
    from vmctl import hypervisor, remote, term
    from vmctl.cli.common import project
    from vmctl.errors import HypervisorError, StateError

    mr = _machine_readable(as_json)
    proj = project("status", *names)
    machines = proj.machines(names)
    if mr:
        for m in machines:
            mr.provider(m.name)
    states: dict[str, str] = {}
    by_uri: dict[str, list] = {}
    unknown: dict[str, str] = {}  # machine name: why its state is unknown
    unreadable = []  # machines whose state file is corrupt: ask libvirt by metadata
    for m in machines:
        try:
            st = m.state
        except StateError as exc:
            term.error(str(exc), exc.hint)
            unreadable.append(m)
            continue
        if st is None:
            states[m.name] = hypervisor.NOT_CREATED
        else:
            by_uri.setdefault(st.uri, []).append(m)
    for uri, group in by_uri.items():
        said = {m.name: m.qemu_status() for m in group}  # QEMU's word, without libvirt
        asked = [m for m in group if said[m.name] != "running"]
        states.update({m.name: hypervisor.RUNNING for m in group if m not in asked})
        if asked:
            try:
                with hypervisor.connect(uri) as c:
                    for m in asked:
                        states[m.name] = m.status(c, qemu_said=said[m.name])
            except HypervisorError as exc:
                if remote.host_of(uri) is None:
                    raise
                # a host that cannot be reached does not fail the command for the others
                why = f"the libvirt host {remote.host_of(uri)} cannot be reached: {exc.message}"
                for m in asked:
                    states[m.name], unknown[m.name] = "unknown", why
                term.warn(f"{', '.join(m.name for m in asked)}: state unknown: {why}")
    domains: dict[str, str | None] = {}
    if unreadable:
        with hypervisor.connect(hypervisor.resolve_uri()) as c:
            for m in unreadable:
                dom = c.find_machine_domain(str(proj.root), m.name)
                domains[m.name] = dom
                states[m.name] = c.state(dom) if dom else hypervisor.NOT_CREATED
    if mr:
        _status_machine_readable(mr, [(m.name, states[m.name]) for m in machines])
    elif as_json:
        out = []
        for m in machines:
            if m in unreadable:
                out.append({"name": m.name, "state": states[m.name], "domain": domains[m.name],
                            "ssh": None, "forwarded_ports": [], "state_file_error": True})
            elif m.name in unknown:
                out.append({**m.status_json(states[m.name]), "reason": unknown[m.name]})
            else:
                out.append(m.status_json(states[m.name]))
        term.out_json({"machines": out})
    else:
        rows = []
        for m in machines:
            dom = domains.get(m.name) if m in unreadable else (m.state.domain if m.state else None)
            host = remote.host_of(m.state.uri) if m not in unreadable and m.state else None
            rows.append([m.name, states[m.name], dom or "-", host or "this computer"])
        if any(row[3] != "this computer" for row in rows):
            term.table(["name", "state", "domain", "host"], rows)
        else:
            term.table(["name", "state", "domain"], [row[:3] for row in rows])
    for m in machines:
        if m not in unreadable and m.name not in unknown and m.interrupted():
            where = remote.host_of(m.state.uri)
            term.warn(f"{m.name}: an interrupted `vmctl up` left it half-made{' on ' + where if where else ''}: "
                      f"vmctl up {m.name} removes that and makes it again, vmctl destroy {m.name} removes it")
    if unreadable:
        raise SystemExit(1)


def _machine_readable(as_json: bool) -> Any:
    """The machine_readable module when --machine-readable is on, else None."""
    from vmctl import term

    if not term.machine_readable():
        return None
    if as_json:
        from vmctl.errors import UsageError

        raise UsageError("--json and --machine-readable cannot be used together",
                         hint="choose one of the two output formats")
    from vmctl.cli import machine_readable

    return machine_readable


def _status_machine_readable(mr: Any, states: list[tuple[str, str]]) -> None:
    """Vagrant's lines for each machine, then its text for people as one `ui,info` line."""
    width = max([25, *(len(name) for name, _ in states)])
    rows = []
    for name, state in states:
        mr.emit("provider-name", mr.PROVIDER, target=name)
        mr.emit("state", state, target=name)
        mr.emit("state-human-short", short_description(state), target=name)
        mr.emit("state-human-long", long_description(state), target=name)
        rows.append(f"{name.ljust(width)} {short_description(state)} ({mr.PROVIDER})")
    message = long_description(states[0][1]) if len(states) == 1 else LISTING
    mr.emit("ui", "info", "Current machine states:\n\n" + "\n".join(rows) + "\n\n" + message)


def global_status(*, as_json: bool, prune: bool) -> None:
    """Show every vmctl machine on this host, whatever its project."""
    from vmctl import hypervisor, remote, term
    from vmctl.errors import StateError
    from vmctl.machine import stopped_on_purpose
    from vmctl.state import index_lock, load_index, save_index

    mr = _machine_readable(as_json)
    try:
        entries = load_index()
    except StateError as exc:
        # The index is unreadable: say so, and still tell the truth by asking libvirt.
        term.error(str(exc), exc.hint)
        _global_status_from_libvirt(as_json, mr)
        raise SystemExit(1) from exc
    states: dict[str, str] = {}
    by_uri: dict[str, list] = {}
    for e in entries.values():
        by_uri.setdefault(e.uri, []).append(e)
    for uri, group in by_uri.items():
        said = {e.id: hypervisor.qemu_status(uri, e.domain) for e in group}  # without libvirt
        asked = [e for e in group if said[e.id] != "running"]
        states.update({e.id: hypervisor.RUNNING for e in group if e not in asked})
        if not asked:
            continue
        try:
            with hypervisor.connect(uri) as c:
                for e in asked:
                    states[e.id] = hypervisor.settled_state(
                        c.state(e.domain), said[e.id], halted=stopped_on_purpose(e.project, e.name))
        except Exception:  # noqa: BLE001 - an unreachable libvirt must not hide the others
            for e in asked:
                states[e.id] = "unknown"
    if prune:
        gone = [
            e.id for e in entries.values()
            if states.get(e.id) == hypervisor.NOT_CREATED
            or not (os.path.isdir(e.project))
        ]  # fmt: skip
        with index_lock():
            current = load_index()
            for i in gone:
                current.pop(i, None)
            save_index(current)
        entries = {k: v for k, v in entries.items() if k not in gone}
    items = sorted(entries.values(), key=lambda e: (e.project, e.name))
    found = [{"id": e.id, "name": e.name, "project": e.project, "state": states.get(e.id, "unknown"),
              "domain": e.domain, "uri": e.uri, "host": remote.host_of(e.uri), "ports": e.ports} for e in items]
    if mr:
        _global_status_machine_readable(mr, found)
    elif as_json:
        term.out_json({"machines": found})
    elif not items:
        term.info("no vmctl machines on this host")
    else:
        term.table(["id", "name", "state", "project"],
                   [[m["id"], m["name"], m["state"], m["project"]] for m in found])


GLOBAL_NONE = "There are no vmctl machines on this host."
GLOBAL_FOOTER = ("The above shows every vmctl machine on this host, with its state asked of "
                 "libvirt (use \"vmctl global-status --prune\" to forget machines that are gone). "
                 "To work with one, go to its project folder and run vmctl there.")


def _global_status_machine_readable(mr: Any, machines: list[dict[str, Any]]) -> None:
    """Vagrant's lines: the count, four lines per machine, then its table for people as
    `ui,info` lines, one for each piece Vagrant prints (each cell is one)."""
    mr.emit("metadata", "machine-count", str(len(machines)))
    for m in machines:
        target = str(m["name"])
        mr.emit("machine-id", str(m["id"])[:7], target=target)
        mr.emit("provider-name", mr.PROVIDER, target=target)
        mr.emit("machine-home", str(m["project"]), target=target)
        mr.emit("state", str(m["state"]), target=target)
    columns = [("id", "id"), ("name", "name"), ("provider", "provider"), ("state", "state"),
               ("directory", "project")]
    rows = [{**m, "id": str(m["id"])[:7], "provider": mr.PROVIDER} for m in machines]
    widths = {"id": 8, "name": 6, "provider": 6, "state": 6, "project": 35}
    for row in rows:
        for _, key in columns[1:]:
            widths[key] = max(widths[key], len(str(row[key])))
    total = 0
    for header, key in columns:
        cell = header.ljust(widths[key])
        mr.emit("ui", "info", f"{cell} ")
        total += len(cell) + 1
    mr.emit("ui", "info", "")
    mr.emit("ui", "info", "-" * total)
    if not rows:
        mr.emit("ui", "info", GLOBAL_NONE)
        return
    for row in rows:
        for _, key in columns:
            mr.emit("ui", "info", f"{str(row[key]).ljust(widths[key])} ")
        mr.emit("ui", "info", "")
    mr.emit("ui", "info", " \n" + GLOBAL_FOOTER)


def _global_status_from_libvirt(as_json: bool, mr: Any) -> None:
    from vmctl import hypervisor, term
    from vmctl.domain import parse_machine_metadata

    uri = hypervisor.resolve_uri()
    found = []
    with hypervisor.connect(uri) as c:
        for name in c.domain_names("vmctl-"):
            meta = parse_machine_metadata(c.xml(name) or "") or {}
            found.append({"id": meta.get("id"), "name": meta.get("name"), "project": meta.get("project"),
                          "state": c.state(name), "domain": name, "uri": uri, "ports": []})
    if mr:
        _global_status_machine_readable(mr, found)
    elif as_json:
        term.out_json({"machines": found, "index_error": True})
    else:
        term.table(["id", "name", "state", "project"],
                   [[str(m["id"]), str(m["name"]), m["state"], str(m["project"])] for m in found])


def register(app: typer.Typer) -> None:
    import typer

    from vmctl.cli.common import names_argument

    @app.command("status", context_settings={"allow_interspersed_args": True})
    def status_command(
        names: list[str] | None = names_argument(),
        as_json: bool = typer.Option(False, "--json", help="Print JSON."),
    ) -> None:
        """Show the state of the project's machines (asks libvirt)."""
        status(names or [], as_json=as_json)

    @app.command("global-status")
    def global_status_command(
        as_json: bool = typer.Option(False, "--json", help="Print JSON."),
        prune: bool = typer.Option(False, "--prune", help="Forget entries whose machine is gone."),
    ) -> None:
        """Show every vmctl machine on this host, whatever its project."""
        global_status(as_json=as_json, prune=prune)
