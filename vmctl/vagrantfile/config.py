"""The objects a Vagrantfile's blocks receive (`config`, `config.vm`, the libvirt provider,
triggers, ...), which record settings with the line that made them.

One `ConfigRoot` is one layer, as in Vagrant: the box's Vagrantfile, the project's
top level, a `define` block, a provider `override`. The loader merges layers with
Vagrant's rules (scalars: the later layer wins; lists concatenate; networks, synced folders
and named provisioners merge by their id).

Known settings that vmctl does not use are accepted with a warning; unknown settings in a
namespace vmctl knows are errors with a "did you mean"; namespaces of plugins are recorded
and warned about. The libvirt provider's settings are in libvirt.py.
"""

from __future__ import annotations

import difflib
import itertools
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from vmctl.errors import ConfigError
from vmctl.untrusted import machine_name_problem, visible
from vmctl.vagrantfile import builtins
from vmctl.vagrantfile.objects import RObject
from vmctl.vagrantfile.values import Proc, Symbol, inspect, to_json_value, to_s

if TYPE_CHECKING:
    from vmctl.vagrantfile.interpreter import Interpreter
    from vmctl.vagrantfile.syntax import Node


@dataclass
class Ignored:
    setting: str  # e.g. "vm.box_check_update", "virtualbox.memory", "vbguest.auto_update"
    value: Any
    node: Node | None


@dataclass
class NetworkRec:
    type: str
    options: dict[str, Any]
    node: Node


@dataclass
class FolderRec:
    options: dict[str, Any]  # includes "hostpath" and "guestpath"
    node: Node
    # Where each option was set, when layers merged options of one folder (a box's
    # Vagrantfile may set some, the project others): the rules for a box apply per option.
    option_nodes: dict[str, Node] = field(default_factory=dict)

    def node_of(self, key: str) -> Node:
        return self.option_nodes.get(key, self.node)


@dataclass
class ProvisionerRec:
    name: str | None
    type: str
    options: dict[str, Any]
    node: Node
    preserve_order: bool = False
    option_nodes: dict[str, Node] = field(default_factory=dict)

    def node_of(self, key: str) -> Node:
        return self.option_nodes.get(key, self.node)


def merged_option_nodes(earlier: FolderRec | ProvisionerRec, later: FolderRec | ProvisionerRec) -> dict[str, Node]:
    """Where each option of LATER merged over EARLIER was set."""
    nodes = {k: earlier.node_of(k) for k in earlier.options}
    nodes.update({k: later.node_of(k) for k in later.options})
    return nodes


@dataclass
class DiskRec:
    type: str  # disk | dvd | floppy
    options: dict[str, Any]
    node: Node


@dataclass
class DefineRec:
    name: str
    options: dict[str, Any]
    blocks: list[Proc]
    node: Node


@dataclass
class TriggerRec:
    when: str
    commands: list[str]
    options: dict[str, Any]
    node: Node


@dataclass
class ProviderRec:
    name: str
    block: Proc | None
    node: Node


_unique = itertools.count()


