"""What a machine's domain is made of: the Vagrantfile's settings, the machine's state and
disks, and what this host can do, turned into a domain.DomainSpec. This is where every
value is chosen (vmctl's defaults, vagrant-libvirt's meaning of each setting); the domain
package only writes what it is given.

Nothing here changes anything: `check_host` says what cannot work here and why (before
anything is made), `build` returns the spec and the notes `up` prints about what was
mapped (host-passthrough under TCG is QEMU's `max`, ...).
"""

from __future__ import annotations

import dataclasses
import os
import re
import shutil
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

from vmctl import domain, network, paths, untrusted
from vmctl.domain import cpu as dcpu
from vmctl.domain import devices as ddev
from vmctl.domain import disks as ddisks
from vmctl.domain import filesystems as dfs
from vmctl.domain import firmware as dfw
from vmctl.errors import MachineError, MissingToolError
from vmctl.remote import host_of as uri_host

if TYPE_CHECKING:
    from vmctl.machine.disks import MachineDisk
    from vmctl.machine.state import MachineState
    from vmctl.vagrantfile.model import LibvirtSettings, MachineConfig, PrivateNetwork, SyncedFolder

AGENT_CHANNEL = "org.qemu.guest_agent.0"
SPICE_CHANNEL = "com.redhat.spice.0"
FIRMWARE_DESCRIPTORS = (Path("/usr/share/qemu/firmware"), Path("/etc/qemu/firmware"))


@dataclass(frozen=True)
class Host:
    """What the host offers, as far as the domain depends on it."""

    accel: str  # kvm | tcg
    uri: str
    embedded: bool
    is_root: bool = False

    @property
    def system(self) -> bool:
        return self.uri.startswith("qemu:///system")

    @property
    def daemon_networks(self) -> bool:
        """Whether a private network is a libvirt network the daemon makes (libvirtnet.py):
        a system daemon, here or remote (root's qemu:///session is the system daemon too)."""
        if self.embedded:
            return False
        m = re.match(r"qemu(?:\+[a-z0-9]+)?://[^/]*/(system|session)\b", self.uri)
        which = m.group(1) if m else None
        return which == "system" or (which == "session" and self.is_root and uri_host(self.uri) is None)


def check_remote(cfg: MachineConfig, host: Host) -> None:
    """Stop where a setting needs this computer's files or devices and the machine is to
    run on a remote libvirt host (docs/remote.md: what is not done yet)."""
    from vmctl import remote

    where = remote.host_of(host.uri)
    if where is None:
        return
    from vmctl import hostnet

    lv = cfg.libvirt
    nets = [n for n in cfg.private_networks
            if n.public or hostnet.mode(n, is_root=host.is_root, daemon=host.daemon_networks) == "bridge"]
    needs = [
        *([f"the public network on {n.devs[0] if n.devs else 'a host device'} (a device of the host, which vmctl does "
           "not look up on a remote host)" for n in nets if n.public]),
        *([f"the private network {n.ip or n.subnet} as a host-only network: a remote qemu:///session has no libvirt "
           "networks (use .../system), and vmctl's own bridges are this computer's" for n in nets if not n.public]),
        *([f"a {f.type} synced folder ({f.host}): it shares a folder of this computer"
           for f in cfg.synced_folders if not f.disabled and f.type in ("9p", "virtiofs", "nfs")]),
        *(["libvirt.dtb (a file of this computer)"] if lv.dtb else []),
        *(["CD-ROM images (files of this computer)"] if any(c.path for c in lv.cdroms) else []),
        *(["host PCI or USB devices"] if lv.pcis or lv.usbs else []),
    ]
    if needs:
        raise MachineError(f"the machine is to run on the remote libvirt host {where}, and it asks for "
                           + "; ".join(needs),
                           hint="run it on this computer (no libvirt.host / remote libvirt.uri), or remove "
                           "these settings (rsync folders work on remote hosts)")


