"""The rules for values that come from a Vagrantfile, a box or a guest: written once here,
checked where such a value becomes a model value (vmctl/vagrantfile/resolve.py), and
checked again wherever one becomes a path, an option string or a config line.

    machine_name_problem   a machine name (a folder name, a domain name part, an ssh Host)
    parse_address          an IP address for QEMU or libvirt option strings
    rsync_args_problem     rsync options that only shape the transfer or the guest's side
    qemu_args_problem      QEMU arguments (libvirt.qemuargs) that only shape the guest's hardware
    qemu_env_problem       an environment variable for QEMU (libvirt.qemuenv)
    emulator_problem       a QEMU binary to run (libvirt.emulator_path)
    file_name_problem      a file name vmctl keeps in its own folders (volumes, serial logs, sockets)
    ssh_args_problem       OpenSSH arguments (config.ssh.extra_args) that do not act on the host
    ssh_config_problem     an OpenSSH config file (config.ssh.config), line by line
    ansible_program_problem  playbook_command / galaxy_command: ansible's own programs only
    ansible_args_problem   ansible-playbook options that only shape the run (raw_arguments)
    ansible_var_problem    inventory and extra variables that would redirect a connection
    parse_ssh_args         OpenSSH options for ansible's ssh (raw_ssh_args): kept, dropped, refused
    outside_roots          whether a host path lies outside the folders a project may use
    shared_folder_problem  the host folder of a two-way synced folder (virtiofs, 9p)
    mount_options_problem  mount options for a two-way synced folder in the guest
    ssh_config_value       a value for an OpenSSH config line (no control characters)
    visible                text for the terminal, with control characters made visible

Nothing here imports the rest of vmctl: the foundations (paths, term) use it too.
"""

from __future__ import annotations

import re
from collections.abc import Callable

# -- machine names ---------------------------------------------------------------------------

# A machine name becomes a folder name (PROJECT/.vmctl/machines/NAME), part of a libvirt
# domain name, an ssh-config Host and a word of output. Vagrant's own rule refuses
# [ ] { } /; vmctl also refuses what would make a name a path (\\, "." or ".." or a leading
# dot), an option (a leading -), an OpenSSH pattern (* ? ! ,), a quote, a comment (#),
# white space and control characters.
MACHINE_NAME_RE = re.compile(r'(?![.-])[^\s\[\]{}/\\"*?!,#\x00-\x1f\x7f-\x9f]{1,64}')
MACHINE_NAME_RULE = (
    "1 to 64 characters without white space, control characters or any of [ ] { } / \\ \" * ? ! , #, "
    "not starting with . or -"
)


def machine_name_problem(name: object) -> str | None:
    """Why NAME cannot be a machine name, or None if it can."""
    if not isinstance(name, str) or not MACHINE_NAME_RE.fullmatch(name):
        return f"a machine name must be {MACHINE_NAME_RULE}"
    return None


# -- login user names --------------------------------------------------------------------------

USER_NAME_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,31}\$?")


def user_name_problem(name: str) -> str | None:
    if not USER_NAME_RE.fullmatch(name):
        return "a user name must be 1 to 32 letters, digits and _ . -, starting with a letter, digit or _"
    return None


# -- addresses ---------------------------------------------------------------------------------

def parse_address(text: object) -> str | None:
    """TEXT as a normalized IP address (v4 or v6), or None if it is not one. Anything that
    goes into QEMU's comma-separated option strings must pass this first."""
    if not isinstance(text, str) or len(text) > 64:
        return None
    import ipaddress  # here: `vmctl ssh`'s fast path reads this module and needs no addresses

    try:
        return str(ipaddress.ip_address(text.strip("[]") if text.startswith("[") else text))
    except ValueError:
        return None


_MAC = re.compile(r"[0-9a-f]{2}(:[0-9a-f]{2}){5}")
# Host interface names: IFNAMSIZ (16 with the NUL), and no character `ip` or libvirt
# treats specially. Names libvirt or vmctl generate for themselves are not for the taking.
_IFNAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,14}")
_RESERVED_IFNAMES = ("vnet", "vif", "macvtap", "macvlan", "vmctl-", "vmtap-", "lo")


def parse_mac(text: object) -> str | None:
    """TEXT as a lower-case unicast MAC address (aa:bb:cc:dd:ee:ff, '-' accepted), or None."""
    if not isinstance(text, str) or len(text) > 17:
        return None
    mac = text.lower().replace("-", ":")
    if not _MAC.fullmatch(mac) or int(mac[:2], 16) & 1:
        return None
    return mac


def iface_name_problem(name: object) -> str | None:
    """Why NAME cannot be a host network interface vmctl makes, or None."""
    if not isinstance(name, str) or not _IFNAME.fullmatch(name):
        return "a host interface name is 1-15 letters, digits, '_', '.' or '-', starting with a letter or digit"
    if name.startswith(_RESERVED_IFNAMES):
        return f"names starting with {', '.join(_RESERVED_IFNAMES)} are libvirt's or vmctl's own"
    return None


# Host devices a public_network may not use: vagrant-libvirt's host_device_exclude_prefixes
# (libvirt's and Docker's own devices), vmctl's own bridges and taps, loopback.
PUBLIC_EXCLUDED_PREFIXES = ("docker", "macvtap", "virbr", "vnet", "vmctl-", "vmtap-")


