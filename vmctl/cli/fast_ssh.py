"""`vmctl ssh` without the machine layer: read the state file and the cached evaluation of
the Vagrantfile, check them, and hand over to OpenSSH.

A CI script runs `vmctl ssh -c` hundreds of times, and each run's cost is Python's start
plus what vmctl does before OpenSSH takes over. The full path (vmctl/cli/ssh.py) loads
the project, the machine layer and the model's dataclasses for that: 40-60 ms on this kind
of machine, against OpenSSH's 250-350 ms for a login to a TCG guest. This path does the
same reading with the standard library's `os`, `json` and `pickle` only, and builds the
command with the code the full path uses (vmctl/openssh.py).

It is taken only when every check passes, and the full path runs otherwise, silently:
  - a command line it knows (fast.match: `ssh [NAME] [-c CMD] [-p] [-t|--no-tty] [-- ...]`),
    no --debug or logs (VMCTL_DEBUG, VAGRANT_LOG), no --machine-readable, no provider
    other than libvirt asked for;
  - the Vagrantfile found as paths.find_vagrantfile finds it, and every path in a form
    pathlib would write the same way (anything else: the full path computes it);
  - an evaluation cache entry for it (vmctl/vagrantfile/cache.py) whose every probe still
    answers the same (`box` probes through the box store's fingerprint), and a Vagrantfile
    that printed nothing;
  - the machine named, or the primary or only one;
  - its state folder real folders, its state.json in exactly the shape the machine layer
    accepts (MachineState.from_json; a shape this module is not sure of falls back), and
    the machine in the index;
  - QEMU running (embedded driver), the host key pinned, the login key there, ssh found.
Every error therefore comes from the full path, with its message and exit status.

The constants below mirror the machine layer's; tests/unit/test_fast_ssh.py checks them
against the originals and runs both paths over a table of projects and states.
"""

from __future__ import annotations

import os
import sys

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from vmctl.openssh import Login

# vmctl/machine/state.py and disks.py: MachineState, ForwardState, MachineDisk and the shapes
# MachineState.from_json accepts; vmctl/state.py: IndexEntry.
STATE_FIELDS = ("id", "domain", "uri", "disk", "console_log", "ssh_port", "ssh_user", "box_name", "box_version",
                "forwards", "macs", "key_inserted", "provisioned", "halted", "phase", "created", "uuid",
                "root_grown", "disks", "pool", "dhcp_addresses")
STATE_REQUIRED = ("id", "domain", "uri", "disk", "console_log", "ssh_port", "ssh_user")
FORWARD_FIELDS = ("id", "guest", "host", "host_ip", "protocol", "guest_ip")
FORWARD_REQUIRED = ("id", "guest", "host", "host_ip", "protocol")
DISK_FIELDS = ("role", "name", "path", "owner", "target", "bus", "format", "size", "source", "source_format",
               "attached", "readonly", "options", "pool", "volume")
DISK_REQUIRED = ("role", "name", "path")
INDEX_FIELDS = ("id", "name", "project", "domain", "uri", "box_name", "box_version", "ports", "created")
INDEX_REQUIRED = ("id", "name", "project", "domain", "uri")
ROLES = ("box", "extra", "volume", "cdrom", "floppy", "nvram", "tpm")
OWNERS = ("vmctl", "libvirt", "user")
BOX_DISK = "disk.qcow2"
CONSOLE_FILE = "console.log"
SNAPSHOTS_DIR = "snapshots"
MACHINE_HOME_FILES = (BOX_DISK, CONSOLE_FILE, "nvram.fd", "cidata.iso")
MACHINE_HOME_PREFIXES = ("disk-", "floppy-", "serial-", "channel-")
MACHINE_ID_RE = r"[0-9a-f]{12}"
DOMAIN_NAME_RE = r"[A-Za-z0-9_.][A-Za-z0-9_.-]{0,199}"
UUID_RE = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
MAC_RE = r"[0-9a-f]{2}(:[0-9a-f]{2}){5}"
OVERLAY_RE = r"[0-9a-f]{12}-[a-z][a-z0-9]{1,11}\.qcow2"
MAX_STATE_BYTES = 1024 * 1024
VAGRANTFILE_NAMES = ("Vagrantfile", "vagrantfile")


class Fallback(Exception):
    """The full path must run (it decides, and says why if something is wrong)."""


