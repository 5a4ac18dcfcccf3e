"""Command: vmctl port. Thin: parse, ask the core, print. Standard library only at the top
(vmctl/cli/fast.py calls `port` without typer); typer only in register()."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import typer

DETAILS = ("The forwarded ports for the machine are listed below. They may differ from the "
           "ports in the Vagrantfile where vmctl chose another host port (auto_correct).")


def port(name: str | None, *, as_json: bool, guest: str | None, tunnel: bool = False) -> None:
    """Show the forwarded ports of a machine; with GUEST, only the host port for that
    guest port (as Vagrant's `port --guest`). TUNNEL: for a machine on a remote libvirt
    host, keep local forwards to its TCP ports open until Ctrl-C (vmctl/port_tunnel.py)."""
    from vmctl import remote, term
    from vmctl.cli.common import project
    from vmctl.errors import UsageError

    mr = None
    if term.machine_readable():
        if as_json:
            raise UsageError("--json and --machine-readable cannot be used together",
                             hint="choose one of the two output formats")
        if tunnel:
            raise UsageError("--tunnel and --machine-readable cannot be used together",
                             hint="use --tunnel --json for a script")
        from vmctl.cli import machine_readable as mr
    m = project("port", *([name] if name else [])).one_machine(name)
    if mr is not None:
        mr.provider(m.name)
    ports = m.ports_json()
    st = m.state
    where = remote.host_of(st.uri) if st is not None else None  # the libvirt host ([user@]host[:port])
    if as_json or tunnel:
        for p in ports:
            p["libvirt_host"], p["tunnel"] = where, None
    if tunnel:
        _tunnel(m, ports, guest, as_json=as_json)
        return
    if guest is not None:
        _print_single(m.name, ports, guest, as_json=as_json)
        return
    if as_json:
        term.out_json({"name": m.name, "libvirt_host": where, "ports": ports})
        return
    if mr is not None:
        mr.emit("ui", "info", DETAILS)
        mr.emit("ui", "info", "")
        for p in ports:
            mr.emit("ui", "info", f"{str(p['guest']).rjust(6)} (guest) => {p['host']} (host)")
            mr.emit("forwarded_port", p["guest"], p["host"], target=m.name)
        return
    on = f" of {where}" if where else ""  # the libvirt host's address
    for p in ports:
        term.out(f"{p['guest']:>6} (guest) => {p['host']} (host {p['host_ip']}{on}, {p['protocol']})")
    if where and ports:
        term.info(f"==> {m.name}: the ports listen on {where}; vmctl port --tunnel {m.name} makes them reachable "
                  "on this computer")


def _tunnel(m: Any, ports: list[dict], guest: str | None, *, as_json: bool) -> None:
    """vmctl port --tunnel: local forwards through the machine's libvirt host, held open
    until Ctrl-C. A machine on this computer has nothing to tunnel: its ports are listed,
    a note says so, and the command ends (exit 0), so a script may use --tunnel for any
    machine."""
    from vmctl import network, port_tunnel, remote, term
    from vmctl.errors import UsageError

    if guest is not None:
        if not guest.isdigit():
            raise UsageError(f"--guest {guest!r} is not a port number", hint="e.g. --guest 80")
        ports = [p for p in ports if p["guest"] == int(guest)]
        if not ports:
            from vmctl.errors import MachineError

            raise MachineError(f"machine {m.name} forwards no host port to guest port {guest}",
                               hint="add a forwarded_port to the Vagrantfile and run vmctl reload")
    st = m.require_state()
    jump = remote.jump_of(st.uri)
    if jump is None:
        if as_json:
            term.out_json({"name": m.name, "libvirt_host": None, "ports": ports})
        else:
            for p in ports:
                term.out(f"{p['guest']:>6} (guest) => {p['host']} (host {p['host_ip']}, {p['protocol']})")
        term.info(f"==> {m.name}: runs on this computer: its forwarded ports are reachable here as they are; "
                  "nothing to tunnel")
        return
    m.require_running()  # QEMU's forwards exist only while it runs
    tunnels = port_tunnel.plan(ports, lambda port: network.port_is_free("127.0.0.1", port))
    for p, t in zip([p for p in ports if p["protocol"] == "tcp"], tunnels, strict=True):  # plan keeps the order
        p["tunnel"] = {"local_ip": "127.0.0.1", "local_port": t.local_port}
    if not tunnels:
        raise UsageError(f"machine {m.name} forwards no TCP port: UDP ports cannot go through an SSH tunnel")

    def ready() -> None:
        if as_json:
            term.out_json({"name": m.name, "libvirt_host": jump.spec(), "ports": ports,
                           "tunnel_command": port_tunnel.command_line(jump, tunnels)})
        else:
            for p in ports:
                there = f"{p['host_ip']}:{p['host']} of {jump.spec()}"
                if p["tunnel"] is None:
                    term.out(f"{p['guest']:>6} (guest) => {there} ({p['protocol']}: not tunnelled, SSH carries TCP only)")
                    continue
                local = p["tunnel"]["local_port"]
                moved = "" if local == p["host"] else f" (port {p['host']} is taken here)"
                term.out(f"{p['guest']:>6} (guest) => 127.0.0.1:{local} here => {there}{moved}")
        term.info(f"==> {m.name}: tunnels open through {jump.spec()}; press Ctrl-C to close them.")

    port_tunnel.hold(jump, tunnels, ready=ready)
    term.info(f"==> {m.name}: tunnels closed.")


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
        tunnel: bool = typer.Option(False, "--tunnel",
                                    help="For a machine on a remote libvirt host: keep local tunnels to its "
                                    "forwarded TCP ports open until Ctrl-C."),
    ) -> None:
        """Show the forwarded ports of a machine."""
        port(name, as_json=as_json, guest=guest, tunnel=tunnel)
