"""`vmctl package`: a created machine turned into a .box file, in vagrant-libvirt's format.

    box.img          the box disk's overlay chain, flattened into one compressed qcow2
    disk2.qcow2 ...  the machine's other vmctl-made writable disks, likewise
    metadata.json    {"provider": "libvirt", "format": "qcow2", "virtual_size": GiB}, or
                     vagrant-libvirt's "disks" list when there are several
    Vagrantfile      config.ssh.username, and the kernel boot settings when the machine
                     boots that way (vmlinuz and initrd.img are then in the box too)
    include/         --include files, and --vagrantfile as include/_Vagrantfile (as Vagrant)
    vagrant_private_key  a stopped machine's login key (see below)

A running machine is made generic first, over SSH (the insecure key back, vmctl's machine
key out, host keys removed, /etc/machine-id emptied), then halted. A stopped machine is
packaged as it is, as Vagrant does: its login key goes in the box as vagrant_private_key,
which the box's Vagrantfile names as config.ssh.private_key_path, and its host keys stay. The archive is written
to a temporary file beside the output and linked into place, never over an existing file.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
import subprocess
import tarfile
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from vmctl import hypervisor
from vmctl.errors import MachineError, MissingToolError, SSHError

if TYPE_CHECKING:
    from vmctl.machine.disks import MachineDisk
    from vmctl.machine.lifecycle import Emit, Machine

GIB = 1024**3
# The disk roles a box carries: the box's own disks and the machine's extra disks.
PACKAGED_ROLES = ("box", "extra")


def render_metadata(sizes_gib: list[int]) -> dict[str, object]:
    """metadata.json for disks of SIZES_GIB (the first is box.img, then disk2.qcow2 ...)."""
    if len(sizes_gib) == 1:
        return {"provider": "libvirt", "format": "qcow2", "virtual_size": sizes_gib[0]}
    return {
        "provider": "libvirt",
        "format": "qcow2",
        "virtual_size": sizes_gib[0],
        "disks": [{"path": name, "format": "qcow2", "virtual_size": size}
                  for name, size in zip(disk_names(len(sizes_gib)), sizes_gib, strict=True)],
    }


def disk_names(count: int) -> list[str]:
    return ["box.img", *(f"disk{i}.qcow2" for i in range(2, count + 1))]


def _ruby_string(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("#", "\\#") + '"'


PRIVATE_KEY_MEMBER = "vagrant_private_key"


def render_vagrantfile(*, ssh_username: str | None, kernel: bool, initrd: bool, cmd_line: str | None,
                       include_vagrantfile: bool, private_key: bool = False) -> str:
    """The box's Vagrantfile: what it needs to boot and log in; with INCLUDE_VAGRANTFILE it
    also loads include/_Vagrantfile (--vagrantfile), as Vagrant's packaged boxes do; with
    PRIVATE_KEY it logs in with the box's vagrant_private_key."""
    lines = ['Vagrant.configure("2") do |config|']
    if ssh_username:
        lines.append(f"  config.ssh.username = {_ruby_string(ssh_username)}")
    if private_key:
        lines.append(f'  config.ssh.private_key_path = File.expand_path("../{PRIVATE_KEY_MEMBER}", __FILE__)')
    if kernel:
        lines.append("  config.vm.provider :libvirt do |libvirt|")
        lines.append('    libvirt.kernel = File.join(File.dirname(__FILE__), "vmlinuz")')
        if initrd:
            lines.append('    libvirt.initrd = File.join(File.dirname(__FILE__), "initrd.img")')
        if cmd_line is not None:
            lines.append(f"    libvirt.cmd_line = {_ruby_string(cmd_line)}")
        lines.append("  end")
    lines.append("end")
    if include_vagrantfile:
        lines += [
            "",
            'include_vagrantfile = File.expand_path("../include/_Vagrantfile", __FILE__)',
            "load include_vagrantfile if File.exist?(include_vagrantfile)",
        ]
    return "\n".join(lines) + "\n"