def run(args: list[str], extra: list[str]) -> bool:
    """Exec OpenSSH for `vmctl ssh ARGS [-- EXTRA]` if every check passes; else return
    False, and the caller runs the full path. (True: an execv that returned, in tests.)"""
    try:
        argv = ssh_argv(args, extra)
    except Exception:  # noqa: BLE001 - Fallback, or anything unforeseen: the full path decides
        return False
    sys.stdout.flush()
    sys.stderr.flush()
    try:
        os.execv(argv[0], argv)
    except OSError:
        return False  # the full path runs and reports it
    return True


def ssh_argv(args: list[str], extra: list[str]) -> list[str]:
    """The command the full path would exec for `vmctl ssh ARGS [-- EXTRA]`, or Fallback."""
    from vmctl.cli import fast

    matched = fast.match(args, extra)
    if matched is None or matched[0].function != "ssh":
        raise Fallback("not a plain ssh command line")
    kwargs = matched[1]
    name, command, plain, tty = kwargs["name"], kwargs["command"], kwargs["plain"], kwargs["tty"]
    _check_environment()
    login = machine_login(("ssh", *([name] if name else [])), name)
    binary = _which("ssh")
    from vmctl import openssh

    argv = [binary, *openssh.options(login, plain=plain)]
    if command is None:
        argv += ["-t"] if sys.stdin.isatty() and tty is not False else []
    else:
        argv += ["-t"] if tty else ["-T"] if tty is False else []
    return argv + ["127.0.0.1", *extra, *([command] if command is not None else [])]


def _check_environment() -> None:
    """What the full path's start-up reads from the environment and would act on."""
    env = os.environ
    if env.get("VMCTL_DEBUG") or env.get("VAGRANT_LOG"):
        raise Fallback("logs asked for")
    if env.get("VAGRANT_DEFAULT_PROVIDER") not in (None, "", "libvirt"):
        raise Fallback("another provider asked for")


def machine_login(words: tuple[str, ...], name: str | None) -> Login:
    """How to log in to machine NAME (None: the primary or only one) of the current project,
    as the full path works it out, for the command line WORDS (the Vagrantfile's ARGV)."""
    from vmctl.openssh import Login, read_pin

    vagrantfile = find_vagrantfile()
    root = os.path.dirname(vagrantfile)
    home = vmctl_home()
    machine = _machine_settings(vagrantfile, home, words, name)
    ssh = machine["ssh"]
    folder = machine_state_dir(root, machine["name"])
    state = machine_state(folder, home, root, machine["name"])
    if _qemu_alive(state["uri"], state["domain"]) is False:
        raise Fallback("the machine is not running")
    known_hosts = folder + "/known_hosts"
    alias = f"vmctl-{state['id']}"
    if read_pin(known_hosts, alias) is None:
        raise Fallback("no host key pinned")
    user = state["ssh_user"]
    if not isinstance(user, str):
        raise Fallback("ssh_user is not a string")
    config = ssh.get("config")
    if config and not _normal(config, relative_ok=True):
        raise Fallback("config.ssh.config in a form pathlib writes otherwise")
    return Login(
        port=state["ssh_port"], user=user, alias=alias, known_hosts=known_hosts,
        key=_login_key(ssh, state, folder, root), keys_only=ssh["keys_only"],
        connect_timeout=ssh["connect_timeout"], forward_agent=ssh["forward_agent"],
        forward_x11=ssh["forward_x11"], forward_env=ssh["forward_env"], config_file=config or None,
        extra_args=ssh["extra_args"],
    )


# -- paths, as vmctl/paths.py and vmctl/environment.py compute them ---------------------------

def _normal(path: str, *, relative_ok: bool = False) -> bool:
    """Whether str(pathlib.Path(PATH)) is PATH: no empty or "." parts, no trailing slash, not
    two leading slashes (pathlib keeps ".." as it is)."""
    if path.startswith("/"):
        if path == "/":
            return True
        parts = path[1:].split("/")
    elif relative_ok and path:
        if path == ".":
            return True
        parts = path.split("/")
    else:
        return False
    return all(part not in ("", ".") for part in parts)


def _absolute(path: str) -> str:
    """Path(PATH).expanduser().absolute(), for a PATH pathlib writes as it is; else Fallback."""
    if path.startswith("~"):
        raise Fallback("a path with ~")
    if not path.startswith("/"):
        path = os.getcwd() + ("/" + path if path != "." else "")
    if not _normal(path):
        raise Fallback(f"{path!r} is written otherwise by pathlib")
    return path


def _join(folder: str, name: str) -> str:
    return folder + name if folder == "/" else f"{folder}/{name}"


