"""The command line: thin commands that parse, call the core, and print.

Each module registers its commands on `app`. Heavy imports (libvirt, paramiko, rich, the
Vagrantfile parser) happen inside the command functions, so start-up stays fast.
"""

from __future__ import annotations

import logging
import os
import sys

import typer

from vmctl import __version__

app = typer.Typer(
    name="vmctl",
    help="Vagrant-compatible virtual machines on libvirt/QEMU.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)

_debug = False


def _version(value: bool) -> None:
    if value:
        sys.stdout.write(f"vmctl {__version__}\n")
        raise typer.Exit()


@app.callback()
def _root(
    debug: bool = typer.Option(False, "--debug", help="Show debug logs, timings and tracebacks."),
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    global _debug
    _debug = debug or os.environ.get("VMCTL_DEBUG") == "1"
    if _debug:
        logging.basicConfig(
            level=logging.DEBUG, format="debug: %(name)s: %(message)s", stream=sys.stderr
        )


def debug_enabled() -> bool:
    return _debug


def _register() -> None:
    from vmctl.cli import box, machines, validate

    box.register(app)
    validate.register(app)
    machines.register(app)


def main(argv: list[str] | None = None) -> None:
    """Entry point: run the app, turn VmctlError into `error:`/`hint:` and an exit status.

    Usage errors (exit status 2) and Ctrl-C are handled by typer's standalone mode.
    """
    from vmctl.errors import VmctlError
    from vmctl.term import error

    _register()
    try:
        app(args=argv, prog_name="vmctl")
    except VmctlError as exc:
        if _debug:
            import traceback

            traceback.print_exc()
        error(str(exc), exc.hint)
        sys.exit(exc.exit_code)
    except BrokenPipeError:
        sys.exit(1)
