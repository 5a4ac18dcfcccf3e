"""A running machine's snapshot, taken and loaded inside its own QEMU process.

vmctl's snapshots are its own qcow2 overlays, not libvirt's snapshots (libvirt 9.0 cannot
revert external snapshots and refuses internal ones for UEFI machines). For a running
machine, memory and disks must be captured at one instant, and a restore must not cost a
new QEMU: on some hosts the exit of a QEMU process alone takes seconds (libvirt waits until
the host's init has reaped it). So both happen in the QEMU that runs, through libvirt's
monitor passthrough (libvirt_qemu.qemuMonitorCommand):

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

libvirt is not told about these switches: its live view of the disks goes stale (the
images on disk are the truth, and vmctl redefines the domain with its current overlays, so
the next start reads them). What libvirt would carry over from that stale view, the XML
inside a managed-save image, is rewritten with `fix_saved_xml`. Files are never renamed
while QEMU has them open: QEMU reopens an image by its name when it changes it from
read-write to read-only.

Every call here is one libvirt worker request (vmctl/libvirt_worker.py), so a vmctl killed
in the middle does not stop it: the worker finishes it and the next command only has to
read the result (vmctl/machine/snapshots.py).
"""

from __future__ import annotations

import json
import logging
import secrets
import time
import xml.etree.ElementTree as ET
from typing import Any

from vmctl.domain import QEMU_NS  # noqa: F401 - registers libvirt's namespace prefixes for ElementTree
from vmctl.errors import HypervisorError

log = logging.getLogger("vmctl.vmstate")

JOB_TIMEOUT = 900.0  # seconds; writing gigabytes of memory on a slow disk


class Monitor:
    """QMP commands to one domain's QEMU through libvirt, errors translated."""

    def __init__(self, libvirt: Any, dom: Any) -> None:
        self._lv = libvirt
        self._dom = dom

    def __call__(self, command: str, **arguments: Any) -> Any:
        import libvirt_qemu

        message: dict[str, Any] = {"execute": command}
        if arguments:
            message["arguments"] = arguments
        try:
            reply = json.loads(libvirt_qemu.qemuMonitorCommand(self._dom, json.dumps(message), 0))
        except self._lv.libvirtError as exc:
            raise HypervisorError(f"libvirt could not pass {command} to QEMU: {exc}") from exc
        if "error" in reply:
            raise QMPError(command, reply["error"].get("desc", str(reply["error"])))
        return reply.get("return")

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


class QMPError(HypervisorError):
    def __init__(self, what: str, desc: str) -> None:
        hint = None
        if "No space left" in desc:
            hint = "free some disk space where VMCTL_HOME is, then run the command again"
        super().__init__(f"QEMU could not {what}: {desc}", hint=hint)


def _name(prefix: str) -> str:
    """A node or job name of vmctl's own (libvirt's start with `libvirt-`)."""
    return f"vmctl-{prefix}-{secrets.token_hex(4)}"


def _aliases(dom: Any) -> dict[str, str]:
    """Disk target (vda) -> libvirt's device alias (virtio-disk0), from the live XML."""
    root = ET.fromstring(dom.XMLDesc(0))
    found = {}
    for disk in root.iterfind("devices/disk"):
        target, alias = disk.find("target"), disk.find("alias")
        if target is not None and alias is not None:
            found[target.get("dev", "")] = alias.get("name", "")
    return found


def roots(mon: Monitor, dom: Any) -> dict[str, tuple[str, str]]:
    """Disk target -> (node name, file name) of the image its device uses now."""
    aliases = _aliases(dom)
    by_alias = {}
    for block in mon("query-block"):
        inserted = block.get("inserted")
        qdev = block.get("qdev") or ""
        if inserted:
            by_alias[qdev.split("/")[3] if qdev.startswith("/machine/peripheral/") else qdev] = (
                inserted["node-name"], inserted["file"])
    return {target: by_alias[alias] for target, alias in aliases.items() if alias in by_alias}


def disk_sources(libvirt: Any, dom: Any) -> dict[str, str]:
    """Disk target -> the file its running device writes to (what QEMU says, not libvirt)."""
    return {t: f for t, (_, f) in roots(Monitor(libvirt, dom), dom).items()}


def _running(libvirt: Any, dom: Any) -> bool:
    return dom.state()[0] == libvirt.VIR_DOMAIN_RUNNING


def _pause(libvirt: Any, dom: Any) -> bool:
    """Pause through libvirt (so it knows); whether the guest was running."""
    was_running = _running(libvirt, dom)
    if was_running:
        dom.suspend()
    return was_running


def save_live(libvirt: Any, dom: Any, *, container: str, tag: str, overlays: dict[str, str]) -> None:
    """Snapshot a running (or paused) domain: its state into CONTAINER (an empty qcow2
    file) under TAG, each disk target in OVERLAYS continued on that new overlay (made by
    the caller with the current image as its backing file). On failure nothing changed:
    the disks stay on their images and the guest runs as before."""
    mon = Monitor(libvirt, dom)
    current = roots(mon, dom)
    missing = sorted(set(overlays) - set(current))
    if missing:
        raise HypervisorError(f"QEMU has no disk {', '.join(missing)}")
    was_running = _pause(libvirt, dom)
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
            dom.resume()


def load_live(libvirt: Any, dom: Any, *, container: str, tag: str, overlays: dict[str, str]) -> None:
    """Bring a domain back to the state saved in CONTAINER under TAG: each disk target in
    OVERLAYS is switched to that overlay (made by the caller on the snapshot's layer)
    unless it already uses it, the images it leaves are closed, the state is loaded, and
    the guest runs."""
    mon = Monitor(libvirt, dom)
    _pause(libvirt, dom)
    current = roots(mon, dom)
    for target, path in overlays.items():
        if target not in current:
            raise HypervisorError(f"QEMU has no disk {target}")
        if current[target][1] != path:
            _pivot(mon, current[target][0], path)
    close_unused(mon, dom)
    node = _name("state")
    mon("blockdev-add", driver="qcow2", **{"node-name": node},
        file={"driver": "file", "filename": container})
    try:
        job = _name("load")
        mon("snapshot-load", **{"job-id": job, "tag": tag, "vmstate": node, "devices": [node]})
        mon.wait_job(job, "load the machine's state")
    finally:
        _quietly(mon, "blockdev-del", **{"node-name": node})
    dom.resume()


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


def commit_live(libvirt: Any, dom: Any, *, target: str, base: str) -> None:
    """Merge disk TARGET's active overlay into its backing image BASE (which must be
    writable by QEMU) and continue on BASE; the overlay is closed afterwards."""
    mon = Monitor(libvirt, dom)
    current = roots(mon, dom)
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
    close_unused(mon, dom)


def close_unused(mon: Monitor, dom: Any) -> None:
    """Close the images no device uses any more (named by libvirt or vmctl): their files
    may then be removed without QEMU keeping them open."""
    in_use = {node for node, _ in roots(mon, dom).values()}
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


def fix_saved_xml(xml: str, sources: dict[str, str]) -> str:
    """The domain XML of a saved-state image with each disk target in SOURCES pointing at
    that file and no <backingStore>: libvirt would otherwise reopen the images it knew
    when QEMU started (a layer of a snapshot, or a file that is gone) and impose their old
    backing chains instead of reading the chain from the images themselves."""
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
    return ET.tostring(root, encoding="unicode")
