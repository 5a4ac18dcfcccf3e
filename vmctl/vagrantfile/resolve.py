"""Turn a machine's merged settings (Ruby values) into the model's frozen dataclasses,
checking each value where it was set: errors name the file and line of that setting."""

from __future__ import annotations

import dataclasses
import ipaddress
import os
import posixpath
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vmctl import untrusted
from vmctl.errors import ConfigError
from vmctl.vagrantfile import recording
from vmctl.vagrantfile.config import CloudInitRec, FolderRec, Ignored, ProvisionerRec, did_you_mean
from vmctl.vagrantfile.inputs import READ_PATHS_VARIABLE, env_get, file_test, read_refusal
from vmctl.vagrantfile.model import (
    TWO_WAY_FOLDER_TYPES,
    AnsibleSettings,
    BoxDownload,
    CloudInitPart,
    DockerBuild,
    DockerRun,
    DockerSettings,
    ForwardedPort,
    FwCfgEntry,
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
from vmctl.vagrantfile.values import RRegexp, Symbol, inspect, to_json_value, to_s, truthy

if TYPE_CHECKING:
    from vmctl.vagrantfile.interpreter import Interpreter
    from vmctl.vagrantfile.loader import Merged
    from vmctl.vagrantfile.syntax import Node

SUPPORTED_NETWORKS = ("forwarded_port", "private_network", "public_network")
MACVTAP_MODES = ("bridge", "vepa", "private", "passthrough")
# Vagrant's NFS folder options: accepted on nfs (and two-way) folders and reported, not
# used (vmctl runs no NFS server: an nfs folder is shared with virtiofs or 9p).
NFS_OPTIONS = frozenset({"nfs_udp", "nfs_version", "nfs_export", "map_uid", "map_gid", "linux__nfs_options",
                         "bsd__nfs_options", "nfs_udp_options"})
_HOSTNAME = re.compile(r"[A-Za-z0-9_]([A-Za-z0-9_.-]{0,252})")
_GROUP_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,99}")
# A machine or group name, or a host range pattern (web[1:3], db-[a:c]).
_GROUP_MEMBER = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.:\[\]-]{0,99}")
CLOUD_INIT_CONTENT_TYPES = (
    "text/cloud-boothook", "text/cloud-config", "text/cloud-config-archive", "text/jinja2",
    "text/part-handler", "text/upstart-job", "text/x-include-once-url", "text/x-include-url",
    "text/x-shellscript",
)


def _ini_value(text: str) -> Any:
    """A value of a "key=value" inventory variable, as ansible's INI inventory reads a host
    line: a Python literal (80, True, 'x') where it is one, else the text."""
    import ast

    try:
        value = ast.literal_eval(text)
    except (ValueError, SyntaxError, MemoryError, RecursionError):
        return text
    return value if isinstance(value, str | int | float | bool) else text


