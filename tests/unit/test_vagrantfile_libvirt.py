"""The libvirt provider's settings as a Vagrantfile writes them: vagrant-libvirt's names (and
only those), each value checked where it is set, the rules for a box's own Vagrantfile,
and vagrant-libvirt's merging of several provider blocks. No VM."""

from __future__ import annotations

import re
import textwrap
from pathlib import Path

import pytest

from vmctl.errors import ConfigError
from vmctl.vagrantfile.libvirt import ATTRIBUTES, METHODS, parse_size
from vmctl.vagrantfile.loader import evaluate_project
from vmctl.vagrantfile.model import MachineConfig, ProjectConfig


def load(folder: Path, provider: str, *, extra: str = "", box: str | None = None) -> ProjectConfig:
    """A project whose provider block is PROVIDER (its lines), with EXTRA config lines and,
    when BOX is given, an installed box whose own Vagrantfile is BOX."""
    folder.mkdir(parents=True, exist_ok=True)
    lines = ['Vagrant.configure("2") do |config|', '  config.vm.box = "test/box"']
    lines += ["  " + line for line in textwrap.dedent(extra).strip().splitlines()]
    lines += ["  config.vm.provider :libvirt do |libvirt|"]
    lines += ["    " + line for line in textwrap.dedent(provider).strip().splitlines()]
    lines += ["  end", "end", ""]
    (folder / "Vagrantfile").write_text("\n".join(lines))
    lookup = None
    if box is not None:
        box_dir = folder.parent / "box"
        box_dir.mkdir(exist_ok=True)
        (box_dir / "Vagrantfile").write_text(textwrap.dedent(box))
        lookup = lambda name, version: box_dir / "Vagrantfile"  # noqa: E731
    return evaluate_project(folder / "Vagrantfile", env={"HOME": "/home/tester"}, box_vagrantfile=lookup)


def one(folder: Path, provider: str, **kwargs: object) -> MachineConfig:
    return load(folder, provider, **kwargs).machines[0]  # type: ignore[arg-type]


def failure(folder: Path, provider: str, **kwargs: object) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        load(folder, provider, **kwargs)  # type: ignore[arg-type]
    return info.value


# -- the names -----------------------------------------------------------------------------------