def opts_of(value: Any) -> dict[str, Any]:
    """Ruby keyword options ({:ip => "..", "ip" => ..}) as a dict keyed by plain names."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise builtins.err("TypeError", f"expected options (a Hash), got {inspect(value)[:60]}")
    return {(k.name if isinstance(k, Symbol) else to_s(k)): v for k, v in value.items()}


def split_options(args: list[Any]) -> tuple[list[Any], dict[str, Any]]:
    if args and isinstance(args[-1], dict):
        return list(args[:-1]), opts_of(args[-1])
    return list(args), {}


def did_you_mean(name: str, candidates: list[str]) -> str | None:
    close = difflib.get_close_matches(name, candidates, n=1, cutoff=0.6)
    return close[0] if close else None


def config_error(ip: Interpreter, node: Node | None, message: str, hint: str | None = None) -> ConfigError:
    return ConfigError(message, hint=hint, **ip.location(node))


class Namespace(RObject):
    """A group of settings (`config.vm`, `config.ssh`, the libvirt provider, ...)."""

    prefix = "config"
    ruby_class = "Object"
    settings: frozenset[str] = frozenset()  # implemented: kept in self.values
    ignored_settings: frozenset[str] = frozenset()  # real, unused by vmctl: a warning
    silent_settings: frozenset[str] = frozenset()  # real, unused, common: accepted quietly
    methods: frozenset[str] = frozenset()  # handled by call_<name>

    def __init__(self, root: ConfigRoot) -> None:
        self.root = root
        self.values: dict[str, tuple[Any, Node | None]] = {}

    @property
    def ruby_describe(self) -> str:
        return self.prefix

    def ruby_to_s(self) -> str:
        return f"#<{self.prefix}>"

    def known(self) -> list[str]:
        return sorted(self.settings | self.ignored_settings | self.silent_settings | self.methods)

    def rb_send(self, ip: Interpreter, name: str, args: list[Any], block: Proc | None, node: Node | None) -> Any:
        if name in self.methods:
            return getattr(self, "call_" + name.rstrip("?!"))(ip, args, block, node)
        attr = name[:-1] if name.endswith("=") else name
        setter = name.endswith("=")
        if attr in self.settings:
            if setter:
                builtins.arity(args, 1)
                self.set(ip, attr, args[0], node)
                return args[0]
            if not args:
                return self.get(attr)
        if attr in self.ignored_settings or attr in self.silent_settings:
            if setter or args or block is not None:
                value = args[0] if setter and args else list(args)
                self.ignore(ip, attr, value, node, warn=attr not in self.silent_settings)
                return value
            return None
        if name in builtins.OBJECT and name not in ("==",):
            return super().rb_send(ip, name, args, block, node)
        if name == "==":
            return bool(args) and args[0] is self
        return self.unknown(ip, attr, args, node)

    def unknown(self, ip: Interpreter, attr: str, args: list[Any], node: Node | None) -> Any:
        if ip.inert:
            self.root.ignored.append(Ignored(f"{self.prefix_short}.{attr}", _plain(args), node))
            return None
        guess = did_you_mean(attr, self.known())
        raise config_error(
            ip, node, f"unknown setting `{self.prefix}.{attr}`",
            hint=f"did you mean `{self.prefix}.{guess}`?" if guess else
            "see docs/vagrantfile.md for the settings vmctl supports",
        )

    @property
    def prefix_short(self) -> str:
        return self.prefix.removeprefix("config.")

    def set(self, ip: Interpreter, attr: str, value: Any, node: Node | None) -> None:
        if ip.inert:
            self.root.ignored.append(Ignored(f"{self.prefix_short}.{attr}", _plain(value), node))
            return
        self.values[attr] = (self.check(ip, attr, value, node), node)

    def check(self, ip: Interpreter, attr: str, value: Any, node: Node | None) -> Any:
        return value

    def get(self, attr: str) -> Any:
        entry = self.values.get(attr)
        return entry[0] if entry else None

    def ignore(self, ip: Interpreter, attr: str, value: Any, node: Node | None, *, warn: bool = True) -> None:
        self.root.ignored.append(Ignored(f"{self.prefix_short}.{attr}", _plain(value), node))
        if warn and not ip.inert:
            ip.warn(f"{self.prefix}.{attr} is not used by vmctl (ignored)", node)


def _plain(value: Any) -> Any:
    return to_json_value(value)


# -- value checks ---------------------------------------------------------------------------


def want_str(ip: Interpreter, setting: str, value: Any, node: Node | None, *, allow_nil: bool = True) -> str | None:
    if value is None and allow_nil:
        return None
    if isinstance(value, Symbol):
        return value.name
    if not isinstance(value, str):
        raise config_error(ip, node, f"{setting} must be a string, not {inspect(value)[:60]}")
    return value


def want_int(ip: Interpreter, setting: str, value: Any, node: Node | None, *, allow_nil: bool = True) -> int | None:
    if value is None and allow_nil:
        return None
    if isinstance(value, str) and value.strip().isdigit():
        return int(value.strip())
    if isinstance(value, bool) or not isinstance(value, int):
        raise config_error(ip, node, f"{setting} must be an integer, not {inspect(value)[:60]}")
    return value


def want_bool(ip: Interpreter, setting: str, value: Any, node: Node | None) -> bool:
    if value is True or value is False:
        return value
    if value in ("true", "false"):
        return value == "true"
    raise config_error(ip, node, f"{setting} must be true or false, not {inspect(value)[:60]}")


def want_str_list(ip: Interpreter, setting: str, value: Any, node: Node | None) -> list[str] | None:
    if value is None:
        return None
    items = value if isinstance(value, list) else [value]
    out = []
    for item in items:
        s = want_str(ip, setting, item, node, allow_nil=False)
        assert s is not None
        out.append(s)
    return out


# -- config (the root) ------------------------------------------------------------------

CORE_UNUSED_NAMESPACES = frozenset({"vagrant", "winrm", "winssh", "nfs", "push", "package", "cloud", "smb"})
KNOWN_PLUGIN_NAMESPACES = frozenset({
    "vbguest", "hostmanager", "proxy", "cache", "disksize", "persistent_storage", "env",
    "landrush", "dns", "hostsupdater", "berkshelf", "omnibus", "librarian_chef", "registration",
    "timezone", "vagrant_dns", "notify_forwarder", "winnfsd", "docker_compose", "reload", "scp",
    "sshfs", "bindfs", "triggers", "gatling", "cachier", "auto_network", "ca_certificates",
    "nfs_guest", "polipo", "vagrant_goodhosts", "goodhosts", "host_shell", "git", "secret",
})


class ConfigRoot(RObject):
    """The `config` object of one layer."""

    ruby_class = "Object"
    ruby_describe = "config"

    def __init__(self, *, allow_define: bool = True) -> None:
        self.ignored: list[Ignored] = []
        self.vm = VmConfig(self, allow_define=allow_define)
        self.ssh = SshConfig(self)
        self.trigger = TriggerConfig(self)
        self.ignition = IgnitionConfig(self)
        self.others: dict[str, AnyNamespace] = {}

    def ruby_to_s(self) -> str:
        return "#<Vagrant::Config::V2::Root>"

    def rb_send(self, ip: Interpreter, name: str, args: list[Any], block: Proc | None, node: Node | None) -> Any:
        if name == "vm" and not args:
            return self.vm
        if name == "ssh" and not args:
            return self.ssh
        if name == "trigger" and not args:
            return self.trigger
        if name == "ignition" and not args:
            return self.ignition
        if name in builtins.OBJECT and name not in ("to_s", "inspect"):
            return super().rb_send(ip, name, args, block, node)
        if name.endswith("=") or args:
            guess = did_you_mean(name.rstrip("="), ["vm", "ssh", "trigger", "vagrant"])
            raise config_error(ip, node, f"unknown setting `config.{name.rstrip('=')}`",
                               hint=f"did you mean `config.{guess}`?" if guess else None)
        ns = self.others.get(name)
        if ns is None:
            plugin = name not in CORE_UNUSED_NAMESPACES
            ns = AnyNamespace(self, f"config.{name}", plugin=plugin)
            self.others[name] = ns
        return ns


class AnyNamespace(RObject):
    """A namespace vmctl does not implement (a plugin's, or winrm/nfs/...): everything is
    accepted, recorded and warned about."""

    ruby_class = "Object"

    def __init__(self, root: ConfigRoot | None, prefix: str, *, plugin: bool, warn: bool = True) -> None:
        self.root = root
        self.prefix = prefix
        self.plugin = plugin
        self.warn = warn
        self.values: dict[str, Any] = {}

    @property
    def ruby_describe(self) -> str:
        return self.prefix

    def ruby_to_s(self) -> str:
        return f"#<{self.prefix}>"

    def rb_send(self, ip: Interpreter, name: str, args: list[Any], block: Proc | None, node: Node | None) -> Any:
        if name in ("to_s", "inspect"):
            return self.ruby_to_s()
        if name in builtins.OBJECT and name not in ("==", "!"):
            return builtins.OBJECT[name](ip, self, args, block, node)
        if name == "[]" and args:
            return self.values.get(to_s(args[0]))
        if name == "[]=" and len(args) == 2:
            self.record(ip, f"[{inspect(args[0])}]", args[1], node)
            self.values[to_s(args[0])] = args[1]
            return args[1]
        attr = name[:-1] if name.endswith("=") else name
        if name.endswith("=") or args or block is not None:
            value = args[0] if (name.endswith("=") and args) else list(args)
            self.values[attr] = value
            self.record(ip, attr, value, node)
            return value
        if attr not in self.values:
            # `v.vmx["memsize"] = ...` reads a hash it then writes into
            self.values[attr] = AnyNamespace(self.root, f"{self.prefix}.{attr}", plugin=self.plugin, warn=False)
        return self.values[attr]

    def record(self, ip: Interpreter, attr: str, value: Any, node: Node | None) -> None:
        setting = f"{self.prefix.removeprefix('config.')}.{attr}" if not attr.startswith("[") else f"{self.prefix.removeprefix('config.')}{attr}"
        if self.root is not None:
            self.root.ignored.append(Ignored(setting, _plain(value), node))
        if self.warn and not ip.inert and self.root is not None:
            top = self.prefix.split(".")[1] if self.prefix.startswith("config.") else self.prefix
            if self.plugin:
                ip.warn(f"{self.prefix}.{attr} is a setting of a plugin ({top}) that vmctl does not use (ignored)", node)
            else:
                ip.warn(f"{self.prefix}.{attr} is not used by vmctl (ignored)", node)


# -- config.vm --------------------------------------------------------------------------

PROVISIONER_TYPES = frozenset({"shell", "file", "ansible", "ansible_local", "docker", "reload"})
OTHER_PROVISIONERS = frozenset({
    "chef_solo", "chef_zero", "chef_client", "chef_apply", "puppet", "puppet_server", "salt",
    "podman", "cfengine", "container",
})


@dataclass
class CloudInitRec:
    """`config.vm.cloud_init :user_data, content_type: ..., path:/inline: ...`."""

    type: str
    options: dict[str, Any]
    node: Node


class VmConfig(Namespace):
    prefix = "config.vm"
    settings = frozenset({"box", "box_version", "box_url", "hostname", "boot_timeout", "ignore_box_vagrantfile",
                          "communicator", "box_server_url", "box_download_ca_cert", "box_download_ca_path",
                          "box_download_checksum", "box_download_checksum_type", "box_download_client_cert",
                          "box_download_insecure", "graceful_halt_timeout", "allow_hosts_modification"})
    # cloud_init_first_boot_only: cloud-init applies a seed once per instance anyway (vmctl keeps
    # the seed attached, so the instance stays the same and nothing runs twice).
    silent_settings = frozenset({"box_check_update", "cloud_init_first_boot_only"})
    ignored_settings = frozenset({
        "allowed_synced_folder_types", "allow_fstab_modification", "base_mac",
        "base_address", "box_download_location_trusted", "box_download_options",
        "box_extra_download_options", "box_architecture",
        "guest", "post_up_message", "usable_port_range",
    })
    methods = frozenset({"define", "provider", "network", "synced_folder", "provision", "disk", "cloud_init",
                         "networks", "synced_folders", "provisioners", "defined_vm_keys"})

    def __init__(self, root: ConfigRoot, *, allow_define: bool = True) -> None:
        super().__init__(root)
        self.allow_define = allow_define
        self.networks: dict[str, NetworkRec] = {}
        self.folders: dict[str, FolderRec] = {}
        self.provisioners: list[ProvisionerRec] = []
        self.providers: list[ProviderRec] = []
        self.defines: dict[str, DefineRec] = {}
        self.disks: list[DiskRec] = []
        self.cloud_inits: list[CloudInitRec] = []

    def check(self, ip: Interpreter, attr: str, value: Any, node: Node | None) -> Any:
        setting = f"config.vm.{attr}"
        if attr in ("box", "hostname"):
            if attr == "hostname" and value is False:
                return None
            return want_str(ip, setting, value, node)
        if attr == "box_version":
            if value is None:
                return None
            return want_str(ip, setting, value if not hasattr(value, "text") else value.text, node)
        if attr == "box_url":
            urls = want_str_list(ip, setting, value, node)
            return urls
        if attr in ("boot_timeout", "graceful_halt_timeout"):
            timeout = want_int(ip, setting, value, node)
            if timeout is not None and timeout <= 0:
                raise config_error(ip, node, f"{setting} must be a positive number of seconds")
            return timeout
        if attr in ("ignore_box_vagrantfile", "box_download_insecure", "allow_hosts_modification"):
            return want_bool(ip, setting, value, node)
        if attr in ("box_server_url", "box_download_ca_cert", "box_download_ca_path", "box_download_client_cert"):
            return want_str(ip, setting, value, node)
        if attr == "box_download_checksum":
            text = want_str(ip, setting, value, node)
            if text is not None and not re.fullmatch(r"[0-9A-Fa-f]{32,128}", text):
                raise config_error(ip, node, f"{setting} must be a hex digest, not {text[:80]!r}")
            return text.lower() if text else None
        if attr == "box_download_checksum_type":
            text = want_str(ip, setting, value, node)
            if text is not None and text.lower() not in ("md5", "sha1", "sha256", "sha384", "sha512"):
                raise config_error(ip, node, f"{setting} must be md5, sha1, sha256, sha384 or sha512, not {text[:40]!r}")
            return text.lower() if text else None
        if attr == "communicator":
            name = want_str(ip, setting, value, node)
            if name not in (None, "ssh"):
                raise config_error(ip, node, f"config.vm.communicator {name!r} is not supported: vmctl talks SSH only")
            return name
        return value

    # config.vm.define "name", primary: true, autostart: false do |m| ... end
    def call_define(self, ip: Interpreter, args: list[Any], block: Proc | None, node: Node | None) -> Any:
        assert node is not None
        positional, options = split_options(args)
        if len(positional) != 1:
            raise config_error(ip, node, "config.vm.define needs a machine name")
        name = to_s(positional[0])
        problem = machine_name_problem(name)
        if problem is not None:
            raise config_error(ip, node, f"invalid machine name {visible(inspect(positional[0])[:80])}: {problem}",
                               hint='name machines like "default", "web", "node-1"')
        if ip.inert:
            return None
        if not self.allow_define:
            ip.warn("config.vm.define inside a define, box or override block is ignored", node)
            return None
        for key in options:
            if key not in ("primary", "autostart"):
                raise config_error(ip, node, f"unknown option `{key}` for config.vm.define",
                                   hint="config.vm.define takes primary: and autostart:")
        record = self.defines.get(name)
        if record is None:
            if len(self.defines) >= 1000:
                raise ip.limit(node, "more than 1000 machines defined")
            record = DefineRec(name, {}, [], node)
            self.defines[name] = record
        record.options.update(options)
        if block is not None:
            record.blocks.append(block)
        return None

    def call_defined_vm_keys(self, ip: Interpreter, args: list[Any], block: Proc | None, node: Node | None) -> Any:
        return [Symbol(n) for n in self.defines]

    # config.vm.provider :libvirt do |libvirt, override| ... end
    def call_provider(self, ip: Interpreter, args: list[Any], block: Proc | None, node: Node | None) -> Any:
        assert node is not None
        builtins.arity(args, 1)
        name = to_s(args[0])
        if not ip.inert:
            self.providers.append(ProviderRec(name, block, node))
        return None

    # config.vm.network "forwarded_port", guest: 80, host: 8080
    def call_network(self, ip: Interpreter, args: list[Any], block: Proc | None, node: Node | None) -> Any:
        assert node is not None
        positional, options = split_options(args)
        if len(positional) != 1:
            raise config_error(ip, node, "config.vm.network needs a network type, e.g. \"private_network\"")
        kind = to_s(positional[0])
        if ip.inert:
            self.root.ignored.append(Ignored(f"vm.network.{kind}", _plain(options), node))
            return None
        options.setdefault("protocol", "tcp") if kind == "forwarded_port" else None
        if "id" in options:
            key = f"{kind}-{to_s(options['id'])}"
        elif kind == "forwarded_port":
            host = options.get("host")
            suffix = to_s(host) if host is not None else f"guest{to_s(options.get('guest'))}"
            key = f"{kind}-{to_s(options.get('host_ip'))}{to_s(options.get('protocol'))}{suffix}"
        else:
            key = f"{kind}-{next(_unique)}"
        previous = self.networks.get(key)
        if previous is not None:
            options = {**previous.options, **options}
        self.networks[key] = NetworkRec(kind, options, node)
        return None

    def call_networks(self, ip: Interpreter, args: list[Any], block: Proc | None, node: Node | None) -> Any:
        return [[Symbol(n.type), {Symbol(k): v for k, v in n.options.items()}] for n in self.networks.values()]

    # config.vm.synced_folder ".", "/vagrant", type: "rsync"
    def call_synced_folder(self, ip: Interpreter, args: list[Any], block: Proc | None, node: Node | None) -> Any:
        assert node is not None
        positional, options = split_options(args)
        if len(positional) != 2:
            raise config_error(ip, node, "config.vm.synced_folder needs a host path and a guest path")
        host, guest = positional
        if ip.inert:
            self.root.ignored.append(Ignored("vm.synced_folder", _plain([host, guest, options]), node))
            return None
        if not isinstance(guest, str | Symbol):
            raise config_error(ip, node, f"the guest path of a synced folder must be a string, not {inspect(guest)[:60]}")
        guest_path = to_s(guest)
        if len(guest_path) > 1:
            guest_path = guest_path.rstrip("/") or "/"
        options["guestpath"] = guest_path
        options["hostpath"] = host
        options.setdefault("disabled", False)
        key = guest_path
        previous = self.folders.get(key)
        if previous is not None:
            options = {**previous.options, **options}
        self.folders[key] = FolderRec(options, node)
        return None

    def call_synced_folders(self, ip: Interpreter, args: list[Any], block: Proc | None, node: Node | None) -> Any:
        return {f.options["guestpath"]: {Symbol(k): v for k, v in f.options.items()} for f in self.folders.values()}

    # config.vm.provision "shell", inline: "..."   /   config.vm.provision "name", type: "shell"
    def call_provision(self, ip: Interpreter, args: list[Any], block: Proc | None, node: Node | None) -> Any:
        assert node is not None
        positional, options = split_options(args)
        if len(positional) != 1:
            raise config_error(ip, node, "config.vm.provision needs a provisioner type, e.g. \"shell\"")
        name: str | None = to_s(positional[0])
        kind = name
        if "type" in options:
            kind = to_s(options.pop("type"))
        else:
            name = None
        assert kind is not None
        if ip.inert:
            self.root.ignored.append(Ignored(f"vm.provision.{kind}", _plain(options), node))
            return None
        if kind not in PROVISIONER_TYPES:
            what = "provisioner" if kind in OTHER_PROVISIONERS else "unknown provisioner type"
            raise config_error(
                ip, node,
                f"the {kind} {what} is not supported: vmctl runs the shell, file, ansible, "
                "ansible_local, docker and reload provisioners",
                hint="use config.vm.provision \"shell\" (or another of those) instead",
            )
        preserve = bool(options.pop("preserve_order", False))
        for ordering in ("before", "after"):
            if ordering in options:
                ip.warn(f"the provisioner option {ordering}: is not supported by vmctl (ignored)", node)
                options.pop(ordering)
        options.pop("communicator_required", None)
        if block is not None:
            sub = ProvisionerConfig(self.root, kind)
            ip.call_configure_block(block, [sub])
            block_options = sub.options()
            if "images" in block_options and isinstance(options.get("images"), list):
                block_options["images"] = [*options["images"], *block_options["images"]]  # docker: they add up
            options.update(block_options)
        if name is not None:
            for rec in self.provisioners:
                if rec.name == name:
                    rec.options.update(options)
                    if kind != rec.type:
                        rec.type = kind
                    return None
        if len(self.provisioners) >= 1000:
            raise ip.limit(node, "more than 1000 provisioners")
        self.provisioners.append(ProvisionerRec(name, kind, options, node, preserve))
        return None

    def call_provisioners(self, ip: Interpreter, args: list[Any], block: Proc | None, node: Node | None) -> Any:
        return [{Symbol("name"): p.name, Symbol("type"): Symbol(p.type)} for p in self.provisioners]

    # config.vm.disk :disk, name: "data", size: "10GB"   (Vagrant core's disks)
    def call_disk(self, ip: Interpreter, args: list[Any], block: Proc | None, node: Node | None) -> Any:
        positional, options = split_options(args)
        if len(positional) != 1:
            raise config_error(ip, node, "config.vm.disk needs a type: :disk, :dvd or :floppy")
        if ip.inert:
            self.root.ignored.append(Ignored("vm.disk", _plain([positional, options]), node))
            return None
        kind = to_s(positional[0])
        if kind not in ("disk", "dvd", "floppy"):
            raise config_error(ip, node, f"config.vm.disk type {kind!r} is not one of :disk, :dvd, :floppy",
                               hint=f"did you mean :{did_you_mean(kind, ['disk', 'dvd', 'floppy']) or 'disk'}?")
        known = ("name", "size", "primary", "file", "provider_config", "disk_ext")
        for key in options:
            if key not in known and "__" not in key:
                guess = did_you_mean(key, list(known))
                raise config_error(ip, node, f"config.vm.disk has no option {key}:",
                                   hint=f"did you mean {guess}:?" if guess else f"its options: {', '.join(known)}")
        if len(self.disks) >= 100:
            raise ip.limit(node, "more than 100 disks")
        self.disks.append(DiskRec(kind, options, node))
        return None

    # config.vm.cloud_init :user_data, content_type: "text/cloud-config", path: "user-data.yml"
    # config.vm.cloud_init do |c| c.content_type = "text/x-shellscript"; c.inline = "..." end
    def call_cloud_init(self, ip: Interpreter, args: list[Any], block: Proc | None, node: Node | None) -> Any:
        assert node is not None
        positional, options = split_options(args)
        if len(positional) > 1:
            raise config_error(ip, node, "config.vm.cloud_init takes one type (:user_data) and options")
        kind = to_s(positional[0]) if positional else "user_data"
        if ip.inert:
            self.root.ignored.append(Ignored("vm.cloud_init", _plain([kind, options]), node))
            return None
        if block is not None:
            sub = CloudInitConfig(self.root)
            ip.call_configure_block(block, [sub])
            options.update({k: v for k, (v, _) in sub.values.items()})
            if "type" in options:
                kind = to_s(options.pop("type"))
        if len(self.cloud_inits) >= 100:
            raise ip.limit(node, "more than 100 cloud_init parts")
        self.cloud_inits.append(CloudInitRec(kind, options, node))
        return None


class CloudInitConfig(Namespace):
    """The block form of `config.vm.cloud_init`."""

    prefix = "cloud_init"
    settings = frozenset({"type", "content_type", "content_disposition_filename", "path", "inline"})


# Every option of Vagrant's ansible provisioners (both run ansible-playbook; `ansible` on this
# computer, `ansible_local` in the guest), and the deprecated names that still work.
ANSIBLE_COMMON = frozenset({
    "playbook", "inventory_path", "limit", "groups", "host_vars", "extra_vars", "raw_arguments",
    "tags", "skip_tags", "start_at_task", "verbose", "become", "become_user", "vault_password_file",
    "config_file", "galaxy_role_file", "galaxy_roles_path", "galaxy_command", "playbook_command",
    "compatibility_mode", "version",
})
ANSIBLE_HOST = ANSIBLE_COMMON | {"raw_ssh_args", "host_key_checking", "ask_become_pass", "ask_vault_pass",
                                 "force_remote_user"}
ANSIBLE_GUEST = ANSIBLE_COMMON | {"install", "install_mode", "pip_args", "pip_install_cmd", "provisioning_path",
                                  "tmp_path"}
ANSIBLE_DEPRECATED = {"sudo": "become", "sudo_user": "become_user", "ask_sudo_pass": "ask_become_pass"}


class ProvisionerConfig(Namespace):
    """The block form: `config.vm.provision "shell" do |s| s.inline = "..." end`."""

    shell_settings = frozenset({"inline", "path", "args", "env", "privileged", "name", "run", "reboot", "reset"})
    shell_ignored = frozenset({
        "upload_path", "keep_color", "binary", "sensitive", "powershell_args",
        "powershell_elevated_interactive", "md5", "sha1", "sha256", "sha384", "sha512", "remote",
    })

    def __init__(self, root: ConfigRoot, kind: str) -> None:
        super().__init__(root)
        self.kind = kind
        self.prefix = f"{kind} provisioner"
        common = {"name", "run"}
        if kind == "shell":
            self.settings = self.shell_settings
            self.ignored_settings = self.shell_ignored
        elif kind == "file":
            self.settings = frozenset({"source", "destination", *common})
        elif kind in ("ansible", "ansible_local"):
            names = ANSIBLE_HOST if kind == "ansible" else ANSIBLE_GUEST
            self.settings = frozenset(names | set(ANSIBLE_DEPRECATED) | common)
            # the other ansible provisioner's options: a warning (resolve.py), not an error
            self.ignored_settings = frozenset((ANSIBLE_GUEST if kind == "ansible" else ANSIBLE_HOST) - names)
        elif kind == "docker":
            self.settings = frozenset({"images", *common})
            self.methods = frozenset({"pull_images", "build_image", "run", "post_install_provision"})
        else:
            self.settings = frozenset(common)
        self.extra: dict[str, Any] = {}  # what the docker provisioner's methods collect

    @property
    def prefix_short(self) -> str:
        return self.prefix.replace(" provisioner", "")

    def set(self, ip: Interpreter, attr: str, value: Any, node: Node | None) -> None:
        if attr in ANSIBLE_DEPRECATED and self.kind in ("ansible", "ansible_local"):
            attr = ANSIBLE_DEPRECATED[attr]
        super().set(ip, attr, value, node)

    def ignore(self, ip: Interpreter, attr: str, value: Any, node: Node | None, *, warn: bool = True) -> None:
        self.values[attr] = (value, node)  # validated (and warned about) with the other options

    def options(self) -> dict[str, Any]:
        """The options the block set, with what the docker methods collected."""
        out = {k: v for k, (v, _) in self.values.items()}
        for key, value in self.extra.items():
            if key == "images" and "images" in out:
                out["images"] = [*(out["images"] or []), *value]
            else:
                out[key] = value
        return out

    # docker: d.pull_images "ubuntu", "redis"
    def call_pull_images(self, ip: Interpreter, args: list[Any], block: Proc | None, node: Node | None) -> Any:
        self.extra.setdefault("images", []).extend(args)
        return None

    # docker: d.build_image "/vagrant/app", args: "-t app"
    def call_build_image(self, ip: Interpreter, args: list[Any], block: Proc | None, node: Node | None) -> Any:
        positional, options = split_options(args)
        if len(positional) != 1:
            raise config_error(ip, node, "build_image needs the path of a folder with a Dockerfile (in the guest)")
        self.extra.setdefault("build_images", []).append([positional[0], options])
        return None

    # docker: d.run "redis", image: "redis:7", args: "-p 6379:6379"
    def call_run(self, ip: Interpreter, args: list[Any], block: Proc | None, node: Node | None) -> Any:
        positional, options = split_options(args)
        if len(positional) != 1:
            raise config_error(ip, node, "run needs a container name, e.g. d.run \"redis\"")
        containers = self.extra.setdefault("containers", {})
        name = to_s(positional[0])
        containers[name] = {**containers.get(name, {}), **options}
        return None

    # docker: d.post_install_provision "shell", inline: "..."
    def call_post_install_provision(self, ip: Interpreter, args: list[Any], block: Proc | None,
                                    node: Node | None) -> Any:
        positional, options = split_options(args)
        if len(positional) != 1:
            raise config_error(ip, node, "post_install_provision needs a provisioner type, e.g. \"shell\"")
        kind = to_s(options.pop("type")) if "type" in options else to_s(positional[0])
        if kind == "docker":
            raise config_error(ip, node, "the docker provisioner's post_install_provision cannot be another docker provisioner")
        if block is not None:
            sub = ProvisionerConfig(self.root, kind)
            ip.call_configure_block(block, [sub])
            options.update(sub.options())
        self.extra["post_install"] = [kind, options]
        return None


# -- config.ssh -------------------------------------------------------------------------


class IgnitionConfig(Namespace):
    """The vagrant-ignition plugin's settings: an Ignition config handed to the machine at
    its first boot, which vmctl puts in QEMU's fw_cfg as opt/com.coreos/config (where Fedora
    CoreOS and the coreos-like box read it on QEMU)."""

    prefix = "config.ignition"
    settings = frozenset({"enabled", "path", "config_obj"})
    # vagrant-ignition's VirtualBox-only settings (a config drive, a hostname and an address
    # written into the config): nothing they do applies to a fw_cfg config.
    ignored_settings = frozenset({"drive_name", "drive_root", "hostname", "ip"})

    def check(self, ip: Interpreter, attr: str, value: Any, node: Node | None) -> Any:
        if attr == "enabled":
            return want_bool(ip, "config.ignition.enabled", value, node)
        if attr == "path":
            text = want_str(ip, "config.ignition.path", value, node)
            if text is not None and any(ord(c) < 32 for c in text):
                raise config_error(ip, node, "config.ignition.path holds a control character")
            return text
        # config_obj: the provider object vagrant-ignition attaches the config to
        # (`config.ignition.config_obj = vb`); here that is always the libvirt machine.
        return None


class SshConfig(Namespace):
    prefix = "config.ssh"
    settings = frozenset({
        "username", "insert_key", "private_key_path", "port", "guest_port", "shell", "sudo_command", "pty",
        "keep_alive", "connect_timeout", "forward_agent", "forward_x11", "forward_env", "keys_only", "extra_args",
        "config", "remote_user",
    })
    ignored_settings = frozenset({
        "password", "host", "paranoid", "verify_host_key", "proxy_command", "export_command_template",
        "compression", "dsa_authentication", "connect_retries", "connect_retry_delay",
        "ignore_unknown_hosts", "disable_deprecated_algorithms", "key_type",
    })

    def check(self, ip: Interpreter, attr: str, value: Any, node: Node | None) -> Any:
        setting = f"config.ssh.{attr}"
        if attr in ("username", "shell", "sudo_command", "config", "remote_user"):
            text = want_str(ip, setting, value, node)
            if text is not None and any(ord(c) < 32 for c in text):
                raise config_error(ip, node, f"{setting} holds a control character")
            return text
        if attr in ("insert_key", "pty", "keep_alive", "forward_agent", "forward_x11", "keys_only"):
            return want_bool(ip, setting, value, node)
        if attr in ("private_key_path", "forward_env"):
            return want_str_list(ip, setting, value, node)
        if attr in ("port", "guest_port", "connect_timeout"):
            number = want_int(ip, setting, value, node)
            if number is not None and not 0 < number < (65536 if "port" in attr else 3600):
                raise config_error(ip, node, f"{setting} {number} is out of range")
            return number
        if attr == "extra_args":
            if isinstance(value, str):
                import shlex

                try:
                    return shlex.split(value)
                except ValueError as exc:
                    raise config_error(ip, node, f"{setting} cannot be split into arguments: {exc}") from None
            return want_str_list(ip, setting, value, node)
        return value


# -- triggers ---------------------------------------------------------------------------


class TriggerConfig(Namespace):
    prefix = "config.trigger"
    methods = frozenset({"before", "after"})

    def __init__(self, root: ConfigRoot) -> None:
        super().__init__(root)
        self.triggers: list[TriggerRec] = []

    def call_before(self, ip: Interpreter, args: list[Any], block: Proc | None, node: Node | None) -> Any:
        return self.add(ip, "before", args, block, node)

    def call_after(self, ip: Interpreter, args: list[Any], block: Proc | None, node: Node | None) -> Any:
        return self.add(ip, "after", args, block, node)

    def add(self, ip: Interpreter, when: str, args: list[Any], block: Proc | None, node: Node | None) -> Any:
        assert node is not None
        positional, options = split_options(args)
        commands: list[str] = []
        for value in positional:
            for item in value if isinstance(value, list) else [value]:
                commands.append(to_s(item))
        if not commands:
            raise config_error(ip, node, f"config.trigger.{when} needs at least one command, e.g. :up")
        if ip.inert:
            self.root.ignored.append(Ignored(f"trigger.{when}", _plain([commands, options]), node))
            return None
        if block is not None:
            sub = TriggerBlockConfig(self.root)
            ip.call_configure_block(block, [sub])
            options.update({k: v for k, (v, _) in sub.values.items()})
        if len(self.triggers) >= 1000:
            raise ip.limit(node, "more than 1000 triggers")
        self.triggers.append(TriggerRec(when, commands, options, node))
        return None


class TriggerBlockConfig(Namespace):
    prefix = "trigger"
    settings = frozenset({"name", "info", "warn", "on_error", "run", "run_remote", "only_on", "ignore",
                          "exit_codes", "abort", "type"})
    methods = frozenset({"ruby"})

    def call_ruby(self, ip: Interpreter, args: list[Any], block: Proc | None, node: Node | None) -> Any:
        self.root.ignored.append(Ignored("trigger.ruby", None, node))
        ip.warn("trigger.ruby is not supported by vmctl: the Ruby block is not run (ignored)", node)
        return None


@dataclass
class ProviderResult:
    libvirt: dict[str, tuple[Any, Node | None]] = field(default_factory=dict)
    override: ConfigRoot | None = None
