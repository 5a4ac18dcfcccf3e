"""ssh.wait_until_welcomed: `up` returns only once a new connection gets the SSH banner (a
guest's SSH server may still be closing new connections for the readiness attempts that
lost the race)."""

from __future__ import annotations

import socket
import threading
import time

from vmctl import ssh


def _server(answers: list[bytes]) -> tuple[int, list[int]]:
    """A listener that answers its Nth connection with ANSWERS[N] then closes it (the last
    answer repeats); the count of connections it took."""
    listener = socket.create_server(("127.0.0.1", 0))
    seen = [0]

    def serve() -> None:
        while True:
            conn, _ = listener.accept()
            with conn:
                seen[0] += 1  # before the answer: the client may return as soon as it has it
                conn.sendall(answers[min(seen[0] - 1, len(answers) - 1)])

    threading.Thread(target=serve, daemon=True).start()
    return listener.getsockname()[1], seen


def test_connections_closed_before_the_banner_are_tried_again() -> None:
    port, seen = _server([b"", b"", b"", b"SSH-2.0-dropbear\r\n"])
    assert ssh.wait_until_welcomed("127.0.0.1", port, timeout=10)
    assert seen[0] == 4


def test_a_server_that_never_welcomes_gives_up_at_the_deadline() -> None:
    port, _ = _server([b""])
    start = time.monotonic()
    assert not ssh.wait_until_welcomed("127.0.0.1", port, timeout=1.0)
    assert time.monotonic() - start < 5


def test_a_banner_is_taken_at_once() -> None:
    port, seen = _server([b"SSH-2.0-OpenSSH_9.2\r\n"])
    start = time.monotonic()
    assert ssh.wait_until_welcomed("127.0.0.1", port, timeout=10)
    assert seen[0] == 1 and time.monotonic() - start < 1
