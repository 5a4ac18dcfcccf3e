"""vagrant-libvirt's provider settings on real guests (issue 11), checked from inside them.

One Debian machine (a full userland and the generic kernel: AHCI, the i6300esb watchdog,
TPM, virtio-rng, qemu-guest-agent) carries nearly every device at once, so that one `up`
and one `reload` serve all the checks (each boot of a systemd guest under TCG costs a
minute or more, under UEFI more). The tiny box serves what boots in seconds: volumes kept
across destroy, and the settings that stop `up` before anything is made.
"""

from __future__ import annotations

import json
import re
import subprocess
import time
import xml.etree.ElementTree as ET
from pathlib import Path

from conftest import Vmctl, write_vagrantfile

GIB = 1024**3

MANY_DEVICES = """
    Vagrant.configure("2") do |config|
      config.vm.box = "vmctl/debian"
      config.vm.synced_folder ".", "/vagrant", disabled: true
      config.vm.graceful_halt_timeout = 120
      config.vm.boot_timeout = 900
      config.vm.disk :disk, size: "24GB", primary: true
      config.vm.disk :disk, name: "data", size: "2GB"
      config.vm.disk :dvd, name: "tools", file: "tools.iso"
      config.ssh.pty = true
      config.vm.provision "shell", inline: "tty"
      config.vm.provider :libvirt do |libvirt|
        libvirt.default_prefix = "e2e_"
        libvirt.title = "vmctl e2e"
        libvirt.description = "many devices on one machine"
        libvirt.memory = 1024
        libvirt.cpus = 2
        libvirt.cputopology sockets: 2, cores: 1, threads: 1
        libvirt.machine_type = "q35"
        libvirt.loader = "/usr/share/OVMF/OVMF_CODE_4M.fd"
        libvirt.nvram = "/usr/share/OVMF/OVMF_VARS_4M.fd"
        libvirt.storage :file, size: "1G", serial: "EXTRA1"
        libvirt.storage :file, size: "512M", bus: "scsi", serial: "SCSI1"
        libvirt.storage :file, size: "256M", path: "e2e-volume.qcow2"
        libvirt.storage :file, device: :cdrom, path: "test.iso"
        libvirt.sysinfo = {
          "bios" => {"vendor" => "vmctl-bios"},
          "system" => {"manufacturer" => "ACME", "product" => "Widget", "serial" => "S-42"},
          "chassis" => {"asset" => "A-7"},
          "fw_cfg" => {"opt/vmctl/from-sysinfo" => {file: "fw_cfg.txt"}},
        }
        libvirt.qemuargs value: "-fw_cfg"
        libvirt.qemuargs value: "name=opt/vmctl/from-qemuargs,string=hello"
        libvirt.qemuenv QEMU_AUDIO_DRV: "none"
        libvirt.random model: "random"
        libvirt.watchdog model: "i6300esb", action: "reset"
        libvirt.tpm_model = "tpm-crb"
        libvirt.tpm_type = "emulator"
        libvirt.tpm_version = "2.0"
        libvirt.qemu_use_agent = true
        libvirt.graphics_type = "vnc"
        libvirt.graphics_passwd = "e2e-pw"
        libvirt.management_network_mac = "52:54:00:e2:e2:01"
        libvirt.serial type: "file", source: {path: "/var/log/e2e-serial.log"}
      end
    end
"""

