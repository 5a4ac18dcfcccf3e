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
class Provisioner:
    type: str  # "shell" or "file"
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
        "ignored_settings": [asdict(i) for i in m.ignored],
    }
