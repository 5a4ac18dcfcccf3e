"""A running machine's snapshot, taken and loaded inside its own QEMU process.

vmctl's snapshots are its own qcow2 overlays, not libvirt's snapshots (libvirt 9.0 cannot
revert external snapshots and refuses internal ones for UEFI machines). For a running
machine, memory and disks must be captured at one instant, and a restore must not cost a
new QEMU: on some hosts the exit of a QEMU process alone takes seconds (libvirt waits until
the host's init has reaped it). So both happen in the QEMU that runs, through QMP:

  save: pause; QEMU writes the machine's state (memory and devices: its migration stream)
        into a small qcow2 file of its own (`snapshot-save` with that file as the only
        device, so no disk of the machine is touched); each disk continues on a new overlay
        (`blockdev-snapshot`, in one transaction), the old top becoming the read-only layer
        the snapshot keeps; resume. The guest never notices.
  load: pause; each disk is switched to a new overlay on the snapshot's layer (a
        `blockdev-mirror` with sync=none that copies nothing, completed at once: QEMU's way
        to swap the image under a running device); the nodes of the old images are closed;
        `snapshot-load` reads the machine's state back; resume.
  commit: the active overlay merged into its backing layer, which becomes the active
        image (`block-commit` of the active layer), so deleting a snapshot whose layer the
        running machine reads keeps its chain short.

QMP reaches QEMU two ways (Monitor): through libvirt's passthrough (LibvirtMonitor, any
URI), or, for libvirt's embedded driver while no driver is attached, on QEMU's monitor
socket (SocketMonitor), which saves starting libvirt at all. Either way the work is one
request to a worker process (the libvirt worker, or QemuWorker here) that finishes it even
if vmctl is killed, so the next command only has to read the result
(vmctl/machine/snapshots.py).

libvirt is not told about the disk switches: its live view of the disks goes stale (the
images on disk are the truth). vmctl defines the domain again with its current overlays
before it next starts (snapshots.ensure_defined), and rewrites the XML inside a managed-save
image (`fix_saved_xml`), the one place libvirt would carry that stale view over. Files are
never renamed while QEMU has them open: QEMU reopens an image by its name when it changes it
from read-write to read-only.
"""

from __future__ import annotations

import json
import logging
import secrets
import time
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

from vmctl.errors import HypervisorError

log = logging.getLogger("vmctl.vmstate")

JOB_TIMEOUT = 900.0  # seconds; writing gigabytes of memory on a slow disk


class Monitor:
    """QMP commands to one domain's QEMU, errors translated. Two ways in: through libvirt
    (LibvirtMonitor), or, for libvirt's embedded driver while no driver is attached (the
    root's lock held), on QEMU's own monitor socket (SocketMonitor), which saves starting
    libvirt."""

    def execute(self, message: dict[str, Any]) -> dict[str, Any]:
        raise NotImplementedError

    def pause(self) -> bool:
        """Pause the guest's vCPUs; whether they were running."""
        raise NotImplementedError

    def resume(self) -> None:
        raise NotImplementedError

    def xml(self) -> str:
        """The domain's live XML, as libvirt knows it."""
        raise NotImplementedError

    def __call__(self, command: str, **arguments: Any) -> Any:
        message: dict[str, Any] = {"execute": command}
        if arguments:
            message["arguments"] = arguments
        reply = self.execute(message)
        if "error" in reply:
            raise QMPError(command, reply["error"].get("desc", str(reply["error"])))
        return reply.get("return")

    def running(self) -> bool:
        return bool(self("query-status").get("running"))

    def wait_job(self, job_id: str, what: str, until: str = "concluded") -> dict[str, Any]:
        """Wait for job JOB_ID (which does WHAT) to reach state UNTIL ("ready" or
        "concluded"); a concluded job is dismissed and its error raised."""
        deadline = time.monotonic() + JOB_TIMEOUT
        delay = 0.002
        while time.monotonic() < deadline:
            job = next((j for j in self("query-jobs") if j.get("id") == job_id), None)
            if job is None:
                raise HypervisorError(f"QEMU's job {job_id} disappeared")
            if job["status"] == "concluded":
                self("job-dismiss", id=job_id)
                if job.get("error"):
                    raise QMPError(what, job["error"])
                return job
            if job["status"] == until:
                return job
            time.sleep(delay)
            delay = min(delay * 2, 0.02)
        raise HypervisorError(f"QEMU's job {job_id} did not finish within {JOB_TIMEOUT:.0f} s")


