"""The rules for values that come from a Vagrantfile, a box or a guest: written once here,
checked where such a value becomes a model value (vmctl/vagrantfile/resolve.py), and
checked again wherever one becomes a path, an option string or a config line.

    machine_name_problem   a machine name (a folder name, a domain name part, an ssh Host)
    parse_address          an IP address for QEMU or libvirt option strings
    rsync_args_problem     rsync options that only shape the transfer or the guest's side
    ssh_config_value       a value for an OpenSSH config line (no control characters)
    visible                text for the terminal, with control characters made visible

Nothing here imports the rest of vmctl: the foundations (paths, term) use it too.
"""

from __future__ import annotations

import ipaddress
import re

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
    try:
        return str(ipaddress.ip_address(text.strip("[]") if text.startswith("[") else text))
    except ValueError:
        return None


def is_loopback(address: str) -> bool:
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