def host_device_problem(name: object, *, public: bool = True) -> str | None:
    """Why NAME cannot be the host device a public_network (PUBLIC) or a forwarding
    network's libvirt__forward_device names, or None. Existence is checked on the host."""
    if not isinstance(name, str) or not _IFNAME.fullmatch(name):
        return "a host interface name is 1-15 letters, digits, '_', '.' or '-', starting with a letter or digit"
    if name == "lo":
        return "the loopback interface reaches no network"
    if public and name.startswith(PUBLIC_EXCLUDED_PREFIXES):
        return (f"names starting with {', '.join(PUBLIC_EXCLUDED_PREFIXES)} are libvirt's, Docker's or vmctl's own "
                "devices, not a network to attach a machine to")
    return None


# The address space a Vagrantfile may put a host-only network in (RFC 1918): a bridge with
# a route for any other subnet would take the host's own traffic to those addresses (a
# private_network "1.1.1.10" would hand the host's 1.1.1.1 to a guest).
HOST_NETWORK_SPACE = ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16")


def host_network_problem(subnet: str) -> str | None:
    """Why SUBNET cannot be a host-only network on this host's routing table, or None."""
    import ipaddress

    try:
        net = ipaddress.ip_network(subnet)
    except ValueError:
        return f"{subnet!r} is not a subnet"
    if net.version != 4 or not any(net.subnet_of(ipaddress.ip_network(space))  # type: ignore[arg-type]
                                   for space in HOST_NETWORK_SPACE):
        return (f"{net} is not private address space (10.0.0.0/8, 172.16.0.0/12, 192.168.0.0/16): a host route "
                "for it would take the host's own traffic to those addresses")
    return None


def tunnel_address_problem(text: object) -> str | None:
    """Why TEXT cannot be an end of a UDP tunnel (libvirt__tunnel_ip / tunnel_local_ip, or a
    host's address vmctl learned), or None: one IPv4 unicast address (loopback included), no
    name, no multicast, broadcast or unspecified address, nothing that QEMU's option string
    could take for another option."""
    address = parse_address(text)
    if address is None or ":" in address or address != text:
        return "it is not an IPv4 address"
    import ipaddress

    ip = ipaddress.ip_address(address)
    if ip.is_multicast or ip.is_unspecified or address == "255.255.255.255" or ip.is_reserved:
        return "a tunnel's end is one host's unicast address (no multicast, broadcast, 0.0.0.0 or reserved address)"
    return None


def is_loopback(address: str) -> bool:
    import ipaddress

    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        return False


# -- rsync -------------------------------------------------------------------------------------

# The host's rsync is the sending side: options that name a host file (--log-file,
# --write-batch, --files-from, --password-file ...), run a program (--rsh/-e), or change
# the source (--remove-source-files) are a stranger's way onto the host. Allowed are the
# options that only shape what is sent and how the guest (the receiving side) stores it.
_RSYNC_FLAGS = frozenset({
    "--verbose", "--quiet", "--archive", "--recursive", "--relative", "--no-relative",
    "--links", "--copy-links", "--copy-unsafe-links", "--safe-links", "--munge-links",
    "--copy-dirlinks", "--keep-dirlinks", "--hard-links", "--perms", "--no-perms",
    "--executability", "--acls", "--xattrs", "--owner", "--no-owner", "--group", "--no-group",
    "--devices", "--specials", "--times", "--no-times", "--atimes", "--crtimes",
    "--omit-dir-times", "--omit-link-times", "--super", "--fake-super", "--sparse",
    "--preallocate", "--dry-run", "--whole-file", "--no-whole-file", "--one-file-system",
    "--existing", "--ignore-existing", "--ignore-non-existing", "--delete", "--delete-before",
    "--delete-during", "--delete-delay", "--delete-after", "--delete-excluded",
    "--delete-missing-args", "--ignore-missing-args", "--ignore-errors", "--force",
    "--prune-empty-dirs", "--numeric-ids", "--ignore-times", "--size-only", "--checksum",
    "--update", "--inplace", "--append", "--append-verify", "--dirs", "--mkpath",
    "--compress", "--no-compress", "--cvs-exclude", "--human-readable", "--progress",
    "--stats", "--itemize-changes", "--partial", "--delay-updates", "--fuzzy", "--no-motd",
    "--protect-args", "--secluded-args", "--no-implied-dirs", "--blocking-io", "--no-D",
    "--ipv4", "--ipv6", "--8-bit-output", "--list-only", "--msgs2stderr", "--no-msgs2stderr",
    "--open-noatime", "--trust-sender", "--copy-devices", "--write-devices", "--no-l",
    "--no-r", "--no-t", "--no-p", "--no-o", "--no-g", "--no-v", "--no-z", "--no-W",
    "--no-links", "--no-recursive", "--no-devices", "--no-specials", "--backup",
})
# Options with a value that shapes the transfer or names something in the guest.
_RSYNC_VALUED = frozenset({
    "--exclude", "--include", "--chmod", "--chown", "--usermap", "--groupmap", "--max-size",
    "--min-size", "--max-delete", "--modify-window", "--timeout", "--contimeout",
    "--compress-level", "--compress-choice", "--zc", "--zl", "--checksum-choice", "--cc",
    "--checksum-seed", "--block-size", "--bwlimit", "--iconv", "--rsync-path",
    "--out-format", "--info", "--debug", "--filter", "--skip-compress", "--outbuf",
    "--stop-after", "--stop-at", "--max-alloc", "--temp-dir", "--partial-dir",
    "--backup-dir", "--suffix", "--log-file-format",
})
_RSYNC_SHORT = frozenset("vqarRlLkKHpEAXogDtUNOJSnWxuzcCmyhPidsbI468")
# Rules of --filter that only match names: no merge files ("merge", ".", "dir-merge", ":").
_FILTER_RULE = re.compile(r"(?:[-+PRSH!]|exclude|include|protect|risk|show|hide|clear)(?:,[/!CsrpxnewN]*)?(?:[ _].*)?", re.S)


