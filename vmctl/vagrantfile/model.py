"""The resolved settings of a project's machines: what the Vagrantfile means.

Frozen dataclasses, built only by the evaluator; everything downstream (the machine
layer, `vmctl validate --json`) reads these and never the Ruby. Each is made a dataclass
when first used (vmctl/records.py): `status`, `ssh`, `ssh-config` and `port` only read an
unpickled evaluation, and making all of them at every start cost ~50 ms.
"""

from __future__ import annotations

import json
from dataclasses import asdict, field
from pathlib import Path
from typing import Any

from vmctl.records import Frozen


class ForwardedPort(Frozen):
    guest: int
    host: int | None = None
    host_ip: str = "127.0.0.1"
    protocol: str = "tcp"
    auto_correct: bool = False
    id: str | None = None
    guest_ip: str | None = None  # an IPv4 address of the guest on QEMU's user network (10.0.2.15)


class PrivateNetwork(Frozen):
    """A private_network. On a host-only bridge (vmctl as root; vmctl/hostnet.py) it is
    shared by subnet, or by NAME when given, across projects; on a multicast segment (no
    root, or TUNNEL_TYPE "mcast") by NAME, else within the project only."""

    ip: str | None  # None: the address comes from DHCP (TYPE "dhcp")
    netmask: str = "255.255.255.0"
    name: str | None = None
    auto_config: bool = True
    type: str = "static"  # static | dhcp
    host_ip: str | None = None  # libvirt__host_ip: the bridge's address (default: the subnet's first)
    dhcp_enabled: bool | None = None  # libvirt__dhcp_enabled (None: only for type "dhcp")
    dhcp_start: str | None = None
    dhcp_stop: str | None = None
    mac: str | None = None  # libvirt__mac
    iface_name: str | None = None  # libvirt__iface_name: the host's tap device
    tunnel_type: str | None = None  # libvirt__tunnel_type: "mcast" (a segment) or "udp" (point to point)
    # The "udp" tunnel's ends as the Vagrantfile wrote them (IPv4 unicast addresses; None: not
    # written: 127.0.0.1 on one host, the hosts' addresses between two hosts (vmctl/tunnels.py);
    # the ports: chosen by vmctl between two hosts, required on one).
    tunnel_ip: str | None = None
    tunnel_port: int | None = None
    tunnel_local_ip: str | None = None
    tunnel_local_port: int | None = None
    subnet: str = ""  # the network, e.g. 172.28.128.0/24 (what a DHCP network is on)
    # libvirt__forward_mode on a host-only bridge: "none" (isolated), "nat" (masqueraded out
    # of the host) or "route" (forwarded, not masqueraded); libvirt__forward_device: the
    # one host interface it goes out of (None: any but the bridge).
    forward_mode: str = "none"
    forward_device: str | None = None
    # A public_network (vmctl/machine/hardware.py: public_attachment): the guest's NIC on a
    # host device. It sits in MachineConfig.private_networks too, in the Vagrantfile's
    # order, as the guest's NICs do; the fields above about host-only bridges do not apply.
    public: bool = False
    devs: tuple[str, ...] = ()  # dev:/bridge: candidates, the first the host has is used (none: eth0)
    attach: str | None = None  # type: "bridge" or "direct" (macvtap); None: bridge if dev is one
    macvtap_mode: str = "bridge"  # mode: bridge | vepa | private | passthrough


TWO_WAY_FOLDER_TYPES = ("virtiofs", "9p", "nfs")


class SyncedFolder(Frozen):
    host: str
    guest: str
    type: str = "rsync"
    disabled: bool = False
    owner: str | None = None
    group: str | None = None
    rsync_exclude: tuple[str, ...] = ()
    rsync_args: tuple[str, ...] | None = None
    rsync_auto: bool = True  # rsync__auto: false: vmctl rsync-auto leaves the folder alone
    # Two-way folders (type virtiofs, 9p, or nfs: shared with the best two-way kind the
    # host offers, as vmctl runs no NFS server).
    accessmode: str | None = None  # 9p: mapped (vmctl's default) | passthrough | squash
    mount_options: tuple[str, ...] = ()
    # nfs_* options as written (accepted and reported, not used: there is no NFS server).
    nfs_options: tuple[tuple[str, str], ...] = ()

    @property
    def two_way(self) -> bool:
        return self.type in TWO_WAY_FOLDER_TYPES