def check_host(cfg: MachineConfig, host: Host) -> list[str]:
    """Stop (MachineError) where a setting cannot take effect here, saying why and what
    would make it work; return warnings for what is applied but harmlessly not honoured."""
    lv = cfg.libvirt
    warnings: list[str] = []
    check_remote(cfg, host)
    if lv.uri and host.uri != lv.uri and os.environ.get("VMCTL_LIBVIRT_URI"):
        warnings.append(f"VMCTL_LIBVIRT_URI ({host.uri}) is used instead of the Vagrantfile's libvirt connection "
                        f"({lv.uri}); unset it to use the Vagrantfile's")
    if lv.mgmt_attach is False:
        raise MachineError("libvirt.mgmt_attach = false leaves vmctl no way into the machine: vmctl reaches it over "
                           "SSH through its management NIC (QEMU user networking on 127.0.0.1)",
                           hint="remove mgmt_attach = false; private networks still come in addition to it")
    count = lv.nic_adapter_count
    if count is not None and 1 + len(cfg.private_networks) > count:
        raise MachineError(f"libvirt.nic_adapter_count = {count} leaves no room for the management NIC and "
                           f"{len(cfg.private_networks)} private networks", hint="raise nic_adapter_count")
    if (lv.pcis or lv.usbs) and not (host.system and host.is_root):
        raise MachineError("passing host PCI or USB devices through (libvirt.pci / libvirt.usb) needs libvirt's "
                           "system daemon (qemu:///system) run as root: it hands the device over with VFIO and "
                           "device permissions only it can change",
                           hint="run as root with VMCTL_LIBVIRT_URI=qemu:///system (or libvirt.uri = "
                           "\"qemu:///system\")")
    for pci in lv.pcis:
        sysfs = Path(f"/sys/bus/pci/devices/{pci.domain:04x}:{pci.bus:02x}:{pci.slot:02x}.{pci.function:x}")
        if not sysfs.exists():
            raise MachineError(f"libvirt.pci: this host has no PCI device {sysfs.name}", hint="check lspci -D")
    if lv.launchsecurity_data is not None and not _sev_available(host):
        raise MachineError("libvirt.launchsecurity (AMD SEV) needs an AMD host with SEV enabled and KVM; this "
                           "host has no SEV" + (" and runs guests under TCG" if host.accel == "tcg" else ""),
                           hint="remove launchsecurity, or run on an AMD EPYC host with kvm_amd sev=1")
    if any(m.name == "hugepages" for m in lv.memory_backing):
        free = _hugepages_free()
        if not _hugetlbfs_mounted() or free == 0:
            raise MachineError("libvirt.memorybacking :hugepages needs huge pages: hugetlbfs mounted (/dev/hugepages) "
                               f"and pages reserved (this host has {free or 0} free)",
                               hint=f"reserve them as root: sysctl vm.nr_hugepages={cfg.memory // 2 + 64} "
                               "(2 MiB pages), and mount -t hugetlbfs none /dev/hugepages")
    hard = [m for m in lv.memtunes if m.type in ("hard_limit", "swap_hard_limit")]
    if hard and host.embedded and not _can_raise_memlock():
        raise MachineError("libvirt.memtune hard_limit needs the privilege to raise QEMU's locked-memory limit "
                           "(CAP_SYS_RESOURCE), which this process does not have, and a cgroup to apply it, which "
                           "the embedded driver has not",
                           hint="use soft_limit, or run with VMCTL_LIBVIRT_URI=qemu:///system as root")
    if lv.memtunes and host.embedded and not hard and not host.is_root:
        warnings.append("libvirt.memtune soft_limit: the embedded libvirt driver of a user who is not root runs QEMU "
                        "outside cgroups, so the limit is recorded but not enforced (harmless: it only ranks memory "
                        "reclaim); run as root, or use qemu:///system, to enforce it")
    if lv.shares is not None and host.embedded:
        warnings.append("libvirt.shares: vmctl's embedded libvirt driver leaves out the cpu cgroup controller (its "
                        "guests would otherwise be weighed together as one process), so CPU shares are not "
                        "enforced (harmless: they only rank CPU time); qemu:///system enforces them")
    if lv.autostart and host.embedded:
        warnings.append("libvirt.autostart: the domain is marked to start with libvirt, but the embedded driver has "
                        "no daemon that starts at boot, so it starts with `vmctl up` only (qemu:///system starts it "
                        "at boot)")
    tpm = tpm_wanted(lv)
    if tpm and (lv.tpm_type or "passthrough") == "emulator":
        for tool in ("swtpm", "swtpm_setup"):
            if shutil.which(tool) is None:
                raise MissingToolError(f"could not find '{tool}', which an emulated TPM (tpm_type = \"emulator\") needs",
                                       hint="install the swtpm and swtpm-tools packages")
    elif tpm:
        device = lv.tpm_path or "/dev/tpm0"
        if not os.path.exists(device):
            raise MachineError(f"tpm_type \"passthrough\" hands the host's TPM {device} to the machine, and this host "
                               "has none", hint='use an emulated TPM: libvirt.tpm_type = "emulator" (swtpm)')
    if lv.graphics_type in ("sdl", "curses", "gtk"):
        raise MachineError(f"libvirt.graphics_type = \"{lv.graphics_type}\" opens a window or takes the terminal: "
                           "vmctl runs QEMU in the background", hint='use "vnc" or "spice" and a viewer')
    if (lv.graphics_gl or lv.video_accel3d) and not list(Path("/dev/dri").glob("renderD*")):
        raise MachineError("graphics_gl / video_accel3d need a GPU render node (/dev/dri/renderD*), and this host "
                           "has none", hint="remove graphics_gl and video_accel3d")
    spice = graphics_type(lv) == "spice"
    if lv.redirdevs and not spice:
        raise MachineError("libvirt.redirdev type 'spicevmc' redirects USB over a SPICE display",
                           hint='set libvirt.graphics_type = "spice"')
    if lv.smartcard_dev is not None and lv.smartcard_dev.type == "spicevmc" and not spice:
        raise MachineError("libvirt.smartcard type 'spicevmc' reads the card over a SPICE display",
                           hint='set libvirt.graphics_type = "spice"')
    machine_type = lv.machine_type or "pc"
    if "q35" in machine_type and (lv.floppies or any(d.type == "floppy" for d in cfg.disks)):
        raise MachineError("a q35 machine has no floppy controller", hint='use libvirt.machine_type = "pc" for a floppy')
    arch = lv.machine_arch or "x86_64"
    binary = {"x86_64": "qemu-system-x86_64", "i686": "qemu-system-i386"}.get(arch, f"qemu-system-{arch}")
    if lv.emulator_path is None and shutil.which(binary) is None:
        raise MissingToolError(f"could not find '{binary}', which libvirt.machine_arch = \"{arch}\" needs",
                               hint=f"install QEMU for {arch} (Debian: qemu-system-{'arm' if 'arm' in arch or arch == 'aarch64' else 'misc'})")
    if lv.emulator_path is not None and not os.access(lv.emulator_path, os.X_OK):
        raise MachineError(f"libvirt.emulator_path {lv.emulator_path} is not an executable file")
    if arch not in ("x86_64", "i686") and host.accel == "kvm":
        raise MachineError(f"libvirt.machine_arch = \"{arch}\" cannot run under KVM on this x86 host",
                           hint='set libvirt.driver = "qemu" (emulation)')
    for folder, kind, _tag in shared_folders(cfg, host):
        if kind == "virtiofs" and not virtiofs_possible(host):
            why = (f"{dfs.VIRTIOFSD} is missing (Debian: qemu-system-common ships it)" if not dfs.VIRTIOFSD.exists()
                   else "libvirt 9.0 starts virtiofsd only when it runs as root (vmctl's embedded driver run by "
                   "root, or qemu:///system)")
            raise MachineError(f"synced folder {folder.guest} (virtiofs) cannot be shared here: {why}",
                               hint='run vmctl as root, or use type: "9p" (QEMU serves it itself; the guest kernel '
                               'needs 9p) or "rsync"')
    for key in ("kernel", "initrd", "dtb", "loader"):
        value = getattr(lv, key)
        if value and not os.path.isfile(value):
            raise MachineError(f"libvirt.{key} {value} does not exist")
    warnings += network_warnings(cfg, host)
    from vmctl import storage

    pool_note = storage.embedded_pool_warning(host.uri, lv)
    if pool_note is not None:
        warnings.append(pool_note)
    if lv.loader:
        nvram_template(lv)  # raises when there is none to copy
    if lv.nodeset is not None:
        for node in _cpuset_numbers(lv.nodeset):
            if not Path(f"/sys/devices/system/node/node{node}").exists():
                raise MachineError(f"libvirt.nodeset names host NUMA node {node}, which this host has not")
    return warnings


