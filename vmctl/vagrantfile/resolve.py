"""Turn a machine's merged settings (Ruby values) into the model's frozen dataclasses,
checking each value where it was set: errors name the file and line of that setting."""

from __future__ import annotations

import ipaddress
import os
import posixpath
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vmctl import untrusted
from vmctl.errors import ConfigError
from vmctl.vagrantfile.config import FolderRec, Ignored, ProvisionerRec, did_you_mean
from vmctl.vagrantfile.inputs import env_get, file_test
from vmctl.vagrantfile.model import (
    BoxDownload,
    ForwardedPort,
    IgnoredSetting,
    LibvirtSettings,
    MachineConfig,
    PrivateNetwork,
    Provisioner,
    SshSettings,
    SyncedFolder,
    Trigger,
    VagrantDisk,
)
from vmctl.vagrantfile.values import RRegexp, Symbol, inspect, to_s, truthy

if TYPE_CHECKING:
    from vmctl.vagrantfile.interpreter import Interpreter
    from vmctl.vagrantfile.loader import Merged
    from vmctl.vagrantfile.syntax import Node

SUPPORTED_NETWORKS = ("forwarded_port", "private_network")
_HOSTNAME = re.compile(r"[A-Za-z0-9_]([A-Za-z0-9_.-]{0,252})")


