"""SSH: readiness, authentication, host key pinning, commands and key replacement.

paramiko carries control traffic (readiness, commands, provisioning); OpenSSH carries
interactive sessions and bulk copies (rsync), because it moves data faster. Both trust
the same pinned host key: known_hosts lines are written under a per-machine alias
(HostKeyAlias), so a machine's forwarded port may change without breaking the pin.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vmctl.errors import BootTimeoutError, HostKeyMismatchError, SSHError, VmctlError

if TYPE_CHECKING:
    import socket

log = logging.getLogger("vmctl.ssh")


def _quiet_paramiko() -> None:
    # paramiko logs every failed attempt (expected while a guest boots) with a traceback
    # through logging's last-resort handler; vmctl reports failures itself.
    p = logging.getLogger("paramiko")
    if not p.handlers:
        p.addHandler(logging.NullHandler())
    p.propagate = False

INSECURE_COMMENT = "vagrant insecure public key"


def insecure_key_dir() -> Path:
    return Path(__file__).parent / "data" / "insecure-keys"


def insecure_private_keys() -> list[Path]:
    d = insecure_key_dir()
    return [d / "vagrant.key.ed25519", d / "vagrant.key.rsa"]


def insecure_public_blobs() -> set[str]:
    """The base64 blobs of the insecure public keys (what identifies them in a file)."""
    blobs = set()
    for line in (insecure_key_dir() / "vagrant.pub").read_text().splitlines():
        parts = line.split()
        if len(parts) >= 2:
            blobs.add(parts[1])
    return blobs


@dataclass(frozen=True)
class Endpoint:
    host: str
    port: int
    user: str
    alias: str  # HostKeyAlias: the name the host key is pinned under
    known_hosts: Path
    keys: tuple[Path, ...]  # tried in order
    # config.ssh.* as Vagrant applies them: to `vmctl ssh` and ssh-config (OpenSSH), and to
    # the commands vmctl runs (keep_alive, pty, connect_timeout).
    forward_agent: bool = False
    forward_x11: bool = False
    forward_env: tuple[str, ...] = ()
    keys_only: bool = True
    connect_timeout: int | None = None
    extra_args: tuple[str, ...] = ()
    config_file: Path | None = None
    keep_alive: bool = True
    pty: bool = False
    shell: str | None = None  # what runs vmctl's scripts in the guest (config.ssh.shell); None: sh
    sudo_command: str | None = None  # config.ssh.sudo_command, "%c" standing for the command
    # The remote libvirt host the guest runs on (vmctl.remote.Jump): HOST:PORT are its own
    # 127.0.0.1, reached through `ssh -W` to it. None: this computer.
    jump: Any = None


def guest_command(endpoint: Endpoint, script: str, *, privileged: bool) -> str:
    """The command that runs SCRIPT (shell code) in the guest as Vagrant's communicator
    would: with config.ssh.shell (vmctl's default: sh), under config.ssh.sudo_command when
    PRIVILEGED (vmctl's default: sudo -n)."""
    import shlex

    command = f"{endpoint.shell or 'sh'} -c {shlex.quote(script)}"
    if privileged:
        command = (endpoint.sudo_command or "sudo -n %c").replace("%c", command)
    return command


# --- keys ------------------------------------------------------------------------------

def generate_key(private_path: Path, comment: str) -> str:
    """Create an ed25519 key at PRIVATE_PATH (0600 from creation, never overwritten);
    return its public line."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    key = Ed25519PrivateKey.generate()
    private = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.OpenSSH,
        serialization.NoEncryption(),
    )
    public = key.public_key().public_bytes(
        serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
    )
    private_path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(private_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, private)
        os.fsync(fd)
    finally:
        os.close(fd)
    line = f"{public.decode()} {comment}"
    from vmctl.state import write_atomic

    write_atomic(private_path.parent / (private_path.name + ".pub"), (line + "\n").encode())
    return line


def public_line(private_path: Path) -> str:
    pub = private_path.parent / (private_path.name + ".pub")
    return pub.read_text().strip()


def public_line_of(private_path: Path) -> str:
    """The public key line of the private key at PRIVATE_PATH: its .pub file when there is
    one, else derived from the private key."""
    for pub in (private_path.parent / (private_path.name + ".pub"),
                private_path.parent / private_path.name.replace(".key.", ".pub.")):
        if pub != private_path and pub.is_file():
            line = pub.read_text().strip().splitlines()
            if line:
                return line[0].strip()
    pkey = _load_pkey(private_path)
    return f"{pkey.get_name()} {pkey.get_base64()}"


def _load_pkey(path: Path) -> Any:
    import paramiko

    for cls in (paramiko.Ed25519Key, paramiko.RSAKey, paramiko.ECDSAKey):
        try:
            return cls.from_private_key_file(str(path))
        except (paramiko.SSHException, ValueError):
            continue
        except OSError as exc:
            raise SSHError(f"could not read the SSH key {path}: {exc.strerror}") from exc
    raise SSHError(f"{path} is not a private key vmctl can use (ed25519, RSA or ECDSA)")


# --- host key pinning ------------------------------------------------------------------

def read_pin(known_hosts: Path, alias: str) -> tuple[str, str] | None:
    """(key type, base64 blob) pinned for ALIAS, or None."""
    from vmctl import openssh

    return openssh.read_pin(known_hosts, alias)


def write_pin(known_hosts: Path, alias: str, key_type: str, blob: str) -> None:
    from vmctl.state import write_atomic

    write_atomic(known_hosts, f"{alias} {key_type} {blob}\n".encode(), mode=0o600)


def _check_host_key(transport: Any, endpoint: Endpoint) -> None:
    key = transport.get_remote_server_key()
    key_type, blob = key.get_name(), key.get_base64()
    pinned = read_pin(endpoint.known_hosts, endpoint.alias)
    if pinned is None:
        write_pin(endpoint.known_hosts, endpoint.alias, key_type, blob)
        log.debug("ssh: pinned host key %s for %s", key_type, endpoint.alias)
        return
    if pinned != (key_type, blob):
        raise HostKeyMismatchError(
            f"the host key of {endpoint.alias} ({endpoint.host}:{endpoint.port}) has changed: "
            "refusing to connect, as someone could be impersonating the machine",
            hint=f"if you rebuilt the guest on purpose, remove {endpoint.known_hosts} "
            "and try again; otherwise destroy the machine",
        )


# --- connections -----------------------------------------------------------------------

class Session:
    """An authenticated SSH transport; commands open cheap channels on it."""

    def __init__(self, transport: Any, endpoint: Endpoint, key: Path) -> None:
        self.transport = transport
        self.endpoint = endpoint
        self.key = key

    def close(self) -> None:
        self.transport.close()

    def run(
        self,
        command: str,
        *,
        stdin: bytes | None = None,
        on_stdout: Callable[[bytes], None] | None = None,
        on_stderr: Callable[[bytes], None] | None = None,
        timeout: float | None = None,
        pty: bool = False,
    ) -> tuple[int, bytes, bytes]:
        """Run COMMAND; stream or collect its output; return (status, stdout, stderr). With
        PTY, on a pseudo-terminal (its output then comes on stdout only)."""
        import paramiko

        try:
            chan = self.transport.open_session()
            if pty:
                chan.get_pty()
            chan.exec_command(command)
            if stdin is not None:
                view = memoryview(stdin)
                while view:
                    sent = chan.send(view[:32768])
                    view = view[sent:]
                chan.shutdown_write()
            out, err = bytearray(), bytearray()
            deadline = time.monotonic() + timeout if timeout else None
            chan.settimeout(0.2)
            while True:
                got = False
                while chan.recv_ready():
                    data = chan.recv(65536)
                    got = True
                    (on_stdout(data) if on_stdout else out.extend(data))
                while chan.recv_stderr_ready():
                    data = chan.recv_stderr(65536)
                    got = True
                    (on_stderr(data) if on_stderr else err.extend(data))
                if chan.exit_status_ready() and not chan.recv_ready() and not chan.recv_stderr_ready():
                    break
                if deadline and time.monotonic() > deadline:
                    chan.close()
                    raise SSHError(f"the command did not finish in {timeout:.0f} s: {command[:60]}")
                if not got:
                    chan.status_event.wait(0.05)
            status = chan.recv_exit_status()
            chan.close()
            return status, bytes(out), bytes(err)
        except (paramiko.SSHException, OSError, EOFError) as exc:
            raise SSHError(f"the SSH connection to {self.endpoint.alias} failed: {exc}") from exc

    def check(self, command: str, *, stdin: bytes | None = None, what: str) -> bytes:
        status, out, err = self.run(command, stdin=stdin)
        if status != 0:
            detail = err.decode(errors="replace").strip().splitlines()
            raise SSHError(
                f"could not {what} in the guest (exit status {status})"
                + (f": {detail[-1]}" if detail else "")
            )
        return out

    def upload(self, data: bytes, path: str, *, mode: str = "0644", sudo: bool = False) -> None:
        """Write DATA to PATH in the guest atomically (a temporary file, then mv)."""
        q = shell_quote(path)
        inner = f"umask 077; cat > {q}.vmctl-tmp && chmod {mode} {q}.vmctl-tmp && mv -f {q}.vmctl-tmp {q}"
        self.check(f"{'sudo -n ' if sudo else ''}sh -c {shell_quote(inner)}", stdin=data, what=f"write {path}")


def shell_quote(text: str) -> str:
    import shlex

    return shlex.quote(text)


def _socket(host: str, port: int, timeout: float) -> socket.socket:
    import socket  # here: `vmctl ssh` and `ssh-config` only write OpenSSH's options

    sock = socket.create_connection((host, port), timeout=timeout)
    # Without TCP_NODELAY every SSH round trip waits on Nagle: 80 ms -> 35 ms per login.
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def _jump_socket(endpoint: Endpoint) -> Any:
    """A socket-like pipe to ENDPOINT's port on its libvirt host: OpenSSH's `ssh -W` there
    (with the user's own config and agent for the host)."""
    import shlex

    import paramiko

    return paramiko.ProxyCommand(shlex.join(endpoint.jump.argv(endpoint.host, str(endpoint.port))))


class _NotReady(Exception):
    """The guest is not answering SSH yet (try again)."""


class _Refused(Exception):
    """Nothing listens on the forwarded port: QEMU itself is gone."""


def _handshake(endpoint: Endpoint, banner_timeout: float, pinned_type: str | None,
               handshake_timeout: float | None = None, on_banner: Callable[[], None] | None = None) -> Any:
    """A transport to ENDPOINT past the key exchange and the host key check, not yet
    authenticated. ON_BANNER is called once the guest is known to answer: its SSH server
    sent its banner (whether or not the key exchange then completes), or its network
    refused the connection at once (nothing listens yet, but the guest's network is up)."""
    import paramiko

    _quiet_paramiko()

    try:
        sock = (_socket(endpoint.host, endpoint.port, timeout=banner_timeout) if endpoint.jump is None
                else _jump_socket(endpoint))
    except ConnectionRefusedError as exc:
        raise _Refused() from exc
    except OSError as exc:
        raise _NotReady(str(exc)) from exc
    transport = paramiko.Transport(sock)
    transport.banner_timeout = banner_timeout
    handshake = handshake_timeout or max(banner_timeout, 10)
    transport.handshake_timeout = handshake
    if pinned_type:
        transport.get_security_options().key_types = [pinned_type]
    started = time.monotonic()
    try:
        transport.start_client(timeout=handshake)
    except (paramiko.SSHException, EOFError, OSError) as exc:
        quick = time.monotonic() - started < banner_timeout * 0.8
        if on_banner is not None and (getattr(transport, "remote_version", None) or quick):
            on_banner()
        transport.close()
        raise _NotReady(str(exc)) from exc
    if on_banner is not None:
        on_banner()
    try:
        if not transport.is_active():
            raise _NotReady("the SSH handshake did not complete")
        _check_host_key(transport, endpoint)
    except (paramiko.SSHException, EOFError, OSError) as exc:
        transport.close()
        raise _NotReady(str(exc)) from exc
    except (VmctlError, _NotReady):
        transport.close()
        raise
    return transport


def _attempt(endpoint: Endpoint, banner_timeout: float, pinned_type: str | None,
             handshake_timeout: float | None = None, on_banner: Callable[[], None] | None = None) -> Session:
    import paramiko

    transport = _take_spare(endpoint) or _handshake(endpoint, banner_timeout, pinned_type,
                                                    handshake_timeout, on_banner)
    for key_path in endpoint.keys:
        if not key_path.exists():
            continue
        pkey = _load_pkey(key_path)
        try:
            transport.auth_publickey(endpoint.user, pkey)
        except paramiko.AuthenticationException:
            continue
        except (paramiko.SSHException, EOFError, OSError) as exc:
            transport.close()
            raise _NotReady(str(exc)) from exc
        if transport.is_authenticated():
            if endpoint.keep_alive:
                transport.set_keepalive(5)  # as Vagrant's communicator does (config.ssh.keep_alive)
            return Session(transport, endpoint, key_path)
    transport.close()
    raise SSHError(
        f"the guest refused every key vmctl tried for user {endpoint.user}",
        hint="check config.ssh.username and config.ssh.private_key_path",
    )


# A connection made ahead of time (TCP, banner, key exchange, host key check) for the
# next login to the same machine: after the key swap, vmctl logs in again with the new
# key, and the key exchange (a quarter of a second in a TCG guest) overlaps the swap.
_spares: dict[tuple[str, int, str], tuple[threading.Thread, list[Any]]] = {}
_spares_lock = threading.Lock()


def _spare_key(endpoint: Endpoint) -> tuple[str, int, str]:
    return (endpoint.host, endpoint.port, endpoint.alias)


def prepare_next_login(endpoint: Endpoint) -> None:
    """Start the next connection to ENDPOINT in the background; the next connect()
    to it authenticates on that connection instead of starting from scratch."""
    pin = read_pin(endpoint.known_hosts, endpoint.alias)
    box: list[Any] = []

    def work() -> None:
        try:
            box.append(_handshake(endpoint, 5.0, pin[0] if pin else None))
        except BaseException as exc:  # noqa: BLE001 - connect() falls back to a fresh attempt
            box.append(exc)

    thread = threading.Thread(target=work, daemon=True)
    thread.start()
    with _spares_lock:
        old = _spares.pop(_spare_key(endpoint), None)
        _spares[_spare_key(endpoint)] = (thread, box)
    if old is not None:
        _discard_spare(*old)


def _discard_spare(thread: threading.Thread, box: list[Any]) -> None:
    thread.join(10)
    if box and not isinstance(box[0], BaseException):
        box[0].close()


def _take_spare(endpoint: Endpoint) -> Any:
    with _spares_lock:
        entry = _spares.pop(_spare_key(endpoint), None)
    if entry is None:
        return None
    thread, box = entry
    thread.join(15)
    if not box or isinstance(box[0], BaseException):
        return None
    transport = box[0]
    if not transport.is_active() or transport.is_authenticated():
        transport.close()
        return None
    return transport


def connect(endpoint: Endpoint, timeout: float = 10.0) -> Session:
    """One SSH session to a machine that should already be up."""
    pin = read_pin(endpoint.known_hosts, endpoint.alias)
    deadline = time.monotonic() + timeout
    last = ""
    while True:
        try:
            return _attempt(endpoint, banner_timeout=min(5.0, timeout), pinned_type=pin[0] if pin else None)
        except _Refused as exc:
            raise SSHError(
                f"nothing answers on {endpoint.host}:{endpoint.port}: the machine is not running",
                hint="start it with vmctl up",
            ) from exc
        except _NotReady as exc:
            last = str(exc)
        if time.monotonic() > deadline:
            raise SSHError(
                f"could not log in to {endpoint.alias} on {endpoint.host}:{endpoint.port}: {last}",
                hint="the guest may be overloaded or its SSH server stopped; try vmctl reload",
            )
        time.sleep(0.2)


# Seconds after which a login attempt to a guest that answered is joined by a second one.
STALE_ATTEMPT = 10.0


MAX_FIRST_BANNER = 30.0  # seconds an attempt waits for a banner before the guest has answered


def wait_until_welcomed(host: str, port: int, *, timeout: float = 15.0) -> bool:
    """Wait until a new connection to HOST:PORT gets the SSH server's banner; whether it did.

    The readiness attempts of `up` that lost the race reach the guest's SSH server as
    unauthenticated connections, which a guest under emulation may take seconds to see
    closed; until then dropbear (5 per address: every connection through QEMU's user
    networking comes from one) and sshd (MaxStartups) close new connections before their
    banner, and `vmctl up && vmctl ssh` would fail. One banner read costs a millisecond when
    nothing waits."""
    import socket

    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection((host, port), timeout=5.0) as sock:
                sock.settimeout(max(0.5, min(5.0, deadline - time.monotonic())))
                banner = b""
                while len(banner) < 4 and (chunk := sock.recv(4 - len(banner))):
                    banner += chunk
                if banner == b"SSH-":
                    return True
        except OSError as exc:  # reset, refused, a banner that never came
            log.debug("ssh: no banner yet from %s:%d: %s", host, port, exc)
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.2)


def wait_for_ssh(
    endpoint: Endpoint,
    *,
    timeout: float,
    alive: Callable[[], bool],
    cancel: threading.Event | None = None,
) -> Session:
    """Wait until the guest answers SSH and accepts a key (banner and authentication:
    QEMU's forward accepts TCP long before sshd exists). Fail fast if the domain stops.

    Attempts overlap: a connection whose SYN went into a guest without a network can
    hang for a while, so a new attempt starts every 0.5 s while earlier ones are
    pending (0.1 s after one fails), and the first to log in wins.

    Once the guest answers (its SSH server sent a banner, or its network refused the
    connection at once: nothing listens yet, and the next attempt will see sshd as soon
    as it does), attempts no longer overlap and each gets a minute for its banner and key
    exchange (a second starts beside one that has waited 10 s, in case the guest went away
    under it): an OpenSSH guest under emulation can take seconds per handshake, and
    overlapping attempts that time out and start again pile up unauthenticated connections
    until sshd refuses them all (MaxStartups) and spends its CPU on handshakes nobody
    waits for (measured: a systemd guest whose sshd was up after 108 s let vmctl in after
    304 s, 261 connections dropped).
    """
    pin = read_pin(endpoint.known_hosts, endpoint.alias)
    pinned_type = pin[0] if pin else None
    started = time.monotonic()
    deadline = started + timeout
    result: list[Session] = []
    fatal: list[BaseException] = []
    done = threading.Event()
    wake = threading.Event()  # an attempt ended: look again at once
    lock = threading.Lock()
    refused = threading.Event()
    answering = threading.Event()  # the SSH server has sent its banner
    pending: list[float] = []  # when each attempt under way started

    def one(began: float) -> None:
        try:
            if answering.is_set():
                session = _attempt(endpoint, banner_timeout=30.0, pinned_type=pinned_type,
                                   handshake_timeout=60.0, on_banner=answering.set)
            else:
                # Patience grows with the time waited: a guest that has not answered for a
                # while is booting slowly (emulation on a busy host), and attempts abandoned
                # after 3 s leave sshd children behind that swamp it (MaxStartups) once it
                # listens; a quick boot still gets a new attempt every few seconds.
                waited = time.monotonic() - started
                banner = min(MAX_FIRST_BANNER, max(3.0, waited / 4))
                session = _attempt(endpoint, banner_timeout=banner, pinned_type=pinned_type,
                                   on_banner=answering.set)
        except _Refused:
            refused.set()
            wake.set()
            return
        except _NotReady as exc:
            log.debug("ssh: not ready: %s", exc)
            wake.set()
            return
        except VmctlError as exc:  # a changed host key, every key refused: stop waiting
            with lock:
                fatal.append(exc)
            done.set()
            wake.set()
            return
        except Exception as exc:  # noqa: BLE001 - anything else from paramiko: try again
            log.debug("ssh: attempt failed: %r", exc)
            wake.set()
            return
        finally:
            with lock:
                pending.remove(began)
        with lock:
            if result:
                session.close()
                return
            result.append(session)
        done.set()
        wake.set()

    next_check = time.monotonic() + 2.0
    while not done.is_set():
        now = time.monotonic()
        if now > deadline:
            raise BootTimeoutError(f"the guest did not answer SSH within {timeout:.0f} s")
        if cancel is not None and cancel.is_set():
            raise KeyboardInterrupt
        if refused.is_set() or now > next_check:
            refused.clear()
            next_check = now + 2.0
            if not alive():
                raise BootTimeoutError("the machine stopped while vmctl waited for SSH")
        with lock:
            if answering.is_set():
                # one at a time; a second only beside one that has waited 10 s (the guest
                # may have gone away under it: a reboot leaves its connection hanging)
                start_new = not pending or (len(pending) < 2 and now - min(pending) > STALE_ATTEMPT)
            else:
                start_new = len(pending) < 4
            if start_new:
                pending.append(now)
        if start_new:
            threading.Thread(target=one, args=(now,), daemon=True).start()
        # The next attempt starts 0.5 s later, or 0.1 s after one fails: once the guest's
        # network is up, a failed attempt (no sshd yet) fails in milliseconds, and the
        # first attempt after sshd starts should not wait out the rest of a 0.5 s tick.
        if wake.wait(0.5):
            wake.clear()
            done.wait(0.1)
    if fatal:
        raise fatal[0]
    return result[0]


@contextmanager
def session(endpoint: Endpoint, timeout: float = 10.0) -> Iterator[Session]:
    s = connect(endpoint, timeout)
    try:
        yield s
    finally:
        s.close()


def replace_insecure_key(s: Session, new_public_line: str) -> None:
    """Install NEW_PUBLIC_LINE and remove every insecure key from authorized_keys,
    atomically (a temporary file renamed over the old one) and durably (synced).

    One guest command does it all (each command is a fork and exec in the guest,
    70-300 ms under TCG), and the next login's key exchange starts meanwhile."""
    new = new_public_line.strip()
    parts = new.split()
    drop = sorted(insecure_public_blobs()) + [INSECURE_COMMENT, parts[1] if len(parts) > 1 else new]
    patterns = " ".join(f"-e {shell_quote(p)}" for p in drop if p)
    prepare_next_login(s.endpoint)
    s.check(
        "umask 077; mkdir -p ~/.ssh && f=~/.ssh/authorized_keys && "
        f'{{ grep -v -F {patterns} "$f" 2>/dev/null; cat; }} > "$f.vmctl-tmp" && '
        'chmod 600 "$f.vmctl-tmp" && mv -f "$f.vmctl-tmp" "$f" && '
        # on disk before anyone pulls the plug (halt -f, reload -f): else the guest comes
        # back with the insecure key only, which OpenSSH is not given
        '{ sync -f "$f" 2>/dev/null || sync; }',
        stdin=(new + "\n").encode(),
        what="replace the insecure key",
    )


def login_of(endpoint: Endpoint, key: Path) -> Any:
    """ENDPOINT and the key an OpenSSH client should use, as openssh.Login's plain values."""
    from vmctl import openssh

    return openssh.Login(
        port=endpoint.port, user=endpoint.user, alias=endpoint.alias, known_hosts=str(endpoint.known_hosts),
        key=str(key), keys_only=endpoint.keys_only, connect_timeout=endpoint.connect_timeout,
        forward_agent=endpoint.forward_agent, forward_x11=endpoint.forward_x11,
        forward_env=endpoint.forward_env,
        config_file=str(endpoint.config_file) if endpoint.config_file is not None else None,
        extra_args=endpoint.extra_args,
        proxy_command=endpoint.jump.proxy_command() if endpoint.jump is not None else None,
    )


def openssh_options(endpoint: Endpoint, key: Path, *, plain: bool = False) -> list[str]:
    """OpenSSH options that log in with KEY and enforce the pinned host key (openssh.options)."""
    from vmctl import openssh

    return openssh.options(login_of(endpoint, key), plain=plain)


def config_block(host: str, endpoint: Endpoint, key: Path) -> str:
    """An OpenSSH config entry `Host HOST` that logs in to ENDPOINT with KEY and the pinned
    host key (openssh.config_block)."""
    from vmctl import openssh

    return openssh.config_block(host, login_of(endpoint, key))
