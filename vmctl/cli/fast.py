"""The commands scripts call hundreds of times, parsed without typer.

`vmctl status`, `ssh`, `ssh-config`, `port` and `version` in their plain forms are parsed
here, with the standard library only, and call the same functions the typer commands call:
importing typer and building its command tree costs several times Python's own start-up.
Anything this parser does not recognise (help, an unknown or misplaced option, a missing
value, too many names) goes to typer instead, which stays the one source of help texts
and usage errors. A unit test parses the same command lines both ways and compares.
"""

from __future__ import annotations

TYPE_CHECKING = False  # typing costs `vmctl ssh`'s fast path (vmctl/cli/fast_ssh.py) a few ms
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any


class Spec:
    """One command's plain grammar: its names (none, at most one, or any number), its
    flags (option -> (parameter, value)) and its options with a value (option -> parameter).
    A plain class: making it a dataclass cost about a millisecond of every start."""

    __slots__ = ("module", "function", "names", "flags", "values", "defaults", "names_param", "min_names")

    def __init__(self, module: str, function: str, names: str, *,
                 flags: dict[str, tuple[str, object]] | None = None, values: dict[str, str] | None = None,
                 defaults: dict[str, object] | None = None, names_param: str = "names",
                 min_names: int = 0) -> None:
        self.module = module
        self.function = function
        self.names = names  # "", "?" or "*"
        self.flags = flags or {}
        self.values = values or {}
        self.defaults = defaults or {}
        self.names_param = names_param  # the parameter that takes the names ("*")
        self.min_names = min_names  # fewer: typer says what is missing


SPECS = {
    "status": Spec("vmctl.cli.status", "status", "*", flags={"--json": ("as_json", True)},
                   defaults={"as_json": False}),
    "ssh-config": Spec("vmctl.cli.ssh", "ssh_config", "*", values={"--host": "host"},
                       defaults={"host": None}),
    "port": Spec("vmctl.cli.port", "port", "?", flags={"--json": ("as_json", True), "--tunnel": ("tunnel", True)},
                 values={"--guest": "guest"}, defaults={"as_json": False, "guest": None, "tunnel": False}),
    "ssh": Spec("vmctl.cli.ssh", "ssh", "?",
                flags={"-p": ("plain", True), "--plain": ("plain", True),
                       "-t": ("tty", True), "--tty": ("tty", True), "--no-tty": ("tty", False)},
                values={"-c": "command", "--command": "command"},
                defaults={"command": None, "plain": False, "tty": None}),
    "version": Spec("vmctl.cli.version", "version", ""),
}  # fmt: skip

# `vmctl snapshot SUBCOMMAND`: restore is timed against `up`, save against dd.
_RESTORE_FLAGS = {"--provision": ("provision", True), "--no-provision": ("provision", False),
                  "--no-start": ("start", False)}
_RESTORE_DEFAULTS = {"provision": None, "provision_with": None, "start": True}
SUBCOMMANDS = {
    "snapshot": {
        "save": Spec("vmctl.cli.snapshot", "save", "*", flags={"-f": ("force", True), "--force": ("force", True)},
                     defaults={"force": False}, names_param="words", min_names=1),
        "restore": Spec("vmctl.cli.snapshot", "restore", "*", flags=_RESTORE_FLAGS,
                        values={"--provision-with": "provision_with"}, defaults=_RESTORE_DEFAULTS,
                        names_param="words", min_names=1),
        "delete": Spec("vmctl.cli.snapshot", "delete", "*", names_param="words", min_names=1),
        "list": Spec("vmctl.cli.snapshot", "list_snapshots", "*", flags={"--json": ("as_json", True)},
                     defaults={"as_json": False}, names_param="words"),
        "push": Spec("vmctl.cli.snapshot", "push", "*", names_param="words"),
        "pop": Spec("vmctl.cli.snapshot", "pop", "*", flags={**_RESTORE_FLAGS, "--no-delete": ("delete", False)},
                    values={"--provision-with": "provision_with"}, defaults={**_RESTORE_DEFAULTS, "delete": True},
                    names_param="words"),
    },
}  # fmt: skip


def parse(argv: list[str], extra: list[str]) -> tuple[Callable[..., Any], dict[str, Any]] | None:
    """The command function and its arguments for ARGV (EXTRA: what followed `--`, for
    ssh), or None when typer must parse ARGV."""
    matched = match(argv, extra)
    if matched is None:
        return None
    spec, kwargs = matched
    import importlib

    return getattr(importlib.import_module(spec.module), spec.function), kwargs


def match(argv: list[str], extra: list[str]) -> tuple[Spec, dict[str, Any]] | None:
    """The plain grammar ARGV follows and its arguments, or None when typer must parse ARGV."""
    if not argv or (argv[0] not in SPECS and argv[0] not in SUBCOMMANDS):
        return None
    rest = argv[1:]
    if argv[0] in SUBCOMMANDS:
        if not rest or rest[0] not in SUBCOMMANDS[argv[0]]:
            return None
        spec = SUBCOMMANDS[argv[0]][rest[0]]
        rest = rest[1:]
    else:
        spec = SPECS[argv[0]]
    if extra and argv[0] != "ssh":
        return None
    kwargs: dict[str, Any] = dict(spec.defaults)
    names: list[str] = []
    words = iter(rest)
    for word in words:
        if word.startswith("-") and word != "-":
            option, eq, inline = word.partition("=") if word.startswith("--") else (word, "", "")
            if option in spec.flags and not eq:
                key, flag_value = spec.flags[option]
                kwargs[key] = flag_value
            elif option in spec.values:
                value = inline if eq else next(words, None)
                if value is None:
                    return None
                kwargs[spec.values[option]] = value
            else:
                return None  # -h, an unknown option, -cVALUE, combined flags: typer
        else:
            names.append(word)
    if spec.names == "" and names or spec.names == "?" and len(names) > 1 or len(names) < spec.min_names:
        return None
    if spec.names == "*":
        kwargs[spec.names_param] = names
    elif spec.names == "?":
        kwargs["name"] = names[0] if names else None
    if argv[0] == "ssh":
        kwargs["extra"] = list(extra)
    return spec, kwargs