# A value each attribute of vagrant-libvirt's config.rb takes.
SAMPLES = {
    "uri": '"qemu:///system"', "driver": '"qemu"', "host": '"localhost"', "port": "22", "connect_via_ssh": "false",
    "socket": '"/run/libvirt/sock"', "username": '"me"', "password": '"pw"', "id_ssh_key_file": '"id_rsa"',
    "proxy_command": '"ssh -W %h:%p jump"', "forward_ssh_port": "true", "storage_pool_name": '"default"',
    "storage_pool_path": '"/var/lib/libvirt/images"', "snapshot_pool_name": '"default"', "system_uri": '"qemu:///system"',
    "qemu_use_session": "false", "random_hostname": "true", "default_prefix": '"pre_"', "title": '"t"',
    "description": '"d"', "uuid": '"12345678-1234-5678-1234-567812345678"', "autostart": "true",
    "suspend_mode": '"pause"', "management_network_device": '"virbr0"', "management_network_name": '"mgmt"',
    "management_network_address": '"192.168.121.0/24"', "management_network_mode": '"nat"',
    "management_network_mac": '"52:54:00:11:22:33"', "management_network_guest_ipv6": '"yes"',
    "management_network_autostart": "false", "management_network_pci_bus": '"0x00"',
    "management_network_pci_slot": '"0x05"', "management_network_domain": '"example"', "management_network_mtu": "1500",
    "management_network_keep": "false", "management_network_driver_iommu": "false",
    "management_network_iface_name": '"mgmt0"', "management_network_model_type": '"virtio"', "mgmt_attach": "true",
    "nic_model_type": '"virtio"', "nic_adapter_count": "8", "host_device_exclude_prefixes": '["docker"]',
    "memory": "1024", "cpus": "2", "cpuset": '"0-1"', "nodeset": '"0"', "cpu_mode": '"host-model"',
    "cpu_model": '"qemu64"', "cpu_fallback": '"allow"', "nested": "true", "shares": "1024",
    "numa_nodes": '[{cpus: "0-0", memory: 512}]', "memballoon_enabled": "true", "memballoon_model": '"virtio"',
    "memballoon_pci_bus": '"0x00"', "memballoon_pci_slot": '"0x0f"', "machine_type": '"q35"', "machine_arch": '"x86_64"',
    "machine_virtual_size": "30", "emulator_path": '"/usr/bin/qemu-system-x86_64"',
    "loader": '"/usr/share/OVMF/OVMF_CODE_4M.fd"', "nvram": '"/usr/share/OVMF/OVMF_VARS_4M.fd"', "kernel": '"vmlinuz"',
    "initrd": '"initrd"', "cmd_line": '"console=ttyS0"', "dtb": '"x.dtb"', "features": '["acpi", "apic"]',
    "kvm_hidden": "true", "clock_offset": '"utc"', "clock_absolute": "1700000000", "clock_adjustment": "10",
    "clock_basis": '"utc"', "clock_timezone": '"UTC"', "sysinfo": '{"system" => {"serial" => "1"}}',
    "disk_bus": '"virtio"', "disk_device": '"vda"', "disk_address_type": '"pci"', "disk_controller_model": '"virtio-scsi"',
    "volume_cache": '"none"', "graphics_type": '"vnc"', "graphics_autoport": "true", "graphics_port": "5901",
    "graphics_websocket": "5701", "graphics_ip": '"127.0.0.1"', "graphics_passwd": '"pw"', "graphics_gl": "false",
    "video_type": '"qxl"', "video_vram": "16384", "video_accel3d": "false", "keymap": '"en-us"', "sound_type": '"ich6"',
    "tpm_model": '"tpm-crb"', "tpm_type": '"emulator"', "tpm_path": '"/dev/tpm0"', "tpm_version": '"2.0"',
    "qemu_use_agent": "true", "channel": '"x"', "boot_order": '["hd"]', "cpu_features": '[{name: "vmx", policy: "require"}]',
    "cpu_topology": "{sockets: 1, cores: 2, threads: 1}", "cpu_affinity": '{0 => "0"}',
    "memory_backing": "[:hugepages]", "memtunes": '{type: "soft_limit", value: 1}',
    "features_hyperv": '[{name: "relaxed", state: "on"}]', "clock_timers": '[{name: "rtc"}]',
    "launchsecurity_data": '{type: "sev"}', "disk_driver_opts": '{cache: "none"}', "disks": '[{size: "1G"}]',
    "cdroms": "[{}]", "floppies": "[{}]", "inputs": '[{type: "tablet", bus: "usb"}]',
    "channels": '[{type: "unix", target_name: "org.qemu.guest_agent.0"}]',
    "pcis": '[{bus: "0x06", slot: "0x12", function: "0x5"}]', "rng": '{model: "random"}',
    "watchdog_dev": '{model: "i6300esb"}', "usbctl_dev": '{model: "qemu-xhci"}', "usbs": '[{vendor: "0x1234"}]',
    "redirdevs": '[{type: "spicevmc"}]', "redirfilters": "[{allow: true}]", "smartcard_dev": '{mode: "passthrough"}',
    "qemu_args": '[{value: "-no-hpet"}]', "qemu_env": '{QEMU_AUDIO_DRV: "none"}', "serials": '[{type: "pty"}]',
}
# A call of each method.
CALLS = {
    "storage": ':file, size: "1G"', "cputopology": "sockets: 1, cores: 2, threads: 1", "cpuaffinitiy": '0 => "0-1"',
    "cpu_feature": 'name: "vmx", policy: "optional"', "memorybacking": ":hugepages",
    "memtune": 'type: "hard_limit", value: 2097152', "input": 'type: "tablet", bus: "usb"',
    "channel": 'type: "unix", target_name: "org.qemu.guest_agent.0", target_type: "virtio"',
    "pci": 'bus: "0x06", slot: "0x12", function: "0x5"', "usb": 'vendor: "0x1234", product: "0xabcd"',
    "usb_controller": 'model: "qemu-xhci", ports: 8', "redirdev": 'type: "spicevmc"',
    "redirfilter": 'class: "0x08", allow: true', "serial": 'type: "file", source: {path: "/tmp/x.log"}',
    "random": 'model: "random"', "watchdog": 'model: "i6300esb", action: "reset"', "smartcard": 'mode: "passthrough"',
    "qemuargs": 'value: "-no-hpet"', "qemuenv": 'QEMU_AUDIO_DRV: "none"', "boot": '"hd"',
    "hyperv_feature": 'name: "spinlocks", state: "on", retries: 4096', "clock_timer": 'name: "rtc", tickpolicy: "catchup"',
    "launchsecurity": 'type: "sev"', "disk_driver": 'cache: "none", io: "threads"',
}


