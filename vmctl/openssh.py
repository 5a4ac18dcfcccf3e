"""OpenSSH's command line and config entry for logging in to a machine, from plain values.

`vmctl ssh` builds its ssh command here on both of its paths: the full one (vmctl/ssh.py,
from the machine layer's Endpoint) and the fast one (vmctl/cli/fast_ssh.py, from the state
file and the evaluation cache), so the two cannot drift apart. `ssh-config` prints the same
settings as a config entry. Only `os` at the top: the fast path imports this.

Every value that ends up in an OpenSSH config line (an `-o` option is read as one) is
checked and quoted (untrusted.ssh_config_value): a line break would add a line of its own
(a ProxyCommand runs a command), a pattern in a Host name would match other hosts.
"""

from __future__ import annotations

import os

from vmctl.errors import SSHError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Sequence


class Login:
    """How to log in to one machine: its forwarded port, user, host key alias and pinned
    known_hosts, the key, and config.ssh's settings for the host's ssh. A plain class: the
    fast path must not load dataclasses."""

    __slots__ = ("port", "user", "alias", "known_hosts", "key", "keys_only", "connect_timeout",
                 "forward_agent", "forward_x11", "forward_env", "config_file", "extra_args", "proxy_command")

    def __init__(self, *, port: int, user: str, alias: str, known_hosts: str, key: str,
                 keys_only: bool = True, connect_timeout: int | None = None, forward_agent: bool = False,
                 forward_x11: bool = False, forward_env: Sequence[str] = (), config_file: str | None = None,
                 extra_args: Sequence[str] = (), proxy_command: str | None = None) -> None:
        self.port = port
        self.user = user
        self.alias = alias
        self.known_hosts = known_hosts
        self.key = key
        self.keys_only = keys_only
        self.connect_timeout = connect_timeout
        self.forward_agent = forward_agent
        self.forward_x11 = forward_x11
        self.forward_env = tuple(forward_env)
        self.config_file = config_file
        self.extra_args = tuple(extra_args)
        # how the guest's port on a remote libvirt host is reached (vmctl.remote.Jump)
        self.proxy_command = proxy_command


def read_pin(known_hosts: str | os.PathLike[str], alias: str) -> tuple[str, str] | None:
    """(key type, base64 blob) pinned for ALIAS, or None."""
    try:
        with open(known_hosts) as f:
            lines = f.read().splitlines()
    except FileNotFoundError:
        return None
    for line in lines:
        parts = line.split()
        if len(parts) >= 3 and parts[0] == alias:
            return parts[1], parts[2]
    return None


def options(login: Login, *, plain: bool = False) -> list[str]:
    """OpenSSH options that log in with LOGIN's key and enforce the pinned host key. PLAIN
    (Vagrant's `ssh --plain`): no user and no key, authentication is left to the user; the
    host key is still checked against the pin. An -o value is read as a config line: paths
    are quoted by the same rule as ssh-config's."""
    pin = read_pin(login.known_hosts, login.alias)
    opts = [
        "-o", f"HostKeyAlias={login.alias}",
        "-o", f"UserKnownHostsFile={config_value(login.known_hosts)}",
        "-o", "StrictHostKeyChecking=yes",
        "-o", "GlobalKnownHostsFile=/dev/null",
        "-o", "LogLevel=ERROR",
        "-o", f"ConnectTimeout={login.connect_timeout or 10}",
        "-p", str(login.port),
    ]  # fmt: skip
    if not plain:
        opts += [
            "-o", f"IdentitiesOnly={'yes' if login.keys_only else 'no'}",
            "-o", "PasswordAuthentication=no",
            "-i", login.key,
            "-l", login.user,
        ]  # fmt: skip
    if pin:
        opts[0:0] = ["-o", f"HostKeyAlgorithms={pin[0]}"]
    if login.proxy_command is not None:
        opts += ["-o", f"ProxyCommand={_proxy_value(login.proxy_command)}"]
    return opts + _session_options(login)