def _stat_is(path: str, kind: str) -> bool:
    """Path.is_file()/is_dir(): false where pathlib says false, Fallback where it raises."""
    import errno
    import stat

    try:
        mode = os.stat(path).st_mode
    except OSError as exc:
        if exc.errno in (errno.ENOENT, errno.ENOTDIR, errno.EBADF, errno.ELOOP):
            return False
        raise Fallback(f"cannot stat {path}") from exc
    return stat.S_ISREG(mode) if kind == "file" else stat.S_ISDIR(mode)


def find_vagrantfile() -> str:
    """paths.require_vagrantfile()."""
    env = os.environ
    if env.get("VMCTL_VAGRANTFILE"):
        path = _absolute(env["VMCTL_VAGRANTFILE"])
        if not _stat_is(path, "file"):
            raise Fallback("VMCTL_VAGRANTFILE is not a file")
        return path
    names = VAGRANTFILE_NAMES
    if env.get("VAGRANT_VAGRANTFILE"):
        name = env["VAGRANT_VAGRANTFILE"]
        if "/" in name or name in (".", ".."):
            raise Fallback("VAGRANT_VAGRANTFILE is not a file name")
        names = (name,)
    if env.get("VAGRANT_CWD"):
        here = _absolute(env["VAGRANT_CWD"])
        if not _stat_is(here, "dir"):
            raise Fallback("VAGRANT_CWD is not a folder")
    else:
        here = _absolute(os.getcwd())
    folder = here
    while True:
        for name in names:
            candidate = _join(folder, name)
            if _stat_is(candidate, "file"):
                return candidate
        parent = os.path.dirname(folder)
        if parent == folder:
            raise Fallback("no Vagrantfile")
        folder = parent


def vmctl_home() -> str:
    """paths.vmctl_home()."""
    env = os.environ
    if env.get("VMCTL_HOME"):
        return _absolute(env["VMCTL_HOME"])
    if env.get("XDG_DATA_HOME"):
        return _absolute(_join(env["XDG_DATA_HOME"], "vmctl"))
    home = os.path.expanduser("~")
    if home.startswith("~"):
        raise Fallback("no home folder")
    return _absolute(home + "/.local/share/vmctl")


def machine_state_dir(root: str, name: str) -> str:
    """paths.machine_state_dir(ROOT, NAME): the name's shape checked, no link on the way."""
    import stat

    from vmctl.untrusted import machine_name_problem

    if machine_name_problem(name) is not None:
        raise Fallback("not a machine name")
    env = os.environ
    dotfile = env.get("VMCTL_DOTFILE_PATH") or env.get("VAGRANT_DOTFILE_PATH")
    if dotfile:
        if dotfile.startswith("~"):
            raise Fallback("a path with ~")
        state = dotfile if dotfile.startswith("/") else _join(root, dotfile)
        if not _normal(state) or ".." in state.split("/"):
            raise Fallback("a dotfile path pathlib writes otherwise")
    else:
        state = _join(root, ".vmctl")
    current = os.path.dirname(state)
    for part in (os.path.basename(state), "machines", name):
        current = _join(current, part)
        try:
            mode = os.lstat(current).st_mode
        except FileNotFoundError:
            raise Fallback("no state folder") from None
        if not stat.S_ISDIR(mode):
            raise Fallback(f"{current} is a link or not a folder")
    return current


# -- the cached evaluation --------------------------------------------------------------------

def _machine_settings(vagrantfile: str, home: str, words: tuple[str, ...], name: str | None) -> dict[str, Any]:
    """The machine's entry of the cache's ssh summary, if the cache entry is current."""
    from vmctl.vagrantfile import cache

    if not cache.enabled():
        raise Fallback("the evaluation cache is off")
    entry = cache.read(vagrantfile, home, has_plugin=os.environ.get("VMCTL_HAS_PLUGIN", "1") != "0")
    if entry is None:
        raise Fallback("no evaluation cached")
    probes = entry["probes"]
    boxes = _join(home, "boxes")
    for kind, _arg in probes:
        # A box lookup is vouched for by the box store's fingerprint, taken before it
        # (recording.StoreLookup) and asked again below with the other probes.
        if kind == "box" and ("boxstore", boxes) not in probes:
            raise Fallback("a box lookup without the store's fingerprint")
    current = {key: answer for key, answer in probes.items() if key[0] != "box"}
    if cache.changed_probe({"probes": current}, argv=words, box_lookup=None) is not None:
        raise Fallback("the cached evaluation is stale")
    summary = entry["ssh"]
    if summary["messages"]:
        raise Fallback("the Vagrantfile prints messages")
    machines = summary["machines"]
    if name:
        found = [m for m in machines if m["name"] == name]
        if not found:
            raise Fallback("no such machine")
        return found[0]  # type: ignore[no-any-return]
    if len(machines) > 1 and not any(m["primary"] for m in machines):
        raise Fallback("several machines, none primary")
    return next((m for m in machines if m["primary"]), machines[0])  # type: ignore[no-any-return]


