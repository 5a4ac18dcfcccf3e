"""Vagrant triggers: `config.trigger.before/after :up do |t| ... end`.

`info` and `warn` are printed; `run_remote` runs in the guest like a shell provisioner.
`run` would run a host command, which a Vagrantfile must not be able to do under vmctl
unless the user says so: it runs only with VMCTL_ALLOW_HOST_TRIGGERS=1, and is otherwise
skipped with a warning.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable
from pathlib import Path

from vmctl.errors import ProvisionError, VmctlError
from vmctl.ssh import Session
from vmctl.vagrantfile.model import Provisioner, Trigger

ALLOW_HOST = "VMCTL_ALLOW_HOST_TRIGGERS"


def select(triggers: tuple[Trigger, ...], when: str, command: str) -> list[Trigger]:
    return [
        t for t in triggers
        if t.when == when
        and (command in t.commands or "all" in t.commands)
        and command not in t.ignore
    ]  # fmt: skip


def run(
    triggers: list[Trigger],
    *,
    machine: str,
    project_root: Path,
    session: Callable[[], Session | None],
    emit: Callable[[str], None],
    emit_output: Callable[[str], None],
) -> None:
    """Run TRIGGERS in order. SESSION opens (once) an SSH session, or None when the
    guest is not running."""
    from vmctl.provision import run_provisioner

    for t in triggers:
        label = t.name or f"{t.when} {'/'.join(t.commands)} trigger"
        if t.info:
            emit(f"==> {machine}: {t.info}")
        if t.warn:
            emit(f"==> {machine}: warning: {t.warn}")
        try:
            if t.run_inline is not None or t.run_path is not None:
                _run_on_host(t, label, machine=machine, project_root=project_root, emit=emit,
                             emit_output=emit_output)
            if t.run_remote_inline is not None or t.run_remote_path is not None:
                s = session()
                if s is None:
                    emit(f"==> {machine}: trigger {label}: skipped run_remote, the machine is not running")
                    continue
                p = Provisioner(
                    type="shell", name=label, inline=t.run_remote_inline, path=t.run_remote_path,
                    args=t.run_remote_args,
                )  # fmt: skip
                run_provisioner(s, p, 0, machine=machine, project_root=project_root, emit=emit_output)
        except VmctlError as exc:
            if t.on_error == "continue":
                emit(f"==> {machine}: trigger {label} failed, continuing: {exc.message}")
                continue
            raise


def _run_on_host(
    t: Trigger, label: str, *, machine: str, project_root: Path,
    emit: Callable[[str], None], emit_output: Callable[[str], None],
) -> None:  # fmt: skip
    if os.environ.get(ALLOW_HOST) != "1":
        emit(
            f"==> {machine}: trigger {label}: not running its host command "
            f"(a Vagrantfile cannot run host commands under vmctl; set {ALLOW_HOST}=1 to allow)"
        )
        return
    argv = ["sh", "-c", t.run_inline] if t.run_inline is not None else [str(t.run_path), *t.run_args]
    proc = subprocess.run(argv, cwd=project_root, stdin=subprocess.DEVNULL, capture_output=True,
                          text=True, check=False)
    for line in (proc.stdout + proc.stderr).splitlines():
        emit_output(f"    {machine}: {line}")
    if proc.returncode not in t.exit_codes:
        raise ProvisionError(f"{machine}: trigger {label} failed with exit status {proc.returncode}")