def network_warnings(cfg: MachineConfig, host: Host) -> list[str]:
    """Stop where a private network cannot work here; say which ones the host cannot reach
    (hostnet.mode decides bridge or multicast)."""
    from vmctl import hostnet

    warnings: list[str] = []
    bridged = False
    prefixes: list[tuple[str, str]] | None = None
    for net in cfg.private_networks:
        overlap = None
        if net.public:
            _, dev = public_attachment(net, host)
            if (net.attach == "bridge" or (net.attach is None and is_bridge(dev))) and net.macvtap_mode != "bridge":
                warnings.append(f"public_network mode: {net.macvtap_mode} is a macvtap setting; {dev} is a "
                                "bridge, which the machine's NIC joins as it is")
            continue
        kind = hostnet.mode(net, is_root=host.is_root, daemon=host.daemon_networks)
        if kind == "udp" and (net.tunnel_port is None or net.tunnel_local_port is None):
            raise MachineError(f"the private network {net.ip or net.subnet} is a udp tunnel (libvirt__tunnel_type: "
                               "\"udp\") between two machines of one host: it needs libvirt__tunnel_port: and "
                               "libvirt__tunnel_local_port: (the two machines name each other's ports)",
                               hint="add both ports to the network in both machines (vmctl chooses them only between "
                               "machines on two hosts)")
        if net.forward_mode != "none" and kind not in ("bridge", "libvirt"):
            warnings.append(f"libvirt__forward_mode: {net.forward_mode} is not applied to the private network "
                            f"{net.ip or net.subnet}: it is not a host-only network here, so nothing is forwarded")
        if kind == "libvirt":
            from vmctl import libvirtnet

            libvirtnet.plan(net)  # stops on what cannot be (the host's own address, a bad name)
            if net.iface_name and uri_host(host.uri) is None and os.path.exists(f"/sys/class/net/{net.iface_name}"):
                raise MachineError(f"libvirt__iface_name {net.iface_name}: the host has an interface of that name "
                                   "already", hint="choose another name, or leave libvirt__iface_name out")
            remote = uri_host(host.uri)
            if remote is not None:
                warnings.append(f"the private network {net.ip or net.subnet} is a libvirt network on {remote}: that "
                                "host reaches the address, this one does not (use forwarded ports from here)")
            continue
        if kind == "bridge":
            planned = hostnet.plan(net, str(paths.vmctl_home()))  # stops on what cannot be (the host's own address)
            prefixes = prefixes if prefixes is not None else hostnet.IpOps().host_prefixes()
            overlap = hostnet.foreign_overlap(planned, prefixes)
            if overlap is None:
                bridged = True
                if net.forward_device and not os.path.exists(f"/sys/class/net/{net.forward_device}"):
                    raise MachineError(f"libvirt__forward_device {net.forward_device}: the host has no such interface",
                                       hint=f"choose one of: {', '.join(host_devices()) or '(none)'}")
                if net.iface_name and os.path.exists(f"/sys/class/net/{net.iface_name}"):
                    raise MachineError(f"libvirt__iface_name {net.iface_name}: the host has an interface of that name "
                                       "already", hint="choose another name, or leave libvirt__iface_name out")
                continue
        if net.type == "dhcp" or net.dhcp_enabled:
            from vmctl import untrusted

            why = (f"libvirt__tunnel_type asks for a {net.tunnel_type} tunnel" if net.tunnel_type
                   else f"its subnet overlaps the host's network {overlap}" if overlap
                   else untrusted.host_network_problem(net.subnet) if host.is_root or host.daemon_networks
                   else "only root can make one (a bridge and its DHCP server) with vmctl's embedded driver")
            raise MachineError(f"the private network {net.subnet} wants DHCP, which needs a host-only network: {why}",
                               hint="run vmctl as root or through a libvirt daemon (libvirt.uri = \"qemu:///system\") "
                               "with a private subnet, or give the machine a static ip: (and no libvirt__dhcp_enabled)")
        note = (hostnet.overlap_note(net, overlap) if overlap
                else hostnet.reachability_note(net, is_root=host.is_root, daemon=host.daemon_networks))
        if note:
            warnings.append(note)
        if net.iface_name:
            warnings.append(f"libvirt__iface_name {net.iface_name}: the private network {net.ip or net.subnet} is a "
                            f"{'udp tunnel' if net.tunnel_type == 'udp' else 'multicast segment'}, which has no host "
                            "interface to name")
    if bridged:
        forwarding = any(n.forward_mode != "none" for n in cfg.private_networks if not n.public)
        for tool, package, why in (("ip", "iproute2", "make host-only bridges"),
                                   ("dnsmasq", "dnsmasq-base", "serve DHCP on private networks"),
                                   ("nft", "nftables", "forward private networks (libvirt__forward_mode)")):
            if tool == "dnsmasq" and not any(n.type == "dhcp" or n.dhcp_enabled for n in cfg.private_networks
                                             if not n.public):
                continue
            if tool == "nft" and not forwarding:
                continue
            if shutil.which(tool) is None and shutil.which(tool, path="/usr/sbin:/sbin") is None:
                raise MissingToolError(f"could not find '{tool}', which is required to {why}",
                                       hint=f"install it: sudo apt-get install {package}")
    return warnings