def generic_script(machine_key_blob: str | None, machine_key_comment: str) -> tuple[str, str]:
    """(the login user's part, the privileged part) of making the guest generic; the first
    reads the insecure public keys on stdin."""
    from vmctl import ssh

    drop = sorted(ssh.insecure_public_blobs()) + [ssh.INSECURE_COMMENT, machine_key_comment]
    if machine_key_blob:
        drop.append(machine_key_blob)
    patterns = " ".join(f"-e {ssh.shell_quote(p)}" for p in drop)
    user = (
        "umask 077; mkdir -p ~/.ssh && f=~/.ssh/authorized_keys && "
        f'{{ grep -v -F {patterns} "$f" 2>/dev/null; cat; }} > "$f.vmctl-tmp" && '
        'chmod 600 "$f.vmctl-tmp" && mv -f "$f.vmctl-tmp" "$f"'
    )
    privileged = (
        "rm -f /etc/ssh/ssh_host_* /etc/dropbear/dropbear_*_host_key; "
        "if [ -s /etc/machine-id ]; then : > /etc/machine-id; fi; sync"
    )
    return user, privileged


def package(machine: Machine, output: Path, *, vagrantfile: Path | None, include: list[Path],
            emit: Emit) -> Path:
    """Write MACHINE as a box to OUTPUT (which must not exist); return OUTPUT."""
    if shutil.which("qemu-img") is None:
        raise MissingToolError("qemu-img is not installed", hint="install qemu-utils")
    output = output.absolute()
    _refuse_existing(output)
    if not output.parent.is_dir():
        raise MachineError(f"{output.parent} is not a folder", hint="give --output a path in an existing folder")
    for f in ([vagrantfile] if vagrantfile else []) + include:
        if not f.is_file():
            raise MachineError(f"{f} is not a file", hint="--vagrantfile and --include take files")
    names = [f.name for f in include]
    if len(set(names)) != len(names) or (vagrantfile and "_Vagrantfile" in names):
        raise MachineError("two included files have the same name", hint="rename one of them")
    with machine.locked():
        st = machine.require_state()
        if st.pool is not None:
            raise MachineError(
                f"packaging is not supported on storage pools yet: machine {machine.name} keeps its disks in the "
                f"libvirt storage pool {st.pool} ({st.uri})",
                hint="package a machine made with vmctl's default embedded driver (no libvirt.uri / VMCTL_LIBVIRT_URI)")
        with hypervisor.connect(st.uri) as c:
            state = machine.status(c)
        private_key: Path | None = None
        if state in (hypervisor.SAVED, hypervisor.PAUSED):
            raise MachineError(f"machine {machine.name} is suspended",
                               hint=f"resume it (vmctl resume {machine.name}) or halt it first")
        if state == hypervisor.RUNNING:
            _make_generic(machine, emit)
            emit(f"==> {machine.name}: halting the machine to package it")
            machine._halt(force=False, emit=emit, timeout=None)
            # the next boot makes new host keys: the next up pins the new one
            with contextlib.suppress(FileNotFoundError):
                machine.known_hosts.unlink()
        elif state != hypervisor.NOT_CREATED:
            if st.key_inserted and machine.key_file.exists():
                private_key = machine.key_file
            emit(f"==> {machine.name}: the machine is not running: packaging its disks as they are "
                 "(not made generic: its SSH host keys stay in the box"
                 + (f", and its login key goes in the box as {PRIVATE_KEY_MEMBER}, as Vagrant does; "
                    "package a running machine for a box without them)" if private_key else ")"))
        else:
            raise MachineError(f"machine {machine.name} is not created", hint=f"vmctl up {machine.name}")
        disks = _packaged_disks(st.all_disks())
        emit(f"==> {machine.name}: packaging {len(disks)} disk{'s' if len(disks) > 1 else ''} into {output}")
        _write_box(machine, disks, output, vagrantfile=vagrantfile, include=include,
                   private_key=private_key, emit=emit)
    emit(f"==> {machine.name}: box written: {output}")
    return output


def _refuse_existing(output: Path) -> None:
    if output.exists() or output.is_symlink():
        raise MachineError(f"{output} exists already",
                           hint="remove it or give another file with --output (vmctl never overwrites it)")


def _make_generic(machine: Machine, emit: Emit) -> None:
    from vmctl import ssh

    st = machine.require_state()
    emit(f"==> {machine.name}: making the guest generic (insecure key back, host keys and machine-id removed)...")
    blob = None
    if machine.key_file.exists():
        parts = ssh.public_line(machine.key_file).split()
        blob = parts[1] if len(parts) > 1 else None
    user, privileged = generic_script(blob, f"vmctl-{st.id}")
    keys = (ssh.insecure_key_dir() / "vagrant.pub").read_bytes()
    try:
        with machine._ssh_session() as s:
            s.check(user, stdin=keys, what="put the insecure key back")
            s.check(ssh.guest_command(s.endpoint, privileged, privileged=True),
                    what="remove the host keys and machine-id")
    except SSHError as exc:
        raise MachineError(f"could not make {machine.name} generic: {exc.message}",
                           hint="check that the machine answers vmctl ssh, or halt it to package it as it is") from exc
    # The next up of this machine logs in with the insecure key and puts a machine key in again.
    st.key_inserted = False
    machine.save()


