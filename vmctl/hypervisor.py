"""libvirt: one connection per command, opened late, closed explicitly.

The default is libvirt's embedded QEMU driver rooted in VMCTL_HOME/libvirt: nothing to
install or start beyond the packages. Only one process may hold an embedded root at a
time, so `connect()` holds a file lock for as long as the connection is open; callers
open it around libvirt calls only, never while waiting for SSH or provisioning.

libvirt errors are translated here into HypervisorError; nothing above this module sees
a libvirt.libvirtError.
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vmctl import paths
from vmctl.errors import HypervisorError, MissingToolError, VmctlError
from vmctl.libvirt_worker import OPS
from vmctl.state import file_lock, read_json, write_json

if TYPE_CHECKING:
    import subprocess

    import libvirt

log = logging.getLogger("vmctl.hypervisor")

_event_loop_started = False
_event_loop_lock = threading.Lock()

QEMU_CONF = """\
# Written by vmctl for its embedded libvirt root.
# QEMU writes its own stdio logs: there is no virtlogd without a daemon.
stdio_handler = "file"
# An embedded driver acts with the privileges of the process that embeds it: QEMU runs
# as the user running vmctl, so it can read boxes and overlays under VMCTL_HOME.
user = "+{uid}"
group = "+{gid}"
# So is swtpm, for emulated TPMs: their state (lib/swtpm) is the user's to remove.
swtpm_user = "+{uid}"
swtpm_group = "+{gid}"
# No owner-remembering xattrs: QEMU runs as our own user, so there is nothing to restore
# (and stale xattrs from an earlier driver instance make libvirt warn on stderr).
remember_owner = 0
# Every guest of an embedded root would share one CPU cgroup (/machine), which the kernel
# weighs as a single process against everything else on the host: under load, all the
# guests together got one process's share of the CPU and booted several times slower.
# The other controllers (memory limits, cpusets, devices) stay.
cgroup_controllers = [ "cpuset", "memory", "devices", "freezer", "blkio", "cpuacct" ]
"""


def resolve_uri(configured: str | None = None) -> str:
    """VMCTL_LIBVIRT_URI, else the machine file's libvirt.uri, else the embedded driver."""
    env = os.environ.get("VMCTL_LIBVIRT_URI")
    if env:
        return env
    if configured:
        return configured
    return f"qemu:///embed?root={paths.libvirt_root()}"


def is_embedded(uri: str) -> bool:
    return uri.startswith("qemu:///embed")


def _import_libvirt() -> Any:
    try:
        import libvirt
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise MissingToolError(
            "the libvirt Python bindings are not installed",
            hint="pip install libvirt-python (needs libvirt-dev and pkg-config to build)",
        ) from exc
    # libvirt prints every error to stderr by default; we translate them instead.
    libvirt.registerErrorHandler(lambda _ctx, _err: None, None)
    return libvirt


def _start_event_loop(libvirt: Any) -> None:
    """The embedded driver needs an event loop running in this process."""
    global _event_loop_started
    with _event_loop_lock:
        if _event_loop_started:
            return
        libvirt.virEventRegisterDefaultImpl()

        def loop() -> None:
            while True:
                libvirt.virEventRunDefaultImpl()

        threading.Thread(target=loop, name="libvirt-events", daemon=True).start()
        _event_loop_started = True


def _prepare_embedded_root(root: Path) -> None:
    conf = root / "etc" / "qemu.conf"
    text = QEMU_CONF.format(uid=os.getuid(), gid=os.getgid())
    if not conf.exists() or conf.read_text() != text:
        conf.parent.mkdir(parents=True, exist_ok=True)
        conf.write_text(text)
    # The embedded driver logs to stderr by default; keep its warnings in a file instead.
    log_file = root / "log" / "libvirt.log"
    log_file.parent.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("LIBVIRT_LOG_OUTPUTS", f"3:file:{log_file}")


def _embedded_root(uri: str) -> Path:
    from urllib.parse import parse_qs, urlparse

    root = parse_qs(urlparse(uri).query).get("root", [""])[0]
    if not root:
        raise HypervisorError(f"the libvirt URI {uri} names no root folder")
    return Path(root)


class _Shared:
    """One open connection per URI in this process, shared by threads while in use."""

    def __init__(self, connection: Connection | WorkerConnection, release: Any) -> None:
        self.connection = connection
        self.release = release
        self.refs = 0


_shared: dict[str, _Shared] = {}
_shared_lock = threading.RLock()


@contextmanager
def connect(uri: str) -> Iterator[Connection | WorkerConnection]:
    """An open libvirt connection, shared by this process's threads while any uses it.

    For the embedded driver the connection lives in a worker process (see
    vmctl.libvirt_worker) held under a file lock: the driver claims its root until the
    process that opened it exits, so the worker exits, and the lock is released, as soon
    as the last user here is done.
    """
    with _shared_lock:
        entry = _shared.get(uri)
        if entry is None:
            entry = _open_worker(uri) if is_embedded(uri) else _open_direct(uri)
            _shared[uri] = entry
        entry.refs += 1
    try:
        yield entry.connection
    finally:
        with _shared_lock:
            entry.refs -= 1
            if entry.refs == 0:
                del _shared[uri]
                entry.release()


def _open_direct(uri: str) -> _Shared:
    conn, close = open_in_process(uri)
    return _Shared(conn, close)


def open_in_process(uri: str) -> tuple[Connection, Any]:
    """Open URI in this process; returns the connection and its close function. For the
    embedded driver, only the worker process calls this."""
    libvirt = _import_libvirt()
    if is_embedded(uri):
        _start_event_loop(libvirt)
    conn = _open(libvirt, uri)
    return Connection(libvirt, conn, uri), lambda: _close(conn)


def _lock_name(root: Path) -> str:
    return "libvirt-" + hashlib.sha256(str(root).encode()).hexdigest()[:12]


def _open_worker(uri: str) -> _Shared:
    root = _embedded_root(uri)
    _prepare_embedded_root(root)
    from contextlib import ExitStack

    stack = ExitStack()
    lock_fd = stack.enter_context(file_lock(_lock_name(root)))
    try:
        worker = WorkerConnection.spawn(uri, root / "log" / "worker.log", lock_fd)
    except BaseException:
        stack.close()
        raise
    stack.callback(worker.terminate)
    return _Shared(worker, stack.close)


