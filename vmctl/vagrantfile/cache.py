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
"""

from __future__ import annotations

import hashlib
import logging
import os
import pickle
from pathlib import Path
from typing import Any

from vmctl import __version__, paths
from vmctl.vagrantfile.recording import BoxLookup, Key, still_answers

log = logging.getLogger("vmctl.vagrantfile.cache")

FORMAT = 1
_CODE = Path(__file__).resolve().parent


def enabled() -> bool:
    return os.environ.get("VMCTL_EVAL_CACHE", "1") != "0"


def _entry_path(vagrantfile: Path) -> Path:
    key = hashlib.sha256(os.fsencode(os.path.realpath(vagrantfile))).hexdigest()[:32]
    return paths.vmctl_home() / "cache" / "evaluations" / f"{key}.pickle"


def _code_stamp() -> str:
    """The evaluator's own version: a change to its code (or to vmctl) is a new stamp."""
    parts = [__version__]
    for folder in (_CODE, _CODE.parent / "untrusted.py"):
        files = sorted(folder.glob("*.py")) if folder.is_dir() else [folder]
        for f in files:
            try:
                st = f.stat()
            except OSError:
                continue
            parts.append(f"{f.name}:{st.st_size}:{st.st_mtime_ns}")
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()


def load(vagrantfile: Path, *, argv: tuple[str, ...], has_plugin: bool, box_lookup: BoxLookup | None) -> Any:
    """The ProjectConfig kept for VAGRANTFILE, if every probe still answers the same; else None."""
    path = _entry_path(vagrantfile)
    try:
        with path.open("rb") as f:
            entry = pickle.load(f)  # noqa: S301 - written by vmctl into the user's own VMCTL_HOME
    except (OSError, EOFError, pickle.UnpicklingError, AttributeError, ImportError, ValueError, TypeError):
        return None
    if not isinstance(entry, dict) or entry.get("format") != FORMAT:
        return None
    if entry.get("stamp") != _code_stamp() or entry.get("has_plugin") != has_plugin:
        return None
    if entry.get("vagrantfile") != os.path.realpath(vagrantfile):
        return None
    probes: dict[Key, Any] = entry.get("probes", {})
    for key, answer in probes.items():
        if not still_answers(key, answer, argv=argv, box_lookup=box_lookup):
            log.debug("evaluation cache: %s changed; evaluating %s again", key, vagrantfile)
            return None
    log.debug("evaluation cache: %s unchanged (%d probes)", vagrantfile, len(probes))
    return entry.get("config")


def store(vagrantfile: Path, config: Any, probes: dict[Key, Any], *, has_plugin: bool) -> None:
    """Keep CONFIG for VAGRANTFILE. A cache that cannot be written is only a slower next command."""
    from vmctl.errors import VmctlError
    from vmctl.state import write_atomic

    entry = {"format": FORMAT, "stamp": _code_stamp(), "has_plugin": has_plugin,
             "vagrantfile": os.path.realpath(vagrantfile), "probes": probes, "config": config}
    path = _entry_path(vagrantfile)
    try:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        write_atomic(path, pickle.dumps(entry, protocol=pickle.HIGHEST_PROTOCOL), mode=0o600)
    except (OSError, VmctlError) as exc:
        log.debug("evaluation cache: not written: %s", exc)
