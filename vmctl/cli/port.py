"""Command: vmctl port. Thin: parse, ask the core, print. Standard library only at the top
(vmctl/cli/fast.py calls `port` without typer); typer only in register()."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import typer

DETAILS = ("The forwarded ports for the machine are listed below. They may differ from the "
           "ports in the Vagrantfile where vmctl chose another host port (auto_correct).")


def port(name: str | None, *, as_json: bool, guest: str | None) -> None:
    """Show the forwarded ports of a machine; with GUEST, only the host port for that
    guest port (as Vagrant's `port --guest`)."""
    from vmctl import term
    from vmctl.cli.common import project
    from vmctl.errors import UsageError

    mr = None
    if term.machine_readable():
        if as_json:
            raise UsageError("--json and --machine-readable cannot be used together",
                             hint="choose one of the two output formats")
        from vmctl.cli import machine_readable as mr
    m = project("port", *([name] if name else [])).one_machine(name)
    if mr is not None:
        mr.provider(m.name)
    ports = m.ports_json()
    if guest is not None:
        _print_single(m.name, ports, guest, as_json=as_json)
        return
    if as_json:
        term.out_json({"name": m.name, "ports": ports})
        return
    if mr is not None:
        mr.emit("ui", "info", DETAILS)
        mr.emit("ui", "info", "")
        for p in ports:
            mr.emit("ui", "info", f"{str(p['guest']).rjust(6)} (guest) => {p['host']} (host)")
            mr.emit("forwarded_port", p["guest"], p["host"], target=m.name)
        return
    from vmctl import remote

    st = m.state
    on = f" of {where}" if st is not None and (where := remote.host_of(st.uri)) else ""  # the libvirt host's address
    for p in ports:
        term.out(f"{p['guest']:>6} (guest) => {p['host']} (host {p['host_ip']}{on}, {p['protocol']})")


def _print_single(machine: str, ports: list[dict], guest: str, *, as_json: bool) -> None:
    from vmctl import term
    from vmctl.errors import MachineError, UsageError

    if not guest.isdigit():
        raise UsageError(f"--guest {guest!r} is not a port number", hint="e.g. --guest 80")
    found = next((p for p in ports if p["guest"] == int(guest)), None)
    if found is None:
        raise MachineError(
            f"machine {machine} forwards no host port to guest port {guest}",
            hint="add a forwarded_port to the Vagrantfile and run vmctl reload",
        )
    if as_json:
        term.out_json({"name": machine, "ports": [found]})
    elif term.machine_readable():
        from vmctl.cli import machine_readable

        machine_readable.emit("ui", "info", found["host"])
    else:
        term.out(str(found["host"]))


def register(app: typer.Typer) -> None:
    import typer

    from vmctl.cli.common import name_argument

    @app.command("port")
    def port_command(
        name: str | None = name_argument(),
        as_json: bool = typer.Option(False, "--json", help="Print JSON."),
        guest: str | None = typer.Option(None, "--guest", metavar="PORT",
                                         help="Print only the host port forwarded to this guest port."),
    ) -> None:
        """Show the forwarded ports of a machine."""
        port(name, as_json=as_json, guest=guest)