def rsync_args_problem(args: list[str]) -> str | None:
    """Why ARGS (a synced folder's rsync__args) may not reach the host's rsync, or None."""
    pending: str | None = None
    for arg in args:
        if "\0" in arg or "\n" in arg:
            return f"the rsync option {arg!r} holds a control character"
        if pending is not None:
            problem = _rsync_value_problem(pending, arg)
            if problem:
                return problem
            pending = None
            continue
        if arg.startswith("--"):
            name, eq, value = arg.partition("=")
            if name in _RSYNC_FLAGS and not eq:
                continue
            if name in _RSYNC_VALUED:
                if not eq:
                    pending = name
                    continue
                problem = _rsync_value_problem(name, value)
                if problem:
                    return problem
                continue
            return f"the rsync option {name} is not allowed (it is unknown to vmctl, or acts on the host)"
        if arg.startswith("-") and len(arg) > 1:
            letters = arg[1:]
            bad = [c for c in letters if c not in _RSYNC_SHORT]
            if bad:
                return f"the rsync option -{bad[0]} (in {arg}) is not allowed (it is unknown to vmctl, or acts on the host)"
            continue
        return f"{arg!r} is not an rsync option: rsync__args may hold options only (vmctl adds the paths)"
    if pending is not None:
        return f"the rsync option {pending} needs a value"
    return None


def _rsync_value_problem(name: str, value: str) -> str | None:
    if name == "--filter" and not _FILTER_RULE.fullmatch(value):
        return f"the rsync filter rule {value!r} is not allowed (only include/exclude rules, no merge files)"
    return None


# -- QEMU ----------------------------------------------------------------------------------

# QEMU runs as the user: an argument that names a host file to write (-chardev file, -D,
# -pidfile, a drive, a memory backend file, a WAV capture), a program to run (-netdev tap's
# script, user networking's guestfwd=cmd:, -incoming exec:), a host device (usb-host,
# vfio-pci, input-linux), a socket or a listening port (-monitor, -qmp, -gdb, -vnc) is a
# stranger's way onto the host. Allowed are the options that only shape the guest's
# hardware, and reads the Vagrantfile names as it may name a synced folder (-fw_cfg file=,
# -smbios file=): the same trust as for its synced folders.
_QEMU_FLAGS = frozenset({
    "-no-hpet", "-no-reboot", "-S", "-usb", "-enable-kvm", "-nodefaults", "-no-user-config", "-snapshot",
    "-no-fd-bootchk", "-full-screen", "-only-migratable",
})
_QEMU_VALUED = frozenset({
    "-fw_cfg", "-smbios", "-cpu", "-machine", "-M", "-accel", "-global", "-device", "-object", "-rtc",
    "-boot", "-vga", "-k", "-icount", "-overcommit", "-msg", "-display", "-audiodev", "-smp", "-m", "-numa",
    "-name", "-uuid", "-watchdog-action", "-action", "-compat",
})
_QEMU_HINTS = {
    "-netdev": "use config.vm.network", "-net": "use config.vm.network", "-nic": "use config.vm.network",
    "-drive": "use libvirt.storage", "-blockdev": "use libvirt.storage", "-cdrom": "use libvirt.storage :file, device: :cdrom",
    "-hda": "use libvirt.storage", "-hdb": "use libvirt.storage", "-fda": "use libvirt.storage :file, device: :floppy",
    "-chardev": "use libvirt.serial or libvirt.channel", "-serial": "use libvirt.serial",
    "-monitor": "vmctl talks to QEMU through libvirt", "-qmp": "vmctl talks to QEMU through libvirt",
    "-kernel": "use libvirt.kernel", "-initrd": "use libvirt.initrd", "-append": "use libvirt.cmd_line",
    "-bios": "use libvirt.loader", "-vnc": "use libvirt.graphics_type", "-spice": "use libvirt.graphics_type",
    "-virtfs": "use a synced folder", "-fsdev": "use a synced folder",
}
_QEMU_DEVICE_DENIED = re.compile(r"(usb-host|vfio-.*|vhost-.*|ivshmem.*|pci-assign|usb-redir|virtserialport|"
                                 r"virtconsole|isa-debugcon|isa-serial|pci-serial.*|ccid-card-passthru)")
_QEMU_OBJECTS = frozenset({"rng-random", "rng-builtin", "memory-backend-ram", "memory-backend-memfd", "iothread",
                           "throttle-group", "cryptodev-backend-builtin", "main-loop", "thread-context"})


def qemu_args_problem(args: list[str]) -> str | None:
    """Why ARGS (libvirt.qemuargs) may not reach QEMU, or None."""
    pending: str | None = None
    for arg in args:
        if any(ord(c) < 32 or ord(c) == 127 for c in arg):
            return f"the QEMU argument {visible(arg)!r} holds a control character"
        if pending is not None:
            problem = _qemu_value_problem(pending, arg)
            if problem:
                return problem
            pending = None
            continue
        name = "-" + arg.lstrip("-") if arg.startswith("-") else arg
        if name in _QEMU_FLAGS:
            continue
        if name in _QEMU_VALUED:
            pending = name
            continue
        if not arg.startswith("-"):
            return f"{arg[:60]!r} is not a QEMU option: give each option, then its value, as its own qemuargs"
        hint = _QEMU_HINTS.get(name)
        return (f"the QEMU option {name} is not allowed ({hint})" if hint else
                f"the QEMU option {name} is not allowed (it is unknown to vmctl, or acts on the host)")
    if pending is not None:
        return f"the QEMU option {pending} needs a value (the next qemuargs)"
    return None


