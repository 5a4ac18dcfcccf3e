"""What vmctl does inside a guest over SSH: hostname, private networks, halting, and
synced folders (rsync through OpenSSH with the machine key and the pinned host key).

These are Vagrant's "guest capabilities", written as POSIX shell that works on a busybox
guest as well as on a systemd one.
"""

from __future__ import annotations

import contextlib
import ipaddress
import re
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


def set_hostname(s: Session, hostname: str, *, hosts: bool = True) -> None:
    """Set the guest's hostname; with HOSTS, also name it on 127.0.1.1 in /etc/hosts."""
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
if [ {"1" if hosts else "0"} = 1 ] && ! grep -q "127.0.1.1 .*{short}" /etc/hosts; then
  sed -i '/^127\\.0\\.1\\.1[[:space:]]/d' /etc/hosts
  echo "127.0.1.1 {hostname} {short}" >> /etc/hosts
fi
"""
    del qs
    s.check(f"sudo -n sh -c {shlex.quote(script)}", what=f"set the hostname to {hostname}")


# The block of /etc/hosts that names the project's machines (what Vagrant users add the
# hostmanager plugin for). vmctl rewrites it whole, between these two lines.
HOSTS_BEGIN = "# BEGIN vmctl: the project's machines (vmctl rewrites this block)"
HOSTS_END = "# END vmctl"
_HOSTS_NAME = re.compile(r"[A-Za-z0-9_]([A-Za-z0-9_.-]{0,252})")
_HOSTS_SCRIPT = r"""
set -e
tmp=/etc/hosts.vmctl-new
awk -v b="$1" -v e="$2" '$0 == b {skip=1; next} skip && $0 == e {skip=0; next} !skip {print}' /etc/hosts > "$tmp"
cat >> "$tmp"
if cmp -s "$tmp" /etc/hosts; then rm -f "$tmp"; exit 0; fi
cat "$tmp" > /etc/hosts
rm -f "$tmp"
"""


def hosts_block(entries: list[tuple[str, list[str]]]) -> str:
    """The /etc/hosts block for ENTRIES (address, names): each address parsed as an IP
    address, each name a host name (anything else is left out); empty without entries."""
    lines = []
    for address, names in entries:
        try:
            ip = str(ipaddress.ip_address(address))
        except ValueError:
            continue
        good = [n for n in dict.fromkeys(names) if _HOSTS_NAME.fullmatch(n)]
        if good:
            lines.append(f"{ip} {' '.join(good)}")
    if not lines:
        return ""
    return "\n".join([HOSTS_BEGIN, *lines, HOSTS_END]) + "\n"


def write_hosts_block(s: Session, entries: list[tuple[str, list[str]]]) -> None:
    """Make the vmctl block of the guest's /etc/hosts name ENTRIES (none: remove it). The
    rest of the file stays as it is; an unchanged file is not written."""
    argv = ["sh", "-c", _HOSTS_SCRIPT, "vmctl-hosts", HOSTS_BEGIN, HOSTS_END]
    s.check(f"sudo -n {shlex.join(argv)}", stdin=hosts_block(entries).encode(),
            what="update the machines' names in /etc/hosts")


def configure_private_networks(
    s: Session, networks: list[tuple[PrivateNetwork, str]]
) -> dict[str, str]:
    """Give each (network, mac) NIC its static address, or run DHCP on it (type "dhcp"): a
    systemd-networkd file where networkd runs, `ip` (or busybox udhcpc, or dhclient)
    otherwise (reapplied on every boot). A DHCP private network gives only an address:
    vmctl's DHCP servers hand out no router and no DNS server. Returns the addresses the
    DHCP NICs got (MAC -> IPv4 address; a NIC with none yet is left out)."""
    addresses: dict[str, str] = {}
    for net, mac in networks:
        if not net.auto_config:
            continue
        if untrusted.parse_mac(mac) != mac:
            raise ConfigError(f"MAC address {mac!r} is not valid")
        find = f"""
set -e
dev=""
for d in /sys/class/net/*; do
  if [ "$(cat "$d/address" 2>/dev/null)" = "{mac}" ]; then dev="${{d##*/}}"; fi
