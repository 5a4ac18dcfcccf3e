"""Vagrant's global flags, taken out of the command line before the command is parsed.

Vagrant accepts `--machine-readable`, `--no-color`, `--color`, `--debug`, `--timestamp`,
`--debug-timestamp`, `--no-tty` and `-v`/`--version` anywhere before a `--`: `vagrant
status --machine-readable` and `vagrant --machine-readable status` mean the same. vmctl
does too. Two refinements over Vagrant, which deletes such words wherever they are: a word
that is the value of an option (`ssh -c --debug`) stays the option's value, and `--no-tty`
after `ssh` is ssh's own flag (no terminal for the command), as its help says.

Only the standard library: this runs before anything else, for every command.
"""

from __future__ import annotations

# The options of each command that take a value (a unit test checks these against the
# commands' definitions): the word after one of them is its value. `box` holds those of
# all its subcommands.
VALUE_OPTIONS: dict[str, frozenset[str]] = {
    "up": frozenset({"--provider", "--provision-with"}),
    "reload": frozenset({"--provision-with"}),
    "resume": frozenset({"--provision-with"}),
    "provision": frozenset({"--provision-with"}),
    "snapshot": frozenset({"--provision-with"}),
    "ssh": frozenset({"-c", "--command"}),
    "ssh-config": frozenset({"--host"}),
    "port": frozenset({"--guest"}),
    "upload": frozenset({"-C", "--compression-type"}),
    "init": frozenset({"--output", "--box-version"}),
    "package": frozenset({"-o", "--output", "--vagrantfile", "--include"}),
    "box": frozenset({"--name", "--box-version", "--checksum", "--checksum-type", "--provider", "--box",
                      "--cacert", "--capath", "--cert",
                      "-o", "--output"}),
}


class GlobalFlags:
    """The global flags found (a plain class: dataclasses would cost `vmctl --version` a
    third of its start-up)."""

    def __init__(self) -> None:
        self.debug = False
        self.timestamp = False
        self.machine_readable = False
        self.color: bool | None = None  # None: decided by the terminal (and the environment)
        self.tty = True  # False: --no-tty, no spinners or progress bars
        self.version = False


def split(argv: list[str]) -> tuple[GlobalFlags, list[str]]:
    """The global flags in ARGV, and ARGV without them."""
    flags = GlobalFlags()
    rest: list[str] = []
    command: str | None = None
    takes_value = False
    for i, word in enumerate(argv):
        if word == "--":
            rest += argv[i:]
            break
        if takes_value:
            rest.append(word)
            takes_value = False
            continue
        if word in ("--debug", "--debug-timestamp"):
            flags.debug = True
            flags.timestamp = flags.timestamp or word == "--debug-timestamp"
        elif word == "--timestamp":
            flags.timestamp = True
        elif word == "--machine-readable":
            flags.machine_readable = True
        elif word == "--no-color":
            flags.color = False if flags.color is None else flags.color
        elif word == "--color":
            flags.color = True  # forcing colour wins over --no-color, as in Vagrant
        elif word == "--no-tty" and command != "ssh":
            flags.tty = False
        elif word in ("-v", "--version"):
            flags.version = True
        else:
            rest.append(word)
            if command is None and not word.startswith("-"):
                command = word
            takes_value = word in VALUE_OPTIONS.get(command or "", ())
    return flags, rest