def test_the_names_are_vagrant_libvirts() -> None:
    assert set(SAMPLES) == set(ATTRIBUTES)
    assert set(CALLS) == set(METHODS)


@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_every_attribute_of_vagrant_libvirt_is_accepted(tmp_path: Path, name: str) -> None:
    needs = {"cpu_features": 'libvirt.cpu_mode = "custom"', "nvram": 'libvirt.loader = "/usr/share/OVMF/OVMF_CODE_4M.fd"'}
    m = one(tmp_path, f"{needs.get(name, '')}\nlibvirt.{name} = {SAMPLES[name]}")
    assert m.libvirt is not None


@pytest.mark.parametrize("name", sorted(CALLS))
def test_every_method_of_vagrant_libvirt_is_accepted(tmp_path: Path, name: str) -> None:
    extra = 'libvirt.cpu_mode = "custom"' if name == "cpu_feature" else ""
    m = one(tmp_path, f"{extra}\nlibvirt.{name} {CALLS[name]}")
    assert m.libvirt is not None


@pytest.mark.parametrize("name", [
    "cputopology sockets: 1, cores: 1, threads: 1", 'cpuaffinitiy 0 => "0"', "memballoon_enabled = true",
    'memballoon_model = "virtio"', 'memballoon_pci_bus = "0x00"', 'memballoon_pci_slot = "0x0f"',
    "management_network_driver_iommu = false", 'management_network_model_type = "e1000"',
    'clock_timezone = "Europe/Paris"', 'uuid = "12345678-1234-5678-1234-567812345678"', "port = 22",
    'host_device_exclude_prefixes = ["docker"]',
])
def test_names_vmctl_used_to_refuse_are_accepted(tmp_path: Path, name: str) -> None:
    one(tmp_path, f"libvirt.{name}")


@pytest.mark.parametrize(("fake", "guess"), [
    ("hugepages", "memorybacking"), ("disk_cache", "disk_driver"), ("tpm", "tpm_model"), ("floppy", "storage"),
    ("initrd_path", "initrd"), ("cpu_topology_sockets", "cputopology"), ("machine_virtual_size_gb", "machine_virtual_size"),
    ("memory_hotplug_enabled", None), ("spice_channel", "channel"), ("qemu_commandline", "qemuargs"),
    ("disk_device_bus", "disk_bus"), ("cpu_affinity_map", "cpu_affinity"), ("memorybacking_hugepages", "memorybacking"),
    ("grafics_type", "graphics_type"), ("tpm_modle", "tpm_model"),
])
def test_names_vagrant_libvirt_lacks_are_errors_with_a_real_suggestion(tmp_path: Path, fake: str, guess: str | None) -> None:
    error = failure(tmp_path, f"libvirt.{fake} = 1")
    assert error.message == f"unknown setting `libvirt.{fake}`" and error.line == 4
    real = re.findall(r"`libvirt\.([a-z_]+)", error.hint or "")
    assert all(name in ATTRIBUTES or name in METHODS for name in real), error.hint
    if guess is None:
        assert real == [] and "no memory hotplug" in (error.hint or "")
    else:
        assert real[0] == guess


def test_a_method_written_as_an_attribute_suggests_the_method(tmp_path: Path) -> None:
    error = failure(tmp_path, 'libvirt.cputopolgy sockets: 1, cores: 1, threads: 1')
    assert error.hint == "did you mean `libvirt.cputopology`?"


# -- values checked where they are set -----------------------------------------------------------