class _ForkedWorker:
    """The few Popen methods WorkerConnection uses, for a worker made with fork()."""

    def __init__(self, pid: int, stdin: Any, stdout: Any) -> None:
        self.pid = pid
        self.stdin = stdin
        self.stdout = stdout
        self.returncode: int | None = None

    def wait(self) -> int:
        if self.returncode is None:
            _, status = os.waitpid(self.pid, 0)
            self.returncode = os.waitstatus_to_exitcode(status)
        return self.returncode

    def kill(self) -> None:
        import signal

        with suppress(OSError):
            os.kill(self.pid, signal.SIGKILL)


def _fork_worker(uri: str, lock_fd: int) -> _ForkedWorker | None:
    """Fork the worker instead of starting a new interpreter (saves ~50 ms per command).
    Only from a single-threaded process: a fork copies no other thread, and a lock one
    of them held would stay locked forever in the child. The child keeps the root's lock
    (LOCK_FD) until it exits."""
    if threading.active_count() != 1 or not hasattr(os, "fork"):
        return None
    from vmctl import workers

    def serve(requests: Any, out: Any) -> int:
        from vmctl.libvirt_worker import serve

        return serve(uri, requests, out)

    pid, requests, replies = workers.fork(serve, keep_fd=lock_fd, log_file=_embedded_root(uri) / "log" / "worker.log")
    return _ForkedWorker(pid, requests, replies)


class WorkerConnection:
    """The Connection API, served by a vmctl.libvirt_worker process over a pipe."""

    defines = True  # as Connection's

    def __init__(self, proc: subprocess.Popen[str] | _ForkedWorker, uri: str) -> None:
        self._proc = proc
        self._lock = threading.Lock()
        self.uri = uri

    @classmethod
    def spawn(cls, uri: str, log_file: Path, lock_fd: int) -> WorkerConnection:
        """Start a worker. It inherits LOCK_FD, so the root stays locked until the worker
        has exited, even if this process is killed while the worker is still busy."""

        started = time.monotonic()
        log_file.parent.mkdir(parents=True, exist_ok=True)
        while True:
            forked = _fork_worker(uri, lock_fd)
            if forked is not None:
                worker = cls(forked, uri)
            else:
                worker = cls(cls._popen(uri, log_file, lock_fd), uri)
            try:
                worker._receive()
            except HypervisorError as exc:
                worker.terminate()
                # A driver of another process (an older vmctl) may still be letting go of
                # the root; a new worker succeeds once it has.
                if "driver.pid" in exc.message and time.monotonic() - started < 15:
                    time.sleep(0.2)
                    continue
                raise
            except BaseException:
                worker.terminate()
                raise
            log.debug("libvirt: worker for %s ready in %.0f ms", uri, (time.monotonic() - started) * 1000)
            return worker

    @staticmethod
    def _popen(uri: str, log_file: Path, lock_fd: int) -> subprocess.Popen[str]:
        import subprocess
        import sys

        with open(log_file, "ab") as err:
            return subprocess.Popen(
                [sys.executable, "-m", "vmctl.libvirt_worker", uri],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=err, text=True,
                pass_fds=(lock_fd,),
                start_new_session=True,  # Ctrl-C goes to vmctl, which then stops the worker
            )  # fmt: skip

    def terminate(self) -> None:
        """Tell the worker to finish. It shuts the driver down on its own (that takes a
        while) and keeps the root's lock until it has exited, so nobody waits for it here:
        the next opener of the root waits on the lock instead."""
        try:
            if self._proc.stdin:
                self._proc.stdin.close()
        except OSError:
            self._proc.kill()
        started = time.monotonic()

        def reap() -> None:
            self._proc.wait()
            log.debug("libvirt: worker exited after %.0f ms", (time.monotonic() - started) * 1000)

        threading.Thread(target=reap, name="libvirt-worker-reaper", daemon=True).start()

    def _receive(self) -> Any:
        import json

        from vmctl import errors

        assert self._proc.stdout is not None
        line = self._proc.stdout.readline()
        if not line:
            raise HypervisorError(
                "the libvirt worker exited unexpectedly",
                hint=f"see {_embedded_root(self.uri) / 'log' / 'worker.log'}",
            )
        reply = json.loads(line)
        if "error" in reply:
            err = reply["error"]
            cls = getattr(errors, err.get("type", ""), HypervisorError)
            if not (isinstance(cls, type) and issubclass(cls, VmctlError)):
                cls = HypervisorError
            raise cls(err["message"], hint=err.get("hint"))
        return reply["ok"]

    def _call(self, op: str, *args: Any) -> Any:
        import json

        with self._lock:
            assert self._proc.stdin is not None
            try:
                self._proc.stdin.write(json.dumps({"op": op, "args": list(args)}) + "\n")
                self._proc.stdin.flush()
            except OSError as exc:
                raise HypervisorError(f"the libvirt worker is gone: {exc}") from exc
            return self._receive()

    def __getattr__(self, op: str) -> Any:
        if op not in OPS:
            raise AttributeError(op)
        return lambda *args: self._call(op, *args)


def qemu_alive(uri: str, domain_name: str) -> bool | None:
    """Whether the QEMU process of an embedded-driver domain runs, without opening the
    driver (cheap enough to poll); None for other URIs, where libvirt must be asked."""
    if not is_embedded(uri):
        return None
    pid_file = _embedded_root(uri) / "run" / "qemu" / f"{domain_name}.pid"
    try:
        pid = int(pid_file.read_text().strip())
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (OSError, ValueError):
        return False
    return f"guest={domain_name},".encode() in cmdline or f"guest={domain_name}\0".encode() in cmdline


def qemu_status(uri: str, domain_name: str) -> str | None:
    """QEMU's own run state for an embedded-driver domain ("running", "shutdown" once the
    guest has powered itself off, "paused", ...), found out without opening the driver,
    which costs a worker process and 30-60 ms. Asked on QEMU's monitor under the root's
    lock, so no driver of ours holds the monitor. None when it cannot be told that way:
    another vmctl command holds the lock, no QEMU of this domain runs, another URI, no
    answer. Ask libvirt then."""
    if not qemu_alive(uri, domain_name):
        return None
    root = _embedded_root(uri)
    try:
        with file_lock(_lock_name(root), wait=False):
            status = _qmp_status(root, domain_name) if qemu_alive(uri, domain_name) else None
    except VmctlError:  # busy: another command has the driver open
        status = None
    log.debug("qemu: %s says %s (asked without libvirt)", domain_name, status or "nothing")
    return status