def host_devices() -> list[str]:
    """The host's network devices a public_network may name (untrusted.host_device_problem)."""
    try:
        names = sorted(os.listdir("/sys/class/net"))
    except OSError:
        return []
    return [n for n in names if untrusted.host_device_problem(n) is None]


def is_bridge(dev: str) -> bool:
    return os.path.isdir(f"/sys/class/net/{dev}/bridge")


def public_attachment(net: PrivateNetwork, host: Host) -> tuple[str, str]:
    """A public_network's NIC here: ("bridge", BRIDGE) for an existing host bridge, or
    ("direct", DEV) for macvtap on DEV. DEV is the first of dev:/bridge: the host has
    (without either, eth0, as vagrant-libvirt). Stops where it cannot be: the host must
    let vmctl attach to its devices (root, or a libvirt daemon), and the device exist."""
    if not (host.is_root or host.system):
        raise MachineError("a public_network needs privileges to attach the machine to a host device: run vmctl as "
                           "root, or through a libvirt daemon (libvirt.uri = \"qemu:///system\")",
                           hint="or use a private_network and forwarded ports")
    wanted = net.devs or ("eth0",)
    for dev in wanted:
        if untrusted.host_device_problem(dev) is None and os.path.exists(f"/sys/class/net/{dev}"):
            break
    else:
        said = " or ".join(wanted) + ("" if net.devs else " (vagrant-libvirt's default dev:)")
        raise MachineError(f"public_network: the host has no device {said}",
                           hint=f"name one of the host's with dev: {', '.join(host_devices()) or '(none)'}")
    if net.attach == "bridge" and not is_bridge(dev):
        raise MachineError(f'public_network type: "bridge": {dev} is not a bridge',
                           hint='leave type: out (or write "direct") for macvtap on it')
    attach = net.attach or ("bridge" if is_bridge(dev) else "direct")
    return attach, dev


def _sev_available(host: Host) -> bool:
    if host.accel != "kvm":
        return False
    try:
        return Path("/sys/module/kvm_amd/parameters/sev").read_text().strip() in ("1", "Y", "y")
    except OSError:
        return False


def _hugetlbfs_mounted() -> bool:
    try:
        return any(line.split()[2] == "hugetlbfs" for line in Path("/proc/mounts").read_text().splitlines())
    except (OSError, IndexError):
        return False


def _hugepages_free() -> int:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("HugePages_Free:"):
                return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return 0


def _can_raise_memlock() -> bool:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("CapEff:"):
                return bool(int(line.split()[1], 16) & (1 << 24))  # CAP_SYS_RESOURCE
    except (OSError, ValueError):
        pass
    return False


def _cpuset_numbers(text: str) -> list[int]:
    out = []
    for part in text.split(","):
        if "-" in part:
            a, b = part.split("-", 1)
            out += range(int(a), int(b) + 1)
        elif part.strip("^").isdigit():
            out.append(int(part.strip("^")))
    return out


# -- choices ------------------------------------------------------------------------------------

def virtiofs_possible(host: Host) -> bool:
    """Whether libvirt can run virtiofsd for a folder here: libvirt 9.0 starts it only for
    a privileged driver (the embedded one of root, or the system daemon); otherwise it says
    "virtiofs is not yet supported in session mode" (libvirt issue 535). Starting QEMU
    7.2's C virtiofsd ourselves would not help: it needs root too (namespaces, any uid)."""
    return host.is_root and (host.embedded or host.system) and dfs.VIRTIOFSD.exists()