# -- the machine's state, as vmctl/machine/state.py reads and checks it ----------------------

def _read_json(path: str, *, follow_links: bool) -> Any:
    import json

    if follow_links:
        with open(path) as f:
            return json.loads(f.read())
    import stat

    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    with os.fdopen(fd, "rb") as f:
        if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
            raise Fallback("not a regular file")
        text = f.read(MAX_STATE_BYTES + 1).decode("utf-8", "replace")
    if len(text) > MAX_STATE_BYTES:
        raise Fallback("too large")
    return json.loads(text)


def _fields_ok(data: object, fields: tuple[str, ...], required: tuple[str, ...], *, extra_ok: bool) -> bool:
    """Whether DATA would make the dataclass with FIELDS (EXTRA_OK: unknown keys dropped first)."""
    return (isinstance(data, dict) and all(isinstance(k, str) for k in data)
            and (extra_ok or all(k in fields for k in data)) and all(k in data for k in required))


def _port_ok(value: object) -> bool:
    return not isinstance(value, bool) and isinstance(value, int) and 0 <= value <= 65535


def machine_state(folder: str, home: str, root: str, name: str) -> dict[str, Any]:
    """The machine's state.json as MachineState.from_json accepts it, for a machine the index
    knows; Fallback for anything else (the full path says what is wrong, or that it is not
    created)."""
    import re

    data = _read_json(folder + "/state.json", follow_links=False)
    if not _fields_ok(data, STATE_FIELDS, STATE_REQUIRED, extra_ok=True):
        raise Fallback("state.json is not in the expected shape")
    if data.get("pool") is not None:
        raise Fallback("the disks are volumes of a storage pool")
    forwards = data.get("forwards", [])
    if not isinstance(forwards, list) or not all(
            _fields_ok(f, FORWARD_FIELDS, FORWARD_REQUIRED, extra_ok=False) for f in forwards):
        raise Fallback("a forward is not in the expected shape")
    machine_id = data["id"]
    if not isinstance(machine_id, str) or not re.fullmatch(MACHINE_ID_RE, machine_id):
        raise Fallback("not a machine id")
    machine_home = f"{home}/machines/{machine_id}"
    disks = data.get("disks", [])
    if not isinstance(disks, list) or not all(_disk_ok(d, machine_home, home) for d in disks):
        raise Fallback("a disk is not in the expected shape")
    domain, uri = data["domain"], data["uri"]
    if not isinstance(domain, str) or not re.fullmatch(DOMAIN_NAME_RE, domain):
        raise Fallback("not a domain name")
    if not _is_overlay(machine_home, data["disk"]) or data["console_log"] != f"{machine_home}/{CONSOLE_FILE}":
        raise Fallback("disk or console log elsewhere")
    if not isinstance(uri, str) or any(c in uri for c in "\n\r\0"):
        raise Fallback("not a URI")
    if re.match(r"[a-z0-9+]+://[^/]", uri):
        raise Fallback("a remote libvirt host (the full path adds the hop to it)")
    if not all(_port_ok(p) for p in [data["ssh_port"], *(f["host"] for f in forwards), *(f["guest"] for f in forwards)]):
        raise Fallback("not a port")
    macs = data.get("macs", [])
    if not isinstance(macs, list) or not all(isinstance(m, str) and re.fullmatch(MAC_RE, m) for m in macs):
        raise Fallback("not a MAC address")
    uuid = data.get("uuid")
    if uuid is not None and not (isinstance(uuid, str) and re.fullmatch(UUID_RE, uuid)):
        raise Fallback("not a UUID")
    if not _in_index(home, machine_id, domain, root, name):
        raise Fallback("not in the index")
    return data  # type: ignore[no-any-return]


def _is_overlay(machine_home: str, path: object) -> bool:
    """disks.is_overlay."""
    import re

    if not isinstance(path, str):
        return False
    if path == f"{machine_home}/{BOX_DISK}":
        return True
    folder = f"{machine_home}/{SNAPSHOTS_DIR}/"
    return path.startswith(folder) and re.fullmatch(OVERLAY_RE, path[len(folder):]) is not None


