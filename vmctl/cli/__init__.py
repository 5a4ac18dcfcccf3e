"""The command line: thin commands that parse, call the core, and print.

`main` takes Vagrant's global flags out of the command line (vmctl/cli/flags.py), sets
up the terminal and the logs, and then runs the command: `ssh` first through its fast path
(vmctl/cli/fast_ssh.py), which hands over to OpenSSH when it can; the commands scripts call most
(`status`, `ssh`, `ssh-config`, `port`, `version`, `--version`) through a small parser of
their plain forms (vmctl/cli/fast.py), everything else through typer (vmctl/cli/app.py).
Nothing heavy is imported here: `vmctl --version` must start fast.
"""

from __future__ import annotations

import os
import sys

from vmctl.cli.flags import GlobalFlags, split

_debug = False


def debug_enabled() -> bool:
    return _debug


def _register() -> None:
    """Register every command on the typer app (what `vmctl --help` needs)."""
    from vmctl.cli.app import _register as register

    register()


def _configure(flags: GlobalFlags, argv: list[str]) -> None:
    """Terminal modes and logs, from the flags and then Vagrant's environment variables."""
    global _debug
    from vmctl import environment, term

    color = flags.color if flags.color is not None else environment.color()
    ui = None
    if flags.machine_readable:
        from vmctl.cli import machine_readable

        ui = machine_readable.ui
    term.set_modes(color=color, interactive=flags.tty, ui=ui)
    level = 10 if flags.debug else environment.log_level()
    _debug = level == 10
    if level is not None:
        import logging

        stamps = flags.timestamp or environment.log_timestamps()
        logging.basicConfig(level=level, handlers=[_log_handler(stamps)], force=True)
        from vmctl import __version__

        logging.getLogger("vmctl.cli").debug("vmctl %s invoked: %s", __version__, argv)


def _log_handler(timestamps: bool):  # type: ignore[no-untyped-def]
    """Logs on stderr as "debug: vmctl.machine: ...", with the time first for --timestamp."""
    import logging

    class LowerCaseLevels(logging.Formatter):
        def format(self, record: logging.LogRecord) -> str:
            record.levelname = record.levelname.lower()
            return super().format(record)

    stamp = "%(asctime)s " if timestamps else ""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(LowerCaseLevels(f"{stamp}%(levelname)s: %(name)s: %(message)s"))
    return handler


def _split_ssh_extra(args: list[str]) -> tuple[list[str], list[str]]:
    """For `ssh`, the words after the first `--` are arguments for OpenSSH (as in Vagrant)."""
    if args[:1] == ["ssh"] and "--" in args:
        i = args.index("--")
        return args[:i], args[i + 1:]
    return args, []


def _run(args: list[str]) -> None:
    args, extra = _split_ssh_extra(args)
    from vmctl.cli import fast

    parsed = fast.parse(args, extra)
    if parsed is not None:
        function, kwargs = parsed
        function(**kwargs)
        return
    from vmctl.cli.app import run

    run(args, extra)


def main(argv: list[str] | None = None) -> None:
    """Entry point: run the command; turn a VmctlError into `error:`/`hint:` and its exit
    status (with --machine-readable, `ui,error` and `error-exit` lines).

    Usage errors (exit status 2) come from typer; Ctrl-C exits 130.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    flags, args = split(argv)
    if flags.version:
        from vmctl import __version__

        sys.stdout.write(f"vmctl {__version__}\n")
        return
    from vmctl.errors import VmctlError

    try:
        if args[:1] == ["ssh"] and not (flags.debug or flags.machine_readable):
            from vmctl.cli import fast_ssh

            if fast_ssh.run(*_split_ssh_extra(args)):  # execs OpenSSH when every check passes
                return
        _configure(flags, argv)
        _run(args)
    except VmctlError as exc:
        _report(exc, flags, traceback=_debug)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        sys.stderr.write("\n")
        sys.exit(130)
    except BrokenPipeError:
        _quiet_stdout()
        sys.exit(1)
    except Exception as exc:  # a bug: still one line, unless --debug asks for the traceback
        if _debug:
            raise
        from vmctl import term

        term.error(f"internal error: {type(exc).__name__}: {exc}",
                   "run again with --debug for the traceback, and report it")
        sys.exit(1)


def _report(exc: BaseException, flags: GlobalFlags, *, traceback: bool) -> None:
    from vmctl import term

    if traceback:
        import traceback as tb

        tb.print_exc()
    term.error(str(exc), getattr(exc, "hint", None))
    if flags.machine_readable:
        from vmctl.cli import machine_readable

        machine_readable.error_exit(exc)


def _quiet_stdout() -> None:
    """After a closed pipe, point stdout at /dev/null so Python's exit flush is quiet."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass
