"""Snapshots of a UEFI machine with an emulated TPM (issue 13): the UEFI variables store
and the TPM's state come back with a snapshot of the running machine and with one of the
stopped machine.

One Debian machine (OVMF, swtpm) and one boot: a restore of a running snapshot is no boot,
even into the stopped machine, and the stopped snapshot is restored with --no-start and
checked in the files the next boot would read (nvram.fd, swtpm's state). Inside the guest,
a small Python program (the box has python3, not efivar or tpm2-tools) writes UEFI
variables through efivarfs and a TPM NV index through /dev/tpm0 with raw TPM 2.0 commands;
efivarfs is mounted again before each read, so the list of variables comes from the
firmware, not from the kernel's memory of it.
"""

from __future__ import annotations

import base64
import time
from pathlib import Path

from conftest import Result, Vmctl, write_vagrantfile

VAGRANTFILE = """
    Vagrant.configure("2") do |config|
      config.vm.box = "vmctl/debian"
      config.vm.synced_folder ".", "/vagrant", disabled: true
      config.vm.boot_timeout = 900
      config.vm.provider :libvirt do |libvirt|
        libvirt.memory = 768
        libvirt.machine_type = "q35"
        libvirt.loader = "/usr/share/OVMF/OVMF_CODE_4M.fd"
        libvirt.nvram = "/usr/share/OVMF/OVMF_VARS_4M.fd"
        libvirt.tpm_model = "tpm-crb"
        libvirt.tpm_type = "emulator"
        libvirt.tpm_version = "2.0"
      end
    end
"""

# Runs as root in the guest: `set NAME VALUE` writes the UEFI variable NAME (non-volatile)
# and the TPM NV index to VALUE (8 bytes); `show` prints the test's variables (NAME=VALUE,
# sorted) and the NV index's value.
GUEST = r'''
import os, struct, subprocess, sys

GUID = "4d1c6a1e-5e1f-4e2d-9a6b-766d63746c00"
EFIVARS = "/sys/firmware/efi/efivars"
INDEX, OWNER, PASSWORD = 0x01000123, 0x40000001, 0x40000009

def tpm(cc, handles, params):
    body = b"".join(struct.pack(">I", h) for h in handles)
    body += struct.pack(">I", 9) + struct.pack(">IHBH", PASSWORD, 0, 0, 0) + params
    fd = os.open("/dev/tpm0", os.O_RDWR)
    try:
        os.write(fd, struct.pack(">HII", 0x8002, 10 + len(body), cc) + body)
        reply = os.read(fd, 4096)
    finally:
        os.close(fd)
    return struct.unpack(">I", reply[6:10])[0], reply

def nv_set(value):
    public = struct.pack(">IHIHH", INDEX, 0x000B, (1 << 1) | (1 << 17), 0, 8)  # owner write, owner read
    rc, _ = tpm(0x12A, [OWNER], struct.pack(">H", 0) + struct.pack(">H", len(public)) + public)
    assert rc in (0, 0x14C), hex(rc)  # defined now, or already (TPM_RC_NV_DEFINED)
    rc, _ = tpm(0x137, [OWNER, INDEX], struct.pack(">H", 8) + value + struct.pack(">H", 0))
    assert rc == 0, hex(rc)

def nv_get():
    rc, reply = tpm(0x14E, [OWNER, INDEX], struct.pack(">HH", 8, 0))
    if rc:
        return "none(%#x)" % rc
    size = struct.unpack(">H", reply[14:16])[0]
    return reply[16:16 + size].decode()

def remount():
    subprocess.run(["umount", EFIVARS], check=True)
    subprocess.run(["mount", "-t", "efivarfs", "efivarfs", EFIVARS], check=True)

if sys.argv[1] == "set":
    name, value = sys.argv[2], sys.argv[3].encode()
    with open(f"{EFIVARS}/{name}-{GUID}", "wb") as f:
        f.write(struct.pack("<I", 7) + value)  # non-volatile, boot and runtime access
    nv_set(value.ljust(8)[:8])
else:
    remount()
    found = []
    for entry in sorted(os.listdir(EFIVARS)):
        if entry.endswith("-" + GUID):
            with open(f"{EFIVARS}/{entry}", "rb") as f:
                found.append(entry[: -len(GUID) - 1] + "=" + f.read()[4:].decode())
    print(" ".join(found), "tpm=" + nv_get().strip())
'''


