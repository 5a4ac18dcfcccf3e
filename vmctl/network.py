"""Host ports for forwards (unique across every vmctl machine on this host) and the
multicast segments of private networks."""

from __future__ import annotations

import errno
import hashlib
import socket
from collections.abc import Iterable

SSH_PORT_RANGE = range(2200, 2300)
AUTO_CORRECT_RANGE = range(2200, 2300)


def port_is_free(host: str, port: int) -> bool:
    """Whether PORT can be bound on HOST right now (nothing else listens there)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind((host, port))
        except OSError as exc:
            if exc.errno in (errno.EADDRINUSE, errno.EACCES, errno.EADDRNOTAVAIL):
                return False
            raise
    return True


def pick_port(candidates: Iterable[int], reserved: set[int], host: str = "127.0.0.1") -> int | None:
    """The first candidate not reserved by another machine and free to bind, or None."""
    for port in candidates:
        if port not in reserved and port_is_free(host, port):
            return port
    return None


def mcast_group(segment: str) -> tuple[str, int]:
    """The multicast group and port of a private network segment.

    Machines that name the same segment share a wire; any other segment is another wire.
    """
    digest = hashlib.sha256(segment.encode()).digest()
    group = f"230.{digest[0]}.{digest[1]}.{max(1, digest[2])}"
    port = 20000 + int.from_bytes(digest[3:5], "big") % 20000
    return group, port


def mac_for(seed: str, index: int = 0) -> str:
    """A stable locally administered MAC in QEMU's 52:54:00 range."""
    digest = hashlib.sha256(f"{seed}/{index}".encode()).digest()
    return "52:54:00:{:02x}:{:02x}:{:02x}".format(*digest[:3])
