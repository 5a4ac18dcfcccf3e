"""Command: vmctl version (Vagrant's `version`): the installed version. vmctl does not ask
the network for a newer one (Vagrant's checkpoint service)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import typer


def version() -> None:
    """Print the installed version (`version-installed` with --machine-readable)."""
    from vmctl import __version__, term

    if term.machine_readable():
        from vmctl.cli import machine_readable

        machine_readable.emit("ui", "output", f"Installed Version: {__version__}")
        machine_readable.emit("version-installed", __version__)
        return
    term.out(f"Installed Version: {__version__}")


def register(app: typer.Typer) -> None:
    @app.command("version")
    def version_command() -> None:
        """Print the installed version of vmctl."""
        version()