# One ssh command gathers everything the checks read inside the guest.
PROBE = r"""
set -u
echo "lsblk=$(lsblk -J -b -o NAME,SIZE,SERIAL,TYPE | tr -d "\\n")"
for f in sys_vendor product_name product_serial bios_vendor chassis_asset_tag; do
  echo "dmi_$f=$(sudo cat /sys/class/dmi/id/$f)"
done
echo "sockets=$(lscpu | awk -F: '/^Socket\(s\)/ {gsub(/ /, "", $2); print $2}')"
echo "cores=$(lscpu | awk -F: '/^Core\(s\) per socket/ {gsub(/ /, "", $2); print $2}')"
echo "hostbridge=$(cat /sys/bus/pci/devices/0000:00:00.0/device)"
echo "uefi=$(test -d /sys/firmware/efi && echo yes || echo no)"
for d in /dev/hwrng /dev/tpm0 /dev/watchdog /dev/sr0 /dev/sr1; do echo "dev_$d=$(test -e $d && echo yes || echo no)"; done
echo "rng=$(cat /sys/class/misc/hw_random/rng_current)"
echo "tpm=$(cat /sys/class/tpm/tpm0/tpm_version_major 2>/dev/null)"
echo "sr0_label=$(sudo dd if=/dev/sr0 bs=1 skip=32808 count=32 2>/dev/null | tr -d ' ')"
echo "root_bytes=$(df -B1 --output=size / | tail -1 | tr -d ' ')"
sudo modprobe qemu_fw_cfg
echo "fwcfg_sysinfo=$(sudo cat /sys/firmware/qemu_fw_cfg/by_name/opt/vmctl/from-sysinfo/raw)"
echo "fwcfg_args=$(sudo cat /sys/firmware/qemu_fw_cfg/by_name/opt/vmctl/from-qemuargs/raw)"
echo "mac=$(cat /sys/class/net/*/address | grep -c 52:54:00:e2:e2:01)"
"""


def probe(vmctl: Vmctl, project: Path) -> dict[str, str]:
    out = vmctl("ssh", "-c", PROBE, cwd=project, timeout=180).stdout
    return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)


def block_devices(facts: dict[str, str]) -> dict[str, dict]:
    return {d["name"]: d for d in json.loads(facts["lsblk"])["blockdevices"]}


def make_iso(path: Path, label: str, content: Path) -> None:
    subprocess.run(["xorriso", "-as", "mkisofs", "-quiet", "-V", label, "-o", str(path), str(content)],
                   check=True, capture_output=True)


