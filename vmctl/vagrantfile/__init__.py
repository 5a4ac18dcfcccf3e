"""The machine file: read a Vagrantfile without executing Ruby.

    load_project(path) -> ProjectConfig   the resolved settings of every machine

The file is parsed with tree-sitter's Ruby grammar and a safe subset of Ruby is evaluated
in Python (see docs/vagrantfile.md). Every problem is a ConfigError (or its subclass
UnsupportedConstruct) naming the file and line; nothing else escapes.

    syntax       tree-sitter -> a small tree of Nodes
    values       Ruby values (Symbol, Range, Proc, ...) and Ruby-level errors
    interpreter  evaluates the tree, with bounds on steps, depth, size and time
    builtins     methods of String, Integer, Array, Hash, Range, ...
    host         Kernel, File, Dir, ENV, YAML, JSON, Vagrant, ...; what is refused
    config       the objects the Vagrantfile configures (config.vm, libvirt, ...)
    loader       the evaluation order and the merging of layers, as in Vagrant
    resolve      merged settings -> the model's dataclasses
    model        the frozen dataclasses the rest of vmctl reads
"""

from __future__ import annotations

import os

TYPE_CHECKING = False  # typing itself costs `vmctl ssh`'s fast path a few milliseconds
if TYPE_CHECKING:
    from collections.abc import Callable, Mapping, Sequence
    from pathlib import Path
    from typing import Any

    from vmctl.vagrantfile.model import MachineConfig, ProjectConfig, machine_json

__all__ = ["MachineConfig", "ProjectConfig", "load_project", "machine_json"]


def __getattr__(name: str) -> Any:
    """The model's names, imported when first asked for: `vmctl ssh`'s fast path reads the
    evaluation cache's probes (recording.py, cache.py) without the model's dataclasses."""
    if name in ("MachineConfig", "ProjectConfig", "machine_json"):
        from vmctl.vagrantfile import model

        return getattr(model, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def load_project(
    vagrantfile: Path,
    *,
    box_vagrantfile: Callable[[str, str | None], Path | None] | None = None,
    env: Mapping[str, str] | None = None,
    argv: Sequence[str] = (),
    has_plugin: bool = True,
) -> ProjectConfig:
    """Evaluate VAGRANTFILE (and the Vagrantfiles of the boxes it names) into settings, in a
    child process under CPU-time, memory and wall-clock limits (sandbox.py).

    box_vagrantfile(name, version_constraint) returns the installed box's Vagrantfile or
    None; env defaults to os.environ (`ENV[...] =` writes go to an overlay only); argv
    is what the Vagrantfile sees as ARGV, in Vagrant's words, e.g. ("up",) or
    ("ssh", "core-01"); has_plugin is what `Vagrant.has_plugin?` answers.

    With the real environment, the result is kept (cache.py) and used again while
    everything the evaluation read still reads the same.
    """
    from vmctl.vagrantfile import cache

    use_cache = env is None and cache.enabled()
    if use_cache:
        kept = cache.load(vagrantfile, argv=tuple(argv), has_plugin=has_plugin, box_lookup=box_vagrantfile)
        if kept is not None:
            return kept  # type: ignore[no-any-return]

    from vmctl.vagrantfile.interpreter import Limits
    from vmctl.vagrantfile.loader import evaluate_project
    from vmctl.vagrantfile.recording import Recorder
    from vmctl.vagrantfile.sandbox import run_bounded

    limits = Limits(seconds=evaluation_seconds())

    def evaluate() -> tuple[ProjectConfig, dict]:
        recorder = Recorder()
        config = evaluate_project(vagrantfile, box_vagrantfile=box_vagrantfile, env=env, argv=argv,
                                  has_plugin=has_plugin, limits=limits, recorder=recorder)
        return config, recorder.probes

    config, probes = run_bounded(evaluate, seconds=limits.seconds, what=os.path.basename(vagrantfile))
    if use_cache:
        cache.store(vagrantfile, config, probes, has_plugin=has_plugin)
    return config


def has_plugin_setting() -> bool:
    """What `Vagrant.has_plugin?` answers: true unless VMCTL_HAS_PLUGIN=0."""
    return os.environ.get("VMCTL_HAS_PLUGIN", "1") != "0"


def evaluation_seconds() -> float:
    """The time bound of one evaluation: VMCTL_EVAL_SECONDS (1 to 600), else 10. Set by the
    user only: a Vagrantfile's `ENV[...] =` never reaches the environment."""
    try:
        return min(600.0, max(1.0, float(os.environ.get("VMCTL_EVAL_SECONDS", "10"))))
    except ValueError:
        return 10.0
