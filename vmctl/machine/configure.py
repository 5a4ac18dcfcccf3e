"""Configuring a running guest over SSH: hostname, private networks, synced folders,
provisioners and the Vagrantfile's triggers (the commands run in vmctl/guest.py and
vmctl/provision.py; this decides what runs when).

Safe to interrupt anywhere: each step is repeated on the next `up` (hostname, networks,
folders) or recorded only once it has finished (the first provisioning run).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from vmctl.machine.boot import BootMixin

if TYPE_CHECKING:
    from vmctl.machine.lifecycle import Emit
    from vmctl.ssh import Session

log = logging.getLogger("vmctl.machine")

class GuestMixin(BootMixin):
    """The guest-configuration half of a Machine (see lifecycle.Machine)."""

    def _configure_guest(self, session: Session, *, emit: Emit) -> None:
        from vmctl import guest

        cfg = self.config
        st = self.require_state()
        if cfg.hostname:
            guest.set_hostname(session, cfg.hostname)
        if cfg.private_networks:
            emit(f"==> {self.name}: configuring private networks...")
            guest.configure_private_networks(session, list(zip(cfg.private_networks, st.macs, strict=False)))
        self._grow_root(session, emit=emit)
        self.sync_folders(session, emit=emit)

    def _grow_root(self, session: Session, *, emit: Emit) -> None:
        """When the Vagrantfile grew the main disk (config.vm.disk primary size:, or
        libvirt.machine_virtual_size), grow the guest's root file system to fill it, once
        per size: "the disk grew but the file system did not" is what people hit with
        vagrant-libvirt, which leaves that to them."""
        from vmctl import guest

        cfg = self.config
        st = self.require_state()
        asked = cfg.libvirt.machine_virtual_size or any(d.primary and d.size for d in cfg.disks)
        box = next((d for d in st.disks if d.role == "box"), None)
        if not asked or box is None or not box.size or st.root_grown == box.size:
            return
        emit(f"==> {self.name}: growing the root file system to fill its {box.size / 1024**3:.1f} GiB disk...")
        done, detail = guest.grow_root_filesystem(session)
        if done:
            log.debug("%s: root file system now %s bytes", self.name, detail)
        else:
            emit(f"==> {self.name}: warning: the disk is {box.size / 1024**3:.1f} GiB, but its root file system "
                 f"could not be grown ({detail}): grow it in the guest")
        st.root_grown = box.size
        self.save()

    def sync_folders(self, session: Session, *, emit: Emit) -> None:
        from vmctl import guest

        folders = [f for f in self.config.synced_folders if not f.disabled]
        if not folders:
            return
        endpoint = self.endpoint()
        key = self.login_key()
        for f in folders:
            emit(f"==> {self.name}: rsync: {f.host} => {f.guest}")
            guest.rsync_folder(session, endpoint, key, f, self.project_root)

    def _provision(self, session: Session, *, emit: Emit, emit_output: Emit, forced: bool, only: set[str] | None, first_run: bool = False, skip: bool = False) -> None:
        from vmctl import provision as prov

        st = self.require_state()
        if skip:
            return
        chosen = prov.select(self.config.provisioners, first_run=first_run, forced=forced, only=only)
        for index, p in chosen:
            emit(f"==> {self.name}: running provisioner: {prov.label(p, index)}...")
            prov.run_provisioner(session, p, index, machine=self.name, project_root=self.project_root, emit=emit_output)
        if (first_run or forced) and only is None and not st.provisioned:
            st.provisioned = True
            self.save()

    def provision(self, *, only: set[str] | None, emit: Emit, emit_output: Emit) -> None:
        with self.locked():
            self.require_running()
            self._triggers("before", "provision", emit, emit_output)
            with self._ssh_session() as s:
                self._provision(s, emit=emit, emit_output=emit_output, forced=True, only=only)
            self._triggers("after", "provision", emit, emit_output)

    def _triggers(self, when: str, command: str, emit: Emit, emit_output: Emit) -> None:
        """Run the Vagrantfile's triggers for WHEN (before/after) COMMAND."""
        from vmctl import triggers

        chosen = triggers.select(self.config.triggers, when, command)
        if not chosen:
            return
        opened: list[Session | None] = []

        def session() -> Session | None:
            if not opened:
                running = self.state is not None and self._qemu_running()
                opened.append(self.session() if running else None)
            return opened[0]

        try:
            triggers.run(chosen, machine=self.name, project_root=self.project_root,
                         session=session, emit=emit, emit_output=emit_output)
        finally:
            if opened and opened[0] is not None:
                opened[0].close()

    def rsync(self, *, emit: Emit) -> None:
        self.require_running()
        with self._ssh_session() as s:
            self.sync_folders(s, emit=emit)