done
[ -n "$dev" ] || {{ echo "no network interface with MAC {mac}" >&2; exit 3; }}
f=/etc/systemd/network/50-vmctl-{mac.replace(":", "")}.network
"""
        if net.type == "dhcp":
            script = find + _DHCP_SCRIPT.replace("@MAC@", mac)
            what = ("configure DHCP on the public network" if net.public
                    else f"configure DHCP on the private network {net.subnet}")
        else:
            try:
                iface = ipaddress.ip_interface(f"{net.ip}/{net.netmask}")
            except ValueError as exc:
                raise ConfigError(f"private network address {net.ip}/{net.netmask} is not valid") from exc
            cidr = f"{iface.ip}/{iface.network.prefixlen}"
            script = find + f"""
if [ -d /run/systemd/system ] && systemctl is-active -q systemd-networkd 2>/dev/null; then
  mkdir -p /etc/systemd/network
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
            what = f"configure the {'public' if net.public else 'private'} network {cidr}"
        out = s.check(f"sudo -n sh -c {shlex.quote(script)}", what=what)
        if net.type == "dhcp":
            address = dhcp_address_said(out.decode(errors="replace"))
            if address is not None:
                addresses[mac] = address
    return addresses


def dhcp_address_said(output: str) -> str | None:
    """The address _DHCP_SCRIPT's last line reports, checked (None: none yet)."""
    for line in output.splitlines():
        if line.startswith("vmctl-address "):
            with contextlib.suppress(ValueError):
                return str(ipaddress.IPv4Address(line.split()[1].split("/")[0]))
    return None


# DHCP on the NIC $dev (networkd's file $f): the address only, no routes and no DNS.
_DHCP_SCRIPT = r"""
if [ -d /run/systemd/system ] && systemctl is-active -q systemd-networkd 2>/dev/null; then
  mkdir -p /etc/systemd/network
  printf '[Match]\nMACAddress=@MAC@\n\n[Network]\nDHCP=ipv4\nLinkLocalAddressing=no\nIPv6AcceptRA=no\n\n[DHCPv4]\nUseRoutes=no\nUseDNS=no\nUseGateway=no\n' > "$f.tmp"
  mv -f "$f.tmp" "$f"
  networkctl reload >/dev/null 2>&1 || systemctl restart systemd-networkd
  networkctl reconfigure "$dev" >/dev/null 2>&1 || true
elif command -v udhcpc >/dev/null 2>&1; then
  mkdir -p /etc/vmctl
  printf '%s\n' '#!/bin/sh' 'case "$1" in' \
    '  deconfig) ip -4 addr flush dev "$interface"; ip link set "$interface" up ;;' \
    '  bound|renew) ip -4 addr flush dev "$interface"; ip addr add "$ip/${mask:-24}" dev "$interface" ;;' \
    'esac' 'exit 0' > /etc/vmctl/udhcpc.script
  chmod 0755 /etc/vmctl/udhcpc.script
  ip link set "$dev" up
  udhcpc -i "$dev" -n -q -t 10 -T 2 -s /etc/vmctl/udhcpc.script >/dev/null
elif command -v dhclient >/dev/null 2>&1; then
  dhclient -1 "$dev"
else
  echo "the guest has no DHCP client (udhcpc, dhclient or systemd-networkd)" >&2
  exit 4
fi
# The address it got (networkd's DHCP runs on after this script: waited for, 10 s at most).
i=0
while [ $i -lt 20 ]; do
  set -- $(ip -4 -o addr show dev "$dev" 2>/dev/null)
  [ -n "${4:-}" ] && break
  sleep 0.5
  i=$((i + 1))
done
[ -z "${4:-}" ] || echo "vmctl-address $4"
"""


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
    """Copy a synced folder into the guest with rsync over OpenSSH (with tar over the SSH
    session when the guest has no rsync, as plain cloud images often do not)."""
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
    rsync = require_tool("rsync", "copy synced folders into the guest")
    ssh = require_tool("ssh", "copy synced folders into the guest")
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
    if proc.returncode != 0 and b"not found" in proc.stderr and not guest_has_rsync(s):
        copy_folder_with_tar(s, folder, host, owner, group)
        return
    if proc.returncode != 0:
        detail = proc.stderr.decode(errors="replace").strip().splitlines()
        raise VmctlError(
            f"rsync of {host} to {guest} failed with exit status {proc.returncode}"
            + (f": {detail[-1]}" if detail else ""),
            hint="the guest needs rsync installed; check the folder's rsync__args",
        )


