"""Provisioners: shell and file, run in order, their output streamed line by line with
the machine's name in front."""

from __future__ import annotations

import io
import shlex
import tarfile
from collections.abc import Callable
from pathlib import Path

from vmctl.errors import ProvisionError, VmctlError
from vmctl.ssh import Session, guest_command
from vmctl.vagrantfile.model import Provisioner


def label(p: Provisioner, index: int) -> str:
    return p.name or f"{p.type} #{index + 1}"


def select(
    provisioners: tuple[Provisioner, ...], *, first_run: bool, forced: bool, only: set[str] | None
) -> list[tuple[int, Provisioner]]:
    """Which provisioners run, as Vagrant decides: on the first `up` (or when forced)
    "once" and "always" ones, on later boots only "always" ones; --provision-with names
    (or types) select exactly those, "never" ones included."""
    chosen = []
    for i, p in enumerate(provisioners):
        if only is not None:
            if (p.name and p.name in only) or p.type in only:
                chosen.append((i, p))
            continue
        if p.run == "never":
            continue
        if p.run == "always" or first_run or forced:
            chosen.append((i, p))
    return chosen


class LineWriter:
    """Turns chunks of output into prefixed lines."""

    def __init__(self, emit: Callable[[str], None], prefix: str) -> None:
        self.emit = emit
        self.prefix = prefix
        self.buf = b""

    def __call__(self, data: bytes) -> None:
        self.buf += data
        *lines, self.buf = self.buf.split(b"\n")
        for line in lines:
            self.emit(self.prefix + line.decode(errors="replace").rstrip("\r"))

    def flush(self) -> None:
        if self.buf:
            self.emit(self.prefix + self.buf.decode(errors="replace"))
            self.buf = b""


def run_provisioner(
    s: Session,
    p: Provisioner,
    index: int,
    *,
    machine: str,
    project_root: Path,
    emit: Callable[[str], None],
) -> None:
    name = label(p, index)
    if p.type == "shell":
        _shell(s, p, name, machine=machine, project_root=project_root, emit=emit)
    elif p.type == "file":
        _file(s, p, name, project_root=project_root)
    else:  # the evaluator refuses other types; keep the machine layer honest anyway
        raise ProvisionError(f"provisioner type {p.type!r} is not supported (shell and file are)")


def _shell(
    s: Session, p: Provisioner, name: str, *, machine: str, project_root: Path, emit: Callable[[str], None]
) -> None:
    if p.inline is not None:
        script = p.inline
    elif p.path is not None:
        path = Path(p.path)
        if not path.is_absolute():
            path = project_root / path
        try:
            script = path.read_text()
        except OSError as exc:
            raise ProvisionError(
                f"provisioner {name}: could not read the script {path}: {exc.strerror}"
            ) from exc
    else:
        raise ProvisionError(f"provisioner {name}: a shell provisioner needs inline: or path:")
    remote = f"/tmp/vmctl-shell-{index_safe(name)}"
    s.upload(script.encode(), remote, mode="0755")
    exports = "".join(f"export {k}={shlex.quote(str(v))}; " for k, v in p.env.items())
    runner = remote if script.startswith("#!") else f"/bin/sh {remote}"
    # Vagrant appends a String args verbatim (the shell splits it) and quotes Array items.
    args = " ".join(p.args) if p.args_verbatim else " ".join(shlex.quote(a) for a in p.args)
    body = f"{exports}{runner} {args}".strip()
    command = guest_command(s.endpoint, body, privileged=p.privileged)
    out = LineWriter(emit, f"    {machine}: ")
    err = LineWriter(emit, f"    {machine}: ")
    status, _, _ = s.run(command, on_stdout=out, on_stderr=err, pty=s.endpoint.pty)
    out.flush()
    err.flush()
    s.run(f"rm -f {remote}")
    if status != 0:
        raise ProvisionError(
            f"{machine}: provisioner {name} failed with exit status {status}",
            hint="fix the script, then run: vmctl provision " + machine,
        )


def index_safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "-" for c in name)[:40]


def _file(s: Session, p: Provisioner, name: str, *, project_root: Path) -> None:
    if not p.source or not p.destination:
        raise ProvisionError(f"provisioner {name}: a file provisioner needs source: and destination:")
    source = Path(p.source).expanduser()
    if not source.is_absolute():
        source = project_root / source
    dest = p.destination
    guest_path = ('"$HOME"/' + shlex.quote(dest[2:])) if dest.startswith("~/") else shlex.quote(dest)
    try:
        if source.is_dir():
            buf = io.BytesIO()
            with tarfile.open(fileobj=buf, mode="w") as tar:
                tar.add(source, arcname=".")
            s.check(
                f"mkdir -p {guest_path} && tar -C {guest_path} -xf -",
                stdin=buf.getvalue(),
                what=f"copy {source} to {dest}",
            )
        else:
            data = source.read_bytes()
            s.check(
                f"mkdir -p \"$(dirname {guest_path})\" && cat > {guest_path}",
                stdin=data,
                what=f"copy {source} to {dest}",
            )
    except OSError as exc:
        raise ProvisionError(f"provisioner {name}: could not read {source}: {exc.strerror}") from exc
    except VmctlError as exc:
        raise ProvisionError(f"provisioner {name}: {exc.message}") from exc
