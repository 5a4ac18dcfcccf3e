"""Remote libvirt hosts: the URI composed from vagrant-libvirt's connection settings, the
checks a URI from a Vagrantfile must pass, and how OpenSSH reaches a guest on such a host.

A guest's forwarded ports are QEMU user-network forwards: they bind 127.0.0.1 of the host
QEMU runs on. On a remote host vmctl reaches them with OpenSSH through that host (`ssh -W`,
what ProxyJump expands to), so the user's own ~/.ssh/config and agent apply to the hop.

Only `os`, `re` and `shlex` at the top (urllib when a URI names a host): `status` imports it.
"""

from __future__ import annotations

import os
import re
import shlex

# The connection settings whose presence makes vagrant-libvirt build the URI (cfg
# _default_uri): `driver` and `port` alone do not.
COMPOSING = ("connect_via_ssh", "host", "username", "password", "id_ssh_key_file", "qemu_use_session", "socket")
LOCAL_HOSTS = ("", "localhost", "127.0.0.1", "::1", "[::1]")
HOST_RE = re.compile(r"(?!-)[A-Za-z0-9_.-]{1,253}|\[[0-9A-Fa-f:.]{2,45}\]")
USER_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,31}")
# URI parameters a Vagrantfile may give libvirt. The others run or write something on
# this computer or the host: command= (the local ssh binary), netcat= (a command on the
# host), known_hosts= (a file libssh writes); and the +ext transport runs a local command.
SAFE_PARAMS = ("keyfile", "socket", "no_verify", "no_tty", "mode", "proxy", "name", "sshauth", "pkipath",
               "known_hosts_verify", "tls_priority")
SAFE_TRANSPORTS = ("", "ssh", "libssh", "libssh2", "tcp", "tls", "unix")


def compose_uri(settings: dict[str, object], home: str | None = None) -> str | None:
    """The URI vagrant-libvirt builds from its connection SETTINGS (the values a Vagrantfile
    set), or None when none of COMPOSING is set (libvirt.uri or vmctl's default then).
    One difference: `port` goes into an ssh URI (vagrant-libvirt drops it, leaving the
    setting without effect); and no `no_verify=1`: the host's key is checked as OpenSSH does."""
    if not any(settings.get(k) is not None for k in COMPOSING):
        return None
    from urllib.parse import quote

    home = home if home is not None else os.path.expanduser("~")
    driver = str(settings.get("driver") or "kvm")
    scheme = "qemu" if driver in ("kvm", "qemu") else driver
    path = "/session" if settings.get("qemu_use_session") and driver in ("kvm", "qemu") else "/system"
    key = settings.get("id_ssh_key_file")
    ssh = settings.get("connect_via_ssh")
    if ssh is None:
        ssh = key is not None
    params: list[tuple[str, str]] = []
    if ssh:
        if key is None and "id_ssh_key_file" not in settings:
            default = os.path.join(home, ".ssh", "id_rsa")
            key = default if os.path.isfile(default) else None
        elif key is not None and "/" not in str(key):
            key = os.path.join(home, ".ssh", str(key))
        user = settings.get("username")
        authority = (f"{quote(str(user), safe='')}@" if user else "") + str(settings.get("host") or "localhost")
        if settings.get("port") is not None:
            authority += f":{int(settings['port'])}"  # type: ignore[call-overload]
        uri = f"{scheme}+ssh://{authority}{path}"
        if key:
            params.append(("keyfile", str(key)))
    else:
        uri = f"{scheme}://{settings.get('host') or ''}{path}"
    if settings.get("socket"):
        params.append(("socket", str(settings["socket"])))
    if params:
        uri += "?" + "&".join(f"{k}={v}" for k, v in params)
    return uri