# The root file system, grown to fill its disk: the partition first (growpart where the guest
# has it, else sfdisk, which also moves a GPT's backup header to the disk's new end, else
# vmctl's growroot.py with the guest's python3), the kernel told of it (partx, which works
# on a mounted disk), then the file system, online (resize2fs, xfs_growfs, btrfs; for ext4
# without resize2fs, the kernel's own resize through growroot.py).
_GROW_ROOT = r"""
set -u
src=$(findmnt -n -o SOURCE / 2>/dev/null || awk '$2 == "/" {d=$1} END {print d}' /proc/mounts)
fstype=$(findmnt -n -o FSTYPE / 2>/dev/null || awk '$2 == "/" {t=$3} END {print t}' /proc/mounts)
dev=$(readlink -f "$src")
name=${dev##*/}
if [ -e "/sys/class/block/$name/partition" ]; then
  part=$(cat "/sys/class/block/$name/partition")
  disk=/dev/$(basename "$(readlink -f "/sys/class/block/$name/..")")
  if command -v growpart >/dev/null 2>&1; then
    growpart "$disk" "$part" >/dev/null 2>&1 || true
  elif command -v sfdisk >/dev/null 2>&1; then
    echo ", +" | sfdisk --force --no-reread --no-tell-kernel -N "$part" "$disk" >/dev/null 2>&1 || { echo "sfdisk failed"; exit 3; }
    partx -u --nr "$part" "$disk" >/dev/null 2>&1 || { echo "partx failed"; exit 3; }
  elif command -v python3 >/dev/null 2>&1 && command -v partx >/dev/null 2>&1; then
    python3 "$GROWROOT" part "$disk" "$part" || { echo "the partition table could not be rewritten"; exit 3; }
    partx -u --nr "$part" "$disk" >/dev/null 2>&1 || { echo "partx failed"; exit 3; }
  else
    echo "the guest has no growpart, sfdisk or python3 with partx"; exit 3
  fi
fi
case "$fstype" in
  ext2|ext3|ext4)
    if command -v resize2fs >/dev/null 2>&1; then
      resize2fs "$dev" >/dev/null 2>&1 || { echo "resize2fs failed"; exit 4; }
    elif [ "$fstype" = ext4 ] && command -v python3 >/dev/null 2>&1; then
      python3 "$GROWROOT" ext4 / "$dev" || { echo "the kernel did not grow the file system"; exit 4; }
    else
      echo "the guest has no resize2fs"; exit 4
    fi ;;
  xfs) xfs_growfs / >/dev/null 2>&1 || { echo "xfs_growfs failed"; exit 4; } ;;
  btrfs) btrfs filesystem resize max / >/dev/null 2>&1 || { echo "btrfs resize failed"; exit 4; } ;;
  *) echo "no resizer for $fstype"; exit 4 ;;
esac
df -B1 --output=size / 2>/dev/null | tail -1 || true
"""


def grow_root_filesystem(s: Session) -> tuple[bool, str]:
    """Grow the guest's root file system (and its partition) to fill its disk. Returns
    (done, detail): the new size in bytes, or what the guest lacked."""
    helper = "/tmp/vmctl-growroot.py"
    s.upload((Path(__file__).parent / "data" / "growroot.py").read_bytes(), helper)
    script = f"GROWROOT={helper}\n{_GROW_ROOT}"
    status, out, err = s.run(f"sudo -n sh -c {shlex.quote(script)}; rm -f {helper}", timeout=300)
    text = (out or err).decode(errors="replace").strip().splitlines()
    return status == 0, text[-1] if text else ""


# --- reboots ---------------------------------------------------------------------------

def boot_id(s: Session) -> str:
    """The kernel's id of the guest's current boot (a new one after every reboot)."""
    return s.check("cat /proc/sys/kernel/random/boot_id", what="read the boot id").decode().strip()


