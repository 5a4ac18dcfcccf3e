"""A project: its Vagrantfile, its machines, and the commands that act on several at once."""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING

from vmctl import hypervisor, paths
from vmctl.errors import MachineError, VmctlError
from vmctl.machine import Emit, Machine

if TYPE_CHECKING:
    from vmctl.vagrantfile.model import MachineConfig, ProjectConfig, Provisioner


class Project:
    def __init__(self, vagrantfile: Path, words: Sequence[str] = ()) -> None:
        self.vagrantfile = vagrantfile
        self.root = vagrantfile.parent
        self.words = tuple(words)

    @classmethod
    def find(cls, words: Sequence[str] = ()) -> Project:
        return cls(paths.require_vagrantfile(), words)

    def load(self) -> ProjectConfig:
        from vmctl.vagrantfile import has_plugin_setting, load_project
        from vmctl.vagrantfile.recording import StoreLookup

        def find(name: str, constraint: str | None) -> Path | None:
            from vmctl.boxes.installed import find_box_vagrantfile

            return find_box_vagrantfile(name, constraint)

        return load_project(
            self.vagrantfile, box_vagrantfile=StoreLookup(str(paths.boxes_dir()), find), argv=self.words,
            has_plugin=has_plugin_setting(),
        )

    @cached_property
    def config(self) -> ProjectConfig:
        from vmctl import term

        cfg = self.load()
        # What the Vagrantfile printed (puts, warn), as Vagrant shows it on every command;
        # what vmctl ignores in it, on the commands that act on that.
        for message in cfg.messages:
            term.info(message)
        if self.words[:1] and self.words[0] in ("up", "reload", "provision"):
            for warning in cfg.warnings:
                term.warn(warning)
        return cfg

    def reload_machine_config(self, name: str) -> Callable[[], MachineConfig]:
        def reload() -> MachineConfig:
            fresh = self.load()
            m = fresh.machine(name)
            assert m is not None
            return m

        return reload

    def machines(self, names: Sequence[str] = (), *, autostart_only: bool = False) -> list[Machine]:
        """The named machines, or all of them; an unknown name is an error listing the known."""
        cfg = self.config
        if not names:
            chosen = [m for m in cfg.machines if m.autostart or not autostart_only]
            return [self._machine(m) for m in chosen]
        result = []
        for name in names:
            m = cfg.machine(name)
            if m is None:
                known = ", ".join(x.name for x in cfg.machines)
                raise MachineError(
                    f"no machine named {name!r} in {self.vagrantfile}",
                    hint=f"machines defined there: {known}",
                )
            result.append(self._machine(m))
        return result

    def _machine(self, cfg: MachineConfig) -> Machine:
        m = Machine(self.root, cfg)
        m.peers = self.all_machines
        return m

    def all_machines(self) -> list[Machine]:
        """Every machine of the project (what the ansible inventory lists)."""
        return [Machine(self.root, m) for m in self.config.machines]

    def one_machine(self, name: str | None) -> Machine:
        """The named machine, else the primary or only one (what `ssh` acts on)."""
        if name:
            return self.machines([name])[0]
        cfg = self.config
        if len(cfg.machines) > 1 and not any(m.primary for m in cfg.machines):
            names = ", ".join(m.name for m in cfg.machines)
            raise MachineError(
                "this project defines several machines and none is primary",
                hint=f"name one: {names}",
            )
        return self._machine(cfg.primary())


def up_machines(
    project: Project,
    machines: list[Machine],
    *,
    provision: bool | None,
    parallel: bool,
    emit: Emit,
    emit_output: Emit,
    only: set[str] | None = None,
    destroy_on_error: bool = True,
) -> list[tuple[str, VmctlError]]:
    """Bring MACHINES up, in parallel by default; return the failures (name, error).
    ONLY: --provision-with; DESTROY_ON_ERROR: see Machine.up."""
    from vmctl import placement

    placed = placement.place(machines, emit)  # VMCTL_HOSTS: where the new machines go
    for m in machines:
        m.placement = placed
    cancel = threading.Event()
    failures: list[tuple[str, VmctlError]] = []

    def one(m: Machine) -> None:
        try:
            m.up(
                provision=provision, emit=emit, emit_output=emit_output, cancel=cancel,
                reload_config=project.reload_machine_config(m.name), only=only,
                destroy_on_error=destroy_on_error,
            )  # fmt: skip
        except VmctlError as exc:
            failures.append((m.name, exc))

    if not parallel or len(machines) == 1:
        for m in machines:
            one(m)
    else:
        from concurrent.futures import (
            ThreadPoolExecutor,  # not at the top: status and ssh start faster
        )

        with ThreadPoolExecutor(max_workers=min(8, len(machines))) as pool:
            futures = [pool.submit(one, m) for m in machines]
            try:
                for f in futures:
                    f.result()
            except KeyboardInterrupt:
                cancel.set()
                for f in futures:
                    f.result()
                raise
    failures += run_deferred(project, machines, emit=emit, emit_output=emit_output, failed=len(failures))
    refresh_hosts(project, emit=emit)
    return failures


