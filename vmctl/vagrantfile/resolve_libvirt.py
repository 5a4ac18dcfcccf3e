"""The libvirt provider's merged settings as model values (LibvirtSettings): host paths
resolved, held to the rules for boxes, and checked as vagrant-libvirt's `validate` checks
them, each error at the line that made the setting.

Host paths: `kernel`, `initrd`, `dtb`, `loader`, `nvram`, CD-ROM and floppy images and fw_cfg
files are read by QEMU (as a synced folder's files are read): relative paths resolve against
the folder of the Vagrantfile that set them. A box's own Vagrantfile may name files in its
own folder only (and, for `loader` and `nvram`, the system's firmware folders). What QEMU
would write (extra disks, serial logs, channel sockets) lives in vmctl's own folders: a
Vagrantfile names a file there, not a path. What acts on the host itself (`emulator_path`,
`qemuargs`, `qemuenv`, `tpm_path`, `pci`, `usb`) is held to the rules in vmctl/untrusted.py
and may not come from a box at all.
"""

from __future__ import annotations

import posixpath
import re
import uuid as uuidlib
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vmctl import remote, untrusted
from vmctl.vagrantfile.inputs import file_test
from vmctl.vagrantfile.libvirt import Entry
from vmctl.vagrantfile.model import (
    BootEntry,
    Cdrom,
    ChannelEntry,
    ClockTimerEntry,
    CpuFeature,
    CpuTopology,
    Floppy,
    FwCfgEntry,
    HypervFeatureEntry,
    InputEntry,
    LaunchSecurityData,
    LibvirtSettings,
    MemoryBackingEntry,
    MemtuneEntry,
    NumaNode,
    PciEntry,
    RedirdevEntry,
    RedirfilterEntry,
    RngEntry,
    SerialEntry,
    SmartcardEntry,
    StorageDisk,
    UsbControllerEntry,
    UsbEntry,
    WatchdogEntry,
)

if TYPE_CHECKING:
    from vmctl.vagrantfile.resolve import Resolver
    from vmctl.vagrantfile.syntax import Node

# Where a box's Vagrantfile may also find firmware (loader, nvram).
FIRMWARE_FOLDERS = ("/usr/share/OVMF", "/usr/share/ovmf", "/usr/share/qemu", "/usr/share/edk2",
                    "/usr/share/seabios", "/usr/lib/ipxe", "/usr/share/AAVMF")
# Architectures whose domains have a <cpu> element (vagrant-libvirt's ARCH_SUPPORT_CPU).
ARCH_SUPPORT_CPU = ("aarch64", "armv6l", "armv7b", "armv7l", "i686", "x86_64", "ppc64", "ppc64le", "s390", "s390x")
FEATURES = ("acpi", "apic", "pae", "hap", "viridian", "privnet", "pvspinlock", "pmu", "vmport", "vmcoreinfo",
            "smm", "ioapic", "gic", "htm", "nested-hv", "ccf-assist", "ras", "ps2", "msrs", "async-teardown")
NIC_MODELS = ("virtio", "e1000", "e1000e", "rtl8139", "ne2k_pci", "pcnet", "vmxnet3", "i82559er")
# Settings of the connection to libvirt: checked, then composed into the URI as vagrant-libvirt
# does (vmctl/remote.py); the pool settings are used with daemon URIs (vmctl/storage.py).
CONNECTION = ("host", "port", "connect_via_ssh", "socket", "username", "password", "id_ssh_key_file",
              "proxy_command", "system_uri", "qemu_use_session", "storage_pool_name", "storage_pool_path",
              "snapshot_pool_name", "forward_ssh_port")
# Settings of vagrant-libvirt's own libvirt network for the management NIC, which vmctl does
# not make (its management NIC is QEMU user networking): nothing to apply them to.
MANAGEMENT_NETWORK = ("management_network_device", "management_network_name", "management_network_address",
                      "management_network_mode", "management_network_guest_ipv6", "management_network_autostart",
                      "management_network_domain", "management_network_mtu", "management_network_keep",
                      "management_network_iface_name", "management_network_driver_iommu",
                      "management_network_pci_bus", "management_network_pci_slot", "host_device_exclude_prefixes")


