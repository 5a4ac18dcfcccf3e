"""A machine's lifecycle: up, halt, reload, suspend, resume, destroy, and what status
reports, tying together its state (state.py), its boot (boot.py) and the guest's
configuration (configure.py).

Crash safety: state.json and the index entry are written before the domain is defined,
so a killed `up` leaves enough behind for the next `up` or `destroy` to finish the job;
every destroy step is idempotent. A machine is locked (non-blocking) while a command
changes it, so a second command says "busy" instead of racing.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable
from contextlib import suppress
from pathlib import Path
from typing import TYPE_CHECKING, Any

# status, ssh, ssh-config and port run through this module on every call: what only up,
# destroy and the others need (the domain XML, the hardware plan, snapshots, networking)
# is imported in the methods that use it.
from vmctl import hypervisor, paths
from vmctl.errors import BootTimeoutError, HypervisorError, MachineError, SSHError, VmctlError
from vmctl.machine import disks
from vmctl.machine.configure import GuestMixin
from vmctl.machine.disks import CONSOLE_FILE
from vmctl.machine.state import (
    DISK_FILE,
    DOMAIN_NAME_RE,
    MACHINE_ID_RE,
    UUID_RE,
    MachineState,
    Timer,
    _slug,
)
from vmctl.state import index_lock, load_index, save_index

if TYPE_CHECKING:
    from vmctl.machine import hardware
    from vmctl.vagrantfile.model import MachineConfig

log = logging.getLogger("vmctl.machine")

Emit = Callable[[str], None]


class Machine(GuestMixin):
    """One machine of a project: its settings (from the Vagrantfile) and its state."""

    def __init__(self, project_root: Path, config: MachineConfig) -> None:
        self.project_root = project_root
        self.config = config
        self.name = config.name
        self.dir = paths.machine_state_dir(project_root, self.name)
        self.state_file = self.dir / "state.json"
        self.key_file = self.dir / "private_key"
        self.known_hosts = self.dir / "known_hosts"
        self._state: MachineState | None = None
        self._state_loaded = False
        self.foreign_state = False
        # The project's machines (for the ansible inventory), set by the project; and the
        # provisioners that run once for the whole project, which _provision leaves to it.
        self.peers: Callable[[], list[Machine]] | None = None
        # Where this `up` placed the project's new machines that name no host (name -> URI,
        # vmctl/placement.py: VMCTL_HOSTS), set by the project.
        self.placement: dict[str, str] = {}
        self.deferred: list[tuple[int, Any]] = []


    def up(
        self,
        *,
        provision: bool | None,
        emit: Emit,
        emit_output: Emit,
        cancel: threading.Event | None = None,
        reload_config: Callable[[], MachineConfig] | None = None,
        only: set[str] | None = None,
        destroy_on_error: bool = True,
    ) -> None:
        """ONLY: run exactly these provisioners (--provision-with). DESTROY_ON_ERROR: a new
        machine that does not come up is removed again (False keeps it to look at)."""
        with self.locked():
            self._triggers("before", "up", emit, emit_output)
            timer = Timer(self.name)
            st = self.state
            if st is not None and st.phase == "created":
                self._up_existing(st, provision=provision, emit=emit, emit_output=emit_output, timer=timer, cancel=cancel, only=only)
            else:
                self._up_new(provision=provision, emit=emit, emit_output=emit_output, timer=timer, cancel=cancel, reload_config=reload_config, only=only, destroy_on_error=destroy_on_error)
            timer.total()
            self._triggers("after", "up", emit, emit_output)

    def _up_existing(self, st: MachineState, *, provision: bool | None, emit: Emit, emit_output: Emit, timer: Timer, cancel: threading.Event | None, only: set[str] | None = None) -> None:
        with hypervisor.connect(st.uri) as c:
            state = self.status(c)
            if state in (hypervisor.POWEROFF, hypervisor.CRASHED, hypervisor.SAVED, hypervisor.PAUSED):
                emit(f"==> {self.name}: {'resuming' if state in (hypervisor.SAVED, hypervisor.PAUSED) else 'booting'} the machine...")
                if state in (hypervisor.SAVED, hypervisor.PAUSED):
                    c.resume(st.domain)
                else:
                    # A stopped machine starts as the Vagrantfile says now: its disks are
                    # planned again and its domain defined again.
                    host = self._host(st.uri)
                    self._check_host(host, emit)
                    self._reconcile_disks(st, host, emit)
                    c.define(self._render(st, host, emit))
                    c.set_autostart(st.domain, bool(self.config.libvirt.autostart))
                    self._start_with_port_retry(c, st, emit)
        if state == hypervisor.RUNNING:
            emit(f"==> {self.name}: machine already running.")
            if self._needs_key(st):  # an earlier up was interrupted before the key swap
                with self._ssh_session() as s:
                    self._insert_key(s, st, emit).close()
            if provision:
                with self._ssh_session() as s:
                    self._provision(s, emit=emit, emit_output=emit_output, forced=True, only=only)
            return
        if state == hypervisor.NOT_CREATED:
            # The domain vanished behind our back (someone ran virsh undefine): start over.
            emit(f"==> {self.name}: its domain is gone; creating the machine again.")
            self._cleanup()
            self._state = None
            self._up_new(provision=provision, emit=emit, emit_output=emit_output, timer=timer, cancel=cancel, reload_config=None, only=only)
            return
        timer.mark("start")
        session = self._wait_ssh(st, cancel=cancel)
        timer.mark("wait for SSH")
        try:
            if self._needs_key(st):
                session = self._insert_key(session, st, emit)
            if state not in (hypervisor.SAVED, hypervisor.PAUSED):
                self._wait_for_cloud_init(session, emit=emit)
                self._configure_guest(session, emit=emit)
            else:
                self._set_clock(session)  # its memory was saved a while ago
            self._provision(session, emit=emit, emit_output=emit_output, forced=bool(provision), only=only, first_run=not st.provisioned, skip=provision is False)
            timer.mark("provision")
        finally:
            session.close()

    def _reconcile_disks(self, st: MachineState, host: hardware.Host, emit: Emit) -> None:
        """Plan the disks again from the Vagrantfile, record the list, then make what is new
        and grow what grew (disks.py)."""
        box_disks = [d for d in st.disks if d.role == "box"]
        if not box_disks:
            return  # a machine made before vmctl kept its list of disks: it has just the one
        images = [(Path(d.source or st.disk), d.source_format or "qcow2", d.size or 0) for d in box_disks]
        first, *more = [(image, fmt, _virtual_size(image) or size) for image, fmt, size in images]
        box = disks.Box(first[0], first[1], first[2], tuple(more))
        st.disks = disks.merge(st.disks, self._plan_disks(st, box, host))
        self.save()
        self._make_disks(st, emit)

    def _up_new(self, *, provision: bool | None, emit: Emit, emit_output: Emit, timer: Timer, cancel: threading.Event | None, reload_config: Callable[[], MachineConfig] | None, only: set[str] | None = None, destroy_on_error: bool = True) -> None:
        import uuid

        from vmctl import network
        from vmctl.machine import hardware

        box, was_missing = self._ensure_box(emit)
        if reload_config is not None and was_missing and box.vagrantfile is not None:
            # The box was installed after the Vagrantfile was read: its own Vagrantfile
            # now supplies defaults (kernel, ssh username, ...).
            self.config = reload_config()
        cfg = self.config
        old = self.state  # a creation that was interrupted (killed): clean it up first
        if old is not None:
            emit(f"==> {self.name}: cleaning up an interrupted creation...")
            self._cleanup()
            self._state = None
        elif self.foreign_state:
            emit(f"==> {self.name}: removing state in {self.dir} that vmctl did not make on this host...")
        # A new machine starts from an empty state folder: a key or known_hosts file that
        # came with the project's files is never used.
        self._remove_state_files()

        from vmctl import storage

        uri = self.placement.get(self.name) or hypervisor.resolve_uri(cfg.libvirt.uri)
        host = self._host(uri)
        self._check_host(host, emit)  # before anything is made: what cannot work here stops here
        pool = storage.pool_for(uri, cfg.libvirt)
        machine_id = uuid.uuid4().hex[:12]
        home_dir = paths.machines_dir() / machine_id
        # Traversable but not listable: under a libvirt daemon (qemu:///system) QEMU runs as
        # its own user and must reach the disk, which libvirt hands to it by ownership.
        home_dir.mkdir(parents=True, exist_ok=True, mode=0o711)
        st = MachineState(
            id=machine_id,
            domain=domain_name(cfg, self.project_root, machine_id),
            uri=uri,
            disk=str(home_dir / DISK_FILE),
            console_log=str(home_dir / CONSOLE_FILE),
            ssh_port=0,
            ssh_user=cfg.ssh.username,
            box_name=box.name,
            box_version=box.version,
            macs=[network.mac_for(machine_id, i + 1) for i in range(len(cfg.private_networks))],
            uuid=cfg.libvirt.uuid or hardware.domain_uuid(machine_id),
            pool=pool,
        )
        self._state = st
        self._state_loaded = True
        try:
            box_files = _box_disks(box)
            images = [(Path(path), fmt, _virtual_size(Path(path)) or 0) for path, fmt in box_files]
            if pool is not None:  # overlays are made on the box's volumes, not its local files
                in_pool = self._box_in_pool(st, box, box_files, emit)
                images = [(vol, fmt, size) for vol, (_, fmt, size) in zip(in_pool, images, strict=True)]
            first, *more = images
            st.disks = self._plan_disks(st, disks.Box(first[0], first[1], first[2], tuple(more)), host)
            self._reserve_ports(st, emit)
            self.save()  # the list of disks is recorded before any of them is made
            emit(f"==> {self.name}: creating the machine from box {box.name} ({box.version})...")
            self._make_disks(st, emit)
            timer.mark("disk")
            self._write_seed(box, st, emit)
            with hypervisor.connect(st.uri) as c:
                if c.exists(st.domain):
                    raise MachineError(f"a libvirt domain named {st.domain} exists already",
                                       hint="it is not this machine's: change libvirt.default_prefix, or remove "
                                       "that domain")
                c.define(self._render(st, host, emit))
                c.set_autostart(st.domain, bool(cfg.libvirt.autostart))
                timer.mark("define")
                self._start_with_port_retry(c, st, emit)
            timer.mark("start")
            session = self._wait_ssh(st, cancel=cancel)
            timer.mark("wait for SSH")
        except BaseException as exc:
            # Nothing half-made: a new machine that never answered is removed again
            # (unless --no-destroy-on-error asks to keep it for a look).
            tail = self._console_tail() if isinstance(exc, (BootTimeoutError, HypervisorError)) else ""
            if destroy_on_error or not isinstance(exc, VmctlError):
                emit(f"==> {self.name}: removing the machine that did not come up...")
                try:
                    self._cleanup()
                except VmctlError as cleanup_exc:
                    # (its libvirt host lost, typically): what was made is recorded in state.json
                    log.debug("cleanup failed: %s", cleanup_exc)
                    if isinstance(exc, VmctlError):
                        from vmctl import remote

                        where = remote.host_of(st.uri)
                        why = cleanup_exc.message.splitlines()[0][:200]
                        exc.hint = (f"what this up made{' on ' + where if where else ''} could not be removed"
                                    + ("" if why == exc.message.splitlines()[0][:200] else f" ({why})")
                                    + f"; it is recorded: once {where or 'libvirt'} can be reached, "
                                    f"vmctl destroy -f {self.name} removes it (vmctl up {self.name} starts over)")
            else:
                exc.hint = (f"the machine is kept as it is (--no-destroy-on-error): look at it, "
                            f"then remove it with vmctl destroy -f {self.name}")
            if tail and isinstance(exc, VmctlError):
                exc.message += f"\nlast lines of the serial console ({st.console_log}):\n{tail}"
            raise
        # From here on the machine exists and answers: an interrupted up leaves it
        # running and reachable, and the next up or ssh picks it up from there.
        st.phase = "created"
        self.save()
        try:
            if self._needs_key(st):
                session = self._insert_key(session, st, emit)
                timer.mark("key swap")
            self._wait_for_cloud_init(session, emit=emit)
            self._configure_guest(session, emit=emit)
            timer.mark("configure guest")
            self._provision(session, emit=emit, emit_output=emit_output, forced=bool(provision), only=only, first_run=True, skip=provision is False)
            timer.mark("provision")
        finally:
            session.close()
        from vmctl import remote, ssh

        where = remote.host_of(st.uri)
        # (on a remote host the port is the host's: every hop's connection is one ssh -W away)
        if where is None and not ssh.wait_until_welcomed("127.0.0.1", st.ssh_port):
            log.debug("%s: the guest's SSH server sent no banner to a new connection within 15 s", self.name)
        timer.mark("ssh welcomes")
        on = f"127.0.0.1:{st.ssh_port}" + (f" of {where}" if where else "")
        emit(f"==> {self.name}: machine is ready (SSH on {on}; log in with: vmctl ssh {self.name})")

    def halt(self, *, force: bool, emit: Emit, timeout: float | None = None) -> None:
        with self.locked():
            self._triggers("before", "halt", emit, emit)
            self._halt(force=force, emit=emit, timeout=timeout)
            self._triggers("after", "halt", emit, emit)

    def _halt(self, *, force: bool, emit: Emit, timeout: float | None) -> None:
        """Stop the machine: ask the guest (through the QEMU guest agent with
        libvirt.qemu_use_agent, else over SSH, else ACPI), wait up to TIMEOUT (default
        config.vm.graceful_halt_timeout), then pull the plug."""
        from vmctl import guest

        st = self.state
        if st is None:
            emit(f"==> {self.name}: not created.")
            return
        if timeout is None:
            timeout = float(self.config.graceful_halt_timeout)
        # The connection stays open while the guest powers off: QEMU runs with
        # -no-shutdown, and only a libvirt driver that is there to see the guest's
        # shutdown makes QEMU exit (on_poweroff = destroy).
        with hypervisor.connect(st.uri) as c:
            state = self.status(c)
            if state not in (hypervisor.RUNNING, hypervisor.PAUSED):
                emit(f"==> {self.name}: already stopped ({state}).")
                return
            st.halted = True
            self.save()
            if not force and state == hypervisor.RUNNING:
                asked = False
                if self.config.libvirt.qemu_use_agent:
                    emit(f"==> {self.name}: shutting down gracefully (QEMU guest agent)...")
                    try:
                        c.shutdown(st.domain, True)
                        asked = True
                    except HypervisorError as exc:
                        emit(f"==> {self.name}: the guest agent did not answer ({exc.message}); asking over SSH")
                if not asked:
                    if not self.config.libvirt.qemu_use_agent:
                        emit(f"==> {self.name}: shutting down gracefully...")
                    try:
                        with self._ssh_session() as s:
                            guest.request_poweroff(s)
                    except SSHError as exc:
                        log.debug("halt over SSH failed: %s; trying ACPI", exc)
                        c.shutdown(st.domain)
                deadline = time.monotonic() + timeout
                while time.monotonic() < deadline:
                    if not self._qemu_running(c):
                        return
                    time.sleep(0.2)
                emit(f"==> {self.name}: the guest did not stop within {timeout:.0f} s; forcing it off.")
            else:
                emit(f"==> {self.name}: forcing shutdown...")
            c.destroy(st.domain)

    def suspend(self, *, emit: Emit) -> None:
        """libvirt.suspend_mode "pause" pauses the guest in memory (vagrant-libvirt's default);
        otherwise vmctl saves its memory to disk and stops it ("managedsave"), which survives
        a host reboot and frees the memory."""
        with self.locked():
            st = self.require_running()
            self._triggers("before", "suspend", emit, emit)
            with hypervisor.connect(st.uri) as c:
                if self.config.libvirt.suspend_mode == "pause":
                    emit(f"==> {self.name}: pausing the machine...")
                    c.pause(st.domain)
                else:
                    shared = [f"{f.guest} ({kind})" for f, kind, _ in self.shared_folders()]
                    if shared:
                        raise MachineError(
                            f"machine {self.name} shares {', '.join(shared)} two-way, and QEMU cannot save the "
                            "memory of a machine with a mounted virtiofs or 9p folder",
                            hint=f'halt it instead (vmctl halt {self.name}), or set libvirt.suspend_mode = "pause"')
                    emit(f"==> {self.name}: saving the machine's memory and stopping it...")
                    c.suspend(st.domain)
                    # libvirt's view of the disks is what QEMU opened at its start; after a
                    # snapshot the machine uses other images (vmctl/vmstate.py).
                    from vmctl.machine import snapshots

                    if st.pool is None:  # pool machines have no snapshots (and volume sources)
                        snapshots.fix_saved_xml(self, c)
            self._triggers("after", "suspend", emit, emit)

    def resume(self, *, emit: Emit, emit_output: Emit) -> None:
        with self.locked():
            st = self.require_state()
            state = self.status()
            if state not in (hypervisor.SAVED, hypervisor.PAUSED):
                raise MachineError(
                    f"machine {self.name} is not suspended (it is {state})",
                    hint="vmctl up starts a stopped machine",
                )
            self._triggers("before", "resume", emit, emit_output)
            emit(f"==> {self.name}: resuming...")
            with hypervisor.connect(st.uri) as c:
                c.resume(st.domain)
            session = self._wait_ssh(st, cancel=None)
            try:
                self._set_clock(session)
            finally:
                session.close()
            self._triggers("after", "resume", emit, emit_output)

    def _set_clock(self, session: Any) -> None:
        """A guest whose memory comes back from disk (resume, a snapshot's restore) believes
        it is still the moment it was saved: set its clock."""
        from vmctl import guest, term

        try:
            guest.set_clock(session)
        except VmctlError as exc:
            term.warn(f"{self.name}: could not set the guest's clock ({exc}); it runs behind")

    def reload(self, *, provision: bool | None, emit: Emit, emit_output: Emit, force: bool = False,
               only: set[str] | None = None) -> None:
        """FORCE: pull the plug instead of shutting down; ONLY: --provision-with."""
        with self.locked():
            self._triggers("before", "reload", emit, emit_output)
            self._halt(force=force, emit=emit, timeout=None)
            st = self.require_state()
            timer = Timer(self.name)
            self._up_existing(st, provision=provision, emit=emit, emit_output=emit_output, timer=timer, cancel=None, only=only)
            self._triggers("after", "reload", emit, emit_output)

    def destroy(self, *, emit: Emit, graceful: bool = False) -> bool:
        """Remove the domain, every disk vmctl made, the index entry and the project state.
        Running it again (or after a killed destroy) finishes what is left.
        GRACEFUL (destroy -g): shut the guest down first instead of pulling the plug."""
        with self.locked(recover=False):  # whatever was interrupted goes too
            if self.state is None and not self._index_entries():
                self._remove_state_files()  # a shipped state, or a folder a user emptied
                return False
            self._triggers("before", "destroy", emit, emit)
            if graceful and self.state is not None:
                self._halt(force=False, emit=emit, timeout=None)
            emit(f"==> {self.name}: destroying...")
            self._cleanup()
            self._triggers("after", "destroy", emit, emit)
            return True

    def _cleanup(self) -> None:
        """Each step idempotent: stop and undefine the domain (when its metadata says it is
        this machine's), remove the disks vmctl made (disks.remove), libvirt's logs of the
        domain, the index entry, the project's state files."""
        from vmctl.domain import parse_machine_metadata
        from vmctl.machine import snapshots

        st = self.state
        # (id, domain, uri, disks, storage pool)
        targets: list[tuple[str, str, str, list[disks.MachineDisk], str | None]] = []
        if st is not None:
            targets.append((st.id, st.domain, st.uri, st.disks, st.pool))
        for e in self._index_entries():
            if (st is None or e.id != st.id) and MACHINE_ID_RE.fullmatch(e.id) and DOMAIN_NAME_RE.fullmatch(e.domain):
                targets.append((e.id, e.domain, e.uri, [], None))
        for machine_id, dom, uri, machine_disks, pool in targets:
            with hypervisor.connect(uri) as c:
                xml = c.xml(dom)
                meta = parse_machine_metadata(xml) if xml is not None else None
                if xml is not None and (meta is None or meta.get("id") != machine_id):
                    log.warning("left the libvirt domain %s alone: it is not machine %s's (its metadata says %s)",
                                dom, machine_id, meta.get("id") if meta else "nothing")
                else:
                    c.destroy(dom, True)  # its disks go next: nothing to flush
                    if pool is None:
                        c.undefine(dom)
                    else:
                        c.undefine(dom, True)  # the NVRAM volume goes through the pool, next
                    if not hypervisor.is_embedded(uri):
                        # The libvirt networks vmctl defined that no domain names any more go (those
                        # the Vagrantfile names too: the domain may be gone after a killed destroy).
                        from vmctl import libvirtnet

                        libvirtnet.release(c, libvirtnet.used_networks(xml) or self._libvirt_network_names())
                if pool is not None or any(d.pool for d in machine_disks):
                    disks.remove_volumes(c, machine_disks, machine_id, pool)
            snapshots.remove_files(paths.machines_dir() / machine_id)
            left = disks.remove(machine_disks, machine_id)
            if left:
                log.warning("left %s in place: it holds files vmctl did not make (%s)",
                            paths.machines_dir() / machine_id, ", ".join(sorted(left)[:5]))
            if hypervisor.is_embedded(uri):
                _remove_libvirt_leftovers(dom, machine_disks)
            with index_lock():
                entries = load_index()
                if entries.pop(machine_id, None) is not None:
                    save_index(entries)
            # The host-only networks it was on; the last machine's take their bridge along.
            from vmctl import hostnet

            hostnet.release(machine_id)
        self._remove_state_files()
        self._state = None
        self._state_loaded = True
        self.foreign_state = False

    def status_json(self, state: str) -> dict[str, Any]:
        from vmctl import remote
        from vmctl.machine import snapshots

        st = self.state
        if st is None:
            return {"name": self.name, "state": state, "domain": None, "host": None, "ssh": None, "forwarded_ports": [], "disks": [],
                    "networks": [],
                    "snapshots": 0}
        key = st.key_inserted and self.key_file.exists()
        return {
            "name": self.name,
            "state": state,
            "domain": st.domain,
            "host": remote.host_of(st.uri),
            **({"interrupted": True} if self.interrupted() else {}),  # a half-made machine: see status
            "ssh": {
                "host": "127.0.0.1",
                "port": st.ssh_port,
                "user": st.ssh_user,
                "private_key": str(self.key_file if key else self.dir / "insecure_private_key"),
            },
            "forwarded_ports": self.ports_json(),
            "disks": disks.status_json(st.all_disks()),
            "networks": self.networks_json(),
            **({"guest_addresses": self.guest_addresses()} if self.config.libvirt.qemu_use_agent
               and state == hypervisor.RUNNING else {}),
            "snapshots": snapshots.count(self),
        }

    def guest_addresses(self) -> list[dict[str, Any]] | None:
        """The guest's network addresses as the QEMU guest agent reports them (None when it
        does not answer)."""
        st = self.require_state()
        try:
            with hypervisor.connect(st.uri) as c:
                return c.agent_addresses(st.domain)
        except HypervisorError as exc:
            log.debug("the guest agent did not answer: %s", exc)
            return None

    def _libvirt_network_names(self) -> list[str]:
        from vmctl import libvirtnet

        try:
            return [h.name for _, h in self.host_networks() if isinstance(h, libvirtnet.LibvirtNetwork)]
        except VmctlError as exc:  # a Vagrantfile that no longer makes sense: the domain's XML said
            log.debug("destroy: %s", exc)
            return []

    def _libvirt_lease(self, uri: str, network: str, mac: str) -> str | None:
        from vmctl import libvirtnet

        try:
            with hypervisor.connect(uri) as c:
                return libvirtnet.dhcp_address(c, network, mac)
        except HypervisorError as exc:
            log.debug("status: no lease from the libvirt network %s: %s", network, exc)
            return None

    def _libvirt_bridge(self, uri: str, lnet: Any) -> str | None:
        """The bridge of the libvirt network LNET as the daemon has it (None: not there)."""
        from vmctl import libvirtnet

        try:
            with hypervisor.connect(uri) as c:
                xml = c.network_xml(lnet.name)
        except HypervisorError as exc:
            log.debug("status: the libvirt network %s: %s", lnet.name, exc)
            return None
        return libvirtnet.parse_network(xml).bridge if xml else None

    def networks_json(self) -> list[dict[str, Any]]:
        """The private networks: where each is (a host-only bridge or a multicast segment)
        and the machine's address on it (for DHCP, the lease dnsmasq gave; None before one)."""
        st = self.require_state()
        out = []
        try:
            planned = self.host_networks()
        except MachineError as exc:  # the Vagrantfile changed to something up would refuse
            log.debug("status: %s", exc)
            planned = [(net, None) for net in self.config.private_networks]
        from vmctl import hostnet, libvirtnet
        from vmctl.machine import hardware

        for i, (net, host_net) in enumerate(planned):
            mac = net.mac or (st.macs[i] if i < len(st.macs) else None)
            ip = net.ip
            if isinstance(host_net, libvirtnet.LibvirtNetwork) and net.type == "dhcp" and mac:
                ip = self._libvirt_lease(st.uri, host_net.name, mac)
            elif host_net is not None and net.type == "dhcp" and mac:
                ip = hostnet.dhcp_address(host_net, mac)
            if ip is None and net.type == "dhcp" and mac:
                ip = st.dhcp_addresses.get(mac)  # as the guest last said (a public network's)
            item: dict[str, Any] = {"type": net.type, "ip": ip, "netmask": net.netmask, "subnet": net.subnet,
                                    "name": net.name, "mac": mac}
            if net.public:
                item.update(mode="public", devs=list(net.devs) or ["eth0"], host_reachable=None)
                if net.attach:
                    item["attach"] = net.attach
                if net.attach != "bridge":
                    item["macvtap_mode"] = net.macvtap_mode
            elif isinstance(host_net, libvirtnet.LibvirtNetwork):
                item.update(mode="libvirt", network=host_net.name, bridge=self._libvirt_bridge(st.uri, host_net),
                            host_ip=host_net.spec.host_ip, host_reachable=hardware.uri_host(st.uri) is None,
                            forward_mode=host_net.spec.forward_mode)
            elif host_net is not None:
                item.update(mode="bridge", bridge=host_net.bridge, host_ip=host_net.host_ip,
                            host_reachable=True, forward_mode=host_net.forward_mode)
            else:
                item.update(mode="udp" if net.tunnel_type == "udp" else "mcast", host_reachable=False)
            out.append(item)
        return out

    def ports_json(self) -> list[dict[str, Any]]:
        st = self.require_state()
        guest_port = self.config.ssh.port or self.config.ssh.guest_port or 22
        ports = [{"id": "ssh", "guest": guest_port, "host": st.ssh_port, "host_ip": "127.0.0.1", "protocol": "tcp"}]
        from dataclasses import asdict

        ports += [{k: v for k, v in asdict(f).items() if k != "guest_ip" or v is not None} for f in st.forwards]
        return ports


def domain_name(cfg: MachineConfig, project_root: Path, machine_id: str) -> str:
    """vmctl's name for the domain (vmctl-PROJECT-MACHINE-ID6), or vagrant-libvirt's when
    libvirt.default_prefix is set: the prefix (no separator added) and the machine name,
    every character outside [-a-z0-9_.] removed; random_hostname adds a unique suffix."""
    lv = cfg.libvirt
    if lv.default_prefix is None:
        return f"vmctl-{_slug(project_root.name)}-{_slug(cfg.name)}-{machine_id[:6]}"
    name = re.sub(r"[^-a-z0-9_.]", "", lv.default_prefix + cfg.name, flags=re.IGNORECASE)
    if lv.random_hostname:
        name += f"_{int(time.time())}_{machine_id}"
    name = name.lstrip("-")[:200]
    if not name:
        raise MachineError(f"libvirt.default_prefix {lv.default_prefix!r} and the machine name {cfg.name!r} leave "
                           "no characters for a domain name", hint="use letters, digits, - _ .")
    return name


def _box_disks(box: Any) -> list[tuple[Path, str]]:
    """Every disk of an installed box, in order: (image, format)."""
    found = getattr(box, "disks", None)
    return [(Path(p), f) for p, f in found] if found else [(Path(box.image), box.image_format)]


def _virtual_size(image: Path) -> int | None:
    """The size the guest sees of IMAGE (qemu-img info), None if it cannot be read."""
    import json
    import subprocess

    try:
        out = subprocess.run(["qemu-img", "info", "--output=json", "-U", str(image)], capture_output=True,
                             check=True, stdin=subprocess.DEVNULL, timeout=60).stdout
        return int(json.loads(out)["virtual-size"])
    except (OSError, subprocess.SubprocessError, ValueError, KeyError):
        return None


def _remove_libvirt_leftovers(dom: str, machine_disks: list[disks.MachineDisk]) -> None:
    """What the embedded libvirt keeps of a domain after undefining it: its QEMU and swtpm
    logs, and the swtpm state when an undefine without the TPM flag left it (older
    vmctl); only in the embedded root, and only by name."""
    root = paths.libvirt_root()
    for log_file in (root / "log" / "qemu" / f"{dom}.log", root / "log" / "swtpm" / f"{dom}-swtpm.log"):
        with suppress(FileNotFoundError):
            log_file.unlink()
    swtpm = root / "lib" / "swtpm"
    for d in machine_disks:
        state = Path(d.path)
        if d.role != "tpm" or state.parent != swtpm or not UUID_RE.fullmatch(state.name):
            continue
        for sub, names in (("tpm2", ("tpm2-00.permall", ".lock")), ("tpm1.2", ("tpm-00.permall", ".lock"))):
            paths.remove_owned_dir(state / sub, names)
        paths.remove_owned_dir(state, ())