class LibvirtMonitor(Monitor):
    """Through libvirt's monitor passthrough (libvirt_qemu.qemuMonitorCommand); pausing and
    resuming through libvirt, so it knows."""

    def __init__(self, libvirt: Any, dom: Any) -> None:
        self._lv = libvirt
        self._dom = dom

    def execute(self, message: dict[str, Any]) -> dict[str, Any]:
        import libvirt_qemu

        try:
            return json.loads(libvirt_qemu.qemuMonitorCommand(self._dom, json.dumps(message), 0))  # type: ignore[no-any-return]
        except self._lv.libvirtError as exc:
            raise HypervisorError(f"libvirt could not pass {message['execute']} to QEMU: {exc}") from exc

    def pause(self) -> bool:
        was_running = self._dom.state()[0] == self._lv.VIR_DOMAIN_RUNNING
        if was_running:
            self._dom.suspend()
        return was_running

    def resume(self) -> None:
        self._dom.resume()

    def xml(self) -> str:
        return str(self._dom.XMLDesc(0))


class SocketMonitor(Monitor):
    """QEMU's monitor socket, as libvirt's embedded driver left it (its path in libvirt's
    status file for the domain). Only while no libvirt driver is attached: QEMU serves
    one client, and the caller holds the embedded root's lock. The guest's run state is
    QEMU's; a libvirt driver attaching later reads it from QEMU."""

    def __init__(self, status_file: Path) -> None:
        import re
        import socket

        self._status_file = status_file
        text = status_file.read_text()
        found = re.search(r"<monitor path='([^']+)' type='unix'", text)
        if not found:
            raise HypervisorError(f"no monitor socket in {status_file}")
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._sock.settimeout(JOB_TIMEOUT)
        try:
            self._sock.connect(found.group(1))
            self._lines = self._sock.makefile("rb")
            greeting = json.loads(self._lines.readline() or b"{}")
            if "QMP" not in greeting:
                raise HypervisorError("QEMU's monitor did not greet")
            self("qmp_capabilities")
        except (OSError, ValueError) as exc:
            self.close()
            raise HypervisorError(f"could not talk to QEMU's monitor: {exc}") from exc
        self._next = 0

    def close(self) -> None:
        import contextlib

        with contextlib.suppress(OSError):
            self._sock.close()

    def execute(self, message: dict[str, Any]) -> dict[str, Any]:
        self._next = getattr(self, "_next", 0) + 1
        ident = f"vmctl-{self._next}"
        try:
            self._sock.sendall(json.dumps({**message, "id": ident}).encode() + b"\n")
            for line in self._lines:
                reply = json.loads(line)
                if reply.get("id") == ident:
                    return reply  # type: ignore[no-any-return]
        except (OSError, ValueError) as exc:
            raise HypervisorError(f"QEMU's monitor failed on {message['execute']}: {exc}") from exc
        raise HypervisorError(f"QEMU's monitor closed during {message['execute']}")

    def pause(self) -> bool:
        was_running = self.running()
        if was_running:
            self("stop")
        return was_running

    def resume(self) -> None:
        self("cont")

    def xml(self) -> str:
        return self._status_file.read_text()


class QMPError(HypervisorError):
    def __init__(self, what: str, desc: str) -> None:
        hint = None
        if "No space left" in desc:
            hint = "free some disk space where VMCTL_HOME is, then run the command again"
        super().__init__(f"QEMU could not {what}: {desc}", hint=hint)