def refresh_hosts(project: Project, *, emit: Emit) -> None:
    """Rewrite the /etc/hosts block of every running machine of a multi-machine project,
    after machines came up, were reloaded or destroyed: each names the project's created
    machines (a destroyed one drops out). A machine that cannot be reached is named and
    skipped; halted ones get theirs on their next up."""
    cfg = project.config
    if len(cfg.machines) < 2 or not any(m.private_networks for m in cfg.machines):
        return
    for m in (project._machine(c) for c in cfg.machines):
        st = m.state
        if not m.config.allow_hosts_modification or st is None or st.phase != "created" or not m._qemu_running():
            continue
        if m.status() != hypervisor.RUNNING:  # paused (suspend_mode "pause"): no one to answer
            continue
        try:
            with m._ssh_session() as s:
                m.update_hosts(s)
        except VmctlError as exc:
            emit(f"==> {m.name}: warning: /etc/hosts not updated: {exc.message}")


def destroy_machines(
    machines: list[Machine], *, parallel: bool, graceful: bool, emit: Emit,
) -> list[tuple[str, VmctlError]]:
    """Destroy MACHINES, one after another or (PARALLEL) at once; return the failures."""
    failures: list[tuple[str, VmctlError]] = []

    def one(m: Machine) -> None:
        try:
            if not m.destroy(emit=emit, graceful=graceful):
                emit(f"==> {m.name}: not created.")
        except VmctlError as exc:
            failures.append((m.name, exc))

    if not parallel or len(machines) < 2:
        for m in machines:
            one(m)
        return failures
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=min(8, len(machines))) as pool:
        for f in [pool.submit(one, m) for m in machines]:
            f.result()
    return failures


def provision_machines(
    project: Project, machines: list[Machine], *, only: set[str] | None, emit: Emit, emit_output: Emit,
) -> None:
    """`vmctl provision`: each machine's provisioners, then the project-wide ones once."""
    for m in machines:
        m.provision(only=only, emit=emit, emit_output=emit_output)
    failures = run_deferred(project, machines, emit=emit, emit_output=emit_output)
    if failures:
        raise failures[0][1]


def reload_machines(
    project: Project, machines: list[Machine], *, provision: bool | None, emit: Emit, emit_output: Emit,
    force: bool = False, only: set[str] | None = None,
) -> None:
    """`vmctl reload`: each machine halted and booted again, then the project-wide
    provisioners once (when provisioning)."""
    for m in machines:
        m.reload(provision=provision, emit=emit, emit_output=emit_output, force=force, only=only)
    refresh_hosts(project, emit=emit)
    failures = run_deferred(project, machines, emit=emit, emit_output=emit_output)
    if failures:
        raise failures[0][1]


def run_deferred(
    project: Project, machines: list[Machine], *, emit: Emit, emit_output: Emit, failed: int = 0,
) -> list[tuple[str, VmctlError]]:
    """The provisioners that run once for the whole project (ansible with limit "all"),
    which the machines left for now: each once, in order, against every created machine
    of the project that runs. Skipped, saying so, when machines failed to come up."""
    from vmctl import provision as prov
    from vmctl.provision import ansible

    pending: list[tuple[str, Provisioner]] = []
    for m in machines:
        for index, p in m.deferred:
            if not any(p == q for _, q in pending):
                pending.append((prov.label(p, index), p))
        m.deferred = []
    if not pending:
        return []
    if failed:
        names = ", ".join(name for name, _ in pending)
        emit(f"==> not running {names} (once for every machine): {failed} machine(s) did not come up")
        return []
    hosts = []
    for m in project.all_machines():
        st = m.state
        if st is None or st.phase != "created" or m._qemu_running() is False:
            continue
        host = m.inventory_host()
        if host is not None:
            hosts.append(host)
    for name, p in pending:
        try:
            ansible.run_project_wide(p, name, hosts, project_root=project.root, say=emit, emit=emit_output)
        except VmctlError as exc:
            return [(name, exc)]
    return []