def request_reboot(s: Session) -> None:
    """Ask the guest to reboot; the connection usually drops while it does."""
    with contextlib.suppress(SSHError):
        s.run(
            "sudo -n sh -c '(sleep 0.5; reboot || shutdown -r now || busybox reboot) "
            ">/dev/null 2>&1 </dev/null &'",
            timeout=10,
        )


# --- cloud-init --------------------------------------------------------------------------

CLOUD_INIT_WAIT = """if ! command -v cloud-init >/dev/null 2>&1; then echo vmctl-no-cloud-init; exit 0; fi
sudo -n cloud-init status --wait >/dev/null 2>&1
rc=$?
echo "vmctl-cloud-init-status=$rc"
if [ "$rc" != 0 ]; then
  sudo -n cloud-init status --long 2>&1 | tail -n 15
  echo "--- the end of /var/log/cloud-init-output.log:"
  sudo -n tail -n 25 /var/log/cloud-init-output.log 2>&1
fi
"""


def wait_for_cloud_init(s: Session, *, timeout: float) -> tuple[bool, int, str]:
    """Wait for cloud-init to finish in the guest (`cloud-init status --wait`): (whether
    the guest has cloud-init, its exit status, its report when it failed)."""
    status, out, err = s.run(f"sh -c {shlex.quote(CLOUD_INIT_WAIT)}", timeout=timeout)
    text = out.decode(errors="replace")
    if "vmctl-no-cloud-init" in text:
        return False, 0, ""
    first, _, rest = text.partition("\n")
    try:
        rc = int(first.strip().split("=", 1)[1])
    except (IndexError, ValueError):
        rc = status or 1
        rest = text + err.decode(errors="replace")
    return True, rc, rest.strip()


# --- synced folders without rsync in the guest --------------------------------------------

def guest_has_rsync(s: Session) -> bool:
    return s.run("command -v rsync >/dev/null 2>&1")[0] == 0


def rsync_excluded(rel: str, excludes: tuple[str, ...] | list[str]) -> bool:
    """Whether path REL (relative to a synced folder, with /) is left out of its copy: it,
    or a folder above it, matches one of EXCLUDES (rsync's patterns: a leading / anchors
    at the folder's top, a trailing / means a folder) or vmctl's own .vmctl and .vagrant."""
    import fnmatch

    parts = rel.split("/")
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    for pattern in [".vmctl", ".vagrant", *(e.rstrip("/") for e in excludes)]:
        anchored = pattern.startswith("/")
        pattern = pattern.lstrip("/")
        if not pattern:
            continue
        if anchored and any(fnmatch.fnmatch(p, pattern) for p in prefixes):
            return True
        if not anchored and (any(fnmatch.fnmatch(p, pattern) for p in parts)
                             or any(fnmatch.fnmatch(p, pattern) for p in prefixes)):
            return True
    return False


def copy_folder_with_tar(s: Session, folder: SyncedFolder, host: Path, owner: str, group: str) -> None:
    """Copy a synced folder with tar over the SSH session, for guests without rsync (plain
    cloud images such as Debian's): the same files rsync would copy (its excludes too, the
    .vmctl and .vagrant folders always), owned by OWNER:GROUP. Files the guest has beyond
    them are left alone (rsync's --delete is not reproduced)."""
    import io
    import tarfile

    def excluded(rel: str) -> bool:
        return rsync_excluded(rel, folder.rsync_exclude)

    import os

    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for root, dirs, files in os.walk(host):  # links to folders are not followed
            base = Path(root)
            dirs[:] = sorted(d for d in dirs if not excluded((base / d).relative_to(host).as_posix()))
            for name in [*dirs, *sorted(files)]:
                path = base / name
                rel = path.relative_to(host).as_posix()
                if excluded(rel) or (path.is_symlink() and path.is_dir()):
                    continue
                try:
                    info = tar.gettarinfo(str(path.resolve()), arcname=rel)  # links to files: their content
                except OSError:
                    continue  # a dangling link
                if info.isfile():
                    with open(path, "rb") as f:
                        tar.addfile(info, f)
                elif info.isdir():
                    tar.addfile(info)
    guest = shlex.quote(folder.guest)
    s.check(
        f"sudo -n mkdir -p {guest} && sudo -n tar -C {guest} --no-same-owner -xf - && "
        f"sudo -n chown -R {shlex.quote(owner)}:{shlex.quote(group)} {guest}",
        stdin=buf.getvalue(),
        what=f"copy {host} to {folder.guest}",
    )


