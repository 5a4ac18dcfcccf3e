"""Provisioners, run in order, their output streamed line by line with the machine's name
in front.

    shell.py          shell (with reboot: and reset:) and file: in the guest
    ansible.py        ansible: ansible-playbook on this computer, against every machine of
                      the project through one generated inventory
    ansible_local.py  ansible_local: ansible-playbook in the guest (installed if missing)
    docker.py         docker: images pulled and built, containers run, in the guest
    (reload)          the machine is halted and booted again (the machine layer does it)

A provisioner that must reboot the guest, or log in again, asks the machine layer through
the Context it is given (reboot, reload, reconnect); afterwards Context.session is the new
session. A failure is a ProvisionError that names the machine, the provisioner and the exit
status.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from vmctl.errors import ProvisionError

if TYPE_CHECKING:
    from vmctl.provision.ansible import InventoryHost
    from vmctl.ssh import Session
    from vmctl.vagrantfile.model import Provisioner

Emit = Callable[[str], None]


def label(p: Provisioner, index: int) -> str:
    return p.name or f"{p.type} #{index + 1}"


def select(
    provisioners: tuple[Provisioner, ...], *, first_run: bool, forced: bool, only: set[str] | None
) -> list[tuple[int, Provisioner]]:
    """Which provisioners run, as Vagrant decides: on the first `up` (or when forced)
    "once" and "always" ones, on later boots only "always" ones; --provision-with names
    (or types) select exactly those, "never" ones included."""
    chosen = []
    for i, p in enumerate(provisioners):
        if only is not None:
            if (p.name and p.name in only) or p.type in only:
                chosen.append((i, p))
            continue
        if p.run == "never":
            continue
        if p.run == "always" or first_run or forced:
            chosen.append((i, p))
    return chosen


def project_wide(p: Provisioner) -> bool:
    """Whether P runs once for the whole project (an ansible provisioner with limit "all"),
    after every machine is up, rather than once per machine."""
    return p.type == "ansible" and p.ansible is not None and p.ansible.project_wide


class LineWriter:
    """Turns chunks of output into prefixed lines."""

    def __init__(self, emit: Emit, prefix: str) -> None:
        self.emit = emit
        self.prefix = prefix
        self.buf = b""

    def __call__(self, data: bytes) -> None:
        self.buf += data
        *lines, self.buf = self.buf.split(b"\n")
        for line in lines:
            self.emit(self.prefix + line.decode(errors="replace").rstrip("\r"))

    def flush(self) -> None:
        if self.buf:
            self.emit(self.prefix + self.buf.decode(errors="replace"))
            self.buf = b""


@dataclass
class Context:
    """What a provisioner may use of its machine. SESSION is replaced when the guest
    reboots or is logged in to again."""

    machine: str
    project_root: Path
    session: Session
    emit: Emit  # the guest's (or ansible's) output, already prefixed
    say: Emit  # vmctl's own progress lines
    reboot: Callable[[Session], Session] | None = None  # reboot the guest; the new session
    reload: Callable[[Session], Session] | None = None  # halt and boot again; the new session
    reconnect: Callable[[Session], Session] | None = None  # log in again
    inventory: Callable[[], list[InventoryHost]] | None = None  # the project's machines
    boot_timeout: float = 300.0


def run_provisioner(
    s: Session,
    p: Provisioner,
    index: int,
    *,
    machine: str,
    project_root: Path,
    emit: Emit,
    context: Context | None = None,
) -> Session:
    """Run provisioner P (number INDEX) on the machine; return the session to go on with
    (another one after a reboot)."""
    from vmctl.provision import shell

    ctx = context or Context(machine=machine, project_root=project_root, session=s, emit=emit, say=emit)
    ctx.session = s
    name = label(p, index)
    if p.type == "shell":
        shell.run_shell(ctx, p, name)
    elif p.type == "file":
        shell.run_file(ctx, p, name)
    elif p.type == "reload":
        if ctx.reload is None:
            raise ProvisionError(f"{machine}: provisioner {name}: the machine cannot be reloaded from here")
        ctx.say(f"==> {machine}: reloading the machine...")
        ctx.session = ctx.reload(ctx.session)
    elif p.type == "ansible":
        from vmctl.provision import ansible

        ansible.run_for_machine(ctx, p, name)
    elif p.type == "ansible_local":
        from vmctl.provision import ansible_local

        ansible_local.run(ctx, p, name)
    elif p.type == "docker":
        from vmctl.provision import docker

        docker.run(ctx, p, name)
    else:  # the evaluator refuses other types; keep the machine layer honest anyway
        raise ProvisionError(f"provisioner type {p.type!r} is not supported")
    return ctx.session


def failure(machine: str, p: Provisioner, name: str, status: int, what: str = "") -> ProvisionError:
    """The error of provisioner P (shown as NAME) whose command ended with exit STATUS."""
    return ProvisionError(
        f"{machine}: provisioner {name} failed with exit status {status}" + (f" ({what})" if what else ""),
        hint=f"fix it, then run: vmctl provision {machine} --provision-with {p.name or p.type}",
    )