def settled_state(libvirt_state: str, qemu_said: str | None, *, halted: bool) -> str:
    """libvirt's state, given what QEMU said just before the driver was opened and whether
    vmctl recorded the machine as stopped on purpose (HALTED). An embedded driver that was
    not attached when QEMU exited can only say "crashed" afterwards. A guest that powered
    itself off leaves QEMU waiting in "shutdown" (it runs with -no-shutdown); libvirt,
    reconnecting, finishes the job (on_poweroff = destroy) but, having missed the guest's
    shutdown event, may report "running" until QEMU exits and "crashed" afterwards."""
    if qemu_said == "shutdown" or (libvirt_state == CRASHED and halted):
        return POWEROFF
    return libvirt_state


def _qmp_status(root: Path, domain_name: str) -> str | None:
    """QEMU's own run state (query-status), on the monitor socket named in libvirt's
    status file; None if it cannot be asked within half a second."""
    import json
    import re
    import socket

    try:
        status_xml = (root / "run" / "qemu" / f"{domain_name}.xml").read_text()
    except OSError:
        return None
    found = re.search(r"<monitor path='([^']+)' type='unix'", status_xml)
    if not found:
        return None
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(0.5)
            sock.connect(found.group(1))
            replies = sock.makefile("rb")

            def ask(command: str) -> Any:
                sock.sendall(json.dumps({"execute": command}).encode() + b"\n")
                for line in replies:
                    reply = json.loads(line)
                    if "return" in reply or "error" in reply:  # not an event
                        return reply.get("return")
                return None

            if "QMP" not in json.loads(replies.readline() or b"{}"):
                return None
            ask("qmp_capabilities")
            result = ask("query-status")
            return result.get("status") if isinstance(result, dict) else None
    except (OSError, ValueError):
        return None


@contextmanager
def connect_qemu(uri: str, domain_name: str) -> Iterator[QemuConnection | None]:
    """For a running domain of the embedded driver: a connection to its QEMU alone, on
    QEMU's monitor socket, with no libvirt driver started (that costs a worker process and
    the driver's start, 0.1 s or more, which a snapshot of a running machine would spend
    twice over the time QEMU needs). The root's lock is held meanwhile (waiting for
    another command's driver to finish), so no driver attaches to the monitor; the monitor
    is held by a child process (vmstate.QemuWorker) that finishes its request even if
    vmctl is killed. None when this cannot be: another URI, no QEMU running, a monitor
    that does not answer, or other threads in this process (no fork then)."""
    if not is_embedded(uri) or not qemu_alive(uri, domain_name) or threading.active_count() != 1:
        yield None
        return
    from vmctl import vmstate

    root = _embedded_root(uri)
    with file_lock(_lock_name(root)) as lock_fd:
        status = root / "run" / "qemu" / f"{domain_name}.xml"
        worker = None
        if qemu_alive(uri, domain_name):
            try:
                worker = vmstate.QemuWorker.spawn(status, lock_fd, root / "log" / "worker.log")
            except (OSError, HypervisorError) as exc:
                log.debug("qemu: no direct monitor for %s: %s", domain_name, exc)
        if worker is None:
            yield None
            return
        try:
            yield QemuConnection(worker, uri, domain_name)
        finally:
            worker.close()


class QemuConnection:
    """The part of the Connection API a running machine's snapshot needs, served by its
    QEMU directly (connect_qemu). libvirt's definition of the domain is not changed here:
    `define` is left to the next start (snapshots.ensure_defined)."""

    defines = False  # define() does nothing: callers need not render the XML

    def __init__(self, worker: Any, uri: str, name: str) -> None:
        self._worker = worker
        self.uri = uri
        self._name = name

    def _check(self, name: str) -> None:
        if name != self._name:
            raise HypervisorError(f"this connection is to {self._name}, not {name}")

    def state(self, name: str) -> str:
        self._check(name)
        status = self._worker.call("state")
        if status == "running":
            return RUNNING
        if status in ("shutdown", "guest-panicked"):
            return POWEROFF
        return PAUSED

    def disk_sources(self, name: str) -> dict[str, str]:
        self._check(name)
        return self._worker.call("disk_sources")  # type: ignore[no-any-return]

    def save_live(self, name: str, container: str, tag: str, overlays: dict[str, str]) -> None:
        self._check(name)
        self._worker.call("save_live", container=container, tag=tag, overlays=overlays)

    def load_live(self, name: str, container: str, tag: str, overlays: dict[str, str]) -> None:
        self._check(name)
        self._worker.call("load_live", container=container, tag=tag, overlays=overlays)

    def commit_live(self, name: str, target: str, base: str) -> None:
        self._check(name)
        self._worker.call("commit_live", target=target, base=base)

    def define(self, xml: str) -> None:
        del xml  # left to the next start

    def __getattr__(self, op: str) -> Any:
        if op.startswith("__"):
            raise AttributeError(op)
        raise HypervisorError(f"{op} needs libvirt, not only QEMU")


def _kill_qemu(uri: str, domain_name: str) -> None:
    if not qemu_alive(uri, domain_name):
        return
    import signal

    pid_file = _embedded_root(uri) / "run" / "qemu" / f"{domain_name}.pid"
    with suppress(OSError, ValueError):
        os.kill(int(pid_file.read_text().strip()), signal.SIGKILL)


@contextmanager
def _on_one_cpu() -> Iterator[None]:
    """Run on the lowest CPU of our set while libvirt opens: on some nested hosts each CPU
    reports a different CPUID, and libvirt then throws away its cached QEMU capabilities
    and probes QEMU again (about 4 s) whenever the opening thread lands on another CPU."""
    try:
        previous = os.sched_getaffinity(0)
        os.sched_setaffinity(0, {min(previous)})
    except (AttributeError, OSError):
        yield
        return
    try:
        yield
    finally:
        with suppress(OSError):
            os.sched_setaffinity(0, previous)