def shared_folders(cfg: MachineConfig, host: Host) -> list[tuple[SyncedFolder, str, str]]:
    """The machine's two-way folders as (folder, kind, tag): kind virtiofs or 9p (an nfs
    folder gets virtiofs where this host can run it, else 9p: vmctl runs no NFS server),
    tag what the guest mounts."""
    out = []
    for f in cfg.synced_folders:
        if f.disabled or not f.two_way:
            continue
        kind = f.type if f.type != "nfs" else ("virtiofs" if virtiofs_possible(host) else "9p")
        out.append((f, kind, f"vmctl{len(out)}"))
    return out


def tpm_wanted(lv: LibvirtSettings) -> bool:
    """vagrant-libvirt adds a TPM only when tpm_path or tpm_version is set; vmctl also when
    tpm_type or tpm_model is, which can only mean a TPM is wanted."""
    return any(v is not None for v in (lv.tpm_path, lv.tpm_version, lv.tpm_type, lv.tpm_model))


def tpm_state_dir(host: Host, uuid: str) -> Path | None:
    """Where libvirt's swtpm keeps an emulated TPM's state for domain UUID."""
    if host.embedded:
        return paths.libvirt_root() / "lib" / "swtpm" / uuid
    if host.system:
        return Path("/var/lib/libvirt/swtpm") / uuid
    return Path.home() / ".config" / "libvirt" / "qemu" / "swtpm" / uuid


def graphics_type(lv: LibvirtSettings) -> str | None:
    """The display: graphics_type, else vnc when any other graphics setting asks for one
    (vagrant-libvirt's default type), else none (vmctl's default: no display)."""
    if lv.graphics_type is not None:
        return None if lv.graphics_type == "none" else lv.graphics_type
    asked = (lv.graphics_port, lv.graphics_ip, lv.graphics_passwd, lv.graphics_autoport, lv.graphics_websocket,
             lv.graphics_gl, lv.keymap)
    return "vnc" if any(v is not None for v in asked) else None


def nvram_template(lv: LibvirtSettings) -> Path | None:
    """The variables store a machine's NVRAM is copied from: `nvram` when it names a file (the
    template, as people write it), else the template the firmware's QEMU descriptor pairs
    with `loader`; None for a loader that needs none (a ROM)."""
    if lv.nvram and os.path.isfile(lv.nvram):
        return Path(lv.nvram)
    pair = firmware_pair(lv.loader) if lv.loader else None
    if pair is not None:
        return pair
    if lv.nvram:
        raise MachineError(f"libvirt.nvram {lv.nvram} does not exist, and no firmware description pairs "
                           f"{lv.loader} with a variables store to copy",
                           hint="point nvram at the variables template, e.g. /usr/share/OVMF/OVMF_VARS_4M.fd "
                           "(vmctl copies it for each machine)")
    return None


def firmware_pair(loader: str) -> Path | None:
    """The NVRAM template QEMU's firmware descriptors (/usr/share/qemu/firmware/*.json) pair
    with LOADER, if any."""
    import json

    real = os.path.realpath(loader)
    for folder in FIRMWARE_DESCRIPTORS:
        for f in sorted(folder.glob("*.json")):
            try:
                mapping = json.loads(f.read_text()).get("mapping", {})
                exe = mapping.get("executable", {}).get("filename")
                template = mapping.get("nvram-template", {}).get("filename")
            except (OSError, ValueError, AttributeError):
                continue
            if exe and template and os.path.realpath(exe) == real and os.path.isfile(template):
                return Path(template)
    # An OVMF build no descriptor names (OVMF_CODE.fd): its variables store beside it.
    name = os.path.basename(loader)
    if "CODE" in name:
        folder = os.path.dirname(loader)
        for candidate in (name.replace("CODE", "VARS"), re.sub(r"\.(secboot|ms|snakeoil)\.fd$", ".fd",
                                                               name.replace("CODE", "VARS"))):
            if os.path.isfile(os.path.join(folder, candidate)):
                return Path(folder) / candidate
    return None