def _name(prefix: str) -> str:
    """A node or job name of vmctl's own (libvirt's start with `libvirt-`)."""
    return f"vmctl-{prefix}-{secrets.token_hex(4)}"


def _aliases(mon: Monitor) -> dict[str, str]:
    """Disk target (vda) -> libvirt's device alias (virtio-disk0), from the live XML."""
    root = ET.fromstring(mon.xml())
    found = {}
    for disk in root.iter("disk"):
        target, alias = disk.find("target"), disk.find("alias")
        if target is not None and alias is not None:
            found[target.get("dev", "")] = alias.get("name", "")
    return found


def roots(mon: Monitor) -> dict[str, tuple[str, str]]:
    """Disk target -> (node name, file name) of the image its device uses now."""
    aliases = _aliases(mon)
    by_alias = {}
    for block in mon("query-block"):
        inserted = block.get("inserted")
        qdev = block.get("qdev") or ""
        if inserted:
            by_alias[qdev.split("/")[3] if qdev.startswith("/machine/peripheral/") else qdev] = (
                inserted["node-name"], inserted["file"])
    return {target: by_alias[alias] for target, alias in aliases.items() if alias in by_alias}


def disk_sources(mon: Monitor) -> dict[str, str]:
    """Disk target -> the file its running device writes to (what QEMU says, not libvirt)."""
    return {t: f for t, (_, f) in roots(mon).items()}


def settle_jobs(mon: Monitor) -> None:
    """End the jobs an earlier vmctl left in QEMU (a worker killed along with vmctl): a
    disk swap or merge waiting to be completed is cancelled (the disk stays where it was),
    any other is waited for; all are dismissed."""
    deadline = time.monotonic() + JOB_TIMEOUT
    while time.monotonic() < deadline:
        jobs = [j for j in mon("query-jobs") if str(j.get("id", "")).startswith("vmctl-")]
        if not jobs:
            return
        for job in jobs:
            if job["status"] == "concluded":
                _quietly(mon, "job-dismiss", id=job["id"])
            elif job["status"] == "ready":
                _quietly(mon, "job-cancel", id=job["id"])
        time.sleep(0.01)


def save_live(mon: Monitor, *, container: str, tag: str, overlays: dict[str, str]) -> None:
    """Snapshot a running (or paused) domain: its state into CONTAINER (an empty qcow2
    file) under TAG, each disk target in OVERLAYS continued on that new overlay (made by
    the caller with the current image as its backing file). On failure nothing changed:
    the disks stay on their images and the guest runs as before."""
    settle_jobs(mon)
    current = roots(mon)
    missing = sorted(set(overlays) - set(current))
    if missing:
        raise HypervisorError(f"QEMU has no disk {', '.join(missing)}")
    was_running = mon.pause()
    try:
        node = _name("state")
        mon("blockdev-add", driver="qcow2", **{"node-name": node},
            file={"driver": "file", "filename": container})
        try:
            job = _name("save")
            mon("snapshot-save", **{"job-id": job, "tag": tag, "vmstate": node, "devices": [node]})
            mon.wait_job(job, "save the machine's state")
        finally:
            _quietly(mon, "blockdev-del", **{"node-name": node})
        added = []
        try:
            actions = []
            for target, path in overlays.items():
                name = _name("top")
                mon("blockdev-add", driver="qcow2", backing=None, **{"node-name": name},
                    file={"driver": "file", "filename": path})
                added.append(name)
                actions.append({"type": "blockdev-snapshot",
                                "data": {"node": current[target][0], "overlay": name}})
            mon("transaction", actions=actions)
        except BaseException:
            for name in added:
                _quietly(mon, "blockdev-del", **{"node-name": name})
            raise
    finally:
        if was_running:
            mon.resume()