class AnsibleSettings(Frozen):
    """The options of an `ansible` (on this computer) or `ansible_local` (in the guest)
    provisioner, as Vagrant names them. Host paths are absolute; guest paths as written."""

    playbook: str
    inventory_path: str | None = None
    limit: str | None = None  # "all" runs the playbook once for the whole project
    # Host groups: name -> members (machine names or range patterns); group variables
    # ("NAME:vars") and groups of groups ("NAME:children") apart, as the inventory has them.
    groups: dict[str, list[str]] = field(default_factory=dict)
    group_vars: dict[str, dict[str, Any]] = field(default_factory=dict)
    group_children: dict[str, list[str]] = field(default_factory=dict)
    host_vars: dict[str, dict[str, Any]] = field(default_factory=dict)
    extra_vars: dict[str, Any] | None = None
    extra_vars_file: str | None = None  # extra_vars = "@file"
    raw_arguments: tuple[str, ...] = ()
    raw_ssh_args: tuple[str, ...] = ()
    tags: str | None = None  # comma-separated, as ansible-playbook takes them
    skip_tags: str | None = None
    start_at_task: str | None = None
    verbose: str | None = None  # "v", "vv", ... (None: not verbose)
    become: bool = False
    become_user: str | None = None
    vault_password_file: str | None = None
    config_file: str | None = None
    galaxy_role_file: str | None = None
    galaxy_roles_path: str | None = None
    galaxy_command: str = "ansible-galaxy install --role-file=%{role_file} --roles-path=%{roles_path} --force"
    playbook_command: str = "ansible-playbook"
    compatibility_mode: str = "auto"  # auto | 1.8 | 2.0
    version: str | None = None
    # ansible (this computer) only
    host_key_checking: bool = False  # vmctl always checks the pinned host key
    ask_become_pass: bool = False
    ask_vault_pass: bool = False
    force_remote_user: bool = True
    # ansible_local (the guest) only
    install: bool = True
    install_mode: str = "default"  # default | pip | pip_args_only
    pip_args: str | None = None
    pip_install_cmd: str | None = None
    provisioning_path: str = "/vagrant"
    tmp_path: str = "/tmp/vagrant-ansible"

    @property
    def project_wide(self) -> bool:
        """Whether the playbook runs once for every machine of the project (limit "all")."""
        return self.limit in ("all", "*")


class DockerBuild(Frozen):
    path: str  # in the guest
    args: str | None = None  # appended to `docker build` (the guest's shell splits it)


class DockerRun(Frozen):
    name: str
    image: str
    cmd: str | None = None
    args: str | None = None  # appended to `docker run` (the guest's shell splits it)
    daemonize: bool = True
    restart: str | None = "always"
    auto_assign_name: bool = True


class DockerSettings(Frozen):
    images: tuple[str, ...] = ()
    build_images: tuple[DockerBuild, ...] = ()
    runs: tuple[DockerRun, ...] = ()
    # Run once docker has been installed by the provisioner (a shell provisioner).
    post_install: Provisioner | None = None


class CloudInitPart(Frozen):
    """One part of the user-data of `config.vm.cloud_init :user_data, ...`."""

    content_type: str  # text/cloud-config, text/x-shellscript, ...
    path: str | None = None  # absolute host path
    inline: str | None = None
    filename: str | None = None  # content_disposition_filename


class Provisioner(Frozen):
    type: str  # shell, file, ansible, ansible_local, docker, reload
    name: str | None = None
    inline: str | None = None
    path: str | None = None
    args: tuple[str, ...] = ()
    env: dict[str, str] = field(default_factory=dict)
    privileged: bool = True
    run: str = "once"  # once | always | never
    source: str | None = None
    destination: str | None = None
    # True when `args:` was a String: Vagrant appends it to the command line verbatim
    # (the guest's shell splits it), so args is then one already-quoted string.
    # From an Array, each element is one argument, to be quoted by whoever runs it.
    args_verbatim: bool = False
    reboot: bool = False  # shell: reboot the guest afterwards and wait for it
    reset: bool = False  # shell: log in again afterwards (new groups take effect)
    ansible: AnsibleSettings | None = None  # ansible, ansible_local
    docker: DockerSettings | None = None  # docker

    @property
    def summary(self) -> str:
        """What the provisioner does, in a few words (`vmctl validate`)."""
        if self.ansible is not None:
            where = "on this computer" if self.type == "ansible" else "in the guest"
            limit = ", once for every machine" if self.type == "ansible" and self.ansible.project_wide else ""
            return f"playbook {self.ansible.playbook} {where}{limit}"
        if self.docker is not None:
            d = self.docker
            return f"{len(d.images)} images to pull, {len(d.build_images)} to build, {len(d.runs)} containers"
        if self.type == "reload":
            return "halt and boot the machine again"
        if self.type == "file":
            return f"{self.source} -> {self.destination}"
        what = self.path or "inline script"
        return what + (", then reboot" if self.reboot else "")


