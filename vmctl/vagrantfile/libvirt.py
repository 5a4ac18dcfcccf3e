"""The libvirt provider's settings: `config.vm.provider :libvirt do |libvirt| ... end`.

Every attribute and method of vagrant-libvirt's configuration (lib/vagrant-libvirt/config.rb,
release 0.12.2, the last) and nothing else: a name it lacks is an error with a "did you
mean" among its real names. Each value is checked where it is set, so errors name the
Vagrantfile's line; the checks are vagrant-libvirt's own (a method it makes raise, raises
here) plus the values libvirt would refuse later. What the settings mean on this host is
decided in the machine layer (vmctl/machine/hardware.py); host paths are resolved, and held
to the rules for boxes, in resolve_libvirt.py.

Provider blocks merge as vagrant-libvirt merges them (its `merge`): each block fills a fresh
object; disks, CD-ROMs, floppies, clock timers, inputs and serial ports add up; memtune,
disk_driver, qemuenv and sysinfo merge by key; the last non-empty boot order wins; every
other setting of a later block replaces the earlier one.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from vmctl.vagrantfile import builtins
from vmctl.vagrantfile.config import Namespace, config_error, did_you_mean, opts_of
from vmctl.vagrantfile.values import Proc, Symbol, inspect, to_s

if TYPE_CHECKING:
    from vmctl.vagrantfile.interpreter import Interpreter
    from vmctl.vagrantfile.syntax import Node


@dataclass
class Entry:
    """One call of a method that adds to a list (`libvirt.storage ...`), normalized, with
    the line that made it."""

    options: dict[str, Any]
    node: Node | None


# -- the names -----------------------------------------------------------------------------

# attribute -> how its value is checked: a type, or a tuple of the values allowed.
STR, INT, POSINT, BOOL, ANY = "str", "int", "posint", "bool", "any"
ATTRIBUTES: dict[str, Any] = {
    # connection
    "uri": STR, "driver": ("kvm", "qemu"), "host": STR, "port": POSINT, "connect_via_ssh": BOOL,
    "socket": STR, "username": STR, "password": STR, "id_ssh_key_file": STR, "proxy_command": STR,
    "forward_ssh_port": BOOL, "storage_pool_name": STR, "storage_pool_path": STR, "snapshot_pool_name": STR,
    "system_uri": STR, "qemu_use_session": BOOL,
    # naming
    "random_hostname": BOOL, "default_prefix": STR, "title": STR, "description": STR, "uuid": STR,
    "autostart": BOOL, "suspend_mode": ("pause", "managedsave"),
    # management network
    "management_network_device": STR, "management_network_name": STR, "management_network_address": STR,
    "management_network_mode": ("nat", "route", "open", "none", "veryisolated"),
    "management_network_mac": STR, "management_network_guest_ipv6": ("yes", "no"),
    "management_network_autostart": BOOL, "management_network_pci_bus": STR, "management_network_pci_slot": STR,
    "management_network_domain": STR, "management_network_mtu": POSINT, "management_network_keep": BOOL,
    "management_network_driver_iommu": BOOL, "management_network_iface_name": STR,
    "management_network_model_type": STR, "mgmt_attach": BOOL, "nic_model_type": STR, "nic_adapter_count": POSINT,
    "host_device_exclude_prefixes": "strlist",
    # CPU and memory
    "memory": POSINT, "cpus": POSINT, "cpuset": STR, "nodeset": STR,
    "cpu_mode": ("host-model", "host-passthrough", "custom", "maximum"), "cpu_model": STR,
    "cpu_fallback": ("allow", "forbid"), "nested": BOOL, "shares": POSINT, "numa_nodes": "numa",
    "memballoon_enabled": BOOL, "memballoon_model": ("virtio", "virtio-transitional", "virtio-non-transitional", "none"),
    "memballoon_pci_bus": STR, "memballoon_pci_slot": STR,
    # machine and firmware
    "machine_type": STR, "machine_arch": STR, "machine_virtual_size": POSINT, "emulator_path": STR,
    "loader": STR, "nvram": STR, "kernel": STR, "initrd": STR, "cmd_line": STR, "dtb": STR,
    "features": "strlist", "kvm_hidden": BOOL,
    "clock_offset": ("utc", "localtime"), "clock_absolute": INT, "clock_adjustment": INT,
    "clock_basis": ("utc", "localtime"), "clock_timezone": STR, "sysinfo": "sysinfo",
    # disks
    "disk_bus": ("virtio", "scsi", "sata", "ide", "usb"), "disk_device": STR, "disk_address_type": STR,
    "disk_controller_model": STR, "volume_cache": ("default", "none", "writethrough", "writeback", "directsync", "unsafe"),
    # devices
    "graphics_type": ("vnc", "spice", "none", "sdl", "curses", "gtk"), "graphics_autoport": BOOL,
    "graphics_port": INT, "graphics_websocket": INT, "graphics_ip": STR, "graphics_passwd": STR,
    "graphics_gl": BOOL, "video_type": ("cirrus", "vga", "qxl", "virtio", "bochs", "ramfb", "vmvga", "none"),
    "video_vram": POSINT, "video_accel3d": BOOL, "keymap": STR,
    "sound_type": ("ich6", "ich9", "ac97", "es1370", "sb16", "usb", "ich7", "pcspk"),
    "tpm_model": ("tpm-tis", "tpm-crb"), "tpm_type": ("passthrough", "emulator"), "tpm_path": STR,
    "tpm_version": ("1.2", "2.0"), "qemu_use_agent": BOOL,
    # attributes behind the methods (assigning one replaces what the method collected)
    "channel": ANY, "boot_order": "list", "cpu_features": "list", "cpu_topology": "hash",
    "cpu_affinity": "hash", "memory_backing": "list", "memtunes": "hash", "features_hyperv": "list",
    "clock_timers": "list", "launchsecurity_data": "hash", "disk_driver_opts": "hash", "disks": "list",
    "cdroms": "list", "floppies": "list", "inputs": "list", "channels": "list", "pcis": "list", "rng": "hash",
    "watchdog_dev": "hash", "usbctl_dev": "hash", "usbs": "list", "redirdevs": "list", "redirfilters": "list",
    "smartcard_dev": "hash", "qemu_args": "list", "qemu_env": "hash", "serials": "list",
}
METHODS = frozenset({
    "storage", "cputopology", "cpuaffinitiy", "cpu_feature", "memorybacking", "memtune", "input", "channel",
    "pci", "usb", "usb_controller", "redirdev", "redirfilter", "serial", "random", "watchdog", "smartcard",
    "qemuargs", "qemuenv", "boot", "hyperv_feature", "clock_timer", "launchsecurity", "disk_driver",
})
# The attribute each method fills.
METHOD_ATTRIBUTE = {
    "storage": None, "cputopology": "cpu_topology", "cpuaffinitiy": "cpu_affinity", "cpu_feature": "cpu_features",
    "memorybacking": "memory_backing", "memtune": "memtunes", "input": "inputs", "channel": "channels",
    "pci": "pcis", "usb": "usbs", "usb_controller": "usbctl_dev", "redirdev": "redirdevs",
    "redirfilter": "redirfilters", "serial": "serials", "random": "rng", "watchdog": "watchdog_dev",
    "smartcard": "smartcard_dev", "qemuargs": "qemu_args", "qemuenv": "qemu_env", "boot": "boot_order",
    "hyperv_feature": "features_hyperv", "clock_timer": "clock_timers", "launchsecurity": "launchsecurity_data",
    "disk_driver": "disk_driver_opts",
}

DISK_CACHE = ("default", "none", "writethrough", "writeback", "directsync", "unsafe")
DISK_IO = ("native", "threads", "io_uring")
DISK_DISCARD = ("unmap", "ignore")
DISK_DETECT_ZEROES = ("off", "on", "unmap")
ON_OFF = ("on", "off")
HYPERV_FEATURES = ("relaxed", "vapic", "spinlocks", "vpindex", "runtime", "synic", "stimer", "reset",
                   "vendor_id", "frequencies", "reenlightenment", "tlbflush", "ipi", "evmcs", "avic")
TIMERS = ("platform", "pit", "rtc", "hpet", "tsc", "kvmclock", "hypervclock", "armvtimer")
SYSINFO_BLOCKS = {
    "bios": ("vendor", "version", "date", "release"),
    "system": ("manufacturer", "product", "version", "serial", "uuid", "sku", "family"),
    "base board": ("manufacturer", "product", "version", "serial", "asset", "location"),
    "chassis": ("manufacturer", "version", "serial", "asset", "sku"),
    "oem strings": None,
    "fw_cfg": None,  # vmctl's addition: QEMU fw_cfg entries (libvirt's <sysinfo type='fwcfg'>)
}
MEMORY_BACKING = {"hugepages": (), "nosharepages": (), "locked": (), "discard": (), "source": ("type",),
                  "access": ("mode",), "allocation": ("mode", "threads")}
MEMORY_UNITS = ("b", "bytes", "KB", "k", "KiB", "MB", "M", "MiB", "GB", "G", "GiB", "TB", "T", "TiB")

# Shapes of names that become libvirt attributes or QEMU option values.
DEVICE_NAME = re.compile(r"(vd|sd|hd|xvd)[a-z]{1,2}")
CPUSET = re.compile(r"[0-9][0-9,\-^]*")
PCI_PART = re.compile(r"(0x)?[0-9a-fA-F]{1,4}")
USB_ID = re.compile(r"0x[0-9a-fA-F]{4}")
WORD = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.+:-]{0,127}")


def parse_size(text: Any) -> int | None:
    """A disk size as vagrant-libvirt (a number of GB, or "10G", "512M", "1T") and Vagrant
    ("10GB", "1MB"; a plain number of bytes for config.vm.disk) write it, in bytes; None if
    it is not one. Units are binary, as qemu-img and libvirt read them."""
    if isinstance(text, bool):
        return None
    if isinstance(text, int):
        return text * 1024**3 if text > 0 else None
    if not isinstance(text, str):
        return None
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([KMGTP]?)(i?B)?\s*", text, re.IGNORECASE)
    if not m or (m.group(3) and not m.group(2)):
        return None
    factor = 1024 ** " KMGTP".index(m.group(2).upper() or " ")
    size = int(float(m.group(1)) * factor)
    return size if size > 0 else None


# Names people write that vagrant-libvirt does not have, and the real setting that does it.
MEANT = {
    "hugepages": "memorybacking :hugepages",
    "disk_cache": 'disk_driver cache: "none"',
    "cache": 'disk_driver cache: "none"',
    "tpm": 'tpm_model = "tpm-crb"` with `libvirt.tpm_type = "emulator"` and `libvirt.tpm_version = "2.0"',
    "floppy": 'storage :file, device: :floppy, path: "floppy.img"',
    "cdrom": 'storage :file, device: :cdrom, path: "image.iso"',
    "qemu_commandline": 'qemuargs value: "-option"',
    "qemu_arguments": 'qemuargs value: "-option"',
    "spice_channel": 'channel type: "spicevmc", target_name: "com.redhat.spice.0", target_type: "virtio"',
    "initrd_path": "initrd",
    "kernel_path": "kernel",
    "cpu_topology_sockets": "cputopology sockets: 1, cores: 2, threads: 1",
    "cpu_topology_cores": "cputopology sockets: 1, cores: 2, threads: 1",
    "machine_virtual_size_gb": "machine_virtual_size",
    "disk_size": "machine_virtual_size",
    "disk_device_bus": "disk_bus",
    "vcpus": "cpus",
    "ram": "memory",
    "name": "default_prefix",
    "firmware": 'loader = "/usr/share/OVMF/OVMF_CODE_4M.fd"',
    "uefi": 'loader = "/usr/share/OVMF/OVMF_CODE_4M.fd"',
}


class LibvirtConfig(Namespace):
    prefix = "libvirt"
    settings = frozenset(ATTRIBUTES)
    methods = METHODS

    def unknown(self, ip: Interpreter, attr: str, args: list[Any], node: Node | None) -> Any:
        """A name vagrant-libvirt lacks: an error, with the real setting meant (or the closest
        real name), never a name that is not one."""
        meant = MEANT.get(attr)
        if meant is None and attr == "memory_hotplug_enabled":
            raise config_error(ip, node, f"unknown setting `libvirt.{attr}`",
                               hint="vagrant-libvirt has no memory hotplug: set libvirt.memory")
        if meant is not None:
            raise config_error(ip, node, f"unknown setting `libvirt.{attr}`", hint=f"did you mean `libvirt.{meant}`?")
        return super().unknown(ip, attr, args, node)

    def __init__(self, root: Any) -> None:
        super().__init__(root)
        self.storage_disks: list[Entry] = []  # `storage` fills three lists: disks, cdroms, floppies

    def known(self) -> list[str]:
        return sorted(self.settings | self.methods)

    def rb_send(self, ip: Interpreter, name: str, args: list[Any], block: Proc | None, node: Node | None) -> Any:
        # `libvirt.channel = x` is the attribute; `libvirt.channel type: ...` the method.
        if name == "channel" and not args:
            return self.get("channel")
        return super().rb_send(ip, name, args, block, node)

    # attributes ---------------------------------------------------------------------------
    def check(self, ip: Interpreter, attr: str, value: Any, node: Node | None) -> Any:
        setting = f"libvirt.{attr}"
        kind = ATTRIBUTES[attr]
        if value is None:
            return None
        if isinstance(kind, tuple):
            text = _str(ip, node, setting, value)
            if text not in kind:
                raise config_error(ip, node, f"{setting} must be one of {', '.join(kind)}, not {text!r}",
                                   hint=_guess_value(text, kind))
            return text
        if kind == STR:
            return _str(ip, node, setting, value)
        if kind in (INT, POSINT):
            return _int(ip, node, setting, value, positive=kind == POSINT, allow_negative=kind == INT)
        if kind == BOOL:
            return _bool(ip, node, setting, value)
        if kind == "strlist":
            items = value if isinstance(value, list) else [value]
            return [_str(ip, node, setting, v) for v in items]
        if kind == "numa":
            return _numa(ip, node, value)
        if kind == "sysinfo":
            return _sysinfo(ip, node, value)
        if attr == "channel":
            return value  # vagrant-libvirt never reads it either
        # An attribute behind a method, assigned whole: each item as the method would take it.
        return self.assign_collected(ip, attr, value, node)

    def assign_collected(self, ip: Interpreter, attr: str, value: Any, node: Node | None) -> Any:
        method = next(m for m, a in METHOD_ATTRIBUTE.items() if a == attr) if attr not in (
            "disks", "cdroms", "floppies") else "storage"
        if attr in ("disks", "cdroms", "floppies"):
            device = {"disks": None, "cdroms": Symbol("cdrom"), "floppies": Symbol("floppy")}[attr]
            if not isinstance(value, list):
                raise config_error(ip, node, f"libvirt.{attr} must be a list")
            self.storage_disks = [e for e in self.storage_disks if _storage_kind(e) != attr]
            for item in value:
                opts = dict(opts_of(item))
                if device is not None:
                    opts["device"] = device
                self.call_storage(ip, [Symbol("file"), opts], None, node)
            return None
        if method == "qemuenv":
            return {k: v for k, v in _qemuenv(ip, node, [value]).items()}
        if method == "memtune":
            # A list of memtune's options, or vagrant-libvirt's own shape: type => {value:, config:}.
            items = value if isinstance(value, list) else [value]
            tunes: dict[str, Any] = {}
            for item in items:
                o = opts_of(item)
                if "type" not in o:
                    for kind, spec in o.items():
                        inner = opts_of(spec) if isinstance(spec, dict) else {"value": spec}
                        config = opts_of(inner.get("config")) if inner.get("config") is not None else {}
                        o = {"type": kind, "value": inner.get("value"), **({"options": config} if config else {})}
                        tunes[kind] = _memtune(ip, node, [o])
                    continue
                parsed = _memtune(ip, node, [item])
                tunes[parsed["type"]] = parsed
            return tunes
        if method == "cpuaffinitiy":
            return _cpuaffinity(ip, node, [value])
        parser = PARSERS[method]
        if isinstance(value, list):
            return [Entry(parser(ip, node, [item] if not isinstance(item, list) else item), node) for item in value]
        return parser(ip, node, [value])

    # methods ------------------------------------------------------------------------------
    def __getattr__(self, name: str) -> Any:
        if name.startswith("call_") and name[5:] in METHODS:
            method = name[5:]
            return lambda ip, args, block, node: self.collect(ip, method, args, node)
        raise AttributeError(name)

    def call_storage(self, ip: Interpreter, args: list[Any], block: Proc | None, node: Node | None) -> Any:
        if not args:
            raise config_error(ip, node, "libvirt.storage needs a storage type, e.g. libvirt.storage :file, size: \"20G\"")
        kind = to_s(args[0])
        if kind != "file":
            ip.warn(f"libvirt.storage :{kind} is not a storage type vagrant-libvirt knows (it knows :file), "
                    "and it ignores it; so does vmctl", node)
            return None
        options = _storage(ip, node, args[1:])
        self.storage_disks.append(Entry(options, node))
        return None

    def collect(self, ip: Interpreter, method: str, args: list[Any], node: Node | None) -> Any:
        attr = METHOD_ATTRIBUTE[method]
        assert attr is not None
        if method == "qemuenv":
            previous = self.get(attr) or {}
            self.values[attr] = ({**previous, **_qemuenv(ip, node, args)}, node)
            return None
        if method == "cpuaffinitiy":
            previous = self.get(attr) or {}
            self.values[attr] = ({**previous, **_cpuaffinity(ip, node, args)}, node)
            return None
        options = PARSERS[method](ip, node, args)
        if method in SINGLE:  # the last call wins (they set a hash in vagrant-libvirt)
            if method == "memtune":
                previous = dict(self.get(attr) or {})
                previous[options["type"]] = options
                self.values[attr] = (previous, node)
            elif method == "watchdog" or method == "cputopology" or method == "usb_controller":
                previous = dict(self.get(attr) or {})
                previous.update(options)
                self.values[attr] = (previous, node)
            else:
                self.values[attr] = (options, node)
            return None
        entries = list(self.get(attr) or [])
        entries.append(Entry(options, node))
        if len(entries) > 1000:
            raise ip.limit(node, f"more than 1000 libvirt.{method} entries")
        self.values[attr] = (entries, node)
        return None

    def collected(self) -> dict[str, tuple[Any, Node | None]]:
        """The settings of this block: attributes, and what the methods collected."""
        out = dict(self.values)
        for attr in ("disks", "cdroms", "floppies"):
            entries = [e for e in self.storage_disks if _storage_kind(e) == attr]
            if entries:
                out[attr] = (entries, entries[0].node)
        return out


SINGLE = frozenset({"cputopology", "memtune", "usb_controller", "random", "watchdog", "smartcard",
                    "launchsecurity", "disk_driver"})


def _storage_kind(entry: Entry) -> str:
    device = entry.options.get("device")
    return {"cdrom": "cdroms", "floppy": "floppies"}.get(device, "disks") if isinstance(device, str) else "disks"


def merge_libvirt(blocks: list[dict[str, tuple[Any, Node | None]]]) -> dict[str, tuple[Any, Node | None]]:
    """The settings of several provider blocks, merged as vagrant-libvirt merges them."""
    out: dict[str, tuple[Any, Node | None]] = {}
    for block in blocks:
        for attr, (value, node) in block.items():
            earlier = out.get(attr)
            if earlier is not None and attr in ("disks", "cdroms", "floppies", "clock_timers", "inputs", "serials"):
                out[attr] = (list(earlier[0]) + list(value), earlier[1])
            elif earlier is not None and attr in ("memtunes", "disk_driver_opts", "qemu_env"):
                out[attr] = ({**earlier[0], **value}, node)
            elif earlier is not None and attr == "sysinfo":
                merged = dict(earlier[0])
                for key, entries in value.items():
                    before = merged.get(key)
                    if isinstance(before, dict) and isinstance(entries, dict):
                        merged[key] = {**before, **entries}
                    elif isinstance(before, list) and isinstance(entries, list):
                        merged[key] = before + entries
                    else:
                        merged[key] = entries
                out[attr] = (merged, node)
            elif attr == "boot_order" and not value:
                continue
            else:
                out[attr] = (value, node)
    return out


# -- values ----------------------------------------------------------------------------------

def _str(ip: Interpreter, node: Node | None, setting: str, value: Any) -> str:
    if isinstance(value, Symbol):
        return value.name
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise config_error(ip, node, f"{setting} must be a string, not {inspect(value)[:60]}")
    text = str(value)
    if any(ord(c) < 32 or ord(c) == 127 for c in text):
        raise config_error(ip, node, f"{setting} holds a control character")
    return text


def _int(ip: Interpreter, node: Node | None, setting: str, value: Any, *, positive: bool = False,
         allow_negative: bool = False) -> int:
    if isinstance(value, str) and re.fullmatch(r"-?\d+", value.strip()):
        value = int(value.strip())
    if isinstance(value, bool) or not isinstance(value, int):
        raise config_error(ip, node, f"{setting} must be an integer, not {inspect(value)[:60]}")
    if positive and value <= 0:
        raise config_error(ip, node, f"{setting} must be a positive integer, not {value}")
    if not positive and not allow_negative and value < 0:
        raise config_error(ip, node, f"{setting} must not be negative, not {value}")
    if abs(value) > 2**53:
        raise config_error(ip, node, f"{setting} is too large: {value}")
    return value


def _bool(ip: Interpreter, node: Node | None, setting: str, value: Any) -> bool:
    if value is True or value is False:
        return value
    if value in ("true", "false", "yes", "no"):
        return value in ("true", "yes")
    raise config_error(ip, node, f"{setting} must be true or false, not {inspect(value)[:60]}")


def _choice(ip: Interpreter, node: Node | None, setting: str, value: Any, allowed: tuple[str, ...]) -> str:
    text = _str(ip, node, setting, value)
    if text not in allowed:
        raise config_error(ip, node, f"{setting} must be one of {', '.join(allowed)}, not {text!r}",
                           hint=_guess_value(text, allowed))
    return text


def _shaped(ip: Interpreter, node: Node | None, setting: str, value: Any, shape: re.Pattern[str], rule: str) -> str:
    text = _str(ip, node, setting, value)
    if not shape.fullmatch(text):
        raise config_error(ip, node, f"{setting} {text[:60]!r} is not {rule}")
    return text


def _guess_value(text: str, allowed: tuple[str, ...]) -> str | None:
    guess = did_you_mean(text, list(allowed))
    return f"did you mean {guess!r}?" if guess else None


def _options(ip: Interpreter, node: Node | None, method: str, args: list[Any], allowed: tuple[str, ...],
             required: tuple[str, ...] = ()) -> dict[str, Any]:
    """The keyword options of a method call: unknown ones are errors with a guess (vagrant-
    libvirt drops them silently: the setting the user meant would silently not happen)."""
    if len(args) > 1:
        raise config_error(ip, node, f"libvirt.{method} takes options only (key: value, ...)")
    options = opts_of(args[0]) if args else {}
    for key in options:
        if key not in allowed:
            guess = did_you_mean(key, list(allowed))
            raise config_error(ip, node, f"libvirt.{method} has no option {key}:",
                               hint=f"did you mean {guess}:?" if guess else f"its options: {', '.join(allowed)}")
    for key in required:
        if options.get(key) is None:
            raise config_error(ip, node, f"libvirt.{method} needs {key}:",
                               hint=f"e.g. libvirt.{method} {', '.join(f'{k}: ...' for k in required)}")
    return options


def _opt_str(ip: Interpreter, node: Node | None, method: str, options: dict[str, Any], key: str,
             allowed: tuple[str, ...] | None = None) -> str | None:
    value = options.get(key)
    if value is None:
        return None
    if allowed is not None:
        return _choice(ip, node, f"libvirt.{method} {key}:", value, allowed)
    return _str(ip, node, f"libvirt.{method} {key}:", value)


def _storage(ip: Interpreter, node: Node | None, args: list[Any]) -> dict[str, Any]:
    options = opts_of(args[0]) if args else {}
    device = options.get("device")
    device_name = to_s(device) if device is not None else None
    if device_name == "cdrom":
        o = _options(ip, node, "storage", args, ("device", "path", "dev", "bus", "type"))
        return {
            "device": "cdrom",
            "path": _opt_str(ip, node, "storage", o, "path"),
            "dev": _shaped(ip, node, "libvirt.storage dev:", o["dev"], DEVICE_NAME, "a device name such as hdc or sda")
            if o.get("dev") is not None else None,
            "bus": _opt_str(ip, node, "storage", o, "bus", ("ide", "sata", "scsi", "usb")),
            "type": _opt_str(ip, node, "storage", o, "type", ("raw",)) or "raw",
        }
    if device_name == "floppy":
        o = _options(ip, node, "storage", args, ("device", "path", "dev", "bus"))
        dev = _opt_str(ip, node, "storage", o, "dev", ("fda", "fdb"))
        return {"device": "floppy", "path": _opt_str(ip, node, "storage", o, "path"), "dev": dev,
                "bus": _opt_str(ip, node, "storage", o, "bus", ("fdc",)) or "fdc"}
    o = _options(ip, node, "storage", args, (
        "device", "type", "size", "path", "pool", "bus", "cache", "io", "copy_on_read", "discard", "detect_zeroes",
        "address_type", "allow_existing", "shareable", "serial", "wwn"))
    size_value = o.get("size", "10G")
    size = parse_size(size_value)
    if size is None:
        raise config_error(ip, node, f"libvirt.storage size: {inspect(size_value)[:40]} is not a size",
                           hint='write it as vagrant-libvirt does, e.g. size: "20G" (or "512M", "1T")')
    return {
        "device": _shaped(ip, node, "libvirt.storage device:", device, DEVICE_NAME, "a device name such as vdb or sdb")
        if device is not None else None,
        "type": _opt_str(ip, node, "storage", o, "type", ("qcow2", "raw")) or "qcow2",
        "size": size,
        "path": _opt_str(ip, node, "storage", o, "path"),
        "pool": _opt_str(ip, node, "storage", o, "pool"),
        "bus": _opt_str(ip, node, "storage", o, "bus", ("virtio", "scsi", "sata", "ide", "usb")) or "virtio",
        "cache": _opt_str(ip, node, "storage", o, "cache", DISK_CACHE) or "default",
        "io": _opt_str(ip, node, "storage", o, "io", DISK_IO),
        "copy_on_read": _opt_str(ip, node, "storage", o, "copy_on_read", ON_OFF),
        "discard": _opt_str(ip, node, "storage", o, "discard", DISK_DISCARD),
        "detect_zeroes": _opt_str(ip, node, "storage", o, "detect_zeroes", DISK_DETECT_ZEROES),
        "address_type": _opt_str(ip, node, "storage", o, "address_type", ("pci", "drive", "ccw", "usb", "virtio-mmio")),
        "allow_existing": _bool(ip, node, "libvirt.storage allow_existing:", o["allow_existing"])
        if o.get("allow_existing") is not None else False,
        "shareable": _bool(ip, node, "libvirt.storage shareable:", o["shareable"])
        if o.get("shareable") is not None else False,
        "serial": _shaped(ip, node, "libvirt.storage serial:", o["serial"], re.compile(r"[A-Za-z0-9_.+ -]{1,20}"),
                          "a disk serial (up to 20 letters, digits and _ . + - space)")
        if o.get("serial") is not None else None,
        "wwn": _shaped(ip, node, "libvirt.storage wwn:", o["wwn"], re.compile(r"(0x)?[0-9a-fA-F]{16}"),
                       "a WWN (16 hexadecimal digits)") if o.get("wwn") is not None else None,
    }


def _cputopology(ip: Interpreter, node: Node | None, args: list[Any]) -> dict[str, Any]:
    o = _options(ip, node, "cputopology", args, ("sockets", "cores", "threads"), ("sockets", "cores", "threads"))
    return {k: _int(ip, node, f"libvirt.cputopology {k}:", o[k], positive=True) for k in ("sockets", "cores", "threads")}


def _cpuaffinity(ip: Interpreter, node: Node | None, args: list[Any]) -> dict[int, str]:
    if len(args) != 1 or not isinstance(args[0], dict):
        raise config_error(ip, node, "libvirt.cpuaffinitiy takes a Hash of vCPU => host CPUs, e.g. 0 => '0-3'")
    out = {}
    for vcpu, cpuset in args[0].items():
        number = _int(ip, node, "libvirt.cpuaffinitiy vCPU", to_s(vcpu) if isinstance(vcpu, Symbol) else vcpu)
        out[number] = _shaped(ip, node, "libvirt.cpuaffinitiy CPU set", cpuset, CPUSET, "a CPU set such as 0-3,^2")
    return out


def _cpu_feature(ip: Interpreter, node: Node | None, args: list[Any]) -> dict[str, Any]:
    o = _options(ip, node, "cpu_feature", args, ("name", "policy"), ("name", "policy"))
    return {"name": _shaped(ip, node, "libvirt.cpu_feature name:", o["name"], re.compile(r"[a-z0-9_.-]{1,40}"),
                            "a CPU feature name such as vmx"),
            "policy": _choice(ip, node, "libvirt.cpu_feature policy:", o["policy"],
                              ("force", "require", "optional", "disable", "forbid"))}


def _memorybacking(ip: Interpreter, node: Node | None, args: list[Any]) -> dict[str, Any]:
    if not args:
        raise config_error(ip, node, "libvirt.memorybacking needs an element, e.g. libvirt.memorybacking :hugepages")
    name = _choice(ip, node, "libvirt.memorybacking", args[0], tuple(MEMORY_BACKING))
    o = _options(ip, node, "memorybacking", args[1:], MEMORY_BACKING[name],
                 ("type",) if name == "source" else ("mode",) if name in ("access", "allocation") else ())
    allowed = {"type": ("file", "anonymous", "memfd"), "mode": ("shared", "private")
               if name == "access" else ("immediate", "ondemand")}
    config = {}
    for key, value in o.items():
        if key == "threads":
            config[key] = str(_int(ip, node, "libvirt.memorybacking threads:", value, positive=True))
        else:
            config[key] = _choice(ip, node, f"libvirt.memorybacking :{name} {key}:", value, allowed[key])
    return {"name": name, "config": config}


def _memtune(ip: Interpreter, node: Node | None, args: list[Any]) -> dict[str, Any]:
    o = _options(ip, node, "memtune", args, ("type", "value", "options"), ("type", "value"))
    kind = _choice(ip, node, "libvirt.memtune type:", o["type"], ("hard_limit", "soft_limit", "swap_hard_limit"))
    unit = "KiB"
    if o.get("options") is not None:
        extra = opts_of(o["options"])
        for key in extra:
            if key != "unit":
                raise config_error(ip, node, f"libvirt.memtune options: has no {key}:", hint="its only option is unit:")
        if extra.get("unit") is not None:
            unit = _choice(ip, node, "libvirt.memtune unit:", extra["unit"], MEMORY_UNITS)
    return {"type": kind, "value": _int(ip, node, "libvirt.memtune value:", o["value"], positive=True), "unit": unit}


def _launchsecurity(ip: Interpreter, node: Node | None, args: list[Any]) -> dict[str, Any]:
    o = _options(ip, node, "launchsecurity", args, ("type", "cbitpos", "reducedPhysBits", "policy"), ("type",))
    if to_s(o["type"]) != "sev":
        raise config_error(ip, node, "Launch security type only supports SEV. Explicitly set 'sev' as a type",
                           hint="libvirt.launchsecurity type: 'sev'")
    return {
        "type": "sev",
        "cbitpos": _int(ip, node, "libvirt.launchsecurity cbitpos:", o.get("cbitpos", 47), positive=True),
        "reducedPhysBits": _int(ip, node, "libvirt.launchsecurity reducedPhysBits:", o.get("reducedPhysBits", 1),
                                positive=True),
        "policy": _shaped(ip, node, "libvirt.launchsecurity policy:", o.get("policy", "0x0003"),
                          re.compile(r"0x[0-9a-fA-F]{1,8}"), "a hexadecimal policy such as 0x0003"),
    }


def _input(ip: Interpreter, node: Node | None, args: list[Any]) -> dict[str, Any]:
    o = _options(ip, node, "input", args, ("type", "bus"), ("type", "bus"))
    return {"type": _choice(ip, node, "libvirt.input type:", o["type"], ("mouse", "tablet", "keyboard")),
            "bus": _choice(ip, node, "libvirt.input bus:", o["bus"], ("ps2", "usb", "virtio"))}


def _channel(ip: Interpreter, node: Node | None, args: list[Any]) -> dict[str, Any]:
    o = _options(ip, node, "channel", args, ("type", "source_mode", "source_path", "target_address", "target_name",
                                              "target_port", "target_type", "disabled"), ("type",))
    kind = _choice(ip, node, "libvirt.channel type:", o["type"], ("unix", "spicevmc", "pty"))
    target_type = _opt_str(ip, node, "channel", o, "target_type", ("virtio", "guestfwd"))
    if kind == "unix" and target_type == "guestfwd" and (
            o.get("target_address") is None or o.get("target_port") is None or o.get("source_path") is None):
        raise config_error(ip, node, "guestfwd requires target_address, target_port and source_path")
    return {
        "type": kind,
        "source_mode": _opt_str(ip, node, "channel", o, "source_mode", ("bind", "connect")),
        "source_path": _opt_str(ip, node, "channel", o, "source_path"),
        "target_address": _opt_str(ip, node, "channel", o, "target_address"),
        "target_name": _shaped(ip, node, "libvirt.channel target_name:", o["target_name"],
                               re.compile(r"[A-Za-z0-9_.-]{1,100}"), "a channel name such as org.qemu.guest_agent.0")
        if o.get("target_name") is not None else None,
        "target_port": _int(ip, node, "libvirt.channel target_port:", o["target_port"], positive=True)
        if o.get("target_port") is not None else None,
        "target_type": target_type,
        "disabled": _bool(ip, node, "libvirt.channel disabled:", o["disabled"]) if o.get("disabled") is not None else False,
    }


def _random(ip: Interpreter, node: Node | None, args: list[Any]) -> dict[str, Any]:
    o = _options(ip, node, "random", args, ("model",))
    if o.get("model") is not None and to_s(o["model"]) != "random":
        raise config_error(ip, node, 'The only supported rng backend is "random".', hint="libvirt.random model: 'random'")
    return {"model": "random"}


def _pci_part(ip: Interpreter, node: Node | None, key: str, value: Any) -> int:
    text = to_s(value) if not isinstance(value, int) or isinstance(value, bool) else hex(value)
    if not PCI_PART.fullmatch(text):
        raise config_error(ip, node, f"libvirt.pci {key}: {text[:20]!r} is not a PCI address part (e.g. 0x06)")
    return int(text, 16)


def _pci(ip: Interpreter, node: Node | None, args: list[Any]) -> dict[str, Any]:
    keys = ("domain", "bus", "slot", "function", "guest_domain", "guest_bus", "guest_slot", "guest_function")
    o = _options(ip, node, "pci", args, keys)
    if o.get("bus") is None or o.get("slot") is None or o.get("function") is None:
        raise config_error(ip, node, "Bus AND slot AND function must be specified. Check `lspci` for that numbers.")
    return {k: (_pci_part(ip, node, k, o[k]) if o.get(k) is not None else (0 if k == "domain" else None)) for k in keys}


def _usb(ip: Interpreter, node: Node | None, args: list[Any]) -> dict[str, Any]:
    o = _options(ip, node, "usb", args, ("bus", "device", "vendor", "product", "startupPolicy"))
    if (o.get("bus") is None or o.get("device") is None) and o.get("vendor") is None and o.get("product") is None:
        raise config_error(ip, node, "Bus and device and/or vendor and/or product must be specified. "
                                     "Check `lsusb` for these.")
    out: dict[str, Any] = {}
    for key in ("bus", "device"):
        out[key] = _int(ip, node, f"libvirt.usb {key}:", o[key], positive=True) if o.get(key) is not None else None
    for key in ("vendor", "product"):
        out[key] = _shaped(ip, node, f"libvirt.usb {key}:", o[key], USB_ID, "a USB id such as 0x1234") \
            if o.get(key) is not None else None
    out["startupPolicy"] = _opt_str(ip, node, "usb", o, "startupPolicy", ("mandatory", "requisite", "optional"))
    return out


def _usb_controller(ip: Interpreter, node: Node | None, args: list[Any]) -> dict[str, Any]:
    o = _options(ip, node, "usb_controller", args, ("model", "ports"), ("model",))
    models = ("piix3-uhci", "piix4-uhci", "ehci", "ich9-ehci1", "ich9-uhci1", "ich9-uhci2", "ich9-uhci3",
              "vt82c686b-uhci", "pci-ohci", "nec-xhci", "qemu-xhci", "none")
    return {"model": _choice(ip, node, "libvirt.usb_controller model:", o["model"], models),
            "ports": _int(ip, node, "libvirt.usb_controller ports:", o["ports"], positive=True)
            if o.get("ports") is not None else None}


def _redirdev(ip: Interpreter, node: Node | None, args: list[Any]) -> dict[str, Any]:
    o = _options(ip, node, "redirdev", args, ("type", "host", "port"), ("type",))
    kind = _choice(ip, node, "libvirt.redirdev type:", o["type"], ("spicevmc", "tcp"))
    if kind == "tcp":
        raise config_error(ip, node, "libvirt.redirdev type: 'tcp' does not work with vagrant-libvirt either: "
                           "it drops host: and port:", hint="use type: 'spicevmc' with graphics_type = 'spice'")
    return {"type": kind}


def _redirfilter(ip: Interpreter, node: Node | None, args: list[Any]) -> dict[str, Any]:
    o = _options(ip, node, "redirfilter", args, ("class", "vendor", "product", "version", "allow"), ("allow",))
    out: dict[str, Any] = {"allow": _bool(ip, node, "libvirt.redirfilter allow:", o["allow"])}
    for key in ("class", "vendor", "product", "version"):
        value = o.get(key)
        text = "-1" if value is None or value == -1 else (hex(value) if isinstance(value, int) else to_s(value))
        if text != "-1" and not re.fullmatch(r"0x[0-9a-fA-F]{1,4}|\d+(\.\d+)?", text):
            raise config_error(ip, node, f"libvirt.redirfilter {key}: {text[:20]!r} is not a USB value (e.g. 0x08) or -1")
        out[key] = text
    return out


def _serial(ip: Interpreter, node: Node | None, args: list[Any]) -> dict[str, Any]:
    o = _options(ip, node, "serial", args, ("type", "source"))
    kind = _choice(ip, node, "libvirt.serial type:", o.get("type", "pty"), ("pty", "file"))
    source = o.get("source")
    path, append = None, False
    if source is not None:
        src = opts_of(source)
        for key in src:
            if key not in ("path", "append"):
                raise config_error(ip, node, f"libvirt.serial source: has no {key}:", hint="its options: path:, append:")
        if src.get("path") is None:
            raise config_error(ip, node, "serial :source requires :path to be defined")
        path = _str(ip, node, "libvirt.serial source path:", src["path"])
        append = _bool(ip, node, "libvirt.serial source append:", src["append"]) if src.get("append") is not None else False
    if kind == "file" and path is None:
        raise config_error(ip, node, "libvirt.serial type: 'file' needs source: {path: ...}")
    return {"type": kind, "source_path": path, "source_append": append}


def _watchdog(ip: Interpreter, node: Node | None, args: list[Any]) -> dict[str, Any]:
    o = _options(ip, node, "watchdog", args, ("model", "action"), ("model",))
    return {"model": _choice(ip, node, "libvirt.watchdog model:", o["model"], ("i6300esb", "ib700", "itco", "diag288")),
            "action": _opt_str(ip, node, "watchdog", o, "action",
                               ("reset", "shutdown", "poweroff", "pause", "none", "dump", "inject-nmi")) or "reset"}


def _smartcard(ip: Interpreter, node: Node | None, args: list[Any]) -> dict[str, Any]:
    o = _options(ip, node, "smartcard", args, ("mode", "type", "source_mode", "source_host", "source_service"),
                 ("mode",))
    if to_s(o["mode"]) != "passthrough":
        raise config_error(ip, node, "Currently only passthrough mode is supported!", hint="libvirt.smartcard mode: 'passthrough'")
    kind = _opt_str(ip, node, "smartcard", o, "type", ("spicevmc", "tcp")) or "spicevmc"
    out: dict[str, Any] = {"mode": "passthrough", "type": kind}
    if kind == "tcp":
        if o.get("source_mode") is None or o.get("source_host") is None or o.get("source_service") is None:
            raise config_error(ip, node, 'If using type "tcp", option "source_mode", "source_host" and '
                                         '"source_service" must be specified.')
        out["source_mode"] = _choice(ip, node, "libvirt.smartcard source_mode:", o["source_mode"], ("bind", "connect"))
        out["source_host"] = _str(ip, node, "libvirt.smartcard source_host:", o["source_host"])
        out["source_service"] = str(_int(ip, node, "libvirt.smartcard source_service:", o["source_service"], positive=True))
    return out


def _disk_driver(ip: Interpreter, node: Node | None, args: list[Any]) -> dict[str, Any]:
    o = _options(ip, node, "disk_driver", args, ("cache", "io", "copy_on_read", "discard", "detect_zeroes", "type",
                                                  "address_type"))
    if "address_type" in o:
        ip.warn("libvirt.disk_driver address_type: is ignored by vagrant-libvirt (and so by vmctl): "
                "use libvirt.disk_address_type", node)
    allowed = {"cache": DISK_CACHE, "io": DISK_IO, "copy_on_read": ON_OFF, "discard": DISK_DISCARD,
               "detect_zeroes": DISK_DETECT_ZEROES, "type": ("qcow2", "raw")}
    # A nil value removes the attribute, as in vagrant-libvirt.
    return {k: (_choice(ip, node, f"libvirt.disk_driver {k}:", v, allowed[k]) if v is not None else None)
            for k, v in o.items() if k in allowed}


def _qemuargs(ip: Interpreter, node: Node | None, args: list[Any]) -> dict[str, Any]:
    o = _options(ip, node, "qemuargs", args, ("value",), ("value",))
    return {"value": _str(ip, node, "libvirt.qemuargs value:", o["value"])}


def _qemuenv(ip: Interpreter, node: Node | None, args: list[Any]) -> dict[str, str]:
    if len(args) != 1 or not isinstance(args[0], dict):
        raise config_error(ip, node, "libvirt.qemuenv takes a Hash of variable => value, e.g. QEMU_AUDIO_DRV: 'none'")
    out = {}
    for key, value in opts_of(args[0]).items():
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]{0,127}", key):
            raise config_error(ip, node, f"libvirt.qemuenv {key[:40]!r} is not an environment variable name")
        out[key] = _str(ip, node, f"libvirt.qemuenv {key}", value)
    return out


def _boot(ip: Interpreter, node: Node | None, args: list[Any]) -> dict[str, Any]:
    if len(args) != 1:
        raise config_error(ip, node, "libvirt.boot takes one device: 'hd', 'cdrom', 'network' or a disk such as 'vdb'")
    value = args[0]
    if isinstance(value, dict):
        o = opts_of(value)
        if "network" not in o or any(k not in ("network", "dev") for k in o):
            raise config_error(ip, node, "libvirt.boot with a Hash names a network: 'network' => NAME")
        return {"device": "network", "network": _str(ip, node, "libvirt.boot network", o["network"])}
    device = _str(ip, node, "libvirt.boot", value)
    if device not in ("hd", "cdrom", "network", "fd") and not DEVICE_NAME.fullmatch(device) \
            and device not in ("fda", "fdb"):
        raise config_error(ip, node, f"libvirt.boot {device!r} is not a boot device",
                           hint="'hd', 'cdrom', 'network', or a disk's device name such as 'vdb' or 'hda'")
    return {"device": device, "network": None}


def _hyperv_feature(ip: Interpreter, node: Node | None, args: list[Any]) -> dict[str, Any]:
    o = _options(ip, node, "hyperv_feature", args, ("name", "state", "retries", "value"), ("name", "state"))
    name = _choice(ip, node, "libvirt.hyperv_feature name:", o["name"], HYPERV_FEATURES)
    if name == "spinlocks" and o.get("retries") is None:
        raise config_error(ip, node, "Feature spinlocks requires retries parameter")
    return {"name": name, "state": _choice(ip, node, "libvirt.hyperv_feature state:", o["state"], ON_OFF),
            "retries": _int(ip, node, "libvirt.hyperv_feature retries:", o["retries"], positive=True)
            if o.get("retries") is not None else None,
            "value": _shaped(ip, node, "libvirt.hyperv_feature value:", o["value"], re.compile(r"[A-Za-z0-9]{1,12}"),
                             "a vendor id (up to 12 letters and digits)") if o.get("value") is not None else None}


def _clock_timer(ip: Interpreter, node: Node | None, args: list[Any]) -> dict[str, Any]:
    o = _options(ip, node, "clock_timer", args, ("name", "track", "tickpolicy", "frequency", "mode", "present"),
                 ("name",))
    for key, value in o.items():
        if value is None:
            raise config_error(ip, node, f"Value of timer option {key} is nil")
    return {
        "name": _choice(ip, node, "libvirt.clock_timer name:", o["name"], TIMERS),
        "track": _opt_str(ip, node, "clock_timer", o, "track", ("boot", "guest", "wall", "realtime")),
        "tickpolicy": _opt_str(ip, node, "clock_timer", o, "tickpolicy", ("delay", "catchup", "merge", "discard")),
        "frequency": _int(ip, node, "libvirt.clock_timer frequency:", o["frequency"], positive=True)
        if "frequency" in o else None,
        "mode": _opt_str(ip, node, "clock_timer", o, "mode", ("auto", "native", "emulate", "paravirt", "smpsafe")),
        "present": ("yes" if _bool(ip, node, "libvirt.clock_timer present:", o["present"]) else "no")
        if "present" in o else None,
    }


def _numa(ip: Interpreter, node: Node | None, value: Any) -> list[dict[str, Any]]:
    if not isinstance(value, list) or not value:
        raise config_error(ip, node, "libvirt.numa_nodes must be a list of {cpus: 'N-M', memory: MiB}")
    nodes = []
    for item in value:
        o = opts_of(item)
        for key in o:
            if key not in ("cpus", "memory", "memAccess"):
                raise config_error(ip, node, f"libvirt.numa_nodes entries have no {key}:", hint="cpus:, memory:, memAccess:")
        cpus = _str(ip, node, "libvirt.numa_nodes cpus:", o.get("cpus"))
        if not re.fullmatch(r"\d+-\d+", cpus):
            raise config_error(ip, node, 'numa_nodes[:cpus] must be in format "integer-integer"')
        nodes.append({"cpus": cpus, "memory": _int(ip, node, "libvirt.numa_nodes memory:", o.get("memory"), positive=True),
                      "memAccess": _choice(ip, node, "libvirt.numa_nodes memAccess:", o["memAccess"], ("shared", "private"))
                      if o.get("memAccess") is not None else None})
    return nodes


def _sysinfo(ip: Interpreter, node: Node | None, value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise config_error(ip, node, "libvirt.sysinfo must be a Hash of blocks, e.g. {'system' => {'serial' => '123'}}")
    out: dict[str, Any] = {}
    for block_key, entries in value.items():
        block = to_s(block_key)
        if block not in SYSINFO_BLOCKS:
            guess = did_you_mean(block, list(SYSINFO_BLOCKS))
            raise config_error(ip, node, f"invalid sysinfo element '{block}'; smbios sysinfo elements supported: "
                               f"{', '.join(SYSINFO_BLOCKS)}", hint=f"did you mean {guess!r}?" if guess else None)
        names = SYSINFO_BLOCKS[block]
        if block == "oem strings":
            if not isinstance(entries, list):
                raise config_error(ip, node, "sysinfo 'oem strings' must be a list of strings")
            texts = []
            for entry in entries:
                if not isinstance(entry, str | Symbol):
                    raise config_error(ip, node, f"sysinfo.oem strings expects entries to be stringy, got {inspect(entry)[:40]}")
                text = _str(ip, node, "libvirt.sysinfo oem strings", entry)
                if not text:
                    ip.warn("Libvirt Provider: 'sysinfo.oem strings' contains an empty or nil entry and will be discarded", node)
                    continue
                texts.append(text)
            out[block] = texts
            continue
        if not isinstance(entries, dict):
            raise config_error(ip, node, f"sysinfo '{block}' must be a Hash of entry => text")
        block_out: dict[str, Any] = {}
        for name_key, text in entries.items():
            name = to_s(name_key)
            if block == "fw_cfg":
                if not re.fullmatch(r"opt/[A-Za-z0-9_.,/-]{1,50}", name) or ".." in name:
                    raise config_error(ip, node, f"sysinfo fw_cfg name {name[:60]!r} is not a fw_cfg name",
                                       hint="names start with opt/, e.g. opt/com.coreos/config")
                if isinstance(text, dict):
                    o = opts_of(text)
                    if list(o) not in (["file"], ["string"]):
                        raise config_error(ip, node, f"sysinfo fw_cfg {name}: give file: PATH or string: TEXT")
                    block_out[name] = {k: _str(ip, node, f"libvirt.sysinfo fw_cfg {name}", v) for k, v in o.items()}
                else:
                    block_out[name] = {"string": _str(ip, node, f"libvirt.sysinfo fw_cfg {name}", text)}
                continue
            assert names is not None
            if name not in names:
                raise config_error(ip, node, f"'sysinfo.{block}' does not support entry name '{name}'; entries "
                                   f"supported: {', '.join(names)}", hint=_guess_value(name, names))
            if text is None or to_s(text) == "":
                ip.warn(f"Libvirt Provider: sysinfo.{block}.{name} is nil or empty and therefore has no effect.", node)
                continue
            block_out[name] = _str(ip, node, f"libvirt.sysinfo {block} {name}", text)
        out[block] = block_out
    return out


PARSERS: dict[str, Any] = {
    "cputopology": _cputopology, "cpu_feature": _cpu_feature, "memorybacking": _memorybacking,
    "memtune": _memtune, "launchsecurity": _launchsecurity, "input": _input, "channel": _channel,
    "random": _random, "pci": _pci, "usb": _usb, "usb_controller": _usb_controller, "redirdev": _redirdev,
    "redirfilter": _redirfilter, "serial": _serial, "watchdog": _watchdog, "smartcard": _smartcard,
    "disk_driver": _disk_driver, "qemuargs": _qemuargs, "boot": _boot, "hyperv_feature": _hyperv_feature,
    "clock_timer": _clock_timer,
}

__all__ = ["ATTRIBUTES", "METHODS", "Entry", "LibvirtConfig", "builtins", "merge_libvirt", "parse_size"]