@pytest.mark.parametrize(("provider", "words"), [
    ('libvirt.cpu_mode = "hostpassthrough"', "libvirt.cpu_mode must be one of host-model, host-passthrough"),
    ("libvirt.memory = -1", "positive"),
    ('libvirt.memory = "lots"', "must be an integer"),
    ('libvirt.storage :file, size: "big"', "is not a size"),
    ('libvirt.storage :file, size: "1G", cach: "none"', "has no option cach:"),
    ('libvirt.storage :file, bus: "floppy"', "libvirt.storage bus: must be one of"),
    ('libvirt.storage :file, size: "1G", path: "/var/lib/x.qcow2"', "absolute volume paths"),
    ('libvirt.storage :file, size: "1G", path: "../x.qcow2"', "a file name"),
    ("libvirt.cputopology sockets: 1, cores: 2", "needs threads:"),
    ('libvirt.cpu_feature name: "vmx", policy: "sometimes"', "policy: must be one of"),
    ('libvirt.cpu_feature name: "vmx", policy: "require"', "cannot set cpu_features with cpu_model unset"),
    ('libvirt.memorybacking :access', "needs mode:"),
    ('libvirt.memtune type: "max", value: 1', "memtune type: must be one of"),
    ('libvirt.launchsecurity type: "tdx"', "only supports SEV"),
    ('libvirt.input type: "tablet"', "needs bus:"),
    ('libvirt.channel type: "unix", target_type: "guestfwd"', "guestfwd requires"),
    ('libvirt.random model: "egd"', "only supported rng backend"),
    ('libvirt.pci bus: "0x06"', "Bus AND slot AND function"),
    ("libvirt.usb startupPolicy: 'optional'", "Bus and device and/or vendor"),
    ('libvirt.usb_controller ports: 4', "needs model:"),
    ('libvirt.redirfilter class: "0x08"', "needs allow:"),
    ('libvirt.smartcard mode: "host"', "only passthrough"),
    ('libvirt.smartcard mode: "passthrough", type: "tcp"', 'If using type "tcp"'),
    ("libvirt.serial source: {append: true}", "requires :path"),
    ('libvirt.watchdog action: "reset"', "needs model:"),
    ('libvirt.hyperv_feature name: "spinlocks", state: "on"', "requires retries"),
    ('libvirt.clock_timer name: "rtc", catchup: true', "has no option catchup:"),
    ('libvirt.boot "floppydrive"', "is not a boot device"),
    ('libvirt.sysinfo = {"systm" => {"serial" => "1"}}', "invalid sysinfo element 'systm'"),
    ('libvirt.sysinfo = {"system" => {"serail" => "1"}}', "does not support entry name 'serail'"),
    ('libvirt.sysinfo = {"fw_cfg" => {"etc/x" => "1"}}', "is not a fw_cfg name"),
    ('libvirt.numa_nodes = [{cpus: "0,1", memory: 512}]', "integer-integer"),
    ("libvirt.numa_nodes = [{cpus: '0-3', memory: 512}]", "must equal config.cpus"),
    ('libvirt.nvram = "/usr/share/OVMF/OVMF_VARS_4M.fd"', "requires a 'loader'"),
    ("libvirt.clock_timezone = 'UTC'\nlibvirt.clock_adjustment = 5", "only one of [clock_absolute"),
    ('libvirt.uuid = "not-a-uuid"', "is not a UUID"),
    ('libvirt.management_network_mac = "52:54:00:11:22"', "is not in 'xx:xx:xx:xx:xx:xx'"),
    ('libvirt.nic_model_type = "virtio-net-pci,x=1"', "is not a NIC model"),
    ('libvirt.graphics_ip = "everywhere"', "is not an IP address"),
    ('libvirt.graphics_passwd = "longer-than-8"', "at most 8 characters"),
    ('libvirt.features = ["acpi", "<evil/>"]', "is not a feature libvirt knows"),
    ('libvirt.tpm_path = "/etc/passwd"', "is not a host TPM device"),
    ('libvirt.emulator_path = "/tmp/qemu"', "QEMU system emulator in a system folder"),
    ('libvirt.qemuargs value: "-chardev"', "the QEMU option -chardev is not allowed"),
    ('libvirt.qemuargs value: "-netdev"\nlibvirt.qemuargs value: "user,id=x,guestfwd=tcp:1.2.3.4:1-cmd:sh"',
     "the QEMU option -netdev is not allowed"),
    ('libvirt.qemuargs value: "-object"\nlibvirt.qemuargs value: "memory-backend-file,id=m,mem-path=/tmp/x"',
     "memory-backend-file is not allowed"),
    ('libvirt.qemuenv LD_PRELOAD: "/tmp/x.so"', "not a variable vmctl passes"),
    ('libvirt.qemuenv QEMU_WAV_PATH: "/tmp/x"', "names a file or folder"),
    ('libvirt.qemuargs value: "-audiodev"\nlibvirt.qemuargs value: "pa,id=snd0"', "microphone"),
    ('libvirt.qemuargs value: "-machine"\nlibvirt.qemuargs value: "dumpdtb=/tmp/x.dtb"', "dumpdtb"),
    ('libvirt.qemuargs value: "-semihosting-config"', "-semihosting-config is not allowed"),
    ('libvirt.uri = "qemu:///session"\nlibvirt.qemu_use_session = false', "conflict"),
    ('libvirt.cputopology sockets: 1, cores: 1, threads: 1\nlibvirt.cpus = 2', "fewer than libvirt.cpus"),
])
def test_values_are_checked_where_they_are_set(tmp_path: Path, provider: str, words: str) -> None:
    error = failure(tmp_path, provider)
    assert words in error.message, error.message
    assert error.file == "Vagrantfile" and error.line is not None and error.line >= 4


