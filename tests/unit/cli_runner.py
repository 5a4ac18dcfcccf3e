"""Run one command group of the CLI in-process, rendering a VmctlError as vmctl.cli.main
does, so CLI tests can assert the exact output and exit status."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import typer
from typer.testing import CliRunner

from vmctl.errors import VmctlError


@dataclass
class Outcome:
    code: int
    stdout: str
    stderr: str


def run_commands(register: Callable[[typer.Typer], None], *args: str) -> Outcome:
    """Invoke ARGS on an app holding only the commands REGISTER adds."""
    app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)

    @app.callback()
    def _root() -> None:
        pass

    register(app)
    result = CliRunner().invoke(app, list(args), env={"COLUMNS": "120", "NO_COLOR": "1"})
    stderr = result.stderr
    code = result.exit_code
    if isinstance(result.exception, VmctlError):
        exc = result.exception
        stderr += f"error: {exc}\n" + (f"hint: {exc.hint}\n" if exc.hint else "")
        code = exc.exit_code
    elif result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return Outcome(code, result.stdout, stderr)


def run_main(*args: str, stdin: str = "") -> Outcome:
    """Run `vmctl ARGS` in-process through vmctl.cli.main, exactly as the `vmctl` command
    does (global flags, the fast parser, typer, error rendering), capturing its output.
    Environment and current folder are the caller's (use monkeypatch)."""
    import contextlib
    import io
    import logging
    import sys

    from vmctl.cli import main

    out, err = io.StringIO(), io.StringIO()
    root = logging.getLogger()
    saved_handlers, saved_level = root.handlers[:], root.level
    saved_stdin = sys.stdin
    sys.stdin = io.StringIO(stdin)
    code = 0
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                main(list(args))
            except SystemExit as exc:
                code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    finally:
        sys.stdin = saved_stdin
        root.handlers[:] = saved_handlers
        root.setLevel(saved_level)
    return Outcome(code, out.getvalue(), err.getvalue())
