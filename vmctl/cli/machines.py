"""Commands for machines: up, ssh, ssh-config, status, global-status, halt, reload,
suspend, resume, destroy, provision, port, rsync. Thin: parse, call the core, print."""

from __future__ import annotations

import os
import sys
from typing import TYPE_CHECKING

import typer

if TYPE_CHECKING:
    from vmctl.project import Project

NAMES = typer.Argument(None, metavar="NAME", show_default=False, help="Machine names (default: all machines of the project).")


def _project(*words: str) -> Project:
    from vmctl.project import Project

    return Project.find(words)


def _emitters() -> tuple:
    from vmctl import term

    return term.info, term.out


def up(
    names: list[str] | None = NAMES,
    provision: bool | None = typer.Option(None, "--provision/--no-provision", help="Run provisioners (default: on first up only)."),
    parallel: bool = typer.Option(True, "--parallel/--no-parallel", help="Bring several machines up at once."),
) -> None:
    """Create and start machines, wait for SSH, replace the insecure key, provision."""
    from vmctl import term
    from vmctl.errors import MachineError
    from vmctl.project import up_machines

    project = _project("up", *(names or []))
    machines = project.machines(names or [], autostart_only=not names)
    emit, emit_output = _emitters()
    failures = up_machines(project, machines, provision=provision, parallel=parallel, emit=emit, emit_output=emit_output)
    if len(failures) == 1 and len(machines) == 1:
        raise failures[0][1]
    for name, exc in failures:
        term.error(f"{name}: {exc}", exc.hint)
    if failures:
        raise MachineError(f"{len(failures)} of {len(machines)} machines failed to come up")


def ssh(
    name: str | None = typer.Argument(None, metavar="NAME", show_default=False, help="Machine (default: the primary or only one)."),
    command: str | None = typer.Option(None, "-c", "--command", help="Run CMD and exit with its status."),
    ssh_args: list[str] | None = typer.Argument(None, metavar="SSH_ARGS", show_default=False, help="Extra arguments for ssh, after --."),
) -> None:
    """Log in to a machine with OpenSSH (or run one command with -c)."""
    from vmctl import hypervisor
    from vmctl import ssh as sshmod
    from vmctl.errors import MachineError
    from vmctl.run import require_tool

    project = _project("ssh", *([name] if name else []))
    m = project.one_machine(name)
    st = m.require_state()
    # For the embedded driver, whether QEMU runs is a cheap check (no libvirt call):
    # say so plainly instead of letting ssh report a refused connection.
    if hypervisor.qemu_alive(st.uri, st.domain) is False:
        raise MachineError(
            f"machine {m.name} is not running",
            hint=f"start it with vmctl up {m.name}",
        )
    binary = require_tool("ssh", "log in to the machine")
    argv = [binary, *sshmod.openssh_options(m.endpoint(), m.login_key())]
    argv += list(ssh_args or [])
    if command is None:
        argv += ["-t", "127.0.0.1"] if sys.stdin.isatty() else ["127.0.0.1"]
    else:
        argv += ["127.0.0.1", command]
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(binary, argv)


def ssh_config(
    names: list[str] | None = NAMES,
    host: str | None = typer.Option(None, "--host", help="Name the Host entry (one machine only)."),
) -> None:
    """Print an OpenSSH config for the machines (ssh -F FILE NAME logs in)."""
    from vmctl import term
    from vmctl.ssh import config_block

    project = _project("ssh-config", *(names or []))
    blocks = []
    for m in project.machines(names or []):
        if m.state is None:
            continue
        blocks.append(config_block(host or m.name, m.endpoint(), m.login_key()))
    if not blocks:
        from vmctl.errors import MachineError

        raise MachineError("no machine of this project is created", hint="create one with vmctl up")
    term.out("\n\n".join(blocks))


def status(
    names: list[str] | None = NAMES,
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Show the state of the project's machines (asks libvirt)."""
    from vmctl import hypervisor, term
    from vmctl.errors import StateError

    project = _project("status", *(names or []))
    machines = project.machines(names or [])
    states: dict[str, str] = {}
    by_uri: dict[str, list] = {}
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
            with hypervisor.connect(uri) as c:
                for m in asked:
                    states[m.name] = m.status(c, qemu_said=said[m.name])
    domains: dict[str, str | None] = {}
    if unreadable:
        with hypervisor.connect(hypervisor.resolve_uri()) as c:
            for m in unreadable:
                dom = c.find_machine_domain(str(project.root), m.name)
                domains[m.name] = dom
                states[m.name] = c.state(dom) if dom else hypervisor.NOT_CREATED
    if as_json:
        out = []
        for m in machines:
            if m in unreadable:
                out.append({"name": m.name, "state": states[m.name], "domain": domains[m.name],
                            "ssh": None, "forwarded_ports": [], "state_file_error": True})
            else:
                out.append(m.status_json(states[m.name]))
        term.out_json({"machines": out})
        if unreadable:
            raise typer.Exit(1)
        return
    rows = []
    for m in machines:
        dom = domains.get(m.name) if m in unreadable else (m.state.domain if m.state else None)
        rows.append([m.name, states[m.name], dom or "-"])
    term.table(["name", "state", "domain"], rows)
    if unreadable:
        raise typer.Exit(1)


def global_status(
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
    prune: bool = typer.Option(False, "--prune", help="Forget entries whose machine is gone."),
) -> None:
    """Show every vmctl machine on this host, whatever its project."""
    from vmctl import hypervisor, term
    from vmctl.errors import StateError
    from vmctl.machine import stopped_on_purpose
    from vmctl.state import index_lock, load_index, save_index

    try:
        entries = load_index()
    except StateError as exc:
        # The index is unreadable: say so, and still tell the truth by asking libvirt.
        term.error(str(exc), exc.hint)
        _global_status_from_libvirt(as_json)
        raise typer.Exit(1) from exc
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
    if as_json:
        term.out_json({"machines": [
            {"id": e.id, "name": e.name, "project": e.project, "state": states.get(e.id, "unknown"),
             "domain": e.domain, "uri": e.uri, "ports": e.ports}
            for e in items
        ]})  # fmt: skip
        return
    if not items:
        term.info("no vmctl machines on this host")
        return
    term.table(["id", "name", "state", "project"], [[e.id, e.name, states.get(e.id, "unknown"), e.project] for e in items])


def _global_status_from_libvirt(as_json: bool) -> None:
    from vmctl import hypervisor, term
    from vmctl.domain import parse_machine_metadata

    uri = hypervisor.resolve_uri()
    found = []
    with hypervisor.connect(uri) as c:
        for name in c.domain_names("vmctl-"):
            meta = parse_machine_metadata(c.xml(name) or "") or {}
            found.append({"id": meta.get("id"), "name": meta.get("name"), "project": meta.get("project"),
                          "state": c.state(name), "domain": name, "uri": uri, "ports": []})
    if as_json:
        term.out_json({"machines": found, "index_error": True})
        return
    term.table(["id", "name", "state", "project"],
               [[str(m["id"]), str(m["name"]), m["state"], str(m["project"])] for m in found])


def halt(
    names: list[str] | None = NAMES,
    force: bool = typer.Option(False, "-f", "--force", help="Pull the plug instead of shutting down."),
) -> None:
    """Shut machines down (gracefully, forced after a timeout)."""
    emit, _ = _emitters()
    for m in _project("halt").machines(names or []):
        m.halt(force=force, emit=emit)


def reload(
    names: list[str] | None = NAMES,
    provision: bool | None = typer.Option(None, "--provision/--no-provision", help="Run provisioners after the restart."),
) -> None:
    """Halt and start machines again (picking up Vagrantfile changes)."""
    from vmctl.project import reload_machines

    emit, emit_output = _emitters()
    project = _project("reload")
    reload_machines(project, project.machines(names or []), provision=provision, emit=emit, emit_output=emit_output)


def suspend(names: list[str] | None = NAMES) -> None:
    """Save machines' memory to disk and stop them."""
    emit, _ = _emitters()
    for m in _project("suspend").machines(names or []):
        m.suspend(emit=emit)


def resume(names: list[str] | None = NAMES) -> None:
    """Resume suspended machines."""
    emit, emit_output = _emitters()
    for m in _project("resume").machines(names or []):
        m.resume(emit=emit, emit_output=emit_output)


def destroy(
    names: list[str] | None = NAMES,
    force: bool = typer.Option(False, "-f", "--force", help="Do not ask for confirmation."),
) -> None:
    """Remove machines: domain, disk, keys and state. Running it twice is fine."""
    from vmctl import term
    from vmctl.errors import UsageError

    machines = _project("destroy").machines(names or [])
    if not force:
        if not sys.stdin.isatty():
            raise UsageError(
                "destroy needs confirmation and there is no terminal to ask",
                hint="pass -f to destroy without asking",
            )
        listed = ", ".join(m.name for m in machines)
        if not typer.confirm(f"Destroy {listed}?", default=False):
            term.info("nothing destroyed")
            return
    emit, _ = _emitters()
    for m in machines:
        if not m.destroy(emit=emit):
            emit(f"==> {m.name}: not created.")


def provision(
    names: list[str] | None = NAMES,
    provision_with: str | None = typer.Option(None, "--provision-with", help="Only these provisioners (names or types, comma-separated)."),
) -> None:
    """Run the provisioners of running machines."""
    from vmctl.project import provision_machines

    emit, emit_output = _emitters()
    only = {p.strip() for p in provision_with.split(",") if p.strip()} if provision_with else None
    project = _project("provision")
    provision_machines(project, project.machines(names or []), only=only, emit=emit, emit_output=emit_output)


def port(
    name: str | None = typer.Argument(None, metavar="NAME", show_default=False, help="Machine (default: the primary or only one)."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Show the forwarded ports of a machine."""
    from vmctl import term

    m = _project("port").one_machine(name)
    ports = m.ports_json()
    if as_json:
        term.out_json({"name": m.name, "ports": ports})
        return
    for p in ports:
        term.out(f"{p['guest']:>6} (guest) => {p['host']} (host {p['host_ip']}, {p['protocol']})")


def rsync(names: list[str] | None = NAMES) -> None:
    """Copy synced folders into running machines again."""
    emit, _ = _emitters()
    for m in _project("rsync").machines(names or []):
        m.rsync(emit=emit)


def register(app: typer.Typer) -> None:
    ctx = {"allow_interspersed_args": True}
    app.command("up")(up)
    app.command("ssh", context_settings={"allow_extra_args": True})(ssh)
    app.command("ssh-config")(ssh_config)
    app.command("status", context_settings=ctx)(status)
    app.command("global-status")(global_status)
    app.command("halt")(halt)
    app.command("reload")(reload)
    app.command("suspend")(suspend)
    app.command("resume")(resume)
    app.command("destroy")(destroy)
    app.command("provision")(provision)
    app.command("port")(port)
    app.command("rsync")(rsync)