class Resolver:
    def __init__(self, ip: Interpreter, merged: Merged) -> None:
        self.ip = ip
        self.merged = merged

    def error(self, node: Node | None, message: str, hint: str | None = None) -> ConfigError:
        return ConfigError(message, hint=hint, **self.ip.location(node))

    def warn(self, node: Node | None, message: str) -> None:
        self.ip.warn(message, node)

    # where a value came from -----------------------------------------------------------
    # A box's own Vagrantfile is merged under every project that uses the box, so what it
    # sets is held to what a box legitimately sets: host paths only inside the box's (or
    # the project's) folder, no host-side arguments, no forwards off loopback, no libvirt
    # connection. What it may not set is ignored with a warning naming the box; the
    # project's own Vagrantfile may still ask for all of it.
    def box_of(self, node: Node | None) -> str | None:
        """The box whose Vagrantfile (or a file in its folder) set the value at NODE."""
        if node is None or not self.ip.box_dirs:
            return None
        path = Path(os.path.realpath(node.source.path))
        for folder, box in self.ip.box_dirs.items():
            if path.is_relative_to(folder):
                return box
        return None

    def box_folder(self, box: str) -> Path:
        return next(folder for folder, name in self.ip.box_dirs.items() if name == box)

    def from_box_outside(self, node: Node | None, path: str, *, project_ok: bool = False) -> str | None:
        """The box that set host path PATH at NODE when PATH lies outside that box's folder
        (and, with PROJECT_OK, outside the project's): such a path is ignored."""
        box = self.box_of(node)
        if box is None:
            return None
        real = Path(os.path.realpath(path))
        folders = [self.box_folder(box)] + ([Path(os.path.realpath(self.ip.project_dir))] if project_ok else [])
        return None if any(real.is_relative_to(f) for f in folders) else box

    def ignore_from_box(self, node: Node | None, box: str, what: str) -> None:
        self.warn(node, f"the Vagrantfile of box {box} {what}, which a box may not do (ignored)")

    # paths -------------------------------------------------------------------------
    def host_path(self, text: str, base: Path) -> str:
        if text.startswith("~"):
            home = env_get(self.ip, "HOME") or str(Path.home())
            if text == "~" or text.startswith("~/"):
                text = home + text[1:]
        if not text.startswith("/"):
            text = str(base / text)
        return posixpath.normpath(text)

    def want(self, node: Node | None, setting: str, value: Any, kind: type | tuple[type, ...]) -> Any:
        if isinstance(value, Symbol) and kind is str:
            return value.name
        if kind is int and isinstance(value, str) and value.strip().isdigit():
            return int(value)
        if kind is bool and value in ("true", "false"):
            return value == "true"
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            expected = {str: "a string", int: "an integer", bool: "true or false", dict: "a hash"}.get(
                kind if isinstance(kind, type) else str, "another type"
            )
            raise self.error(node, f"{setting} must be {expected}, not {inspect(value)[:60]}")
        return value

    # sections ----------------------------------------------------------------------
    def forwarded_port(self, options: dict[str, Any], node: Node) -> ForwardedPort | None:
        known = {"guest", "host", "host_ip", "protocol", "auto_correct", "id"}
        for key in options:
            if key not in known:
                self.warn(node, f"the forwarded_port option {key}: is not used by vmctl (ignored)")
        if options.get("guest") is None:
            raise self.error(node, "a forwarded_port needs guest: (the port inside the machine)")
        guest = self.port(node, "guest", options["guest"])
        host = self.port(node, "host", options["host"]) if options.get("host") is not None else None
        host_ip = options.get("host_ip")
        host_ip = "127.0.0.1" if host_ip in (None, "") else self.want(node, "host_ip", host_ip, str)
        address = untrusted.parse_address(host_ip)
        if address is None:
            raise self.error(node, f"forwarded_port host_ip: {untrusted.visible(host_ip)[:80]!r} is not an IP address",
                             hint='leave it out for 127.0.0.1, or write an address such as "0.0.0.0"')
        host_ip = address
        protocol = self.want(node, "protocol", options.get("protocol") or "tcp", str).lower()
        if protocol not in ("tcp", "udp"):
            raise self.error(node, f'forwarded_port protocol must be "tcp" or "udp", not {protocol!r}')
        auto = options.get("auto_correct", False)
        auto = self.want(node, "auto_correct", auto, bool) if auto is not None else False
        port_id = options.get("id")
        if not untrusted.is_loopback(host_ip):
            box = self.box_of(node)
            if box is not None:
                self.ignore_from_box(node, box, f"forwards port {guest} on {host_ip}")
                return None
            self.warn(node, f"forwarded port {host if host else guest} listens on {host_ip}: "
                      "other computers can reach it, not only this one")
        return ForwardedPort(guest=guest, host=host, host_ip=host_ip, protocol=protocol, auto_correct=auto,
                             id=to_s(port_id) if port_id is not None else None)

    def port(self, node: Node, what: str, value: Any) -> int:
        number = self.want(node, f"forwarded_port {what}:", value, int)
        if not 1 <= number <= 65535:
            raise self.error(node, f"forwarded_port {what}: {number} is not a port number (1-65535)")
        return int(number)

    def private_network(self, options: dict[str, Any], node: Node) -> PrivateNetwork:
        handled = {"ip", "netmask", "libvirt__network_name", "auto_config", "type", "libvirt__netmask", "id"}
        for key in options:
            if key not in handled and key != "protocol":
                self.warn(node, f"the private_network option {key}: is not used by vmctl (ignored)")
        kind = to_s(options.get("type")) if options.get("type") is not None else "static"
        ip_value = options.get("ip")
        if ip_value is None or ip_value == "":
            if kind == "dhcp":
                raise self.error(node, 'a private_network with type: "dhcp" is not supported: vmctl needs a static ip',
                                 hint='give it an address, e.g. ip: "192.168.56.10"')
            raise self.error(node, "a private_network needs ip: (a static address)")
        if kind == "dhcp":
            self.warn(node, 'private_network type: "dhcp" is not supported; using the static ip given')
        text = self.want(node, "private_network ip", ip_value, str)
        try:
            address = ipaddress.ip_interface(text)
        except ValueError:
            raise self.error(node, f"private_network ip {text!r} is not an IP address") from None
        netmask_value = options.get("netmask", options.get("libvirt__netmask"))
        netmask = self.netmask(node, netmask_value, address)
        name = options.get("libvirt__network_name")
        auto = options.get("auto_config", True)
        return PrivateNetwork(
            ip=str(address.ip),
            netmask=netmask,
            name=self.want(node, "libvirt__network_name", name, str) if name is not None else None,
            auto_config=self.want(node, "auto_config", auto, bool) if auto is not None else True,
        )

    def netmask(self, node: Node, value: Any, address: Any) -> str:
        v6 = address.version == 6
        if value is None:
            if "/" in str(address.with_prefixlen) and address.network.prefixlen not in (32, 128):
                return str(address.netmask) if not v6 else str(address.network.prefixlen)
            return "64" if v6 else "255.255.255.0"
        text = to_s(value).strip()
        if text.lstrip("/").isdigit():
            bits = int(text.lstrip("/"))
            if not 0 <= bits <= (128 if v6 else 32):
                raise self.error(node, f"netmask {text} is not a prefix length")
            if v6:
                return str(bits)
            return str(ipaddress.IPv4Network(f"0.0.0.0/{bits}").netmask)
        try:
            return str(ipaddress.IPv4Network(f"0.0.0.0/{text}").netmask)
        except ValueError:
            raise self.error(node, f"netmask {text!r} is not a netmask") from None

    def synced_folder(self, rec: FolderRec) -> SyncedFolder | None:
        options, node = rec.options, rec.node
        guest = options["guestpath"]
        if any(ord(c) < 32 for c in guest):
            raise self.error(node, f"the guest path {untrusted.visible(guest)!r} holds a control character")
        host_value = options.get("hostpath")
        host = self.want(node, "synced folder host path", host_value, str)
        host = self.host_path(host, self.ip.project_dir)
        disabled = truthy(options.get("disabled", False))
        if not disabled:
            box = self.from_box_outside(rec.node_of("hostpath"), host, project_ok=True)
            if box is not None:
                self.ignore_from_box(rec.node_of("hostpath"), box, f"syncs the host folder {host} to {guest}")
                return None
        kind_value = options.get("type")
        if kind_value is None and truthy(options.get("nfs")):
            kind_value = "nfs"
        kind = to_s(kind_value) if kind_value is not None else "rsync"
        exclude_value = options.get("rsync__exclude")
        exclude: tuple[str, ...] = ()
        if exclude_value is not None:
            items = exclude_value if isinstance(exclude_value, list) else [exclude_value]
            exclude = tuple(self.want(node, "rsync__exclude", x, str) for x in items)
        args_value = options.get("rsync__args")
        rsync_args = None
        if args_value is not None:
            args_node = rec.node_of("rsync__args")
            items = args_value if isinstance(args_value, list) else [args_value]
            rsync_args = tuple(self.want(args_node, "rsync__args", x, str) for x in items)
            box = self.box_of(args_node)
            if box is not None:
                self.ignore_from_box(args_node, box, f"passes rsync__args to the host's rsync for {guest}")
                rsync_args = None
            elif (problem := untrusted.rsync_args_problem(list(rsync_args))) is not None:
                raise self.error(args_node, f"synced folder {guest}: {untrusted.visible(problem)}",
                                 hint="rsync__args may hold options that shape the copy (such as --archive, "
                                 "--delete, --exclude=PATTERN, --chmod=...); vmctl refuses options that act on the host")
        owner = options.get("owner")
        group = options.get("group")
        for what, value in (("owner", owner), ("group", group)):
            if value is not None and untrusted.user_name_problem(to_s(value)):
                raise self.error(node, f"synced folder {guest}: {what} {untrusted.visible(to_s(value))[:40]!r} is not a user or group name")
        folder = SyncedFolder(
            host=host, guest=guest, type=kind, disabled=disabled,
            owner=to_s(owner) if owner is not None else None,
            group=to_s(group) if group is not None else None,
            rsync_exclude=exclude, rsync_args=rsync_args,
        )
        if disabled:
            return folder
        if kind != "rsync":
            raise self.error(
                node, f'synced folder type "{kind}" is not supported: vmctl syncs folders with rsync only',
                hint=f'use type: "rsync" for {guest}, or disabled: true',
            )
        quiet = {"guestpath", "hostpath", "disabled", "type", "rsync__exclude", "rsync__args", "owner", "group",
                 "id", "create", "rsync__chown", "rsync__verbose", "rsync__auto", "nfs"}
        for key in options:
            if key not in quiet:
                self.warn(node, f"the synced_folder option {key}: is not used by vmctl (ignored)")
        if not file_test(self.ip, "directory?", Path(host)) and not truthy(options.get("create")):
            if file_test(self.ip, "exist?", Path(host)):
                raise self.error(node, f"the host path of synced folder {guest} is not a folder: {host}")
            raise self.error(node, f"the host path of synced folder {guest} does not exist: {host}",
                             hint="create it, or add create: true")
        return folder

    def provisioner(self, rec: ProvisionerRec) -> Provisioner | None:
        name, kind, options, node = rec.name, rec.type, rec.options, rec.node
        for key in ("path", "source"):
            value = options.get(key)
            if isinstance(value, str) and not re.match(r"^[a-z][a-z0-9+.-]*://", value):
                box = self.from_box_outside(rec.node_of(key), self.host_path(value, self.ip.project_dir))
                if box is not None:
                    self.ignore_from_box(rec.node_of(key), box, f"gives a {kind} provisioner the host file {value}")
                    return None
        run = options.get("run", "once")
        run = to_s(run) if run is not None else "once"
        if run not in ("once", "always", "never"):
            raise self.error(node, f'provisioner run: must be "once", "always" or "never", not {run!r}')
        display = options.get("name")
        label = name if name is not None else (to_s(display) if display is not None else None)
        if kind == "file":
            for key in options:
                if key not in ("source", "destination", "run", "name"):
                    self.warn(node, f"the file provisioner option {key}: is not used by vmctl (ignored)")
            source, destination = options.get("source"), options.get("destination")
            if source is None or destination is None:
                raise self.error(node, "the file provisioner needs source: and destination:")
            source_path = self.host_path(self.want(node, "file provisioner source", source, str), self.ip.project_dir)
            if not file_test(self.ip, "exist?", Path(source_path)):
                raise self.error(node, f"the file provisioner's source does not exist: {source_path}")
            return Provisioner(type="file", name=label, run=run, source=source_path,
                               destination=self.want(node, "file provisioner destination", destination, str))
        for key in options:
            if key not in ("inline", "path", "args", "env", "privileged", "run", "name"):
                self.warn(node, f"the shell provisioner option {key}: is not used by vmctl (ignored)")
        inline, path = options.get("inline"), options.get("path")
        if inline is not None and path is not None:
            raise self.error(node, "a shell provisioner takes inline: or path:, not both")
        if inline is None and path is None:
            raise self.error(node, "a shell provisioner needs inline: (a script) or path: (a script file)")
        resolved_path = None
        if path is not None:
            text = self.want(node, "shell provisioner path", path, str)
            if re.match(r"^[a-z][a-z0-9+.-]*://", text):
                raise self.error(node, f"shell provisioner path {text!r} is a URL: vmctl runs local scripts only",
                                 hint="download the script into the project and name its path")
            resolved_path = self.host_path(text, self.ip.project_dir)
            if not file_test(self.ip, "file?", Path(resolved_path)):
                raise self.error(node, f"the shell provisioner's script does not exist: {resolved_path}")
        inline_text = None
        if inline is not None:
            if isinstance(inline, list):
                inline_text = "\n".join(to_s(x) for x in inline)
            else:
                inline_text = self.want(node, "shell provisioner inline", inline, str)
        args_value = options.get("args")
        verbatim = False
        if args_value is None:
            args: tuple[str, ...] = ()
        elif isinstance(args_value, list):
            args = tuple(to_s(a) for a in args_value)
        else:
            # Vagrant appends a String to the command line as it is (the shell splits it).
            args = (to_s(args_value),)
            verbatim = True
        env_value = options.get("env") or {}
        env = {to_s(k): to_s(v) for k, v in self.want(node, "shell provisioner env", env_value, dict).items()}
        privileged = options.get("privileged", True)
        return Provisioner(
            type="shell", name=label, inline=inline_text, path=resolved_path, args=args, args_verbatim=verbatim,
            env=env, privileged=self.want(node, "privileged", privileged, bool) if privileged is not None else True,
            run=run,
        )

    def trigger(self, when: str, commands: list[str], options: dict[str, Any], node: Node, machine: str) -> Trigger | None:
        only_on = options.get("only_on")
        if only_on is not None:
            patterns = only_on if isinstance(only_on, list) else [only_on]
            if not any(
                (p.compiled.search(machine) is not None) if isinstance(p, RRegexp) else to_s(p) == machine
                for p in patterns
            ):
                return None
        for key in ("abort", "type"):
            if options.get(key) is not None:
                self.warn(node, f"the trigger option {key} is not supported by vmctl (ignored)")

        def run_spec(key: str) -> tuple[str | None, str | None, tuple[str, ...]]:
            spec = options.get(key)
            if spec is None:
                return None, None, ()
            spec = {to_s(k): v for k, v in self.want(node, f"trigger {key}", spec, dict).items()}
            for extra in spec:
                if extra not in ("inline", "path", "args"):
                    self.warn(node, f"the trigger {key} option {extra}: is not used by vmctl (ignored)")
            inline = spec.get("inline")
            path = spec.get("path")
            args = spec.get("args")
            args_tuple: tuple[str, ...] = ()
            if args is not None:
                args_tuple = tuple(to_s(a) for a in args) if isinstance(args, list) else (to_s(args),)
            return (
                self.want(node, f"trigger {key} inline", inline, str) if inline is not None else None,
                self.host_path(self.want(node, f"trigger {key} path", path, str), self.ip.project_dir)
                if path is not None else None,
                args_tuple,
            )

        run_inline, run_path, run_args = run_spec("run")
        remote_inline, remote_path, remote_args = run_spec("run_remote")
        box = self.box_of(node)
        if box is not None:
            if run_inline is not None or run_path is not None:
                self.ignore_from_box(node, box, "runs a trigger command on the host")
                run_inline, run_path, run_args = None, None, ()
            if remote_path is not None and self.from_box_outside(node, remote_path) is not None:
                self.ignore_from_box(node, box, f"uploads the host file {remote_path} in a trigger")
                remote_path, remote_args = None, ()
        exit_codes = options.get("exit_codes", 0)
        codes = exit_codes if isinstance(exit_codes, list) else [exit_codes]
        ignore = options.get("ignore") or []
        ignore_list = ignore if isinstance(ignore, list) else [ignore]

        def opt_str(key: str) -> str | None:
            value = options.get(key)
            return to_s(value) if value is not None else None

        return Trigger(
            when=when, commands=tuple(commands), name=opt_str("name"), info=opt_str("info"),
            run_inline=run_inline, run_remote_inline=remote_inline, warn=opt_str("warn"),
            on_error=opt_str("on_error") or "halt",
            exit_codes=tuple(self.want(node, "trigger exit_codes", c, int) for c in codes),
            run_path=run_path, run_args=run_args, run_remote_path=remote_path, run_remote_args=remote_args,
            ignore=tuple(to_s(i) for i in ignore_list),
        )

    def libvirt(self) -> LibvirtSettings:
        from vmctl.vagrantfile.resolve_libvirt import resolve_libvirt

        return resolve_libvirt(self)

    def box_download(self, vm: dict[str, Any]) -> BoxDownload:
        """config.vm.box_server_url and box_download_*; a box's own Vagrantfile sets none
        of them (they say where the box comes from, and it is already here)."""
        values: dict[str, Any] = {}
        for key in ("server_url", "checksum", "checksum_type", "ca_cert", "ca_path", "client_cert", "insecure"):
            setting = "box_server_url" if key == "server_url" else f"box_download_{key}"
            entry = self.merged.vm.get(setting)
            if entry is None or entry[0] is None:
                continue
            value, node = entry
            box = self.box_of(node)
            if box is not None:
                self.ignore_from_box(node, box, f"sets config.vm.{setting}")
                continue
            if key in ("ca_cert", "ca_path", "client_cert"):
                value = self.host_path(value, self.ip.project_dir)
            if key == "server_url" and not re.match(r"^https?://[^\s]+$", value):
                raise self.error(node, f"config.vm.box_server_url {value[:80]!r} is not an http(s) URL")
            if key == "insecure" and value:
                self.warn(node, "config.vm.box_download_insecure = true: the box's server is not verified "
                          "(anyone on the network path can hand you another box)")
            values[key] = value
        if bool(values.get("checksum")) != bool(values.get("checksum_type")):
            node = (self.merged.vm.get("box_download_checksum") or self.merged.vm.get("box_download_checksum_type"))[1]
            raise self.error(node, "config.vm.box_download_checksum and box_download_checksum_type go together")
        return BoxDownload(**values)

    def ssh(self) -> SshSettings:
        values = {k: v for k, (v, _) in self.merged.ssh.items() if v is not None}

        def node_of(key: str) -> Node | None:
            return self.merged.ssh[key][1]

        user = values.get("username")
        if user is not None and untrusted.user_name_problem(user):
            raise self.error(node_of("username"), f"config.ssh.username {untrusted.visible(user)[:40]!r} is not a user name",
                             hint=untrusted.user_name_problem(user))
        keys = values.get("private_key_path")
        if keys is not None:
            node = node_of("private_key_path")
            paths = tuple(self.host_path(k, self.ip.project_dir) for k in keys)
            box = self.box_of(node)
            if box is not None:
                inside = tuple(k for k in paths if self.from_box_outside(node, k) is None)
                for k in sorted(set(paths) - set(inside)):
                    self.ignore_from_box(node, box, f"names the host key {k} as config.ssh.private_key_path")
                paths = inside
            values["private_key_path"] = paths or None
        # What reaches the host's ssh or hands the guest something of yours: never from a box.
        for key, what in (("extra_args", "passes arguments to the host's ssh (config.ssh.extra_args)"),
                          ("config", "names an OpenSSH config file for the host's ssh (config.ssh.config)"),
                          ("forward_agent", "forwards your SSH agent into the guest"),
                          ("forward_x11", "forwards your X display into the guest"),
                          ("forward_env", "sends your environment variables into the guest")):
            if key in values and (box := self.box_of(node_of(key))) is not None:
                if values[key]:
                    self.ignore_from_box(node_of(key), box, what)
                del values[key]
        if values.get("extra_args"):
            problem = untrusted.ssh_args_problem(values["extra_args"])
            if problem is not None:
                raise self.error(node_of("extra_args"), f"config.ssh.extra_args: {untrusted.visible(problem)}",
                                 hint="extra_args may hold ssh options that shape the session (-A, -X, -C, -v, "
                                 "-o ServerAliveInterval=..., -L 127.0.0.1:...); vmctl refuses what runs or writes "
                                 "something on the host (ProxyCommand, LocalCommand, -E, -F, ...)")
            values["extra_args"] = tuple(values["extra_args"])
        if values.get("config"):
            values["config"] = self.host_path(values["config"], self.ip.project_dir)
        for key, what in (("forward_agent", "the guest can use the keys of your SSH agent while you are logged in"),
                          ("forward_x11", "programs in the guest can reach your X display while you are logged in")):
            if values.get(key):
                self.warn(node_of(key), f"config.ssh.{key}: {what}")
        if values.get("forward_env"):
            for name in values["forward_env"]:
                if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*\*?", name):
                    raise self.error(node_of("forward_env"), f"config.ssh.forward_env {name[:40]!r} is not a variable name")
            self.warn(node_of("forward_env"), "config.ssh.forward_env: `vmctl ssh` sends "
                      f"{', '.join(values['forward_env'])} from your environment into the guest")
            values["forward_env"] = tuple(values["forward_env"])
        if values.get("sudo_command") is not None and "%c" not in values["sudo_command"]:
            raise self.error(node_of("sudo_command"), "config.ssh.sudo_command must hold %c (where the command goes)",
                             hint='Vagrant\'s default is "sudo -E -H %c"')
        return SshSettings(**values)

    def disks(self) -> tuple[VagrantDisk, ...]:
        """config.vm.disk, as Vagrant core checks it (plugins/kernel_v2/config/disk.rb)."""
        from vmctl.vagrantfile.libvirt import parse_size

        out: list[VagrantDisk] = []
        for rec in self.merged.disks:
            o, node = rec.options, rec.node
            name = o.get("name")
            primary = truthy(o.get("primary", False))
            if name is None and primary:
                name = "vagrant_primary"
            if name is None:
                raise self.error(node, f"config.vm.disk :{rec.type} needs name:")
            name = to_s(name)
            if untrusted.file_name_problem(name):
                raise self.error(node, f"config.vm.disk name {untrusted.visible(name)[:40]!r}: "
                                 f"{untrusted.file_name_problem(name)}")
            size = None
            if o.get("size") is not None:
                value = o["size"]
                # Vagrant: a number is bytes; a String has a unit ("10GB").
                size = value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else (
                    parse_size(value) if isinstance(value, str) else None)
                if size is None:
                    raise self.error(node, f"config.vm.disk size: {inspect(value)[:40]} is not a size",
                                     hint='e.g. size: "20GB" (or a number of bytes)')
            file = None
            if o.get("file") is not None:
                file = self.host_path(self.want(node, "config.vm.disk file:", o["file"], str), self.ip.project_dir)
            if rec.type == "disk":
                if size is None and file is None:
                    raise self.error(node, f"config.vm.disk :disk {name} needs size:")
                if file is not None:
                    raise self.error(node, f"config.vm.disk :disk {name}: file: is not supported: vmctl makes "
                                     "the machine's disks itself, and a disk file the Vagrantfile names would be "
                                     "written by the guest", hint="keep data on a volume: libvirt.storage :file, "
                                     "path: \"NAME.qcow2\", allow_existing: true")
            elif rec.type == "dvd":
                if primary:
                    raise self.error(node, "config.vm.disk :dvd cannot be primary")
                if file is None:
                    raise self.error(node, f"config.vm.disk :dvd {name} needs file: (an ISO image)")
            if file is not None:
                box = self.from_box_outside(node, file)
                if box is not None:
                    self.ignore_from_box(node, box, f"attaches the host file {file} as config.vm.disk {name}")
                    continue
                if not file_test(self.ip, "file?", Path(file)):
                    raise self.error(node, f"config.vm.disk {name}: the file {file} does not exist")
            for key in o:
                if key in ("provider_config", "disk_ext") or "__" in key:
                    self.warn(node, f"config.vm.disk option {key}: is not used by vmctl (ignored)")
            out.append(VagrantDisk(type=rec.type, name=name, size=size, primary=primary, file=file))
        if sum(d.primary for d in out) > 1:
            raise self.error(self.merged.disks[-1].node, "config.vm.disk: only one disk may be primary")
        names = [d.name for d in out]
        for n in names:
            if names.count(n) > 1:
                raise self.error(self.merged.disks[-1].node, f"config.vm.disk: the name {n} is used twice")
        return tuple(out)