def test_the_line_of_the_bad_qemu_argument_is_named(tmp_path: Path) -> None:
    error = failure(tmp_path, 'libvirt.qemuargs value: "-fw_cfg"\nlibvirt.qemuargs value: "name=opt/x,string=1"\n'
                              'libvirt.qemuargs value: "-pidfile"')
    assert error.line == 6


def test_sizes() -> None:
    assert parse_size("10G") == parse_size("10GB") == parse_size("10GiB") == 10 * 1024**3
    assert parse_size("512M") == 512 * 1024**2 and parse_size(20) == 20 * 1024**3 and parse_size("1.5G") == 1610612736
    assert parse_size("big") is None and parse_size("0") is None and parse_size("10 X") is None


def test_what_the_settings_mean(tmp_path: Path) -> None:
    (tmp_path / "p").mkdir()
    (tmp_path / "p" / "test.iso").write_text("iso")
    m = one(tmp_path / "p", """
        libvirt.storage :file, size: "20G", bus: "scsi", device: "sdb", serial: "S1"
        libvirt.storage :file, device: :cdrom, path: "test.iso"
        libvirt.memtune type: "hard_limit", value: 2097152
        libvirt.memtune type: "hard_limit", value: 1048576
        libvirt.qemuenv QEMU_AUDIO_DRV: "none"
        libvirt.qemuenv SPICE_DEBUG: "1"
        libvirt.management_network_mac = "525400AABBCC"
        libvirt.serial type: "file", source: {path: "/var/log/vm.log", append: true}
    """)
    lv = m.libvirt
    assert (lv.disks[0].size, lv.disks[0].bus, lv.disks[0].device, lv.disks[0].serial) == (20 * 1024**3, "scsi", "sdb", "S1")
    assert lv.cdroms[0].path == str(tmp_path / "p" / "test.iso")
    assert [(t.type, t.value) for t in lv.memtunes] == [("hard_limit", 1048576)]  # by type, the last wins
    assert lv.qemu_env == {"QEMU_AUDIO_DRV": "none", "SPICE_DEBUG": "1"}
    assert lv.management_network_mac == "52:54:00:aa:bb:cc"
    assert (lv.serials[0].source_path, lv.serials[0].source_append) == ("vm.log", True)


def test_a_cdrom_image_must_exist(tmp_path: Path) -> None:
    assert "does not exist" in failure(tmp_path, 'libvirt.storage :file, device: :cdrom, path: "missing.iso"').message


def test_secrets_are_masked_in_validate_json(tmp_path: Path) -> None:
    from vmctl.vagrantfile.model import libvirt_json

    m = one(tmp_path, 'libvirt.graphics_passwd = "s3cret"\nlibvirt.password = "pw"')
    shown = libvirt_json(m.libvirt)
    assert shown["graphics_passwd"] == "(set)" and shown["password"] == "(set)"


# -- several provider blocks merge as vagrant-libvirt merges them ---------------------------------

