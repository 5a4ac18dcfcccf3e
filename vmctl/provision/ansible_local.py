"""The ansible_local provisioner: ansible-playbook in the guest, on the guest itself.

As in Vagrant: the playbook (and galaxy_role_file, inventory_path, config_file, ...) are
paths in the guest, relative to provisioning_path (/vagrant, the synced project folder);
ansible is installed when missing and `install` is true (the guest's package manager, or
pip with install_mode "pip"); an inventory naming this machine (ansible_connection=local)
and the project's other machines, with the groups and host_vars, is written to
tmp_path/inventory; ansible-playbook runs as the SSH user in provisioning_path with
--limit=MACHINE (or the provisioner's limit). Everything runs in the guest: nothing here
touches this computer but the output.
"""

from __future__ import annotations

import shlex
from typing import TYPE_CHECKING

from vmctl.errors import ProvisionError
from vmctl.provision import Context, LineWriter, failure
from vmctl.provision.ansible import render_inventory, run_options
from vmctl.vagrantfile.model import AnsibleSettings, Provisioner

if TYPE_CHECKING:
    from vmctl.ssh import Session

q = shlex.quote

# The guest's package manager, found in order; each installs Vagrant's package.
PACKAGE_INSTALL = (
    ("apt-get", "apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq {packages}"),
    ("dnf", "dnf -y -q install {packages}"),
    ("yum", "yum -y -q install epel-release; yum -y -q install {packages}"),
    ("zypper", "zypper --non-interactive --quiet install {packages}"),
    ("apk", "apk add --quiet {packages}"),
    ("pacman", "pacman -Sy --noconfirm --quiet {packages}"),
)


def install_script(s: AnsibleSettings) -> str:
    """A guest shell script (run with sudo) that installs ansible as S asks."""
    managers = " ".join(m for m, _ in PACKAGE_INSTALL)
    lines = ["set -e", f"for m in {managers}; do command -v $m >/dev/null 2>&1 && break; m=; done"]

    def with_manager(packages: str) -> str:
        cases = "".join(f"  {m}) {cmd.format(packages=packages)} ;;\n" for m, cmd in PACKAGE_INSTALL)
        return f'case "$m" in\n{cases}  *) echo "no package manager vmctl knows in the guest" >&2; exit 3 ;;\nesac'

    if s.install_mode == "default":
        lines.append(with_manager("ansible"))
        return "\n".join(lines) + "\n"
    # pip and pip_args_only: pip first (the guest's python3-pip, or pip_install_cmd)
    lines.append("if ! python3 -m pip --version >/dev/null 2>&1; then")
    if s.pip_install_cmd:
        lines.append(f"  {s.pip_install_cmd}")
    else:
        lines.append("  " + with_manager("python3-pip").replace("\n", "\n  "))
    lines.append("fi")
    # Debian 12 and others mark the system's Python as externally managed (PEP 668).
    lines.append('brk=""; python3 -m pip install --help 2>/dev/null | grep -q -- --break-system-packages '
                 '&& brk=--break-system-packages')
    if s.install_mode == "pip_args_only":
        lines.append(f"python3 -m pip install $brk {s.pip_args or ''}")
    else:
        version = s.version if s.version and s.version != "latest" else None
        package = q(f"ansible=={version}") if version else "ansible"
        upgrade = "--upgrade " if s.version == "latest" else ""
        lines.append(f"python3 -m pip install $brk {upgrade}{s.pip_args or ''} {package}")
    return "\n".join(lines) + "\n"


def guest_path(base: str, path: str) -> str:
    """PATH in the guest, relative to BASE unless absolute."""
    return path if path.startswith("/") else f"{base.rstrip('/')}/{path}"


def playbook_command(s: AnsibleSettings, *, machine: str, inventory: str) -> str:
    """The guest command that runs the playbook (in provisioning_path)."""
    env = {"PYTHONUNBUFFERED": "1", "ANSIBLE_FORCE_COLOR": "true"}
    if s.galaxy_roles_path:
        env["ANSIBLE_ROLES_PATH"] = guest_path(s.provisioning_path, s.galaxy_roles_path)
    if s.config_file:
        env["ANSIBLE_CONFIG"] = guest_path(s.provisioning_path, s.config_file)
    v18 = s.compatibility_mode == "1.8"
    args = [f"--limit={s.limit or machine}", f"--inventory={inventory}"]
    args += run_options(s, v18=v18)
    args += list(s.raw_arguments)
    args.append(s.playbook)
    exports = " ".join(f"{k}={q(v)}" for k, v in env.items())
    return f"cd {q(s.provisioning_path)} && {exports} {s.playbook_command} {shlex.join(args)}"


