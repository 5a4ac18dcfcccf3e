"""What vmctl does inside a guest over SSH: hostname, private networks, halting, and
synced folders (rsync through OpenSSH with the machine key and the pinned host key).

These are Vagrant's "guest capabilities", written as POSIX shell that works on a busybox
guest as well as on a systemd one.
"""

from __future__ import annotations

import contextlib
import ipaddress
import shlex
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

from vmctl import untrusted
from vmctl.errors import ConfigError, SSHError, VmctlError
from vmctl.run import require_tool
from vmctl.ssh import Endpoint, Session, openssh_options
from vmctl.vagrantfile.model import PrivateNetwork, SyncedFolder


def set_hostname(s: Session, hostname: str) -> None:
    short = hostname.split(".")[0]
    q, qs = shlex.quote(hostname), shlex.quote(short)
    script = f"""
set -e
if [ "$(hostname)" != {q} ]; then
  if command -v hostnamectl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then
    hostnamectl set-hostname {q}
  else
    echo {q} > /etc/hostname
    hostname {q}
  fi
fi
if ! grep -q "127.0.1.1 .*{short}" /etc/hosts; then
  sed -i '/^127\\.0\\.1\\.1[[:space:]]/d' /etc/hosts
  echo "127.0.1.1 {hostname} {short}" >> /etc/hosts
fi
"""
    del qs
    s.check(f"sudo -n sh -c {shlex.quote(script)}", what=f"set the hostname to {hostname}")


def configure_private_networks(
    s: Session, networks: list[tuple[PrivateNetwork, str]]
) -> None:
    """Give each (network, mac) NIC its static address: a systemd-networkd file where
    networkd runs, `ip` otherwise (reapplied on every boot)."""
    for net, mac in networks:
        if not net.auto_config:
            continue
        try:
            iface = ipaddress.ip_interface(f"{net.ip}/{net.netmask}")
        except ValueError as exc:
            raise ConfigError(f"private network address {net.ip}/{net.netmask} is not valid") from exc
        cidr = f"{iface.ip}/{iface.network.prefixlen}"
        script = f"""
set -e
dev=""
for d in /sys/class/net/*; do
  if [ "$(cat "$d/address" 2>/dev/null)" = "{mac}" ]; then dev="${{d##*/}}"; fi
done
[ -n "$dev" ] || {{ echo "no network interface with MAC {mac}" >&2; exit 3; }}
if [ -d /run/systemd/system ] && systemctl is-active -q systemd-networkd 2>/dev/null; then
  mkdir -p /etc/systemd/network
  f=/etc/systemd/network/50-vmctl-{mac.replace(":", "")}.network
  printf '[Match]\\nMACAddress={mac}\\n\\n[Network]\\nAddress={cidr}\\nLinkLocalAddressing=no\\nIPv6AcceptRA=no\\n' > "$f.tmp"
  mv -f "$f.tmp" "$f"
  networkctl reload >/dev/null 2>&1 || systemctl restart systemd-networkd
  networkctl reconfigure "$dev" >/dev/null 2>&1 || true
else
  ip link set "$dev" up
  ip addr flush dev "$dev"
  ip addr add {cidr} dev "$dev"
fi
"""
        s.check(f"sudo -n sh -c {shlex.quote(script)}", what=f"configure the private network {cidr}")


def set_clock(s: Session, clock: Callable[[], float] = time.time, timeout: float = 30.0) -> None:
    """Set the guest's clock to the host's (CLOCK(): seconds, UTC): a guest brought back
    from a snapshot of its memory believes it is still the moment the snapshot was taken.
    The time is read when the guest is ready to set it (sudo started and waiting), so the
    login and sudo's start do not make it late. GNU date takes fractions of a second,
    busybox's only whole seconds."""
    import paramiko

    script = 'echo ready; read t; date -u -s "@$t" >/dev/null 2>&1 || date -u -s "@${t%.*}" >/dev/null'
    try:
        chan = s.transport.open_session()
        chan.settimeout(timeout)
        chan.exec_command(f"sudo -n sh -c {shlex.quote(script)}")
        seen = b""
        while not seen.endswith(b"ready\n"):
            data = chan.recv(64)
            if not data:
                break
            seen += data
        if seen.endswith(b"ready\n"):
            chan.sendall(f"{clock():.3f}\n".encode())
        status = chan.recv_exit_status()
        err = chan.recv_stderr(4096).decode(errors="replace").strip() if chan.recv_stderr_ready() else ""
        chan.close()
    except (paramiko.SSHException, OSError, EOFError) as exc:
        raise SSHError(f"could not set the clock in the guest: {exc}") from exc
    if status != 0 or not seen.endswith(b"ready\n"):
        raise SSHError("could not set the clock in the guest" + (f": {err.splitlines()[-1]}" if err else ""))


def request_poweroff(s: Session) -> None:
    """Ask the guest to power off; the connection usually drops while it does."""
    with contextlib.suppress(SSHError):
        s.run(
            "sudo -n sh -c '(sleep 0.2; poweroff || shutdown -h now || halt -p) "
            ">/dev/null 2>&1 </dev/null &'",
            timeout=10,
        )


def rsync_folder(
    s: Session, endpoint: Endpoint, key: Path, folder: SyncedFolder, project_root: Path
) -> None:
    """Copy a synced folder into the guest with rsync over OpenSSH."""
    rsync = require_tool("rsync", "copy synced folders into the guest")
    ssh = require_tool("ssh", "copy synced folders into the guest")
    host = Path(folder.host)
    if not host.is_absolute():
        host = project_root / host
    if not host.is_dir():
        raise VmctlError(
            f"synced folder {host} does not exist on the host",
            hint="create it, or set disabled: true on the synced_folder",
        )
    guest = folder.guest
    owner = folder.owner or endpoint.user
    group = folder.group or owner
    s.check(
        f"sudo -n mkdir -p {shlex.quote(guest)} && "
        f"sudo -n chown {shlex.quote(owner)}:{shlex.quote(group)} {shlex.quote(guest)}",
        what=f"prepare {guest}",
    )
    ssh_cmd = shlex.join([ssh, *openssh_options(endpoint, key)])
    problem = untrusted.rsync_args_problem(list(folder.rsync_args or ()))
    if problem is not None:  # resolve.py refused it already: this is the last line of defence
        raise ConfigError(f"synced folder {guest}: {problem}")
    args = list(folder.rsync_args) if folder.rsync_args is not None else [
        "--archive", "--delete", "--compress", "--copy-links",
    ]  # fmt: skip
    excludes = [".vmctl/", ".vagrant/", *folder.rsync_exclude]
    argv = [
        rsync, *args, *(f"--exclude={e}" for e in excludes),
        f"--chown={owner}:{group}",
        "-e", ssh_cmd, "--rsync-path", "sudo -n rsync",
        f"{host}/", f"{endpoint.user}@127.0.0.1:{guest}",
    ]  # fmt: skip
    proc = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, check=False)
    if proc.returncode != 0:
        detail = proc.stderr.decode(errors="replace").strip().splitlines()
        raise VmctlError(
            f"rsync of {host} to {guest} failed with exit status {proc.returncode}"
            + (f": {detail[-1]}" if detail else ""),
            hint="the guest needs rsync installed; check the folder's rsync__args",
        )