def _open(libvirt: Any, uri: str) -> Any:
    started = time.monotonic()
    try:
        if is_embedded(uri):
            with _on_one_cpu():
                conn = libvirt.open(uri)
        else:
            conn = libvirt.open(uri)
    except libvirt.libvirtError as exc:
        hint = "check that libvirt is installed and running"
        if "system" in uri:
            hint = "start the daemons (libvirtd -d; virtlogd -d) or use the default embedded driver"
        raise HypervisorError(f"could not connect to libvirt at {uri}: {exc}", hint=hint) from exc
    log.debug("libvirt: opened %s in %.0f ms", uri, (time.monotonic() - started) * 1000)
    return conn


def _close(conn: Any) -> None:
    try:
        refs = conn.close()
        if refs:
            # Domain objects still hold the connection: free them, or the embedded
            # driver (and its root) stays held until this process exits.
            import gc

            gc.collect()
        log.debug("libvirt: closed (%s references were left)", refs)
    except Exception:  # noqa: BLE001 - closing must never mask the real error
        log.debug("libvirt: close failed", exc_info=True)


# Domain states, in DESIGN.md's words.
NOT_CREATED = "not_created"
RUNNING = "running"
POWEROFF = "poweroff"
PAUSED = "paused"
SAVED = "saved"
CRASHED = "crashed"