def _packaged_disks(all_disks: list[MachineDisk]) -> list[MachineDisk]:
    chosen = [d for d in all_disks if d.owner == "vmctl" and d.role in PACKAGED_ROLES and d.attached
              and not d.readonly and d.format in (None, "qcow2", "raw")]
    chosen.sort(key=lambda d: d.role != "box")  # stable: the box's disks first, in order
    if not chosen or chosen[0].role != "box":
        raise MachineError("the machine has no box disk to package", hint="vmctl package needs a machine made by vmctl up")
    return chosen


def _qemu_img(args: list[str], what: str) -> bytes:
    try:
        return subprocess.run(["qemu-img", *args], capture_output=True, check=True,
                              stdin=subprocess.DEVNULL).stdout
    except subprocess.CalledProcessError as exc:
        detail = exc.stderr.decode(errors="replace").strip().splitlines()
        raise MachineError(f"qemu-img could not {what}" + (f": {detail[-1]}" if detail else ""),
                           hint="is the disk in use by another program?") from exc


def _virtual_size(image: Path) -> int:
    info = json.loads(_qemu_img(["info", "--output=json", str(image)], f"read {image}"))
    return int(info["virtual-size"])


def _write_box(machine: Machine, disks: list[MachineDisk], output: Path, *, vagrantfile: Path | None,
               include: list[Path], private_key: Path | None, emit: Emit) -> None:
    lv = machine.config.libvirt
    kernel = Path(lv.kernel) if lv.kernel else None
    initrd = Path(lv.initrd) if lv.initrd else None
    for f in (kernel, initrd):
        if f is not None and not f.is_file():
            raise MachineError(f"the machine's kernel boot file {f} is gone",
                               hint="package needs the kernel and initrd the machine boots with")
    st = machine.require_state()
    stage = Path(tempfile.mkdtemp(dir=output.parent, prefix=f".{output.name}.stage-"))
    temp = output.parent / f".{output.name}.tmp-{os.getpid()}"
    try:
        sizes = []
        members: list[tuple[Path, str]] = []
        for disk, name in zip(disks, disk_names(len(disks)), strict=True):
            image = stage / name
            emit(f"    {machine.name}: flattening {disk.name} ({Path(disk.path).name}) into {name}...")
            _qemu_img(["convert", "-O", "qcow2", "-c", *(["-f", disk.format] if disk.format else []),
                       disk.path, str(image)], f"flatten {disk.path}")
            sizes.append(max(1, math.ceil(_virtual_size(image) / GIB)))
            members.append((image, name))
        (stage / "metadata.json").write_text(json.dumps(render_metadata(sizes), indent=2) + "\n")
        (stage / "Vagrantfile").write_text(render_vagrantfile(
            ssh_username=st.ssh_user, kernel=kernel is not None, initrd=initrd is not None,
            cmd_line=lv.cmd_line if kernel is not None else None, include_vagrantfile=vagrantfile is not None,
            private_key=private_key is not None,
        ))
        members += [(stage / "metadata.json", "metadata.json"), (stage / "Vagrantfile", "Vagrantfile")]
        if kernel is not None:
            members.append((kernel, "vmlinuz"))
        if initrd is not None:
            members.append((initrd, "initrd.img"))
        if private_key is not None:
            members.append((private_key, PRIVATE_KEY_MEMBER))
        if vagrantfile is not None:
            members.append((vagrantfile, "include/_Vagrantfile"))
        members += [(f, f"include/{f.name}") for f in include]
        emit(f"    {machine.name}: writing the archive...")
        with tarfile.open(temp, "w:gz", compresslevel=1) as tar:
            for path, arcname in members:
                tar.add(str(path), arcname=arcname, recursive=False)
        try:
            os.link(temp, output)  # never over an existing file
        except FileExistsError:
            raise
        except OSError:  # a file system without hard links
            _refuse_existing(output)
            os.rename(temp, output)
    except FileExistsError:
        raise MachineError(f"{output} appeared while packaging", hint="remove it or give another --output") from None
    finally:
        with contextlib.suppress(FileNotFoundError):
            temp.unlink()
        shutil.rmtree(stage, ignore_errors=True)
