"""What the machine commands share: finding the project, the emitters for progress and
guest output, and the NAME argument. No typer at import time (the fast commands use this)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from vmctl.project import Project


def project(*words: str) -> Project:
    """The project of the current folder (VAGRANT_CWD, VMCTL_VAGRANTFILE, ...). WORDS are the
    command line, which the Vagrantfile may read (ARGV). VAGRANT_DEFAULT_PROVIDER, when
    set, must name libvirt: every machine of a project would be backed by it."""
    from vmctl import environment
    from vmctl.project import Project

    environment.require_default_provider()
    return Project.find(words)


def emitters() -> tuple[Callable[[str], None], Callable[[str], None]]:
    """(progress, guest output): stderr and stdout, or `ui` lines with --machine-readable."""
    from vmctl import term

    return term.info, term.detail


def names_argument(help_text: str = "Machine names (default: all machines of the project).") -> Any:
    import typer

    return typer.Argument(None, metavar="NAME", show_default=False, help=help_text)


def name_argument() -> Any:
    import typer

    return typer.Argument(None, metavar="NAME", show_default=False,
                          help="Machine (default: the primary or only one).")


def parse_provision_with(value: str | None) -> set[str] | None:
    """--provision-with x,y,z: provisioner names or types, as a set (None: not given)."""
    if value is None:
        return None
    from vmctl.errors import UsageError

    chosen = {p.strip() for p in value.split(",") if p.strip()}
    if not chosen:
        raise UsageError("--provision-with names no provisioner",
                         hint="give provisioner names or types, comma-separated (e.g. shell)")
    return chosen
