"""The shell provisioner (a script run in the guest, with sudo unless privileged: false;
reboot: true reboots the guest afterwards, reset: true logs in again) and the file
provisioner (a host file or folder copied into the guest)."""

from __future__ import annotations

import io
import shlex
import tarfile
from pathlib import Path

from vmctl.errors import ProvisionError, VmctlError
from vmctl.provision import Context, LineWriter, failure
from vmctl.ssh import guest_command
from vmctl.vagrantfile.model import Provisioner


def run_shell(ctx: Context, p: Provisioner, name: str) -> None:
    s, machine = ctx.session, ctx.machine
    if p.inline is not None:
        script = p.inline
    elif p.path is not None:
        path = Path(p.path)
        if not path.is_absolute():
            path = ctx.project_root / path
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
    out = LineWriter(ctx.emit, f"    {machine}: ")
    err = LineWriter(ctx.emit, f"    {machine}: ")
    status, _, _ = s.run(command, on_stdout=out, on_stderr=err, pty=s.endpoint.pty)
    out.flush()
    err.flush()
    s.run(f"rm -f {remote}")
    if status != 0:
        raise failure(machine, p, name, status)
    if p.reboot:
        if ctx.reboot is None:
            raise ProvisionError(f"{machine}: provisioner {name}: the guest cannot be rebooted from here")
        ctx.say(f"==> {machine}: rebooting the guest (reboot: true)...")
        ctx.session = ctx.reboot(ctx.session)
    elif p.reset and ctx.reconnect is not None:
        ctx.say(f"==> {machine}: logging in again (reset: true)...")
        ctx.session = ctx.reconnect(ctx.session)


def index_safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "-" for c in name)[:40]


def run_file(ctx: Context, p: Provisioner, name: str) -> None:
    s, project_root = ctx.session, ctx.project_root
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