def build(cfg: MachineConfig, st: MachineState, disks: list[MachineDisk], *, project_root: Path, host: Host,
          private_nics: tuple[domain.McastNic | domain.UdpNic | domain.BridgeNic | domain.PublicNic, ...], forwards: tuple[domain.Forward, ...]) -> tuple[domain.DomainSpec, list[str]]:
    """The domain of machine CFG with state ST and DISKS on HOST, and the notes to print."""
    notes: list[str] = []
    lv = cfg.libvirt
    boot = _boot_orders(cfg, disks, private_nics)
    identity = domain.Identity(
        name=st.domain, uuid=st.uuid or domain_uuid(st.id), machine_id=st.id, project=str(project_root),
        machine=cfg.name, title=lv.title, description=lv.description,
    )
    for f, kind, _tag in shared_folders(cfg, host):
        # Checked where it was read (resolve.py); again here, just before QEMU is told of it.
        problem = untrusted.shared_folder_problem(f.host, str(project_root))
        if problem is not None:
            raise MachineError(f"synced folder {f.guest} ({kind}): {problem}")
    folders = tuple(
        dfs.SharedFolder(tag=tag, source=Path(os.path.realpath(f.host)), driver=kind,
                         accessmode="passthrough" if kind == "virtiofs" else (f.accessmode or "mapped"))
        for f, kind, tag in shared_folders(cfg, host))
    for f, kind, _tag in shared_folders(cfg, host):
        if f.type == "nfs":
            unused = ", ".join([f"{k}: {v}" for k, v in f.nfs_options]
                               + ([f"mount_options: {','.join(f.mount_options)}"] if f.mount_options else []))
            notes.append(f"synced folder {f.guest}: vmctl runs no NFS server; it shares {f.host} two-way with "
                         f"{kind} instead" + (f" ({unused} not used)" if unused else ""))
    cpu = _cpu(cfg, host, notes)
    if dfs.needs_shared_memory(folders):
        # virtiofsd maps the guest's memory: it must be a shared memfd (unless the
        # Vagrantfile's memorybacking already says where it comes from).
        names = {m.name for m in cpu.memory_backing}
        extra = ([] if "source" in names else [dcpu.MemoryBacking("source", (("type", "memfd"),))]) + \
            [dcpu.MemoryBacking("access", (("mode", "shared"),))]
        kept = tuple(m for m in cpu.memory_backing if m.name != "access")
        cpu = replace(cpu, memory_backing=kept + tuple(extra))
    spec = domain.DomainSpec(
        identity=identity,
        accel=host.accel,
        cpu=cpu,
        firmware=_firmware(cfg, disks, boot, notes),
        disks=_disks(cfg, disks, boot),
        network=_network(cfg, st, private_nics, forwards, boot),
        devices=_devices(cfg, st, host, notes),
        folders=folders,
        qemu_args=lv.qemu_args,
        qemu_env=tuple(sorted(lv.qemu_env.items())),
    )
    return spec, notes


def domain_uuid(machine_id: str) -> str:
    import uuid

    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"vmctl:{machine_id}"))


def _cpu(cfg: MachineConfig, host: Host, notes: list[str]) -> dcpu.CpuSpec:
    lv = cfg.libvirt
    mode = lv.cpu_mode
    if mode is None and lv.nested:
        mode = "host-passthrough" if host.accel == "kvm" else "maximum"
    if mode is None and host.accel == "kvm":
        mode = "host-passthrough"
    if mode == "host-passthrough" and host.accel == "tcg":
        mode = "maximum"
        notes.append("cpu_mode host-passthrough: this host runs guests under TCG (no usable KVM), where there is no "
                     "host CPU to pass through; the guest gets QEMU's `max` CPU (every feature TCG emulates) instead")
    features = [(f.name, f.policy) for f in lv.cpu_features]
    if lv.nested:
        for name in ("vmx", "svm"):
            if name not in dict(features):
                features.append((name, "optional"))
        if host.accel == "tcg":
            notes.append("nested: under TCG the guest's CPU offers AMD-V (svm) as QEMU emulates it; a nested guest "
                         "runs emulated inside emulation, very slowly")
    topology = (lv.cpu_topology.sockets, lv.cpu_topology.cores, lv.cpu_topology.threads) if lv.cpu_topology else None
    numa = tuple(dcpu.NumaCell(cpus=n.cpus, memory_kib=n.memory * 1024, mem_access=n.memAccess)
                 for n in lv.numa_nodes or ())
    memory = cfg.memory if not numa else sum(n.memory for n in lv.numa_nodes or ())
    return dcpu.CpuSpec(
        vcpus=cfg.cpus, memory_mib=memory, cpuset=lv.cpuset, mode=mode,
        model=lv.cpu_model if mode == "custom" else None,
        fallback=lv.cpu_fallback if mode in ("custom", "host-model") else None,
        features=tuple(features), topology=topology, numa=numa,
        affinity=tuple(sorted(lv.cpu_affinity.items())), shares=lv.shares, nodeset=lv.nodeset,
        memory_backing=tuple(dcpu.MemoryBacking(m.name, tuple(sorted(m.config.items()))) for m in lv.memory_backing),
        memtune=tuple(dcpu.Memtune(m.type, m.value, m.unit) for m in lv.memtunes),
    )


@dataclass
class _Boot:
    """Boot orders by device, when the Vagrantfile gives libvirt.boot."""

    disks: dict[str, int]  # target -> order
    management: int | None
    private: dict[int, int]  # index of the private NIC -> order
    menu: bool


def _boot_orders(cfg: MachineConfig, disks: list[MachineDisk], nics: tuple[domain.McastNic | domain.UdpNic | domain.BridgeNic | domain.PublicNic, ...]) -> _Boot:
    boot = _Boot({}, None, {}, bool(cfg.libvirt.boot_order))
    attached = [d for d in disks if d.attached and d.target]
    for order, entry in enumerate(cfg.libvirt.boot_order, 1):
        dev = entry.device
        if dev == "network":
            if entry.network is None:
                boot.management = order
                continue
            index = next((i for i, net in enumerate(cfg.private_networks) if net.name == entry.network), None)
            if index is None:
                raise MachineError(f"libvirt.boot names the network {entry.network}, which no private_network of "
                                   "this machine is on (libvirt__network_name)")
            boot.private[index] = order
            continue
        role = {"hd": ("box", "extra", "volume"), "cdrom": ("cdrom",), "fd": ("floppy",)}.get(dev)
        found = next((d for d in attached if (d.role in role if role else d.target == dev)
                      and d.target not in boot.disks), None)
        if found is None:
            raise MachineError(f"libvirt.boot {dev!r}: the machine has no such {'device' if role is None else dev}")
        boot.disks[found.target or ""] = order
    return boot


