"""Booting a machine: its box, its domain (defined from the settings), its host ports,
and SSH (waiting for it, the endpoint, replacing the insecure key).

Nothing here is left half-done by an interruption that the next command cannot finish:
ports are reserved in the index (and state.json) before the domain names them; the key
swap writes the new key before the guest trusts it and records it only once a login with
it has worked.
"""

from __future__ import annotations

import logging
import os
import re
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

# The domain XML, the hardware plan, host networks and the host's ports are imported where a
# machine is booted: status, ssh, ssh-config and port go through this module and need none of them.
from vmctl import hypervisor, paths
from vmctl.errors import BoxError, HypervisorError, MachineError, VmctlError
from vmctl.machine import disks
from vmctl.machine.state import ForwardState, MachineState, StateMixin
from vmctl.state import IndexEntry, index_lock, load_index, save_index, write_atomic

if TYPE_CHECKING:
    from vmctl import domain, hostnet, libvirtnet
    from vmctl.machine import hardware
    from vmctl.machine.lifecycle import Emit
    from vmctl.ssh import Endpoint, Session

log = logging.getLogger("vmctl.machine")

# Machines of one `up` that need the same missing box wait for the first to fetch it.
_box_fetch_lock = threading.Lock()


class BootMixin(StateMixin):
    """The boot half of a Machine (see lifecycle.Machine)."""

    key_file: Path
    known_hosts: Path

    def endpoint(self) -> Endpoint:
        from vmctl import remote
        from vmctl.ssh import Endpoint, insecure_private_keys

        st = self.require_state()
        keys: list[Path] = []
        if self.config.ssh.private_key_path:
            keys += [self._project_path(p) for p in self.config.ssh.private_key_path]
        if self.key_file.exists():
            keys.append(self.key_file)
        keys += insecure_private_keys()
        ssh = self.config.ssh
        return Endpoint(
            host="127.0.0.1",
            port=st.ssh_port,
            user=st.ssh_user,
            alias=f"vmctl-{st.id}",
            known_hosts=self.known_hosts,
            keys=tuple(keys),
            forward_agent=ssh.forward_agent,
            forward_x11=ssh.forward_x11,
            forward_env=ssh.forward_env,
            keys_only=ssh.keys_only,
            connect_timeout=ssh.connect_timeout,
            extra_args=ssh.extra_args,
            config_file=Path(ssh.config) if ssh.config else None,
            keep_alive=ssh.keep_alive,
            pty=ssh.pty,
            shell=ssh.shell,
            sudo_command=ssh.sudo_command,
            jump=remote.jump_of(st.uri),
        )

    def login_key(self) -> Path:
        """The private key an OpenSSH client should use (0600, as ssh demands)."""
        st = self.require_state()
        if self.config.ssh.private_key_path:
            return self._project_path(self.config.ssh.private_key_path[0])
        if st.key_inserted and self.key_file.exists():
            return self.key_file
        # The insecure key, copied 0600: ssh refuses keys others can read.
        from vmctl.ssh import insecure_private_keys

        copy = self.dir / "insecure_private_key"
        if not copy.exists():
            write_atomic(copy, insecure_private_keys()[0].read_bytes(), mode=0o600)
        return copy

    def _project_path(self, p: str) -> Path:
        path = Path(p).expanduser()
        return path if path.is_absolute() else self.project_root / path

    def session(self, timeout: float | None = None) -> Session:
        """An SSH session to the running machine, trying for config.ssh.connect_timeout
        seconds (Vagrant's default, 15)."""
        from vmctl import ssh

        return ssh.connect(self.endpoint(), timeout=timeout or self.config.ssh.connect_timeout or 15.0)

    def _ensure_box(self, emit: Emit) -> tuple[Any, bool]:
        """The installed box, adding (or building) it first when it is missing, and whether
        it was missing. Machines coming up in parallel wait for one another here, so a box
        is fetched once."""
        from vmctl.boxes import store

        cfg = self.config
        if not cfg.box:
            raise MachineError(
                f"machine {self.name} names no box",
                hint='set config.vm.box in the Vagrantfile, e.g. config.vm.box = "vmctl/tiny"',
            )
        box = store.find_box(cfg.box, cfg.box_version)
        if box is not None:
            return box, False
        with _box_fetch_lock:
            box = store.find_box(cfg.box, cfg.box_version)
            if box is not None:  # a machine of this up fetched it meanwhile
                return box, True
            try:
                return self._fetch_box(emit), True
            except BoxError:
                # Another vmctl process may have installed it meanwhile.
                box = store.find_box(cfg.box, cfg.box_version)
                if box is None:
                    raise
                return box, True

    def _fetch_box(self, emit: Emit) -> Any:
        from vmctl.boxes import store

        cfg = self.config
        assert cfg.box is not None
        dl = cfg.box_download
        if cfg.box_url or (store.registry_name(cfg.box) and not _shipped_recipe_for(cfg.box)):
            source = cfg.box_url or cfg.box
            where = cfg.box_url or store.server_url(dl.server_url)
            emit(f"==> {self.name}: box {cfg.box} is not installed; adding it from {where}")
            if dl.insecure:
                emit(f"==> {self.name}: warning: box_download_insecure: the server's certificate is NOT verified")
            from vmctl.term import Progress

            return store.add_box(
                source, name=cfg.box if cfg.box_url else None, version_constraint=cfg.box_version,
                checksum=dl.checksum, checksum_type=dl.checksum_type, progress=Progress, notify=emit,
                options=download_options(dl), server=store.server_url(dl.server_url),
            )  # fmt: skip
        recipe = _shipped_recipe_for(cfg.box)
        if recipe is not None:
            emit(f"==> {self.name}: box {cfg.box} is not installed; building it from vmctl's recipe {recipe}")
            import tempfile

            from vmctl.boxes.build import build_recipe

            paths.vmctl_home().mkdir(parents=True, exist_ok=True)
            with tempfile.TemporaryDirectory(dir=paths.vmctl_home(), prefix=".build-") as out:
                result = build_recipe(recipe, Path(out), notify=lambda line: emit(f"    {self.name}: {line}"))
                return store.add_box(str(result.catalog_path), notify=emit)
        raise MachineError(
            f"box {cfg.box} is not installed",
            hint=f"add it with vmctl box add {cfg.box} (a .box file or catalog URL), or set config.vm.box_url",
        )

    # --- the domain -----------------------------------------------------------------------

    def _host(self, uri: str) -> hardware.Host:
        from vmctl.machine import hardware

        cfg = self.config
        kernel = Path(cfg.libvirt.kernel) if cfg.libvirt.kernel else None
        return hardware.Host(accel=_choose_accel(cfg.libvirt.driver, kernel), uri=uri,
                             embedded=hypervisor.is_embedded(uri), is_root=os.geteuid() == 0)

    def _check_host(self, host: hardware.Host, emit: Emit) -> None:
        """Stop before anything is made when a setting cannot work here; say what is applied
        but not honoured."""
        from vmctl.machine import hardware

        self._join_hosts(host.uri)
        for warning in hardware.check_host(self.config, host):
            emit(f"==> {self.name}: warning: {warning}")
        if host.daemon_networks:
            from vmctl import libvirtnet

            nets = [h for _, h in self.host_networks(host) if isinstance(h, libvirtnet.LibvirtNetwork)]
            if nets:
                with hypervisor.connect(host.uri) as c:
                    libvirtnet.check(c, nets)  # the daemon's networks agree, before anything is made

    def _members(self, uri: str) -> tuple[Any, list[Any]] | None:
        """This machine on URI and the project's other machines where they run (or will run),
        as vmctl/tunnels.py sees them; None when this one has no private network."""
        if self.peers is None or not any(not n.public for n in self.config.private_networks):
            return None
        from vmctl import tunnels

        def member(m: Any, machine_uri: str) -> tunnels.Member:
            return tunnels.Member(m.name, machine_uri, tuple((m._segment(n), n) for n in m.config.private_networks))

        others = []
        for peer in self.peers():
            if peer.name == self.name:
                continue
            try:
                st = peer.state
            except VmctlError:  # its own commands say what is wrong with its state
                st = None
            others.append(member(peer, st.uri if st is not None else self.placement.get(peer.name)
                                 or hypervisor.resolve_uri(peer.config.libvirt.uri)))
        return member(self, uri), others

    def _join_hosts(self, uri: str) -> None:
        """The private networks this machine shares with a machine of the project on another
        libvirt host become udp tunnels to it (vmctl/tunnels.py), in self.config for this run."""
        members = self._members(uri)
        if members is None:
            return
        from dataclasses import replace

        from vmctl import tunnels

        addresses: dict[str | None, str] = {}

        def address_of(machine_uri: str) -> str:
            key = tunnels.host_key(machine_uri)
            if key not in addresses:
                addresses[key] = tunnels.host_address(machine_uri)
            return addresses[key]

        nets = tunnels.plan(*members, address_of)
        if list(nets) != list(self.config.private_networks):
            self.config = replace(self.config, private_networks=tuple(nets))

    def _plan_disks(self, st: MachineState, box: disks.Box, host: hardware.Host) -> list[disks.MachineDisk]:
        from vmctl.machine import hardware

        cfg = self.config
        tpm = None
        if hardware.tpm_wanted(cfg.libvirt) and (cfg.libvirt.tpm_type or "passthrough") == "emulator":
            tpm = hardware.tpm_state_dir(host, st.uuid or hardware.domain_uuid(st.id))
        template = hardware.nvram_template(cfg.libvirt) if cfg.libvirt.loader else None
        planned = disks.plan(cfg, st.id, box, machine_type=cfg.libvirt.machine_type or "pc", tpm_dir=tpm,
                             nvram_template=template)
        return disks.in_pool(planned, st.pool, st.id) if st.pool is not None else planned

    def _make_disks(self, st: MachineState, emit: Emit) -> None:
        """Make (or grow) every disk in the recorded list; the list was saved first. Pool
        volumes are made through the daemon, and their paths recorded."""
        from vmctl.run import run

        def make(conn: Any) -> None:
            for d in st.disks:
                disks.ensure(d, run=run, emit=lambda text: emit(f"==> {self.name}: {text}"), conn=conn)

        if st.pool is None:
            make(None)
            return
        with hypervisor.connect(st.uri) as c:
            make(c)
        self.save()

    def _box_in_pool(self, st: MachineState, box: Any, images: list[tuple[Path, str]], emit: Emit) -> list[Path]:
        """For a machine whose disks are pool volumes: the pool ready, the box's disks uploaded
        into it (once per pool), and their volumes' paths on the daemon's host."""
        from vmctl import storage

        assert st.pool is not None
        with hypervisor.connect(st.uri) as c:
            storage.ensure_pool(c, st.uri, st.pool, self.config.libvirt.storage_pool_path)
            found = storage.upload_box_disks(c, st.uri, st.pool, box, images,
                                             notify=lambda text: emit(f"==> {self.name}: {text}"))
        return [Path(p) for p in found]

    def _render(self, st: MachineState, host: hardware.Host | None = None, emit: Emit | None = None) -> str:
        from vmctl import domain, network, remote
        from vmctl.machine import hardware

        self._join_hosts(st.uri)  # (done already in an up; not in a snapshot's restore)
        cfg = self.config
        host = host or self._host(st.uri)
        guest_port = cfg.ssh.port or cfg.ssh.guest_port or 22
        forwards = [domain.Forward("127.0.0.1", st.ssh_port, guest_port)]
        forwards += [domain.Forward(f.host_ip, f.host, f.guest, f.protocol, f.guest_ip) for f in st.forwards if f.id != "ssh"]
        from vmctl import hostnet, libvirtnet

        nics: list[domain.McastNic | domain.UdpNic | domain.BridgeNic | domain.PublicNic] = []
        planned = self.host_networks(host)
        for i, (net, mac) in enumerate(zip(cfg.private_networks, st.macs, strict=False)):
            mac = net.mac or mac
            if net.public:
                nics.append(self._public_nic(st, host, i))
            elif isinstance(planned[i][1], libvirtnet.LibvirtNetwork):
                lnet = planned[i][1]
                nics.append(domain.BridgeNic(mac=mac, bridge=lnet.spec.bridge, tap=net.iface_name, network=lnet.name))
            elif planned[i][1] is not None:
                bridge = planned[i][1].bridge
                nics.append(domain.BridgeNic(mac=mac, bridge=bridge, tap=net.iface_name or hostnet.tap_name(st.id, i)))
            elif net.tunnel_type == "udp":
                if net.tunnel_port is None or net.tunnel_local_port is None:
                    raise MachineError("libvirt__tunnel_type: \"udp\" between two machines of one host needs "
                                       "libvirt__tunnel_port: and libvirt__tunnel_local_port: (the two machines name "
                                       "each other's ports)", hint="add both ports to the network in both machines")
                nics.append(domain.UdpNic(mac=mac, remote=net.tunnel_ip or "127.0.0.1", port=net.tunnel_port,
                                          local=net.tunnel_local_ip or "127.0.0.1", local_port=net.tunnel_local_port))
            else:
                group, port = network.mcast_group(self._segment(net))
                nics.append(domain.McastNic(mac=mac, group=group, port=port))
        attached = st.all_disks()
        seed = paths.machines_dir() / st.id / disks.SEED_FILE
        if seed.is_file():
            seed_disk = disks.seed_disk(seed, attached, machine_type=cfg.libvirt.machine_type or "pc")
            if st.pool is not None:  # uploaded by _write_seed
                from dataclasses import replace

                from vmctl import storage

                seed_disk = replace(seed_disk, pool=st.pool, volume=storage.machine_volume(st.id, disks.SEED_FILE))
            attached = [*attached, seed_disk]
        if st.pool is not None and remote.host_of(st.uri) is not None:
            cfg = self._boot_files_on_host(st, cfg)
        spec, notes = hardware.build(cfg, st, attached, project_root=self.project_root, host=host,
                                     private_nics=tuple(nics), forwards=tuple(forwards))
        if emit is not None:
            for note in notes:
                emit(f"==> {self.name}: {note}")
        return domain.render_domain(spec)

    def _boot_files_on_host(self, st: MachineState, cfg: Any) -> Any:
        """CFG for a kernel-booted machine on a remote libvirt host: its kernel and initrd, files
        of this computer, become volumes of the machine in its pool (uploaded once; destroy
        removes them with its other volumes), named by their paths on that host."""
        from dataclasses import replace

        from vmctl import storage

        assert st.pool is not None
        on_host = {}
        with hypervisor.connect(st.uri) as c:
            for key in ("kernel", "initrd"):
                local = getattr(cfg.libvirt, key)
                if local:
                    volume = storage.machine_volume(st.id, key)
                    on_host[key] = c.volume_path(st.pool, volume) or c.upload_volume(st.pool, volume, local)
        return replace(cfg, libvirt=replace(cfg.libvirt, **on_host)) if on_host else cfg

    def _public_nic(self, st: MachineState, host: hardware.Host, index: int) -> domain.PublicNic:
        """The NIC of the public_network at INDEX among the machine's networks. With the
        embedded driver, a macvtap is made by vmctl (hostnet.Macvtap), not by libvirt."""
        from vmctl import domain, hostnet
        from vmctl.machine import hardware

        net = self.config.private_networks[index]
        attach, dev = hardware.public_attachment(net, host)
        return domain.PublicNic(mac=net.mac or st.macs[index], attach=attach, dev=dev,
                                tap=hostnet.tap_name(st.id, index), mode=net.macvtap_mode,
                                premade=attach == "direct" and host.embedded)

    def _segment(self, net: Any) -> str:
        if net.name:
            return f"name:{net.name}"
        return f"project:{self.project_root}:{net.subnet}"

    def _network_host(self, uri: str) -> hardware.Host:
        """What host_networks needs to know of the host (no KVM probe)."""
        from vmctl.machine import hardware

        return hardware.Host(accel="tcg", uri=uri, embedded=hypervisor.is_embedded(uri), is_root=os.geteuid() == 0)

    def host_networks(self, host: hardware.Host | None = None
                      ) -> list[tuple[Any, hostnet.HostNetwork | libvirtnet.LibvirtNetwork | None]]:
        """Each private network with the host-only network it is on: one vmctl makes
        (hostnet.HostNetwork), one a libvirt daemon makes (libvirtnet.LibvirtNetwork), or None
        (a tunnel, multicast or udp, between machines). hostnet.mode decides which."""
        from vmctl import hostnet, libvirtnet

        if host is None:
            st = self.state
            host = self._network_host(st.uri if st is not None else hypervisor.resolve_uri(self.config.libvirt.uri))
        home = str(paths.vmctl_home())
        out: list[tuple[Any, hostnet.HostNetwork | libvirtnet.LibvirtNetwork | None]] = []
        prefixes = None
        members = self._members(host.uri)
        crossing: set[int] = set()
        if members is not None:
            from vmctl import tunnels

            crossing = tunnels.crossing(*members)  # a udp tunnel to another host: no host network
        for i, net in enumerate(self.config.private_networks):
            if i in crossing:
                from dataclasses import replace

                out.append((replace(net, tunnel_type="udp"), None))
                continue
            kind = hostnet.mode(net, is_root=host.is_root, daemon=host.daemon_networks)
            if kind == "libvirt":
                out.append((net, libvirtnet.plan(net)))
                continue
            planned = hostnet.plan(net, home) if kind == "bridge" else None
            if planned is not None:
                # One of the host's own networks there: a segment instead (check_host warns).
                prefixes = prefixes if prefixes is not None else hostnet.IpOps().host_prefixes()
                if hostnet.foreign_overlap(planned, prefixes):
                    planned = None
            out.append((net, planned))
        return out

    def _ensure_networks(self, st: MachineState, c: Any = None) -> None:
        """Make (or find) the host-only networks the machine is on, and record it as their
        user; it leaves the ones it is no longer on (hostnet.py). On a daemon (C, its
        connection), the libvirt networks are defined and started (libvirtnet.py)."""
        from vmctl import hostnet, libvirtnet

        host = self._network_host(st.uri)
        planned = [h for _, h in self.host_networks(host) if h is not None]
        wanted = [h for h in planned if isinstance(h, hostnet.HostNetwork)]
        if wanted or hostnet.networks_dir().exists():
            hostnet.ensure(st.id, wanted)
        daemon_nets = [h for h in planned if isinstance(h, libvirtnet.LibvirtNetwork)]
        if daemon_nets:
            if c is None:
                with hypervisor.connect(st.uri) as conn:
                    libvirtnet.ensure(conn, daemon_nets)
            else:
                libvirtnet.ensure(c, daemon_nets)
        publics = [self._public_nic(st, host, i) for i, n in enumerate(self.config.private_networks) if n.public]
        taps = [hostnet.Macvtap(name=n.tap, lower=n.dev, mode=n.mode, mac=n.mac) for n in publics if n.premade]
        hostnet.ensure_macvtaps(st.id, taps)

    def _reserve_ports(self, st: MachineState, emit: Emit, exclude: set[int] | None = None) -> None:
        """Choose host ports unique among every vmctl machine that could collide, and record
        them. The ports bind 127.0.0.1 of the host QEMU runs on, so reserved are: the
        ports of this VMCTL_HOME's machines (the index), those of every vmctl domain the
        libvirt connection sees (another user's, on a shared or remote daemon), and
        EXCLUDE. A port is tried by binding it only when QEMU runs on this computer; for a
        remote host the start's retry on "Address already in use" is the safety net. A
        machine whose SSH port had to change says so, as Vagrant does."""
        from vmctl import network, remote

        exclude = exclude or set()
        probe = remote.host_of(st.uri) is None
        on_daemon = self._ports_of_daemon(st)  # a libvirt call: before the index lock

        def free(host_ip: str, port: int) -> bool:
            return not probe or network.port_is_free(host_ip, port)

        with index_lock():
            entries = load_index()
            reserved = {p for e in entries.values() if e.id != st.id for p in e.ports} | exclude | on_daemon
            ssh_fwd = next((f for f in self.config.forwarded_ports if f.id == "ssh" or f.guest == 22 and f.id in (None, "ssh") and f.host), None)
            wanted = st.ssh_port or (ssh_fwd.host if ssh_fwd is not None else None)  # a restart keeps its port
            if wanted and wanted not in reserved and free("127.0.0.1", wanted):
                ssh_port = wanted
            else:
                picked = network.pick_port(network.SSH_PORT_RANGE, reserved, probe=probe)
                if picked is None:
                    raise MachineError(
                        "no free port for SSH in 2200-2299",
                        hint="destroy machines you no longer need (vmctl global-status --prune)",
                    )
                ssh_port = picked
                if wanted:
                    guest_port = self.config.ssh.port or self.config.ssh.guest_port or 22
                    emit(f"==> {self.name}: fixed port collision for {guest_port} => {wanted}: now on port {ssh_port}.")
            reserved.add(ssh_port)
            forwards: list[ForwardState] = []
            for f in self.config.forwarded_ports:
                if f is ssh_fwd:
                    continue
                host = f.host
                if host is None or host in reserved or not free(f.host_ip, host):
                    if host is not None and not f.auto_correct:
                        raise MachineError(
                            f"host port {host} (forwarded to guest port {f.guest}) is already in use",
                            hint="choose another host port, or set auto_correct: true on the forwarded_port",
                        )
                    new = network.pick_port(network.AUTO_CORRECT_RANGE, reserved, f.host_ip, probe=probe)
                    if new is None:
                        raise MachineError(f"no free host port for guest port {f.guest}")
                    if host is not None:
                        emit(f"==> {self.name}: fixed port collision for {f.guest} => {host}: now on port {new}.")
                    host = new
                reserved.add(host)
                forwards.append(ForwardState(id=f.id, guest=f.guest, host=host, host_ip=f.host_ip, protocol=f.protocol,
                                             guest_ip=f.guest_ip))
            st.ssh_port = ssh_port
            st.forwards = forwards
            entries[st.id] = IndexEntry(
                id=st.id, name=self.name, project=str(self.project_root), domain=st.domain,
                uri=st.uri, box_name=st.box_name, box_version=st.box_version,
                ports=[ssh_port, *(f.host for f in forwards)],
            )  # fmt: skip
            save_index(entries)

    def _ports_of_daemon(self, st: MachineState) -> set[int]:
        """The host ports of the other vmctl domains a libvirt daemon holds (none for the
        embedded driver: its root is this VMCTL_HOME's alone, and the index knows them)."""
        from vmctl import network

        if hypervisor.is_embedded(st.uri):
            return set()
        with hypervisor.connect(st.uri) as c:
            return network.ports_of_machines(c.machine_domain_xmls(), st.id)

    def _start_with_port_retry(self, c: hypervisor.Connection, st: MachineState, emit: Emit) -> None:
        """Start the domain; if a port was taken between choice and start, choose again."""
        from vmctl.machine import snapshots

        snapshots.ensure_defined(self, c)  # type: ignore[arg-type]
        self._ensure_networks(st, c)
        if st.halted:
            st.halted = False
            self.save()
        self._start_choosing_ports(c, st, emit, c.start)

    def _start_choosing_ports(self, c: hypervisor.Connection, st: MachineState, emit: Emit,
                              start: Callable[[str], object]) -> None:
        """START(domain); when a host port was taken between choice and start (port_clash),
        choose the ports again, define the domain anew and try again (five tries)."""
        from vmctl import network, remote

        for attempt in range(5):
            try:
                start(st.domain)
                return
            except HypervisorError as exc:
                taken = {st.ssh_port, *(f.host for f in st.forwards)}
                # (a remote host's ports cannot be tried from here: all of them are chosen again)
                local = remote.host_of(st.uri) is None
                busy = {p for p in taken if local and not network.port_is_free("127.0.0.1", p)}
                if not port_clash(exc.message, busy=bool(busy), local=local, first=attempt == 0) or attempt == 4:
                    raise
                log.debug("start: ports %s taken meanwhile, choosing again", busy or taken)
                self._reserve_ports(st, emit, exclude=busy or taken)
                self.save()
                c.define(self._render(st))

    def _wait_ssh(self, st: MachineState, *, cancel: threading.Event | None) -> Session:
        from vmctl import ssh, term

        def alive() -> bool:
            # A guest that powers itself off while booting (the coreos-like box does when
            # Ignition rejects its config) leaves QEMU stopped but present until libvirt is
            # told: QEMU's own state says so.
            return self._qemu_running() and self.qemu_status() != "shutdown"

        with term.spinner(f"==> {self.name}: waiting for SSH on 127.0.0.1:{st.ssh_port}..."):
            return ssh.wait_for_ssh(
                self.endpoint(), timeout=self.config.boot_timeout, alive=alive, cancel=cancel
            )

    @contextmanager
    def _ssh_session(self) -> Iterator[Session]:
        s = self.session()
        try:
            yield s
        finally:
            s.close()

    def _needs_key(self, st: MachineState) -> bool:
        ssh = self.config.ssh
        return ssh.insert_key and not st.key_inserted and not ssh.private_key_path

    def _insert_key(self, session: Session, st: MachineState, emit: Emit) -> Session:
        from vmctl import ssh

        emit(f"==> {self.name}: replacing the insecure key with a new machine key...")
        if not self.key_file.exists():
            ssh.generate_key(self.key_file, comment=f"vmctl-{st.id}")
        ssh.replace_insecure_key(session, ssh.public_line(self.key_file))
        session.close()
        # Log in again with the new key only: proves it works before we rely on it.
        endpoint = self.endpoint()
        only_new = type(endpoint)(**{**endpoint.__dict__, "keys": (self.key_file,)})
        new_session = ssh.connect(only_new, timeout=15)
        st.key_inserted = True
        self.save()
        return new_session

    # --- cloud-init's seed ------------------------------------------------------------

    def _write_seed(self, box: Any, st: MachineState, emit: Emit) -> None:
        """cloud-init's seed (VMCTL_HOME/machines/ID/cidata.iso), when the Vagrantfile has
        config.vm.cloud_init or the box is a plain cloud image. For a cloud image the seed
        also makes the login user with the machine's key, so the key exists before boot."""
        from vmctl import cloudinit, network

        cfg = self.config
        cloud_image = bool(getattr(box, "cloud_image", False))
        if not cfg.cloud_init and not cloud_image:
            return
        parts = []
        for part in cfg.cloud_init:
            text = part.inline
            if part.path is not None:
                try:
                    text = Path(part.path).read_text()
                except (OSError, UnicodeDecodeError) as exc:
                    raise MachineError(f"could not read the cloud_init file {part.path}: {getattr(exc, 'strerror', exc)}") from exc
            parts.append(cloudinit.Part(part.content_type, text or "", part.filename))
        if cloud_image:
            parts.append(cloudinit.login_part(st.ssh_user, self._login_public_key(st)))
        hostname = (cfg.hostname or re.sub(r"[^A-Za-z0-9-]+", "-", self.name).strip("-") or "vmctl")[:63]
        try:
            data = cloudinit.seed(parts, instance_id=f"vmctl-{st.id}", hostname=hostname,
                                  mac=network.mac_for(st.id, 0) if cloud_image else None)
        except ValueError as exc:
            raise MachineError(f"could not make the cloud-init seed: {exc}") from exc
        seed = paths.machines_dir() / st.id / disks.SEED_FILE
        write_atomic(seed, data, mode=0o600)
        if st.pool is not None:  # the daemon's QEMU reads it from the pool, perhaps on another host
            from vmctl import storage

            volume = storage.machine_volume(st.id, disks.SEED_FILE)
            with hypervisor.connect(st.uri) as c:
                c.delete_volume(st.pool, volume)
                c.upload_volume(st.pool, volume, str(seed))
        what = "a login for " + st.ssh_user if cloud_image else "config.vm.cloud_init"
        emit(f"==> {self.name}: cloud-init seed: {len(cfg.cloud_init)} part{'s' if len(cfg.cloud_init) != 1 else ''} "
             f"of user-data{', and ' + what if cloud_image else ''}")

    def _login_public_key(self, st: MachineState) -> str:
        """The public key a plain cloud image is seeded with: the machine's own key (made
        now, before the first boot), config.ssh.private_key_path's, or with insert_key =
        false the ecosystem's insecure key."""
        from vmctl import ssh

        cfg = self.config.ssh
        if cfg.private_key_path:
            return ssh.public_line_of(self._project_path(cfg.private_key_path[0]))
        if not cfg.insert_key:
            return ssh.public_line_of(ssh.insecure_private_keys()[0])
        if not self.key_file.exists():
            ssh.generate_key(self.key_file, comment=f"vmctl-{st.id}")
        st.key_inserted = True  # no insecure key ever reaches this guest
        self.save()
        return ssh.public_line(self.key_file)

    def _console_tail(self, lines: int = 15) -> str:
        st = self.state
        if st is None:
            return ""
        try:
            text = Path(st.console_log).read_bytes().decode(errors="replace")
        except OSError:
            return ""
        tail = [line for line in text.replace("\r", "").splitlines() if line.strip()][-lines:]
        return "\n".join("    " + line for line in tail)