def test_many_devices_on_one_debian_machine(
    vmctl: Vmctl, debian_box: Path, project: Path, destroy_after: list[Path]
) -> None:
    write_vagrantfile(project, MANY_DEVICES)
    (project / "fw_cfg.txt").write_text("from a file")
    make_iso(project / "test.iso", "VMCTLTEST", project / "fw_cfg.txt")
    make_iso(project / "tools.iso", "VMCTLTOOLS", project / "fw_cfg.txt")
    destroy_after.append(project)
    started = time.monotonic()
    up = vmctl("up", cwd=project, timeout=1500)
    boot_seconds = time.monotonic() - started
    print(f"\nmulti-device machine (q35, UEFI, 2 vCPUs, 7 disks, TPM, agent): up in {boot_seconds:.0f} s")
    assert "growing the root file system" in up.stderr
    assert re.search(r"default: /dev/pts/\d+", up.stdout + up.stderr), "config.ssh.pty: the provisioner ran on a tty"

    facts = probe(vmctl, project)
    devices = block_devices(facts)
    # Disks: the grown box disk, config.vm.disk's data disk, the storage disks, the CD-ROMs.
    assert int(devices["vda"]["size"]) == 24 * GIB
    by_serial = {d.get("serial"): d for d in devices.values()}
    assert int(by_serial["EXTRA1"]["size"]) == GIB and by_serial["EXTRA1"]["name"].startswith("vd")
    assert int(by_serial["SCSI1"]["size"]) == 512 * 1024**2 and by_serial["SCSI1"]["name"].startswith("sd")
    sizes = sorted(int(d["size"]) for d in devices.values() if d["type"] == "disk")
    assert 2 * GIB in sizes and 256 * 1024**2 in sizes
    assert facts["dev_/dev/sr0"] == "yes" and facts["dev_/dev/sr1"] == "yes"
    assert facts["sr0_label"] == "VMCTLTEST"
    assert int(facts["root_bytes"]) > 22 * GIB  # the root file system grew with its disk
    # CPU, chipset, firmware, SMBIOS, fw_cfg.
    assert (facts["sockets"], facts["cores"]) == ("2", "1")
    assert facts["hostbridge"] == "0x29c0"  # Q35's MCH
    assert facts["uefi"] == "yes"
    assert (facts["dmi_sys_vendor"], facts["dmi_product_name"], facts["dmi_product_serial"]) == ("ACME", "Widget", "S-42")
    assert (facts["dmi_bios_vendor"], facts["dmi_chassis_asset_tag"]) == ("vmctl-bios", "A-7")
    assert facts["fwcfg_sysinfo"] == "from a file" and facts["fwcfg_args"] == "hello"
    # Devices.
    assert facts["dev_/dev/hwrng"] == "yes" and facts["rng"].startswith("virtio_rng")
    assert facts["dev_/dev/tpm0"] == "yes" and facts["tpm"] == "2"
    assert facts["dev_/dev/watchdog"] == "yes"
    assert facts["mac"] == "1"

    # What vmctl reports: the domain's name, every disk, the guest agent's addresses.
    # The guest agent starts late in the boot: on a loaded host, after SSH answers.
    deadline = time.monotonic() + 180
    while True:
        status = vmctl("status", "--json", cwd=project).json()["machines"][0]
        agent_saw = any("10.0.2.15/24" in a for i in status["guest_addresses"] or [] for a in i["addresses"])
        if agent_saw or time.monotonic() > deadline:
            break
        time.sleep(3)
    assert status["domain"] == "e2e_default"
    assert agent_saw, status
    disks = {d["name"]: d for d in status["disks"]}
    assert {"box", "data", "tools", "nvram", "tpm", "e2e-volume.qcow2"} <= set(disks)
    assert disks["box"]["size"] == 24 * GIB and disks["data"]["size"] == 2 * GIB
    home = vmctl.home
    machine_home = Path(disks["box"]["path"]).parent
    assert disks["nvram"]["path"] == str(machine_home / "nvram.fd")
    assert Path(disks["tpm"]["path"]).is_dir() and Path(disks["e2e-volume.qcow2"]["path"]).is_file()
    # The display listens on loopback with its password; title and description; QEMU's environment.
    definition = ET.parse(home / "libvirt" / "etc" / "qemu" / "e2e_default.xml").getroot()
    graphics = definition.find("devices/graphics")
    assert (graphics.get("type"), graphics.get("listen"), graphics.get("passwd")) == ("vnc", "127.0.0.1", "e2e-pw")
    assert definition.findtext("title") == "vmctl e2e"
    pid = (home / "libvirt" / "run" / "qemu" / "e2e_default.pid").read_text().strip()
    assert b"QEMU_AUDIO_DRV=none" in Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    listening = subprocess.run(["ss", "-ltnpH"], capture_output=True, text=True, check=True).stdout
    vnc = [line for line in listening.splitlines() if f"pid={pid}," in line]
    assert vnc and all(" 127.0.0.1:" in line for line in vnc), vnc
    assert "Linux version" in (machine_home / "serial-e2e-serial.log").read_text(errors="replace") or \
        (machine_home / "console.log").stat().st_size > 0

    # Data on the extra disks survives a reload (the guest agent shuts the guest down).
    vmctl("ssh", "-c", "echo kept | sudo dd of=/dev/disk/by-id/virtio-EXTRA1 bs=512 count=1 conv=sync 2>/dev/null",
          cwd=project)
    started = time.monotonic()
    reload = vmctl("reload", cwd=project, timeout=1500)
    print(f"multi-device machine: reload (agent shutdown, redefinition, boot) in {time.monotonic() - started:.0f} s")
    assert "QEMU guest agent" in reload.stderr
    after = vmctl("ssh", "-c", "sudo head -c 4 /dev/disk/by-id/virtio-EXTRA1; echo; df -B1 --output=size / | tail -1",
                  cwd=project, timeout=120).stdout.split()
    assert after[0] == "kept" and int(after[1]) > 22 * GIB

    # destroy removes everything vmctl made: disks, the volume it made, NVRAM, swtpm state, logs.
    vmctl("destroy", "-f", cwd=project, timeout=300)
    assert not machine_home.exists()
    assert not Path(disks["e2e-volume.qcow2"]["path"]).exists()
    assert not Path(disks["tpm"]["path"]).exists()
    for log in (home / "libvirt" / "log" / "qemu" / "e2e_default.log",
                home / "libvirt" / "log" / "swtpm" / "e2e_default-swtpm.log"):
        assert not log.exists(), log
    assert not (home / "libvirt" / "etc" / "qemu" / "e2e_default.xml").exists()