# --- two-way synced folders (virtiofs, 9p) ----------------------------------------------

# The kernel package that has each file system, for the message when a guest lacks it.
_FS_KERNELS = {
    "virtiofs": "Debian's linux-image-amd64 and linux-image-cloud-amd64 both have it (module virtiofs)",
    "9p": "Debian's linux-image-amd64 has it (modules 9p, 9pnet_virtio); linux-image-cloud-amd64 does not",
}
_FS_MODULES = {"virtiofs": "virtiofs", "9p": "9pnet_virtio 9p"}

MOUNT_SCRIPT = r"""
set -u
fs=$1; tag=$2; dir=$3; opts=$4; owner=$5
if ! grep -qw "$fs" /proc/filesystems; then
  for m in $MODULES; do modprobe "$m" >/dev/null 2>&1; done
  grep -qw "$fs" /proc/filesystems || { echo "vmctl-no-fs"; exit 3; }
fi
if awk -v d="$dir" '$2 == d {found=1} END {exit !found}' /proc/mounts; then
  echo vmctl-mounted-already
else
  mkdir -p "$dir" || exit 4
  mount -t "$fs" -o "$opts" "$tag" "$dir" || exit 5
fi
if [ -n "$owner" ]; then chown "$owner" "$dir" || exit 6; fi
"""


def mount_shared_folder(s: Session, folder: SyncedFolder, kind: str, tag: str, login: str) -> None:
    """Mount two-way folder FOLDER (shared by the host as KIND with TAG) at its guest path,
    unless it is mounted there already. A guest kernel without KIND is refused, naming
    the kernel package that has it. A 9p folder's top is made the login user's (or
    OWNER:GROUP's) so that it can write: in mapped mode that is recorded for the guest
    only; in passthrough (and squash) mode it would change (try to change) the host
    folder's owner, so it is done only when the Vagrantfile names owner or group. virtiofs shows the host's owners
    as they are (QEMU 7.2's virtiofsd maps no ids)."""
    if kind not in _FS_MODULES or not tag.isalnum():
        raise ValueError(f"shared folder {kind!r} {tag!r}")
    words = list(folder.mount_options) if folder.type != "nfs" else []
    if untrusted.mount_options_problem(words) is not None:  # resolve.py refused it already
        raise ConfigError(f"synced folder {folder.guest}: {untrusted.mount_options_problem(words)}")
    if kind == "9p":
        words = ["trans=virtio", "version=9p2000.L", "msize=262144", *words]
    options = ",".join(words) or "defaults"
    owner = ""
    explicit = folder.owner is not None or folder.group is not None
    if kind == "9p" and (explicit or (folder.accessmode or "mapped") == "mapped"):
        user = folder.owner or login
        owner = f"{user}:{folder.group}" if folder.group else user
    argv = ["sh", "-c", MOUNT_SCRIPT, "vmctl-mount", kind, tag, folder.guest, options, owner]
    status, out, err = s.run(f"sudo -n env MODULES={shlex.quote(_FS_MODULES[kind])} {shlex.join(argv)}", timeout=60)
    text = out.decode(errors="replace")
    if status == 3 and "vmctl-no-fs" in text:
        raise VmctlError(
            f"synced folder {folder.guest} ({kind}{', for nfs' if folder.type == 'nfs' else ''}): the guest's kernel "
            f"has no {kind} file system (not in /proc/filesystems, and modprobe {_FS_MODULES[kind]} failed)",
            hint=f"{_FS_KERNELS[kind]}; use a box with such a kernel, or type: \"rsync\"",
        )
    if status != 0:
        detail = (err.decode(errors="replace").strip().splitlines() or [""])[-1]
        step = {4: "make the folder", 5: f"mount -t {kind}", 6: "chown the folder"}.get(status, "mount it")
        raise VmctlError(f"synced folder {folder.guest} ({kind}): could not {step} in the guest"
                         + (f": {untrusted.visible(detail)}" if detail else ""))
