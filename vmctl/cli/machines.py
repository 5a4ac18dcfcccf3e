"""Commands for machines: up, halt, reload, suspend, resume, destroy, provision, rsync, rsync-auto.
Thin: parse, call the core, print. (status and global-status are in status.py, ssh and
ssh-config in ssh.py, port in port.py, upload in upload.py.)

The flags are Vagrant's, with Vagrant's meaning (docs/from-vagrant.md).
"""

from __future__ import annotations

import sys
import time
from typing import TYPE_CHECKING

import typer

from vmctl.cli.common import emitters, names_argument, parse_provision_with, project

if TYPE_CHECKING:
    from vmctl.machine import Machine

NAMES = names_argument()
PROVISION_WITH = typer.Option(None, "--provision-with", metavar="x,y,z",
                              help="Run only these provisioners (names or types, comma-separated).")
# The provisioner types vmctl runs: --provision-with may name one the Vagrantfile lacks.
PROVISIONER_TYPES = {"shell", "file"}


def _check_provision_with(machines: list[Machine], only: set[str] | None) -> None:
    """Every name of --provision-with is a provisioner's name or a type (as Vagrant checks)."""
    if only is None:
        return
    from vmctl.errors import UsageError

    known = PROVISIONER_TYPES | {p.name for m in machines for p in m.config.provisioners if p.name}
    known |= {p.type for m in machines for p in m.config.provisioners}
    unknown = sorted(only - known)
    if unknown:
        raise UsageError(
            f"--provision-with names {', '.join(unknown)}, which is neither a provisioner of "
            "the Vagrantfile nor a provisioner type",
            hint=f"provisioners and types here: {', '.join(sorted(known))}",
        )


def _parallel(flag: bool | None) -> bool:
    """--parallel/--no-parallel, else not when VAGRANT_NO_PARALLEL is set, else parallel."""
    from vmctl import environment

    if flag is not None:
        return flag
    return not environment.no_parallel()


def up(
    names: list[str] | None = NAMES,
    provision: bool | None = typer.Option(None, "--provision/--no-provision", help="Run provisioners (default: on first up only)."),
    provision_with: str | None = PROVISION_WITH,
    parallel: bool | None = typer.Option(None, "--parallel/--no-parallel", show_default=False,
                                         help="Bring several machines up at once (default; VAGRANT_NO_PARALLEL turns it off)."),
    destroy_on_error: bool = typer.Option(True, "--destroy-on-error/--no-destroy-on-error",
                                          help="Remove a new machine that fails to come up."),
    provider: str | None = typer.Option(None, "--provider", metavar="NAME", help="The provider: libvirt (the only one)."),
    install_provider: bool = typer.Option(True, "--install-provider/--no-install-provider",
                                          help="Accepted for Vagrant: the libvirt provider is built in."),
) -> None:
    """Create and start machines, wait for SSH, replace the insecure key, provision."""
    from vmctl import environment, term
    from vmctl.errors import MachineError
    from vmctl.project import up_machines

    del install_provider  # nothing to install: libvirt is vmctl's own provider
    environment.require_provider(provider)
    only = parse_provision_with(provision_with)
    proj = project("up", *(names or []))
    machines = proj.machines(names or [], autostart_only=not names)
    _check_provision_with(machines, only)
    emit, emit_output = emitters()
    failures = up_machines(proj, machines, provision=True if only else provision,
                           parallel=_parallel(parallel), emit=emit, emit_output=emit_output,
                           only=only, destroy_on_error=destroy_on_error)
    if len(failures) == 1 and len(machines) == 1:
        raise failures[0][1]
    for name, exc in failures:
        # provisioner failures already begin with the machine's name
        term.error(str(exc) if str(exc).startswith(f"{name}: ") else f"{name}: {exc}", exc.hint)
    if failures:
        raise MachineError(f"{len(failures)} of {len(machines)} machines failed to come up")


def halt(
    names: list[str] | None = NAMES,
    force: bool = typer.Option(False, "-f", "--force", help="Pull the plug instead of shutting down."),
) -> None:
    """Shut machines down (gracefully, forced after a timeout)."""
    emit, _ = emitters()
    for m in reversed(project("halt", *(names or [])).machines(names or [])):
        m.halt(force=force, emit=emit)