def _disk_ok(data: object, machine_home: str, home: str) -> bool:
    """MachineDisk.from_json accepts DATA (a disk vmctl owns: disks.owned_path_ok, for a
    path pathlib writes as it is)."""
    if not _fields_ok(data, DISK_FIELDS, DISK_REQUIRED, extra_ok=True):
        return False
    assert isinstance(data, dict)
    if data.get("pool") is not None or data.get("volume") is not None:
        return False  # a pool volume: the full path checks it
    owner, path = data.get("owner", "vmctl"), data["path"]
    if data["role"] not in ROLES or owner not in OWNERS or not isinstance(path, str):
        return False
    if owner != "vmctl" or _is_overlay(machine_home, path):
        return True
    if not _normal(path):
        return False
    from vmctl.untrusted import file_name_problem

    parent, base = os.path.dirname(path), os.path.basename(path)
    if parent == machine_home:
        return base in MACHINE_HOME_FILES or (base.startswith(MACHINE_HOME_PREFIXES)
                                              and file_name_problem(base) is None)
    return parent == f"{home}/volumes" and file_name_problem(base) is None


def _in_index(home: str, machine_id: str, domain: str, root: str, name: str) -> bool:
    """state.load_index() holds this machine (and reads without error)."""
    try:
        data = _read_json(f"{home}/index.json", follow_links=True)
    except FileNotFoundError:
        return False
    machines = data.get("machines", {}) if isinstance(data, dict) else None
    if not isinstance(machines, dict) or not all(
            _fields_ok(e, INDEX_FIELDS, INDEX_REQUIRED, extra_ok=False) for e in machines.values()):
        raise Fallback("the index is not in the expected shape")
    return any(e["id"] == machine_id and e["domain"] == domain and e["project"] == root and e["name"] == name
               for e in machines.values())


def _login_key(ssh: dict[str, Any], state: dict[str, Any], folder: str, root: str) -> str:
    """Machine.login_key(): config.ssh.private_key_path's first, else the machine key once
    inserted, else the 0600 copy of the insecure key (which the full path writes if missing)."""
    keys = ssh["private_key_path"]
    if keys and any(p.startswith("~") for p in keys):
        raise Fallback("a key path with ~")  # Machine.endpoint() expands every one
    key_file = folder + "/private_key"
    key_there = _exists(key_file)  # endpoint() asks too (pathlib may raise)
    if keys:
        path = keys[0]
        path = path if path.startswith("/") else _join(root, path)
        if not _normal(path):
            raise Fallback("a key path pathlib writes otherwise")
        return path  # type: ignore[no-any-return]
    if state.get("key_inserted", False) and key_there:
        return key_file
    copy = folder + "/insecure_private_key"
    if not _exists(copy):
        raise Fallback("the insecure key's copy is to be written")
    return copy


def _exists(path: str) -> bool:
    """Path.exists(): Fallback where pathlib would raise."""
    import errno

    try:
        os.stat(path)
    except OSError as exc:
        if exc.errno in (errno.ENOENT, errno.ENOTDIR, errno.EBADF, errno.ELOOP):
            return False
        raise Fallback(f"cannot stat {path}") from exc
    return True


def _qemu_alive(uri: str, domain: str) -> bool | None:
    """hypervisor.qemu_alive, for the URIs whose root needs no unquoting."""
    if not uri.startswith("qemu:///embed"):
        return None
    prefix = "qemu:///embed?root="
    root = uri[len(prefix):]
    if not uri.startswith(prefix) or not root or any(c in root for c in "%+&;#?="):
        raise Fallback("an embedded URI this path does not parse")
    try:
        with open(f"{root}/run/qemu/{domain}.pid") as f:
            pid = int(f.read().strip())
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            cmdline = f.read()
    except (OSError, ValueError):
        return False
    return f"guest={domain},".encode() in cmdline or f"guest={domain}\0".encode() in cmdline


def _which(name: str) -> str:
    """run.require_tool(NAME)'s answer (shutil.which, then the usual folders)."""
    for path in (os.environ.get("PATH"), "/usr/sbin:/sbin:/usr/bin:/bin"):
        if path is None:
            try:
                path = os.confstr("CS_PATH")
            except (AttributeError, ValueError):
                path = os.defpath
        if not path:
            continue
        seen = set()
        for folder in os.fsdecode(path).split(os.pathsep):
            if folder in seen:
                continue
            seen.add(folder)
            candidate = os.path.join(folder, name)
            if os.path.exists(candidate) and os.access(candidate, os.F_OK | os.X_OK) and not os.path.isdir(candidate):
                return candidate
    raise Fallback(f"no {name}")