def test_provider_blocks_merge_as_vagrant_libvirt_does(tmp_path: Path) -> None:
    (tmp_path / "Vagrantfile").write_text(textwrap.dedent("""
        Vagrant.configure("2") do |config|
          config.vm.box = "b"
          config.vm.provider :libvirt do |lv|
            lv.storage :file, size: "1G"
            lv.qemuenv QEMU_A: "1"
            lv.boot "hd"
            lv.channel type: "unix", target_name: "a.0"
            lv.clock_timer name: "rtc"
            lv.sysinfo = {"system" => {"serial" => "1"}, "oem strings" => ["a"]}
            lv.memory = 512
          end
          config.vm.define "m" do |m|
            m.vm.provider :libvirt do |lv|
              lv.storage :file, size: "2G"
              lv.qemuenv QEMU_B: "2"
              lv.channel type: "unix", target_name: "b.0"
              lv.clock_timer name: "hpet"
              lv.sysinfo = {"system" => {"product" => "p"}, "oem strings" => ["b"]}
              lv.memory = 1024
            end
          end
        end
    """))
    lv = evaluate_project(tmp_path / "Vagrantfile", env={}).machines[0].libvirt
    assert [d.size for d in lv.disks] == [1024**3, 2 * 1024**3]  # disks add up
    assert lv.qemu_env == {"QEMU_A": "1", "QEMU_B": "2"}  # merged by key
    assert [b.device for b in lv.boot_order] == ["hd"]  # the later block set none: the earlier stays
    assert [c.target_name for c in lv.channels or ()] == ["b.0"]  # replaced wholesale
    assert [t.name for t in lv.clock_timers] == ["rtc", "hpet"]
    assert lv.sysinfo == {"system": {"serial": "1", "product": "p"}, "oem strings": ["a", "b"]}
    assert lv.memory == 1024


# -- a box's own Vagrantfile -----------------------------------------------------------------------

EVIL_BOX = """
    Vagrant.configure("2") do |config|
      config.ssh.extra_args = ["-A"]
      config.ssh.forward_agent = true
      config.vm.provider :libvirt do |lv|
        lv.memory = 768
        lv.loader = "/usr/share/OVMF/OVMF_CODE_4M.fd"
        lv.nvram = File.join(File.dirname(__FILE__), "vars.fd")
        lv.kernel = "/home/tester/.ssh/id_ed25519"
        lv.storage :file, device: :cdrom, path: "/etc/shadow"
        lv.storage :file, size: "1G", path: "someone-elses.qcow2", allow_existing: true
        lv.qemuargs value: "-no-hpet"
        lv.qemuenv QEMU_AUDIO_DRV: "none"
        lv.emulator_path = "/usr/bin/qemu-system-x86_64"
        lv.pci bus: "0x06", slot: "0x12", function: "0x5"
        lv.tpm_path = "/dev/tpm0"
        lv.graphics_ip = "0.0.0.0"
        lv.host = "example.com"
      end
    end
"""


def test_a_box_gets_only_what_a_box_may_set(tmp_path: Path) -> None:
    (tmp_path / "box").mkdir()
    (tmp_path / "box" / "vars.fd").write_text("v")
    project = load(tmp_path / "p", "libvirt.cpus = 1", box=EVIL_BOX)
    m = project.machines[0]
    lv = m.libvirt
    # hardware, firmware from the system's folders and files in its own folder: yes
    assert lv.memory == 768 and lv.loader == "/usr/share/OVMF/OVMF_CODE_4M.fd"
    assert lv.nvram == str(tmp_path / "box" / "vars.fd")
    # host files elsewhere, host-side arguments, host devices, a volume by name, a display
    # off loopback, another libvirt host: no
    assert lv.kernel is None and lv.cdroms == () and lv.disks[0].path is None and not lv.disks[0].allow_existing
    assert lv.qemu_args == () and lv.qemu_env == {} and lv.emulator_path is None and lv.pcis == ()
    assert lv.tpm_path is None and lv.graphics_ip is None and lv.host is None
    assert m.ssh.extra_args == () and m.ssh.forward_agent is False
    warnings = [w for w in project.warnings if "the Vagrantfile of box test/box" in w]
    assert len(warnings) == 12, warnings


def test_the_project_may_ask_for_what_a_box_may_not(tmp_path: Path) -> None:
    m = one(tmp_path, """
        libvirt.qemuargs value: "-no-hpet"
        libvirt.emulator_path = "/usr/bin/qemu-system-x86_64"
        libvirt.graphics_ip = "0.0.0.0"
    """, extra="config.ssh.extra_args = ['-A']", box=EVIL_BOX)
    assert m.libvirt.qemu_args == ("-no-hpet",) and m.libvirt.emulator_path and m.libvirt.graphics_ip == "0.0.0.0"
    assert m.ssh.extra_args == ("-A",)


