"""The domain XML builders, family by family, each result checked against libvirt's own
schema (virt-xml-validate). No VM."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import replace
from pathlib import Path

import pytest
from libvirt_schema import validate_domain

from vmctl import domain, network
from vmctl.domain import cpu, devices, disks, firmware

HOME = Path("/home/u/.local/share/vmctl/machines/abc")


def spec(**overrides: object) -> domain.DomainSpec:
    base = dict(
        identity=domain.Identity(name="vmctl-proj-default-abc123", uuid="6f1c1f0e-8d5e-4b71-9a55-000000000001",
                                 machine_id="abc123", project="/home/u/proj & <co>", machine="default"),
        accel="tcg",
        cpu=cpu.CpuSpec(vcpus=2, memory_mib=512),
        firmware=firmware.FirmwareSpec(kernel=Path("/boxes/tiny/vmlinuz"), initrd=Path("/boxes/tiny/initrd.img"),
                                       cmdline="root=/dev/vda rw console=ttyS0"),
        disks=disks.DisksSpec((disks.Disk("vda", HOME / "disk.qcow2", discard="unmap"),)),
        network=domain.NetworkSpec(management=domain.UserNic(
            mac="52:54:00:aa:bb:cc",
            forwards=(domain.Forward("127.0.0.1", 2200, 22), domain.Forward("127.0.0.1", 8080, 80)))),
        devices=devices.DevicesSpec(serials=(devices.Serial("file", HOME / "console.log"),)),
    )
    base.update(overrides)
    return domain.DomainSpec(**base)  # type: ignore[arg-type]


def render(s: domain.DomainSpec) -> ET.Element:
    xml = domain.render_domain(s)
    validate_domain(xml)
    return ET.fromstring(xml)


def qemu_args(root: ET.Element) -> list[str]:
    return [a.get("value") or "" for a in root.iter(f"{{{domain.QEMU_NS}}}arg")]


# -- the whole ---------------------------------------------------------------------------------

def test_tcg_domain_structure() -> None:
    root = render(spec())
    assert root.get("type") == "qemu"
    assert root.findtext("name") == "vmctl-proj-default-abc123"
    assert root.find("memory").get("unit") == "MiB" and root.findtext("memory") == "512"
    assert root.findtext("vcpu") == "2"
    assert root.find("cpu") is None  # no mode: QEMU's default model
    assert root.findtext("os/kernel") == "/boxes/tiny/vmlinuz"
    assert root.findtext("os/initrd") == "/boxes/tiny/initrd.img"
    assert root.findtext("os/cmdline") == "root=/dev/vda rw console=ttyS0"
    disk = root.find("devices/disk")
    assert disk.find("source").get("file").endswith("disk.qcow2")
    assert disk.find("target").get("dev") == "vda" and disk.find("target").get("bus") == "virtio"
    assert disk.find("driver").get("type") == "qcow2"
    assert root.find("devices/serial/source").get("path").endswith("console.log")
    assert root.find("devices/controller[@type='usb']").get("model") == "none"
    assert root.find("devices/memballoon").get("model") == "none"
    assert root.find("devices/rng/backend").text == "/dev/urandom"
    assert root.find("devices/graphics") is None and root.find("devices/video") is None


def test_kvm_domain() -> None:
    root = render(spec(accel="kvm", cpu=cpu.CpuSpec(2, 512, mode="host-passthrough")))
    assert root.get("type") == "kvm"
    assert root.find("cpu").get("mode") == "host-passthrough"


def test_text_is_escaped_and_metadata_round_trips() -> None:
    xml = domain.render_domain(spec())
    assert "&amp;" in xml and "&lt;co&gt;" in xml
    meta = domain.parse_machine_metadata(xml)
    assert meta == {"id": "abc123", "name": "default", "project": "/home/u/proj & <co>"}
    assert domain.parse_machine_metadata("<domain/>") is None
    assert domain.parse_machine_metadata("not xml") is None


def test_identity_title_description_uuid() -> None:
    ident = domain.Identity(name="work_default", uuid="12345678-1234-5678-1234-567812345678", machine_id="abc123",
                            title="My <title>", description="line one & two")
    root = render(spec(identity=ident))
    assert root.findtext("name") == "work_default"
    assert root.findtext("uuid") == "12345678-1234-5678-1234-567812345678"
    assert root.findtext("title") == "My <title>"
    assert root.findtext("description") == "line one & two"


def test_unknown_accelerator_is_refused() -> None:
    with pytest.raises(ValueError):
        spec(accel="xen")


# -- network -----------------------------------------------------------------------------------

def test_forwards_bind_loopback_and_nic_has_fixed_slot() -> None:
    args = qemu_args(render(spec()))
    netdev = args[args.index("-netdev") + 1]
    assert netdev == "user,id=vmnet0,hostfwd=tcp:127.0.0.1:2200-:22,hostfwd=tcp:127.0.0.1:8080-:80"
    device = args[args.index("-device") + 1]
    assert device == "virtio-net-pci,netdev=vmnet0,addr=0x10,mac=52:54:00:aa:bb:cc"


def test_empty_host_address_is_refused() -> None:
    with pytest.raises(ValueError):
        domain.hostfwd_rules((domain.Forward("", 2200, 22),))


def test_management_nic_model_mac_and_boot_index() -> None:
    nic = domain.UserNic(mac="52:54:00:01:02:03", model="e1000", boot_order=2)
    args = qemu_args(render(spec(network=domain.NetworkSpec(management=nic))))
    assert args[args.index("-device") + 1] == "e1000,netdev=vmnet0,addr=0x10,mac=52:54:00:01:02:03,bootindex=2"


@pytest.mark.parametrize("bad", [
    domain.UserNic(mac="52:54:00:01:02:03,id=x", model="virtio"),
    domain.UserNic(mac="52:54:00:01:02:03", model="virtio-net-pci,x=1"),
    domain.UserNic(mac="52:54:00:01:02:03", boot_order=0),
])
def test_qemu_option_strings_of_the_nic_are_checked(bad: domain.UserNic) -> None:
    with pytest.raises(ValueError):
        domain.render_domain(spec(network=domain.NetworkSpec(management=bad)))


def test_no_management_nic_means_no_commandline() -> None:
    root = render(spec(network=domain.NetworkSpec(management=None)))
    assert root.find(f"{{{domain.QEMU_NS}}}commandline") is None


def test_private_networks_are_mcast_sockets_on_loopback() -> None:
    group, port = network.mcast_group("project:/p:172.17.8.0/24")
    nics = (domain.McastNic(mac="52:54:00:01:02:03", group=group, port=port, boot_order=3),
            domain.McastNic(mac="52:54:00:01:02:04", group=group, port=port))
    net = domain.NetworkSpec(management=domain.UserNic(mac="52:54:00:aa:bb:cc"), private=nics, private_model="e1000")
    root = render(spec(network=net))
    assert root.find("devices/interface") is None  # libvirt's mcast interface cannot be kept on loopback
    args = qemu_args(root)
    assert args[4:8] == [
        "-netdev", f"socket,id=vmpriv0,mcast={group}:{port},localaddr=127.0.0.1",
        "-device", "e1000,netdev=vmpriv0,addr=0x11,mac=52:54:00:01:02:03,bootindex=3",  # after the NAT NIC at 0x10
    ]
    assert args[11] == "e1000,netdev=vmpriv1,addr=0x12,mac=52:54:00:01:02:04"


@pytest.mark.parametrize("nic", [
    domain.McastNic(mac="52:54:00:01:02:03", group="10.0.0.1", port=5000),  # not multicast
    domain.McastNic(mac="52:54:00:01:02:03", group="230.1.2.3,localaddr=0.0.0.0", port=5000),
    domain.McastNic(mac="52:54:00:01:02:03", group="230.1.2.3", port=0),
])
def test_private_nic_option_strings_are_checked(nic: domain.McastNic) -> None:
    with pytest.raises(ValueError):
        domain.render_domain(spec(network=domain.NetworkSpec(management=None, private=(nic,))))


def test_mcast_segments_differ_per_project_and_are_stable() -> None:
    a = network.mcast_group("project:/a:172.17.8.0/24")
    b = network.mcast_group("project:/b:172.17.8.0/24")
    assert a != b
    assert a == network.mcast_group("project:/a:172.17.8.0/24")
    assert a[0].startswith("230.") and 20000 <= a[1] < 40000


def test_macs_are_stable_and_local() -> None:
    assert network.mac_for("abc", 0) == network.mac_for("abc", 0)
    assert network.mac_for("abc", 0) != network.mac_for("abc", 1)
    assert network.mac_for("abc").startswith("52:54:00:")


def test_extra_qemu_args_and_env_follow_the_nic() -> None:
    root = render(spec(qemu_args=("-fw_cfg", "name=opt/x,string=1"), qemu_env=(("QEMU_AUDIO_DRV", "none"),)))
    args = qemu_args(root)
    assert args[:2] == ["-netdev", args[1]] and args[-2:] == ["-fw_cfg", "name=opt/x,string=1"]
    env = root.find(f"{{{domain.QEMU_NS}}}commandline/{{{domain.QEMU_NS}}}env")
    assert env.get("name") == "QEMU_AUDIO_DRV" and env.get("value") == "none"


# -- disks -------------------------------------------------------------------------------------

def test_every_kind_of_disk() -> None:
    ds = disks.DisksSpec((
        disks.Disk("vda", HOME / "disk.qcow2", discard="unmap", cache="writeback", io="threads",
                   detect_zeroes="unmap", copy_on_read="on", boot_order=1),
        disks.Disk("vdb", HOME / "disk-vdb.qcow2", cache="none", serial="EXTRA 1", wwn="0x5000c50015ea71ac",
                   shareable=True),
        disks.Disk("sda", HOME / "disk-sda.raw", bus="scsi", format="raw"),
        disks.Disk("sdb", HOME / "disk-sdb.raw", bus="sata", format="raw", address_type="drive"),
        disks.Disk("hda", Path("/isos/test.iso"), device="cdrom", bus="ide", format="raw", boot_order=2),
        disks.Disk("hdb", None, device="cdrom", bus="ide", format="raw"),
        disks.Disk("fda", Path("/images/floppy.img"), device="floppy", bus="fdc", format="raw", readonly=True),
    ), scsi_controller_model="lsilogic")
    root = render(spec(disks=ds, firmware=firmware.FirmwareSpec(per_device_boot=True)))
    found = {d.find("target").get("dev"): d for d in root.findall("devices/disk")}
    assert found["vda"].find("driver").attrib == {"name": "qemu", "type": "qcow2", "cache": "writeback", "io": "threads",
                                                 "discard": "unmap", "detect_zeroes": "unmap", "copy_on_read": "on"}
    assert found["vda"].find("boot").get("order") == "1"
    assert found["vdb"].findtext("serial") == "EXTRA 1" and found["vdb"].find("shareable") is not None
    assert found["vdb"].findtext("wwn") == "0x5000c50015ea71ac"
    assert found["sda"].find("target").get("bus") == "scsi"
    assert root.find("devices/controller[@type='scsi']").get("model") == "lsilogic"
    assert found["sdb"].find("address").get("type") == "drive"
    assert found["hda"].get("device") == "cdrom" and found["hda"].find("readonly") is not None
    assert found["hdb"].find("source") is None  # an empty drive
    assert found["fda"].get("device") == "floppy" and found["fda"].find("readonly") is not None
    assert root.find("os/boot") is None  # the devices carry the order


def test_eight_scsi_disks_need_two_controllers() -> None:
    ds = disks.DisksSpec(tuple(disks.Disk(f"sd{c}", HOME / f"disk-sd{c}.qcow2", bus="scsi") for c in "abcdefgh"))
    root = render(spec(disks=ds))
    assert [c.get("index") for c in root.findall("devices/controller[@type='scsi']")] == ["0", "1"]


def test_bad_disk_values_are_refused() -> None:
    with pytest.raises(ValueError):
        disks.Disk("vdb", None, bus="floppybus")
    with pytest.raises(ValueError):
        disks.Disk("vdb", None, device="tape")


# -- CPU and memory ----------------------------------------------------------------------------

def test_cpu_custom_model_features_topology_numa() -> None:
    c = cpu.CpuSpec(
        vcpus=4, memory_mib=1024, cpuset="0-1", mode="custom", model="Nehalem", fallback="forbid",
        features=(("vmx", "optional"), ("avx", "disable")), topology=(2, 2, 1),
        numa=(cpu.NumaCell("0-1", 524288), cpu.NumaCell("2-3", 524288, "shared")),
        affinity=((0, "0"), (1, "1-2")), shares=2048, nodeset="0",
    )
    root = render(spec(cpu=c))
    assert root.find("vcpu").get("cpuset") == "0-1"
    assert root.find("cpu").get("mode") == "custom" and root.find("cpu").get("match") == "exact"
    assert root.findtext("cpu/model") == "Nehalem" and root.find("cpu/model").get("fallback") == "forbid"
    assert root.find("cpu/topology").attrib == {"sockets": "2", "cores": "2", "threads": "1"}
    assert [(f.get("name"), f.get("policy")) for f in root.findall("cpu/feature")] == [("vmx", "optional"), ("avx", "disable")]
    cells = root.findall("cpu/numa/cell")
    assert [c.get("cpus") for c in cells] == ["0-1", "2-3"] and cells[1].get("memAccess") == "shared"
    assert [(p.get("vcpu"), p.get("cpuset")) for p in root.findall("cputune/vcpupin")] == [("0", "0"), ("1", "1-2")]
    assert root.findtext("cputune/shares") == "2048"
    assert root.find("numatune/memory").get("nodeset") == "0"


@pytest.mark.parametrize("mode", ["host-model", "host-passthrough", "maximum"])
def test_cpu_modes(mode: str) -> None:
    root = render(spec(cpu=cpu.CpuSpec(2, 512, mode=mode, fallback="allow" if mode == "host-model" else None)))
    assert root.find("cpu").get("mode") == mode
    assert root.find("cpu/model") is None or mode == "host-model"


def test_topology_alone_is_a_cpu_element() -> None:
    root = render(spec(cpu=cpu.CpuSpec(4, 512, topology=(1, 4, 1))))
    assert root.find("cpu").get("mode") is None
    assert root.find("cpu/topology").get("cores") == "4"


def test_memory_backing_and_memtune() -> None:
    c = cpu.CpuSpec(2, 512, memory_backing=(cpu.MemoryBacking("hugepages"), cpu.MemoryBacking("source", (("type", "memfd"),)),
                                            cpu.MemoryBacking("access", (("mode", "shared"),))),
                    memtune=(cpu.Memtune("hard_limit", 2097152), cpu.Memtune("soft_limit", 1, "GiB")))
    root = render(spec(cpu=c))
    assert root.find("memoryBacking/hugepages") is not None
    assert root.find("memoryBacking/source").get("type") == "memfd"
    assert root.find("memoryBacking/access").get("mode") == "shared"
    assert root.findtext("memtune/hard_limit") == "2097152" and root.find("memtune/hard_limit").get("unit") == "KiB"
    assert root.find("memtune/soft_limit").get("unit") == "GiB"


def test_bad_cpu_values_are_refused() -> None:
    with pytest.raises(ValueError):
        cpu.CpuSpec(1, 512, mode="host")
    with pytest.raises(ValueError):
        cpu.CpuSpec(1, 512, memory_backing=(cpu.MemoryBacking("access", (("path", "/x"),)),))


# -- machine and firmware ----------------------------------------------------------------------

def test_uefi_q35_with_per_machine_nvram() -> None:
    fw = firmware.FirmwareSpec(machine="q35", loader=Path("/usr/share/OVMF/OVMF_CODE_4M.fd"), loader_type="pflash",
                               nvram=HOME / "nvram.fd")
    root = render(spec(firmware=fw))
    assert root.find("os/type").get("machine") == "q35"
    loader = root.find("os/loader")
    assert loader.text == "/usr/share/OVMF/OVMF_CODE_4M.fd" and loader.get("type") == "pflash"
    assert loader.get("readonly") == "yes"
    assert root.findtext("os/nvram") == str(HOME / "nvram.fd")
    assert root.find("os/boot").get("dev") == "hd"


def test_secure_boot_loader_with_smm() -> None:
    fw = firmware.FirmwareSpec(machine="q35", loader=Path("/usr/share/OVMF/OVMF_CODE_4M.secboot.fd"),
                               loader_type="pflash", loader_secure=True, nvram=HOME / "nvram.fd",
                               features=(firmware.Feature("acpi"), firmware.Feature("smm", (("state", "on"),))))
    root = render(spec(firmware=fw))
    assert root.find("os/loader").get("secure") == "yes"
    assert root.find("features/smm").get("state") == "on"


def test_rom_loader_dtb_boot_order_and_menu() -> None:
    fw = firmware.FirmwareSpec(machine="pc", arch="i686", loader=Path("/usr/share/seabios/bios.bin"),
                               boot=("cdrom", "hd", "network"), bootmenu=True)
    root = render(spec(firmware=fw))
    assert root.find("os/type").get("arch") == "i686"
    assert root.find("os/loader").get("type") == "rom"
    assert [b.get("dev") for b in root.findall("os/boot")] == ["cdrom", "hd", "network"]
    assert root.find("os/bootmenu").get("enable") == "yes"


def test_sysinfo_smbios_blocks_and_fw_cfg() -> None:
    fw = firmware.FirmwareSpec(
        smbios=(firmware.SmbiosBlock("bios", (("vendor", "vmctl"), ("version", "1.0"))),
                firmware.SmbiosBlock("system", (("manufacturer", "ACME"), ("serial", "S-1"))),
                firmware.SmbiosBlock("base board", (("asset", "A1"),)),
                firmware.SmbiosBlock("chassis", (("sku", "X"),)),
                firmware.SmbiosBlock("oem strings", ((None, "hello"), (None, "world")))),
        fw_cfg=(firmware.FwCfgEntry("opt/com.coreos/config", file=Path("/p/config.ign")),
                firmware.FwCfgEntry("opt/org.example/x", text="1")),
    )
    root = render(spec(firmware=fw))
    smbios = root.find("sysinfo[@type='smbios']")
    assert smbios.find("bios/entry[@name='vendor']").text == "vmctl"
    assert smbios.find("system/entry[@name='serial']").text == "S-1"
    assert smbios.find("baseBoard/entry[@name='asset']").text == "A1"
    assert smbios.find("chassis/entry[@name='sku']").text == "X"
    assert [e.text for e in smbios.findall("oemStrings/entry")] == ["hello", "world"]
    assert root.find("os/smbios").get("mode") == "sysinfo"
    fwcfg = root.find("sysinfo[@type='fwcfg']")
    assert fwcfg.find("entry[@name='opt/com.coreos/config']").get("file") == "/p/config.ign"
    assert fwcfg.find("entry[@name='opt/org.example/x']").text == "1"


def test_features_hyperv_kvm_hidden_clock_and_timers() -> None:
    fw = firmware.FirmwareSpec(
        features=(firmware.Feature("acpi"), firmware.Feature("apic"), firmware.Feature("pae"),
                  firmware.Feature("vmport", (("state", "off"),))),
        hyperv=(firmware.HypervFeature("relaxed", "on"), firmware.HypervFeature("spinlocks", "on", retries=8191),
                firmware.HypervFeature("vendor_id", "on", value="KVMKVMKVM")),
        kvm_hidden=True,
        clock=firmware.Clock(offset="localtime", timers=(firmware.Timer("rtc", tickpolicy="catchup", track="guest"),
                                                          firmware.Timer("hpet", present=False))),
    )
    root = render(spec(firmware=fw))
    assert [f.tag for f in root.find("features")] == ["acpi", "apic", "pae", "vmport", "hyperv", "kvm"]
    assert root.find("features/hyperv/spinlocks").get("retries") == "8191"
    assert root.find("features/hyperv/vendor_id").get("value") == "KVMKVMKVM"
    assert root.find("features/kvm/hidden").get("state") == "on"
    assert root.find("clock").get("offset") == "localtime"
    assert root.find("clock/timer[@name='rtc']").get("tickpolicy") == "catchup"
    assert root.find("clock/timer[@name='hpet']").get("present") == "no"


@pytest.mark.parametrize("clock", [
    firmware.Clock(offset="timezone", timezone="Europe/Berlin"),
    firmware.Clock(offset="variable", basis="utc", adjustment=3600),
    firmware.Clock(offset="absolute", start=1700000000),
])
def test_clock_offsets(clock: firmware.Clock) -> None:
    root = render(spec(firmware=firmware.FirmwareSpec(clock=clock)))
    assert root.find("clock").get("offset") == clock.offset


def test_launch_security_sev() -> None:
    fw = firmware.FirmwareSpec(machine="q35", launch_security=firmware.LaunchSecurity(47, 1, "0x0003"))
    dev = devices.DevicesSpec(serials=(), iommu=True, memballoon=devices.Memballoon("virtio"))
    root = render(spec(firmware=fw, devices=dev))
    ls = root.find("launchSecurity")
    assert ls.get("type") == "sev" and ls.findtext("cbitpos") == "47" and ls.findtext("policy") == "0x0003"
    assert root.find("devices/rng/driver").get("iommu") == "on"
    assert root.find("devices/memballoon/driver").get("iommu") == "on"


# -- devices -----------------------------------------------------------------------------------

def test_vnc_display_with_password_port_keymap_and_video() -> None:
    dev = devices.DevicesSpec(
        serials=(devices.Serial("file", HOME / "console.log"),),
        graphics=devices.Graphics("vnc", port=5977, autoport=False, websocket=5700, passwd="s3cret", keymap="de"),
        video=devices.Video("virtio", vram=65536),
    )
    root = render(spec(devices=dev))
    g = root.find("devices/graphics")
    assert g.attrib == {"type": "vnc", "port": "5977", "autoport": "no", "websocket": "5700", "listen": "127.0.0.1",
                        "keymap": "de", "passwd": "s3cret"}
    assert g.find("listen").get("address") == "127.0.0.1"
    assert root.find("devices/video/model").attrib == {"type": "virtio", "vram": "65536", "heads": "1"}


def test_spice_display_gl_and_accel3d() -> None:
    dev = devices.DevicesSpec(serials=(), graphics=devices.Graphics("spice", gl=True),
                              video=devices.Video("virtio", accel3d=True))
    root = render(spec(devices=dev))
    assert root.find("devices/graphics").get("type") == "spice"
    assert root.find("devices/graphics").get("port") is None and root.find("devices/graphics").get("autoport") == "yes"
    assert root.find("devices/graphics/gl").get("enable") == "yes"
    assert root.find("devices/video/model/acceleration").get("accel3d") == "yes"


def test_serials_pty_and_file_with_console_log() -> None:
    dev = devices.DevicesSpec(serials=(devices.Serial("pty", log=HOME / "console.log"),
                                       devices.Serial("file", HOME / "serial-x.log", append=True)))
    root = render(spec(devices=dev))
    serials = root.findall("devices/serial")
    assert serials[0].get("type") == "pty" and serials[0].find("log").get("file").endswith("console.log")
    assert serials[1].find("source").get("append") == "on" and serials[1].find("target").get("port") == "1"
    assert root.find("devices/console").get("type") == "pty"


def test_channels_inputs_sound_watchdog_rng_tpm() -> None:
    dev = devices.DevicesSpec(
        serials=(devices.Serial("file", HOME / "console.log"),),
        channels=(devices.Channel("unix", target_name="org.qemu.guest_agent.0"),
                  devices.Channel("unix", target_type="guestfwd", target_address="10.0.2.100", target_port=4242,
                                  source_mode="bind", source_path=HOME / "channel-fwd.sock"),
                  devices.Channel("spicevmc", target_name="com.redhat.spice.0")),
        inputs=(devices.Input("tablet", "usb"), devices.Input("keyboard", "virtio")),
        sound="ich9",
        watchdog=devices.Watchdog("i6300esb", "poweroff"),
        tpm=devices.Tpm("tpm-crb", "emulator", "2.0"),
        usb_controller="qemu-xhci", usb_ports=8,
    )
    root = render(spec(devices=dev))
    ga = root.find("devices/channel/target[@name='org.qemu.guest_agent.0']")
    assert ga.get("type") == "virtio"
    fwd = root.find("devices/channel/target[@type='guestfwd']")
    assert fwd.get("address") == "10.0.2.100" and fwd.get("port") == "4242"
    assert [(i.get("type"), i.get("bus")) for i in root.findall("devices/input")] == [("tablet", "usb"), ("keyboard", "virtio")]
    assert root.find("devices/sound").get("model") == "ich9"
    assert root.find("devices/watchdog").attrib == {"model": "i6300esb", "action": "poweroff"}
    assert root.find("devices/tpm").get("model") == "tpm-crb"
    assert root.find("devices/tpm/backend").attrib == {"type": "emulator", "version": "2.0"}
    assert root.find("devices/controller[@type='usb']").attrib == {"type": "usb", "model": "qemu-xhci", "ports": "8"}


def test_tpm_passthrough_smartcard_redirection_hostdevs_balloon() -> None:
    dev = devices.DevicesSpec(
        serials=(),
        graphics=devices.Graphics("spice"),
        tpm=devices.Tpm("tpm-tis", "passthrough", device=Path("/dev/tpm0")),
        smartcard=devices.Smartcard("tcp", "connect", "127.0.0.1", "2001"),
        usb_controller="qemu-xhci",
        redirdevs=("spicevmc", "spicevmc"),
        redirfilters=(devices.RedirFilter(allow=True, class_="0x08"), devices.RedirFilter(allow=False)),
        pci=(devices.PciHostdev(0, 6, 0x12, 5, guest=(0, 0, 0x1f, 0)),),
        usb=(devices.UsbHostdev(vendor="0x1234", product="0xabcd", startup_policy="optional"),
             devices.UsbHostdev(bus=1, device=3)),
        memballoon=devices.Memballoon("virtio", "0x00", "0x0f"),
        emulator=Path("/usr/bin/qemu-system-x86_64"),
    )
    root = render(spec(devices=dev))
    assert root.find("devices/tpm/backend/device").get("path") == "/dev/tpm0"
    sc = root.find("devices/smartcard")
    assert sc.get("type") == "tcp" and sc.find("source").get("service") == "2001"
    assert len(root.findall("devices/redirdev")) == 2
    assert [u.get("allow") for u in root.findall("devices/redirfilter/usbdev")] == ["yes", "no"]
    assert root.find("devices/redirfilter/usbdev").get("class") == "0x08"
    pci = root.find("devices/hostdev[@type='pci']")
    assert pci.find("source/address").attrib == {"domain": "0x0000", "bus": "0x06", "slot": "0x12", "function": "0x5"}
    assert pci.find("address").get("slot") == "0x1f"
    usb = root.findall("devices/hostdev[@type='usb']")
    assert usb[0].find("source/vendor").get("id") == "0x1234" and usb[0].find("source").get("startupPolicy") == "optional"
    assert usb[1].find("source/address").attrib == {"bus": "1", "device": "3"}
    balloon = root.find("devices/memballoon")
    assert balloon.get("model") == "virtio" and balloon.find("address").get("slot") == "0x0f"
    assert root.findtext("devices/emulator") == "/usr/bin/qemu-system-x86_64"


def test_no_rng_and_bad_device_values() -> None:
    root = render(spec(devices=devices.DevicesSpec(serials=(), rng=False)))
    assert root.find("devices/rng") is None
    with pytest.raises(ValueError):
        devices.Graphics("sdl")
    with pytest.raises(ValueError):
        devices.Video("matrox")
    with pytest.raises(ValueError):
        devices.Serial("file")  # a file serial needs its path


def test_replace_keeps_specs_frozen() -> None:
    s = spec()
    with pytest.raises(AttributeError):
        s.accel = "kvm"  # type: ignore[misc]
    assert replace(s, accel="kvm").accel == "kvm"


def test_private_networks_on_host_bridges_are_libvirt_interfaces() -> None:
    group, port = network.mcast_group("name:lab")
    nics = (domain.BridgeNic(mac="52:54:00:01:02:03", bridge="vmctl-012345678", tap="vmtap-abcdef012", boot_order=2),
            domain.McastNic(mac="52:54:00:01:02:04", group=group, port=port))
    net = domain.NetworkSpec(management=domain.UserNic(mac="52:54:00:aa:bb:cc"), private=nics, private_model="e1000")
    root = render(spec(network=net))  # checked against libvirt's schema
    (iface,) = root.findall("devices/interface")
    assert iface.get("type") == "bridge"
    assert iface.find("source").get("bridge") == "vmctl-012345678"  # type: ignore[union-attr]
    assert iface.find("target").get("dev") == "vmtap-abcdef012"  # type: ignore[union-attr]
    assert iface.find("mac").get("address") == "52:54:00:01:02:03"  # type: ignore[union-attr]
    assert iface.find("model").get("type") == "e1000"  # type: ignore[union-attr]
    assert iface.find("boot").get("order") == "2"  # type: ignore[union-attr]
    assert iface.find("address").get("slot") == "0x11"  # type: ignore[union-attr]
    args = qemu_args(root)
    # The multicast NIC keeps the slot of its place (the second private NIC).
    assert "-netdev" in args and f"socket,id=vmpriv1,mcast={group}:{port},localaddr=127.0.0.1" in args
    assert "e1000,netdev=vmpriv1,addr=0x12,mac=52:54:00:01:02:04" in args
    assert not any("vmpriv0" in a for a in args)


def test_public_networks_are_a_host_bridge_or_macvtap() -> None:
    nics = (domain.PublicNic(mac="52:54:00:01:02:03", attach="bridge", dev="br0", tap="vmtap-abcdef012"),
            domain.PublicNic(mac="52:54:00:01:02:04", attach="direct", dev="eth0", tap="vmtap-abcdef013", mode="vepa"))
    net = domain.NetworkSpec(management=domain.UserNic(mac="52:54:00:aa:bb:cc"), private=nics)
    root = render(spec(network=net))  # checked against libvirt's schema
    bridge, direct = root.findall("devices/interface")
    assert bridge.get("type") == "bridge" and bridge.find("source").attrib == {"bridge": "br0"}  # type: ignore[union-attr]
    assert direct.get("type") == "direct"
    assert direct.find("source").attrib == {"dev": "eth0", "mode": "vepa"}  # type: ignore[union-attr]
    assert direct.find("target").get("dev") == "vmtap-abcdef013"  # type: ignore[union-attr]
    assert [i.find("address").get("slot") for i in (bridge, direct)] == ["0x11", "0x12"]  # type: ignore[union-attr]
    assert not any("vmpriv" in a for a in qemu_args(root))

    # A macvtap vmctl made (the embedded driver): an unmanaged ethernet interface.
    premade = replace(nics[1], premade=True)
    root = render(spec(network=replace(net, private=(premade,))))
    (iface,) = root.findall("devices/interface")
    assert iface.get("type") == "ethernet" and iface.find("source") is None
    assert iface.find("target").attrib == {"dev": "vmtap-abcdef013", "managed": "no"}  # type: ignore[union-attr]


@pytest.mark.parametrize("nic", [
    domain.PublicNic(mac="52:54:00:01:02:03", attach="direct", dev="eth0", tap="vmtap-1", mode="bridged"),
    domain.PublicNic(mac="52:54:00:01:02:03", attach="direct", dev="eth0'/><x", tap="vmtap-1"),
    domain.PublicNic(mac="52:54:00:01:02:03", attach="network", dev="eth0", tap="vmtap-1"),
    domain.BridgeNic(mac="52:54:00:01:02:03", bridge="br0 up", tap="vmtap-1"),
    domain.BridgeNic(mac="52:54:00:01:02:03", bridge="vmctl-012345678", tap="sixteen-chars-xx"),
    domain.BridgeNic(mac="52:54:00:01:02:0", bridge="vmctl-012345678", tap="vmtap-1"),
])
def test_bridge_nic_values_are_checked(nic: domain.BridgeNic | domain.PublicNic) -> None:
    with pytest.raises(ValueError):
        domain.render_domain(spec(network=domain.NetworkSpec(management=None, private=(nic,))))


def test_udp_tunnels_are_sockets_between_loopback_ends() -> None:
    nic = domain.UdpNic(mac="52:54:00:01:02:05", remote="127.0.0.1", port=40002, local="127.0.0.1", local_port=40001)
    root = render(spec(network=domain.NetworkSpec(management=None, private=(nic,))))
    assert qemu_args(root) == ["-netdev", "socket,id=vmpriv0,udp=127.0.0.1:40002,localaddr=127.0.0.1:40001",
                               "-device", "virtio-net-pci,netdev=vmpriv0,addr=0x11,mac=52:54:00:01:02:05"]
    for bad in (replace(nic, remote="192.0.2.1"), replace(nic, local="127.0.0.1,x=y"),
                replace(nic, port=0)):
        with pytest.raises(ValueError):
            domain.render_domain(spec(network=domain.NetworkSpec(management=None, private=(bad,))))
