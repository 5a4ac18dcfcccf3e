"""From a Vagrantfile's libvirt settings to the domain XML vmctl defines (the machine layer's
choices in vmctl/machine/hardware.py and disks.py), every XML checked against libvirt's
schema; and what stops `up` because it cannot work here. No VM."""

from __future__ import annotations

import textwrap
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from libvirt_schema import validate_domain

from vmctl import domain
from vmctl.errors import MachineError, MissingToolError
from vmctl.machine import disks, hardware
from vmctl.machine.state import MachineState
from vmctl.vagrantfile.loader import evaluate_project
from vmctl.vagrantfile.model import MachineConfig

MID = "0123456789ab"
TCG = hardware.Host(accel="tcg", uri="qemu:///embed?root=/x", embedded=True)
KVM = hardware.Host(accel="kvm", uri="qemu:///embed?root=/x", embedded=True)


@pytest.fixture(autouse=True)
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("VMCTL_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


def machine(tmp_path: Path, provider: str, *, extra: str = "", files: dict[str, str] | None = None) -> MachineConfig:
    project = tmp_path / "project"
    project.mkdir(exist_ok=True)
    for name, text in (files or {}).items():
        (project / name).write_text(text)
    body = textwrap.indent(textwrap.dedent(provider), "    ")
    (project / "Vagrantfile").write_text(
        'Vagrant.configure("2") do |config|\n  config.vm.box = "vmctl/debian"\n'
        f"{textwrap.indent(textwrap.dedent(extra).strip() + chr(10), '  ') if extra else ''}"
        f"  config.vm.provider :libvirt do |libvirt|\n{body}\n  end\nend\n")
    return evaluate_project(project / "Vagrantfile", env={"HOME": "/home/tester"}).machines[0]


def state(home: Path) -> MachineState:
    folder = home / "machines" / MID
    return MachineState(id=MID, domain="vmctl-p-default-012345", uri=TCG.uri, disk=str(folder / "disk.qcow2"),
                        console_log=str(folder / "console.log"), ssh_port=2222, ssh_user="vagrant",
                        uuid=hardware.domain_uuid(MID))


def build(cfg: MachineConfig, home: Path, host: hardware.Host = TCG, *,
          private: tuple[domain.McastNic, ...] = ()) -> tuple[ET.Element, list[str], MachineState]:
    st = state(home)
    tpm = hardware.tpm_state_dir(host, st.uuid or "") if hardware.tpm_wanted(cfg.libvirt) else None
    template = hardware.nvram_template(cfg.libvirt) if cfg.libvirt.loader else None
    st.disks = disks.plan(cfg, MID, disks.Box(Path("/boxes/box.img"), "qcow2", 20 * 1024**3),
                          machine_type=cfg.libvirt.machine_type or "pc", tpm_dir=tpm, nvram_template=template)
    spec, notes = hardware.build(cfg, st, st.all_disks(), project_root=Path("/p"), host=host, private_nics=private,
                                 forwards=(domain.Forward("127.0.0.1", 2222, 22),))
    xml = domain.render_domain(spec)
    validate_domain(xml)
    return ET.fromstring(xml), notes, st


def qemu_args(root: ET.Element) -> list[str]:
    return [a.get("value") or "" for a in root.iter(f"{{{domain.QEMU_NS}}}arg")]


# -- defaults ------------------------------------------------------------------------------------

def test_defaults_stay_vmctls_lean_machine(tmp_path: Path, home: Path) -> None:
    root, notes, st = build(machine(tmp_path, "libvirt.memory = 512"), home)
    assert notes == []
    assert root.find("cpu") is None and root.find("os/type").get("machine") == "pc"
    assert root.find("devices/graphics") is None and root.find("devices/video") is None
    assert [d.get("device") for d in root.findall("devices/disk")] == ["disk"]
    assert root.find("devices/serial").get("type") == "file"
    assert [d.role for d in st.disks] == ["box"]
    assert st.disks[0].size == 20 * 1024**3


def test_kvm_passes_the_host_cpu_through(tmp_path: Path, home: Path) -> None:
    root, _, _ = build(machine(tmp_path, "libvirt.cpus = 2"), home, KVM)
    assert root.get("type") == "kvm" and root.find("cpu").get("mode") == "host-passthrough"


# -- CPU and memory ------------------------------------------------------------------------------

def test_host_passthrough_under_tcg_is_qemus_max_and_says_so(tmp_path: Path, home: Path) -> None:
    root, notes, _ = build(machine(tmp_path, 'libvirt.cpu_mode = "host-passthrough"'), home)
    assert root.find("cpu").get("mode") == "maximum"
    assert any("host-passthrough" in n and "max" in n for n in notes)


def test_cpu_custom_model_fallback_features_topology_cpuset_affinity(tmp_path: Path, home: Path) -> None:
    cfg = machine(tmp_path, """
        libvirt.cpus = 4
        libvirt.cpu_mode = "custom"
        libvirt.cpu_model = "Nehalem"
        libvirt.cpu_fallback = "forbid"
        libvirt.cpu_feature name: "avx", policy: "disable"
        libvirt.nested = true
        libvirt.cputopology sockets: 2, cores: 2, threads: 1
        libvirt.cpuset = "0-1"
        libvirt.cpuaffinitiy 0 => "0", 1 => "1"
        libvirt.shares = 1024
    """)
    root, _, _ = build(cfg, home)
    assert root.findtext("cpu/model") == "Nehalem" and root.find("cpu/model").get("fallback") == "forbid"
    assert {(f.get("name"), f.get("policy")) for f in root.findall("cpu/feature")} == {
        ("avx", "disable"), ("vmx", "optional"), ("svm", "optional")}
    assert root.find("cpu/topology").attrib == {"sockets": "2", "cores": "2", "threads": "1"}
    assert root.find("vcpu").get("cpuset") == "0-1" and root.findtext("vcpu") == "4"
    assert len(root.findall("cputune/vcpupin")) == 2 and root.findtext("cputune/shares") == "1024"


def test_nested_without_a_mode_under_tcg(tmp_path: Path, home: Path) -> None:
    root, notes, _ = build(machine(tmp_path, "libvirt.nested = true"), home)
    assert root.find("cpu").get("mode") == "maximum"
    assert root.find("cpu/feature[@name='svm']").get("policy") == "optional"
    assert any("nested" in n for n in notes)


def test_numa_memory_backing_memtune_balloon(tmp_path: Path, home: Path) -> None:
    cfg = machine(tmp_path, """
        libvirt.cpus = 4
        libvirt.numa_nodes = [{cpus: "0-1", memory: 512}, {cpus: "2-3", memory: 512, memAccess: "shared"}]
        libvirt.memorybacking :access, mode: "shared"
        libvirt.memorybacking :source, type: "memfd"
        libvirt.memtune type: "soft_limit", value: 1048576
        libvirt.memballoon_enabled = true
        libvirt.memballoon_model = "virtio"
        libvirt.memballoon_pci_slot = "0x0e"
    """)
    root, _, _ = build(cfg, home)
    assert root.findtext("memory") == "1024"  # the cells' sum
    assert [c.get("memory") for c in root.findall("cpu/numa/cell")] == ["524288", "524288"]
    assert root.find("memoryBacking/access").get("mode") == "shared"
    assert root.find("memoryBacking/source").get("type") == "memfd"
    assert root.findtext("memtune/soft_limit") == "1048576"
    assert root.find("devices/memballoon").get("model") == "virtio"
    assert root.find("devices/memballoon/address").get("slot") == "0x0e"


# -- machine and firmware ------------------------------------------------------------------------

def test_uefi_with_a_per_machine_copy_of_the_variables(tmp_path: Path, home: Path) -> None:
    cfg = machine(tmp_path, """
        libvirt.machine_type = "q35"
        libvirt.loader = "/usr/share/OVMF/OVMF_CODE_4M.fd"
        libvirt.nvram = "/usr/share/OVMF/OVMF_VARS_4M.fd"
    """)
    root, _, st = build(cfg, home)
    assert root.find("os/loader").get("type") == "pflash"
    nvram = next(d for d in st.disks if d.role == "nvram")
    assert root.findtext("os/nvram") == nvram.path == str(home / "machines" / MID / "nvram.fd")
    assert nvram.source == "/usr/share/OVMF/OVMF_VARS_4M.fd" and nvram.owner == "vmctl"


def test_loader_alone_finds_its_variables_template(tmp_path: Path, home: Path) -> None:
    cfg = machine(tmp_path, 'libvirt.loader = "/usr/share/OVMF/OVMF_CODE_4M.fd"')
    _, _, st = build(cfg, home)
    assert next(d for d in st.disks if d.role == "nvram").source == "/usr/share/OVMF/OVMF_VARS_4M.fd"


def test_secure_boot_loader_turns_on_smm(tmp_path: Path, home: Path) -> None:
    cfg = machine(tmp_path, """
        libvirt.machine_type = "q35"
        libvirt.loader = "/usr/share/OVMF/OVMF_CODE_4M.secboot.fd"
        libvirt.nvram = "/usr/share/OVMF/OVMF_VARS_4M.ms.fd"
    """)
    root, notes, _ = build(cfg, home)
    assert root.find("os/loader").get("secure") == "yes" and root.find("features/smm").get("state") == "on"
    assert any("SMM" in n for n in notes)


def test_arch_kernel_dtb_sysinfo_fw_cfg_features_clock(tmp_path: Path, home: Path) -> None:
    cfg = machine(tmp_path, """
        libvirt.machine_arch = "x86_64"
        libvirt.kernel = "vmlinuz"
        libvirt.initrd = "initrd.img"
        libvirt.cmd_line = "console=ttyS0"
        libvirt.dtb = "board.dtb"
        libvirt.sysinfo = {
          "bios" => {"vendor" => "vmctl-bios"},
          "system" => {"manufacturer" => "ACME", "serial" => "S-42"},
          "base board" => {"asset" => "A1"},
          "chassis" => {"sku" => "X"},
          "oem strings" => ["one", "two"],
          "fw_cfg" => {"opt/com.coreos/config" => {file: "config.ign"}, "opt/org.example/x" => "hello"},
        }
        libvirt.features = ["acpi", "apic", "pae", "vmport state='off'"]
        libvirt.hyperv_feature name: "relaxed", state: "on"
        libvirt.hyperv_feature name: "spinlocks", state: "on", retries: 4096
        libvirt.kvm_hidden = true
        libvirt.clock_offset = "localtime"
        libvirt.clock_timer name: "rtc", tickpolicy: "catchup"
        libvirt.clock_timer name: "hpet", present: false
    """, files={"vmlinuz": "k", "initrd.img": "i", "board.dtb": "d", "config.ign": "{}"})
    root, _, _ = build(cfg, home)
    assert root.findtext("os/kernel").endswith("/project/vmlinuz")
    assert root.findtext("os/dtb").endswith("/project/board.dtb")
    assert root.find("sysinfo[@type='smbios']/system/entry[@name='serial']").text == "S-42"
    assert [e.text for e in root.findall("sysinfo/oemStrings/entry")] == ["one", "two"]
    fwcfg = root.find("sysinfo[@type='fwcfg']")
    assert fwcfg.find("entry[@name='opt/com.coreos/config']").get("file").endswith("/project/config.ign")
    assert fwcfg.find("entry[@name='opt/org.example/x']").text == "hello"
    assert [f.tag for f in root.find("features")] == ["acpi", "apic", "pae", "vmport", "hyperv", "kvm"]
    assert root.find("features/vmport").get("state") == "off"
    assert root.find("features/hyperv/spinlocks").get("retries") == "4096"
    assert root.find("clock").get("offset") == "localtime"
    assert root.find("clock/timer[@name='hpet']").get("present") == "no"


@pytest.mark.parametrize(("setting", "offset"), [
    ("libvirt.clock_timezone = 'Europe/Berlin'", "timezone"),
    ("libvirt.clock_adjustment = 3600\n libvirt.clock_basis = 'localtime'", "variable"),
    ("libvirt.clock_absolute = 1700000000", "absolute"),
])
def test_clock_offsets(tmp_path: Path, home: Path, setting: str, offset: str) -> None:
    root, _, _ = build(machine(tmp_path, setting), home)
    assert root.find("clock").get("offset") == offset


def test_boot_order_on_devices_and_the_management_nic(tmp_path: Path, home: Path) -> None:
    cfg = machine(tmp_path, """
        libvirt.storage :file, device: :cdrom, path: "test.iso"
        libvirt.boot "cdrom"
        libvirt.boot "network"
        libvirt.boot "hd"
    """, files={"test.iso": "iso"})
    root, _, _ = build(cfg, home)
    orders = {d.find("target").get("dev"): d.find("boot").get("order") for d in root.findall("devices/disk")}
    assert orders == {"vda": "3", "hda": "1"}
    assert root.find("os/boot") is None and root.find("os/bootmenu").get("enable") == "yes"
    args = qemu_args(root)
    assert args[args.index("-device") + 1].endswith(",bootindex=2")


def test_boot_of_a_device_the_machine_lacks_is_an_error(tmp_path: Path, home: Path) -> None:
    with pytest.raises(MachineError, match="no such"):
        build(machine(tmp_path, 'libvirt.boot "cdrom"'), home)


def test_identity_title_description_uuid(tmp_path: Path, home: Path) -> None:
    cfg = machine(tmp_path, """
        libvirt.title = "A title"
        libvirt.description = "What this machine is for"
        libvirt.uuid = "12345678-1234-5678-1234-567812345678"
    """)
    assert cfg.libvirt.uuid == "12345678-1234-5678-1234-567812345678"
    root, _, _ = build(cfg, home)
    assert root.findtext("title") == "A title" and root.findtext("description") == "What this machine is for"


# -- disks ---------------------------------------------------------------------------------------

def test_every_storage_option(tmp_path: Path, home: Path) -> None:
    cfg = machine(tmp_path, """
        libvirt.storage :file, size: "2G", type: "raw", cache: "none", discard: "unmap", detect_zeroes: "unmap",
          io: "threads", serial: "DATA1", shareable: true, wwn: "5000c50015ea71ac"
        libvirt.storage :file, size: "1G", bus: "scsi"
        libvirt.storage :file, size: "1G", bus: "sata", device: "sdc"
        libvirt.storage :file, size: "3G", path: "keep.qcow2", allow_existing: true
        libvirt.storage :file, device: :cdrom, path: "test.iso"
        libvirt.storage :file, device: :floppy, path: "floppy.img"
        libvirt.disk_driver cache: "writeback", io: "threads", discard: "unmap", detect_zeroes: "on", copy_on_read: "on"
        libvirt.disk_controller_model = "lsilogic"
    """, files={"test.iso": "iso", "floppy.img": "f"})
    root, _, st = build(cfg, home)
    by_dev = {d.find("target").get("dev"): d for d in root.findall("devices/disk")}
    assert set(by_dev) == {"vda", "vdb", "sda", "sdc", "vdc", "hda", "fda"}
    box = by_dev["vda"].find("driver").attrib
    assert box["cache"] == "writeback" and box["copy_on_read"] == "on" and box["detect_zeroes"] == "on"
    raw = by_dev["vdb"]
    assert raw.find("driver").attrib == {"name": "qemu", "type": "raw", "cache": "none", "io": "threads",
                                         "discard": "unmap", "detect_zeroes": "unmap"}
    assert raw.findtext("serial") == "DATA1" and raw.find("shareable") is not None
    assert by_dev["sda"].find("target").get("bus") == "scsi"
    assert root.find("devices/controller[@type='scsi']").get("model") == "lsilogic"
    assert by_dev["hda"].get("device") == "cdrom" and by_dev["hda"].find("readonly") is not None
    assert by_dev["fda"].get("device") == "floppy" and by_dev["fda"].find("readonly") is not None
    vol = next(d for d in st.disks if d.role == "volume")
    assert vol.path == str(home / "volumes" / "keep.qcow2") and vol.owner == "user"
    extra = next(d for d in st.disks if d.name == "vdb")
    assert extra.path == str(home / "machines" / MID / "disk-vdb.raw") and extra.size == 2 * 1024**3


def test_cdrom_on_q35_is_sata(tmp_path: Path, home: Path) -> None:
    cfg = machine(tmp_path, """
        libvirt.machine_type = "q35"
        libvirt.storage :file, device: :cdrom, path: "test.iso"
    """, files={"test.iso": "iso"})
    root, _, _ = build(cfg, home)
    cd = root.find("devices/disk[@device='cdrom']/target")
    assert (cd.get("dev"), cd.get("bus")) == ("sda", "sata")


def test_vagrant_core_disks_primary_secondary_dvd_floppy(tmp_path: Path, home: Path) -> None:
    cfg = machine(tmp_path, "libvirt.memory = 512", extra="""
        config.vm.disk :disk, size: "30GB", primary: true
        config.vm.disk :disk, name: "data", size: 67108864
        config.vm.disk :dvd, name: "installer", file: "test.iso"
        config.vm.disk :floppy, name: "answers"
    """, files={"test.iso": "iso"})
    root, _, st = build(cfg, home)
    assert st.disks[0].size == 30 * 1024**3
    data = next(d for d in st.disks if d.name == "data")
    assert data.size == 67108864 and data.target == "vdb"
    assert next(d for d in st.disks if d.name == "installer").target == "hda"
    floppy = next(d for d in st.disks if d.name == "answers")
    assert floppy.owner == "vmctl" and floppy.path.endswith("floppy-answers.img")
    assert root.find("devices/disk[@device='floppy']/readonly") is None  # vmctl's own blank image


def test_a_disk_never_shrinks_and_one_left_out_is_kept_detached(tmp_path: Path, home: Path) -> None:
    big = machine(tmp_path, 'libvirt.storage :file, size: "4G"')
    _, _, st = build(big, home)
    small = machine(tmp_path, "libvirt.machine_virtual_size = 10")  # smaller than the box: ignored
    _, _, st2 = build(small, home)
    merged = disks.merge(st.disks, st2.disks)
    assert merged[0].size == 20 * 1024**3
    gone = next(d for d in merged if d.role == "extra")
    assert gone.attached is False
    again = disks.merge(merged, st.disks)
    assert next(d for d in again if d.role == "extra").attached is True


# -- devices -------------------------------------------------------------------------------------

def test_vnc_display_on_loopback_with_password_and_video(tmp_path: Path, home: Path) -> None:
    cfg = machine(tmp_path, """
        libvirt.graphics_type = "vnc"
        libvirt.graphics_passwd = "s3cret"
        libvirt.graphics_port = 5977
        libvirt.graphics_autoport = false
        libvirt.keymap = "de"
        libvirt.video_type = "qxl"
        libvirt.video_vram = 65536
        libvirt.sound_type = "ich6"
        libvirt.input type: "tablet", bus: "usb"
    """)
    root, _, _ = build(cfg, home)
    g = root.find("devices/graphics")
    assert (g.get("type"), g.get("listen"), g.get("port"), g.get("autoport"), g.get("passwd"), g.get("keymap")) == (
        "vnc", "127.0.0.1", "5977", "no", "s3cret", "de")
    assert root.find("devices/video/model").get("type") == "qxl"
    assert root.find("devices/sound").get("model") == "ich6"
    assert root.find("devices/input").attrib == {"type": "tablet", "bus": "usb"}
    assert root.find("devices/controller[@type='usb']").get("model") == "qemu-xhci"  # the tablet needs USB


def test_a_graphics_setting_alone_means_vnc(tmp_path: Path, home: Path) -> None:
    root, _, _ = build(machine(tmp_path, 'libvirt.keymap = "fr"'), home)
    assert root.find("devices/graphics").get("type") == "vnc" and root.find("devices/video/model").get("type") == "cirrus"


def test_graphics_none_removes_display_and_video(tmp_path: Path, home: Path) -> None:
    root, _, _ = build(machine(tmp_path, 'libvirt.graphics_type = "none"\nlibvirt.video_type = "vga"'), home)
    assert root.find("devices/graphics") is None and root.find("devices/video") is None


def test_spice_adds_its_channel_and_carries_redirection_and_smartcard(tmp_path: Path, home: Path) -> None:
    cfg = machine(tmp_path, """
        libvirt.graphics_type = "spice"
        libvirt.graphics_ip = "0.0.0.0"
        libvirt.redirdev type: "spicevmc"
        libvirt.redirfilter class: "0x08", allow: true
        libvirt.redirfilter allow: false
        libvirt.smartcard mode: "passthrough"
        libvirt.usb_controller model: "nec-xhci", ports: 4
    """)
    root, _, _ = build(cfg, home)
    assert root.find("devices/graphics").get("listen") == "0.0.0.0"  # the user's own Vagrantfile said so
    assert root.find("devices/channel/target[@name='com.redhat.spice.0']") is not None
    assert root.find("devices/redirdev").get("type") == "spicevmc"
    assert len(root.findall("devices/redirfilter/usbdev")) == 2
    assert root.find("devices/smartcard").get("type") == "spicevmc"
    assert root.find("devices/controller[@type='usb']").attrib == {"type": "usb", "model": "nec-xhci", "ports": "4"}


def test_serials_go_to_vmctls_folder_and_serial_0_to_the_console_log(tmp_path: Path, home: Path) -> None:
    cfg = machine(tmp_path, """
        libvirt.serial type: "pty"
        libvirt.serial type: "file", source: {path: "/var/log/vm/second.log", append: true}
    """)
    root, _, _ = build(cfg, home)
    first, second = root.findall("devices/serial")
    assert first.get("type") == "pty" and first.find("log").get("file") == str(home / "machines" / MID / "console.log")
    assert second.find("source").get("path") == str(home / "machines" / MID / "serial-second.log")
    assert second.find("source").get("append") == "on"


def test_guest_agent_channel_rng_watchdog_tpm(tmp_path: Path, home: Path) -> None:
    cfg = machine(tmp_path, """
        libvirt.qemu_use_agent = true
        libvirt.random model: "random"
        libvirt.watchdog model: "i6300esb", action: "poweroff"
        libvirt.tpm_model = "tpm-crb"
        libvirt.tpm_type = "emulator"
        libvirt.tpm_version = "2.0"
    """)
    root, _, st = build(cfg, home)
    assert root.find("devices/channel/target[@name='org.qemu.guest_agent.0']") is not None
    assert root.find("devices/rng/backend").get("model") == "random"
    assert root.find("devices/watchdog").attrib == {"model": "i6300esb", "action": "poweroff"}
    assert root.find("devices/tpm/backend").attrib == {"type": "emulator", "version": "2.0"}
    tpm = next(d for d in st.disks if d.role == "tpm")
    assert tpm.owner == "libvirt" and tpm.path == str(home / "libvirt" / "lib" / "swtpm" / st.uuid)


def test_a_disabled_channel_holds_the_agents_back(tmp_path: Path, home: Path) -> None:
    cfg = machine(tmp_path, """
        libvirt.qemu_use_agent = true
        libvirt.channel type: "unix", target_name: "org.qemu.guest_agent.0", disabled: true
        libvirt.channel type: "unix", target_type: "guestfwd", target_address: "10.0.2.100", target_port: 4242,
          source_path: "fwd.sock"
    """)
    root, _, _ = build(cfg, home)
    assert root.find("devices/channel/target[@name='org.qemu.guest_agent.0']") is None
    fwd = root.find("devices/channel")
    assert fwd.find("source").get("path") == str(home / "machines" / MID / "channel-fwd.sock")


def test_nic_models_mac_and_private_networks(tmp_path: Path, home: Path) -> None:
    cfg = machine(tmp_path, """
        libvirt.nic_model_type = "e1000"
        libvirt.management_network_model_type = "rtl8139"
        libvirt.management_network_mac = "525400ABCDEF"
        libvirt.nic_adapter_count = 4
    """)
    nic = domain.McastNic("52:54:00:01:02:03", "230.1.2.3", 25000)
    root, _, _ = build(cfg, home, private=(nic,))
    args = qemu_args(root)
    devices = [args[i + 1] for i, a in enumerate(args) if a == "-device"]
    assert devices[0] == "rtl8139,netdev=vmnet0,addr=0x10,mac=52:54:00:ab:cd:ef"
    assert devices[1].startswith("e1000,netdev=vmpriv0,")


def test_pci_usb_passthrough_qemuargs_qemuenv_emulator(tmp_path: Path, home: Path) -> None:
    cfg = machine(tmp_path, """
        libvirt.pci bus: "0x06", slot: "0x12", function: "0x5"
        libvirt.usb vendor: "0x1234", product: "0xabcd"
        libvirt.qemuargs value: "-fw_cfg"
        libvirt.qemuargs value: "name=opt/com.example/x,string=1"
        libvirt.qemuenv QEMU_AUDIO_DRV: "none"
        libvirt.emulator_path = "/usr/bin/qemu-system-x86_64"
    """)
    root, _, _ = build(cfg, home)
    assert root.find("devices/hostdev[@type='pci']/source/address").get("bus") == "0x06"
    assert root.find("devices/hostdev[@type='usb']/source").get("startupPolicy") == "mandatory"
    assert qemu_args(root)[-2:] == ["-fw_cfg", "name=opt/com.example/x,string=1"]
    assert root.findtext("devices/emulator") == "/usr/bin/qemu-system-x86_64"
    env = root.find(f"{{{domain.QEMU_NS}}}commandline/{{{domain.QEMU_NS}}}env")
    assert (env.get("name"), env.get("value")) == ("QEMU_AUDIO_DRV", "none")


def test_launch_security_puts_virtio_devices_behind_the_iommu(tmp_path: Path, home: Path) -> None:
    cfg = machine(tmp_path, 'libvirt.machine_type = "q35"\nlibvirt.launchsecurity type: "sev"')
    root, _, _ = build(cfg, home, KVM)
    assert root.find("launchSecurity/cbitpos").text == "47"
    assert root.find("devices/rng/driver").get("iommu") == "on"


# -- what stops `up` -----------------------------------------------------------------------------

@pytest.mark.parametrize(("provider", "words"), [
    ("libvirt.mgmt_attach = false", "no way into the machine"),
    ('libvirt.pci bus: "0x06", slot: "0x12", function: "0x5"', "qemu:///system"),
    ('libvirt.usb vendor: "0x1234"', "qemu:///system"),
    ('libvirt.launchsecurity type: "sev"', "SEV"),
    ('libvirt.tpm_path = "/dev/tpm7"', "has none"),
    ('libvirt.graphics_type = "sdl"', "background"),
    ('libvirt.redirdev type: "spicevmc"', "SPICE"),
    ('libvirt.machine_type = "q35"\nlibvirt.storage :file, device: :floppy, path: "f.img"', "floppy controller"),
    ("libvirt.nic_adapter_count = 1", "nic_adapter_count"),
    ('libvirt.nvram = "/nonexistent/VARS.fd"\nlibvirt.loader = "/usr/share/seabios/bios-256k.bin"',
     "no firmware description pairs"),
])
def test_what_cannot_work_here_stops_up_with_the_reason(tmp_path: Path, provider: str, words: str) -> None:
    cfg = machine(tmp_path, provider, extra='config.vm.network "private_network", ip: "10.1.2.3"',
                  files={"f.img": "f"})
    with pytest.raises((MachineError, MissingToolError), match=words.replace("(", r"\(")) as info:
        hardware.check_host(cfg, TCG)
    assert info.value.hint


def test_passthrough_is_allowed_as_root_on_the_system_daemon(tmp_path: Path) -> None:
    cfg = machine(tmp_path, 'libvirt.pci bus: "0x00", slot: "0x00", function: "0x0"')
    system = hardware.Host(accel="kvm", uri="qemu:///system", embedded=False, is_root=True)
    if not Path("/sys/bus/pci/devices/0000:00:00.0").exists():
        with pytest.raises(MachineError, match="no PCI device"):
            hardware.check_host(cfg, system)
    else:
        assert hardware.check_host(cfg, system) == []


@pytest.mark.parametrize(("provider", "words"), [
    ("libvirt.autostart = true", "starts with `vmctl up` only"),
    ("libvirt.shares = 512", "CPU shares are not enforced"),
    ('libvirt.memtune type: "soft_limit", value: 100000', "not enforced"),
])
def test_harmless_omissions_are_warnings_saying_why(tmp_path: Path, provider: str, words: str) -> None:
    warnings = hardware.check_host(machine(tmp_path, provider), TCG)  # TCG: not root
    assert len(warnings) == 1 and words in warnings[0]


def test_hugepages_need_reserved_pages(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(hardware, "_hugepages_free", lambda: 0)
    with pytest.raises(MachineError, match="needs huge pages") as info:
        hardware.check_host(machine(tmp_path, "libvirt.memorybacking :hugepages"), TCG)
    assert "vm.nr_hugepages" in (info.value.hint or "")
    monkeypatch.setattr(hardware, "_hugepages_free", lambda: 512)
    monkeypatch.setattr(hardware, "_hugetlbfs_mounted", lambda: True)
    assert hardware.check_host(machine(tmp_path, "libvirt.memorybacking :hugepages"), TCG) == []


def test_memtune_hard_limit_needs_the_privilege_to_raise_memlock(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(hardware, "_can_raise_memlock", lambda: False)
    with pytest.raises(MachineError, match="CAP_SYS_RESOURCE"):
        hardware.check_host(machine(tmp_path, 'libvirt.memtune type: "hard_limit", value: 2097152'), TCG)


def test_a_remote_host_refuses_what_needs_this_computers_files(tmp_path: Path) -> None:
    far = hardware.Host(accel="tcg", uri="qemu+ssh://me@kvm1/system", embedded=False)
    cfg = machine(tmp_path, "", extra='config.vm.network "public_network", dev: "br0"')
    with pytest.raises(MachineError, match="remote libvirt host me@kvm1.*public network on br0") as info:
        hardware.check_host(cfg, far)
    assert info.value.hint
    assert hardware.check_host(machine(tmp_path, ""), far) == []  # rsync folders are fine
    # A private network is a libvirt network of the host's system daemon (that host reaches it) ...
    private = machine(tmp_path, "", extra='config.vm.network "private_network", ip: "10.1.2.3"')
    assert any("libvirt network on me@kvm1" in w for w in hardware.check_host(private, far))
    # ... but a remote session daemon has none, and vmctl's own bridges are this computer's.
    session = hardware.Host(accel="tcg", uri="qemu+ssh://me@kvm1/session", embedded=False, is_root=True)
    with pytest.raises(MachineError, match="private network 10.1.2.3 as a host-only network"):
        hardware.check_host(private, session)


def test_a_multi_disk_box_gives_each_disk_its_overlay(tmp_path: Path, home: Path) -> None:
    cfg = machine(tmp_path, 'libvirt.storage :file, size: "1G"')
    box = disks.Box(Path("/boxes/box.img"), "qcow2", 20 * 1024**3,
                    ((Path("/boxes/disk2.qcow2"), "qcow2", 10 * 1024**3),))
    planned = disks.plan(cfg, MID, box, machine_type="pc", tpm_dir=None, nvram_template=None)
    assert [(d.role, d.name, d.target, d.size) for d in planned] == [
        ("box", "box", "vda", 20 * 1024**3), ("box", "box-1", "vdb", 10 * 1024**3), ("extra", "vdc", "vdc", 1024**3)]
    assert planned[1].source == "/boxes/disk2.qcow2" and planned[1].path.endswith("disk-box-1.qcow2")


def test_an_ovmf_build_no_descriptor_names_finds_its_variables_beside_it() -> None:
    assert hardware.firmware_pair("/usr/share/OVMF/OVMF_CODE.fd") == Path("/usr/share/OVMF/OVMF_VARS.fd")
    assert hardware.firmware_pair("/usr/share/OVMF/OVMF_CODE_4M.fd") == Path("/usr/share/OVMF/OVMF_VARS_4M.fd")
    assert hardware.firmware_pair("/usr/share/seabios/bios.bin") is None


def corpus_machines() -> list[tuple[str, MachineConfig]]:
    from test_vagrantfile_corpus import CASES, CORPUS, box_lookup

    found = []
    for case in CASES:
        folder = CORPUS / case
        try:
            project = evaluate_project(folder / "Vagrantfile", env={"HOME": "/home/tester"}, box_vagrantfile=box_lookup(folder))
        except Exception:  # noqa: BLE001 - the corpus has invalid files on purpose
            continue
        found += [(f"{case}/{m.name}", m) for m in project.machines]
    return found


@pytest.mark.parametrize(("label", "cfg"), corpus_machines(), ids=lambda x: x if isinstance(x, str) else "")
def test_every_machine_of_the_corpus_makes_a_domain_libvirt_accepts(label: str, cfg: MachineConfig, home: Path) -> None:
    root, _, _ = build(cfg, home, TCG)
    assert root.findtext("memory") is not None, label
