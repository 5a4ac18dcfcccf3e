"""Commands: vmctl ssh, vmctl ssh-config. Thin: parse, ask the core, exec or print.

Scripts call these in loops, so this module imports only the standard library at its top
(vmctl/cli/fast.py calls its functions without typer); typer only in register().
"""

# No `from __future__ import annotations` here: the ssh command's `ctx: typer.Context`
# must be evaluated where typer is imported (inside register), not looked up later in this
# module, which must not import typer at its top.
import os
import sys
from typing import Any


def ssh(name: str | None, *, command: str | None, plain: bool, tty: bool | None,
        extra: list[str]) -> None:
    """Log in to a machine with OpenSSH, or run COMMAND there and exit with its status.

    TTY (-t/--tty, --no-tty): whether to ask for a terminal for COMMAND. vmctl asks for
    none unless told (stdout and stderr stay apart, as scripts need); Vagrant asks by
    default. Without COMMAND, a terminal is asked for when stdin is one. EXTRA: the words
    after `--`, given to ssh after the host (options, then a command), as Vagrant does."""
    from vmctl import hypervisor, term
    from vmctl import ssh as sshmod
    from vmctl.cli.common import project
    from vmctl.errors import MachineError
    from vmctl.run import require_tool

    m = project("ssh", *([name] if name else [])).one_machine(name)
    if term.machine_readable():
        from vmctl.cli import machine_readable

        machine_readable.provider(m.name)
    st = m.require_state()
    # For the embedded driver, whether QEMU runs is a cheap check (no libvirt call):
    # say so plainly instead of letting ssh report a refused connection.
    if hypervisor.qemu_alive(st.uri, st.domain) is False:
        raise MachineError(
            f"machine {m.name} is not running",
            hint=f"start it with vmctl up {m.name}",
        )
    binary = require_tool("ssh", "log in to the machine")
    argv = [binary, *sshmod.openssh_options(m.endpoint(), m.login_key(), plain=plain)]
    if command is None:
        argv += ["-t"] if sys.stdin.isatty() and tty is not False else []
    else:
        argv += ["-t"] if tty else ["-T"] if tty is False else []
    # EXTRA after the host, as Vagrant puts them: ssh reads options there too, and what
    # follows them is the command (`vagrant ssh -- -t 'touch a.txt'` runs touch).
    argv += ["127.0.0.1", *extra, *([command] if command is not None else [])]
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(binary, argv)


def ssh_config(names: list[str], *, host: str | None) -> None:
    """Print an OpenSSH config for the machines (ssh -F FILE NAME logs in)."""
    from vmctl import term
    from vmctl.cli.common import project
    from vmctl.ssh import config_block

    mr = None
    if term.machine_readable():
        from vmctl.cli import machine_readable as mr
    machines = project("ssh-config", *names).machines(names)
    blocks = []
    for m in machines:
        if mr is not None:
            mr.provider(m.name)
        if m.state is None:
            continue
        config = config_block(host or m.name, m.endpoint(), m.login_key())
        if mr is not None:
            # Vagrant's ssh-config writes the `ssh-config` line and then the config itself,
            # followed by an empty line, even in machine-readable mode.
            mr.emit("ssh-config", config + "\n", target=m.name)
            term.raw(config + "\n")
        blocks.append(config)
    if not blocks:
        from vmctl.errors import MachineError

        raise MachineError("no machine of this project is created", hint="create one with vmctl up")
    if mr is None:
        term.out("\n\n".join(blocks))


def register(app: Any) -> None:
    import typer

    from vmctl.cli.common import name_argument, names_argument

    @app.command("ssh")
    def ssh_command(
        ctx: typer.Context,
        name: str | None = name_argument(),
        command: str | None = typer.Option(None, "-c", "--command", help="Run CMD and exit with its status."),
        plain: bool = typer.Option(False, "-p", "--plain", help="Leave authentication to ssh (no user, no key)."),
        tty: bool = typer.Option(None, "--tty/--no-tty", "-t", show_default=False,
                                 help="Ask for a terminal for -c CMD (default: none; a login gets one on a terminal)."),
    ) -> None:
        """Log in to a machine with OpenSSH (or run one command with -c).

        Arguments after -- go to ssh, e.g. vmctl ssh -- -L 8080:localhost:80.
        """
        extra = list((ctx.obj or {}).get("ssh_extra", []))
        ssh(name, command=command, plain=plain, tty=tty, extra=extra)

    @app.command("ssh-config")
    def ssh_config_command(
        names: list[str] | None = names_argument(),
        host: str | None = typer.Option(None, "--host", help="Name the Host entry."),
    ) -> None:
        """Print an OpenSSH config for the machines (ssh -F FILE NAME logs in)."""
        ssh_config(names or [], host=host)