def _qemu_value_problem(option: str, value: str) -> str | None:
    parts = _qemu_split(value)
    first = parts[0] if parts else ""
    keys = {p.split("=", 1)[0]: (p.split("=", 1)[1] if "=" in p else "") for p in parts}
    if option == "-device":
        driver = keys.get("driver") or first.split("=", 1)[0]
        if _QEMU_DEVICE_DENIED.fullmatch(driver) or "chardev" in keys:
            return f"the QEMU device {driver} is not allowed: it reaches a host device, file or socket"
    if option == "-object":
        kind = keys.get("qom-type") or first.split("=", 1)[0]
        if kind not in _QEMU_OBJECTS:
            return f"the QEMU object {kind} is not allowed (allowed: {', '.join(sorted(_QEMU_OBJECTS))})"
        if kind == "rng-random" and keys.get("filename", "/dev/urandom") not in ("/dev/urandom", "/dev/random"):
            return "an rng-random object may read /dev/urandom or /dev/random only"
    if option == "-fw_cfg" and not set(keys) <= {"name", "file", "string"}:
        return "-fw_cfg takes name=, file= or string= only"
    if option == "-display" and first.split("=", 1)[0] not in ("none", "egl-headless"):
        return "-display may be none or egl-headless only (use libvirt.graphics_type for a display)"
    if option == "-audiodev" and first.split("=", 1)[0] not in ("none", "spice"):
        return ("-audiodev may be none or spice only: the host's sound server would give the guest the host's "
                "microphone, and wav writes a host file")
    if option in ("-machine", "-M") and ("memory-backend" in keys or "dumpdtb" in keys):
        return "-machine memory-backend= and dumpdtb= are not allowed (memory-backend: use libvirt.memorybacking)"
    return None


def _qemu_split(value: str) -> list[str]:
    """QEMU's comma-separated options, with ",," as a literal comma."""
    return [p.replace("\x00", ",") for p in value.replace(",,", "\x00").split(",")]


_QEMU_ENV_PREFIXES = ("QEMU_", "SPICE_", "VIRGL_", "MESA_", "LIBGL_", "SDL_", "GDK_")


def qemu_env_problem(name: str) -> str | None:
    """Why NAME may not be set in QEMU's environment (libvirt.qemuenv), or None: only the
    variables QEMU and its display and audio libraries read, and none naming a file or a
    folder (QEMU_WAV_PATH would make QEMU write a host file)."""
    if not re.fullmatch(r"[A-Z_][A-Z0-9_]{0,127}", name):
        return f"{name[:40]!r} is not an environment variable name"
    if name not in ("DISPLAY", "TZ") and not name.startswith(_QEMU_ENV_PREFIXES):
        return (f"{name} is not a variable vmctl passes to QEMU (allowed: DISPLAY, TZ and names starting "
                f"with {', '.join(_QEMU_ENV_PREFIXES)})")
    if any(word in name for word in ("PATH", "FILE", "DIR", "LOG", "PRELOAD", "LIBRARY", "MODULE")):
        return f"{name} names a file or folder on the host, which a Vagrantfile may not make QEMU use"
    return None


_EMULATOR = re.compile(r"/(usr/(local/)?)?(bin|libexec)/(qemu-system-[a-z0-9_]+|qemu-kvm|kvm)")


def emulator_problem(path: str) -> str | None:
    """Why PATH may not be run as the machine's emulator, or None: a QEMU system emulator in a
    system folder (a Vagrantfile naming any program would run it on the host)."""
    if not _EMULATOR.fullmatch(path):
        return "the emulator must be a QEMU system emulator in a system folder, e.g. /usr/bin/qemu-system-x86_64"
    return None


_FILE_NAME = re.compile(r"(?![.-])[A-Za-z0-9_.+-]{1,120}")


def file_name_problem(name: str) -> str | None:
    """Why NAME cannot be the name of a file vmctl keeps in one of its own folders (a volume,
    a serial log), or None."""
    if not _FILE_NAME.fullmatch(name) or name in (".", ".."):
        return "a file name of 1 to 120 letters, digits and _ . + -, not starting with . or -, no folders"
    return None


# -- OpenSSH arguments ------------------------------------------------------------------------

# The host's ssh runs what ProxyCommand, LocalCommand, KnownHostsCommand and Match exec
# name, loads PKCS#11 and security-key providers, and writes -E log files and control
# sockets: none of that may come from a Vagrantfile. These options only shape the session.
SSH_OPTIONS = frozenset(o.lower() for o in (
    "ServerAliveInterval", "ServerAliveCountMax", "TCPKeepAlive", "Compression", "ForwardAgent", "ForwardX11",
    "ForwardX11Trusted", "ForwardX11Timeout", "SendEnv", "SetEnv", "RequestTTY", "LogLevel", "ConnectTimeout",
    "ConnectionAttempts", "Ciphers", "MACs", "KexAlgorithms", "HostKeyAlgorithms", "PubkeyAcceptedKeyTypes",
    "PubkeyAcceptedAlgorithms", "IPQoS", "EscapeChar", "ExitOnForwardFailure", "ClearAllForwardings",
    "AddressFamily", "BatchMode", "VisualHostKey", "RekeyLimit", "ObscureKeystrokeTiming", "ForwardX11",
    "StreamLocalBindUnlink", "LocalForward", "RemoteForward", "DynamicForward", "GatewayPorts",
    "IdentitiesOnly", "PasswordAuthentication", "KbdInteractiveAuthentication", "PreferredAuthentications",
    "NumberOfPasswordPrompts", "HashKnownHosts", "CheckHostIP", "UpdateHostKeys", "Tunnel", "User", "Port",
))
_SSH_FLAGS = frozenset("46AaCfGgKkMNnqsTtVvXxYy")
_SSH_VALUED = frozenset("cLmDRoeQWw")