def resolve_machine(
    ip: Interpreter, name: str, define_options: dict[str, Any], merged: Merged, define_node: Node | None
) -> MachineConfig:
    r = Resolver(ip, merged)
    vm = {k: v for k, (v, _) in merged.vm.items()}
    hostname = vm.get("hostname")
    if hostname is not None and not _HOSTNAME.fullmatch(hostname):
        node = merged.vm["hostname"][1]
        raise r.error(node, f"config.vm.hostname {hostname!r} is not a valid host name")
    ports: list[ForwardedPort] = []
    networks: list[PrivateNetwork] = []
    for net in merged.networks.values():
        if net.type == "forwarded_port":
            port = r.forwarded_port(net.options, net.node)
            if port is not None:
                ports.append(port)
        elif net.type == "private_network":
            networks.append(r.private_network(net.options, net.node))
        elif net.type == "public_network":
            raise r.error(
                net.node, "public_network (bridged networking) is not supported by vmctl",
                hint="use a private_network between machines and forwarded_port to reach them from the host",
            )
        else:
            guess = did_you_mean(net.type, list(SUPPORTED_NETWORKS))
            raise r.error(net.node, f"unknown network type {net.type!r}: vmctl supports forwarded_port and private_network",
                          hint=f"did you mean {guess!r}?" if guess else None)
    folders = [f for f in (r.synced_folder(rec) for rec in merged.folders.values()) if f is not None]
    if "/vagrant" not in merged.folders:
        folders.insert(0, SyncedFolder(host=str(ip.project_dir), guest="/vagrant", type="rsync"))
    provisioners = [p for p in (r.provisioner(rec) for rec in merged.provisioners) if p is not None]
    triggers = [t for t in (r.trigger(t.when, t.commands, t.options, t.node, name) for t in merged.triggers) if t]
    box_urls = vm.get("box_url")
    if box_urls and (box := r.box_of(merged.vm["box_url"][1])) is not None:
        r.ignore_from_box(merged.vm["box_url"][1], box, "sets config.vm.box_url")
        box_urls = None
    box_url = box_urls[0] if box_urls else None
    download = r.box_download(vm)
    if box_urls and len(box_urls) > 1:
        ip.warn(f"config.vm.box_url lists {len(box_urls)} URLs; vmctl uses the first one", merged.vm["box_url"][1])
    return MachineConfig(
        name=name,
        box=vm.get("box"),
        box_version=vm.get("box_version"),
        box_url=box_url,
        hostname=hostname,
        boot_timeout=vm.get("boot_timeout") or 300,
        primary=truthy(define_options.get("primary", False)),
        autostart=truthy(define_options.get("autostart", True)),
        libvirt=r.libvirt(),
        forwarded_ports=tuple(ports),
        private_networks=tuple(networks),
        synced_folders=tuple(folders),
        provisioners=tuple(provisioners),
        triggers=tuple(triggers),
        ssh=r.ssh(),
        disks=r.disks(),
        graceful_halt_timeout=vm.get("graceful_halt_timeout") or 60,
        box_download=download,
        ignored=tuple(_ignored(ip, i) for i in merged.ignored),
    )


def _ignored(ip: Interpreter, item: Ignored) -> IgnoredSetting:
    node = item.node
    return IgnoredSetting(
        setting=item.setting,
        value=item.value,
        file=node.source.display if node is not None else None,
        line=node.line if node is not None else None,
    )
