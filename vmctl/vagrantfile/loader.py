"""Evaluate a project's Vagrantfile (and its boxes' Vagrantfiles) into a ProjectConfig.

The order is Vagrant's: the file runs top to bottom, collecting `Vagrant.configure`
blocks; those run with the project's `config` layer. Then, per machine: its `define`
blocks run with a fresh layer; the box named by those layers has its own Vagrantfile
evaluated as the lowest layer; provider blocks run last (libvirt's with a real
`override` layer, the other providers' only recorded); the layers are merged.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vmctl.errors import ConfigError
from vmctl.vagrantfile.config import (
    AnyNamespace,
    CloudInitRec,
    ConfigRoot,
    DiskRec,
    FolderRec,
    Ignored,
    NetworkRec,
    ProviderRec,
    ProvisionerRec,
    TriggerRec,
    merged_option_nodes,
)
from vmctl.vagrantfile.interpreter import Break, Interpreter, Limits, Next, Return
from vmctl.vagrantfile.libvirt import LibvirtConfig, merge_libvirt
from vmctl.vagrantfile.model import ProjectConfig
from vmctl.vagrantfile.recording import Recorder, StoreLookup, box_store
from vmctl.vagrantfile.values import Abort, LimitError, RubyError

BoxLookup = Callable[[str, "str | None"], "Path | None"]


@dataclass
class Merged:
    """A machine's settings after merging its layers (still Ruby values, with nodes)."""

    vm: dict[str, tuple[Any, Any]] = field(default_factory=dict)
    ssh: dict[str, tuple[Any, Any]] = field(default_factory=dict)
    ignition: dict[str, tuple[Any, Any]] = field(default_factory=dict)
    libvirt: dict[str, tuple[Any, Any]] = field(default_factory=dict)
    networks: dict[str, NetworkRec] = field(default_factory=dict)
    folders: dict[str, FolderRec] = field(default_factory=dict)
    provisioners: list[ProvisionerRec] = field(default_factory=list)
    triggers: list[TriggerRec] = field(default_factory=list)
    providers: list[ProviderRec] = field(default_factory=list)
    cloud_inits: list[CloudInitRec] = field(default_factory=list)
    ignored: list[Ignored] = field(default_factory=list)
    disks: list[DiskRec] = field(default_factory=list)


def merge_layers(layers: list[ConfigRoot]) -> Merged:
    out = Merged()
    for layer in layers:
        vm = layer.vm
        out.vm.update(vm.values)
        out.ssh.update(layer.ssh.values)
        out.ignition.update(layer.ignition.values)
        for key, net in vm.networks.items():
            out.networks[key] = net  # same id: the later layer's replaces the earlier
        for key, folder in vm.folders.items():
            previous = out.folders.get(key)
            if previous is not None:
                out.folders[key] = FolderRec({**previous.options, **folder.options}, folder.node,
                                             merged_option_nodes(previous, folder))
            else:
                out.folders[key] = folder
        out.provisioners = _merge_provisioners(out.provisioners, vm.provisioners)
        out.triggers.extend(layer.trigger.triggers)
        out.providers.extend(vm.providers)
        out.cloud_inits.extend(vm.cloud_inits)  # parts add up, as Vagrant's list does
        out.ignored.extend(layer.ignored)
        for disk in vm.disks:  # a later layer's disk of the same name replaces the earlier
            out.disks = [d for d in out.disks if d.options.get("name") != disk.options.get("name")
                         or disk.options.get("name") is None] + [disk]
    return out


def _merge_provisioners(earlier: list[ProvisionerRec], later: list[ProvisionerRec]) -> list[ProvisionerRec]:
    """Vagrant's rule: a named provisioner in a later layer overrides (and merges with) the
    one of the same name, taking the later position unless `preserve_order: true`."""
    pending = list(later)
    result: list[ProvisionerRec] = []
    for prov in earlier:
        match = next((p for p in pending if prov.name is not None and p.name == prov.name), None)
        if match is None:
            result.append(prov)
            continue
        merged = ProvisionerRec(match.name, match.type, {**prov.options, **match.options}, match.node,
                                match.preserve_order, merged_option_nodes(prov, match))
        index = pending.index(match)
        if match.preserve_order:
            result.append(merged)
            del pending[index]
        else:
            pending[index] = merged
    return result + pending


@contextmanager
def _stack_room(extra: int) -> Iterator[None]:
    """Room for the evaluator's recursion; deep input still ends in a LimitError."""
    old = sys.getrecursionlimit()
    sys.setrecursionlimit(max(old, extra))
    try:
        yield
    finally:
        sys.setrecursionlimit(old)


