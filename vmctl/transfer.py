"""Uploads into a guest (`vmctl upload`, Vagrant's `upload`): a file or a folder's
contents, copied over OpenSSH with the machine key and the pinned host key.

Each upload is one OpenSSH connection running one POSIX shell script in the guest, which
receives the data on its stdin: a file as it is (its mode kept), a folder as a tar stream (made here with
tarfile, so the host needs no tar), gzip-compressed for `--compress` (tgz), or a zip file
for `--compression-type zip`, unpacked by the guest's `unzip` (or busybox's). The script
creates what is missing of the destination's folders, and for `--temporary` makes the
destination with mktemp and prints it. Everything runs as the SSH user, as Vagrant's
upload does: writing where that user may not is the guest's "permission denied".
"""

from __future__ import annotations

import os
import shlex
import shutil
import tarfile
import tempfile
import zipfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from vmctl.errors import UsageError, VmctlError
from vmctl.run import feed, last_line, require_tool
from vmctl.ssh import Endpoint, openssh_options

COMPRESSION_TYPES = ("tgz", "zip")


@dataclass(frozen=True)
class Upload:
    """What to upload, and where: checked values (parse_upload makes them)."""

    source: Path
    is_dir: bool
    destination: str | None  # None with temporary: a mktemp path
    temporary: bool
    compression: str | None  # None, "tgz" or "zip"


def parse_compression(compress: bool, compression_type: str | None) -> str | None:
    """--compress and --compression-type TYPE (which implies --compress), as Vagrant."""
    if compression_type is None:
        return "tgz" if compress else None
    if compression_type not in COMPRESSION_TYPES:
        raise UsageError(
            f"unknown compression type {compression_type!r}",
            hint=f"use one of: {', '.join(COMPRESSION_TYPES)}",
        )
    return compression_type


def parse_upload(source: str, destination: str | None, *, temporary: bool,
                 compression: str | None) -> Upload:
    """SOURCE (a file or folder on the host) and DESTINATION (in the guest; default: the
    source's name, relative to the SSH user's home) as an Upload."""
    path = Path(source.rstrip("\"'")).expanduser()  # Vagrant strips a stray quote too
    if not path.exists():
        raise VmctlError(f"the upload source {path} does not exist",
                         hint="give a file or a folder on this host")
    if not (path.is_file() or path.is_dir()):
        raise VmctlError(f"the upload source {path} is neither a file nor a folder")
    if destination is not None and not destination:
        raise UsageError("the destination is empty", hint="give a path in the guest")
    if temporary:
        destination = None
    elif destination is None:
        destination = path.absolute().name
    return Upload(source=path, is_dir=path.is_dir(), destination=destination,
                  temporary=temporary, compression=compression)


