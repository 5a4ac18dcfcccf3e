"""Command: vmctl init [BOX [URL]] — write a Vagrantfile, as `vagrant init` does.

The full template explains, in comments, the settings a new project most often needs; the
minimal one (`--minimal`) is the box and nothing else. An existing Vagrantfile is never
overwritten without --force; `--output -` prints the file instead of writing it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import typer

MINIMAL = """\
Vagrant.configure("2") do |config|
  config.vm.box = {box}{version}{url}
end
"""

FULL = """\
# A Vagrantfile for vmctl (and Vagrant): it describes the machines of this project.
# vmctl reads it without running it as Ruby; `vmctl validate --json` shows what it means.
# Every setting: docs/vagrantfile.md.

Vagrant.configure("2") do |config|
  # The box the machine is made from: a name on the box registry (VAGRANT_SERVER_URL),
  # a box you added with `vmctl box add`, or one of vmctl's own (vmctl/tiny, vmctl/debian).
  config.vm.box = {box}{version}{url}

  # New versions of the box are installed by `vmctl box update`; machines keep theirs.

  # Ports on this computer forwarded to the machine. They listen on 127.0.0.1 only,
  # unless you name another host_ip.
  # config.vm.network "forwarded_port", guest: 80, host: 8080

  # A network between the machines of this project.
  # config.vm.network "private_network", ip: "192.168.56.10"

  # Folders copied into the machine (rsync) on `up` and `vmctl rsync`. This project's
  # folder is at /vagrant unless you disable it.
  # config.vm.synced_folder "../data", "/data"

  # Hardware: memory in MiB and CPUs.
  # config.vm.provider :libvirt do |libvirt|
  #   libvirt.memory = 1024
  #   libvirt.cpus = 2
  # end

  # Commands run in the machine the first time it comes up (and with `vmctl provision`).
  # config.vm.provision "shell", inline: <<-SHELL
  #   apt-get update
  #   apt-get install -y nginx
  # SHELL
end
"""


def render(box: str, url: str | None, *, minimal: bool, version: str | None) -> str:
    """The Vagrantfile text for BOX (and its URL and version constraint)."""
    text = MINIMAL if minimal else FULL
    indent = "\n  "
    return text.format(
        box=json.dumps(box),
        version=f"{indent}config.vm.box_version = {json.dumps(version)}" if version else "",
        url=f"{indent}config.vm.box_url = {json.dumps(url)}" if url else "",
    )


def init(box: str | None, url: str | None, *, minimal: bool, output: str | None, force: bool,
         box_version: str | None) -> None:
    from vmctl import term
    from vmctl.errors import VmctlError

    text = render(box or "base", url, minimal=minimal, version=box_version)
    if output == "-":
        term.raw(text.rstrip("\n"))
        return
    target = Path(output or "Vagrantfile")
    if target.exists() and not force:
        raise VmctlError(f"{target} already exists; vmctl init does not overwrite it",
                         hint="remove it first, or pass --force")
    from vmctl.state import write_atomic

    write_atomic(target.absolute(), text.encode())
    term.info(f"A Vagrantfile has been written to {target}: `vmctl up` brings the machine up.")


def register(app: typer.Typer) -> None:
    import typer

    @app.command("init")
    def init_command(
        box: str | None = typer.Argument(None, metavar="BOX", show_default=False, help="The box (default: base)."),
        url: str | None = typer.Argument(None, metavar="URL", show_default=False, help="Where the box comes from (config.vm.box_url)."),
        minimal: bool = typer.Option(False, "-m", "--minimal", help="Only the box, no comments."),
        output: str | None = typer.Option(None, "--output", metavar="FILE", help="Write FILE instead of ./Vagrantfile (- prints it)."),
        force: bool = typer.Option(False, "-f", "--force", help="Overwrite an existing file."),
        box_version: str | None = typer.Option(None, "--box-version", metavar="CONSTRAINT", help="A version constraint, e.g. \"~> 1.2\"."),
    ) -> None:
        """Write a Vagrantfile for a new project (as vagrant init)."""
        init(box, url, minimal=minimal, output=output, force=force, box_version=box_version)