def ssh_args_problem(args: list[str]) -> str | None:
    """Why ARGS (config.ssh.extra_args) may not reach the host's ssh, or None."""
    pending: str | None = None
    for arg in args:
        if any(ord(c) < 32 or ord(c) == 127 for c in arg):
            return f"the ssh argument {visible(arg)!r} holds a control character"
        if pending is not None:
            problem = _ssh_value_problem(pending, arg)
            if problem:
                return problem
            pending = None
            continue
        if not arg.startswith("-") or len(arg) < 2:
            return f"{arg[:60]!r} is not an ssh option: extra_args may hold options only"
        letters = arg[1:]
        for i, letter in enumerate(letters):
            if letter in _SSH_FLAGS:
                continue
            if letter in _SSH_VALUED and letter not in "eQWw":
                rest = letters[i + 1:]
                if rest:
                    problem = _ssh_value_problem(letter, rest)
                    if problem:
                        return problem
                else:
                    pending = letter
                break
            return f"the ssh option -{letter} is not allowed (it is unknown to vmctl, or acts on the host)"
    if pending is not None:
        return f"the ssh option -{pending} needs a value"
    return None


def _ssh_value_problem(letter: str, value: str) -> str | None:
    if letter == "o":
        key = re.split(r"[=\s]", value.strip(), maxsplit=1)[0]
        if key.lower() not in SSH_OPTIONS:
            return f"the ssh option {key} is not allowed (it is unknown to vmctl, or runs or writes something on the host)"
    if letter in "LRD" and value.count(":") >= (1 if letter == "D" else 3) and not re.match(
            r"(127\.0\.0\.1|localhost|\[::1\]):", value):
        return f"the forward {value!r} listens beyond this computer: give 127.0.0.1 as its bind address"
    return None


def ssh_config_problem(text: str) -> str | None:
    """Why TEXT (the OpenSSH config file config.ssh.config names) may not be handed to the
    host's ssh, or None: each keyword must be one of SSH_OPTIONS (or Host, or a Match without
    exec)."""
    for number, line in enumerate(text.splitlines(), 1):
        words = line.strip().replace("=", " ", 1).split(None, 1)
        if not words or words[0].startswith("#"):
            continue
        key = words[0].lower()
        rest = words[1] if len(words) > 1 else ""
        if key == "host" or (key == "match" and "exec" not in rest.lower()):
            continue
        if key not in SSH_OPTIONS:
            return f"line {number}: {words[0]} is not allowed (it is unknown to vmctl, or runs or writes something on the host)"
    return None


# -- ansible on this computer ------------------------------------------------------------------
# The ansible provisioner runs ansible-playbook (and ansible-galaxy) on this computer with the
# project's playbook: what the playbook does, the user can read. What the Vagrantfile adds
# around it must not run anything else: the programs are ansible's own, found on PATH; the
# options only shape the run; no variable or ssh option may send a connection elsewhere
# (ansible_connection=local runs every task here), run a program (ProxyCommand, an
# executable inventory or vault password file outside the project) or loosen the check of
# the machine's pinned host key.

FileProblem = Callable[[str], "str | None"]
ANSIBLE_PROGRAM_RE = re.compile(r"ansible-(playbook|galaxy)(-[0-9][0-9.]*)?")


def ansible_program_problem(word: str, program: str) -> str | None:
    """Why WORD (the program of playbook_command or galaxy_command) may not run as PROGRAM
    ("ansible-playbook" or "ansible-galaxy"), or None. A path is refused: a project could
    ship its own "ansible-playbook"."""
    m = ANSIBLE_PROGRAM_RE.fullmatch(word)
    if m is None or f"ansible-{m.group(1)}" != program:
        return (f"{visible(word)[:80]!r} is not {program}: vmctl runs only ansible's own {program} "
                "(found on PATH, or beside vmctl), never another program or a path")
    return None


# Variables that say where and how ansible connects: vmctl sets them for each machine, and a
# Vagrantfile may not (in host_vars, groups' vars or extra_vars).
ANSIBLE_RESERVED_VARS = frozenset({
    "ansible_host", "ansible_ssh_host", "ansible_port", "ansible_ssh_port", "ansible_user",
    "ansible_ssh_user", "ansible_connection", "ansible_ssh_private_key_file",
    "ansible_private_key_file", "ansible_ssh_common_args", "ansible_ssh_extra_args",
    "ansible_ssh_args", "ansible_scp_extra_args", "ansible_sftp_extra_args",
    "ansible_ssh_executable", "ansible_host_key_checking", "ansible_ssh_host_key_checking",
    "ansible_paramiko_host_key_checking", "ansible_ssh_pipelining_executable",
})