def load_live(mon: Monitor, *, container: str, tag: str, overlays: dict[str, str]) -> None:
    """Bring a domain back to the state saved in CONTAINER under TAG: each disk target in
    OVERLAYS is switched to that overlay (made by the caller on the snapshot's layer)
    unless it already uses it, the images it leaves are closed, the state is loaded, and
    the guest runs."""
    mon.pause()
    settle_jobs(mon)
    current = roots(mon)
    for target, path in overlays.items():
        if target not in current:
            raise HypervisorError(f"QEMU has no disk {target}")
        if current[target][1] != path:
            _pivot(mon, current[target][0], path)
    close_unused(mon)
    node = _name("state")
    mon("blockdev-add", driver="qcow2", **{"node-name": node},
        file={"driver": "file", "filename": container})
    try:
        job = _name("load")
        mon("snapshot-load", **{"job-id": job, "tag": tag, "vmstate": node, "devices": [node]})
        mon.wait_job(job, "load the machine's state")
    finally:
        _quietly(mon, "blockdev-del", **{"node-name": node})
    mon.resume()


def _pivot(mon: Monitor, source: str, path: str) -> None:
    """Make the device using node SOURCE use the image PATH (and its backing chain, opened
    from its header) instead, copying nothing."""
    target = _name("top")
    mon("blockdev-add", driver="qcow2", **{"node-name": target}, file={"driver": "file", "filename": path})
    job = _name("pivot")
    try:
        mon("blockdev-mirror", **{"job-id": job, "device": source, "target": target, "sync": "none",
                                  "auto-dismiss": False})
    except BaseException:
        _quietly(mon, "blockdev-del", **{"node-name": target})
        raise
    mon.wait_job(job, "switch the disk to another image", "ready")
    mon("job-complete", id=job)
    mon.wait_job(job, "switch the disk to another image")


def commit_live(mon: Monitor, *, target: str, base: str) -> None:
    """Merge disk TARGET's active overlay into its backing image BASE (which must be
    writable by QEMU) and continue on BASE; the overlay is closed afterwards."""
    settle_jobs(mon)
    current = roots(mon)
    if target not in current:
        raise HypervisorError(f"QEMU has no disk {target}")
    top = current[target][0]
    nodes = {n["file"]: n["node-name"] for n in mon("query-named-block-nodes", flat=True)
             if n.get("drv") == "qcow2"}
    if base not in nodes:
        raise HypervisorError(f"{base} is not in the backing chain of disk {target}")
    job = _name("commit")
    mon("block-commit", **{"job-id": job, "device": top, "base-node": nodes[base], "auto-dismiss": False})
    mon.wait_job(job, "merge the disk's overlay into its backing image", "ready")
    mon("job-complete", id=job)
    mon.wait_job(job, "merge the disk's overlay into its backing image")
    close_unused(mon)


def close_unused(mon: Monitor) -> None:
    """Close the images no device uses any more (named by libvirt or vmctl): their files
    may then be removed without QEMU keeping them open."""
    in_use = {node for node, _ in roots(mon).values()}
    for _ in range(20):
        closed = 0
        for n in mon("query-named-block-nodes", flat=True):
            name = n["node-name"]
            if name in in_use or not name.startswith(("libvirt-", "vmctl-")):
                continue
            try:
                mon("blockdev-del", **{"node-name": name})
                closed += 1
            except HypervisorError:
                pass  # still in use: a backing image of what is left
        if not closed:
            return


def _quietly(mon: Monitor, command: str, **arguments: Any) -> None:
    try:
        mon(command, **arguments)
    except HypervisorError as exc:
        log.debug("%s: %s", command, exc)


def fix_saved_xml(xml: str, sources: dict[str, str], formats: dict[str, str] | None = None) -> str:
    """The domain XML of a saved-state image with each disk target in SOURCES pointing at
    that file (of the format FORMATS gives it: a raw disk continues on a qcow2 overlay after
    a snapshot) and no <backingStore>: libvirt would otherwise reopen the images it knew
    when QEMU started (a layer of a snapshot, or a file that is gone) and impose their old
    backing chains instead of reading the chain from the images themselves."""
    # Registers libvirt's namespace prefixes for ElementTree's output. Imported here, not at
    # the top: vmctl.domain costs a snapshot of a running machine tens of milliseconds.
    from vmctl.domain import QEMU_NS  # noqa: F401

    root = ET.fromstring(xml)
    for disk in root.iterfind("devices/disk"):
        target = disk.find("target")
        dev = target.get("dev") if target is not None else None
        for backing in disk.findall("backingStore"):
            disk.remove(backing)
        if dev in sources:
            source = disk.find("source")
            if source is not None:
                source.set("file", sources[dev])
                source.attrib.pop("index", None)
            driver = disk.find("driver")
            if formats and dev in formats and driver is not None:
                driver.set("type", formats[dev])
    return ET.tostring(root, encoding="unicode")