class Trigger(Frozen):
    when: str  # before | after
    commands: tuple[str, ...]  # up, destroy, halt, ...
    name: str | None = None
    info: str | None = None
    run_inline: str | None = None  # on the host, via sh -c: refused unless allowed
    run_remote_inline: str | None = None  # in the guest
    warn: str | None = None
    on_error: str = "halt"  # halt | continue
    exit_codes: tuple[int, ...] = (0,)
    run_path: str | None = None  # absolute host path of a script run on the host
    run_args: tuple[str, ...] = ()
    run_remote_path: str | None = None  # absolute host path of a script uploaded and run in the guest
    run_remote_args: tuple[str, ...] = ()
    ignore: tuple[str, ...] = ()  # commands excluded (with commands like "all")


class IgnoredSetting(Frozen):
    """A setting the Vagrantfile makes that vmctl records but does not apply."""

    setting: str  # e.g. "vm.box_check_update", "virtualbox.memory", "vbguest.auto_update"
    value: Any  # plain JSON data
    file: str | None = None
    line: int | None = None


class SshSettings(Frozen):
    username: str = "vagrant"
    insert_key: bool = True
    private_key_path: tuple[str, ...] | None = None
    # Where vmctl connects: the guest's SSH port behind the forward (config.ssh.guest_port,
    # else config.ssh.port, as vagrant-libvirt reads it), 22 when unset.
    port: int | None = None
    guest_port: int | None = None
    shell: str | None = None  # runs vmctl's commands in the guest; None: vmctl's own (sh)
    sudo_command: str | None = None  # e.g. "sudo -E -H %c"
    pty: bool = False
    keep_alive: bool = True
    connect_timeout: int | None = None  # seconds
    forward_agent: bool = False
    forward_x11: bool = False
    forward_env: tuple[str, ...] = ()
    keys_only: bool = True
    extra_args: tuple[str, ...] = ()  # for `vmctl ssh`'s ssh command
    config: str | None = None  # an OpenSSH config file for `vmctl ssh`
    remote_user: str | None = None


# -- the libvirt provider: one dataclass per method of vagrant-libvirt's configuration -------
# Field names are vagrant-libvirt's (lib/vagrant-libvirt/config.rb), so `validate --json`
# reads like the Vagrantfile. None is "not set": the machine layer chooses then.


class StorageDisk(Frozen):
    """`libvirt.storage :file, ...` (an extra disk)."""

    device: str | None = None  # vdb ...; None: the next free name
    type: str = "qcow2"
    size: int = 10 * 1024**3  # bytes
    path: str | None = None  # a volume name (VMCTL_HOME/volumes/NAME); None: the machine's own disk
    pool: str | None = None
    bus: str = "virtio"
    cache: str = "default"
    io: str | None = None
    copy_on_read: str | None = None
    discard: str | None = None
    detect_zeroes: str | None = None
    address_type: str | None = None
    allow_existing: bool = False
    shareable: bool = False
    serial: str | None = None
    wwn: str | None = None


class Cdrom(Frozen):
    """`libvirt.storage :file, device: :cdrom, path: ...`; also config.vm.disk :dvd."""

    path: str | None = None  # an absolute host path; None: an empty drive
    dev: str | None = None  # hda ...; None: the next free name
    bus: str | None = None  # None: ide on pc, sata on q35
    type: str = "raw"


class Floppy(Frozen):
    path: str | None = None
    dev: str | None = None
    bus: str = "fdc"


class CpuFeature(Frozen):
    name: str
    policy: str


class CpuTopology(Frozen):
    sockets: int
    cores: int
    threads: int


class NumaNode(Frozen):
    cpus: str  # "0-1"
    memory: int  # MiB
    memAccess: str | None = None  # noqa: N815 - vagrant-libvirt's key


class MemoryBackingEntry(Frozen):
    name: str
    config: dict[str, str] = field(default_factory=dict)


class MemtuneEntry(Frozen):
    type: str
    value: int
    unit: str = "KiB"


class HypervFeatureEntry(Frozen):
    name: str
    state: str
    retries: int | None = None
    value: str | None = None