def ansible_var_problem(name: object) -> str | None:
    if not isinstance(name, str) or not name or any(ord(c) < 32 for c in name):
        return f"{visible(str(name))[:60]!r} is not a variable name"
    if name.lower() in ANSIBLE_RESERVED_VARS:
        return (f"the variable {name} says where or how ansible connects: vmctl sets it for each machine "
                "(it could send the playbook's tasks to this computer, or skip the host key check)")
    return None


_ANSIBLE_FLAGS = frozenset({
    "--check", "-C", "--diff", "-D", "--list-hosts", "--list-tasks", "--list-tags", "--syntax-check",
    "--flush-cache", "--force-handlers", "--step", "--become", "-b", "--ask-become-pass", "-K",
    "--ask-vault-pass", "--ask-vault-password", "-J", "--verbose",
})
# Options with a value, by long name; short aliases map to them.
_ANSIBLE_VALUED = frozenset({
    "--tags", "--skip-tags", "--start-at-task", "--limit", "--forks", "--timeout", "--become-user",
    "--become-method", "--user", "--extra-vars", "--vault-id", "--vault-password-file",
    "--vault-pass-file", "--connection",
})
_ANSIBLE_SHORT = {"-t": "--tags", "-l": "--limit", "-f": "--forks", "-T": "--timeout", "-u": "--user",
                  "-e": "--extra-vars", "-c": "--connection"}
_ANSIBLE_WHY = {
    "--inventory": "use inventory_path", "-i": "use inventory_path",
    "--inventory-file": "use inventory_path",
    "--private-key": "vmctl gives each machine's key", "--key-file": "vmctl gives each machine's key",
    "--ssh-common-args": "use raw_ssh_args", "--ssh-extra-args": "use raw_ssh_args",
    "--scp-extra-args": "use raw_ssh_args", "--sftp-extra-args": "use raw_ssh_args",
    "--module-path": "name module paths in the project's ansible.cfg (config_file)",
    "-M": "name module paths in the project's ansible.cfg (config_file)",
}
_PLUGIN_NAME = re.compile(r"[A-Za-z0-9_.]{1,100}")


def ansible_args_problem(args: list[str], file_problem: FileProblem | None = None) -> str | None:
    """Why ARGS (raw_arguments) may not reach ansible-playbook on this computer, or None.
    FILE_PROBLEM(path) says why a file named by an option (a vault password file) may not
    be used, or None."""
    pending: str | None = None
    for arg in args:
        if any(ord(c) < 32 for c in arg):
            return f"the ansible-playbook option {visible(arg)[:60]!r} holds a control character"
        if pending is not None:
            problem = _ansible_value_problem(pending, arg, file_problem)
            if problem:
                return problem
            pending = None
            continue
        if re.fullmatch(r"-v+", arg):
            continue
        name, eq, value = arg.partition("=") if arg.startswith("--") else (arg, "", "")
        if not arg.startswith("--") and arg.startswith("-") and len(arg) > 2 and arg[:2] in _ANSIBLE_SHORT:
            name, eq, value = arg[:2], "=", arg[2:]
        if any(c.isspace() for c in name):
            return f"{visible(arg)[:60]!r} is not one option: give each option (and its value) as its own element"
        if name in _ANSIBLE_WHY:
            return f"the ansible-playbook option {name} is not allowed in raw_arguments ({_ANSIBLE_WHY[name]})"
        name = _ANSIBLE_SHORT.get(name, name)
        if name in _ANSIBLE_FLAGS and not eq:
            continue
        if name in _ANSIBLE_VALUED:
            if not eq:
                pending = name
                continue
            problem = _ansible_value_problem(name, value, file_problem)
            if problem:
                return problem
            continue
        if not arg.startswith("-"):
            return (f"{visible(arg)[:60]!r} is not an ansible-playbook option: raw_arguments may hold "
                    "options only (vmctl adds the playbook and the inventory)")
        return f"the ansible-playbook option {name} is not allowed (it is unknown to vmctl, or acts on this computer)"
    if pending is not None:
        return f"the ansible-playbook option {pending} needs a value"
    return None


def _ansible_value_problem(name: str, value: str, file_problem: FileProblem | None) -> str | None:
    if name == "--connection" and value != "ssh":
        return (f"--connection {visible(value)[:40]!r} is not allowed: vmctl's machines are reached over ssh "
                "with their pinned host keys")
    if name == "--become-method" and not _PLUGIN_NAME.fullmatch(value):
        return f"--become-method {visible(value)[:40]!r} is not a become plugin's name"
    if name == "--extra-vars":
        return extra_vars_problem(value, file_problem)
    if name in ("--vault-password-file", "--vault-pass-file", "--vault-id"):
        path = value.split("@", 1)[1] if name == "--vault-id" and "@" in value else value
        if name == "--vault-id" and "@" not in value:
            return None
        if path == "prompt":
            return None
        if file_problem is not None:
            return file_problem(path)
    return None


_GALAXY_WORDS = frozenset({"install", "role", "collection", "%{role_file}", "%{roles_path}"})
_GALAXY_FLAGS = frozenset({"--force", "-f", "--force-with-deps", "--ignore-errors", "-i", "--no-deps", "-n",
                           "--ignore-certs", "-c", "--keep-scm-meta", "--offline", "--verbose"})
_GALAXY_VALUED = {"--role-file": "%{role_file}", "-r": "%{role_file}", "--roles-path": "%{roles_path}",
                  "-p": "%{roles_path}", "--server": None, "-s": None, "--timeout": None}