def resolve_libvirt(r: Resolver) -> LibvirtSettings:
    return _LibvirtResolver(r).settings()


class _LibvirtResolver:
    def __init__(self, r: Resolver) -> None:
        self.r = r
        self.merged = r.merged.libvirt

    def value(self, key: str) -> Any:
        entry = self.merged.get(key)
        return entry[0] if entry is not None else None

    def node(self, key: str) -> Node | None:
        entry = self.merged.get(key)
        return entry[1] if entry is not None else None

    def entries(self, key: str) -> list[Entry]:
        value = self.value(key)
        return list(value) if isinstance(value, list) else []

    def from_box(self, key: str) -> str | None:
        return self.r.box_of(self.node(key))

    # -- paths ---------------------------------------------------------------------------------
    def read_path(self, key: str, text: str | None, node: Node | None, *, what: str,
                  firmware: bool = False, must_exist: bool = False) -> str | None:
        """TEXT (a host file QEMU reads) as an absolute path, or None when a box's Vagrantfile
        names a file outside its folder (ignored, with a warning)."""
        if text is None or text == "":
            return None
        base = node.source.path.parent if node is not None else self.r.ip.project_dir
        path = self.r.host_path(text, base)
        box = self.r.from_box_outside(node, path)
        if box is not None and not (firmware and any(
                Path(path).resolve().is_relative_to(f) for f in FIRMWARE_FOLDERS)):
            self.r.ignore_from_box(node, box, f"names the host file {path} as libvirt.{key}")
            return None
        if must_exist and not file_test(self.r.ip, "file?", Path(path)):
            raise self.r.error(node, f"{what} {path} does not exist (or is not a file)")
        return path

    def file_name(self, key: str, text: str | None, node: Node | None, *, folder: str, prefix: str) -> str | None:
        """The file name vmctl keeps a file QEMU writes under (in FOLDER), from TEXT, which
        may be a path: vmctl does not let a Vagrantfile make it write files elsewhere."""
        if text is None:
            return None
        name = posixpath.basename(text.rstrip("/"))
        problem = untrusted.file_name_problem(name)
        if problem is not None:
            raise self.r.error(node, f"libvirt.{key} {untrusted.visible(text)[:80]!r}: {problem}")
        if name != text:
            self.r.warn(node, f"libvirt.{key} {text}: vmctl keeps this file as {folder}/{prefix}{name} "
                        "(a Vagrantfile does not make vmctl write files outside its own folders)")
        return name

    def address(self, key: str, text: str, node: Node | None) -> str | None:
        address = untrusted.parse_address(text)
        if address is None:
            raise self.r.error(node, f"libvirt.{key} {untrusted.visible(text)[:60]!r} is not an IP address")
        if not untrusted.is_loopback(address):
            box = self.r.box_of(node)
            if box is not None:
                self.r.ignore_from_box(node, box, f"listens on {address} (libvirt.{key})")
                return None
            self.r.warn(node, f"libvirt.{key} {address}: other computers can reach it, not only this one")
        return address

    # -- the whole -------------------------------------------------------------------------------
    def settings(self) -> LibvirtSettings:
        values: dict[str, Any] = {}
        simple = set(LibvirtSettings.__dataclass_fields__) - set(_BUILT)
        for key in simple:
            value = self.value(key)
            if value is not None:
                values[key] = value
        if values.get("host_device_exclude_prefixes") is not None:
            values["host_device_exclude_prefixes"] = tuple(values["host_device_exclude_prefixes"])
        self.connection(values)
        self.naming(values)
        self.cpu(values)
        self.firmware(values)
        self.storage(values)
        self.devices(values)
        self.host_side(values)
        self.networks(values)
        return LibvirtSettings(**values)

    def connection(self, values: dict[str, Any]) -> None:
        uri = self.merged.get("uri")
        if uri is not None and (box := self.r.box_of(uri[1])) is not None:
            self.r.ignore_from_box(uri[1], box, f"connects to libvirt at {uri[0]}")
            values.pop("uri", None)
        driver = self.merged.get("driver")
        if driver is not None and driver[0] == "kvm" and self.r.box_of(driver[1]) is not None:
            # Many published boxes say kvm; on a host where KVM does not work the box must
            # still boot: vmctl's own choice (KVM where it works, else TCG) serves both.
            values.pop("driver", None)
        for key in CONNECTION:
            if key not in values:
                continue
            node = self.node(key)
            box = self.r.box_of(node)
            if box is not None:
                self.r.ignore_from_box(node, box, f"sets libvirt.{key}, a setting of the connection to libvirt")
                values.pop(key)
                continue
            self.check_connection(key, values[key], node)
        if "uri" in values and not re.fullmatch(r"[a-z0-9+]+:///?[^\s]*", values["uri"]):
            raise self.r.error(self.node("uri"), f"@uri set to invalid uri '{values['uri'][:80]}'")
        if "uri" in values:
            problem = remote.uri_problem(values["uri"])
            if problem is not None:
                raise self.r.error(self.node("uri"), f"libvirt.uri {untrusted.visible(values['uri'])[:80]!r}: {problem}")
        else:
            composed = remote.compose_uri(values)
            if composed is not None:  # as vagrant-libvirt builds it (docs/remote.md)
                values["uri"] = composed
        session = values.get("qemu_use_session")
        if "uri" in values and values["uri"].startswith("qemu") and "session" in values["uri"] and session is False:
            raise self.r.error(self.node("uri"), "the URI and qemu_use_session configuration conflict: "
                               f"uri:'{values['uri']}' qemu_use_session:'false'")

    def check_connection(self, key: str, value: Any, node: Node | None) -> None:
        """One connection setting from the Vagrantfile: refused when it could pass for an
        option of ssh or run a command; a warning when it is checked but has no effect."""
        if key == "host" and not remote.HOST_RE.fullmatch(value):
            raise self.r.error(node, f"libvirt.host {untrusted.visible(value)[:60]!r} is not a host name")
        if key == "username" and untrusted.user_name_problem(value):
            raise self.r.error(node, f"libvirt.username {untrusted.visible(value)[:40]!r} is not a user name")
        if key == "id_ssh_key_file" and not (re.fullmatch(r"/[^\x00-\x1f\x7f]{0,4095}", value)
                                             or untrusted.file_name_problem(value) is None):
            raise self.r.error(node, f"libvirt.id_ssh_key_file {untrusted.visible(value)[:60]!r} is neither an "
                               "absolute path nor a file name in ~/.ssh")
        if key == "socket" and not re.fullmatch(r"/[A-Za-z0-9_.+/@-]{0,4095}", value):
            raise self.r.error(node, f"libvirt.socket {untrusted.visible(value)[:60]!r} is not an absolute path")
        if key == "proxy_command":  # docs/reliability.md, threat model
            self.r.warn(node, "libvirt.proxy_command is ignored: it runs a command on this computer, which vmctl "
                        "does not let a Vagrantfile do; vmctl reaches the libvirt host with your own ssh, so put a "
                        "ProxyJump or ProxyCommand for the host in ~/.ssh/config (docs/remote.md)")
        if key in ("storage_pool_name", "snapshot_pool_name") and not re.fullmatch(r"[A-Za-z0-9_.+-]{1,100}", value):
            raise self.r.error(node, f"libvirt.{key} {value[:60]!r} is not a libvirt pool name")
        if key == "system_uri" and not re.fullmatch(r"[a-z0-9+]+://[^\s]*", value):
            raise self.r.error(node, f"libvirt.{key} {value[:60]!r} is not a libvirt URI")
        if key == "storage_pool_path" and not re.fullmatch(r"/[A-Za-z0-9_.+/@-]{0,4095}", value):
            raise self.r.error(node, f"libvirt.storage_pool_path {value[:60]!r} is not an absolute path",
                               hint="a folder on the libvirt host, e.g. /var/lib/libvirt/images")
        unused = {
            "password": "vmctl reaches a remote host with ssh keys or the agent (OpenSSH's own authentication)",
            "system_uri": "vmctl lists no networks or DHCP leases through libvirt",
            "snapshot_pool_name": "overlays go into libvirt.storage_pool_name's pool",
            "forward_ssh_port": "vmctl always forwards the guest's SSH port on the libvirt host's 127.0.0.1",
        }
        if key in unused:
            self.r.warn(node, f"libvirt.{key} is checked but not used: {unused[key]}")

    def naming(self, values: dict[str, Any]) -> None:
        if "uuid" in values and values["uuid"] != "":
            try:
                values["uuid"] = str(uuidlib.UUID(values["uuid"]))
            except ValueError:
                raise self.r.error(self.node("uuid"), f"libvirt.uuid {values['uuid'][:60]!r} is not a UUID") from None
        elif "uuid" in values:
            values["uuid"] = None  # vagrant-libvirt's default: libvirt chooses
        for key in ("title", "description"):
            if values.get(key) == "":
                values[key] = None
        if values.get("random_hostname"):
            self.r.warn(self.node("random_hostname"), "libvirt.random_hostname: vmctl's domain names are unique "
                        "already (they end in the machine's id) unless default_prefix is set; with it, vmctl "
                        "adds the id as random_hostname adds a random suffix")

    def cpu(self, values: dict[str, Any]) -> None:
        mode = values.get("cpu_mode")
        if "cpu_model" in values and mode != "custom":
            self.r.warn(self.node("cpu_model"), "libvirt.cpu_model applies with cpu_mode = 'custom' only "
                        "(vagrant-libvirt ignores it otherwise; so does vmctl)")
            values.pop("cpu_model")
        features = [CpuFeature(**e.options) for e in self.entries("cpu_features")]
        if features and mode != "custom":
            raise self.r.error(self.entries("cpu_features")[0].node,
                               "cannot set cpu_features with cpu_model unset, please set a model or skip setting features.",
                               hint="vagrant-libvirt applies cpu_feature with cpu_mode = 'custom' (and cpu_model) only")
        values["cpu_features"] = tuple(features)
        topology = self.value("cpu_topology")
        if topology:
            values["cpu_topology"] = CpuTopology(**topology)
            cpus = values.get("cpus") or 1
            t = values["cpu_topology"]
            if t.sockets * t.cores * t.threads < cpus:
                raise self.r.error(self.node("cpu_topology"), f"libvirt.cputopology gives {t.sockets * t.cores * t.threads} "
                                   f"CPUs (sockets x cores x threads), fewer than libvirt.cpus = {cpus}")
        values["cpu_affinity"] = dict(self.value("cpu_affinity") or {})
        numa = self.value("numa_nodes")
        if numa:
            cpus = values.get("cpus") or 1
            last = int(numa[-1]["cpus"].split("-")[1]) + 1
            if last != cpus:
                raise self.r.error(self.node("numa_nodes"), "The total number of numa_nodes[:cpus] must equal config.cpus")
            values["numa_nodes"] = tuple(NumaNode(**n) for n in numa)
        values["memory_backing"] = tuple(MemoryBackingEntry(**e.options) for e in self.entries("memory_backing"))
        values["memtunes"] = tuple(MemtuneEntry(**m) for m in (self.value("memtunes") or {}).values())
        arch = values.get("machine_arch")
        if arch is not None and arch.lower() not in ARCH_SUPPORT_CPU:
            used = [k for k in ("cpu_mode", "cpu_model", "nested", "cpu_features", "cpu_topology", "numa_nodes")
                    if values.get(k)]
            if used:
                raise self.r.error(self.node("machine_arch"), f"Architecture {arch} does not support /domain/cpu XML, "
                                   f"which is required when setting the config options {', '.join(used)}")

    def firmware(self, values: dict[str, Any]) -> None:
        for key in ("kernel", "initrd", "dtb"):
            values[key] = self.read_path(key, values.get(key), self.node(key), what=f"libvirt.{key}")
        for key in ("loader", "nvram"):
            values[key] = self.read_path(key, values.get(key), self.node(key), what=f"libvirt.{key}", firmware=True)
        if values.get("nvram") and not values.get("loader"):
            raise self.r.error(self.node("nvram"), "use of 'nvram' requires a 'loader' to be specified, "
                               "please add one to the configuration",
                               hint='e.g. libvirt.loader = "/usr/share/OVMF/OVMF_CODE_4M.fd"')
        if values.get("machine_type") is not None and not re.fullmatch(r"[a-z0-9._-]{1,64}", values["machine_type"]):
            raise self.r.error(self.node("machine_type"), f"libvirt.machine_type {values['machine_type'][:40]!r} is not "
                               "a machine type such as pc or q35")
        if values.get("machine_arch") is not None and not re.fullmatch(r"[a-z0-9_]{1,20}", values["machine_arch"]):
            raise self.r.error(self.node("machine_arch"), f"libvirt.machine_arch {values['machine_arch'][:40]!r} is not "
                               "an architecture such as x86_64")
        boot = []
        for e in self.entries("boot_order"):
            boot.append(BootEntry(device=e.options["device"], network=e.options.get("network")))
        values["boot_order"] = tuple(boot)
        if values.get("features") is not None:
            values["features"] = tuple(self.feature(f, self.node("features")) for f in values["features"])
        values["features_hyperv"] = tuple(HypervFeatureEntry(**e.options) for e in self.entries("features_hyperv"))
        values["clock_timers"] = tuple(ClockTimerEntry(**e.options) for e in self.entries("clock_timers"))
        if sum(values.get(k) is not None for k in ("clock_absolute", "clock_adjustment", "clock_timezone")) > 1:
            node = self.node("clock_timezone") or self.node("clock_adjustment")
            raise self.r.error(node, "At most, only one of [clock_absolute, clock_adjustment, clock_timezone] may be set.")
        if values.get("clock_timezone") is not None and not re.fullmatch(r"[A-Za-z0-9_+/-]{1,64}", values["clock_timezone"]):
            raise self.r.error(self.node("clock_timezone"), f"libvirt.clock_timezone {values['clock_timezone'][:40]!r} "
                               "is not a time zone such as Europe/Berlin")
        sysinfo = dict(self.value("sysinfo") or {})
        fw_cfg = sysinfo.pop("fw_cfg", {})
        values["sysinfo"] = sysinfo
        entries = []
        for name, spec in fw_cfg.items():
            file = self.read_path("sysinfo", spec.get("file"), self.node("sysinfo"), what=f"the fw_cfg file of {name}",
                                  must_exist=True) if "file" in spec else None
            if "file" in spec and file is None:
                continue
            entries.append(FwCfgEntry(name=name, string=spec.get("string"), file=file))
        values["fw_cfg"] = tuple(entries)
        ls = self.value("launchsecurity_data")
        values["launchsecurity_data"] = LaunchSecurityData(**ls) if ls else None

    def feature(self, text: str, node: Node | None) -> str:
        """A feature as vagrant-libvirt takes it ("acpi", "gic version='2'"): a known element,
        with attributes of a safe shape."""
        m = re.fullmatch(r"\s*([a-z][a-z0-9-]*)((?:\s+[a-z][a-zA-Z0-9_]*\s*=\s*'[A-Za-z0-9_.-]*')*)\s*", text)
        if not m or m.group(1) not in FEATURES:
            raise self.r.error(node, f"libvirt.features: {untrusted.visible(text)[:60]!r} is not a feature libvirt "
                               "knows", hint=f"features: {', '.join(FEATURES)} (with attributes: \"gic version='2'\")")
        return text.strip()

    def storage(self, values: dict[str, Any]) -> None:
        disks = []
        for e in self.entries("disks"):
            o = dict(e.options)
            box = self.r.box_of(e.node)
            if o.get("path") is not None:
                if box is not None:
                    self.r.ignore_from_box(e.node, box, f"names the volume {o['path']} (libvirt.storage path:)")
                    o["path"], o["allow_existing"] = None, False
                elif o["path"].startswith("/"):
                    raise self.r.error(e.node, f"absolute volume paths like '{o['path']}' not yet supported",
                                       hint="name a volume instead (path: \"data.qcow2\"): vmctl keeps volumes in "
                                       "VMCTL_HOME/volumes, as vagrant-libvirt keeps them in its storage pool")
                elif (problem := untrusted.file_name_problem(o["path"])) is not None:
                    raise self.r.error(e.node, f"libvirt.storage path: {untrusted.visible(o['path'])[:60]!r}: {problem}")
            elif o.get("allow_existing"):
                self.r.warn(e.node, "libvirt.storage allow_existing: applies to a disk named with path: (ignored)")
                o["allow_existing"] = False
            disks.append(StorageDisk(**o))
        devices = [d.device for d in disks if d.device]
        for dev in devices:
            if devices.count(dev) > 1:
                raise self.r.error(self.entries("disks")[0].node, f"the disk device {dev} is given twice")
        values["disks"] = tuple(disks)
        cdroms = []
        for e in self.entries("cdroms"):
            path = self.read_path("storage", e.options.get("path"), e.node, what="the CD-ROM image", must_exist=True)
            if e.options.get("path") and path is None:
                continue
            cdroms.append(Cdrom(path=path, dev=e.options.get("dev"), bus=e.options.get("bus"), type=e.options["type"]))
        if len(cdroms) > 4:
            raise self.r.error(self.entries("cdroms")[4].node, "Only four cdroms may be attached at a time")
        values["cdroms"] = tuple(cdroms)
        floppies = []
        for e in self.entries("floppies"):
            path = self.read_path("storage", e.options.get("path"), e.node, what="the floppy image", must_exist=True)
            if e.options.get("path") and path is None:
                continue
            floppies.append(Floppy(path=path, dev=e.options.get("dev"), bus=e.options["bus"]))
        if len(floppies) > 2:
            raise self.r.error(self.entries("floppies")[2].node, "Only two floppies may be attached at a time")
        values["floppies"] = tuple(floppies)
        driver = self.value("disk_driver_opts")
        values["disk_driver_opts"] = {k: v for k, v in (driver or {}).items() if v is not None}
        if values.get("disk_device") is not None and not re.fullmatch(r"(vd|sd|hd|xvd)[a-z]", values["disk_device"]):
            raise self.r.error(self.node("disk_device"), f"libvirt.disk_device {values['disk_device'][:20]!r} is not "
                               "a disk device name such as vda or sda")
        if values.get("disk_controller_model") is not None and values["disk_controller_model"] not in (
                "virtio-scsi", "lsilogic", "lsisas1068", "lsisas1078", "ibmvscsi", "virtio-transitional",
                "virtio-non-transitional", "buslogic", "vmpvscsi", "auto"):
            raise self.r.error(self.node("disk_controller_model"), f"libvirt.disk_controller_model "
                               f"{values['disk_controller_model'][:40]!r} is not a SCSI controller model such as virtio-scsi")
        if values.get("disk_address_type") is not None and values["disk_address_type"] not in (
                "pci", "drive", "ccw", "usb", "virtio-mmio"):
            raise self.r.error(self.node("disk_address_type"), "libvirt.disk_address_type must be one of pci, drive, "
                               "ccw, usb, virtio-mmio")
        if values.get("volume_cache") is not None:
            self.r.warn(self.node("volume_cache"), "Libvirt Provider: volume_cache is deprecated. Use disk_driver "
                        f":cache => '{values['volume_cache']}' instead.")
            if values["disk_driver_opts"]:
                self.r.warn(self.node("volume_cache"), "Libvirt Provider: volume_cache has no effect when disk_driver is defined.")

    def devices(self, values: dict[str, Any]) -> None:
        if values.get("graphics_ip") is not None:
            values["graphics_ip"] = self.address("graphics_ip", values["graphics_ip"], self.node("graphics_ip"))
            if values["graphics_ip"] is None:
                values.pop("graphics_ip")
        passwd = values.get("graphics_passwd")
        if passwd is not None and values.get("graphics_type", "vnc") == "vnc" and len(passwd) > 8:
            raise self.r.error(self.node("graphics_passwd"), "libvirt.graphics_passwd: a VNC password is at most 8 "
                               "characters (the VNC protocol's limit; libvirt refuses longer ones)")
        if values.get("keymap") is not None and not re.fullmatch(r"[a-z]{2}(-[a-z]{2,5})?", values["keymap"]):
            raise self.r.error(self.node("keymap"), f"libvirt.keymap {values['keymap'][:20]!r} is not a keymap such as en-us")
        if self.value("inputs") is not None:
            values["inputs"] = tuple(InputEntry(**e.options) for e in self.entries("inputs"))
        if self.value("channels") is not None:
            channels = []
            for e in self.entries("channels"):
                o = dict(e.options)
                # A disabled channel (vagrant-libvirt) holds back the automatic one of its name.
                o["source_path"] = self.file_name("channel", o["source_path"], e.node, folder="VMCTL_HOME/machines/ID",
                                                  prefix="channel-")
                channels.append(ChannelEntry(**o))
            values["channels"] = tuple(channels)
        if self.value("serials") is not None:
            serials = []
            for e in self.entries("serials"):
                o = dict(e.options)
                o["source_path"] = self.file_name("serial", o["source_path"], e.node, folder="VMCTL_HOME/machines/ID",
                                                  prefix="serial-")
                serials.append(SerialEntry(**o))
            values["serials"] = tuple(serials)
        rng = self.value("rng")
        values["rng"] = RngEntry(**rng) if rng else None
        wd = self.value("watchdog_dev")
        values["watchdog_dev"] = WatchdogEntry(**wd) if wd else None
        sc = self.value("smartcard_dev")
        if sc:
            if sc.get("source_host") is not None:
                sc = {**sc, "source_host": self.address("smartcard", sc["source_host"], self.node("smartcard_dev"))}
                if sc["source_host"] is None:
                    sc = None
            values["smartcard_dev"] = SmartcardEntry(**sc) if sc else None
        else:
            values["smartcard_dev"] = None
        usbctl = self.value("usbctl_dev")
        values["usbctl_dev"] = UsbControllerEntry(**usbctl) if usbctl else None
        values["redirdevs"] = tuple(RedirdevEntry(**e.options) for e in self.entries("redirdevs"))
        values["redirfilters"] = tuple(
            RedirfilterEntry(allow=e.options["allow"], klass=e.options["class"], vendor=e.options["vendor"],
                             product=e.options["product"], version=e.options["version"])
            for e in self.entries("redirfilters"))
        mac = values.get("management_network_mac")
        if mac is not None:
            text = mac.lower()
            if re.fullmatch(r"[0-9a-f]{12}", text):
                text = ":".join(text[i:i + 2] for i in range(0, 12, 2))
            if not re.fullmatch(r"[0-9a-f]{2}(:[0-9a-f]{2}){5}", text):
                raise self.r.error(self.node("management_network_mac"), f"Configured NIC MAC '{mac}' is not in "
                                   "'xx:xx:xx:xx:xx:xx' or 'xxxxxxxxxxxx' format")
            if int(text[:2], 16) & 1:
                raise self.r.error(self.node("management_network_mac"), f"{mac} is a multicast MAC address, "
                                   "which a NIC cannot have")
            values["management_network_mac"] = text
        for key in ("nic_model_type", "management_network_model_type"):
            if values.get(key) is not None and values[key] not in NIC_MODELS:
                raise self.r.error(self.node(key), f"libvirt.{key} {values[key][:20]!r} is not a NIC model vmctl "
                                   f"can give the machine ({', '.join(NIC_MODELS)})")
        if values.get("tpm_path") is not None:
            if self.from_box("tpm_path"):
                self.r.ignore_from_box(self.node("tpm_path"), self.from_box("tpm_path") or "",
                                       f"passes the host's TPM {values['tpm_path']} through")
                values.pop("tpm_path")
            elif not re.fullmatch(r"/dev/tpm(rm)?[0-9]{1,3}", values["tpm_path"]):
                raise self.r.error(self.node("tpm_path"), f"libvirt.tpm_path {values['tpm_path'][:60]!r} is not a "
                                   "host TPM device such as /dev/tpm0")

    def host_side(self, values: dict[str, Any]) -> None:
        """What acts on the host itself: never from a box; from the project, within the rules."""
        args = [e.options["value"] for e in self.entries("qemu_args")]
        if args:
            node = self.entries("qemu_args")[0].node
            box = self.r.box_of(node)
            if box is not None:
                self.r.ignore_from_box(node, box, "passes arguments to QEMU (libvirt.qemuargs)")
                args = []
            else:
                self.check_qemu_args(self.entries("qemu_args"))
        values["qemu_args"] = tuple(args)
        env = dict(self.value("qemu_env") or {})
        if env:
            node = self.node("qemu_env")
            box = self.r.box_of(node)
            if box is not None:
                self.r.ignore_from_box(node, box, "sets QEMU's environment (libvirt.qemuenv)")
                env = {}
            for name in env:
                problem = untrusted.qemu_env_problem(name)
                if problem is not None:
                    raise self.r.error(node, f"libvirt.qemuenv: {problem}")
        values["qemu_env"] = env
        if values.get("emulator_path") is not None:
            node = self.node("emulator_path")
            box = self.r.box_of(node)
            if box is not None:
                self.r.ignore_from_box(node, box, f"runs {values['emulator_path']} as the emulator")
                values.pop("emulator_path")
            elif (problem := untrusted.emulator_problem(values["emulator_path"])) is not None:
                raise self.r.error(node, f"libvirt.emulator_path {untrusted.visible(values['emulator_path'])[:60]!r}: {problem}")
        for key, cls in (("pcis", PciEntry), ("usbs", UsbEntry)):
            entries = self.entries(key)
            kept = []
            for e in entries:
                box = self.r.box_of(e.node)
                if box is not None:
                    self.r.ignore_from_box(e.node, box, f"passes a host {key[:-1].upper()} device through")
                    continue
                kept.append(cls(**e.options))
            values[key] = tuple(kept)

    def check_qemu_args(self, entries: list[Entry]) -> None:
        args = [e.options["value"] for e in entries]
        problem = untrusted.qemu_args_problem(args)
        if problem is None:
            return
        # The first entry at which the arguments so far cannot be right names the line.
        at = entries[-1].node
        for i in range(1, len(args) + 1):
            so_far = untrusted.qemu_args_problem(args[:i])
            if so_far is not None and "needs a value" not in so_far:
                at = entries[i - 1].node
                break
        raise self.r.error(at, f"libvirt.qemuargs: {untrusted.visible(problem)}",
                           hint="qemuargs may shape the guest's hardware (-fw_cfg, -smbios, -device, -cpu, -machine, "
                           "-global, -object rng-random ...); vmctl refuses what acts on the host (files it writes, "
                           "programs, host devices, sockets)")

    def networks(self, values: dict[str, Any]) -> None:
        for key in MANAGEMENT_NETWORK:
            if key in values:
                self.r.warn(self.node(key), f"libvirt.{key} has nothing to apply to: vmctl's management network is "
                            "QEMU's user-mode networking, not a libvirt network (ignored)")


# The fields settings() builds itself (everything else is copied as it was checked).
_BUILT = ("cpu_features", "cpu_topology", "cpu_affinity", "numa_nodes", "memory_backing", "memtunes", "boot_order",
          "features_hyperv", "clock_timers", "sysinfo", "fw_cfg", "launchsecurity_data", "disks", "cdroms",
          "floppies", "disk_driver_opts", "inputs", "channels", "serials", "rng", "watchdog_dev", "smartcard_dev",
          "usbctl_dev", "usbs", "pcis", "redirdevs", "redirfilters", "qemu_args", "qemu_env")