def guest(vmctl: Vmctl, folder: Path, *args: str) -> Result:
    script = base64.b64encode(GUEST.encode()).decode()
    return vmctl("ssh", "-c", f"echo {script} | base64 -d > /tmp/t.py && sudo python3 /tmp/t.py {' '.join(args)}",
                 cwd=folder)


def show(vmctl: Vmctl, folder: Path) -> str:
    return guest(vmctl, folder, "show").stdout.strip()


def utf16(name: str) -> bytes:
    """How OVMF's variable store holds a variable's name."""
    return name.encode("utf-16-le")


def test_uefi_variables_and_tpm_state_are_in_running_and_stopped_snapshots(
        vmctl: Vmctl, debian_box: Path, tmp_path: Path, destroy_after: list[Path]) -> None:
    folder = tmp_path / "uefi"
    folder.mkdir()
    folder.chmod(0o755)
    write_vagrantfile(folder, VAGRANTFILE)
    destroy_after.append(folder)
    started = time.monotonic()
    vmctl("up", cwd=folder, timeout=900)
    booted = time.monotonic()
    disks = {d["name"]: d for d in vmctl("status", "--json", cwd=folder).json()["machines"][0]["disks"]}
    nvram, tpm = Path(disks["nvram"]["path"]), Path(disks["tpm"]["path"])

    # Running: a variable and the NV index written after the snapshot are gone after its
    # restore; the one written before is back.
    guest(vmctl, folder, "set", "VmctlLive", "live1")
    vmctl("snapshot", "save", "live", cwd=folder)
    guest(vmctl, folder, "set", "VmctlLater", "later1")
    assert show(vmctl, folder) == "VmctlLater=later1 VmctlLive=live1 tpm=later1"
    vmctl("snapshot", "restore", "live", cwd=folder)
    assert show(vmctl, folder) == "VmctlLive=live1 tpm=live1"

    # Stopped: the store and the TPM state are copied into the snapshot and written back on
    # restore. The running snapshot, restored into the stopped machine (QEMU loads the state:
    # no boot), is where more is written in between.
    guest(vmctl, folder, "set", "VmctlCold", "cold1")
    vmctl("halt", cwd=folder)
    vmctl("snapshot", "save", "cold", cwd=folder)
    vmctl("snapshot", "restore", "live", cwd=folder)
    assert show(vmctl, folder) == "VmctlLive=live1 tpm=live1"
    guest(vmctl, folder, "set", "VmctlAfter", "after1")
    vmctl("halt", cwd=folder)
    store = nvram.read_bytes()
    assert utf16("VmctlAfter") in store and utf16("VmctlCold") not in store
    vmctl("snapshot", "restore", "cold", "--no-start", cwd=folder)
    # What the next boot reads: the variables of "cold" (and not the one written after the
    # running restore, nor the one the running restore threw away: QEMU wrote the restored
    # flash back to nvram.fd) and the NV index's value of "cold".
    store = nvram.read_bytes()
    assert utf16("VmctlCold") in store and utf16("VmctlLive") in store
    assert utf16("VmctlAfter") not in store and utf16("VmctlLater") not in store
    tpm_state = b"".join(p.read_bytes() for p in tpm.rglob("*.permall"))
    assert b"cold1   " in tpm_state and b"after1  " not in tpm_state

    listed = vmctl("snapshot", "list", "--json", cwd=folder).json()["machines"][0]["snapshots"]
    assert [(s["name"], s["memory"]) for s in listed] == [("live", True), ("cold", False)]
    assert vmctl("status", "--json", cwd=folder).json()["machines"][0]["state"] == "poweroff"
    print(f"uefi + tpm snapshots: {time.monotonic() - started:.0f} s (up {booted - started:.0f} s)")