def galaxy_args_problem(words: list[str]) -> str | None:
    """Why WORDS (galaxy_command after ansible-galaxy) may not run, or None: subcommands,
    the %{role_file} and %{roles_path} placeholders and options that only shape the install."""
    pending: str | None = None
    for word in words:
        if any(ord(c) < 32 for c in word):
            return f"{visible(word)[:60]!r} holds a control character"
        if pending is not None:
            want = _GALAXY_VALUED[pending]
            if want is not None and word != want:
                return f"{pending} must be given as {pending} {want} (vmctl fills in the project's file)"
            pending = None
            continue
        if word in _GALAXY_WORDS or word in _GALAXY_FLAGS or re.fullmatch(r"-v+", word):
            continue
        name, eq, value = word.partition("=")
        if name in _GALAXY_VALUED:
            if not eq:
                pending = name
                continue
            want = _GALAXY_VALUED[name]
            if want is not None and value != want:
                return f"{name} must be {name}={want} (vmctl fills in the project's file)"
            continue
        return f"{visible(word)[:60]!r} is not allowed in galaxy_command (it is unknown to vmctl, or acts on this computer)"
    if pending is not None:
        return f"{pending} needs a value"
    return None


def extra_vars_problem(text: str, file_problem: FileProblem | None = None) -> str | None:
    """Why the extra variables TEXT (as -e takes them: key=value pairs, JSON or YAML, or
    @FILE) may not be given, or None."""
    if text.startswith("@"):
        return file_problem(text[1:]) if file_problem is not None else None
    import shlex

    names: list[object] = []
    stripped = text.strip()
    if stripped.startswith("{"):
        import json

        try:
            data = json.loads(stripped)
        except ValueError:
            try:
                import yaml

                data = yaml.safe_load(stripped)
            except Exception:  # noqa: BLE001 - not data: ansible refuses it too
                return f"the extra variables {visible(text)[:60]!r} are neither key=value pairs nor JSON"
        if not isinstance(data, dict):
            return f"the extra variables {visible(text)[:60]!r} are not a mapping"
        names = list(data)
    else:
        try:
            words = shlex.split(text)
        except ValueError:
            return f"the extra variables {visible(text)[:60]!r} cannot be split into key=value pairs"
        names = [w.split("=", 1)[0] for w in words]
    for name in names:
        problem = ansible_var_problem(name)
        if problem:
            return problem
    return None


# OpenSSH options ansible may pass to ssh (raw_ssh_args). Options that only tune the
# connection are kept; options that would weaken the pinned host key check or lend the
# guest this computer's agent or display are dropped with a warning; anything that runs a
# program, reads or writes a file here, or connects elsewhere is refused.
_SSH_KEEP = frozenset(k.lower() for k in (
    "AddressFamily", "BatchMode", "Ciphers", "Compression", "ConnectionAttempts", "ConnectTimeout",
    "ControlMaster", "ControlPersist", "HostKeyAlgorithms", "IdentitiesOnly", "IPQoS",
    "KexAlgorithms", "LogLevel", "MACs", "NumberOfPasswordPrompts", "PasswordAuthentication",
    "PreferredAuthentications", "PubkeyAcceptedAlgorithms", "PubkeyAcceptedKeyTypes",
    "PubkeyAuthentication", "RekeyLimit", "RequestTTY", "ServerAliveCountMax",
    "ServerAliveInterval", "TCPKeepAlive", "VisualHostKey", "ExitOnForwardFailure",
    "GSSAPIAuthentication", "KbdInteractiveAuthentication", "ChallengeResponseAuthentication",
    "Protocol", "EscapeChar", "FingerprintHash",
))
_SSH_DROP = {k.lower(): why for k, why in {
    "StrictHostKeyChecking": "vmctl checks the machine's pinned host key",
    "UserKnownHostsFile": "vmctl checks the machine's pinned host key",
    "GlobalKnownHostsFile": "vmctl checks the machine's pinned host key",
    "CheckHostIP": "vmctl checks the machine's pinned host key",
    "HostKeyAlias": "vmctl checks the machine's pinned host key",
    "UpdateHostKeys": "vmctl checks the machine's pinned host key",
    "ForwardAgent": "a guest could use the keys of your ssh agent",
    "ForwardX11": "a guest could reach your display",
    "ForwardX11Trusted": "a guest could reach your display",
}.items()}
_SSH_FLAGS_KEEP = frozenset("C46qvTtNnKk")
_SSH_FLAGS_DROP = {"A": "a guest could use the keys of your ssh agent", "X": "a guest could reach your display",
                   "Y": "a guest could reach your display"}


