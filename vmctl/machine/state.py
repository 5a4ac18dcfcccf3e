"""A machine's state: what lives where, the state file, the lock, and what libvirt says.

Where things are:
  PROJECT/.vmctl/machines/NAME/state.json   id, domain, ports, disks, what has been done
  PROJECT/.vmctl/machines/NAME/private_key  the machine key (0600 from creation)
  PROJECT/.vmctl/machines/NAME/known_hosts  the pinned host key
  VMCTL_HOME/machines/ID/                   the machine's disks (see disks.py) and console log
  VMCTL_HOME/index.json                     every machine on this host, with its ports

state.json is written atomically, always before the step it describes, so a killed
command leaves enough behind for the next one to finish (or undo) the job. It names paths
vmctl removes and a domain it destroys, so it is trusted only in vmctl's own shape and
when the machine index knows it; destroy removes only the files listed here.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vmctl import hypervisor, paths
from vmctl.errors import MachineError, StateError
from vmctl.machine.disks import (
    BOX_DISK,
    CONSOLE_FILE,
    MachineDisk,
    is_overlay,
)
from vmctl.state import IndexEntry, file_lock, load_index, read_json, write_json

if TYPE_CHECKING:
    from vmctl.vagrantfile.model import MachineConfig

log = logging.getLogger("vmctl.machine")


@dataclass
class ForwardState:
    id: str | None
    guest: int
    host: int
    host_ip: str
    protocol: str
    guest_ip: str | None = None  # the guest address QEMU forwards to (None: the guest's DHCP address)


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
    uuid: str | None = None  # the domain's; None: derived from the id (machines made before it was kept)
    root_grown: int | None = None  # the disk size the guest's root file system was last grown to
    # Every disk of the machine (disks.py), written before any of them is made.
    disks: list[MachineDisk] = field(default_factory=list)
    # The libvirt storage pool its disks are volumes of (daemon URIs); None: files in VMCTL_HOME.
    pool: str | None = None
    # The addresses the guest's DHCP NICs got when vmctl last configured them (MAC -> IPv4):
    # what status shows of a DHCP public_network, whose server vmctl cannot ask.
    dhcp_addresses: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> MachineState:
        """The state in DATA, checked: it names paths vmctl removes and a domain it
        destroys, so every such value must have the one shape vmctl gives it (ValueError)."""
        if not isinstance(data, dict):
            raise ValueError("not a JSON object")
        data = dict(data)
        data["forwards"] = [ForwardState(**f) for f in data.get("forwards", [])]
        machine_id = data.get("id")
        if not isinstance(machine_id, str) or not MACHINE_ID_RE.fullmatch(machine_id):
            raise ValueError(f"id {machine_id!r} is not a vmctl machine id")
        data["disks"] = [MachineDisk.from_json(d, machine_id) for d in data.get("disks", [])]
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
        if not is_overlay(home, self.disk) or self.console_log != str(home / CONSOLE_FILE):
            raise ValueError(f"its disk and console log are not in {home}")
        if not isinstance(self.uri, str) or any(c in self.uri for c in "\n\r\0"):
            raise ValueError("the libvirt URI is not a string")
        ports = [self.ssh_port, *(f.host for f in self.forwards), *(f.guest for f in self.forwards)]
        if any(isinstance(p, bool) or not isinstance(p, int) or not 0 <= p <= 65535 for p in ports):
            raise ValueError("a port is not a port number")
        if not isinstance(self.macs, list) or not all(isinstance(m, str) and MAC_RE.fullmatch(m) for m in self.macs):
            raise ValueError("a MAC address is not one")
        if not isinstance(self.dhcp_addresses, dict) or not all(
                isinstance(m, str) and MAC_RE.fullmatch(m) and isinstance(a, str) and _is_ipv4(a)
                for m, a in self.dhcp_addresses.items()):
            raise ValueError("a DHCP address is not one")
        if self.uuid is not None and not (isinstance(self.uuid, str) and UUID_RE.fullmatch(self.uuid)):
            raise ValueError(f"uuid {self.uuid!r} is not a UUID")
        if self.pool is not None:
            from vmctl import storage

            if storage.pool_name_problem(self.pool) is not None:
                raise ValueError(f"pool {self.pool!r} is not a storage pool name")

    def all_disks(self) -> list[MachineDisk]:
        """Every disk of the machine; for a machine made before vmctl kept the list, its one disk."""
        return self.disks or [MachineDisk(role="box", name="box", path=self.disk, target="vda", bus="virtio",
                                          format="qcow2")]


def _is_ipv4(text: str) -> bool:
    import ipaddress

    try:
        ipaddress.IPv4Address(text)
    except ValueError:
        return False
    return True


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
# vmctl's own names start with "vmctl-"; with libvirt.default_prefix a name is vagrant-libvirt's
# (prefix + machine name, reduced to these characters). destroy checks a domain's metadata
# before it removes it, whatever its name.
DOMAIN_NAME_RE = re.compile(r"[A-Za-z0-9_.][A-Za-z0-9_.-]{0,199}")
UUID_RE = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
MAC_RE = re.compile(r"[0-9a-f]{2}(:[0-9a-f]{2}){5}")
# What vmctl keeps in PROJECT/.vmctl/machines/NAME (and, in disks.py, in VMCTL_HOME/machines/ID):
# destroy removes these files and then the folder, never anything else. Overlays and saved
# states of snapshots (vmctl/machine/snapshots.py) are in VMCTL_HOME/machines/ID/snapshots.
DISK_FILE = BOX_DISK
SNAPSHOT_INDEX = "snapshots.json"
STATE_FILES = ("state.json", "private_key", "private_key.pub", "known_hosts", "insecure_private_key",
               SNAPSHOT_INDEX)
TEMP_PREFIXES = tuple(f".{name}." for name in STATE_FILES)  # state.write_atomic's temporary files


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", text).strip("-")[:40] or "project"



class StateMixin:
    """The state half of a Machine (see lifecycle.Machine)."""

    project_root: Path
    config: MachineConfig
    name: str
    dir: Path
    state_file: Path
    _state: MachineState | None
    _state_loaded: bool
    foreign_state: bool

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
    def locked(self, *, recover: bool = True) -> Iterator[None]:
        """Hold the machine's lock (non-blocking: MachineError "busy"). RECOVER: first
        finish (or undo) a snapshot command that was interrupted (snapshots.recover)."""
        with file_lock(
            self.lock_name(),
            wait=False,
            busy_message=f"machine {self.name} is busy: another vmctl command is working on it",
        ):
            self._state_loaded = False  # another process may have changed it
            if recover and (self.dir / SNAPSHOT_INDEX).exists():
                from vmctl.machine import snapshots

                snapshots.recover(self)  # type: ignore[arg-type]
            yield

    def interrupted(self) -> bool:
        """Whether an `up` that made the machine stopped before it was done (killed, or its
        libvirt host was lost and what it had made could not be removed) and no command is
        at work on it now: the next `up` removes the rest and starts over, `destroy` removes it."""
        st = self.state
        if st is None or st.phase == "created":
            return False
        try:
            with file_lock(self.lock_name(), wait=False):
                return True
        except MachineError:
            return False  # an up is at work on it

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

    def _index_entries(self) -> list[IndexEntry]:
        return [
            e for e in load_index().values()
            if e.project == str(self.project_root) and e.name == self.name
        ]  # fmt: skip

    def _remove_state_files(self) -> None:
        self._remove_owned(self.dir, STATE_FILES, temp_prefixes=TEMP_PREFIXES)

    @staticmethod
    def _remove_owned(folder: Path, names: tuple[str, ...], temp_prefixes: tuple[str, ...] = ()) -> None:
        left = paths.remove_owned_dir(folder, names, temp_prefixes=temp_prefixes)
        if left:
            log.warning("left %s in place: it holds files vmctl did not make (%s)", folder, ", ".join(sorted(left)[:5]))


def stopped_on_purpose(project: str, name: str) -> bool:
    """Whether machine NAME of the project in folder PROJECT was stopped on purpose (its
    state's `halted`), read without its Vagrantfile: global-status reports it poweroff
    where libvirt can only say crashed."""
    try:
        data = json.loads((paths.machine_state_dir(Path(project), name) / "state.json").read_bytes())
    except (OSError, ValueError, StateError):
        return False
    return isinstance(data, dict) and data.get("halted") is True

