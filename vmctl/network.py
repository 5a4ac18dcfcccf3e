"""Host ports for forwards (unique across every vmctl machine on this host) and the
multicast segments of private networks."""

from __future__ import annotations

import errno
import hashlib
import re
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


def pick_port(candidates: Iterable[int], reserved: set[int], host: str = "127.0.0.1", *,
              probe: bool = True) -> int | None:
    """The first candidate not reserved by another machine and free to bind (PROBE: tried
    here; False for a remote host, whose ports this computer cannot try), or None."""
    for port in candidates:
        if port not in reserved and (not probe or port_is_free(host, port)):
            return port
    return None


# hostfwd=PROTO:ADDR:PORT-GUEST:GPORT in a QEMU argument (ADDR may be [v6], or empty)
_HOSTFWD_RE = re.compile(r"(?:^|,)hostfwd=(?:tcp|udp):(?:\[[^\]]*\]|[^:,\[]*):([0-9]{1,5})-")


def domain_ports(xml: str) -> set[int]:
    """The host ports a domain's XML forwards (QEMU user-network hostfwd rules in its
    qemu:commandline, as vmctl writes them)."""
    import xml.etree.ElementTree as ET

    try:
        root = ET.fromstring(xml)
    except ET.ParseError:
        return set()
    ports = set()
    for el in root.iter("{http://libvirt.org/schemas/domain/qemu/1.0}arg"):
        for m in _HOSTFWD_RE.finditer(el.get("value") or ""):
            port = int(m.group(1))
            if 0 < port < 65536:
                ports.add(port)
    return ports


def ports_of_machines(xmls: dict[str, str], own_id: str | None) -> set[int]:
    """The host ports forwarded by the vmctl domains in XMLS (name -> XML) other than machine
    OWN_ID's: reserved, whoever's VMCTL_HOME made them (a shared libvirt host's other users)."""
    from vmctl.domain import parse_machine_metadata

    ports: set[int] = set()
    for xml in xmls.values():
        meta = parse_machine_metadata(xml)
        if meta is not None and meta.get("id") != own_id:
            ports |= domain_ports(xml)
    return ports


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