class Connection:
    """The few libvirt operations vmctl needs, with errors translated."""

    defines = True  # define() defines the domain (QemuConnection's leaves it to the next start)

    def __init__(self, libvirt: Any, conn: libvirt.virConnect, uri: str) -> None:
        self._lv = libvirt
        self._conn = conn
        self.uri = uri

    def _domain(self, name: str) -> Any | None:
        try:
            return self._conn.lookupByName(name)
        except self._lv.libvirtError as exc:
            if exc.get_error_code() == self._lv.VIR_ERR_NO_DOMAIN:
                return None
            raise HypervisorError(f"libvirt could not look up {name}: {exc}") from exc

    def exists(self, name: str) -> bool:
        return self._domain(name) is not None

    def state(self, name: str) -> str:
        dom = self._domain(name)
        if dom is None:
            return NOT_CREATED
        lv = self._lv
        try:
            state, reason = dom.state()
            busy = (lv.VIR_DOMAIN_RUNNING, lv.VIR_DOMAIN_SHUTDOWN)
            if state in busy and qemu_alive(self.uri, name) is False:
                # Right after a reopen, the embedded driver still believes a domain whose
                # QEMU has exited is running, until its reconnect thread notices: wait.
                deadline = time.monotonic() + 5
                while state in busy and time.monotonic() < deadline:
                    time.sleep(0.05)
                    state, reason = dom.state()
            if state == lv.VIR_DOMAIN_RUNNING and is_embedded(self.uri) and self._powered_off(dom):
                return POWEROFF
            has_save = dom.hasManagedSaveImage() == 1
        except lv.libvirtError as exc:
            if exc.get_error_code() == lv.VIR_ERR_NO_DOMAIN:
                return NOT_CREATED
            raise HypervisorError(f"libvirt could not read the state of {name}: {exc}") from exc
        if state in (lv.VIR_DOMAIN_RUNNING, lv.VIR_DOMAIN_BLOCKED):
            return RUNNING
        if state in (lv.VIR_DOMAIN_PAUSED, lv.VIR_DOMAIN_PMSUSPENDED):
            return PAUSED
        if state == lv.VIR_DOMAIN_CRASHED:
            return CRASHED
        if state == lv.VIR_DOMAIN_SHUTOFF:
            if has_save:
                return SAVED
            if reason == lv.VIR_DOMAIN_SHUTOFF_CRASHED:
                return CRASHED
            return POWEROFF
        if state == lv.VIR_DOMAIN_SHUTDOWN:
            # Shutting down: still running until QEMU exits (or has it already?).
            return POWEROFF if qemu_alive(self.uri, name) is False else RUNNING
        return POWEROFF

    def _powered_off(self, dom: Any) -> bool:
        """Whether the guest powered itself off while no driver was attached: QEMU then
        waits in its "shutdown" state (libvirt runs it with -no-shutdown) and libvirt
        still says running. Finish the job as on_poweroff = destroy asks."""
        import json

        try:
            import libvirt_qemu

            reply = libvirt_qemu.qemuMonitorCommand(dom, '{"execute": "query-status"}', 0)
            status = json.loads(reply).get("return", {}).get("status")
        except (ImportError, ValueError, self._lv.libvirtError):
            return False
        if status != "shutdown":
            return False
        with suppress(self._lv.libvirtError):
            dom.destroy()
        return True

    def define(self, xml: str) -> None:
        try:
            self._conn.defineXML(xml)
        except self._lv.libvirtError as exc:
            raise HypervisorError(f"libvirt refused the domain definition: {exc}") from exc

    def start(self, name: str) -> None:
        dom = self._require(name)
        try:
            dom.create()
        except self._lv.libvirtError as exc:
            raise HypervisorError(f"QEMU could not start {name}: {_first_line(exc)}") from exc

    def shutdown(self, name: str, agent: bool = False) -> None:
        """Ask the guest to power off: by ACPI (it may ignore it), or with AGENT through the
        QEMU guest agent (an error when the agent does not answer)."""
        dom = self._domain(name)
        if dom is None:
            return
        if agent:
            try:
                dom.shutdownFlags(self._lv.VIR_DOMAIN_SHUTDOWN_GUEST_AGENT)
                return
            except self._lv.libvirtError as exc:
                if "disappeared" in str(exc):  # the agent went down with the guest: done
                    return
                if not is_embedded(self.uri) or "not connected" not in str(exc):
                    raise HypervisorError(f"the QEMU guest agent of {name} did not answer: {_first_line(exc)}",
                                          hint="is qemu-guest-agent installed and running in the guest?") from exc
            self._agent(dom, name, "guest-shutdown", {"mode": "powerdown"}, reply=False)
            return
        try:
            dom.shutdown()
        except self._lv.libvirtError as exc:
            if not self._not_running(exc):
                raise HypervisorError(f"libvirt could not shut down {name}: {exc}") from exc

    def pause(self, name: str) -> None:
        """Pause the guest in memory (libvirt.suspend_mode = "pause")."""
        dom = self._require(name)
        try:
            dom.suspend()
        except self._lv.libvirtError as exc:
            raise HypervisorError(f"libvirt could not pause {name}: {exc}") from exc

    def set_autostart(self, name: str, flag: bool) -> None:
        dom = self._require(name)
        try:
            if bool(dom.autostart()) != flag:
                dom.setAutostart(1 if flag else 0)
        except self._lv.libvirtError as exc:
            raise HypervisorError(f"libvirt could not set autostart of {name}: {exc}") from exc

    def agent_addresses(self, name: str) -> list[dict[str, Any]]:
        """The guest's interfaces and addresses, as its QEMU guest agent reports them."""
        found = self._agent(self._require(name), name, "guest-network-get-interfaces") or []
        return [
            {"interface": iface.get("name"), "mac": iface.get("hardware-address"),
             "addresses": [f"{a.get('ip-address')}/{a.get('prefix')}" for a in iface.get("ip-addresses") or []]}
            for iface in found if isinstance(iface, dict)
        ]

    def agent_ping(self, name: str) -> bool:
        """Whether the guest's QEMU guest agent answers."""
        try:
            self._agent(self._require(name), name, "guest-ping")
            return True
        except HypervisorError:
            return False

    def _agent(self, dom: Any, name: str, execute: str, arguments: dict[str, Any] | None = None, *,
               reply: bool = True) -> Any:
        """A QEMU guest agent command, through libvirt; for the embedded driver, which
        learns that the agent is up only from an event it may have missed while no vmctl
        command was attached, on the agent's socket itself."""
        import json

        lv = self._lv
        command = json.dumps({"execute": execute, **({"arguments": arguments} if arguments else {})})
        try:
            import libvirt_qemu

            flags = getattr(libvirt_qemu, "VIR_DOMAIN_QEMU_AGENT_COMMAND_NOWAIT", 0) if not reply else 0
            answer = libvirt_qemu.qemuAgentCommand(dom, command, 10, flags)
            return json.loads(answer).get("return") if reply and answer else None
        except (ImportError, lv.libvirtError, ValueError) as exc:
            if not is_embedded(self.uri) or "not connected" not in str(exc):
                raise HypervisorError(f"the QEMU guest agent of {name} did not answer: {_first_line(exc)}",
                                      hint="is qemu-guest-agent installed and running in the guest?") from exc
        path = _agent_socket(dom.XMLDesc(0))
        if path is None:
            raise HypervisorError(f"{name} has no QEMU guest agent channel", hint="set libvirt.qemu_use_agent = true")
        return agent_call(path, command, reply=reply)

    def destroy(self, name: str, discard: bool = False) -> None:
        """Stop at once (pull the plug). A domain that is not running is fine.

        libvirt stops QEMU with SIGTERM and waits (about 2 s under TCG), which lets QEMU
        flush its disk caches. When the disk is about to be deleted (DISCARD), there is
        nothing to flush: SIGKILL the QEMU process first."""
        dom = self._domain(name)
        if dom is None:
            return
        if discard:
            _kill_qemu(self.uri, name)
        try:
            dom.destroy()
        except self._lv.libvirtError as exc:
            if not self._not_running(exc):
                raise HypervisorError(f"libvirt could not stop {name}: {exc}") from exc

    def undefine(self, name: str, keep_nvram: bool = False) -> None:
        """KEEP_NVRAM: the NVRAM is a pool volume, which vmctl removes through the pool (a file
        removed behind a pool's back leaves the pool listing a volume that is gone)."""
        dom = self._domain(name)
        if dom is None:
            return
        lv = self._lv
        # NVRAM: the machine's copy of the variables store; TPM: swtpm's state (libvirt >= 8.9).
        nvram = lv.VIR_DOMAIN_UNDEFINE_KEEP_NVRAM if keep_nvram else lv.VIR_DOMAIN_UNDEFINE_NVRAM
        flags = lv.VIR_DOMAIN_UNDEFINE_MANAGED_SAVE | nvram
        flags |= getattr(lv, "VIR_DOMAIN_UNDEFINE_TPM", 0)
        try:
            dom.undefineFlags(flags)
        except lv.libvirtError as exc:
            if exc.get_error_code() != lv.VIR_ERR_NO_DOMAIN:
                raise HypervisorError(f"libvirt could not remove {name}: {exc}") from exc

    def suspend(self, name: str) -> None:
        """Save the memory to disk and stop (Vagrant's suspend on libvirt is a pause;
        managed save survives a host reboot and frees the memory)."""
        dom = self._require(name)
        try:
            dom.managedSave(0)
        except self._lv.libvirtError as exc:
            raise HypervisorError(f"libvirt could not suspend {name}: {exc}") from exc

    def resume(self, name: str) -> None:
        dom = self._require(name)
        lv = self._lv
        try:
            if dom.hasManagedSaveImage() == 1 or not dom.isActive():
                dom.create()
            else:
                dom.resume()
        except lv.libvirtError as exc:
            raise HypervisorError(f"libvirt could not resume {name}: {exc}") from exc

    # --- snapshots of running machines (vmctl/vmstate.py) ---------------------------

    def start_paused(self, name: str) -> None:
        """Start the domain with its vCPUs paused (from its managed save, if it has one)."""
        dom = self._require(name)
        try:
            dom.createWithFlags(self._lv.VIR_DOMAIN_START_PAUSED)
        except self._lv.libvirtError as exc:
            raise HypervisorError(f"QEMU could not start {name}: {_first_line(exc)}") from exc

    def save_live(self, name: str, container: str, tag: str, overlays: dict[str, str]) -> None:
        from vmctl import vmstate

        self._live(name, vmstate.save_live, container=container, tag=tag, overlays=overlays)

    def load_live(self, name: str, container: str, tag: str, overlays: dict[str, str]) -> None:
        from vmctl import vmstate

        self._live(name, vmstate.load_live, container=container, tag=tag, overlays=overlays)

    def commit_live(self, name: str, target: str, base: str) -> None:
        from vmctl import vmstate

        self._live(name, vmstate.commit_live, target=target, base=base)

    def disk_sources(self, name: str) -> dict[str, str] | None:
        """The file each disk of the running domain uses, as QEMU says; None if it is
        not running."""
        from vmctl import vmstate

        dom = self._domain(name)
        try:
            if dom is None or not dom.isActive():
                return None
        except self._lv.libvirtError:
            return None
        return self._live(name, vmstate.disk_sources)  # type: ignore[no-any-return]

    def _live(self, name: str, action: Any, **kwargs: Any) -> Any:
        from vmctl import vmstate

        dom = self._require(name)
        try:
            return action(vmstate.LibvirtMonitor(self._lv, dom), **kwargs)
        except self._lv.libvirtError as exc:
            raise HypervisorError(f"libvirt failed on {name}: {_first_line(exc)}") from exc

    def fix_saved_xml(self, name: str, sources: dict[str, str], formats: dict[str, str] | None = None) -> None:
        """Point the managed-save image's disks at SOURCES, of FORMATS (see vmstate.fix_saved_xml)."""
        from vmctl import vmstate

        dom = self._domain(name)
        try:
            if dom is None or dom.hasManagedSaveImage() != 1:
                return
            xml = dom.managedSaveGetXMLDesc(self._lv.VIR_DOMAIN_SAVE_IMAGE_XML_SECURE)
            dom.managedSaveDefineXML(vmstate.fix_saved_xml(xml, sources, formats), 0)
        except self._lv.libvirtError as exc:
            raise HypervisorError(f"libvirt could not update the saved state of {name}: {exc}") from exc

    def discard_saved(self, name: str) -> None:
        """Forget the domain's managed save (its memory saved by suspend)."""
        dom = self._domain(name)
        try:
            if dom is not None and dom.hasManagedSaveImage() == 1:
                dom.managedSaveRemove(0)
        except self._lv.libvirtError as exc:
            raise HypervisorError(f"libvirt could not discard the saved state of {name}: {exc}") from exc

    def xml(self, name: str) -> str | None:
        dom = self._domain(name)
        return dom.XMLDesc(0) if dom is not None else None

    # --- storage pools (vmctl/storage.py): daemon URIs only, never the embedded worker ----

    def _pool(self, name: str) -> Any | None:
        try:
            return self._conn.storagePoolLookupByName(name)
        except self._lv.libvirtError as exc:
            if exc.get_error_code() == self._lv.VIR_ERR_NO_STORAGE_POOL:
                return None
            raise HypervisorError(f"libvirt could not look up the storage pool {name}: {_first_line(exc)}") from exc

    def _require_pool(self, name: str) -> Any:
        pool = self._pool(name)
        if pool is None:
            raise HypervisorError(f"libvirt at {self.uri} has no storage pool named {name}",
                                  hint="set libvirt.storage_pool_name to an existing pool (virsh pool-list --all)")
        return pool

    def ensure_pool(self, name: str, path: str | None) -> None:
        """Pool NAME active and autostarted; defined as a directory pool in PATH (made by
        libvirt on its host) when it does not exist and PATH is given."""
        from vmctl import storage

        lv = self._lv
        pool = self._pool(name)
        try:
            if pool is None:
                if path is None:
                    raise HypervisorError(
                        f"libvirt at {self.uri} has no storage pool named {name}",
                        hint="make it (virsh pool-define-as NAME dir --target FOLDER; virsh pool-build NAME), or set "
                        "libvirt.storage_pool_path for vmctl to make it, or use the pool \"default\"")
                pool = self._conn.storagePoolDefineXML(storage.pool_xml(name, path), 0)
                log.debug("libvirt: defined the storage pool %s in %s", name, path)
                try:
                    pool.build(0)  # the folder, on the daemon's host
                except lv.libvirtError:
                    with suppress(lv.libvirtError):
                        pool.undefine()
                    raise
            if not pool.isActive():
                pool.create(0)
            if not pool.autostart():
                pool.setAutostart(1)
        except lv.libvirtError as exc:
            raise HypervisorError(f"libvirt could not make the storage pool {name} ready: {_first_line(exc)}") from exc

    def _volume(self, pool: str, name: str) -> Any | None:
        p = self._require_pool(pool)
        try:
            return p.storageVolLookupByName(name)
        except self._lv.libvirtError as exc:
            if exc.get_error_code() == self._lv.VIR_ERR_NO_STORAGE_VOL:
                return None
            raise HypervisorError(f"libvirt could not look up the volume {name} in {pool}: {_first_line(exc)}") from exc

    def volume_path(self, pool: str, name: str) -> str | None:
        """The path of volume NAME on the daemon's host; None if POOL has no such volume."""
        vol = self._volume(pool, name)
        return str(vol.path()) if vol is not None else None

    def volume_ctime(self, pool: str, name: str) -> float | None:
        """When volume NAME's file changed state last (seconds since the epoch), where the
        pool says (directory pools do); None otherwise, or if there is no such volume."""
        import xml.etree.ElementTree as ET

        vol = self._volume(pool, name)
        if vol is None:
            return None
        try:
            text = ET.fromstring(vol.XMLDesc(0)).findtext("target/timestamps/ctime")
            return float(text) if text else None
        except (self._lv.libvirtError, ET.ParseError, ValueError):
            return None

    def volume_capacity(self, pool: str, name: str) -> int | None:
        vol = self._volume(pool, name)
        return int(vol.info()[1]) if vol is not None else None

    def volume_names(self, pool: str, prefix: str) -> list[str]:
        p = self._require_pool(pool)
        try:
            p.refresh(0)
            return sorted(n for n in p.listVolumes() if n.startswith(prefix))
        except self._lv.libvirtError as exc:
            raise HypervisorError(f"libvirt could not list the volumes of {pool}: {_first_line(exc)}") from exc

    def volumes_backed_by(self, pool: str, path: str) -> list[str]:
        """The volumes of POOL whose backing file is PATH (overlays standing on it, whoever
        made them: libvirt reads each qcow2 header when the pool is refreshed)."""
        import xml.etree.ElementTree as ET

        p = self._require_pool(pool)
        try:
            p.refresh(0)
            volumes = p.listAllVolumes(0)
        except self._lv.libvirtError as exc:
            raise HypervisorError(f"libvirt could not list the volumes of {pool}: {_first_line(exc)}") from exc
        out = []
        for vol in volumes:
            try:
                backing = ET.fromstring(vol.XMLDesc(0)).findtext("backingStore/path")
            except (self._lv.libvirtError, ET.ParseError):
                continue  # gone meanwhile, or not readable: not standing on PATH as far as we know
            if backing == path:
                out.append(str(vol.name()))
        return sorted(out)

    def create_volume(self, pool: str, xml: str) -> str:
        """A new volume from XML (vmctl.storage.volume_xml); its path."""
        p = self._require_pool(pool)
        try:
            return str(p.createXML(xml, 0).path())
        except self._lv.libvirtError as exc:
            raise HypervisorError(f"libvirt could not make a volume in {pool}: {_first_line(exc)}") from exc

    def upload_volume(self, pool: str, name: str, local: str) -> str:
        """Volume NAME made with the bytes of the local file LOCAL, sent through
        libvirt's stream API: the daemon may run elsewhere and as another user. Its path."""
        from vmctl import storage

        size = os.path.getsize(local)
        p = self._require_pool(pool)
        lv = self._lv
        # Made raw with the file's size, then overwritten byte for byte: a qcow2 made first by
        # libvirt could be longer than the image sent into it.
        xml = storage.volume_xml(name, size, "raw")
        try:
            vol = p.createXML(xml, 0)
        except lv.libvirtError as exc:
            raise HypervisorError(f"libvirt could not make the volume {name} in {pool}: {_first_line(exc)}") from exc
        try:
            stream = self._conn.newStream(0)
            vol.upload(stream, 0, size, 0)
            with open(local, "rb") as source:
                stream.sendAll(lambda _s, n, f: f.read(n), source)
            stream.finish()
            p.refresh(0)  # libvirt learns the format (qcow2) of what it now holds
            return str(p.storageVolLookupByName(name).path())
        except (OSError, lv.libvirtError) as exc:
            with suppress(lv.libvirtError):
                vol.delete(0)
            raise HypervisorError(f"could not upload {local} into the pool {pool}: {_first_line(exc)}") from exc

    def resize_volume(self, pool: str, name: str, capacity: int) -> None:
        vol = self._volume(pool, name)
        if vol is None:
            raise HypervisorError(f"the pool {pool} has no volume {name}")
        try:
            vol.resize(capacity, 0)
        except self._lv.libvirtError as exc:
            raise HypervisorError(f"libvirt could not grow the volume {name}: {_first_line(exc)}") from exc

    def delete_volume(self, pool: str, name: str) -> bool:
        """Remove volume NAME from POOL; False if it was not there (a missing pool too)."""
        lv = self._lv
        if self._pool(pool) is None:
            return False
        vol = self._volume(pool, name)
        if vol is None:
            return False
        try:
            vol.delete(0)
        except lv.libvirtError as exc:
            if exc.get_error_code() == lv.VIR_ERR_NO_STORAGE_VOL:
                return False
            raise HypervisorError(f"libvirt could not remove the volume {name} from {pool}: "
                                  f"{_first_line(exc)}") from exc
        return True

    def free_memory(self) -> int:
        """The host's free memory in bytes (libvirt's getFreeMemory: all its NUMA nodes)."""
        try:
            return int(self._conn.getFreeMemory())
        except self._lv.libvirtError as exc:
            raise HypervisorError(f"libvirt could not tell the free memory of {self.uri}: {_first_line(exc)}") from exc

    # --- networks (vmctl/libvirtnet.py): daemon URIs only -----------------------------------

    def _network(self, name: str) -> Any | None:
        try:
            return self._conn.networkLookupByName(name)
        except self._lv.libvirtError as exc:
            if exc.get_error_code() == self._lv.VIR_ERR_NO_NETWORK:
                return None
            raise HypervisorError(f"libvirt could not look up the network {name}: {_first_line(exc)}") from exc

    def network_xml(self, name: str) -> str | None:
        net = self._network(name)
        return str(net.XMLDesc(0)) if net is not None else None

    def network_xmls(self) -> dict[str, str]:
        """Every network of the daemon (name -> XML)."""
        try:
            return {str(n.name()): str(n.XMLDesc(0)) for n in self._conn.listAllNetworks(0)}
        except self._lv.libvirtError as exc:
            raise HypervisorError(f"libvirt could not list its networks: {_first_line(exc)}") from exc

    def define_network(self, xml: str) -> bool:
        """Define the network XML describes, to start with the daemon; False when one of that
        name exists already (defined meanwhile by another process)."""
        lv = self._lv
        try:
            net = self._conn.networkDefineXML(xml)
        except lv.libvirtError as exc:
            if exc.get_error_code() == lv.VIR_ERR_NETWORK_EXIST or "already exists" in str(exc):
                return False
            raise HypervisorError(f"libvirt could not define the network: {_first_line(exc)}") from exc
        with suppress(lv.libvirtError):
            net.setAutostart(1)  # machines with libvirt.autostart find it after a reboot
        return True

    def start_network(self, name: str) -> None:
        net = self._network(name)
        if net is None:
            raise HypervisorError(f"libvirt has no network named {name}")
        try:
            if not net.isActive():
                net.create()
        except self._lv.libvirtError as exc:
            with suppress(self._lv.libvirtError):
                if net.isActive():
                    return  # started meanwhile by another vmctl (machines come up in parallel)
            raise HypervisorError(f"libvirt could not start the network {name}: {_first_line(exc)}",
                                  hint="see which interface or network holds that subnet (ip route; virsh "
                                  "net-list --all), or choose another subnet") from exc

    def remove_network(self, name: str) -> None:
        lv = self._lv
        net = self._network(name)
        if net is None:
            return
        try:
            if net.isActive():
                net.destroy()
            net.undefine()
        except lv.libvirtError as exc:
            if self._network(name) is not None:  # not removed meanwhile by another vmctl
                raise HypervisorError(f"libvirt could not remove the network {name}: {_first_line(exc)}") from exc

    def network_users(self, name: str) -> list[str]:
        """The domains (defined, running or not) with a NIC on the network NAME."""
        from vmctl import libvirtnet

        try:
            domains = self._conn.listAllDomains()
        except self._lv.libvirtError as exc:
            raise HypervisorError(f"libvirt could not list domains: {_first_line(exc)}") from exc
        users = []
        for dom in domains:
            try:
                xml = dom.XMLDesc(self._lv.VIR_DOMAIN_XML_INACTIVE)
            except self._lv.libvirtError:
                continue  # undefined meanwhile
            if name in libvirtnet.used_networks(xml):
                users.append(str(dom.name()))
        return users

    def network_leases(self, name: str, mac: str) -> list[str]:
        """The IPv4 addresses the network's DHCP server leased to MAC."""
        net = self._network(name)
        if net is None:
            return []
        try:
            leases = net.DHCPLeases(mac.lower())
        except self._lv.libvirtError as exc:
            raise HypervisorError(f"libvirt could not read the leases of {name}: {_first_line(exc)}") from exc
        return [str(x["ipaddr"]) for x in leases if x.get("type") == self._lv.VIR_IP_ADDR_TYPE_IPV4]

    def domain_names(self, prefix: str = "") -> list[str]:
        try:
            return sorted(
                d.name() for d in self._conn.listAllDomains() if d.name().startswith(prefix)
            )
        except self._lv.libvirtError as exc:
            raise HypervisorError(f"libvirt could not list domains: {exc}") from exc

    def machine_domain_xmls(self) -> dict[str, str]:
        """The XML of every domain the connection sees that vmctl made (its metadata says
        so), running or not, by name: what another user's vmctl on a shared host holds."""
        from vmctl.domain import parse_machine_metadata

        try:
            domains = self._conn.listAllDomains()
        except self._lv.libvirtError as exc:
            raise HypervisorError(f"libvirt could not list domains: {_first_line(exc)}") from exc
        out = {}
        for dom in domains:
            try:
                xml = dom.XMLDesc(0)
                name = str(dom.name())
            except self._lv.libvirtError:
                continue  # undefined meanwhile
            if parse_machine_metadata(xml) is not None:
                out[name] = xml
        return out

    def find_machine_domain(self, project: str, machine: str) -> str | None:
        """The domain vmctl made for MACHINE of PROJECT, found by its metadata (used when
        the project's state file is lost or corrupt)."""
        from vmctl.domain import parse_machine_metadata

        try:
            domains = self._conn.listAllDomains()
        except self._lv.libvirtError as exc:
            raise HypervisorError(f"libvirt could not list domains: {exc}") from exc
        for dom in domains:
            try:
                meta = parse_machine_metadata(dom.XMLDesc(0))
            except self._lv.libvirtError:
                continue
            if meta and meta.get("project") == project and meta.get("name") == machine:
                return str(dom.name())
        return None

    def _require(self, name: str) -> Any:
        dom = self._domain(name)
        if dom is None:
            raise HypervisorError(f"libvirt has no domain named {name}")
        return dom

    def _not_running(self, exc: Any) -> bool:
        # Right after a reopen of an embedded root the state can still be settling:
        # "domain is not running" from destroy means the job is already done.
        return exc.get_error_code() in (self._lv.VIR_ERR_OPERATION_INVALID, self._lv.VIR_ERR_NO_DOMAIN)