# --- a worker process that finishes what it was asked even if vmctl is killed ---------------

def _op_state(mon: Monitor) -> str:
    return str(mon("query-status").get("status"))


QEMU_OPS: dict[str, Any] = {
    "state": _op_state,
    "disk_sources": disk_sources,
    "save_live": save_live,
    "load_live": load_live,
    "commit_live": commit_live,
}


def serve(status_file: Path, requests: Any, out: Any) -> int:
    """The worker's loop: one JSON request per line ({"op", "kwargs"}), one reply per line
    ({"ok": RESULT} or {"error": {...}}); the first line says it is ready."""

    def reply(payload: dict[str, Any]) -> None:
        out.write(json.dumps(payload) + "\n")
        out.flush()

    def error(exc: BaseException) -> dict[str, Any]:
        if isinstance(exc, HypervisorError):
            return {"error": {"message": exc.message, "hint": exc.hint}}
        return {"error": {"message": f"QEMU worker: {type(exc).__name__}: {exc}", "hint": None}}

    try:
        mon = SocketMonitor(status_file)
    except BaseException as exc:  # noqa: BLE001 - reported to the parent
        reply(error(exc))
        return 1
    reply({"ok": "ready"})
    try:
        for line in requests:
            try:
                request = json.loads(line)
                result = QEMU_OPS[request["op"]](mon, **request.get("kwargs", {}))
                reply({"ok": result})
            except Exception as exc:  # noqa: BLE001 - every failure goes back to the parent
                reply(error(exc))
    finally:
        mon.close()
    return 0


class QemuWorker:
    """A child process holding QEMU's monitor for one vmctl command, as the libvirt worker
    holds libvirt (vmctl/libvirt_worker.py): in its own session (Ctrl-C goes to vmctl
    only), keeping only its pipes and the embedded root's lock, it finishes the request
    under way when vmctl dies, so QEMU is never left paused half-way through a snapshot."""

    def __init__(self, pid: int, requests: Any, replies: Any) -> None:
        self.pid = pid
        self._requests = requests
        self._replies = replies

    @classmethod
    def spawn(cls, status_file: Path, lock_fd: int, log_file: Path) -> QemuWorker:
        from vmctl import workers

        pid, requests, replies = workers.fork(lambda requests, out: serve(status_file, requests, out),
                                              keep_fd=lock_fd, log_file=log_file)
        worker = cls(pid, requests, replies)
        try:
            worker._receive()
        except BaseException:
            worker.close()
            raise
        return worker

    def _receive(self) -> Any:
        line = self._replies.readline()
        if not line:
            raise HypervisorError("the QEMU worker exited unexpectedly")
        reply = json.loads(line)
        if "error" in reply:
            raise HypervisorError(reply["error"]["message"], hint=reply["error"].get("hint"))
        return reply["ok"]

    def call(self, op: str, **kwargs: Any) -> Any:
        try:
            self._requests.write(json.dumps({"op": op, "kwargs": kwargs}) + "\n")
            self._requests.flush()
        except OSError as exc:
            raise HypervisorError(f"the QEMU worker is gone: {exc}") from exc
        return self._receive()

    def close(self) -> None:
        """Let the worker finish (it exits at the end of its requests) and reap it."""
        import contextlib
        import os

        with contextlib.suppress(OSError):
            self._requests.close()
        with contextlib.suppress(OSError):
            self._replies.close()
        with contextlib.suppress(ChildProcessError):
            os.waitpid(self.pid, 0)
