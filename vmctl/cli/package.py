"""Command: vmctl package [NAME] (Vagrant's `package`). Thin: parse, call
vmctl.machine.package, print."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import typer


def package(name: str | None, *, output: Path | None, vagrantfile: Path | None, include: list[Path]) -> None:
    from vmctl.cli.common import emitters, project
    from vmctl.machine import package as packaging

    proj = project("package", *([name] if name else []))
    m = proj.one_machine(name)
    emit, _ = emitters()
    packaging.package(m, output or Path("package.box"), vagrantfile=vagrantfile, include=include, emit=emit)


def register(app: typer.Typer) -> None:
    import typer

    from vmctl.cli.common import name_argument

    @app.command("package")
    def package_command(
        name: str | None = name_argument(),
        output: Path | None = typer.Option(None, "--output", "-o", metavar="FILE",
                                           help="The box file to write (default: package.box here; never overwritten)."),
        vagrantfile: Path | None = typer.Option(None, "--vagrantfile", metavar="FILE",
                                                help="A Vagrantfile for the box (loaded by its own)."),
        include: list[Path] | None = typer.Option(None, "--include", metavar="FILE",
                                                  help="A file to put in the box's include/ folder (repeatable)."),
    ) -> None:
        """Turn a machine into a .box file (halting it first; a running guest is made generic)."""
        package(name, output=output, vagrantfile=vagrantfile, include=include or [])