def _note_box_store(recorder: Recorder, root: str) -> None:
    """The box store's fingerprint, taken before each lookup (recording.StoreLookup): if it
    changed between two lookups of one evaluation, the probe can never answer the same."""
    now = box_store(root)
    if recorder.note("boxstore", root, now) != now:
        recorder.probes[("boxstore", root)] = ("changed during the evaluation",)


class ProjectLoader:
    def __init__(
        self,
        vagrantfile: Path,
        *,
        box_vagrantfile: BoxLookup | None,
        env: Mapping[str, str],
        argv: Sequence[str],
        has_plugin: bool,
        limits: Limits,
        recorder: Recorder | None = None,
    ) -> None:
        self.vagrantfile = vagrantfile
        self.project_dir = vagrantfile.parent
        self.box_lookup = box_vagrantfile
        try:
            cwd = Path.cwd()
        except OSError:
            cwd = self.project_dir
        self.ip = Interpreter(
            project_dir=self.project_dir, env=env, argv=list(argv), has_plugin=has_plugin,
            limits=limits, cwd=cwd, recorder=recorder,
        )
        self.box_layers: dict[tuple[str, str | None], ConfigRoot | None] = {}

    def load(self) -> ProjectConfig:
        from vmctl.vagrantfile.resolve import resolve_machine

        ip = self.ip
        ip.loaded.add(self.vagrantfile.resolve())
        ip.run_file(self.vagrantfile, self.vagrantfile.name)
        root = ConfigRoot()
        for proc, _node in list(ip.configure_blocks):
            ip.call_configure_block(proc, [root])
        defines = list(root.vm.defines.values())
        machines = []
        for define in defines or [None]:
            layer = ConfigRoot(allow_define=False)
            if define is not None:
                for block in define.blocks:
                    ip.call_configure_block(block, [layer])
            merged = self.machine_settings(root, layer)
            name = define.name if define is not None else "default"
            options = define.options if define is not None else {}
            machines.append(resolve_machine(ip, name, options, merged, define.node if define else None))
        return ProjectConfig(
            vagrantfile=self.vagrantfile,
            machines=tuple(machines),
            warnings=tuple(ip.warnings),
            messages=tuple(ip.messages),
        )

    def machine_settings(self, root: ConfigRoot, define: ConfigRoot) -> Merged:
        base = merge_layers([root, define])
        box_key = self._box_key(base)
        for _ in range(2):  # an override may name another box: load that box's Vagrantfile
            box_layer = self.box_layer(box_key, base)
            layers = [box_layer, root, define] if box_layer is not None else [root, define]
            before = merge_layers(layers)
            libvirt, override = self.run_providers(before.providers)
            merged = merge_layers([*layers, override])
            merged.libvirt = libvirt
            new_key = self._box_key(merged)
            if new_key == box_key:
                break
            box_key = new_key
        return merged

    @staticmethod
    def _box_key(merged: Merged) -> tuple[str, str | None] | None:
        box = merged.vm.get("box", (None, None))[0]
        if not box:
            return None
        version = merged.vm.get("box_version", (None, None))[0]
        return (box, version)

    def box_layer(self, key: tuple[str, str | None] | None, merged: Merged) -> ConfigRoot | None:
        if key is None or self.box_lookup is None:
            return None
        if merged.vm.get("ignore_box_vagrantfile", (False, None))[0]:
            return None
        if key in self.box_layers:
            return self.box_layers[key]
        ip = self.ip
        box, version = key
        if isinstance(self.box_lookup, StoreLookup):
            _note_box_store(ip.recorder, self.box_lookup.root)
        try:
            path = self.box_lookup(box, version)
            ip.recorder.note("box", (box, version), str(path) if path is not None else None)
        except Exception as exc:  # the box store's failure must surface as a config error
            message = getattr(exc, "message", None) or str(exc) or type(exc).__name__
            raise ConfigError(
                f"could not look up the Vagrantfile of box {box}: {message}",
                file=self.vagrantfile.name,
            ) from None
        layer = None
        if path is not None:
            # Settings made in the box's folder are held to the rules for boxes (resolve.py).
            ip.box_dirs[Path(path).resolve().parent] = box
            layer = self.evaluate_box_file(Path(path))
        self.box_layers[key] = layer
        return layer

    def evaluate_box_file(self, path: Path) -> ConfigRoot:
        ip = self.ip
        saved = ip.configure_blocks
        ip.configure_blocks = []
        # A box may add methods and constants but not replace the project's: the project's
        # own helpers must keep meaning what the project wrote.
        project_methods, project_constants = dict(ip.methods), dict(ip.constants)
        try:
            from vmctl.vagrantfile.inputs import display_path

            ip.run_file(path, display_path(ip, path))
            blocks = ip.configure_blocks
        finally:
            ip.configure_blocks = saved
            ip.methods.update(project_methods)
            ip.constants.update(project_constants)
        layer = ConfigRoot(allow_define=False)
        for proc, _node in blocks:
            ip.call_configure_block(proc, [layer])
        return layer

    def run_providers(self, providers: list[ProviderRec]) -> tuple[dict[str, tuple[Any, Any]], ConfigRoot]:
        ip = self.ip
        override = ConfigRoot(allow_define=False)
        blocks = []
        for rec in providers:
            if rec.block is None:
                continue
            if rec.name == "libvirt":
                # Each block fills a fresh object; they merge as vagrant-libvirt merges them.
                libvirt = LibvirtConfig(override)
                ip.call_configure_block(rec.block, [libvirt, override])
                blocks.append(libvirt.collected())
                continue
            self.run_other_provider(rec, override)
        return merge_libvirt(blocks), override

    def run_other_provider(self, rec: ProviderRec, override: ConfigRoot) -> None:
        """Blocks for VirtualBox, VMware, ...: evaluated so that their settings are
        recorded, never applied; what fails inside them is only a warning."""
        ip = self.ip
        assert rec.block is not None
        recorder = AnyNamespace(override, rec.name, plugin=False, warn=False)
        dummy = AnyNamespace(override, f"{rec.name}.override", plugin=False, warn=False)
        before = len(override.ignored)
        ip.inert += 1
        try:
            ip.call_configure_block(rec.block, [recorder, dummy])
        except LimitError:
            raise
        except (ConfigError, RubyError, Abort) as exc:
            ip.warn(
                f"the {rec.name} provider block could not be evaluated and is ignored: "
                f"{getattr(exc, 'message', exc)}",
                rec.node,
            )
        finally:
            ip.inert -= 1
        names = sorted({i.setting.split(".", 1)[-1].split("[")[0] for i in override.ignored[before:]
                        if i.setting.startswith(rec.name)})
        if names:
            ip.warn(f"settings for the {rec.name} provider are not used by vmctl: {', '.join(names)} (ignored)",
                    rec.node)


