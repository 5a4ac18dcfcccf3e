"""The typer application: every command, its help, and its usage errors.

vmctl/cli/__init__.py runs it for everything its fast parser does not take. Each module
registers its commands on `app`; heavy imports (libvirt, paramiko, rich, the Vagrantfile
parser) happen inside the command functions.
"""

from __future__ import annotations

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


def _version(value: bool) -> None:
    if value:
        typer.echo(f"vmctl {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "-v", "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
    debug: bool = typer.Option(False, "--debug", help="Show debug logs, timings and tracebacks."),
    timestamp: bool = typer.Option(False, "--timestamp", help="Show the time on each log line."),
    machine_readable: bool = typer.Option(
        False, "--machine-readable", help="Vagrant's machine-readable output (TIMESTAMP,TARGET,TYPE,DATA)."
    ),
    color: bool = typer.Option(None, "--color/--no-color", show_default=False,
                               help="Force colour on, or turn it off (default: on a terminal)."),
    no_tty: bool = typer.Option(False, "--no-tty", help="No spinners or progress bars."),
) -> None:
    """Vagrant-compatible virtual machines on libvirt/QEMU.

    The global options may also come after the command, as in Vagrant
    (vmctl status --machine-readable).
    """
    # vmctl.cli.main takes these out of the command line before typer sees it
    # (vmctl/cli/flags.py); they are declared here for the help.


def _plain_annotation(annotation: object) -> object | None:
    """ANNOTATION without `| None`, if it is one vmctl's commands use and click has already
    parsed (str, bool, int, Path, or a list of those); else None."""
    from pathlib import Path
    from types import NoneType, UnionType
    from typing import Union, get_args, get_origin

    if get_origin(annotation) in (Union, UnionType):
        rest = [a for a in get_args(annotation) if a is not NoneType]
        if len(rest) != 1:
            return None
        annotation = rest[0]
    if annotation in (str, bool, int, Path):
        return annotation
    if get_origin(annotation) is list and _plain_annotation(get_args(annotation)[0]) is not None:
        return annotation
    return None


def _coerce_plain(annotation: object, value: object) -> object:
    from pathlib import Path
    from typing import get_args, get_origin

    if get_origin(annotation) is list:
        (item,) = get_args(annotation)
        return [_coerce_plain(item, v) for v in value]  # type: ignore[attr-defined]
    if annotation is bool:
        return value if isinstance(value, bool) else str(value).lower() in ("1", "true", "yes", "on")
    if annotation is int:
        return int(value)  # type: ignore[call-overload]
    if annotation is Path:
        return Path(value)  # type: ignore[arg-type]
    return str(value)


def _without_pydantic() -> None:
    """Coerce vmctl's plain parameters without pydantic.

    typer 0.29 turns every parameter of the invoked command into a pydantic TypeAdapter;
    importing pydantic and building those adapters cost 60-100 ms per command here, more
    than all the rest of `vmctl --version`. vmctl's parameters are plain str, bool, Path
    and lists of str, which need no validation beyond what click does, so they get a
    direct coercion; anything else (and any other typer) keeps typer's own path.
    """
    try:
        from dataclasses import dataclass

        from typer import _coercion, core
        from typer._click.exceptions import BadParameter

        original = _coercion.build_runtime_param
        base = _coercion.RuntimeParam
    except (ImportError, AttributeError):
        return

    @dataclass(frozen=True)
    class PlainRuntimeParam(base):  # type: ignore[misc, valid-type]
        def _coerce_value(self, value: object, param: object, ctx: object) -> object:
            try:
                return _coerce_plain(_plain_annotation(self.annotation), value)
            except (TypeError, ValueError) as exc:
                raise BadParameter(str(exc), ctx=ctx, param=param) from exc  # type: ignore[arg-type]

    def build(descriptor: object) -> object:
        info = descriptor.parameter_info  # type: ignore[attr-defined]
        plain = (
            descriptor.file_annotation is None  # type: ignore[attr-defined]
            and getattr(info, "min", None) is None
            and getattr(info, "max", None) is None
            and getattr(info, "parser", None) is None
            and getattr(info, "click_type", None) is None
            and _plain_annotation(descriptor.annotation) is not None  # type: ignore[attr-defined]
        )
        if plain:
            return PlainRuntimeParam(parameter_info=info, annotation=descriptor.annotation)  # type: ignore[attr-defined]
        return original(descriptor)  # type: ignore[arg-type]

    if getattr(core, "build_runtime_param", None) is original:
        core.build_runtime_param = build  # type: ignore[assignment]
        _coercion.build_runtime_param = build  # type: ignore[assignment]


def _register() -> None:
    from vmctl.cli import box, init, machines, package, port, ssh, status, upload, validate, version
    from vmctl.cli import snapshot as snapshot_commands

    _without_pydantic()
    box.register(app)
    validate.register(app)
    machines.register(app)
    status.register(app)
    ssh.register(app)
    port.register(app)
    upload.register(app)
    package.register(app)
    version.register(app)
    init.register(app)
    snapshot_commands.register(app)


def run(args: list[str], ssh_extra: list[str]) -> None:
    """Run ARGS through typer (SSH_EXTRA: the words after `--` of `vmctl ssh`)."""
    _register()
    app(args=args, prog_name="vmctl", obj={"ssh_extra": ssh_extra})
