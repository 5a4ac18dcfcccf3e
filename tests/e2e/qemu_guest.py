"""Boot a built box with plain QEMU under TCG and log in with the insecure key (paramiko).

Shared by the box tests and their measuring scripts: no libvirt, no vmctl machine layer, just
``qemu-system-x86_64 -accel tcg`` on a qcow2 overlay, user networking with the SSH port
forwarded on 127.0.0.1, and the clock running from ``Popen`` to the first successful login.

A box with a kernel (``vmlinuz`` beside ``box.img``) is booted directly; a disk-booted box boots
its disk through the firmware: SeaBIOS (``firmware="bios"``), or OVMF (``firmware="uefi"``, with
a copy of OVMF's variable store beside the overlay).
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import shutil
import socket
import subprocess
import tarfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import vmctl

KEY = Path(vmctl.__file__).parent / "data" / "insecure-keys" / "vagrant.key.ed25519"
# UEFI firmware from Debian's ovmf package: the code read-only, a copy of the variables per disk.
OVMF_CODE = Path("/usr/share/OVMF/OVMF_CODE_4M.fd")
OVMF_VARS = Path("/usr/share/OVMF/OVMF_VARS_4M.fd")
FIRMWARES = ("bios", "uefi")
# Failed attempts while the guest boots are expected; paramiko would log each one.
logging.getLogger("paramiko").addHandler(logging.NullHandler())
logging.getLogger("paramiko").propagate = False
ATTEMPT_EVERY = 0.5  # seconds between the starts of two login attempts while the guest boots
ATTEMPTS_IN_FLIGHT = 3


@dataclass
class Guest:
    proc: subprocess.Popen
    port: int
    user: str
    seconds_to_ssh: float
    host_key: str
    console: Path
    cpu_to_ssh: float = 0.0  # QEMU's CPU time (user + system) until then: less load-dependent


def cpu_seconds(pid: int) -> float:
    """CPU time (user + system) of process PID so far, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def unpack_box(box: Path, folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    with tarfile.open(box) as tar:
        tar.extractall(folder, filter="data")
    return folder


def box_setting(box_dir: Path, name: str) -> str | None:
    """A string setting (e.g. cmd_line, username) of the box's own Vagrantfile, or None."""
    for line in (box_dir / "Vagrantfile").read_text().splitlines():
        if f".{name} = " in line:
            return line.split('"')[1]
    return None


def make_overlay(box_dir: Path, name: str) -> Path:
    overlay = box_dir / name
    subprocess.run(
        ["qemu-img", "create", "-q", "-f", "qcow2", "-b", box_dir / "box.img", "-F", "qcow2",
         overlay],
        check=True,
    )  # fmt: skip
    return overlay


def connect(port: int, user: str, timeout: float = 10.0):
    """An authenticated paramiko client, or an exception if the guest is not ready yet."""
    import paramiko

    sock = socket.create_connection(("127.0.0.1", port), timeout=1.0)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    client = paramiko.SSHClient()
    client.set_missing_host_key_policy(paramiko.AutoAddPolicy())
    try:
        client.connect(
            "127.0.0.1",
            port=port,
            username=user,
            pkey=paramiko.Ed25519Key.from_private_key_file(str(KEY)),
            sock=sock,
            timeout=timeout,
            banner_timeout=timeout,
            auth_timeout=timeout,
            allow_agent=False,
            look_for_keys=False,
        )
    except BaseException:
        client.close()
        sock.close()
        raise
    return client


def boot(
    box_dir: Path,
    overlay: Path,
    *,
    deadline: float = 60.0,
    memory_mib: int = 512,
    cpus: int = 1,
    user: str | None = None,
    firmware: str = "bios",
    qemu_args: tuple[str, ...] = (),
) -> Guest:
    """Start QEMU (TCG) on OVERLAY and wait until an SSH login with the insecure key works.

    USER defaults to the box's config.ssh.username, else vagrant. FIRMWARE ("bios" or "uefi")
    matters for a disk-booted box; a box with a kernel is booted directly. QEMU_ARGS are added
    to QEMU's command line (e.g. ``-fw_cfg name=opt/com.coreos/config,file=...``).
    """
    user = user or box_setting(box_dir, "username") or "vagrant"
    port = free_port()
    console = Path(f"{overlay}.console.log")
    argv = [
        "qemu-system-x86_64", "-accel", "tcg", "-machine", "q35", "-m", str(memory_mib),
        "-smp", str(cpus), "-nodefaults", "-nographic", "-serial", f"file:{console}",
        *boot_args(box_dir, overlay, firmware),
        "-drive", f"file={overlay},if=virtio,format=qcow2",
        "-netdev", f"user,id=n0,hostfwd=tcp:127.0.0.1:{port}-:22",
        "-device", "virtio-net-pci,netdev=n0,addr=0x10",
        "-monitor", f"unix:{overlay}.monitor,server=on,wait=off",
        *qemu_args,
    ]  # fmt: skip
    start = time.monotonic()
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
    try:
        client = first_login(proc, port, user, start + deadline)
    except TimeoutError:
        stop(proc)
        raise AssertionError(
            f"no SSH login as {user} within {deadline} s; console:\n" + console_tail(console)
        ) from None
    except BaseException:
        stop(proc)
        raise
    seconds = time.monotonic() - start
    cpu = cpu_seconds(proc.pid)
    key = client.get_transport().get_remote_server_key()
    client.close()
    return Guest(proc, port, user, seconds, f"{key.get_name()} {key.get_base64()}", console, cpu)


def boot_args(box_dir: Path, overlay: Path, firmware: str) -> list[str]:
    """QEMU's arguments for the kernel (direct boot) or the firmware (a disk-booted box)."""
    if firmware not in FIRMWARES:
        raise ValueError(f"firmware {firmware!r} is not one of {FIRMWARES}")
    if (box_dir / "vmlinuz").is_file():
        return [
            "-kernel", str(box_dir / "vmlinuz"), "-initrd", str(box_dir / "initrd.img"),
            "-append", box_setting(box_dir, "cmd_line") or "",
        ]  # fmt: skip
    if firmware == "bios":
        return []  # SeaBIOS, QEMU's default, boots the first disk
    variables = Path(f"{overlay}.OVMF_VARS.fd")
    shutil.copyfile(OVMF_VARS, variables)
    return [
        "-drive", f"if=pflash,format=raw,unit=0,readonly=on,file={OVMF_CODE}",
        "-drive", f"if=pflash,format=raw,unit=1,file={variables}",
    ]  # fmt: skip


def first_login(proc: subprocess.Popen, port: int, user: str, deadline: float):
    """The first SSH login that succeeds; a new attempt starts every ATTEMPT_EVERY seconds.

    Attempts overlap (at most ATTEMPTS_IN_FLIGHT): QEMU accepts the TCP connection before the
    guest has its address, and such a connection hangs until the guest answers a retransmitted
    SYN, seconds later; and under TCG sshd's first logins, while the guest still starts
    services, take over a second. Waiting for one attempt at a time, or giving up on each after
    a short timeout, would both report a later time than the first possible login.
    """
    results: queue.Queue = queue.Queue()
    finished = threading.Event()

    def attempt() -> None:
        try:
            client = connect(port, user)
        except Exception:
            results.put(None)
            return
        if finished.is_set():
            client.close()
        else:
            results.put(client)

    in_flight = 0
    last = float("-inf")
    while True:
        if proc.poll() is not None:
            raise AssertionError(f"QEMU exited with status {proc.returncode} before SSH answered")
        now = time.monotonic()
        if now > deadline:
            finished.set()
            raise TimeoutError
        if in_flight < ATTEMPTS_IN_FLIGHT and now - last >= ATTEMPT_EVERY:
            threading.Thread(target=attempt, daemon=True).start()
            in_flight += 1
            last = now
        try:
            client = results.get(timeout=0.05)
        except queue.Empty:
            continue
        in_flight -= 1
        if client is not None:
            finished.set()
            return client


def console_tail(console: Path, lines: int = 40) -> str:
    with contextlib.suppress(OSError):
        return "\n".join(console.read_text(errors="replace").splitlines()[-lines:])
    return "(no console log)"


def ssh(guest: Guest, command: str, timeout: float = 60) -> tuple[int, str]:
    """Run COMMAND in the guest; its exit status and its output (stdout and stderr)."""
    client = connect(guest.port, guest.user)
    try:
        channel = client.get_transport().open_session(timeout=5.0)
        channel.set_combine_stderr(True)
        channel.settimeout(timeout)
        channel.exec_command(command)
        output = b""
        while chunk := channel.recv(65536):
            output += chunk
        return channel.recv_exit_status(), output.decode(errors="replace")
    finally:
        client.close()


def power_off(guest: Guest, command: str = "sudo -n poweroff", timeout: float = 60) -> float:
    """COMMAND over SSH; how long QEMU took to exit."""
    start = time.monotonic()
    with contextlib.suppress(Exception):
        ssh(guest, command, timeout=10)
    guest.proc.wait(timeout=timeout)
    return time.monotonic() - start


def press_power_button(guest: Guest, overlay: Path, timeout: float = 60) -> float:
    """The ACPI power button (what `virsh shutdown` does); how long QEMU took to exit.

    OVERLAY is the disk the guest was booted on: its QEMU monitor listens at OVERLAY.monitor.
    """
    start = time.monotonic()
    with socket.socket(socket.AF_UNIX) as monitor:
        monitor.connect(f"{overlay}.monitor")
        monitor.sendall(b"system_powerdown\n")
        guest.proc.wait(timeout=timeout)
    return time.monotonic() - start


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.kill()
        proc.wait()


@contextlib.contextmanager
def running(box_dir: Path, overlay: Path, **options) -> Iterator[Guest]:
    guest = boot(box_dir, overlay, **options)
    try:
        yield guest
    finally:
        stop(guest.proc)