class Jump:
    """The libvirt host a URI names, as OpenSSH reaches it: [user@]host[:port] and a key."""

    __slots__ = ("host", "user", "port", "keyfile")

    def __init__(self, host: str, user: str | None = None, port: int | None = None,
                 keyfile: str | None = None) -> None:
        self.host, self.user, self.port, self.keyfile = host, user, port, keyfile

    def __repr__(self) -> str:
        return f"Jump({self.spec()!r}, keyfile={self.keyfile!r})"

    def spec(self) -> str:
        """[user@]host[:port], as ProxyJump and status show it."""
        return (f"{self.user}@" if self.user else "") + self.host + (f":{self.port}" if self.port else "")

    def argv(self, target_host: str = "%h", target_port: str = "%p", ssh: str = "ssh") -> list[str]:
        """The hop's command: `ssh -W TARGET` to the host (ProxyJump's expansion, but without
        handing on a `-F`: the user's own config applies to the host)."""
        argv = [ssh, "-o", "BatchMode=yes", "-o", "ExitOnForwardFailure=yes"]
        if self.user:
            argv += ["-l", self.user]
        if self.port:
            argv += ["-p", str(self.port)]
        if self.keyfile:
            argv += ["-i", self.keyfile]
        return [*argv, "-W", f"{target_host}:{target_port}", "--", self.host.strip("[]")]

    def proxy_command(self) -> str:
        """ARGV as an OpenSSH ProxyCommand value (one config line; % doubled in values, each
        word quoted for the shell that runs it)."""
        words = self.argv("\0h", "\0p")
        return " ".join(shlex.quote(w.replace("%", "%%")).replace("\0h", "%h").replace("\0p", "%p") for w in words)


def host_of(uri: str | None) -> str | None:
    """The remote host a libvirt URI names ([user@]host[:port]), or None for this computer."""
    jump = jump_of(uri)
    return jump.spec() if jump is not None else None


def jump_of(uri: str | None) -> Jump | None:
    """How OpenSSH reaches the host of URI, or None for a URI on this computer."""
    if not uri or not re.match(r"[a-z0-9+]+://[^/]", uri):
        return None
    from urllib.parse import parse_qsl, unquote, urlsplit

    parts = urlsplit(uri)
    host = parts.hostname or ""
    if host in LOCAL_HOSTS or parts.netloc.rsplit("@", 1)[-1] in LOCAL_HOSTS:
        return None
    if ":" in host:
        host = f"[{host}]"
    ssh = parts.scheme.endswith(("+ssh", "+libssh", "+libssh2"))
    params = dict(parse_qsl(parts.query))
    try:
        port = parts.port if ssh else None
    except ValueError:
        port = None
    return Jump(host, unquote(parts.username) if parts.username else None, port,
                params.get("keyfile") if ssh else None)


def uri_problem(uri: str) -> str | None:
    """Why a libvirt URI from a Vagrantfile is refused, or None. It must parse; its host and
    user may not pass for options of ssh; it may name no transport or parameter that runs a
    command or writes a file on this computer or the host."""
    from urllib.parse import parse_qsl, unquote

    if any(ord(c) < 33 or c == "\x7f" for c in uri):
        return "it holds a space or a control character"
    m = re.fullmatch(r"([a-z0-9]+)(?:\+([a-z0-9]+))?://([^/?#]*)(/[^?#]*)?(?:\?([^#]*))?", uri)
    if m is None:
        return "it is not a libvirt URI (driver[+transport]://[user@][host][:port]/path[?params])"
    transport, authority, query = m.group(2) or "", m.group(3), m.group(5) or ""
    if transport not in SAFE_TRANSPORTS:
        return (f"the transport +{transport} runs a command on this computer" if transport == "ext"
                else f"libvirt has no transport +{transport}")
    user, _, hostport = authority.rpartition("@")
    if user and not USER_RE.fullmatch(unquote(user)):
        return f"{unquote(user)[:40]!r} is not a user name"
    host = re.sub(r":[0-9]{1,5}$", "", hostport)
    if host and not HOST_RE.fullmatch(host):
        return f"{host[:60]!r} is not a host name"
    for key, value in parse_qsl(query, keep_blank_values=True):
        if key not in SAFE_PARAMS:
            return (f"the parameter {key}= is not allowed from a Vagrantfile (it could run a command or write "
                    "a file); set it in VMCTL_LIBVIRT_URI if you mean it")
        if key == "keyfile" and (not value.startswith("/") or any(ord(c) < 32 for c in value)):
            return f"keyfile= {value[:60]!r} is not an absolute path"
    return None
