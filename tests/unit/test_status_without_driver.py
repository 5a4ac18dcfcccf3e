"""`status` answers "running" from QEMU's own monitor when the embedded driver is closed.

A fake QMP monitor stands in for QEMU: these tests check the protocol handling (greeting,
capabilities, events between replies, a monitor that stays silent) and that anything
unclear, or a lock held by another command, sends the caller to libvirt instead. The
real path is covered end to end by the lifecycle and fault tests."""

from __future__ import annotations

import json
import os
import socket
import threading
import time
from pathlib import Path

import pytest

from vmctl import hypervisor
from vmctl.state import file_lock

DOMAIN = "vmctl-proj-default-abc123"


def _serve(sock_path: Path, status: str | None, *, event: bool = False) -> threading.Thread:
    """A one-client QMP monitor answering query-status with STATUS (None: never greets)."""
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(sock_path))
    server.listen(1)

    def run() -> None:
        conn, _ = server.accept()
        with conn, server:
            if status is None:
                time.sleep(1.5)
                return
            out = conn.makefile("wb")
            out.write(b'{"QMP": {"version": {}, "capabilities": []}}\r\n')
            out.flush()
            for line in conn.makefile("rb"):
                command = json.loads(line)["execute"]
                if event:
                    out.write(b'{"event": "RTC_CHANGE", "data": {}}\r\n')
                if command == "query-status":
                    out.write(json.dumps({"return": {"status": status, "running": status == "running"}}).encode() + b"\r\n")
                else:
                    out.write(b'{"return": {}}\r\n')
                out.flush()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


@pytest.fixture
def root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An embedded root whose pid file names this test process as the domain's QEMU."""
    monkeypatch.setenv("VMCTL_HOME", str(tmp_path / "home"))
    root = tmp_path / "root"
    run = root / "run" / "qemu"
    run.mkdir(parents=True)
    (run / f"{DOMAIN}.pid").write_text(f"{os.getpid()}\n")
    sock = tmp_path / "monitor.sock"
    (run / f"{DOMAIN}.xml").write_text(
        f"<domstatus state='running' pid='{os.getpid()}'>\n"
        f"  <monitor path='{sock}' type='unix'/>\n</domstatus>\n"
    )
    # qemu_alive() checks the process's command line names the domain.
    monkeypatch.setattr(hypervisor, "qemu_alive", lambda uri, name: name == DOMAIN)
    return root


def _uri(root: Path) -> str:
    return f"qemu:///embed?root={root}"


@pytest.mark.parametrize(("status", "event"), [
    ("running", False),
    ("running", True),  # events between replies are skipped
    ("shutdown", False),  # the guest powered off while detached: libvirt tidies up
    ("paused", False),
])  # fmt: skip
def test_monitor_answer(root: Path, status: str, event: bool) -> None:
    _serve(root.parent / "monitor.sock", status, event=event)
    assert hypervisor.qemu_status(_uri(root), DOMAIN) == status


def test_silent_monitor_means_ask_libvirt(root: Path) -> None:
    """A monitor another client holds queues us without a greeting: give up quickly."""
    _serve(root.parent / "monitor.sock", None)
    started = time.monotonic()
    assert hypervisor.qemu_status(_uri(root), DOMAIN) is None
    assert time.monotonic() - started < 1.2


def test_no_monitor_or_status_file_means_ask_libvirt(root: Path) -> None:
    assert hypervisor.qemu_status(_uri(root), DOMAIN) is None  # nobody listens
    (root / "run" / "qemu" / f"{DOMAIN}.xml").unlink()
    assert hypervisor.qemu_status(_uri(root), DOMAIN) is None


def test_lock_held_by_another_command_means_ask_libvirt(root: Path) -> None:
    _serve(root.parent / "monitor.sock", "running")
    with file_lock(hypervisor._lock_name(root)):
        assert hypervisor.qemu_status(_uri(root), DOMAIN) is None
    assert hypervisor.qemu_status(_uri(root), DOMAIN) == "running"


def test_other_uris_always_ask_libvirt() -> None:
    assert hypervisor.qemu_status("qemu:///system", DOMAIN) is None


def test_real_pid_file_check(tmp_path: Path) -> None:
    """qemu_alive itself: a pid file naming a process that is not this domain's QEMU."""
    run = tmp_path / "run" / "qemu"
    run.mkdir(parents=True)
    (run / f"{DOMAIN}.pid").write_text(f"{os.getpid()}\n")
    assert hypervisor.qemu_alive(_uri(tmp_path), DOMAIN) is False  # this process is pytest


@pytest.mark.parametrize(("libvirt_state", "qemu_said", "halted", "expected"), [
    (hypervisor.CRASHED, "shutdown", False, hypervisor.POWEROFF),  # libvirt missed the guest's shutdown
    (hypervisor.RUNNING, "shutdown", False, hypervisor.POWEROFF),  # libvirt is still finishing the job
    (hypervisor.CRASHED, None, False, hypervisor.CRASHED),  # QEMU killed: nothing said otherwise
    (hypervisor.CRASHED, None, True, hypervisor.POWEROFF),  # stopped on purpose, driver detached
    (hypervisor.PAUSED, "paused", False, hypervisor.PAUSED),
])  # fmt: skip
def test_settled_state(libvirt_state: str, qemu_said: str | None, halted: bool, expected: str) -> None:
    assert hypervisor.settled_state(libvirt_state, qemu_said, halted=halted) == expected