# -- Vagrant core: config.vm.disk, graceful_halt_timeout, config.ssh -------------------------------

def test_vagrant_core_disks(tmp_path: Path) -> None:
    (tmp_path / "installer.iso").write_text("iso")
    m = one(tmp_path, "libvirt.memory = 512", extra="""
        config.vm.disk :disk, size: "40GB", primary: true
        config.vm.disk :disk, name: "data", size: 1048576
        config.vm.disk :dvd, name: "installer", file: "installer.iso"
        config.vm.graceful_halt_timeout = 5
    """)
    assert [(d.type, d.name, d.size, d.primary) for d in m.disks] == [
        ("disk", "vagrant_primary", 40 * 1024**3, True), ("disk", "data", 1048576, False), ("dvd", "installer", None, False)]
    assert m.disks[2].file == str(tmp_path / "installer.iso")
    assert m.graceful_halt_timeout == 5


@pytest.mark.parametrize(("extra", "words"), [
    ('config.vm.disk :tape, name: "x"', "is not one of :disk, :dvd, :floppy"),
    ('config.vm.disk :disk, size: "1GB"', "needs name:"),
    ('config.vm.disk :disk, name: "x"', "needs size:"),
    ('config.vm.disk :dvd, name: "x"', "needs file:"),
    ('config.vm.disk :dvd, name: "x", file: "missing.iso"', "does not exist"),
    ('config.vm.disk :disk, name: "x", size: "1GB", prmary: true', "has no option prmary:"),
    ('config.vm.disk :disk, name: "x", file: "data.img"', "file: is not supported"),
    ('config.vm.disk :disk, name: "a", size: "1GB", primary: true\nconfig.vm.disk :disk, name: "b", size: "1GB", primary: true',
     "only one disk may be primary"),
    ('config.vm.disk :disk, name: "a", size: "1GB"\nconfig.vm.disk :disk, name: "a", size: "2GB"', None),
])
def test_vagrant_core_disks_are_checked(tmp_path: Path, extra: str, words: str | None) -> None:
    if words is None:  # the same name again replaces the earlier disk, as Vagrant merges them
        assert [d.size for d in one(tmp_path, "libvirt.memory = 512", extra=extra).disks] == [2 * 1024**3]
        return
    assert words in failure(tmp_path, "libvirt.memory = 512", extra=extra).message


def test_ssh_settings_take_effect(tmp_path: Path) -> None:
    m = one(tmp_path, "libvirt.memory = 512", extra="""
        config.ssh.port = 2222
        config.ssh.shell = "/bin/sh"
        config.ssh.sudo_command = "sudo -E -H %c"
        config.ssh.pty = true
        config.ssh.keep_alive = false
        config.ssh.connect_timeout = 30
        config.ssh.forward_x11 = true
        config.ssh.forward_env = ["LANG", "LC_*"]
        config.ssh.keys_only = false
        config.ssh.extra_args = "-C -o ServerAliveInterval=5"
        config.ssh.config = "ssh_config"
        config.ssh.remote_user = "vagrant"
    """)
    s = m.ssh
    assert (s.port, s.shell, s.sudo_command, s.pty, s.keep_alive, s.connect_timeout) == (
        2222, "/bin/sh", "sudo -E -H %c", True, False, 30)
    assert (s.forward_x11, s.forward_env, s.keys_only, s.remote_user) == (True, ("LANG", "LC_*"), False, "vagrant")
    assert s.extra_args == ("-C", "-o", "ServerAliveInterval=5")
    assert s.config == str(tmp_path / "ssh_config")


@pytest.mark.parametrize(("extra", "words"), [
    ('config.ssh.extra_args = ["-o", "ProxyCommand=touch /tmp/x"]', "ProxyCommand is not allowed"),
    ('config.ssh.extra_args = "-E /tmp/log"', "-E is not allowed"),
    ('config.ssh.sudo_command = "sudo"', "must hold %c"),
    ('config.ssh.port = 70000', "out of range"),
    ('config.ssh.forward_env = ["A B"]', "is not a variable name"),
])
def test_ssh_settings_are_checked(tmp_path: Path, extra: str, words: str) -> None:
    assert words in failure(tmp_path, "libvirt.memory = 512", extra=extra).message