def port_clash(message: str, *, busy: bool, local: bool, first: bool) -> bool:
    """Whether a failed start (libvirt's MESSAGE) is worth another with other host ports.
    QEMU says "Could not set up host forwarding rule" when a port is taken, but libvirt 9
    often reports only that QEMU died before its monitor answered; QEMU's own words are in the
    host's log, out of reach over a remote connection. Then: on this computer, when one of
    the machine's ports is BUSY; on a remote host, once (the FIRST failure): a taken port is
    the likely cause of a machine that started before, and a second failure is the error."""
    if "host forwarding" in message or "Address already in use" in message:
        return True
    if "monitor" not in message:  # "failed to connect to monitor socket", "unexpectedly closed the monitor"
        return False
    return busy if local else first


def download_options(dl: Any) -> Any:
    """The box download settings of a machine (model.BoxDownload) for the box store."""
    from vmctl.boxes.download import FetchOptions

    return FetchOptions(ca_cert=dl.ca_cert or dl.ca_path, client_cert=dl.client_cert, insecure=dl.insecure)


def _choose_accel(driver: str | None, kernel: Path | None) -> str:
    if driver == "qemu":
        return "tcg"
    if driver == "kvm":
        if not os.access("/dev/kvm", os.R_OK | os.W_OK):
            raise HypervisorError(
                "libvirt.driver = \"kvm\" but /dev/kvm is not usable here",
                hint='remove the driver setting (vmctl picks KVM or TCG) or set libvirt.driver = "qemu"',
            )
        return "kvm"
    probe_kernel = kernel
    if probe_kernel is None:
        boot = sorted(Path("/boot").glob("vmlinuz-*"))
        probe_kernel = boot[-1] if boot else None
    return "kvm" if hypervisor.kvm_works(probe_kernel) else "tcg"


def _shipped_recipe_for(box: str) -> str | None:
    """The recipe shipped with vmctl that builds BOX (vmctl/NAME -> NAME), if any."""
    if not box.startswith("vmctl/"):
        return None
    name = box.split("/", 1)[1]
    here = Path(__file__).parent
    for folder in (here / "recipes" / name, here.parent / "boxes" / name):
        if folder.is_dir():
            return name
    return None