IGNITION_FW_CFG = "opt/com.coreos/config"  # where Ignition reads its config on QEMU
# QEMU holds a fw_cfg file in memory; Ignition configs inline files as data: URLs, so allow
# some room, but not a disk image.
IGNITION_MAX_BYTES = 4 * 1024**2


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
        known = {"guest", "host", "host_ip", "protocol", "auto_correct", "id", "guest_ip"}
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
        guest_ip = options.get("guest_ip")
        if guest_ip not in (None, ""):
            text = self.want(node, "guest_ip", guest_ip, str)
            guest_ip = untrusted.parse_address(text)
            if guest_ip is None or ":" in guest_ip:
                raise self.error(node, f"forwarded_port guest_ip: {untrusted.visible(text)[:80]!r} is not an IPv4 address",
                                 hint="QEMU's user network forwards to an IPv4 address of the guest on it, such as "
                                 '"10.0.2.15" (the default when guest_ip is left out)')
        else:
            guest_ip = None
        port_id = options.get("id")
        if not untrusted.is_loopback(host_ip):
            box = self.box_of(node)
            if box is not None:
                self.ignore_from_box(node, box, f"forwards port {guest} on {host_ip}")
                return None
            self.warn(node, f"forwarded port {host if host else guest} listens on {host_ip}: "
                      "other computers can reach it, not only this one")
        return ForwardedPort(guest=guest, host=host, host_ip=host_ip, protocol=protocol, auto_correct=auto,
                             id=to_s(port_id) if port_id is not None else None, guest_ip=guest_ip)

    def port(self, node: Node, what: str, value: Any) -> int:
        number = self.want(node, f"forwarded_port {what}:", value, int)
        if not 1 <= number <= 65535:
            raise self.error(node, f"forwarded_port {what}: {number} is not a port number (1-65535)")
        return int(number)

    def private_network(self, options: dict[str, Any], node: Node) -> PrivateNetwork:
        """A private_network, with vagrant-libvirt's libvirt__* options (see
        docs/vagrantfile.md for what each does here; vmctl/hostnet.py makes the network)."""
        handled = {"ip", "netmask", "libvirt__network_name", "auto_config", "type", "libvirt__netmask", "id",
                   "protocol", "libvirt__host_ip", "libvirt__dhcp_enabled", "libvirt__dhcp_start",
                   "libvirt__dhcp_stop", "libvirt__forward_mode", "libvirt__forward_device", "libvirt__mac", "mac",
                   "libvirt__iface_name", "libvirt__tunnel_type", "libvirt__network_address", "libvirt__guest_ipv6",
                   "libvirt__tunnel_ip", "libvirt__tunnel_port", "libvirt__tunnel_local_ip",
                   "libvirt__tunnel_local_port"}
        for key in options:
            if key not in handled:
                self.warn(node, f"the private_network option {key}: is not used by vmctl (ignored)")
        kind = to_s(options.get("type")).lower() if options.get("type") is not None else "static"
        if kind not in ("static", "dhcp"):
            raise self.error(node, f'private_network type: {kind!r} is not one vmctl knows: "static" or "dhcp"')
        tunnel = options.get("libvirt__tunnel_type")
        if tunnel is not None:
            tunnel = self.want(node, "libvirt__tunnel_type", tunnel, str).lower()
            if tunnel not in ("mcast", "udp"):
                raise self.error(node, f"libvirt__tunnel_type {tunnel!r}: vagrant-libvirt's tunnels are \"mcast\" "
                                 "and \"udp\"")
        udp = self.udp_tunnel(node, options) if tunnel == "udp" else {}
        if tunnel != "udp":
            for key in ("libvirt__tunnel_ip", "libvirt__tunnel_port", "libvirt__tunnel_local_ip",
                        "libvirt__tunnel_local_port"):
                if key in options:
                    self.warn(node, f"{key}: is used by the \"udp\" tunnel only (vmctl chooses a multicast "
                              "segment's group and port from the network's name)")
        mode = to_s(options.get("libvirt__forward_mode") or "none").lower()
        if mode in ("open", "veb", "bridge", "private", "vepa", "passthrough", "hostdev"):
            raise self.error(node, f"libvirt__forward_mode: {mode!r} is not supported by vmctl's host-only networks: "
                             "none (isolated), nat or route",
                             hint="for a NIC on a host bridge or device, use a public_network with dev:")
        elif mode not in ("none", "nat", "route"):
            raise self.error(node, f"libvirt__forward_mode {mode!r}: vagrant-libvirt's modes are none, nat, route, "
                             "open and veb")
        if mode != "none" and (box := self.box_of(node)) is not None:
            self.ignore_from_box(node, box, f'sets libvirt__forward_mode: "{mode}" (forwarding through the host)')
            mode = "none"
        forward_device = options.get("libvirt__forward_device")
        if forward_device is not None:
            forward_device = self.want(node, "libvirt__forward_device", forward_device, str)
            problem = untrusted.host_device_problem(forward_device, public=False)
            if problem:
                raise self.error(node, f"libvirt__forward_device {untrusted.visible(forward_device)!r}: {problem}")
            if mode == "none":
                self.warn(node, "libvirt__forward_device: is not used: the network forwards nowhere (add "
                          'libvirt__forward_mode: "nat" or "route")')
                forward_device = None
        if options.get("libvirt__guest_ipv6") is not None and to_s(options["libvirt__guest_ipv6"]).lower() != "no":
            self.warn(node, "libvirt__guest_ipv6: is not used: vmctl's host-only networks are IPv4; give the "
                      "machine an IPv6 private_network of its own for IPv6")
        ip_value = options.get("ip")
        if kind == "dhcp":
            # The subnet: libvirt__network_address, else an ip: given, else vagrant-libvirt's default.
            base = options.get("libvirt__network_address") or ip_value or "172.28.128.0"
            text = self.want(node, "libvirt__network_address", base, str)
            if ip_value not in (None, ""):
                self.warn(node, 'private_network type: "dhcp" takes its address from DHCP: ip: only chooses the '
                          "subnet")
        else:
            if ip_value is None or ip_value == "":
                raise self.error(node, "a private_network needs ip: (a static address)",
                                 hint='or type: "dhcp" for an address from the network\'s DHCP server')
            text = self.want(node, "private_network ip", ip_value, str)
        try:
            address = ipaddress.ip_interface(text)
        except ValueError:
            raise self.error(node, f"private_network ip {untrusted.visible(text)!r} is not an IP address") from None
        netmask_value = options.get("netmask", options.get("libvirt__netmask"))
        netmask = self.netmask(node, netmask_value, address)
        if kind == "dhcp" and address.version != 4:
            raise self.error(node, 'private_network type: "dhcp" is IPv4 only in vmctl')
        subnet = ipaddress.ip_interface(f"{address.ip}/{netmask}").network
        name = options.get("libvirt__network_name")
        auto = options.get("auto_config", True)

        def in_subnet(key: str) -> str | None:
            value = options.get(key)
            if value is None:
                return None
            parsed = untrusted.parse_address(self.want(node, key, value, str))
            if parsed is None or ipaddress.ip_address(parsed) not in subnet:
                raise self.error(node, f"{key} {untrusted.visible(str(value))!r} is not an address in {subnet}")
            if ipaddress.ip_address(parsed) in (subnet.network_address, subnet.broadcast_address):
                raise self.error(node, f"{key} {parsed} is the subnet's {'network' if ipaddress.ip_address(parsed) == subnet.network_address else 'broadcast'} address")
            return parsed

        host_ip, start, stop = in_subnet("libvirt__host_ip"), in_subnet("libvirt__dhcp_start"), in_subnet("libvirt__dhcp_stop")
        if start and stop and ipaddress.ip_address(start) > ipaddress.ip_address(stop):
            raise self.error(node, f"libvirt__dhcp_start {start} comes after libvirt__dhcp_stop {stop}")
        dhcp = options.get("libvirt__dhcp_enabled")
        dhcp = self.want(node, "libvirt__dhcp_enabled", dhcp, bool) if dhcp is not None else None
        if kind == "dhcp" and dhcp is False:
            raise self.error(node, 'a private_network with type: "dhcp" needs its DHCP server: remove '
                             "libvirt__dhcp_enabled: false")
        mac = self.mac_option(node, options, "libvirt__mac", "libvirt__mac")
        iface = options.get("libvirt__iface_name")
        if iface is not None:
            iface = self.want(node, "libvirt__iface_name", iface, str)
            problem = untrusted.iface_name_problem(iface)
            if problem:
                raise self.error(node, f"libvirt__iface_name {untrusted.visible(iface)!r}: {problem}")
        if name is not None:
            name = self.want(node, "libvirt__network_name", name, str)
            if not name or len(name) > 200 or any(ord(c) < 32 or ord(c) == 127 for c in name):
                raise self.error(node, f"libvirt__network_name {untrusted.visible(name)!r}: a name is 1-200 "
                                 "printable characters")
        return PrivateNetwork(
            ip=str(address.ip) if kind == "static" else None,
            netmask=netmask,
            name=name,
            auto_config=self.want(node, "auto_config", auto, bool) if auto is not None else True,
            type=kind,
            host_ip=host_ip,
            dhcp_enabled=dhcp,
            dhcp_start=start,
            dhcp_stop=stop,
            mac=mac,
            iface_name=iface,
            tunnel_type=tunnel,
            subnet=str(subnet),
            forward_mode=mode,
            forward_device=forward_device,
            **udp,
        )

    def public_network(self, options: dict[str, Any], node: Node) -> PrivateNetwork | None:
        """A public_network: the guest's NIC on a host bridge (libvirt <interface type='bridge'>)
        or on a host device through macvtap (type='direct'), as vagrant-libvirt's. Which
        device and whether the host allows it is checked where the machine starts
        (vmctl/machine/hardware.py: public_attachment)."""
        handled = {"dev", "bridge", "mode", "type", "ip", "netmask", "mac", "libvirt__mac", "auto_config", "id"}
        unsupported = {"network_name", "portgroup", "ovs", "ovs_interfaceid", "trust_guest_rx_filters"}
        for key in options:
            if key in unsupported:
                raise self.error(node, f"the public_network option {key}: is not supported by vmctl (it makes no "
                                 "libvirt networks or Open vSwitch ports)",
                                 hint="name the host bridge or device with dev:")
            if key not in handled:
                self.warn(node, f"the public_network option {key}: is not used by vmctl (ignored)")
        box = self.box_of(node)
        if box is not None:
            self.ignore_from_box(node, box, "adds a public_network (a NIC on the host's network)")
            return None
        devs: list[str] = []
        for key in ("dev", "bridge"):
            value = options.get(key)
            if value is None:
                continue
            values = value if isinstance(value, list) else [value]
            if key == "dev" and isinstance(value, list):
                raise self.error(node, "public_network dev: is one host device (bridge: may list several)")
            for item in values:
                text = self.want(node, f"public_network {key}", item, str)
                # Vagrant's bridge: entries may carry a description: "eth0: Ethernet".
                name = text.split(":", 1)[0].strip() if key == "bridge" else text
                problem = untrusted.host_device_problem(name)
                if problem:
                    raise self.error(node, f"public_network {key}: {untrusted.visible(text)[:40]!r}: {problem}")
                devs.append(name)
        if options.get("dev") is not None and options.get("bridge") is not None:
            self.warn(node, "public_network has both dev: and bridge:; vmctl tries dev: first, then bridge:")
        kind = to_s(options.get("type")).lower() if options.get("type") is not None else None
        if kind == "network":
            raise self.error(node, 'public_network type: "network" (a libvirt network) is not supported by vmctl',
                             hint="name the host bridge or device with dev:")
        if kind not in (None, "bridge", "direct", "dhcp", "static"):
            raise self.error(node, f"public_network type: {kind!r}: vagrant-libvirt's types are direct (macvtap) "
                             "and bridge (an existing host bridge)")
        attach = kind if kind in ("bridge", "direct") else None
        mode = to_s(options.get("mode") or "bridge").lower()
        if mode not in MACVTAP_MODES:
            raise self.error(node, f"public_network mode: {mode!r}: the macvtap modes are {', '.join(MACVTAP_MODES)}")
        if attach == "bridge" and options.get("mode") is not None:
            self.warn(node, 'public_network mode: is a macvtap setting, not used with type: "bridge"')
        ip_value = options.get("ip")
        address = None
        netmask = "255.255.255.0"
        if ip_value not in (None, ""):
            if kind == "dhcp":
                raise self.error(node, 'public_network type: "dhcp" takes its address from DHCP: remove ip:')
            text = self.want(node, "public_network ip", ip_value, str)
            try:
                iface = ipaddress.ip_interface(text)
            except ValueError:
                raise self.error(node, f"public_network ip {untrusted.visible(text)!r} is not an IP address") from None
            netmask = self.netmask(node, options.get("netmask"), iface)
            address = str(iface.ip)
            subnet = str(ipaddress.ip_interface(f"{iface.ip}/{netmask}").network)
        else:
            subnet = ""
        mac = self.mac_option(node, options, "mac", "public_network mac")
        auto = options.get("auto_config", True)
        return PrivateNetwork(
            ip=address, netmask=netmask, type="static" if address else "dhcp", subnet=subnet, mac=mac,
            auto_config=self.want(node, "auto_config", auto, bool) if auto is not None else True,
            public=True, devs=tuple(dict.fromkeys(devs)), attach=attach, macvtap_mode=mode,
        )

    def udp_tunnel(self, node: Node, options: dict[str, Any]) -> dict[str, Any]:
        """The ends of a "udp" tunnel as written: QEMU sends the NIC's frames to
        tunnel_ip:tunnel_port from tunnel_local_ip:tunnel_local_port. What is not written is
        filled in at `up` (vmctl/tunnels.py): 127.0.0.1 when both machines are on one host
        (where the ports are required, as in vagrant-libvirt), the two hosts' addresses and a
        port of vmctl's choice when they are on two hosts."""
        out: dict[str, Any] = {}
        for key, field in (("libvirt__tunnel_port", "tunnel_port"), ("libvirt__tunnel_local_port", "tunnel_local_port")):
            if options.get(key) is None:
                continue
            port = self.want(node, key, options[key], int)
            if isinstance(port, bool) or not 1 <= port <= 65535:
                raise self.error(node, f"{key} {port} is not a port number (1-65535)")
            out[field] = int(port)
        for key, field in (("libvirt__tunnel_ip", "tunnel_ip"), ("libvirt__tunnel_local_ip", "tunnel_local_ip")):
            if options.get(key) is None:
                continue
            value = self.want(node, key, options[key], str)
            problem = untrusted.tunnel_address_problem(value)
            if problem:
                raise self.error(node, f"{key} {untrusted.visible(str(value))!r}: {problem} (the address of a "
                                 "host end of the tunnel, such as 127.0.0.1 or 192.0.2.7)")
            out[field] = value
        loopback = [untrusted.is_loopback(out[f]) for f in ("tunnel_ip", "tunnel_local_ip") if f in out]
        if len(set(loopback)) > 1:
            raise self.error(node, "libvirt__tunnel_ip and libvirt__tunnel_local_ip: one is a loopback address and "
                             "the other is not (a tunnel stays on one host, or goes between two hosts' addresses)")
        return out

    def mac_option(self, node: Node, options: dict[str, Any], setting: str, label: str) -> str | None:
        """A network's MAC address (libvirt__mac, or Vagrant's mac), checked; None if unset."""
        value = options.get("libvirt__mac", options.get("mac"))
        if value is None:
            return None
        mac = untrusted.parse_mac(self.want(node, setting, value, str))
        if mac is None:
            raise self.error(node, f"{label} {untrusted.visible(str(value))!r} is not a unicast MAC address "
                             "(aa:bb:cc:dd:ee:ff)")
        return mac

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
        kind_node = rec.node_of("type")
        if kind_value is None and truthy(options.get("nfs")):
            kind_value, kind_node = "nfs", rec.node_of("nfs")
        kind = to_s(kind_value) if kind_value is not None else "rsync"
        if kind in TWO_WAY_FOLDER_TYPES and not disabled:
            # A guest writes into a two-way folder: a box may not make one of any host folder.
            box = self.box_of(rec.node_of("hostpath"))
            if box is not None:
                self.ignore_from_box(rec.node_of("hostpath"), box, f"shares the host folder {host} two-way ({kind}) with {guest}")
                return None
            box = self.box_of(kind_node)
            if box is not None:
                self.ignore_from_box(kind_node, box, f"makes synced folder {guest} two-way ({kind}); it stays rsync")
                kind = "rsync"
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
        two_way: dict[str, Any] = {}
        if kind in TWO_WAY_FOLDER_TYPES and not disabled:
            two_way = self.two_way_options(rec, kind, host, guest)
        folder = SyncedFolder(
            host=host, guest=guest, type=kind, disabled=disabled,
            owner=to_s(owner) if owner is not None else None,
            group=to_s(group) if group is not None else None,
            rsync_exclude=exclude, rsync_args=rsync_args, **two_way,
            rsync_auto=truthy(options.get("rsync__auto", True)),
        )
        if disabled:
            return folder
        if kind == "smb":
            raise self.error(
                node, 'synced folder type "smb" is not supported: vmctl runs no SMB server (SMB folders are '
                "Vagrant's way for Windows hosts)",
                hint=f'for {guest} use type: "virtiofs" or "9p" (two-way), "rsync" (the default), or disabled: true',
            )
        if kind != "rsync" and kind not in TWO_WAY_FOLDER_TYPES:
            raise self.error(
                node, f'synced folder type "{untrusted.visible(kind)[:40]}" is not supported: vmctl shares folders '
                'with rsync (the default), "virtiofs" or "9p" ("nfs" is shared with one of those)',
                hint=f'use type: "rsync", "virtiofs" or "9p" for {guest}, or disabled: true',
            )
        quiet = {"guestpath", "hostpath", "disabled", "type", "rsync__exclude", "rsync__args", "owner", "group",
                 "id", "create", "rsync__chown", "rsync__verbose", "rsync__auto", "nfs"}
        if kind in TWO_WAY_FOLDER_TYPES:
            quiet |= {"accessmode", "mount_options", *NFS_OPTIONS}
        for key in options:
            if key not in quiet:
                self.warn(node, f"the synced_folder option {key}: is not used by vmctl (ignored)")
        if kind == "virtiofs" and (owner is not None or group is not None):
            self.warn(node, f"synced folder {guest}: owner: and group: are not applied to a virtiofs folder (QEMU 7.2's "
                      "virtiofsd maps no user ids: the guest sees the host's owners)")
        if kind in TWO_WAY_FOLDER_TYPES:
            if (problem := untrusted.shared_folder_problem(host, str(self.ip.project_dir))) is not None:
                hint = "create it first (create: true makes only rsync folders)" if not os.path.lexists(host) else \
                    "share a folder inside the project, or one you name outside it that is not a symbolic link"
                raise self.error(rec.node_of("hostpath") or node,
                                 f"synced folder {guest} ({kind}): {problem}", hint=hint)
            return folder
        if not file_test(self.ip, "directory?", Path(host)) and not truthy(options.get("create")):
            if file_test(self.ip, "exist?", Path(host)):
                raise self.error(node, f"the host path of synced folder {guest} is not a folder: {host}")
            raise self.error(node, f"the host path of synced folder {guest} does not exist: {host}",
                             hint="create it, or add create: true")
        return folder

    def two_way_options(self, rec: FolderRec, kind: str, host: str, guest: str) -> dict[str, Any]:
        """The options of a two-way folder of KIND: accessmode (9p), mount_options (split
        at commas, each a plain word), and the nfs_* options (kept to be reported)."""
        options, node = rec.options, rec.node
        out: dict[str, Any] = {}
        mode = options.get("accessmode")
        if mode is not None:
            mode = self.want(rec.node_of("accessmode"), "accessmode", mode, str)
            if mode not in ("mapped", "passthrough", "squash"):
                raise self.error(rec.node_of("accessmode") or node,
                                 f'synced folder {guest}: accessmode must be "mapped", "passthrough" or "squash", '
                                 f"not {untrusted.visible(mode)[:40]!r}")
            if kind == "virtiofs" and mode != "passthrough":
                raise self.error(rec.node_of("accessmode") or node,
                                 f'synced folder {guest}: virtiofs has accessmode "passthrough" only')
        if kind in ("9p", "nfs"):
            out["accessmode"] = mode or "mapped"
        value = options.get("mount_options")
        if value is not None:
            items = value if isinstance(value, list) else [value]
            words = [w for x in items for w in self.want(rec.node_of("mount_options"), "mount_options", x, str).split(",")
                     if w]
            if (problem := untrusted.mount_options_problem(words)) is not None:
                raise self.error(rec.node_of("mount_options") or node, f"synced folder {guest}: {problem}")
            out["mount_options"] = tuple(words)
        nfs = tuple((k, to_s(v) if not isinstance(v, bool) else str(v).lower())
                    for k, v in sorted(options.items()) if k in NFS_OPTIONS)
        out["nfs_options"] = tuple((k, untrusted.visible(v)[:200]) for k, v in nfs)
        return out

    def provisioner(self, rec: ProvisionerRec) -> Provisioner | None:
        name, kind, options, node = rec.name, rec.type, dict(rec.options), rec.node
        box = self.box_of(node)
        if kind == "ansible":
            # ansible runs on this computer: a box's Vagrantfile may not add such runs, nor
            # change the options of the project's own.
            if box is not None:
                self.ignore_from_box(node, box, "adds an ansible provisioner, which runs ansible-playbook on this computer")
                return None
            for key in list(options):
                option_box = self.box_of(rec.node_of(key))
                if option_box is not None:
                    self.ignore_from_box(rec.node_of(key), option_box, f"sets the ansible provisioner option {key}")
                    del options[key]
        if kind not in ("ansible_local", "docker"):  # their paths are the guest's
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
        if kind == "reload":
            for key in options:
                if key not in ("run", "name"):
                    self.warn(node, f"the reload provisioner option {key}: is not used by vmctl (ignored)")
            return Provisioner(type="reload", name=label, run=run)
        if kind in ("ansible", "ansible_local"):
            return Provisioner(type=kind, name=label, run=run, ansible=self.ansible(kind, options, node))
        if kind == "docker":
            return Provisioner(type="docker", name=label, run=run, docker=self.docker(options, node))
        return self.shell(label, run, options, node)

    def shell(self, label: str | None, run: str, options: dict[str, Any], node: Node) -> Provisioner:
        for key in options:
            if key not in ("inline", "path", "args", "env", "privileged", "run", "name", "reboot", "reset"):
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
            run=run, reboot=self.flag(node, "reboot", options.get("reboot")),
            reset=self.flag(node, "reset", options.get("reset")),
        )

    def flag(self, node: Node | None, setting: str, value: Any, default: bool = False) -> bool:
        return default if value is None else bool(self.want(node, setting, value, bool))

    def text_list(self, node: Node | None, setting: str, value: Any) -> list[str]:
        """A String or an Array of them (symbols too), as a list."""
        items = value if isinstance(value, list) else [value]
        return [self.want(node, setting, item, str) for item in items if item is not None]

    # ansible and ansible_local -------------------------------------------------------
    def ansible(self, kind: str, options: dict[str, Any], node: Node) -> AnsibleSettings:
        from vmctl.vagrantfile.config import ANSIBLE_DEPRECATED, ANSIBLE_GUEST, ANSIBLE_HOST

        host = kind == "ansible"
        what = f"the {kind} provisioner"
        for old, new in ANSIBLE_DEPRECATED.items():
            if old in options:
                options.setdefault(new, options.pop(old))
        known = ANSIBLE_HOST if host else ANSIBLE_GUEST
        other = ANSIBLE_GUEST if host else ANSIBLE_HOST
        for key in options:
            if key in ("run", "name") or key in known:
                continue
            if key in other:
                self.warn(node, f"{what} option {key}: belongs to the "
                          f"{'ansible_local' if host else 'ansible'} provisioner (ignored)")
            else:
                self.warn(node, f"{what} option {key}: is not used by vmctl (ignored)")
        values: dict[str, Any] = {}

        def text(key: str) -> str | None:
            value = options.get(key)
            return None if value is None else self.want(node, f"{kind} {key}", value, str)

        def host_file(key: str, *, folder: bool = False) -> str | None:
            """KEY's host path, which must exist and lie in the project folder (or what
            VMCTL_READ_PATHS names): ansible reads, and may run, it on this computer."""
            value = text(key)
            if value is None:
                return None
            return self.ansible_host_path(node, key, value, folder=folder)

        playbook = text("playbook")
        if not playbook:
            raise self.error(node, f"{what} needs a playbook", hint='e.g. ansible.playbook = "playbook.yml"')
        values["playbook"] = host_file("playbook") if host else playbook
        for key in ("start_at_task", "become_user", "version"):
            values[key] = text(key)
        for key in ("limit", "tags", "skip_tags"):
            value = options.get(key)
            if value is not None:
                values[key] = ",".join(self.text_list(node, f"{kind} {key}", value)) or None
        verbose = options.get("verbose")
        if verbose is True:
            values["verbose"] = "v"
        elif verbose not in (None, False, ""):
            m = re.fullmatch(r"-?(v+)", to_s(verbose))
            values["verbose"] = m.group(1) if m else "v"  # Vagrant's safe default
        values["become"] = self.flag(node, f"{kind} become", options.get("become"))
        mode = options.get("compatibility_mode")
        if mode is not None:
            mode_text = to_s(mode)
            if mode_text not in ("auto", "1.8", "2.0"):
                raise self.error(node, f'{kind} compatibility_mode must be "auto", "1.8" or "2.0", not {mode_text!r}')
            values["compatibility_mode"] = mode_text
        values.update(self.ansible_inventory(kind, options, node))
        extra = options.get("extra_vars")
        if isinstance(extra, dict):
            data = to_json_value(extra)
            for key in data:
                problem = untrusted.ansible_var_problem(key) if host else None
                if problem:
                    raise self.error(node, f"{kind} extra_vars: {problem}")
            values["extra_vars"] = data
        elif extra is not None:
            path = self.want(node, f"{kind} extra_vars", extra, str).removeprefix("@")
            values["extra_vars_file"] = self.ansible_host_path(node, "extra_vars", path) if host else path
        raw = options.get("raw_arguments")
        if raw is not None:
            args = self.text_list(node, f"{kind} raw_arguments", raw)
            if host:
                problem = untrusted.ansible_args_problem(args, self.ansible_file_problem)
                if problem:
                    raise self.error(node, f"{kind} raw_arguments: {problem}",
                                     hint="raw_arguments may hold ansible-playbook options that shape the run "
                                     "(--check, --diff, --forks=N, -e key=value, ...)")
            values["raw_arguments"] = tuple(args)
        for key in ("galaxy_role_file", "vault_password_file", "config_file", "inventory_path", "galaxy_roles_path"):
            if host:
                values[key] = host_file(key, folder=key in ("inventory_path", "galaxy_roles_path"))
            else:
                values[key] = text(key)
        for key, program in (("playbook_command", "ansible-playbook"), ("galaxy_command", "ansible-galaxy")):
            command = text(key)
            if command is None:
                continue
            if host:
                self.ansible_command_check(node, key, command, program)
            values[key] = command
        if host:
            raw_ssh = options.get("raw_ssh_args")
            if raw_ssh is not None:
                items = self.text_list(node, "ansible raw_ssh_args", raw_ssh)
                kept, dropped, problem = untrusted.parse_ssh_args(items)
                if problem:
                    raise self.error(node, f"ansible raw_ssh_args: {problem}",
                                     hint="raw_ssh_args may hold ssh options that tune the connection "
                                     "(-o ServerAliveInterval=30, -o ControlPersist=60s, -C ...)")
                for item in dropped:
                    self.warn(node, f"ansible raw_ssh_args: {item}: not passed to ssh (ignored)")
                values["raw_ssh_args"] = tuple(kept)
            for key in ("host_key_checking", "ask_become_pass", "ask_vault_pass"):
                values[key] = self.flag(node, f"ansible {key}", options.get(key))
            values["force_remote_user"] = self.flag(node, "ansible force_remote_user",
                                                    options.get("force_remote_user"), True)
        else:
            values["install"] = self.flag(node, "ansible_local install", options.get("install"), True)
            install_mode = options.get("install_mode")
            if install_mode is not None:
                mode_text = to_s(install_mode)
                if mode_text not in ("default", "pip", "pip_args_only"):
                    raise self.error(node, f'ansible_local install_mode must be :default, :pip or :pip_args_only, not {mode_text!r}')
                values["install_mode"] = mode_text
            for key in ("pip_args", "pip_install_cmd"):
                values[key] = text(key)
            for key in ("provisioning_path", "tmp_path"):
                value = text(key)
                if value is not None:
                    if not value.startswith("/") or any(ord(c) < 32 for c in value):
                        raise self.error(node, f"ansible_local {key} must be an absolute path in the guest, not {untrusted.visible(value)[:60]!r}")
                    values[key] = value
        return AnsibleSettings(**{k: v for k, v in values.items() if v is not None or k in ("extra_vars",)})

    def ansible_file_problem(self, path: str) -> str | None:
        """Why the host file PATH (relative to the project) may not be handed to ansible."""
        full = Path(self.host_path(path, self.ip.project_dir))
        if read_refusal(self.ip, full) is not None:
            return (f"{full} lies outside the project folder; ansible reads (and may run) it on this computer, "
                    f"so it must be in the project folder or a folder {READ_PATHS_VARIABLE} names")
        return None

    def ansible_host_path(self, node: Node | None, key: str, value: str, *, folder: bool = False) -> str:
        full = self.host_path(value, self.ip.project_dir)
        if any(ord(c) < 32 for c in full):
            raise self.error(node, f"ansible {key} {untrusted.visible(value)[:60]!r} holds a control character")
        problem = self.ansible_file_problem(full)
        if problem is not None:
            raise self.error(node, f"ansible {key}: {problem}",
                             hint=f"move it into the project, or allow its folder: {READ_PATHS_VARIABLE}=FOLDER vmctl ...")
        if key == "galaxy_roles_path":
            return full  # ansible-galaxy makes it
        test = "exist?" if folder else "file?"
        if not file_test(self.ip, test, Path(full)):
            raise self.error(node, f"the ansible provisioner's {key} does not exist: {full}")
        return full

    def ansible_command_check(self, node: Node | None, key: str, command: str, program: str) -> None:
        import shlex

        try:
            words = shlex.split(command)
        except ValueError:
            raise self.error(node, f"ansible {key} {untrusted.visible(command)[:80]!r} cannot be split into words") from None
        problem = untrusted.ansible_program_problem(words[0], program) if words else f"ansible {key} is empty"
        if problem is None and key == "playbook_command" and len(words) > 1:
            problem = "playbook_command names the program only (put options in raw_arguments)"
        if problem is None and key == "galaxy_command":
            problem = untrusted.galaxy_args_problem(words[1:])
        if problem is not None:
            raise self.error(node, f"ansible {key}: {problem}",
                             hint=f"leave {key} out to run {program} from PATH")

    def ansible_inventory(self, kind: str, options: dict[str, Any], node: Node) -> dict[str, Any]:
        """groups (with NAME:vars and NAME:children) and host_vars, as plain data."""
        host = kind == "ansible"
        out: dict[str, Any] = {"groups": {}, "group_vars": {}, "group_children": {}, "host_vars": {}}
        groups = options.get("groups")
        if groups is not None:
            for gname_value, members in self.want(node, f"{kind} groups", groups, dict).items():
                gname = to_s(gname_value)
                base, _, suffix = gname.partition(":")
                if not _GROUP_NAME.fullmatch(base) or suffix not in ("", "vars", "children"):
                    raise self.error(node, f"{kind} groups: {untrusted.visible(gname)[:60]!r} is not a group name "
                                     "(NAME, NAME:vars or NAME:children)")
                if suffix == "vars":
                    variables = self.ansible_vars(node, f"{kind} groups {gname}", members, host)
                    out["group_vars"][base] = {**out["group_vars"].get(base, {}), **variables}
                    continue
                if isinstance(members, str):
                    items = members.split()
                elif isinstance(members, list):
                    items = [to_s(m) for m in members]
                elif isinstance(members, Symbol):
                    items = [members.name]
                else:
                    items = []
                for item in items:
                    if not _GROUP_MEMBER.fullmatch(item):
                        raise self.error(node, f"{kind} groups {gname}: {untrusted.visible(item)[:60]!r} is not a "
                                         "machine name, group name or host range")
                out["group_children" if suffix == "children" else "groups"][base] = items
        host_vars = options.get("host_vars")
        if host_vars is not None:
            for machine, variables in self.want(node, f"{kind} host_vars", host_vars, dict).items():
                mname = to_s(machine)
                if untrusted.machine_name_problem(mname):
                    raise self.error(node, f"{kind} host_vars: {untrusted.visible(mname)[:60]!r} is not a machine name")
                out["host_vars"][mname] = self.ansible_vars(node, f"{kind} host_vars {mname}", variables, host)
        return out

    def ansible_vars(self, node: Node | None, where: str, value: Any, host: bool) -> dict[str, Any]:
        """Variables given as a Hash, an Array of "k=v" or a String "k=v k2=v2"."""
        import shlex

        if isinstance(value, dict):
            data = to_json_value(value)
        else:
            words: list[str] = []
            for item in value if isinstance(value, list) else [value]:
                try:
                    words += shlex.split(to_s(item))
                except ValueError:
                    raise self.error(node, f"{where}: {untrusted.visible(to_s(item))[:60]!r} is not key=value pairs") from None
            data = {}
            for word in words:
                key, eq, text = word.partition("=")
                if not eq:
                    raise self.error(node, f"{where}: {untrusted.visible(word)[:60]!r} is not key=value")
                data[key] = _ini_value(text)
        for key in data:
            problem = untrusted.ansible_var_problem(key) if host else None
            if problem is None and (not isinstance(key, str) or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", key)):
                problem = f"{untrusted.visible(str(key))[:60]!r} is not a variable name"
            if problem:
                raise self.error(node, f"{where}: {problem}")
        return data

    # docker ------------------------------------------------------------------------------
    def docker(self, options: dict[str, Any], node: Node) -> DockerSettings:
        for key in options:
            if key not in ("images", "build_images", "containers", "post_install", "run", "name"):
                self.warn(node, f"the docker provisioner option {key}: is not used by vmctl (ignored)")
        images = tuple(self.text_list(node, "docker images", options.get("images") or []))
        builds = []
        for path, opts in options.get("build_images") or []:
            opts = {to_s(k): v for k, v in (opts or {}).items()}
            args = opts.get("args")
            builds.append(DockerBuild(path=self.want(node, "docker build_image path", path, str),
                                      args=self.want(node, "docker build_image args", args, str) if args is not None else None))
        runs = []
        for cname, opts in (options.get("containers") or {}).items():
            opts = {to_s(k): v for k, v in opts.items()}
            for key in opts:
                if key not in ("image", "cmd", "args", "daemonize", "restart", "auto_assign_name"):
                    self.warn(node, f"the docker run option {key}: is not used by vmctl (ignored)")
            name = to_s(cname)
            image = opts.get("image")
            restart = opts.get("restart", "always")
            runs.append(DockerRun(
                name=name,
                image=self.want(node, "docker run image", image, str) if image is not None else name,
                cmd=self.want(node, "docker run cmd", opts["cmd"], str) if opts.get("cmd") is not None else None,
                args=self.want(node, "docker run args", opts["args"], str) if opts.get("args") is not None else None,
                daemonize=self.flag(node, "docker run daemonize", opts.get("daemonize"), True),
                restart=to_s(restart) if restart not in (None, False) else None,
                auto_assign_name=self.flag(node, "docker run auto_assign_name", opts.get("auto_assign_name"), True),
            ))
        post = None
        if options.get("post_install") is not None:
            kind, opts = options["post_install"]
            if kind != "shell":
                raise self.error(node, f"the docker provisioner's post_install_provision must be a shell provisioner, not {kind!r}")
            post = self.shell(None, "always", {to_s(k): v for k, v in opts.items()}, node)
        return DockerSettings(images=images, build_images=tuple(builds), runs=tuple(runs), post_install=post)

    # cloud-init ------------------------------------------------------------------------
    def cloud_init(self, rec: CloudInitRec) -> CloudInitPart | None:
        options, node = {to_s(k): v for k, v in rec.options.items()}, rec.node
        if rec.type != "user_data":
            raise self.error(node, f"config.vm.cloud_init type {rec.type!r} is not supported: the type is :user_data")
        for key in options:
            if key not in ("content_type", "content_disposition_filename", "path", "inline"):
                self.warn(node, f"the cloud_init option {key}: is not used by vmctl (ignored)")
        content_type = options.get("content_type")
        if content_type is None:
            raise self.error(node, "config.vm.cloud_init needs content_type:",
                             hint='e.g. content_type: "text/cloud-config" (or "text/x-shellscript")')
        content_type = self.want(node, "cloud_init content_type", content_type, str)
        if content_type not in CLOUD_INIT_CONTENT_TYPES:
            raise self.error(node, f"cloud_init content_type {untrusted.visible(content_type)[:60]!r} is not one cloud-init "
                             f"reads: {', '.join(CLOUD_INIT_CONTENT_TYPES)}")
        path, inline = options.get("path"), options.get("inline")
        if (path is None) == (inline is None):
            raise self.error(node, "config.vm.cloud_init takes path: (a file) or inline: (the text), one of them")
        resolved = None
        if path is not None:
            resolved = self.host_path(self.want(node, "cloud_init path", path, str), self.ip.project_dir)
            box = self.from_box_outside(node, resolved)
            if box is not None:
                self.ignore_from_box(node, box, f"gives cloud-init the host file {resolved}")
                return None
            if not file_test(self.ip, "file?", Path(resolved)):
                raise self.error(node, f"the cloud_init file does not exist: {resolved}")
        filename = options.get("content_disposition_filename")
        if filename is not None:
            filename = self.want(node, "cloud_init content_disposition_filename", filename, str)
            if not re.fullmatch(r"[A-Za-z0-9_.+-]{1,100}", filename):
                raise self.error(node, f"cloud_init content_disposition_filename {untrusted.visible(filename)[:60]!r} "
                                 "is not a plain file name")
        return CloudInitPart(
            content_type=content_type, path=resolved,
            inline=self.want(node, "cloud_init inline", inline, str) if inline is not None else None,
            filename=filename,
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

    def with_ignition(self, libvirt: LibvirtSettings) -> LibvirtSettings:
        """config.ignition (the vagrant-ignition plugin's settings): the config file becomes
        QEMU's fw_cfg entry opt/com.coreos/config, read by Ignition at the first boot."""
        settings = self.merged.ignition
        enabled, enabled_node = settings.get("enabled", (None, None))
        text, node = settings.get("path", (None, None))
        if not enabled:
            if text is not None:
                self.warn(node, "config.ignition.path is set but config.ignition.enabled is not true: "
                          "the machine gets no Ignition config (ignored)")
            return libvirt
        if text is None:
            # vagrant-ignition then makes a config holding only the SSH key (coreos-vagrant
            # relies on it); vmctl puts its own key in over SSH, so nothing is lost.
            self.warn(enabled_node, "config.ignition.enabled is true but config.ignition.path names no config: "
                      "the machine gets no Ignition config (vmctl installs its SSH key itself)")
            return libvirt
        box = self.box_of(node)
        if box is not None:
            self.ignore_from_box(node, box, "hands the machine an Ignition config (config.ignition.path)")
            return libvirt
        path = self.host_path(text, node.source.path.parent if node is not None else self.ip.project_dir)
        project = Path(os.path.realpath(self.ip.project_dir))
        if not Path(os.path.realpath(path)).is_relative_to(project):
            raise self.error(node, f"config.ignition.path {untrusted.visible(text)[:80]!r} is outside the project "
                             f"({project})", hint="keep the Ignition config in the project's folder")
        if not file_test(self.ip, "file?", Path(path)):
            raise self.error(node, f"config.ignition.path: {path} does not exist (or is not a file)")
        size = self.ip.recorder.note("size", path, recording.file_size(Path(path)))
        if size is not None and size > IGNITION_MAX_BYTES:
            raise self.error(node, f"config.ignition.path: {path} has {size} bytes, more than an Ignition config "
                             f"may have here ({IGNITION_MAX_BYTES // 1024**2} MiB)",
                             hint="fetch large files from a URL in the config rather than inlining them")
        if any(e.name == IGNITION_FW_CFG for e in libvirt.fw_cfg) or any(
                f"name={IGNITION_FW_CFG}" in arg for arg in libvirt.qemu_args):
            raise self.error(node, f"config.ignition.path and libvirt's {IGNITION_FW_CFG} (sysinfo fw_cfg or "
                             "qemuargs -fw_cfg) both give an Ignition config", hint="keep one of them")
        entry = FwCfgEntry(name=IGNITION_FW_CFG, file=path)
        return dataclasses.replace(libvirt, fw_cfg=(*libvirt.fw_cfg, entry))

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
            public = r.public_network(net.options, net.node)
            if public is not None:
                networks.append(public)
        else:
            guess = did_you_mean(net.type, list(SUPPORTED_NETWORKS))
            raise r.error(net.node, f"unknown network type {net.type!r}: vmctl supports forwarded_port, private_network and public_network",
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
    cloud_init = [c for c in (r.cloud_init(rec) for rec in merged.cloud_inits) if c is not None]
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
        libvirt=r.with_ignition(r.libvirt()),
        forwarded_ports=tuple(ports),
        private_networks=tuple(networks),
        synced_folders=tuple(folders),
        provisioners=tuple(provisioners),
        triggers=tuple(triggers),
        ssh=r.ssh(),
        disks=r.disks(),
        graceful_halt_timeout=vm.get("graceful_halt_timeout") or 60,
        allow_hosts_modification=vm.get("allow_hosts_modification") is not False,
        box_download=download,
        cloud_init=tuple(cloud_init),
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
