"""The one place that owns the terminal.

Results (and --json) go to stdout; progress, messages and errors go to stderr. Text that
comes from users or guests is never read as markup, and its control characters are shown
as \\xNN instead of reaching the terminal. Spinners and bars appear only on an
interactive terminal; elsewhere (CI) progress is a few plain lines. NO_COLOR is honoured.
rich is imported lazily, so commands that print nothing fancy start fast.

The CLI sets three modes before a command runs: colour (--color, --no-color: forced on,
off, or decided by the terminal), interactivity (--no-tty: no spinners or bars), and a UI
hook (--machine-readable: every message becomes one of Vagrant's `ui` lines on stdout,
see vmctl/cli/machine_readable.py).
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import cache
from typing import Any

from vmctl.untrusted import terminal_safe, visible

_lock = threading.Lock()

UIHook = Callable[[str, str], None]  # (kind: "output", "info", "warn", "error"; text)


class _Modes:
    color: bool | None = None  # None: decided by the terminal
    interactive: bool = True  # False: --no-tty
    ui: UIHook | None = None  # set: --machine-readable


_modes = _Modes()


def set_modes(*, color: bool | None = None, interactive: bool = True, ui: UIHook | None = None) -> None:
    """Set how this command talks to the terminal (the CLI calls this once, first)."""
    _modes.color = color
    _modes.interactive = interactive
    _modes.ui = ui
    stdout_console.cache_clear()
    stderr_console.cache_clear()


def machine_readable() -> bool:
    return _modes.ui is not None


def interactive() -> bool:
    return (_modes.interactive and _modes.ui is None and sys.stderr.isatty()
            and os.environ.get("TERM") != "dumb")


def _console(stderr: bool):  # type: ignore[no-untyped-def]
    from rich.console import Console

    colour: dict[str, Any] = {}
    if _modes.color is True:
        colour = {"force_terminal": True, "no_color": False}
    elif _modes.color is False:
        colour = {"no_color": True}
    return Console(stderr=stderr, highlight=False, emoji=False, soft_wrap=True, **colour)


@cache
def stdout_console():  # type: ignore[no-untyped-def]
    return _console(stderr=False)


@cache
def stderr_console():  # type: ignore[no-untyped-def]
    return _console(stderr=True)


def raw(text: str) -> None:
    """A line on stdout in every mode (machine-readable lines, a config file, a guest's
    output). It may carry a guest's output: colours pass, every other control sequence is
    shown, not obeyed."""
    with _lock:
        sys.stdout.write(terminal_safe(text) + "\n")
        sys.stdout.flush()


def out(text: str = "") -> None:
    """A line of result on stdout (plain text, no markup)."""
    if _modes.ui is not None:
        _modes.ui("output", text)
        return
    raw(text)


def out_json(data: Any) -> None:
    out(json.dumps(data, indent=2, sort_keys=False))


def info(text: str) -> None:
    """A progress or status message on stderr. Messages quote Vagrantfiles, boxes and
    guests (`puts`, names, errors): control characters are shown, not obeyed."""
    if _modes.ui is not None:
        _modes.ui("info", text)
        return
    with _lock:
        sys.stderr.write(visible(text) + "\n")
        sys.stderr.flush()


def detail(text: str) -> None:
    """A line of a guest's output (provisioners, triggers): stdout, as vmctl always did."""
    if _modes.ui is not None:
        _modes.ui("detail", text)
        return
    raw(text)


def warn(text: str) -> None:
    if _modes.ui is not None:
        _modes.ui("warn", text)
        return
    info(f"warning: {text}")


def error(message: str, hint: str | None = None) -> None:
    if _modes.ui is not None:
        _modes.ui("error", message + (f"\nhint: {hint}" if hint else ""))
        return
    info(f"error: {message}")
    if hint:
        info(f"hint: {hint}")


def table(columns: list[str], rows: list[list[str]]) -> None:
    """A table on stdout: rich on a terminal (or with --color), aligned plain text otherwise
    (`ui,info` lines with --machine-readable)."""
    if _modes.ui is None and (sys.stdout.isatty() or _modes.color is True):
        from rich.table import Table

        t = Table(box=None, header_style="bold", pad_edge=False)
        for column in columns:
            t.add_column(column)
        for row in rows:
            t.add_row(*row, style=None)
        stdout_console().print(t, markup=False)
        return
    widths = [max(len(c), *(len(r[i]) for r in rows)) if rows else len(c) for i, c in enumerate(columns)]
    line = info if _modes.ui is not None else raw
    line("  ".join(c.upper().ljust(w) for c, w in zip(columns, widths, strict=True)).rstrip())
    for row in rows:
        line("  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip())


@contextmanager
def spinner(text: str) -> Iterator[None]:
    """A spinner with elapsed time on a terminal; one plain line otherwise."""
    if not interactive():
        info(text)
        yield
        return
    from rich.status import Status

    start = time.monotonic()
    status = Status(text, console=stderr_console())
    stop = threading.Event()

    def tick() -> None:
        while not stop.wait(0.5):
            status.update(f"{text} ({time.monotonic() - start:.0f}s)")

    thread = threading.Thread(target=tick, daemon=True)
    with status:
        thread.start()
        try:
            yield
        finally:
            stop.set()
            thread.join()


class Progress:
    """Byte progress: a rich bar on a terminal, a few plain lines elsewhere.

    Library code receives one of these (or None) and calls advance(); it never prints.
    """

    def __init__(self, description: str, total: int | None, already: int = 0) -> None:
        self.description = description
        self.total = total
        self.done = already
        self._bar = None
        self._task = None
        self._next_report = 0.25
        self._start = time.monotonic()

    def __enter__(self) -> Progress:
        if interactive():
            from rich.progress import (
                BarColumn,
                DownloadColumn,
                TextColumn,
                TimeRemainingColumn,
                TransferSpeedColumn,
            )
            from rich.progress import Progress as RichProgress

            self._bar = RichProgress(
                TextColumn("{task.description}"),
                BarColumn(),
                DownloadColumn(),
                TransferSpeedColumn(),
                TimeRemainingColumn(),
                console=stderr_console(),
                transient=False,
            )
            self._bar.start()
            self._task = self._bar.add_task(self.description, total=self.total, completed=self.done)
        else:
            size = f" ({human_bytes(self.total)})" if self.total else ""
            resumed = f", resuming at {human_bytes(self.done)}" if self.done else ""
            info(f"{self.description}{size}{resumed}")
        return self

    def advance(self, n: int) -> None:
        self.done += n
        if self._bar is not None:
            self._bar.update(self._task, advance=n)
        elif self.total and self.done / self.total >= self._next_report:
            info(f"  {self.done * 100 // self.total}% of {human_bytes(self.total)}")
            self._next_report += 0.25

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._bar.stop()


def human_bytes(n: int | None) -> str:
    if n is None:
        return "?"
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} GiB"