def _firmware(cfg: MachineConfig, disks: list[MachineDisk], boot: _Boot, notes: list[str]) -> dfw.FirmwareSpec:
    lv = cfg.libvirt
    nvram = next((Path(d.path) for d in disks if d.role == "nvram"), None)
    loader = Path(lv.loader) if lv.loader else None
    secure = loader is not None and "secboot" in os.path.realpath(loader).lower()
    features = [_feature(text) for text in lv.features] if lv.features is not None else [dfw.Feature("acpi")]
    if secure and not any(f.name == "smm" for f in features):
        features.append(dfw.Feature("smm", (("state", "on"),)))
        notes.append(f"loader {loader.name if loader else ''} is a Secure Boot build: it needs SMM, which vmctl turns on")
    smbios = tuple(
        dfw.SmbiosBlock(block, tuple((None, text) for text in entries) if isinstance(entries, list)
                        else tuple(entries.items()))
        for block, entries in lv.sysinfo.items() if entries
    )
    clock = dfw.Clock(offset=lv.clock_offset or "utc", timers=tuple(
        dfw.Timer(name=t.name, track=t.track, tickpolicy=t.tickpolicy, frequency=t.frequency, mode=t.mode,
                  present=None if t.present is None else t.present == "yes") for t in lv.clock_timers))
    if lv.clock_absolute is not None:
        clock = dfw.Clock(offset="absolute", start=lv.clock_absolute, timers=clock.timers)
    elif lv.clock_adjustment is not None:
        clock = dfw.Clock(offset="variable", basis=lv.clock_basis or "utc", adjustment=lv.clock_adjustment,
                          timers=clock.timers)
    elif lv.clock_timezone is not None:
        clock = dfw.Clock(offset="timezone", timezone=lv.clock_timezone, timers=clock.timers)
    ls = lv.launchsecurity_data
    return dfw.FirmwareSpec(
        machine=lv.machine_type or "pc",
        arch=lv.machine_arch or "x86_64",
        loader=loader,
        loader_type="pflash" if nvram is not None else "rom",
        loader_secure=True if secure and nvram is not None else None,
        nvram=nvram,
        kernel=Path(lv.kernel) if lv.kernel else None,
        initrd=Path(lv.initrd) if lv.initrd else None,
        cmdline=lv.cmd_line,
        dtb=Path(lv.dtb) if lv.dtb else None,
        per_device_boot=bool(lv.boot_order),
        bootmenu=boot.menu,
        smbios=smbios,
        fw_cfg=tuple(dfw.FwCfgEntry(name=e.name, text=e.string, file=Path(e.file) if e.file else None)
                     for e in lv.fw_cfg),
        features=tuple(features),
        hyperv=tuple(dfw.HypervFeature(h.name, h.state, h.retries, h.value) for h in lv.features_hyperv),
        kvm_hidden=bool(lv.kvm_hidden),
        clock=clock,
        launch_security=dfw.LaunchSecurity(ls.cbitpos, ls.reducedPhysBits, ls.policy) if ls else None,
    )


def _feature(text: str) -> dfw.Feature:
    name, _, rest = text.partition(" ")
    attrs = tuple(re.findall(r"([a-zA-Z_][a-zA-Z0-9_]*)\s*=\s*'([^']*)'", rest))
    return dfw.Feature(name, attrs)


def _disks(cfg: MachineConfig, disks: list[MachineDisk], boot: _Boot) -> ddisks.DisksSpec:
    out = []
    for d in disks:
        if not d.attached or d.role in ("nvram", "tpm") or d.target is None:
            continue
        o = dict(d.options or {})
        device = {"cdrom": "cdrom", "floppy": "floppy"}.get(d.role, "disk")
        source = Path(d.path) if d.path else None
        out.append(ddisks.Disk(
            target=d.target, source=source, device=device, bus=d.bus or "virtio",
            format=d.format or "raw", cache=o.get("cache") or ("default" if d.role in ("extra", "volume") else None),
            io=o.get("io"), discard=o.get("discard") or ("unmap" if d.role == "box" else None),
            detect_zeroes=o.get("detect_zeroes"), copy_on_read=o.get("copy_on_read"),
            readonly=d.readonly, shareable=bool(o.get("shareable")), serial=o.get("serial"), wwn=o.get("wwn"),
            address_type=o.get("address_type"), boot_order=boot.disks.get(d.target),
            pool=d.pool, volume=d.volume,
        ))
    model = cfg.libvirt.disk_controller_model or "virtio-scsi"
    return ddisks.DisksSpec(tuple(out), scsi_controller_model=model)


def _network(cfg: MachineConfig, st: MachineState, private: tuple[domain.McastNic | domain.UdpNic | domain.BridgeNic | domain.PublicNic, ...],
             forwards: tuple[domain.Forward, ...], boot: _Boot) -> domain.NetworkSpec:
    lv = cfg.libvirt
    model = lv.management_network_model_type or lv.nic_model_type or "virtio"
    management = domain.UserNic(mac=lv.management_network_mac or network.mac_for(st.id, 0), forwards=forwards,
                                model=model, boot_order=boot.management)
    nics = tuple(dataclasses.replace(n, boot_order=boot.private.get(i)) for i, n in enumerate(private))
    return domain.NetworkSpec(management=management, private=nics, private_model=lv.nic_model_type or "virtio")


