"""Machines: the lifecycle (up, halt, reload, suspend, resume, provision, destroy) of one
machine of a project, on libvirt, with its state on disk.

Where things are:
  PROJECT/.vmctl/machines/NAME/state.json   id, domain, ports, what has been done
  PROJECT/.vmctl/machines/NAME/private_key  the machine key (0600 from creation)
  PROJECT/.vmctl/machines/NAME/known_hosts  the pinned host key
  VMCTL_HOME/machines/ID/disk.qcow2         the overlay on the box image
  VMCTL_HOME/machines/ID/console.log        the serial console
  VMCTL_HOME/index.json                     every machine on this host, with its ports

Crash safety: state.json and the index entry are written before the domain is defined,
so a killed `up` leaves enough behind for the next `up` or `destroy` to finish the job;
every destroy step is idempotent. A machine is locked (non-blocking) while a command
changes it, so a second command says "busy" instead of racing.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vmctl import domain, hypervisor, network, paths
from vmctl.errors import (
    BootTimeoutError,
    BoxError,
    HypervisorError,
    MachineError,
    ProvisionError,
    SSHError,
    StateError,
    VmctlError,
)
from vmctl.state import (
    IndexEntry,
    file_lock,
    index_lock,
    load_index,
    read_json,
    save_index,
    write_atomic,
    write_json,
)

if TYPE_CHECKING:
    from vmctl.ssh import Endpoint, Session
    from vmctl.vagrantfile.model import MachineConfig

log = logging.getLogger("vmctl.machine")

Emit = Callable[[str], None]

# Machines of one `up` that need the same missing box wait for the first to fetch it.
_box_fetch_lock = threading.Lock()


@dataclass
class ForwardState:
    id: str | None
    guest: int
    host: int
    host_ip: str
    protocol: str


@dataclass
class MachineState:
    id: str
    domain: str
    uri: str
    disk: str
    console_log: str
    ssh_port: int
    ssh_user: str
    box_name: str | None = None
    box_version: str | None = None
    forwards: list[ForwardState] = field(default_factory=list)
    macs: list[str] = field(default_factory=list)  # private network NICs, in order
    key_inserted: bool = False
    provisioned: bool = False
    # Set when vmctl stopped the machine: an embedded driver that was not connected when
    # QEMU exited can only report "shut off (crashed)" afterwards.
    halted: bool = False
    phase: str = "creating"  # creating -> created
    created: float = field(default_factory=time.time)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> MachineState:
        """The state in DATA, checked: it names paths vmctl removes and a domain it
        destroys, so every such value must have the one shape vmctl gives it (ValueError)."""
        if not isinstance(data, dict):
            raise ValueError("not a JSON object")
        data = dict(data)
        data["forwards"] = [ForwardState(**f) for f in data.get("forwards", [])]
        known = {f for f in cls.__dataclass_fields__}
        st = cls(**{k: v for k, v in data.items() if k in known})
        st.check()
        return st

    def check(self) -> None:
        if not isinstance(self.id, str) or not MACHINE_ID_RE.fullmatch(self.id):
            raise ValueError(f"id {self.id!r} is not a vmctl machine id")
        if not isinstance(self.domain, str) or not DOMAIN_NAME_RE.fullmatch(self.domain):
            raise ValueError(f"domain {self.domain!r} is not a vmctl domain name")
        home = paths.machines_dir() / self.id
        if self.disk != str(home / DISK_FILE) or self.console_log != str(home / CONSOLE_FILE):
            raise ValueError(f"its disk and console log are not in {home}")
        if not isinstance(self.uri, str) or any(c in self.uri for c in "\n\r\0"):
            raise ValueError("the libvirt URI is not a string")
        ports = [self.ssh_port, *(f.host for f in self.forwards), *(f.guest for f in self.forwards)]
        if any(isinstance(p, bool) or not isinstance(p, int) or not 0 <= p <= 65535 for p in ports):
            raise ValueError("a port is not a port number")
        if not isinstance(self.macs, list) or not all(isinstance(m, str) and MAC_RE.fullmatch(m) for m in self.macs):
            raise ValueError("a MAC address is not one")


class Timer:
    """Phase timings for --debug (define, start, wait for SSH, key swap, provision)."""

    def __init__(self, machine: str) -> None:
        self.machine = machine
        self.start = time.monotonic()
        self.last = self.start

    def mark(self, phase: str) -> None:
        now = time.monotonic()
        log.debug("timing: %s: %s %.0f ms", self.machine, phase, (now - self.last) * 1000)
        self.last = now

    def total(self) -> None:
        log.debug("timing: %s: total %.0f ms", self.machine, (time.monotonic() - self.start) * 1000)


MACHINE_ID_RE = re.compile(r"[0-9a-f]{12}")
DOMAIN_NAME_RE = re.compile(r"vmctl-[A-Za-z0-9_.-]{1,120}")
MAC_RE = re.compile(r"[0-9a-f]{2}(:[0-9a-f]{2}){5}")
# What vmctl keeps in VMCTL_HOME/machines/ID and PROJECT/.vmctl/machines/NAME: destroy
# removes these files and then the folder, never anything else.
DISK_FILE = "disk.qcow2"
CONSOLE_FILE = "console.log"
SEED_FILE = "cidata.iso"  # cloud-init's NoCloud seed, attached as a CD-ROM (vmctl/cloudinit.py)
MACHINE_HOME_FILES = (DISK_FILE, CONSOLE_FILE, SEED_FILE)
STATE_FILES = ("state.json", "private_key", "private_key.pub", "known_hosts", "insecure_private_key")
TEMP_PREFIXES = tuple(f".{name}." for name in STATE_FILES)  # state.write_atomic's temporary files


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", text).strip("-")[:40] or "project"


class Machine:
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
        self.deferred: list[tuple[int, Any]] = []

    # --- state ------------------------------------------------------------------------

    @property
    def state(self) -> MachineState | None:
        """The machine's state, None when not created. A state file that this host's vmctl
        did not write (its machine is not in the index: it came with the project's files,
        or outlived an interrupted destroy) is not trusted: it counts as no state
        (`foreign_state` says so), and `up` and `destroy` remove it."""
        if not self._state_loaded:
            self._state = None
            self.foreign_state = False
            data = read_json(self.state_file, None, what="machine state", follow_links=False)
            if data is not None:
                try:
                    st = MachineState.from_json(data)
                except (TypeError, KeyError, ValueError) as exc:
                    raise StateError(
                        f"the machine state {self.state_file} is not in the expected shape ({exc})",
                        hint=f"move it aside (mv {self.state_file} {self.state_file}.bad), "
                        "then run vmctl destroy or vmctl up again",
                    ) from exc
                if any(e.id == st.id and e.domain == st.domain for e in self._index_entries()):
                    self._state = st
                else:
                    log.debug("%s: ignoring state %s: machine %s is not in the index", self.name, self.state_file, st.id)
                    self.foreign_state = True
            self._state_loaded = True
        return self._state

    def save(self) -> None:
        assert self._state is not None
        self.dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        write_json(self.state_file, asdict(self._state), mode=0o600)

    def lock_name(self) -> str:
        key = f"{self.project_root}/{self.name}"
        return "machine-" + hashlib.sha256(key.encode()).hexdigest()[:16]

    @contextmanager
    def locked(self) -> Iterator[None]:
        with file_lock(
            self.lock_name(),
            wait=False,
            busy_message=f"machine {self.name} is busy: another vmctl command is working on it",
        ):
            self._state_loaded = False  # another process may have changed it
            yield

    @property
    def uri(self) -> str:
        if self.state is not None:
            return self.state.uri
        return hypervisor.resolve_uri(self.config.libvirt.uri)

    def status(self, conn: hypervisor.Connection | None = None, *, qemu_said: str | None = None) -> str:
        """The machine's state, from libvirt (CONN, or a connection opened here). QEMU_SAID
        is QEMU's own state read just before (see qemu_status())."""
        st = self.state
        if st is None:
            return hypervisor.NOT_CREATED
        if conn is not None:
            state = conn.state(st.domain)
        else:
            with hypervisor.connect(st.uri) as c:
                state = c.state(st.domain)
        state = hypervisor.settled_state(state, qemu_said, halted=st.halted)
        if qemu_said == "shutdown":
            self._remember_halted()  # libvirt will call it a crash from now on
        return state

    def _remember_halted(self) -> None:
        """Mark the machine stopped on purpose (MachineState.halted), unless another vmctl
        command is working on it (that one knows)."""
        with suppress(MachineError), self.locked():
            st = self.state
            if st is not None and not st.halted:
                st.halted = True
                self.save()

    def qemu_status(self) -> str | None:
        """QEMU's own run state, read without opening libvirt (hypervisor.qemu_status):
        "running" is the answer status needs; None or anything else means ask libvirt."""
        st = self.state
        return hypervisor.qemu_status(st.uri, st.domain) if st is not None else None

    def _qemu_running(self, conn: hypervisor.Connection | None = None) -> bool:
        """Cheap liveness for polling loops: the QEMU process, else libvirt's state."""
        st = self.require_state()
        alive = hypervisor.qemu_alive(st.uri, st.domain)
        if alive is not None:
            return alive
        return self.status(conn) in (hypervisor.RUNNING, hypervisor.PAUSED)

    # --- SSH --------------------------------------------------------------------------

    def endpoint(self) -> Endpoint:
        from vmctl.ssh import Endpoint, insecure_private_keys

        st = self.require_state()
        keys: list[Path] = []
        if self.config.ssh.private_key_path:
            keys += [self._project_path(p) for p in self.config.ssh.private_key_path]
        if self.key_file.exists():
            keys.append(self.key_file)
        keys += insecure_private_keys()
        return Endpoint(
            host="127.0.0.1",
            port=st.ssh_port,
            user=st.ssh_user,
            alias=f"vmctl-{st.id}",
            known_hosts=self.known_hosts,
            keys=tuple(keys),
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

    def require_state(self) -> MachineState:
        st = self.state
        if st is None:
            raise MachineError(
                f"machine {self.name} is not created",
                hint=f"create it with vmctl up {self.name}",
            )
        return st

    def require_running(self) -> MachineState:
        st = self.require_state()
        state = self.status()
        if state != hypervisor.RUNNING:
            raise MachineError(
                f"machine {self.name} is not running (it is {state})",
                hint=f"start it with vmctl up {self.name}",
            )
        return st

    def session(self, timeout: float = 15.0) -> Session:
        from vmctl import ssh

        return ssh.connect(self.endpoint(), timeout=timeout)

    # --- up ---------------------------------------------------------------------------

    def up(
        self,
        *,
        provision: bool | None,
        emit: Emit,
        emit_output: Emit,
        cancel: threading.Event | None = None,
        reload_config: Callable[[], MachineConfig] | None = None,
    ) -> None:
        with self.locked():
            self._triggers("before", "up", emit, emit_output)
            timer = Timer(self.name)
            st = self.state
            if st is not None and st.phase == "created":
                self._up_existing(st, provision=provision, emit=emit, emit_output=emit_output, timer=timer, cancel=cancel)
            else:
                self._up_new(provision=provision, emit=emit, emit_output=emit_output, timer=timer, cancel=cancel, reload_config=reload_config)
            timer.total()
            self._triggers("after", "up", emit, emit_output)

    def _up_existing(self, st: MachineState, *, provision: bool | None, emit: Emit, emit_output: Emit, timer: Timer, cancel: threading.Event | None) -> None:
        with hypervisor.connect(st.uri) as c:
            state = self.status(c)
            if state in (hypervisor.POWEROFF, hypervisor.CRASHED, hypervisor.SAVED, hypervisor.PAUSED):
                emit(f"==> {self.name}: {'resuming' if state in (hypervisor.SAVED, hypervisor.PAUSED) else 'booting'} the machine...")
                if state in (hypervisor.SAVED, hypervisor.PAUSED):
                    c.resume(st.domain)
                else:
                    self._start_with_port_retry(c, st, emit)
        if state == hypervisor.RUNNING:
            emit(f"==> {self.name}: machine already running.")
            if self._needs_key(st):  # an earlier up was interrupted before the key swap
                with self._ssh_session() as s:
                    self._insert_key(s, st, emit).close()
            if provision:
                with self._ssh_session() as s:
                    self._provision(s, emit=emit, emit_output=emit_output, forced=True, only=None)
            return
        if state == hypervisor.NOT_CREATED:
            # The domain vanished behind our back (someone ran virsh undefine): start over.
            emit(f"==> {self.name}: its domain is gone; creating the machine again.")
            self._cleanup()
            self._state = None
            self._up_new(provision=provision, emit=emit, emit_output=emit_output, timer=timer, cancel=cancel, reload_config=None)
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
            self._provision(session, emit=emit, emit_output=emit_output, forced=bool(provision), only=None, first_run=not st.provisioned, skip=provision is False)
            timer.mark("provision")
        finally:
            session.close()

    def _up_new(self, *, provision: bool | None, emit: Emit, emit_output: Emit, timer: Timer, cancel: threading.Event | None, reload_config: Callable[[], MachineConfig] | None) -> None:
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

        machine_id = uuid.uuid4().hex[:12]
        home_dir = paths.machines_dir() / machine_id
        home_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        dom_name = f"vmctl-{_slug(self.project_root.name)}-{_slug(self.name)}-{machine_id[:6]}"
        st = MachineState(
            id=machine_id,
            domain=dom_name,
            uri=hypervisor.resolve_uri(cfg.libvirt.uri),
            disk=str(home_dir / DISK_FILE),
            console_log=str(home_dir / CONSOLE_FILE),
            ssh_port=0,
            ssh_user=cfg.ssh.username,
            box_name=box.name,
            box_version=box.version,
            macs=[network.mac_for(machine_id, i + 1) for i in range(len(cfg.private_networks))],
        )
        self._state = st
        self._state_loaded = True
        try:
            self._reserve_ports(st, emit)
            self.save()
            emit(f"==> {self.name}: creating the machine from box {box.name} ({box.version})...")
            self._create_disk(box, Path(st.disk))
            timer.mark("disk")
            self._write_seed(box, st, emit)
            with hypervisor.connect(st.uri) as c:
                c.define(self._render(st))
                timer.mark("define")
                self._start_with_port_retry(c, st, emit)
            timer.mark("start")
            session = self._wait_ssh(st, cancel=cancel)
            timer.mark("wait for SSH")
        except BaseException as exc:
            # Nothing half-made: a new machine that never answered is removed again.
            emit(f"==> {self.name}: removing the machine that did not come up...")
            tail = self._console_tail() if isinstance(exc, (BootTimeoutError, HypervisorError)) else ""
            try:
                self._cleanup()
            except VmctlError as cleanup_exc:
                log.debug("cleanup failed: %s", cleanup_exc)
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
            self._provision(session, emit=emit, emit_output=emit_output, forced=bool(provision), only=None, first_run=True, skip=provision is False)
            timer.mark("provision")
        finally:
            session.close()
        emit(f"==> {self.name}: machine is ready (SSH on 127.0.0.1:{st.ssh_port}; log in with: vmctl ssh {self.name})")

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
        options = download_options(dl)
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
                options=options, server=store.server_url(dl.server_url),
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

    def _create_disk(self, box: Any, disk: Path) -> None:
        from vmctl.run import run

        fmt = box.image_format
        argv = ["qemu-img", "create", "-q", "-f", "qcow2", "-F", "raw" if fmt == "raw" else "qcow2", "-b", str(box.image), str(disk)]
        size = self.config.libvirt.machine_virtual_size
        if size:
            argv.append(f"{int(size)}G")
        run(argv, purpose="create the machine's disk overlay")
        os.chmod(disk, 0o600)

    def _render(self, st: MachineState) -> str:
        cfg = self.config
        kernel = Path(cfg.libvirt.kernel) if cfg.libvirt.kernel else None
        accel = _choose_accel(cfg.libvirt.driver, kernel)
        forwards = [domain.Forward("127.0.0.1", st.ssh_port, 22)]
        forwards += [domain.Forward(f.host_ip, f.host, f.guest, f.protocol) for f in st.forwards if f.id != "ssh"]
        nics = []
        for net, mac in zip(cfg.private_networks, st.macs, strict=False):
            group, port = network.mcast_group(self._segment(net))
            nics.append(domain.McastNic(mac=mac, group=group, port=port))
        spec = domain.DomainSpec(
            name=st.domain,
            uuid=str(uuid.uuid5(uuid.NAMESPACE_URL, f"vmctl:{st.id}")),
            memory_mib=cfg.memory,
            cpus=cfg.cpus,
            accel=accel,
            disk=Path(st.disk),
            console_log=Path(st.console_log),
            mac=network.mac_for(st.id, 0),
            forwards=tuple(forwards),
            private_nics=tuple(nics),
            kernel=kernel,
            initrd=Path(cfg.libvirt.initrd) if cfg.libvirt.initrd else None,
            cmdline=cfg.libvirt.cmd_line,
            project=str(self.project_root),
            machine=self.name,
            machine_id=st.id,
            cdrom=seed if (seed := Path(st.disk).parent / SEED_FILE).is_file() else None,
        )
        return domain.render_domain(spec)

    def _segment(self, net: Any) -> str:
        if net.name:
            return f"name:{net.name}"
        import ipaddress

        subnet = ipaddress.ip_interface(f"{net.ip}/{net.netmask}").network
        return f"project:{self.project_root}:{subnet}"

    # --- ports ------------------------------------------------------------------------

    def _reserve_ports(self, st: MachineState, emit: Emit, exclude: set[int] | None = None) -> None:
        """Choose host ports unique among every vmctl machine here, and record them."""
        exclude = exclude or set()
        with index_lock():
            entries = load_index()
            reserved = {p for e in entries.values() if e.id != st.id for p in e.ports} | exclude
            ssh_fwd = next((f for f in self.config.forwarded_ports if f.id == "ssh" or f.guest == 22 and f.id in (None, "ssh") and f.host), None)
            if ssh_fwd is not None and ssh_fwd.host and ssh_fwd.host not in reserved and network.port_is_free("127.0.0.1", ssh_fwd.host):
                ssh_port = ssh_fwd.host
            else:
                picked = network.pick_port(network.SSH_PORT_RANGE, reserved)
                if picked is None:
                    raise MachineError(
                        "no free port for SSH in 2200-2299",
                        hint="destroy machines you no longer need (vmctl global-status --prune)",
                    )
                ssh_port = picked
            reserved.add(ssh_port)
            forwards: list[ForwardState] = []
            for f in self.config.forwarded_ports:
                if f is ssh_fwd:
                    continue
                host = f.host
                if host is None or host in reserved or not network.port_is_free(f.host_ip, host):
                    if host is not None and not f.auto_correct:
                        raise MachineError(
                            f"host port {host} (forwarded to guest port {f.guest}) is already in use",
                            hint="choose another host port, or set auto_correct: true on the forwarded_port",
                        )
                    new = network.pick_port(network.AUTO_CORRECT_RANGE, reserved, f.host_ip)
                    if new is None:
                        raise MachineError(f"no free host port for guest port {f.guest}")
                    if host is not None:
                        emit(f"==> {self.name}: fixed port collision for {f.guest} => {host}: now on port {new}.")
                    host = new
                reserved.add(host)
                forwards.append(ForwardState(id=f.id, guest=f.guest, host=host, host_ip=f.host_ip, protocol=f.protocol))
            st.ssh_port = ssh_port
            st.forwards = forwards
            entries[st.id] = IndexEntry(
                id=st.id, name=self.name, project=str(self.project_root), domain=st.domain,
                uri=st.uri, box_name=st.box_name, box_version=st.box_version,
                ports=[ssh_port, *(f.host for f in forwards)],
            )  # fmt: skip
            save_index(entries)

    def _start_with_port_retry(self, c: hypervisor.Connection, st: MachineState, emit: Emit) -> None:
        """Start the domain; if a port was taken between choice and start, choose again."""
        if st.halted:
            st.halted = False
            self.save()
        for attempt in range(5):
            try:
                c.start(st.domain)
                return
            except HypervisorError as exc:
                if "host forwarding" not in exc.message and "Address already in use" not in exc.message:
                    raise
                if attempt == 4:
                    raise
                taken = {st.ssh_port, *(f.host for f in st.forwards)}
                busy = {p for p in taken if not network.port_is_free("127.0.0.1", p)}
                log.debug("start: ports %s taken meanwhile, choosing again", busy or taken)
                self._reserve_ports(st, emit, exclude=busy or taken)
                self.save()
                c.define(self._render(st))

    # --- boot, keys, guest configuration ----------------------------------------------

    def _wait_ssh(self, st: MachineState, *, cancel: threading.Event | None) -> Session:
        from vmctl import ssh, term

        def alive() -> bool:
            return self._qemu_running()

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

    def _configure_guest(self, session: Session, *, emit: Emit) -> None:
        from vmctl import guest

        cfg = self.config
        st = self.require_state()
        if cfg.hostname:
            guest.set_hostname(session, cfg.hostname)
        if cfg.private_networks:
            emit(f"==> {self.name}: configuring private networks...")
            guest.configure_private_networks(session, list(zip(cfg.private_networks, st.macs, strict=False)))
        self.sync_folders(session, emit=emit)

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
                             pin=read_pin(self.known_hosts, endpoint.alias))

    # --- cloud-init -------------------------------------------------------------------

    def _write_seed(self, box: Any, st: MachineState, emit: Emit) -> None:
        """cloud-init's seed (VMCTL_HOME/machines/ID/cidata.iso), when the Vagrantfile has
        config.vm.cloud_init or the box is a plain cloud image. For a cloud image the seed
        also makes the login user with the machine's key, so the key exists before boot."""
        from vmctl import cloudinit

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
        write_atomic(Path(st.disk).parent / SEED_FILE, data, mode=0o600)
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

    # --- halt, suspend, resume, reload ------------------------------------------------

    def halt(self, *, force: bool, emit: Emit, timeout: float = 60.0) -> None:
        with self.locked():
            self._triggers("before", "halt", emit, emit)
            self._halt(force=force, emit=emit, timeout=timeout)
            self._triggers("after", "halt", emit, emit)

    def _halt(self, *, force: bool, emit: Emit, timeout: float) -> None:
        from vmctl import guest

        st = self.state
        if st is None:
            emit(f"==> {self.name}: not created.")
            return
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
        with self.locked():
            st = self.require_running()
            self._triggers("before", "suspend", emit, emit)
            emit(f"==> {self.name}: saving the machine's memory and stopping it...")
            with hypervisor.connect(st.uri) as c:
                c.suspend(st.domain)
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
            self._wait_ssh(st, cancel=None).close()
            self._triggers("after", "resume", emit, emit_output)

    def reload(self, *, provision: bool | None, emit: Emit, emit_output: Emit) -> None:
        with self.locked():
            self._triggers("before", "reload", emit, emit_output)
            self._halt(force=False, emit=emit, timeout=60.0)
            st = self.require_state()
            timer = Timer(self.name)
            self._up_existing(st, provision=provision, emit=emit, emit_output=emit_output, timer=timer, cancel=None)
            self._triggers("after", "reload", emit, emit_output)

    def rsync(self, *, emit: Emit) -> None:
        self.require_running()
        with self._ssh_session() as s:
            self.sync_folders(s, emit=emit)

    # --- destroy ----------------------------------------------------------------------

    def destroy(self, *, emit: Emit) -> bool:
        """Remove the domain, the disk, the index entry and the project state.
        Running it again (or after a killed destroy) finishes what is left."""
        with self.locked():
            if self.state is None and not self._index_entries():
                self._remove_state_files()  # a shipped state, or a folder a user emptied
                return False
            self._triggers("before", "destroy", emit, emit)
            emit(f"==> {self.name}: destroying...")
            self._cleanup()
            self._triggers("after", "destroy", emit, emit)
            return True

    def _index_entries(self) -> list[IndexEntry]:
        return [
            e for e in load_index().values()
            if e.project == str(self.project_root) and e.name == self.name
        ]  # fmt: skip

    def _cleanup(self) -> None:
        st = self.state
        targets: list[tuple[str, str, str]] = []  # (id, domain, uri)
        if st is not None:
            targets.append((st.id, st.domain, st.uri))
        for e in self._index_entries():
            if (st is None or e.id != st.id) and MACHINE_ID_RE.fullmatch(e.id) and DOMAIN_NAME_RE.fullmatch(e.domain):
                targets.append((e.id, e.domain, e.uri))
        for machine_id, dom, uri in targets:
            with hypervisor.connect(uri) as c:
                c.destroy(dom, True)  # its disk goes next: nothing to flush
                c.undefine(dom)
            self._remove_owned(paths.machines_dir() / machine_id, MACHINE_HOME_FILES)
            if hypervisor.is_embedded(uri):
                # libvirt's own log of the domain's QEMU, which it never removes
                with suppress(FileNotFoundError):
                    (paths.libvirt_root() / "log" / "qemu" / f"{dom}.log").unlink()
            with index_lock():
                entries = load_index()
                if entries.pop(machine_id, None) is not None:
                    save_index(entries)
        self._remove_state_files()
        self._state = None
        self._state_loaded = True
        self.foreign_state = False

    def _remove_state_files(self) -> None:
        self._remove_owned(self.dir, STATE_FILES, temp_prefixes=TEMP_PREFIXES)

    @staticmethod
    def _remove_owned(folder: Path, names: tuple[str, ...], temp_prefixes: tuple[str, ...] = ()) -> None:
        left = paths.remove_owned_dir(folder, names, temp_prefixes=temp_prefixes)
        if left:
            log.warning("left %s in place: it holds files vmctl did not make (%s)", folder, ", ".join(sorted(left)[:5]))

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

    # --- reporting --------------------------------------------------------------------

    def status_json(self, state: str) -> dict[str, Any]:
        st = self.state
        if st is None:
            return {"name": self.name, "state": state, "domain": None, "ssh": None, "forwarded_ports": []}
        key = st.key_inserted and self.key_file.exists()
        return {
            "name": self.name,
            "state": state,
            "domain": st.domain,
            "ssh": {
                "host": "127.0.0.1",
                "port": st.ssh_port,
                "user": st.ssh_user,
                "private_key": str(self.key_file if key else self.dir / "insecure_private_key"),
            },
            "forwarded_ports": self.ports_json(),
        }

    def ports_json(self) -> list[dict[str, Any]]:
        st = self.require_state()
        ports = [{"id": "ssh", "guest": 22, "host": st.ssh_port, "host_ip": "127.0.0.1", "protocol": "tcp"}]
        ports += [asdict(f) for f in st.forwards]
        return ports


def stopped_on_purpose(project: str, name: str) -> bool:
    """Whether machine NAME of the project in folder PROJECT was stopped on purpose (its
    state's `halted`), read without its Vagrantfile: global-status reports it poweroff
    where libvirt can only say crashed."""
    try:
        data = json.loads((paths.machine_state_dir(Path(project), name) / "state.json").read_bytes())
    except (OSError, ValueError, StateError):
        return False
    return isinstance(data, dict) and data.get("halted") is True


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
