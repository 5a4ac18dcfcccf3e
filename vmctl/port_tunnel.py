"""`vmctl port --tunnel`: local ends for the forwarded ports of a machine on a remote host.

A guest's forwards are QEMU user-network forwards: they bind an address of the libvirt
host QEMU runs on (127.0.0.1 unless the Vagrantfile names another host_ip). For a machine
on a remote host, one OpenSSH process holds a local forward for each TCP port through that
host: `ssh -N -L 127.0.0.1:LOCAL:ADDR:PORT ... -- host`, the same hop vmctl uses for
`vmctl ssh` (remote.Jump: user, port and key from the libvirt URI, everything else from the
user's ~/.ssh/config and agent). LOCAL is the host's port number when that is free on this
computer, else one the kernel hands out. UDP forwards cannot go through SSH: they are
listed, not tunnelled.

The pure parts (which ports, which local numbers, the argv) are separate from running it.
"""

from __future__ import annotations

import socket
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from vmctl.remote import Jump

ANY_ADDRESSES = ("", "0.0.0.0", "::", "[::]", "*")


@dataclass(frozen=True)
class Tunnel:
    guest: int
    remote_ip: str  # the address the forward binds on the libvirt host
    remote_port: int
    local_port: int

    @property
    def local(self) -> str:
        return f"127.0.0.1:{self.local_port}"

    def spec(self) -> str:
        """OpenSSH's -L value: only this computer's 127.0.0.1 listens."""
        target = f"[{self.remote_ip}]" if ":" in self.remote_ip else self.remote_ip
        return f"127.0.0.1:{self.local_port}:{target}:{self.remote_port}"


def target_address(host_ip: str | None) -> str:
    """Where on the libvirt host a forward bound to HOST_IP is reached: a wildcard bind
    is reached on its 127.0.0.1."""
    ip = (host_ip or "").strip("[]") if host_ip not in ("[::]",) else "::"
    return "127.0.0.1" if ip in ANY_ADDRESSES else ip


def ephemeral_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def plan(ports: list[dict[str, Any]], is_free: Callable[[int], bool],
         spare: Callable[[], int] = ephemeral_port) -> list[Tunnel]:
    """A tunnel for each TCP port of PORTS (vmctl port's list): the same local number when
    IS_FREE says so and no other tunnel has it, else one SPARE gives."""
    out: list[Tunnel] = []
    used: set[int] = set()
    for p in ports:
        if p.get("protocol", "tcp") != "tcp":
            continue
        local = int(p["host"])
        while local in used or not is_free(local):
            local = spare()
        used.add(local)
        out.append(Tunnel(guest=int(p["guest"]), remote_ip=target_address(p.get("host_ip")),
                          remote_port=int(p["host"]), local_port=local))
    return out


def ssh_argv(jump: Jump, tunnels: list[Tunnel], ssh: str = "ssh") -> list[str]:
    """The one OpenSSH command that holds TUNNELS open through JUMP's host: -N (no command),
    ExitOnForwardFailure (a local port that cannot be bound is an error, not a warning),
    keep-alives so a dead link ends it. Like remote.Jump.argv, it hands on no -F: the
    user's own config applies to the host."""
    argv = [ssh, "-N", "-o", "BatchMode=yes", "-o", "ExitOnForwardFailure=yes",
            "-o", "ServerAliveInterval=15", "-o", "ServerAliveCountMax=3"]
    if jump.user:
        argv += ["-l", jump.user]
    if jump.port:
        argv += ["-p", str(jump.port)]
    if jump.keyfile:
        argv += ["-i", jump.keyfile]
    for t in tunnels:
        argv += ["-L", t.spec()]
    return [*argv, "--", jump.host.strip("[]")]


def command_line(jump: Jump, tunnels: list[Tunnel]) -> str:
    """ssh_argv as a shell command line, for the user to run by hand."""
    import shlex

    return shlex.join(ssh_argv(jump, tunnels))


def parse_listening(text: str) -> set[int]:
    """The ports of TCP sockets listening on 127.0.0.1 (or on every address) in the text of
    /proc/net/tcp."""
    out = set()
    for line in text.splitlines()[1:]:
        fields = line.split()
        if len(fields) < 4 or fields[3] != "0A":  # TCP_LISTEN
            continue
        address, _, port = fields[1].partition(":")
        if address in ("0100007F", "00000000"):
            out.add(int(port, 16))
    return out


def listening() -> set[int]:
    try:
        with open("/proc/net/tcp") as f:
            return parse_listening(f.read())
    except OSError:
        return set()


def hold(jump: Jump, tunnels: list[Tunnel], *, ready: Callable[[], None], timeout: float = 30.0) -> int:
    """Run the tunnels' ssh until it ends or the user presses Ctrl-C (then 0). READY is
    called once every local port listens. An ssh that ends on its own is an error."""
    import time

    from vmctl.errors import VmctlError
    from vmctl.run import spawn

    proc = spawn(ssh_argv(jump, tunnels), purpose="keep tunnels to the machine's forwarded ports open")
    try:
        deadline = time.monotonic() + timeout
        wanted = {t.local_port for t in tunnels}
        while not wanted <= listening():  # read, not bound: a bind here could take ssh's port
            if proc.poll() is not None:
                raise VmctlError(f"ssh to {jump.spec()} ended (exit status {proc.returncode}) before the tunnels "
                                 "were open; its message is above",
                                 hint=f"check that `ssh {jump.spec()} true` works, and that the host allows "
                                 "TCP forwarding (AllowTcpForwarding)")
            if time.monotonic() > deadline:
                raise VmctlError(f"the tunnels through {jump.spec()} were not open after {timeout:.0f} s")
            time.sleep(0.05)
        ready()
        status = proc.wait()
        raise VmctlError(f"ssh to {jump.spec()} ended (exit status {status}): the tunnels are closed",
                         hint="run vmctl port --tunnel again")
    except KeyboardInterrupt:
        return 0
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(5)
            except Exception:  # noqa: BLE001 - it must not outlive us
                proc.kill()
                proc.wait()
