"""Configuring a running guest over SSH: cloud-init's first run, hostname, private
networks, synced folders, provisioners and the Vagrantfile's triggers (the commands run in
vmctl/guest.py and vmctl/provision/; this decides what runs when), and what provisioners
ask of the machine (a reboot, a reload, a new login, the project's machines).

Safe to interrupt anywhere: each step is repeated on the next `up` (hostname, networks,
folders) or recorded only once it has finished (the first provisioning run). A reboot or
reload provisioner interrupted half-way leaves a machine that boots normally.
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vmctl import hypervisor
from vmctl.errors import BootTimeoutError, ProvisionError, SSHError
from vmctl.machine.boot import BootMixin
from vmctl.machine.disks import SEED_FILE

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
            guest.set_hostname(session, cfg.hostname, hosts=cfg.allow_hosts_modification)
        if cfg.private_networks:
            emit(f"==> {self.name}: configuring {'networks' if any(n.public for n in cfg.private_networks) else 'private networks'}...")
            got = guest.configure_private_networks(
                session, [(net, net.mac or mac) for net, mac in zip(cfg.private_networks, st.macs, strict=False)])
            if got != st.dhcp_addresses:
                st.dhcp_addresses = got
                self.save()
        self.update_hosts(session)
        self._grow_root(session, emit=emit)
        self.sync_folders(session, emit=emit)

    # --- the project's machines in /etc/hosts --------------------------------------------

    def hosts_entries(self) -> list[tuple[str, list[str]]] | None:
        """What the guest's /etc/hosts block names: every created machine of the project
        (this one too) at each of its private network addresses, by hostname, short
        hostname and machine name. None for a machine alone in its project, or in a project
        whose machines have no private network (no block)."""
        machines = self.peers() if self.peers is not None else [self]
        if len(machines) < 2 or not any(m.config.private_networks for m in machines):
            return None
        entries = []
        for m in machines:
            if m.name != self.name:
                st = m.state
                if st is None or st.phase != "created":
                    continue
            hostname = m.config.hostname
            names = [hostname, hostname.split(".")[0]] if hostname else []
            names.append(m.name)
            # a DHCP address is not known here: only static addresses are named
            entries += [(net.ip, names) for net in m.config.private_networks if net.ip]
        return entries

    def update_hosts(self, session: Session) -> None:
        """Write the block of the project's machines into the guest's /etc/hosts (unless
        config.vm.allow_hosts_modification = false, or the machine is alone)."""
        from vmctl import guest

        if not self.config.allow_hosts_modification:
            return
        entries = self.hosts_entries()
        if entries is not None:
            guest.write_hosts_block(session, entries)

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

    def sync_folders(self, session: Session, *, emit: Emit, two_way: bool = True) -> None:
        """Copy the rsync folders into the guest; with TWO_WAY, mount the two-way ones
        (virtiofs, 9p) too, which the domain shares (hardware.shared_folders)."""
        from vmctl import guest

        folders = [f for f in self.config.synced_folders if not f.disabled and not f.two_way]
        if folders:
            endpoint = self.endpoint()
            key = self.login_key()
            for f in folders:
                emit(f"==> {self.name}: rsync: {f.host} => {f.guest}")
                guest.rsync_folder(session, endpoint, key, f, self.project_root)
        if two_way:
            self.mount_folders(session, emit=emit)

    def mount_folders(self, session: Session, *, emit: Emit) -> None:
        """Mount the two-way folders in the guest (after every boot; mounted ones are left)."""
        from vmctl import guest

        st = self.require_state()
        for f, kind, tag in self.shared_folders():
            emit(f"==> {self.name}: mounting {f.host} => {f.guest} ({kind}, two-way)")
            guest.mount_shared_folder(session, f, kind, tag, st.ssh_user)

    def shared_folders(self) -> list[tuple[Any, str, str]]:
        """The two-way folders as the domain shares them: (folder, virtiofs|9p, tag)."""
        if not any(f.two_way and not f.disabled for f in self.config.synced_folders):
            return []  # without importing hardware: snapshot save asks on its timed path
        from vmctl.machine import hardware

        st = self.require_state()
        host = hardware.Host(accel="tcg", uri=st.uri, embedded=hypervisor.is_embedded(st.uri), is_root=os.geteuid() == 0)
        return hardware.shared_folders(self.config, host)

    def _provision(self, session: Session, *, emit: Emit, emit_output: Emit, forced: bool, only: set[str] | None, first_run: bool = False, skip: bool = False) -> None:
        """Run the chosen provisioners on SESSION. One that reboots or reloads the guest
        leaves a new session (closed here); ones that run once for the whole project
        (ansible with limit "all") are left in self.deferred for the project."""
        from vmctl import provision as prov

        st = self.require_state()
        if skip:
            return
        chosen = prov.select(self.config.provisioners, first_run=first_run, forced=forced, only=only)
        ctx = prov.Context(
            machine=self.name, project_root=self.project_root, session=session, emit=emit_output, say=emit,
            reboot=lambda s: self._reboot_guest(s, emit=emit), reload=lambda s: self._reload_guest(s, emit=emit),
            reconnect=self._reconnect, inventory=self.inventory_hosts, boot_timeout=self.config.boot_timeout,
        )  # fmt: skip
        try:
            for index, p in chosen:
                if prov.project_wide(p):
                    self.deferred.append((index, p))
                    continue
                emit(f"==> {self.name}: running provisioner: {prov.label(p, index)}...")
                ctx.session = prov.run_provisioner(ctx.session, p, index, machine=self.name,
                                                   project_root=self.project_root, emit=emit_output, context=ctx)
        finally:
            if ctx.session is not session:
                ctx.session.close()
        if (first_run or forced) and only is None and not st.provisioned:
            st.provisioned = True
            self.save()

    # --- what provisioners ask of the machine --------------------------------------------

    def _reboot_guest(self, session: Session, *, emit: Emit) -> Session:
        """Reboot the guest (shell provisioner reboot: true) and log in once it is back: a
        login counts only when the boot id has changed."""
        from vmctl import guest, ssh

        old = guest.boot_id(session)
        guest.request_reboot(session)
        session.close()
        deadline = time.monotonic() + self.config.boot_timeout
        while True:
            time.sleep(1.0)
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise BootTimeoutError(f"machine {self.name} did not come back within {self.config.boot_timeout} s of its reboot")
            fresh = ssh.wait_for_ssh(self.endpoint(), timeout=remaining, alive=self._qemu_running)
            try:
                if guest.boot_id(fresh) != old:
                    self._wait_for_cloud_init(fresh, emit=emit)
                    self.mount_folders(fresh, emit=emit)  # a new boot: the two-way folders again
                    return fresh
            except SSHError:
                pass  # it went down while we asked
            fresh.close()

    def _reload_guest(self, session: Session, *, emit: Emit) -> Session:
        """The reload provisioner: halt the machine, boot it again, configure the guest (as
        `vmctl reload` does, without provisioning) and go on."""
        session.close()
        self._halt(force=False, emit=emit, timeout=60.0)
        st = self.require_state()
        with hypervisor.connect(st.uri) as c:
            self._start_with_port_retry(c, st, emit)
        fresh = self._wait_ssh(st, cancel=None)
        self._wait_for_cloud_init(fresh, emit=emit)
        self._configure_guest(fresh, emit=emit)
        return fresh

    def _reconnect(self, session: Session) -> Session:
        session.close()
        return self.session(timeout=60.0)

    def inventory_hosts(self) -> list[Any]:
        """The project's created machines as the ansible inventory lists them (this one
        alone when the project did not say which are its machines)."""
        machines = self.peers() if self.peers is not None else [self]
        hosts = []
        for m in machines:
            host = m.inventory_host()
            if host is not None:
                hosts.append(host)
        return hosts

    def inventory_host(self) -> Any:
        """This machine for the ansible inventory, or None when it is not created."""
        from vmctl.provision.ansible import InventoryHost
        from vmctl.ssh import read_pin

        st = self.state
        if st is None or st.phase != "created":
            return None
        endpoint = self.endpoint()
        return InventoryHost(name=self.name, port=st.ssh_port, user=st.ssh_user, key=self.login_key(),
                             known_hosts=self.known_hosts, alias=endpoint.alias,
                             pin=read_pin(self.known_hosts, endpoint.alias),
                             proxy_command=endpoint.jump.proxy_command() if endpoint.jump is not None else None)

    # --- cloud-init -------------------------------------------------------------------

    def _has_seed(self) -> bool:
        st = self.state
        return st is not None and (Path(st.disk).parent / SEED_FILE).is_file()

    def _wait_for_cloud_init(self, session: Session, *, emit: Emit) -> None:
        """When the machine has a cloud-init seed: wait until cloud-init is done, and fail
        with its report when it failed."""
        from vmctl import guest, term

        if not self._has_seed():
            return
        timeout = max(float(self.config.boot_timeout), 900.0)
        with term.spinner(f"==> {self.name}: waiting for cloud-init to finish..."):
            present, status, report = guest.wait_for_cloud_init(session, timeout=timeout)
        if not present:
            emit(f"==> {self.name}: warning: the box has no cloud-init: config.vm.cloud_init was not applied")
            return
        if status == 0:
            return
        if status == 2:  # recoverable errors (cloud-init 23.4 and later): it finished
            emit(f"==> {self.name}: warning: cloud-init finished with recoverable errors:\n{report}")
            return
        raise ProvisionError(
            f"{self.name}: cloud-init failed (cloud-init status exit status {status})"
            + (f":\n{report}" if report else ""),
            hint=f"see /var/log/cloud-init.log in the guest (vmctl ssh {self.name}); fix the cloud_init "
            "data, then vmctl destroy and up (cloud-init applies it on the first boot only)",
        )

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
            self.sync_folders(s, emit=emit, two_way=False)