def guest_script(u: Upload) -> str:
    """The POSIX shell script that receives U on its stdin and prints where it went."""
    q = shlex.quote
    lines = ["set -e"]
    if u.temporary:
        if u.is_dir:
            lines.append('dest=$(mktemp -d "${TMPDIR:-/tmp}/vmctl-XXXXXX")')
        else:
            lines.append('dest=$(mktemp "${TMPDIR:-/tmp}/vmctl-XXXXXX")')
            ext = "".join(u.source.suffixes[-1:])
            if ext and ext.replace(".", "").isalnum():
                lines.append(f'mv -f "$dest" "$dest"{q(ext)}; dest="$dest"{q(ext)}')
    else:
        assert u.destination is not None
        lines.append(f"dest={q(u.destination)}")
        if not u.is_dir:
            # A destination that is a folder (or ends in "/") gets the file under its name.
            name = q(u.source.name)
            lines.append(f'case "$dest" in */) dest="$dest"{name};; *) if [ -d "$dest" ]; then '
                         f'dest="$dest"/{name}; fi;; esac')
    if u.is_dir:
        lines.append('mkdir -p "$dest"')
    else:
        lines.append('mkdir -p "$(dirname "$dest")"')
    target = '"$dest"' if u.is_dir else '"$work"'  # a file is unpacked aside, then moved
    if u.compression is not None and not u.is_dir:
        lines.append('work=$(mktemp -d "${TMPDIR:-/tmp}/vmctl-XXXXXX")')
        lines.append("trap 'rm -rf \"$work\"' EXIT")
    if u.compression is None and u.is_dir:
        lines.append('tar -xf - -C "$dest"')
    elif u.compression is None:
        lines.append('cat > "$dest"')
        lines.append(f'chmod {u.source.stat().st_mode & 0o777:o} "$dest"')  # as tar keeps modes
    elif u.compression == "tgz":
        lines.append(f"tar -xzf - -C {target}")
    else:
        lines.append('if command -v unzip >/dev/null 2>&1; then unzip=unzip; '
                     'elif command -v busybox >/dev/null 2>&1; then unzip="busybox unzip"; '
                     'else echo "the guest has no unzip for --compression-type zip" >&2; exit 3; fi')
        lines.append('zip=$(mktemp "${TMPDIR:-/tmp}/vmctl-XXXXXX")')
        lines.append("trap 'rm -rf \"$zip\" ${work:+\"$work\"}' EXIT")
        lines.append('cat > "$zip"')
        lines.append(f'$unzip -o -q "$zip" -d {target}')
    if u.compression is not None and not u.is_dir:
        lines.append(f'mv -f "$work"/{q(u.source.name)} "$dest"')
    lines.append('printf "%s\\n" "$dest"')
    return "\n".join(lines)


def _tar_writer(u: Upload, mode: str) -> Callable[[BinaryIO], None]:
    def write(stream: BinaryIO) -> None:
        with tarfile.open(fileobj=stream, mode=mode, format=tarfile.GNU_FORMAT) as tar:
            if u.is_dir:
                for entry in sorted(os.listdir(u.source)):
                    tar.add(u.source / entry, arcname=entry)
            else:
                tar.add(u.source, arcname=u.source.name)
    return write


def _file_writer(path: Path) -> Callable[[BinaryIO], None]:
    def write(stream: BinaryIO) -> None:
        with path.open("rb") as f:
            shutil.copyfileobj(f, stream, 1 << 20)
    return write


@contextmanager
def _zip_of(u: Upload) -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="vmctl-upload-") as tmp:
        archive = Path(tmp) / "upload.zip"
        with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as z:
            if u.is_dir:
                for root, dirs, files in os.walk(u.source):
                    dirs.sort()
                    for name in sorted(files) + dirs:
                        full = Path(root) / name
                        z.write(full, full.relative_to(u.source).as_posix())
            else:
                z.write(u.source, u.source.name)
        yield archive


def upload(u: Upload, endpoint: Endpoint, key: Path) -> str:
    """Copy U into the guest at ENDPOINT; return where it went (the destination as the
    guest's shell saw it: relative to the user's home unless absolute)."""
    ssh = require_tool("ssh", "upload into the guest")
    argv = [ssh, *openssh_options(endpoint, key), "-T", "127.0.0.1", f"sh -c {shlex.quote(guest_script(u))}"]
    purpose = "upload into the guest"
    if u.compression == "zip":
        with _zip_of(u) as archive:
            proc = feed(argv, _file_writer(archive), purpose=purpose)
    elif u.compression == "tgz":
        proc = feed(argv, _tar_writer(u, "w|gz"), purpose=purpose)
    elif u.is_dir:
        proc = feed(argv, _tar_writer(u, "w|"), purpose=purpose)
    else:
        proc = feed(argv, _file_writer(u.source), purpose=purpose)
    if proc.returncode != 0:
        detail = last_line(proc.stderr)
        raise VmctlError(
            f"the upload of {u.source} failed (exit status {proc.returncode})"
            + (f": {detail}" if detail else ""),
            hint="check that the SSH user may write the destination",
        )
    printed = [line for line in proc.stdout.decode(errors="replace").splitlines() if line]
    return printed[-1] if printed else (u.destination or "")