def parse_ssh_args(items: list[str]) -> tuple[list[str], list[str], str | None]:
    """RAW_SSH_ARGS (each element shell-split, as ansible splits them) as (the options kept,
    what was dropped and why, why they are refused or None)."""
    import shlex

    kept: list[str] = []
    dropped: list[str] = []
    for item in items:
        if any(ord(c) < 32 for c in item):
            return [], [], f"the ssh option {visible(item)[:60]!r} holds a control character"
        try:
            words = shlex.split(item)
        except ValueError:
            return [], [], f"the ssh options {visible(item)[:60]!r} cannot be split into words"
        i = 0
        while i < len(words):
            word = words[i]
            if word == "-o" or word.startswith("-o"):
                if word == "-o":
                    if i + 1 >= len(words):
                        return [], [], "the ssh option -o needs a value"
                    option = words[i + 1]
                    i += 2
                else:
                    option = word[2:]
                    i += 1
                key = re.split(r"[=\s]", option.strip(), maxsplit=1)[0].lower()
                if key in _SSH_KEEP:
                    kept += ["-o", option]
                elif key in _SSH_DROP:
                    dropped.append(f"-o {option} ({_SSH_DROP[key]})")
                else:
                    return [], [], (f"the ssh option -o {visible(option)[:60]} is not allowed (it could run a program, "
                                    "use a file on this computer or connect elsewhere)")
                continue
            if re.fullmatch(r"-[A-Za-z0-9]+", word):
                letters = word[1:]
                for c in letters:
                    if c in _SSH_FLAGS_DROP:
                        dropped.append(f"-{c} ({_SSH_FLAGS_DROP[c]})")
                    elif c not in _SSH_FLAGS_KEEP:
                        return [], [], f"the ssh option -{c} is not allowed (it could run a program, use a file on this computer or connect elsewhere)"
                keep = "".join(c for c in letters if c in _SSH_FLAGS_KEEP)
                if keep:
                    kept.append("-" + keep)
                i += 1
                continue
            return [], [], f"{visible(word)[:60]!r} is not an ssh option"
    return kept, dropped, None


def outside_roots(path: str, roots: list[str]) -> bool:
    """Whether PATH (symbolic links resolved) lies outside every folder in ROOTS."""
    import os

    real = os.path.realpath(path)
    return not any(real == r or real.startswith(r.rstrip("/") + "/") for r in (os.path.realpath(x) for x in roots))


# -- two-way synced folders ---------------------------------------------------------------------

def shared_folder_problem(path: str, project: str) -> str | None:
    """Why host folder PATH may not be shared two-way (virtiofs, 9p) with a guest of the
    project in folder PROJECT, or None. The guest can then write (and, through links it
    makes, name) anything in the folder, so: an absolute path; nothing QEMU's option strings
    would split (a comma) and no control character; a folder, not a symbolic link; and a
    path written inside the project may not lead out of it through a symbolic link on the
    way (the project's files are untrusted; a path the user wrote outside the project is
    shared as the user named it). A folder holding the home folder (or /) is refused:
    the guest could write the user's shell start-up files."""
    import os

    if not path.startswith("/"):
        return f"{visible(path)!r} is not an absolute path"
    if "," in path or any(ord(c) < 32 or ord(c) == 127 for c in path):
        return f"{visible(path)!r} holds a comma or a control character, which QEMU's options cannot carry"
    norm = os.path.normpath(path)
    if os.path.islink(norm):
        return f"{norm} is a symbolic link; name the folder it points to"
    if not os.path.isdir(norm):
        return f"{norm} is not a folder"
    real = os.path.realpath(norm)
    project_real = os.path.realpath(project)
    lexical_inside = norm == os.path.normpath(project) or norm.startswith(os.path.normpath(project).rstrip("/") + "/")
    if lexical_inside and outside_roots(real, [project_real]):
        return f"{norm} leads out of the project folder through a symbolic link (to {real})"
    home = os.path.realpath(os.path.expanduser("~"))
    if real == "/" or not outside_roots(home, [real]):
        return f"{real} holds {'every file of this computer' if real == '/' else 'your home folder'}: share a folder inside it"
    return None


_MOUNT_OPTION = re.compile(r"[A-Za-z0-9_.:/+-]+(=[A-Za-z0-9_.:/+@-]*)?")


def mount_options_problem(options: list[str]) -> str | None:
    """Why OPTIONS (mount -o words in the guest) are refused, or None: each a word or
    word=value of plain characters (no commas inside one, no spaces, no quotes)."""
    for option in options:
        if not _MOUNT_OPTION.fullmatch(option) or len(option) > 200:
            return f"mount option {visible(option)[:60]!r} is not a plain option word"
    return None


# -- OpenSSH config ----------------------------------------------------------------------------

def ssh_config_value(value: str, *, pattern_ok: bool = False) -> str:
    """VALUE for an OpenSSH config line, in double quotes when it holds a space; ValueError
    if it cannot be written safely (a control character or a double quote: a newline
    would start a new line, such as a ProxyCommand; or, unless PATTERN_OK, a pattern
    character, which would make a Host entry match other hosts)."""
    if not value or any(ord(c) < 32 or ord(c) == 127 for c in value) or '"' in value:
        raise ValueError(f"{visible(value)!r} cannot be written into an OpenSSH config")
    if not pattern_ok and any(c in value for c in "*?!,"):
        raise ValueError(f"{value!r} holds an OpenSSH pattern character")
    if any(c.isspace() for c in value) or "#" in value or "=" in value:
        return f'"{value}"'
    return value


# -- the terminal ------------------------------------------------------------------------------

_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def visible(text: str, *, keep_newlines: bool = True) -> str:
    """TEXT with control characters (escape sequences among them: OSC 52 writes the
    clipboard, others erase lines or retitle the window) shown as \\xNN. Tabs stay, and
    newlines unless KEEP_NEWLINES is false."""
    out = _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", text)
    if not keep_newlines:
        out = out.replace("\n", "\\n")
    return out


_SGR = re.compile(r"\x1b\[[0-9;]*m")


def terminal_safe(text: str) -> str:
    """Output of a guest's command for the terminal: colours (SGR sequences) kept, every
    other control sequence made visible."""
    parts = _SGR.split(text)
    colours = _SGR.findall(text)
    out = [visible(parts[0])]
    for colour, part in zip(colours, parts[1:], strict=True):
        out.append(colour)
        out.append(visible(part))
    return "".join(out)
