"""A project's evaluated Vagrantfile, kept between commands (VMCTL_HOME/cache/evaluations)
and used again only when everything its evaluation read still reads the same.

A CI script runs `vmctl ssh -c` hundreds of times; evaluating the Vagrantfile each time
(and importing the parser to do so) was most of vmctl's start-up. An entry holds the
resolved settings and the probes of the evaluation (recording.py): the files it read and
their hashes, the environment variables it asked for, file tests, folder listings, ARGV if
it looked, the boxes it looked up. Each probe is asked again before the entry is used; one
different answer, a newer vmctl, a changed evaluator, and the Vagrantfile is evaluated
anew. Failed evaluations are not kept.

The entries live in VMCTL_HOME, which is the user's own (a project's .vmctl folder may come
with its files, so nothing is read back from there), and are pickles written atomically,
0600. VMCTL_EVAL_CACHE=0 turns the cache off.

An entry is a pickle of plain values only (the settings inside it are pickled apart), so
`vmctl ssh`'s fast path (vmctl/cli/fast_ssh.py) can read it, ask its probes again and read
the machines' SSH settings (`ssh_summary`) without loading the model or pathlib.
"""

from __future__ import annotations

import os
import pickle

from vmctl import __version__
from vmctl.vagrantfile.recording import still_answers

TYPE_CHECKING = False
if TYPE_CHECKING:
    from pathlib import Path
    from typing import Any

    from vmctl.vagrantfile.recording import BoxLookup, Key

FORMAT = 2
_CODE = os.path.dirname(os.path.abspath(__file__))


def enabled() -> bool:
    return os.environ.get("VMCTL_EVAL_CACHE", "1") != "0"


def entry_path(vagrantfile: str | os.PathLike[str], home: str | os.PathLike[str]) -> str:
    """Where the entry of VAGRANTFILE lives under the vmctl home HOME."""
    from vmctl.vagrantfile.recording import sha256

    key = sha256(os.fsencode(os.path.realpath(vagrantfile))).hexdigest()[:32]
    return os.path.join(home, "cache", "evaluations", f"{key}.pickle")


def code_stamp() -> str:
    """The evaluator's own version: a change to its code (or to vmctl) is a new stamp."""
    from vmctl.vagrantfile.recording import sha256

    parts = [__version__]
    untrusted = os.path.join(os.path.dirname(_CODE), "untrusted.py")
    try:
        names = sorted(n for n in os.listdir(_CODE) if n.endswith(".py"))
    except OSError:
        names = []
    for path in [os.path.join(_CODE, n) for n in names] + [untrusted]:
        try:
            st = os.stat(path)
        except OSError:
            continue
        parts.append(f"{os.path.basename(path)}:{st.st_size}:{st.st_mtime_ns}")
    return sha256("\n".join(parts).encode()).hexdigest()  # type: ignore[no-any-return]


def read(vagrantfile: str | os.PathLike[str], home: str | os.PathLike[str], *, has_plugin: bool) -> dict[str, Any] | None:
    """The entry kept for VAGRANTFILE, if it was written by this vmctl for this file and
    this has_plugin answer (its probes not asked yet: see `current`); else None."""
    try:
        with open(entry_path(vagrantfile, home), "rb") as f:
            entry = pickle.load(f)  # noqa: S301 - written by vmctl into the user's own VMCTL_HOME
    except (OSError, EOFError, pickle.UnpicklingError, AttributeError, ImportError, ValueError, TypeError):
        return None
    if not isinstance(entry, dict) or entry.get("format") != FORMAT:
        return None
    if entry.get("stamp") != code_stamp() or entry.get("has_plugin") != has_plugin:
        return None
    if entry.get("vagrantfile") != os.path.realpath(vagrantfile):
        return None
    return entry


def changed_probe(entry: dict[str, Any], *, argv: tuple[str, ...], box_lookup: BoxLookup | None) -> Key | None:
    """The first probe of ENTRY that does not answer the same any more, or None when all do."""
    probes: dict[Key, Any] = entry.get("probes", {})
    for key, answer in probes.items():
        if not still_answers(key, answer, argv=argv, box_lookup=box_lookup):
            return key
    return None


def load(vagrantfile: Path, *, argv: tuple[str, ...], has_plugin: bool, box_lookup: BoxLookup | None) -> Any:
    """The ProjectConfig kept for VAGRANTFILE, if every probe still answers the same; else None."""
    import logging

    from vmctl import paths

    log = logging.getLogger("vmctl.vagrantfile.cache")
    entry = read(vagrantfile, paths.vmctl_home(), has_plugin=has_plugin)
    if entry is None:
        return None
    changed = changed_probe(entry, argv=argv, box_lookup=box_lookup)
    if changed is not None:
        log.debug("evaluation cache: %s changed; evaluating %s again", changed, vagrantfile)
        return None
    try:
        config = pickle.loads(entry["config"])  # noqa: S301 - as above
    except (KeyError, TypeError, EOFError, pickle.UnpicklingError, AttributeError, ImportError, ValueError):
        return None
    log.debug("evaluation cache: %s unchanged (%d probes)", vagrantfile, len(entry.get("probes", {})))
    return config


def ssh_summary(config: Any) -> dict[str, Any]:
    """What `vmctl ssh` reads of the settings, in plain values: whether the Vagrantfile
    printed anything (shown on every command), and each machine's name, whether it is
    primary, and its config.ssh settings."""
    import dataclasses

    return {
        "messages": bool(config.messages),
        "machines": [
            {"name": m.name, "primary": m.primary,
             "ssh": {f.name: getattr(m.ssh, f.name) for f in dataclasses.fields(m.ssh)}}
            for m in config.machines
        ],
    }


def store(vagrantfile: Path, config: Any, probes: dict[Key, Any], *, has_plugin: bool) -> None:
    """Keep CONFIG for VAGRANTFILE. A cache that cannot be written is only a slower next command."""
    import logging
    from pathlib import Path

    from vmctl import paths
    from vmctl.errors import VmctlError
    from vmctl.state import write_atomic

    entry = {"format": FORMAT, "stamp": code_stamp(), "has_plugin": has_plugin,
             "vagrantfile": os.path.realpath(vagrantfile), "probes": probes,
             "ssh": ssh_summary(config),
             "config": pickle.dumps(config, protocol=pickle.HIGHEST_PROTOCOL)}
    path = Path(entry_path(vagrantfile, paths.vmctl_home()))
    try:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        write_atomic(path, pickle.dumps(entry, protocol=pickle.HIGHEST_PROTOCOL), mode=0o600)
    except (OSError, VmctlError) as exc:
        logging.getLogger("vmctl.vagrantfile.cache").debug("evaluation cache: not written: %s", exc)