VOLUME = """
    Vagrant.configure("2") do |config|
      config.vm.box = "vmctl/tiny"
      config.vm.synced_folder ".", "/vagrant", disabled: true
      config.vm.provider :libvirt do |libvirt|
        libvirt.memory = 256
        libvirt.storage :file, size: "64M", path: "kept-{tag}.qcow2", allow_existing: true
        libvirt.storage :file, size: "32M", serial: "SCRATCH"
      end
    end
"""


def test_a_volume_with_allow_existing_outlives_its_machine(
    vmctl: Vmctl, tiny_box: Path, project: Path, destroy_after: list[Path]
) -> None:
    tag = project.parent.name[-8:]
    write_vagrantfile(project, VOLUME.replace("{tag}", tag))
    destroy_after.append(project)
    vmctl("up", cwd=project, timeout=300)
    sizes = vmctl("ssh", "-c", "cat /sys/block/vdb/size /sys/block/vdc/size; cat /sys/block/vdc/serial",
                  cwd=project).stdout.split()
    assert sizes == [str(64 * 2048), str(32 * 2048), "SCRATCH"]
    vmctl("ssh", "-c", "echo persisted | sudo dd of=/dev/vdb bs=512 count=1 conv=sync,fsync 2>/dev/null; sync", cwd=project)
    status = vmctl("status", "--json", cwd=project).json()["machines"][0]
    volume = Path(next(d["path"] for d in status["disks"] if d["role"] == "volume"))
    scratch = Path(next(d["path"] for d in status["disks"] if d["name"] == "vdc"))
    vmctl("destroy", "-f", cwd=project)
    assert volume.is_file() and not scratch.exists()  # allow_existing: kept, as vagrant-libvirt keeps it
    try:
        vmctl("up", cwd=project, timeout=300)
        assert vmctl("ssh", "-c", "sudo head -c 9 /dev/vdb", cwd=project).stdout == "persisted"
        vmctl("destroy", "-f", cwd=project)
        assert volume.is_file()
    finally:
        volume.unlink(missing_ok=True)


def test_settings_that_cannot_work_here_stop_up_before_anything_is_made(
    vmctl: Vmctl, tiny_box: Path, project: Path
) -> None:
    cases = [
        ('libvirt.host = "libvirt.example.com"', "could not connect to libvirt at qemu://libvirt.example.com/system"),
        ("libvirt.mgmt_attach = false", "no way into the machine"),
        ('libvirt.pci bus: "0x00", slot: "0x1f", function: "0x0"', "qemu:///system"),
        ('libvirt.launchsecurity type: "sev"', "SEV"),
        ('libvirt.tpm_type = "passthrough"\n        libvirt.tpm_path = "/dev/tpm9"', "has none"),
    ]
    for setting, words in cases:
        write_vagrantfile(project, f"""
            Vagrant.configure("2") do |config|
              config.vm.box = "vmctl/tiny"
              config.vm.provider :libvirt do |libvirt|
                {setting}
              end
            end
        """)
        result = vmctl("up", cwd=project, check=False, timeout=120)
        assert result.returncode == 1, result
        assert words in result.stderr and "hint:" in result.stderr, result.stderr
        assert vmctl("status", "--json", cwd=project).json()["machines"][0]["state"] == "not_created"
        assert not (project / ".vmctl" / "machines" / "default" / "state.json").exists()