def reload(
    names: list[str] | None = NAMES,
    provision: bool | None = typer.Option(None, "--provision/--no-provision", help="Run provisioners after the restart."),
    provision_with: str | None = PROVISION_WITH,
    force: bool = typer.Option(False, "-f", "--force", help="Pull the plug instead of shutting down."),
) -> None:
    """Halt and start machines again (picking up Vagrantfile changes)."""
    from vmctl.project import reload_machines

    emit, emit_output = emitters()
    only = parse_provision_with(provision_with)
    proj = project("reload", *(names or []))
    machines = proj.machines(names or [])
    _check_provision_with(machines, only)
    reload_machines(proj, machines, provision=True if only else provision, emit=emit, emit_output=emit_output,
                    force=force, only=only)


def suspend(names: list[str] | None = NAMES) -> None:
    """Save machines' memory to disk and stop them."""
    emit, _ = emitters()
    for m in project("suspend", *(names or [])).machines(names or []):
        m.suspend(emit=emit)


def resume(
    names: list[str] | None = NAMES,
    provision: bool | None = typer.Option(None, "--provision/--no-provision", help="Run provisioners after resuming."),
    provision_with: str | None = PROVISION_WITH,
) -> None:
    """Resume suspended machines."""
    emit, emit_output = emitters()
    only = parse_provision_with(provision_with)
    machines = project("resume", *(names or [])).machines(names or [])
    _check_provision_with(machines, only)
    for m in machines:
        m.resume(emit=emit, emit_output=emit_output)
        if provision or only:
            m.provision(only=only, emit=emit, emit_output=emit_output)


def destroy(
    names: list[str] | None = NAMES,
    force: bool = typer.Option(False, "-f", "--force", help="Do not ask for confirmation."),
    graceful: bool = typer.Option(False, "-g", "--graceful", help="Shut the guest down first instead of pulling the plug."),
    parallel: bool = typer.Option(False, "--parallel/--no-parallel",
                                  help="Destroy several machines at once (implies --force)."),
) -> None:
    """Remove machines: domain, disk, keys and state. Running it twice is fine."""
    from vmctl import term
    from vmctl.errors import MachineError, UsageError
    from vmctl.project import destroy_machines, refresh_hosts

    proj = project("destroy", *(names or []))
    machines = proj.machines(names or [])
    if parallel and not force:
        term.warn("--parallel implies --force: destroying without asking")
        if sys.stdin.isatty():
            time.sleep(5)  # as Vagrant does: a moment to press Ctrl-C
        force = True
    if not force:
        if not sys.stdin.isatty() or term.machine_readable():
            raise UsageError(
                "destroy needs confirmation and there is no terminal to ask",
                hint="pass -f to destroy without asking",
            )
        listed = ", ".join(m.name for m in machines)
        if not typer.confirm(f"Destroy {listed}?", default=False):
            term.info("nothing destroyed")
            return
    emit, _ = emitters()
    failures = destroy_machines(list(reversed(machines)), parallel=parallel and _parallel(None),
                                graceful=graceful, emit=emit)
    refresh_hosts(proj, emit=emit)  # the machines still running forget the destroyed ones
    if len(failures) == 1 and len(machines) == 1:
        raise failures[0][1]
    for name, exc in failures:
        term.error(f"{name}: {exc}", exc.hint)
    if failures:
        raise MachineError(f"{len(failures)} of {len(machines)} machines could not be destroyed")


def provision(
    names: list[str] | None = NAMES,
    provision_with: str | None = PROVISION_WITH,
) -> None:
    """Run the provisioners of running machines."""
    from vmctl.project import provision_machines

    emit, emit_output = emitters()
    only = parse_provision_with(provision_with)
    proj = project("provision", *(names or []))
    machines = proj.machines(names or [])
    _check_provision_with(machines, only)
    provision_machines(proj, machines, only=only, emit=emit, emit_output=emit_output)


def rsync(names: list[str] | None = NAMES) -> None:
    """Copy synced folders into running machines again."""
    emit, _ = emitters()
    for m in project("rsync", *(names or [])).machines(names or []):
        m.rsync(emit=emit)


def rsync_auto(names: list[str] | None = NAMES) -> None:
    """Watch the synced folders' host folders and copy every change into running machines (Ctrl-C stops)."""
    from vmctl.machine.watch import rsync_auto as watch

    emit, _ = emitters()
    watch(project("rsync-auto", *(names or [])).machines(names or []), emit=emit)


def register(app: typer.Typer) -> None:
    app.command("up")(up)
    app.command("halt")(halt)
    app.command("reload")(reload)
    app.command("suspend")(suspend)
    app.command("resume")(resume)
    app.command("destroy")(destroy)
    app.command("provision")(provision)
    app.command("rsync")(rsync)
    app.command("rsync-auto")(rsync_auto)
