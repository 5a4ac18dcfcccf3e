"""Command: vmctl validate [--json] — check the Vagrantfile and print the resolved settings."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

import typer

if TYPE_CHECKING:
    from vmctl.errors import ConfigError
    from vmctl.vagrantfile.model import MachineConfig, ProjectConfig


def box_vagrantfile_lookup() -> Any:
    """The box store's lookup of a box's own Vagrantfile, if the box store provides it."""
    try:
        from vmctl.boxes.installed import find_box_vagrantfile
    except (ImportError, AttributeError):
        return None
    from vmctl import paths
    from vmctl.vagrantfile.recording import StoreLookup

    return StoreLookup(str(paths.boxes_dir()), find_box_vagrantfile)


def load_current_project(argv: tuple[str, ...]) -> Any:
    """The project of the current folder (or VMCTL_VAGRANTFILE), as the machine layer sees it."""
    from vmctl.paths import require_vagrantfile
    from vmctl.vagrantfile import has_plugin_setting, load_project

    return load_project(
        require_vagrantfile(), box_vagrantfile=box_vagrantfile_lookup(), argv=argv,
        has_plugin=has_plugin_setting(),
    )


def project_json(project: ProjectConfig) -> dict[str, Any]:
    """The `vmctl validate --json` document of a valid project."""
    from vmctl.vagrantfile import machine_json

    return {
        "valid": True,
        "machines": [machine_json(m) for m in project.machines],
        "warnings": list(project.warnings),
    }


def error_json(exc: ConfigError) -> dict[str, Any]:
    """The `vmctl validate --json` document of an invalid project."""
    return {
        "valid": False,
        "error": {"message": exc.message, "file": exc.file, "line": exc.line, "hint": exc.hint},
    }


def summary(machine: MachineConfig) -> list[str]:
    """A few lines per machine for people (the JSON has everything)."""
    head = f"{machine.name}: box {machine.box or '(none)'}"
    if machine.box_version:
        head += f" {machine.box_version}"
    head += f", {machine.cpus} cpu{'s' if machine.cpus != 1 else ''}, {machine.memory} MiB"
    if machine.hostname:
        head += f", hostname {machine.hostname}"
    if machine.primary:
        head += ", primary"
    if not machine.autostart:
        head += ", no autostart"
    lines = [head]
    lv = machine.libvirt
    if lv.driver or lv.uri or lv.kernel or lv.machine_virtual_size:
        parts = [f"{k} {v}" for k, v in (("driver", lv.driver), ("uri", lv.uri), ("kernel", lv.kernel),
                                           ("disk", f"{lv.machine_virtual_size} GB" if lv.machine_virtual_size else None))
                 if v]
        lines.append("  libvirt: " + ", ".join(parts))
    for port in machine.forwarded_ports:
        host = port.host if port.host is not None else "(any)"
        extra = " (auto_correct)" if port.auto_correct else ""
        lines.append(f"  port {port.host_ip}:{host} -> {port.guest}/{port.protocol}{extra}")
    for net in machine.private_networks:
        if net.public:
            where = f"{net.ip}/{net.netmask}" if net.ip else "DHCP"
            attach = {"bridge": "a host bridge", "direct": f"macvtap, mode {net.macvtap_mode}"}.get(
                net.attach or "", f"a bridge, or macvtap mode {net.macvtap_mode}")
            lines.append(f"  public network {where} on {' or '.join(net.devs) or 'eth0'} ({attach})")
            continue
        where = f"{net.ip}/{net.netmask}" if net.ip else f"DHCP on {net.subnet}"
        lines.append(f"  private network {where}" + (f" on {net.name}" if net.name else "")
                     + (f" ({net.tunnel_type} tunnel)" if net.tunnel_type else "")
                     + (f" (forward {net.forward_mode}" + (f" out of {net.forward_device})" if net.forward_device
                                                           else ")") if net.forward_mode != "none" else ""))
    for folder in machine.synced_folders:
        state = "disabled" if folder.disabled else folder.type
        if folder.two_way and not folder.disabled:
            state += ", two-way" if folder.type != "nfs" else ": no NFS server, shared two-way with virtiofs or 9p"
        lines.append(f"  synced folder {folder.host} -> {folder.guest} ({state})")
    for prov in machine.provisioners:
        name = f" {prov.name}" if prov.name else ""
        lines.append(f"  provision {prov.type}{name}: {prov.summary} (run {prov.run})")
    for part in machine.cloud_init:
        lines.append(f"  cloud-init {part.content_type}: {part.path or 'inline'}")
    for trig in machine.triggers:
        lines.append(f"  trigger {trig.when} {', '.join(trig.commands)}" + (f": {trig.name}" if trig.name else ""))
    ssh = machine.ssh
    lines.append(f"  ssh user {ssh.username}" + ("" if ssh.insert_key else ", insecure key kept"))
    return lines


def validate(as_json: bool) -> None:
    from vmctl import term
    from vmctl.errors import ConfigError

    try:
        project = load_current_project(("validate",))
    except ConfigError as exc:
        if not as_json:
            raise
        term.out_json(error_json(exc))
        raise typer.Exit(1) from None
    for message in project.messages:
        term.info(message)
    if as_json:
        term.out_json(project_json(project))
        return
    for warning in project.warnings:
        term.warn(warning)
    for warning in host_notes(project):
        term.warn(warning)
    term.out(f"{project.vagrantfile}: valid, {len(project.machines)} machine"
             f"{'s' if len(project.machines) != 1 else ''}")
    for machine in project.machines:
        for line in summary(machine):
            term.out(line)


def host_notes(project: ProjectConfig) -> list[str]:
    """What this host makes of the private networks: those it cannot reach, said plainly."""
    import os

    from vmctl import hostnet, hypervisor
    from vmctl.machine import hardware

    is_root = os.geteuid() == 0
    notes = []
    for machine in project.machines:
        uri = hypervisor.resolve_uri(machine.libvirt.uri)
        daemon = hardware.Host(accel="tcg", uri=uri, embedded=hypervisor.is_embedded(uri),
                               is_root=is_root).daemon_networks
        for net in machine.private_networks:
            note = hostnet.reachability_note(net, is_root=is_root, daemon=daemon)
            if note:
                notes.append(f"{machine.name}: {note}")
    return notes


def register(app: typer.Typer) -> None:
    @app.command("validate")
    def validate_command(
        as_json: Annotated[bool, typer.Option("--json", help="Print the resolved settings as JSON.")] = False,
    ) -> None:
        """Check the Vagrantfile and print the settings vmctl resolves from it."""
        validate(as_json)

