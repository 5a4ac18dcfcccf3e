"""Waiting for SSH: once the guest answers, attempts do not overlap and a slow SSH server
gets time for its banner, instead of being flooded with connections that time out (a
systemd guest under emulation threw 261 of them away past MaxStartups)."""

from __future__ import annotations

import socket
import threading
import time
from pathlib import Path

import pytest

from vmctl import ssh
from vmctl.errors import BootTimeoutError


class SlowServer:
    """Closes the first QUICK connections at once (the guest's network refusing: nothing
    listens yet), then answers each later one with an SSH banner after DELAY seconds and
    hangs up (no key exchange). Counts connections and how many were open at once."""

    def __init__(self, quick: int = 2, delay: float = 4.0) -> None:
        self.quick = quick
        self.delay = delay
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.connections = 0
        self.open = 0
        self.most_open_after_answer = 0
        self.lock = threading.Lock()
        self.stop = False
        threading.Thread(target=self.serve, daemon=True).start()

    def serve(self) -> None:
        while not self.stop:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with self.lock:
                self.connections += 1
                number = self.connections
            if number <= self.quick:
                conn.close()
                continue
            threading.Thread(target=self.slow, args=(conn,), daemon=True).start()

    def slow(self, conn: socket.socket) -> None:
        with self.lock:
            self.open += 1
            self.most_open_after_answer = max(self.most_open_after_answer, self.open)
        try:
            time.sleep(self.delay)
            conn.sendall(b"SSH-2.0-OpenSSH_9.2p1 slow\r\n")
            time.sleep(0.2)
        except OSError:
            pass
        finally:
            conn.close()
            with self.lock:
                self.open -= 1


@pytest.mark.parametrize(("delay", "most_open"), [(3.5, 1), (5.0, 2)])
def test_a_slow_ssh_server_is_not_flooded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, delay: float,
                                          most_open: int) -> None:
    monkeypatch.setattr(ssh, "STALE_ATTEMPT", 4.0)
    server = SlowServer(delay=delay)
    endpoint = ssh.Endpoint(host="127.0.0.1", port=server.port, user="vagrant", alias="vmctl-test",
                            known_hosts=tmp_path / "known_hosts", keys=())
    started = time.monotonic()
    with pytest.raises(BootTimeoutError):
        ssh.wait_for_ssh(endpoint, timeout=7, alive=lambda: True)
    server.stop = True
    assert time.monotonic() - started < 12
    # after the guest answered: one attempt at a time, each waiting out the banner; a
    # second only beside one that has waited STALE_ATTEMPT (a guest that went away under it)
    assert server.most_open_after_answer == most_open
    assert server.connections <= server.quick + 5, server.connections
