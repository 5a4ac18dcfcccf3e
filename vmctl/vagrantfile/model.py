"""The resolved settings of a project's machines: what the Vagrantfile means.

Frozen dataclasses, built only by the evaluator; everything downstream (the machine
layer, `vmctl validate --json`) reads these and never the Ruby.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class ForwardedPort:
    guest: int
    host: int | None = None
    host_ip: str = "127.0.0.1"
    protocol: str = "tcp"
    auto_correct: bool = False
    id: str | None = None


@dataclass(frozen=True)
class PrivateNetwork:
    ip: str
    netmask: str = "255.255.255.0"
    # Machines share a segment when they name the same network; by default the
    # segment is the project's (see machine layer), so projects stay apart.
    name: str | None = None
    auto_config: bool = True


@dataclass(frozen=True)
class SyncedFolder:
    host: str
    guest: str
    type: str = "rsync"
    disabled: bool = False
    owner: str | None = None
    group: str | None = None
    rsync_exclude: tuple[str, ...] = ()
    rsync_args: tuple[str, ...] | None = None


@dataclass(frozen=True)
class AnsibleSettings:
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


@dataclass(frozen=True)
class DockerBuild:
    path: str  # in the guest
    args: str | None = None  # appended to `docker build` (the guest's shell splits it)


@dataclass(frozen=True)
class DockerRun:
    name: str
    image: str
    cmd: str | None = None
    args: str | None = None  # appended to `docker run` (the guest's shell splits it)
    daemonize: bool = True
    restart: str | None = "always"
    auto_assign_name: bool = True


@dataclass(frozen=True)
class DockerSettings:
    images: tuple[str, ...] = ()
    build_images: tuple[DockerBuild, ...] = ()
    runs: tuple[DockerRun, ...] = ()
    # Run once docker has been installed by the provisioner (a shell provisioner).
    post_install: Provisioner | None = None


@dataclass(frozen=True)
class CloudInitPart:
    """One part of the user-data of `config.vm.cloud_init :user_data, ...`."""

    content_type: str  # text/cloud-config, text/x-shellscript, ...
    path: str | None = None  # absolute host path
    inline: str | None = None
    filename: str | None = None  # content_disposition_filename


@dataclass(frozen=True)
class Provisioner:
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


@dataclass(frozen=True)
class Trigger:
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


@dataclass(frozen=True)
class IgnoredSetting:
    """A setting the Vagrantfile makes that vmctl records but does not apply."""

    setting: str  # e.g. "vm.box_check_update", "virtualbox.memory", "vbguest.auto_update"
    value: Any  # plain JSON data
    file: str | None = None
    line: int | None = None


@dataclass(frozen=True)
class SshSettings:
    username: str = "vagrant"
    insert_key: bool = True
    private_key_path: tuple[str, ...] | None = None


@dataclass(frozen=True)
class LibvirtSettings:
    memory: int | None = None  # MiB
    cpus: int | None = None
    uri: str | None = None
    driver: str | None = None  # kvm | qemu
    kernel: str | None = None  # absolute host paths once resolved
    initrd: str | None = None
    cmd_line: str | None = None
    machine_virtual_size: int | None = None  # GB


@dataclass(frozen=True)
class BoxDownload:
    """How the box is fetched when it is missing: config.vm.box_server_url and the
    box_download_* settings (host paths absolute)."""

    server_url: str | None = None
    checksum: str | None = None
    checksum_type: str | None = None
    ca_cert: str | None = None
    ca_path: str | None = None
    client_cert: str | None = None
    insecure: bool = False


@dataclass(frozen=True)
class MachineConfig:
    name: str
    box: str | None = None
    box_version: str | None = None
    box_url: str | None = None
    hostname: str | None = None
    boot_timeout: int = 300
    primary: bool = False
    autostart: bool = True
    libvirt: LibvirtSettings = field(default_factory=LibvirtSettings)
    forwarded_ports: tuple[ForwardedPort, ...] = ()
    private_networks: tuple[PrivateNetwork, ...] = ()
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


@dataclass(frozen=True)
class ProjectConfig:
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
        "libvirt": asdict(m.libvirt),
        "forwarded_ports": [asdict(p) for p in m.forwarded_ports],
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
            "username": m.ssh.username,
            "insert_key": m.ssh.insert_key,
            "private_key_path": list(m.ssh.private_key_path) if m.ssh.private_key_path else None,
        },
        "box_download": asdict(m.box_download),
        "cloud_init": [asdict(c) for c in m.cloud_init],
        "ignored_settings": [asdict(i) for i in m.ignored],
    }