def _proxy_value(command: str) -> str:
    """A ProxyCommand (vmctl.remote.Jump built it, quoting every word): one line."""
    if any(ord(c) < 32 or c == "\x7f" for c in command):
        raise SSHError("the command that reaches the libvirt host holds a control character")
    return command


def _session_options(login: Login) -> list[str]:
    """config.ssh.forward_agent, forward_x11, forward_env, config and extra_args, for the
    host's ssh; each checked again here (resolve.py checked them first)."""
    opts: list[str] = []
    if login.forward_agent:
        opts += ["-o", "ForwardAgent=yes"]
    if login.forward_x11:
        opts += ["-o", "ForwardX11=yes", "-o", "ForwardX11Trusted=yes"]
    for name in login.forward_env:
        opts += ["-o", f"SendEnv={config_value(name, pattern_ok=True)}"]
    if login.config_file is not None:
        check_config_file(login.config_file)
        opts += ["-F", login.config_file]
    if login.extra_args:
        from vmctl import untrusted

        problem = untrusted.ssh_args_problem(list(login.extra_args))
        if problem is not None:
            raise SSHError(f"config.ssh.extra_args: {problem}")
    return opts + list(login.extra_args)


def check_config_file(path: str) -> None:
    """The OpenSSH config file config.ssh.config names, vetted line by line: a Vagrantfile
    may not hand the host's ssh a ProxyCommand or anything else that runs or writes."""
    from vmctl import untrusted

    try:
        with open(path, errors="replace") as f:
            text = f.read()[:1_000_000]
    except OSError as exc:
        raise SSHError(f"could not read the SSH config {path} (config.ssh.config): {exc.strerror}") from exc
    problem = untrusted.ssh_config_problem(text)
    if problem is not None:
        raise SSHError(f"refusing the SSH config {path} (config.ssh.config): {problem}",
                       hint="a Vagrantfile's ssh config may only shape the session (ForwardAgent, "
                       "ServerAliveInterval, SendEnv ...)")


def config_value(value: str, *, pattern_ok: bool = True) -> str:
    from vmctl import untrusted

    try:
        return untrusted.ssh_config_value(value, pattern_ok=pattern_ok)
    except ValueError as exc:
        raise SSHError(f"cannot hand this to OpenSSH: {exc}",
                       hint="move the project to a folder whose path has no control characters or double quotes") from exc


def config_block(host: str, login: Login) -> str:
    """An OpenSSH config entry `Host HOST` that logs in with LOGIN and the pinned host key.
    Every value is checked and quoted: a line break in one would add lines of its own (a
    ProxyCommand runs a command), a pattern in HOST would match other hosts."""
    pin = read_pin(login.known_hosts, login.alias)
    lines = [
        f"Host {config_value(host, pattern_ok=False)}",
        "  HostName 127.0.0.1",
        f"  User {config_value(login.user, pattern_ok=False)}",
        f"  Port {int(login.port)}",
        f"  UserKnownHostsFile {config_value(login.known_hosts)}",
        "  StrictHostKeyChecking yes",
        f"  HostKeyAlias {config_value(login.alias, pattern_ok=False)}",
        *([f"  HostKeyAlgorithms {config_value(pin[0], pattern_ok=False)}"] if pin else []),
        "  PasswordAuthentication no",
        f"  IdentityFile {config_value(login.key)}",
        f"  IdentitiesOnly {'yes' if login.keys_only else 'no'}",
        "  LogLevel ERROR",
        *([f"  ProxyCommand {_proxy_value(login.proxy_command)}"] if login.proxy_command is not None else []),
    ]
    if login.connect_timeout:
        lines.append(f"  ConnectTimeout {int(login.connect_timeout)}")
    if login.forward_agent:
        lines.append("  ForwardAgent yes")
    if login.forward_x11:
        lines += ["  ForwardX11 yes", "  ForwardX11Trusted yes"]
    lines += [f"  SendEnv {config_value(name, pattern_ok=True)}" for name in login.forward_env]
    if login.config_file is not None:
        check_config_file(login.config_file)
        lines.insert(1, f"  Include {config_value(login.config_file)}")
    return "\n".join(lines)