def _devices(cfg: MachineConfig, st: MachineState, host: Host, notes: list[str]) -> ddev.DevicesSpec:
    lv = cfg.libvirt
    home = paths.machines_dir() / st.id
    console = Path(st.console_log)
    if lv.serials is None:
        serials: tuple[ddev.Serial, ...] = (ddev.Serial("file", console),)
    else:
        made = []
        for i, s in enumerate(lv.serials):
            # Serial 0 is also logged to console.log: vmctl shows its tail when a boot fails.
            log = console if i == 0 else None
            if s.type == "file":
                made.append(ddev.Serial("file", home / f"serial-{s.source_path}", append=s.source_append, log=log))
            else:
                made.append(ddev.Serial("pty", log=log))
        serials = tuple(made)
    gtype = graphics_type(lv)
    graphics = None
    video = None
    if gtype is not None:
        port = lv.graphics_port if lv.graphics_port not in (None, -1) else None
        graphics = ddev.Graphics(
            type=gtype, listen=lv.graphics_ip or "127.0.0.1", port=port,
            autoport=lv.graphics_autoport if lv.graphics_autoport is not None else port is None,
            websocket=lv.graphics_websocket if gtype == "vnc" else None,
            passwd=lv.graphics_passwd, keymap=lv.keymap, gl=bool(lv.graphics_gl),
        )
    if lv.graphics_type != "none" and (gtype is not None or lv.video_type is not None):
        video = ddev.Video(model=lv.video_type or ("virtio" if lv.video_accel3d else "cirrus"),
                           vram=lv.video_vram if lv.video_vram is not None else (16384 if gtype else None),
                           accel3d=bool(lv.video_accel3d))
    channels = []
    held_back = {c.target_name for c in lv.channels or () if c.disabled and c.target_name}
    for c in lv.channels or ():
        if c.disabled:
            continue
        channels.append(ddev.Channel(
            type=c.type, target_type=c.target_type or "virtio", target_name=c.target_name,
            target_address=c.target_address, target_port=c.target_port, source_mode=c.source_mode,
            source_path=home / f"channel-{c.source_path}" if c.source_path else None))
    names = [c.target_name or "" for c in channels]
    if lv.qemu_use_agent and not any(n.startswith("org.qemu.guest_agent.") for n in names) \
            and AGENT_CHANNEL not in held_back:
        channels.append(ddev.Channel(type="unix", target_name=AGENT_CHANNEL))
    if gtype == "spice" and not any(n.startswith("com.redhat.spice.") for n in names) and SPICE_CHANNEL not in held_back:
        channels.append(ddev.Channel(type="spicevmc", target_name=SPICE_CHANNEL))
    tpm = None
    if tpm_wanted(lv):
        backend = lv.tpm_type or "passthrough"
        tpm = ddev.Tpm(model=lv.tpm_model or "tpm-tis", backend=backend,
                       version=lv.tpm_version or ("2.0" if backend == "emulator" else None),
                       device=Path(lv.tpm_path) if lv.tpm_path and backend == "passthrough" else None)
    inputs = tuple(ddev.Input(i.type, i.bus) for i in lv.inputs or ())
    needs_usb = bool(lv.usbs or lv.redirdevs or lv.smartcard_dev or any(i.bus == "usb" for i in inputs)
                     or lv.sound_type == "usb")
    usbctl = lv.usbctl_dev
    smartcard = None
    if lv.smartcard_dev is not None:
        s = lv.smartcard_dev
        smartcard = ddev.Smartcard(type=s.type, source_mode=s.source_mode, source_host=s.source_host,
                                   source_service=s.source_service)
    balloon = ddev.Memballoon("none")
    if lv.memballoon_enabled:
        balloon = ddev.Memballoon(lv.memballoon_model or "virtio", lv.memballoon_pci_bus or "0x00",
                                  lv.memballoon_pci_slot or "0x0f")
    return ddev.DevicesSpec(
        serials=serials,
        emulator=Path(lv.emulator_path) if lv.emulator_path else None,
        graphics=graphics,
        video=video,
        sound=lv.sound_type,
        inputs=inputs,
        channels=tuple(channels),
        rng=True,
        watchdog=ddev.Watchdog(lv.watchdog_dev.model, lv.watchdog_dev.action) if lv.watchdog_dev else None,
        tpm=tpm,
        smartcard=smartcard,
        usb_controller=usbctl.model if usbctl else ("qemu-xhci" if needs_usb else "none"),
        usb_ports=usbctl.ports if usbctl else None,
        redirdevs=tuple(r.type for r in lv.redirdevs),
        redirfilters=tuple(ddev.RedirFilter(allow=f.allow, class_=f.klass, vendor=f.vendor, product=f.product,
                                            version=f.version) for f in lv.redirfilters),
        pci=tuple(ddev.PciHostdev(p.domain, p.bus, p.slot, p.function,
                                  (p.guest_domain or 0, p.guest_bus or 0, p.guest_slot, p.guest_function or 0)
                                  if p.guest_slot is not None else None) for p in lv.pcis),
        usb=tuple(ddev.UsbHostdev(vendor=u.vendor, product=u.product, bus=u.bus, device=u.device,
                                  startup_policy=u.startupPolicy or "mandatory") for u in lv.usbs),
        memballoon=balloon,
        iommu=lv.launchsecurity_data is not None,
    )