def _agent_socket(xml: str) -> str | None:
    """The host socket of a domain's QEMU guest agent channel, from its live XML."""
    import xml.etree.ElementTree as ET

    try:
        root = ET.fromstring(xml)
    except ET.ParseError:
        return None
    for ch in root.iter("channel"):
        target, source = ch.find("target"), ch.find("source")
        if target is not None and source is not None and (target.get("name") or "").startswith("org.qemu.guest_agent."):
            return source.get("path")
    return None


def agent_call(path: str, command: str, *, reply: bool = True, timeout: float = 10.0) -> Any:
    """COMMAND (JSON) on the QEMU guest agent's socket PATH, after a guest-sync that skips
    whatever an earlier client left unread; its "return" (None without REPLY)."""
    import json
    import random
    import socket

    token = random.randrange(1, 2**31)
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(timeout)
            sock.connect(path)
            replies = sock.makefile("rb")
            sock.sendall(json.dumps({"execute": "guest-sync", "arguments": {"id": token}}).encode() + b"\n")
            for line in replies:
                with suppress(ValueError):
                    if json.loads(line.lstrip(b"\xff")).get("return") == token:
                        break
            else:
                raise HypervisorError("the QEMU guest agent closed its channel")
            sock.sendall(command.encode() + b"\n")
            if not reply:
                return None
            for line in replies:
                answer = json.loads(line.lstrip(b"\xff"))
                if "error" in answer:
                    raise HypervisorError(f"the QEMU guest agent refused {command[:60]}: "
                                          f"{answer['error'].get('desc', answer['error'])}")
                if "return" in answer:
                    return answer["return"]
            raise HypervisorError("the QEMU guest agent closed its channel")
    except (OSError, ValueError) as exc:
        raise HypervisorError(f"the QEMU guest agent did not answer: {exc}",
                              hint="is qemu-guest-agent installed and running in the guest?") from exc