class ClockTimerEntry(Frozen):
    name: str
    track: str | None = None
    tickpolicy: str | None = None
    frequency: int | None = None
    mode: str | None = None
    present: str | None = None  # yes | no


class LaunchSecurityData(Frozen):
    type: str = "sev"
    cbitpos: int = 47
    reducedPhysBits: int = 1  # noqa: N815
    policy: str = "0x0003"


class FwCfgEntry(Frozen):
    """An entry of `libvirt.sysinfo`'s "fw_cfg" block (vmctl's addition)."""

    name: str
    string: str | None = None
    file: str | None = None


class InputEntry(Frozen):
    type: str
    bus: str


class ChannelEntry(Frozen):
    type: str
    source_mode: str | None = None
    source_path: str | None = None  # a file name, kept in VMCTL_HOME/machines/ID
    target_address: str | None = None
    target_name: str | None = None
    target_port: int | None = None
    target_type: str | None = None
    disabled: bool = False  # holds back the channel vmctl would add with this target_name


class SerialEntry(Frozen):
    type: str = "pty"  # pty | file
    source_path: str | None = None  # a file name, kept in VMCTL_HOME/machines/ID
    source_append: bool = False


class PciEntry(Frozen):
    domain: int
    bus: int
    slot: int
    function: int
    guest_domain: int | None = None
    guest_bus: int | None = None
    guest_slot: int | None = None
    guest_function: int | None = None


class UsbEntry(Frozen):
    bus: int | None = None
    device: int | None = None
    vendor: str | None = None
    product: str | None = None
    startupPolicy: str | None = None  # noqa: N815


class UsbControllerEntry(Frozen):
    model: str
    ports: int | None = None


class RedirdevEntry(Frozen):
    type: str


class RedirfilterEntry(Frozen):
    allow: bool
    klass: str = "-1"  # vagrant-libvirt's :class
    vendor: str = "-1"
    product: str = "-1"
    version: str = "-1"


class RngEntry(Frozen):
    model: str = "random"


class WatchdogEntry(Frozen):
    model: str
    action: str = "reset"


class SmartcardEntry(Frozen):
    mode: str = "passthrough"
    type: str = "spicevmc"
    source_mode: str | None = None
    source_host: str | None = None
    source_service: str | None = None


class BootEntry(Frozen):
    """One `libvirt.boot`: "hd", "cdrom", "network", "fd", a disk's device name, or a
    network by name (`boot "network" => NAME`)."""

    device: str
    network: str | None = None


