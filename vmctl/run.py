"""The one funnel every subprocess goes through.

argv is a list, stdin is closed unless given, the command is logged with shlex.join under
--debug, and "not found" becomes a MissingToolError that says what the tool is for.
"""

from __future__ import annotations

import logging
import shutil
import threading
from collections.abc import Callable, Mapping, Sequence
from contextlib import suppress
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

from vmctl.errors import MissingToolError, VmctlError

if TYPE_CHECKING:
    import subprocess

log = logging.getLogger("vmctl.run")

# Which Debian package provides a tool, for the hint of a MissingToolError.
PACKAGES = {
    "qemu-img": "qemu-utils",
    "qemu-system-x86_64": "qemu-system-x86",
    "mmdebstrap": "mmdebstrap",
    "mkfs.ext4": "e2fsprogs",
    "rsync": "rsync",
    "ssh": "openssh-client",
    "cpio": "cpio",
    "sfdisk": "fdisk",
    "mkfs.vfat": "dosfstools",
    "mmd": "mtools",
    "mcopy": "mtools",
    "grub-mkimage": "grub-common",
    "libvirtd": "libvirt-daemon-system",
}


def require_tool(name: str, purpose: str) -> str:
    """The full path of NAME, or a MissingToolError naming it and what needs it."""
    path = shutil.which(name) or shutil.which(name, path="/usr/sbin:/sbin:/usr/bin:/bin")
    if path is None:
        package = PACKAGES.get(name, name)
        raise MissingToolError(
            f"could not find '{name}', which is required to {purpose}",
            hint=f"install it: sudo apt-get install {package}",
        )
    return path


def run(
    argv: Sequence[str | Path],
    *,
    purpose: str,
    check: bool = True,
    capture: bool = True,
    input: bytes | None = None,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    timeout: float | None = None,
) -> subprocess.CompletedProcess[bytes]:
    """Run ARGV; on failure raise VmctlError quoting the command's last error line."""
    # subprocess and shlex here, not at the top: `vmctl ssh` only asks require_tool
    import shlex
    import subprocess

    args = [str(a) for a in argv]
    args[0] = require_tool(args[0], purpose) if "/" not in args[0] else args[0]
    log.debug("run: %s", shlex.join(args))
    try:
        proc = subprocess.run(
            args,
            input=input,
            stdin=None if input is not None else subprocess.DEVNULL,
            stdout=subprocess.PIPE if capture else None,
            stderr=subprocess.PIPE if capture else None,
            env=dict(env) if env is not None else None,
            cwd=cwd,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise VmctlError(f"{Path(args[0]).name} did not finish in {timeout:.0f} s ({purpose})") from exc
    except OSError as exc:
        raise VmctlError(f"could not run {args[0]}: {exc.strerror}") from exc
    if check and proc.returncode != 0:
        detail = last_line(proc.stderr) or last_line(proc.stdout)
        raise VmctlError(
            f"{Path(args[0]).name} failed with exit status {proc.returncode} while trying to {purpose}"
            + (f": {detail}" if detail else ""),
            hint="run again with --debug to see the command",
        )
    return proc


def feed(
    argv: Sequence[str | Path],
    writer: Callable[[BinaryIO], None],
    *,
    purpose: str,
) -> subprocess.CompletedProcess[bytes]:
    """Run ARGV with WRITER writing its stdin (a stream, never all in memory); return it
    finished, its stdout and stderr captured. The caller checks the exit status."""
    import shlex
    import subprocess

    args = [str(a) for a in argv]
    args[0] = require_tool(args[0], purpose) if "/" not in args[0] else args[0]
    log.debug("run: %s", shlex.join(args))
    try:
        proc = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE)
    except OSError as exc:
        raise VmctlError(f"could not run {args[0]}: {exc.strerror}") from exc
    assert proc.stdin is not None
    out: list[bytes] = []
    err: list[bytes] = []
    readers = [threading.Thread(target=lambda: out.append(proc.stdout.read()), daemon=True),  # type: ignore[union-attr]
               threading.Thread(target=lambda: err.append(proc.stderr.read()), daemon=True)]  # type: ignore[union-attr]
    for t in readers:
        t.start()
    try:
        with suppress(BrokenPipeError):  # the command ended early: its status says why
            writer(proc.stdin)
        with suppress(BrokenPipeError):
            proc.stdin.close()
    except BaseException:
        proc.kill()
        raise
    finally:
        status = proc.wait()
        for t in readers:
            t.join()
    return subprocess.CompletedProcess(args, status, b"".join(out), b"".join(err))


def spawn(argv: Sequence[str | Path], *, purpose: str) -> subprocess.Popen[bytes]:
    """Start ARGV and return it running (stdin and stdout closed, stderr ours: what it says
    is for the user): a process that lives until the user stops it (`port --tunnel`'s ssh)."""
    import shlex
    import subprocess

    args = [str(a) for a in argv]
    args[0] = require_tool(args[0], purpose) if "/" not in args[0] else args[0]
    log.debug("run: %s", shlex.join(args))
    try:
        return subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
    except OSError as exc:
        raise VmctlError(f"could not run {args[0]}: {exc.strerror}") from exc


def last_line(data: bytes | None) -> str:
    if not data:
        return ""
    lines = [line for line in data.decode(errors="replace").splitlines() if line.strip()]
    return lines[-1].strip() if lines else ""