def evaluate_project(
    vagrantfile: Path,
    *,
    box_vagrantfile: BoxLookup | None = None,
    env: Mapping[str, str] | None = None,
    argv: Sequence[str] = (),
    has_plugin: bool = True,
    limits: Limits | None = None,
    recorder: Recorder | None = None,
) -> ProjectConfig:
    """`load_project` in this process, with the evaluation bounds as a parameter (tests use
    small ones); RECORDER, if given, collects what the evaluation read (recording.py)."""
    vagrantfile = Path(os.path.abspath(vagrantfile))
    display = vagrantfile.name
    loader: ProjectLoader | None = None
    try:
        loader = ProjectLoader(
            vagrantfile, box_vagrantfile=box_vagrantfile,
            env=os.environ if env is None else env, argv=argv, has_plugin=has_plugin,
            limits=limits or Limits(), recorder=recorder,
        )
        with _stack_room(20_000):
            return loader.load()
    except ConfigError:
        raise
    except RubyError as exc:
        file, line, source_line = exc.location or (display, None, None)
        if getattr(exc, "raised", False):
            message = f"Vagrantfile aborted: {exc.message}"
        else:
            message = f"{exc.message} ({exc.cls})"
        raise ConfigError(message, file=file, line=line, source_line=source_line) from None
    except Abort as exc:
        file, line, source_line = getattr(exc, "location", None) or (display, None, None)
        raise ConfigError(f"Vagrantfile aborted: {exc.message}", file=file, line=line,
                          source_line=source_line) from None
    except (Next, Break, Return) as exc:
        word = {Next: "next", Break: "break", Return: "return"}[type(exc)]
        raise ConfigError(f"`{word}` used outside of a block or method", file=display) from None
    except RecursionError:
        raise LimitError("evaluation stopped: the code is nested or recursive too deeply", file=display) from None
    except MemoryError:
        raise LimitError("evaluation stopped: out of memory", file=display) from None
    except Exception as exc:  # a bug in vmctl, not in the Vagrantfile: still one clear error
        raise ConfigError(
            f"vmctl could not evaluate this Vagrantfile (internal error: {type(exc).__name__}: {exc})",
            file=display,
            hint="please report this with the Vagrantfile; run with --debug for the traceback",
        ) from exc