class LibvirtSettings(Frozen):
    # the connection (validated; remote hosts are another issue)
    uri: str | None = None
    driver: str | None = None  # kvm | qemu
    host: str | None = None
    port: int | None = None
    connect_via_ssh: bool | None = None
    socket: str | None = None
    username: str | None = None
    password: str | None = None  # shown as "(set)" by validate --json
    id_ssh_key_file: str | None = None
    proxy_command: str | None = None
    forward_ssh_port: bool | None = None
    system_uri: str | None = None
    qemu_use_session: bool | None = None
    storage_pool_name: str | None = None
    storage_pool_path: str | None = None
    snapshot_pool_name: str | None = None
    # naming and identity
    default_prefix: str | None = None
    random_hostname: bool | None = None
    title: str | None = None
    description: str | None = None
    uuid: str | None = None
    autostart: bool | None = None
    suspend_mode: str | None = None
    # CPU and memory
    memory: int | None = None  # MiB
    cpus: int | None = None
    cpuset: str | None = None
    cpu_mode: str | None = None
    cpu_model: str | None = None
    cpu_fallback: str | None = None
    cpu_features: tuple[CpuFeature, ...] = ()
    cpu_topology: CpuTopology | None = None
    cpu_affinity: dict[int, str] = field(default_factory=dict)
    shares: int | None = None
    nested: bool | None = None
    numa_nodes: tuple[NumaNode, ...] | None = None
    nodeset: str | None = None
    memory_backing: tuple[MemoryBackingEntry, ...] = ()
    memtunes: tuple[MemtuneEntry, ...] = ()
    memballoon_enabled: bool | None = None
    memballoon_model: str | None = None
    memballoon_pci_bus: str | None = None
    memballoon_pci_slot: str | None = None
    # machine and firmware
    machine_type: str | None = None
    machine_arch: str | None = None
    machine_virtual_size: int | None = None  # GB
    emulator_path: str | None = None
    loader: str | None = None  # absolute host paths once resolved
    nvram: str | None = None
    kernel: str | None = None
    initrd: str | None = None
    cmd_line: str | None = None
    dtb: str | None = None
    boot_order: tuple[BootEntry, ...] = ()
    features: tuple[str, ...] | None = None
    features_hyperv: tuple[HypervFeatureEntry, ...] = ()
    kvm_hidden: bool | None = None
    clock_offset: str | None = None
    clock_absolute: int | None = None
    clock_adjustment: int | None = None
    clock_basis: str | None = None
    clock_timezone: str | None = None
    clock_timers: tuple[ClockTimerEntry, ...] = ()
    sysinfo: dict[str, Any] = field(default_factory=dict)  # SMBIOS blocks, vagrant-libvirt's names
    fw_cfg: tuple[FwCfgEntry, ...] = ()  # sysinfo's "fw_cfg" block
    launchsecurity_data: LaunchSecurityData | None = None
    # disks
    disk_bus: str | None = None
    disk_device: str | None = None
    disk_address_type: str | None = None
    disk_controller_model: str | None = None
    disk_driver_opts: dict[str, str] = field(default_factory=dict)
    volume_cache: str | None = None
    disks: tuple[StorageDisk, ...] = ()
    cdroms: tuple[Cdrom, ...] = ()
    floppies: tuple[Floppy, ...] = ()
    # devices
    graphics_type: str | None = None
    graphics_port: int | None = None
    graphics_autoport: bool | None = None
    graphics_websocket: int | None = None
    graphics_ip: str | None = None
    graphics_passwd: str | None = None  # shown as "(set)"
    graphics_gl: bool | None = None
    video_type: str | None = None
    video_vram: int | None = None
    video_accel3d: bool | None = None
    keymap: str | None = None
    sound_type: str | None = None
    inputs: tuple[InputEntry, ...] | None = None
    channels: tuple[ChannelEntry, ...] | None = None
    serials: tuple[SerialEntry, ...] | None = None
    rng: RngEntry | None = None
    watchdog_dev: WatchdogEntry | None = None
    tpm_model: str | None = None
    tpm_type: str | None = None
    tpm_path: str | None = None
    tpm_version: str | None = None
    smartcard_dev: SmartcardEntry | None = None
    usbctl_dev: UsbControllerEntry | None = None
    usbs: tuple[UsbEntry, ...] = ()
    pcis: tuple[PciEntry, ...] = ()
    redirdevs: tuple[RedirdevEntry, ...] = ()
    redirfilters: tuple[RedirfilterEntry, ...] = ()
    qemu_args: tuple[str, ...] = ()
    qemu_env: dict[str, str] = field(default_factory=dict)
    qemu_use_agent: bool | None = None
    # networks: vmctl's user-mode NIC is the management network
    mgmt_attach: bool | None = None
    management_network_mac: str | None = None
    management_network_model_type: str | None = None
    nic_model_type: str | None = None
    nic_adapter_count: int | None = None
    management_network_device: str | None = None
    management_network_name: str | None = None
    management_network_address: str | None = None
    management_network_mode: str | None = None
    management_network_guest_ipv6: str | None = None
    management_network_autostart: bool | None = None
    management_network_pci_bus: str | None = None
    management_network_pci_slot: str | None = None
    management_network_domain: str | None = None
    management_network_mtu: int | None = None
    management_network_keep: bool | None = None
    management_network_driver_iommu: bool | None = None
    management_network_iface_name: str | None = None
    host_device_exclude_prefixes: tuple[str, ...] | None = None


class VagrantDisk(Frozen):
    """`config.vm.disk TYPE, name:, size:, primary:, file:` (Vagrant core)."""

    type: str  # disk | dvd | floppy
    name: str
    size: int | None = None  # bytes
    primary: bool = False
    file: str | None = None  # dvd/floppy: an absolute host path


class BoxDownload(Frozen):
    """How the box is fetched when it is missing: config.vm.box_server_url and the
    box_download_* settings (host paths absolute)."""

    server_url: str | None = None
    checksum: str | None = None
    checksum_type: str | None = None
    ca_cert: str | None = None
    ca_path: str | None = None
    client_cert: str | None = None
    insecure: bool = False


class MachineConfig(Frozen):
    name: str
    box: str | None = None
    box_version: str | None = None
    box_url: str | None = None
    hostname: str | None = None
    boot_timeout: int = 300
    primary: bool = False
    autostart: bool = True
    libvirt: LibvirtSettings = field(default_factory=LibvirtSettings)
    disks: tuple[VagrantDisk, ...] = ()
    graceful_halt_timeout: int = 60
    # false: vmctl leaves the guest's /etc/hosts alone (the hostname line and the block
    # naming the project's other machines), as Vagrant's own setting says.
    allow_hosts_modification: bool = True
    forwarded_ports: tuple[ForwardedPort, ...] = ()
    private_networks: tuple[PrivateNetwork, ...] = ()  # and the public ones (PrivateNetwork.public), in order
    synced_folders: tuple[SyncedFolder, ...] = ()
    provisioners: tuple[Provisioner, ...] = ()
    triggers: tuple[Trigger, ...] = ()
    ssh: SshSettings = field(default_factory=SshSettings)
    box_download: BoxDownload = field(default_factory=BoxDownload)
    cloud_init: tuple[CloudInitPart, ...] = ()
    ignored: tuple[IgnoredSetting, ...] = ()

    @property
    def cpus(self) -> int:
        return self.libvirt.cpus or 1

    @property
    def memory(self) -> int:
        return self.libvirt.memory or 512


class ProjectConfig(Frozen):
    vagrantfile: Path
    machines: tuple[MachineConfig, ...]
    warnings: tuple[str, ...] = ()
    messages: tuple[str, ...] = ()  # what `puts`/`warn` printed, for stderr

    @property
    def root(self) -> Path:
        return self.vagrantfile.parent

    def machine(self, name: str) -> MachineConfig | None:
        return next((m for m in self.machines if m.name == name), None)

    def primary(self) -> MachineConfig:
        for m in self.machines:
            if m.primary:
                return m
        return self.machines[0]


def machine_json(m: MachineConfig) -> dict[str, Any]:
    """The `vmctl validate --json` shape of one machine."""
    return {
        "name": m.name,
        "box": m.box,
        "box_version": m.box_version,
        "box_url": m.box_url,
        "hostname": m.hostname,
        "cpus": m.cpus,
        "memory": m.memory,
        "boot_timeout": m.boot_timeout,
        "primary": m.primary,
        "autostart": m.autostart,
        "libvirt": libvirt_json(m.libvirt),
        "disks": [asdict(d) for d in m.disks],
        "graceful_halt_timeout": m.graceful_halt_timeout,
        **({"allow_hosts_modification": False} if not m.allow_hosts_modification else {}),
        "forwarded_ports": [{k: v for k, v in asdict(p).items() if k != "guest_ip" or v is not None}
                            for p in m.forwarded_ports],
        "private_networks": [asdict(n) for n in m.private_networks],
        "synced_folders": [
            {
                "host": f.host,
                "guest": f.guest,
                "type": f.type,
                "disabled": f.disabled,
                "owner": f.owner,
                "group": f.group,
                "rsync__exclude": list(f.rsync_exclude),
                "rsync__args": list(f.rsync_args) if f.rsync_args is not None else None,
                **({"rsync__auto": False} if not f.rsync_auto else {}),
                **({"accessmode": f.accessmode, "mount_options": list(f.mount_options),
                    "nfs_options": dict(f.nfs_options)} if f.two_way else {}),
            }
            for f in m.synced_folders
        ],
        "provisioners": [
            {**asdict(p), "args": list(p.args), "env": dict(p.env)} for p in m.provisioners
        ],
        "triggers": [
            {
                **asdict(t),
                "commands": list(t.commands),
                "exit_codes": list(t.exit_codes),
                "run_args": list(t.run_args),
                "run_remote_args": list(t.run_remote_args),
                "ignore": list(t.ignore),
            }
            for t in m.triggers
        ],
        "ssh": {
            **asdict(m.ssh),
            "private_key_path": list(m.ssh.private_key_path) if m.ssh.private_key_path else None,
            "forward_env": list(m.ssh.forward_env),
            "extra_args": list(m.ssh.extra_args),
        },
        "box_download": asdict(m.box_download),
        "cloud_init": [asdict(c) for c in m.cloud_init],
        "ignored_settings": [asdict(i) for i in m.ignored],
    }


def libvirt_json(lv: LibvirtSettings) -> dict[str, Any]:
    """The libvirt settings as `validate --json` shows them: vagrant-libvirt's names, secrets
    masked, lists as lists."""
    out = asdict(lv)
    for secret in ("password", "graphics_passwd"):
        if out[secret] is not None:
            out[secret] = "(set)"
    out["cpu_affinity"] = {str(k): v for k, v in lv.cpu_affinity.items()}
    for entry in out["redirfilters"]:
        entry["class"] = entry.pop("klass")
    return json.loads(json.dumps(out))