def galaxy_command(s: AnsibleSettings) -> str:
    assert s.galaxy_role_file is not None
    role_file = guest_path(s.provisioning_path, s.galaxy_role_file)
    roles = (guest_path(s.provisioning_path, s.galaxy_roles_path) if s.galaxy_roles_path
             else guest_path(s.provisioning_path, s.playbook).rsplit("/", 1)[0] + "/roles")
    command = s.galaxy_command.replace("%{role_file}", q(role_file)).replace("%{roles_path}", q(roles))
    env = f"ANSIBLE_CONFIG={q(guest_path(s.provisioning_path, s.config_file))} " if s.config_file else ""
    return f"cd {q(s.provisioning_path)} && {env}{command}"


VERSIONS_SCRIPT = """
import importlib.metadata as m
for package in ("ansible", "ansible-core"):
    try:
        print(m.version(package))
    except Exception:
        pass
"""


def installed_versions(session: Session) -> set[str]:
    """The versions of the guest's ansible and ansible-core Python packages."""
    status, out, _ = session.run(f"python3 -c {q(VERSIONS_SCRIPT)}")
    return set(out.decode(errors="replace").split()) if status == 0 else set()


def run(ctx: Context, p: Provisioner, name: str) -> None:
    assert p.ansible is not None
    s, session, machine = p.ansible, ctx.session, ctx.machine
    out = LineWriter(ctx.emit, f"    {machine}: ")

    def guest(command: str, what: str) -> None:
        status, _, _ = session.run(command, on_stdout=out, on_stderr=out)
        out.flush()
        if status != 0:
            raise failure(machine, p, name, status, what)

    playbook = guest_path(s.provisioning_path, s.playbook)
    status, _, _ = session.run(f"test -f {q(playbook)}")
    if status != 0:
        raise ProvisionError(f"{machine}: provisioner {name}: the playbook {playbook} is not in the guest",
                             hint=f"the playbook path is relative to provisioning_path ({s.provisioning_path}), "
                             "the project folder synced into the guest")
    program = shlex.split(s.playbook_command)[0] if s.playbook_command.strip() else "ansible-playbook"
    installed = session.run(f"command -v {q(program)}")[0] == 0
    if installed and s.version and s.version != "latest":
        installed = s.version in installed_versions(session)
    if s.install and (not installed or s.version == "latest"):
        ctx.say(f"==> {machine}: installing ansible in the guest ({s.install_mode})...")
        guest(f"sudo -n sh -c {q(install_script(s))}", "installing ansible")
    elif not installed:
        raise ProvisionError(f"{machine}: provisioner {name}: {program} is not installed in the guest",
                             hint="set install: true (the default) to install it, or install it in the box")
    inventory = f"{s.tmp_path.rstrip('/')}/inventory/vagrant_ansible_local_inventory"
    if s.inventory_path:
        inventory = guest_path(s.provisioning_path, s.inventory_path)
    else:
        names = [h.name for h in ctx.inventory()] if ctx.inventory is not None else []
        if machine not in names:
            names.append(machine)
        text = render_inventory(s, [], local=machine, names=names)
        folder = inventory.rsplit("/", 1)[0]
        session.check(f"sudo -n mkdir -p {q(folder)} && sudo -n chown -R \"$(id -u)\" {q(s.tmp_path)}",
                      what=f"make {folder}")
        session.upload(text.encode(), inventory, mode="0644")
    if s.galaxy_role_file:
        ctx.emit(f"    {machine}: running ansible-galaxy...")
        guest(galaxy_command(s), "ansible-galaxy")
    ctx.emit(f"    {machine}: running ansible-playbook...")
    command = playbook_command(s, machine=machine, inventory=inventory)
    if s.verbose:
        ctx.emit(f"    {machine}: {command}")
    guest(command, "ansible-playbook")