def _first_line(exc: Exception) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


# --- KVM or TCG ------------------------------------------------------------------------

def kvm_works(kernel: Path | None) -> bool:
    """Whether KVM can really boot a Linux kernel here, not merely whether /dev/kvm exists.

    A nested PVM hypervisor exposes /dev/kvm but hangs ordinary guest kernels, so the
    probe boots KERNEL with no root disk under KVM: a working KVM panics ("no root") and
    QEMU exits within a second; a broken one hangs and the probe times out. The answer is
    cached per host kernel and QEMU binary.
    """
    if os.environ.get("VMCTL_KVM") in ("0", "1"):
        return os.environ["VMCTL_KVM"] == "1"
    if not os.access("/dev/kvm", os.R_OK | os.W_OK):
        return False
    qemu = _qemu_binary()
    if qemu is None or kernel is None or not kernel.exists():
        return False
    key = f"{os.uname().release}:{qemu}:{os.stat(qemu).st_mtime_ns}"
    cache_file = paths.vmctl_home() / "kvm-probe.json"
    try:
        cached = read_json(cache_file, {})
    except VmctlError:
        cached = {}
    if isinstance(cached, dict) and cached.get("key") == key:
        return bool(cached.get("works"))
    works = _probe_kvm(qemu, kernel)
    write_json(cache_file, {"key": key, "works": works})
    log.debug("kvm probe: %s", "works" if works else "does not boot a kernel, using TCG")
    return works


def _qemu_binary() -> str | None:
    import shutil

    return shutil.which("qemu-system-x86_64")


def _probe_kvm(qemu: str, kernel: Path, timeout: float = 4.0) -> bool:
    import subprocess

    argv = [
        qemu, "-accel", "kvm", "-cpu", "host", "-m", "128", "-nodefaults", "-display", "none",
        "-no-reboot", "-serial", "stdio", "-kernel", str(kernel),
        "-append", "console=ttyS0 panic=-1 loglevel=1",
    ]  # fmt: skip
    try:
        proc = subprocess.run(
            argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            timeout=timeout, check=False,
        )  # fmt: skip
    except subprocess.TimeoutExpired:
        return False
    except OSError:
        return False
    return proc.returncode == 0 and b"Kernel panic" in proc.stdout
