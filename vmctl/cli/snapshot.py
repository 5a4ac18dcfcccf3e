"""Commands: vmctl snapshot save | restore | list | delete | push | pop.

Thin: read the words as Vagrant does, lock the machines, call vmctl/machine/snapshots.py,
print. Vagrant's rule for the words (plugins/commands/snapshot/command/*.rb since 2.2.6):
`save`, `restore` and `delete` take `[NAME] SNAPSHOT`: the last word is always the
snapshot, a word before it the machine; with one word, every machine of the project.
(Vagrant 2.2.5 read a lone word as the machine as well, its #11139.) `list`, `push` and
`pop` take `[NAME]`. Every machine a command acts on is locked first and checked (the
snapshot exists, or is not taken) before any is changed, so a project is never left half
restored. The command functions import nothing heavy: `restore` is timed against `up`.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import typer

    from vmctl.machine import Machine


def _machines(command: str, words: list[str], *, takes_snapshot: bool) -> tuple[list[Machine], str | None, bool]:
    """The machines WORDS name (all of the project's when none), the snapshot name (the
    last word, for save/restore/delete), and whether a machine was named."""
    from vmctl.cli.common import project
    from vmctl.errors import UsageError

    most = 2 if takes_snapshot else 1
    least = 1 if takes_snapshot else 0
    if not least <= len(words) <= most:
        usage = f"vmctl snapshot {command} {'[NAME] SNAPSHOT' if takes_snapshot else '[NAME]'}"
        raise UsageError(f"expected {usage}", hint=f"see vmctl snapshot {command} --help")
    snapshot = words[-1] if takes_snapshot else None
    names = words[:-1] if takes_snapshot else words
    proj = project("snapshot", command, *words)
    return proj.machines(names), snapshot, bool(names)


def _created(machines: list[Machine], named: bool, emit: Any, why: str) -> list[Machine]:
    """The machines that exist; the others are skipped with a word (as Vagrant does),
    unless one was named, which is an error."""
    out = []
    for m in machines:
        if m.state is None:
            if named:
                m.require_state()
            emit(f"==> {m.name}: not created; {why}.")
            continue
        out.append(m)
    return out


@contextmanager
def _locked(machines: list[Machine]) -> Iterator[None]:
    """Every machine locked (each says "busy" if another command has it), in order."""
    with ExitStack() as stack:
        for m in machines:
            stack.enter_context(m.locked())
        yield


def save(words: list[str], *, force: bool) -> None:
    """Take a snapshot of machines: disks, and memory when they run."""
    from vmctl.cli.common import emitters
    from vmctl.errors import SnapshotError
    from vmctl.machine import snapshots

    emit, _ = emitters()
    machines, name, named = _machines("save", words, takes_snapshot=True)
    assert name is not None
    problem = snapshots.name_problem(name)
    if problem:
        raise SnapshotError(f"refusing the snapshot name {name!r}: {problem}")
    machines = _created(machines, named, emit, "it has no snapshot to take")
    with _locked(machines):
        if not force:
            taken = [m.name for m in machines if _has(m, name)]
            if taken:
                raise SnapshotError(
                    f"{'machine ' + taken[0] + ' already has' if len(taken) == 1 else 'machines ' + ', '.join(taken) + ' already have'}"
                    f" a snapshot named {name!r}",
                    hint="choose another name, or replace it with --force",
                )
        for m in machines:
            snapshots.save(m, name, force=force, emit=emit)


def _has(m: Machine, name: str) -> bool:
    from vmctl.machine import snapshots

    st = m.require_state()
    return snapshots.load_index(m, st).find(name) is not None


def _require_everywhere(machines: list[Machine], name: str, *, command: str, named: bool,
                        project_machines: list[str]) -> None:
    """Every machine has snapshot NAME, or an error naming those without it and what they
    have (restoring a name that does not exist lists the ones that do)."""
    from vmctl.errors import SnapshotError
    from vmctl.machine import snapshots

    lacking = [m for m in machines if not _has(m, name)]
    if not lacking:
        return
    have = {m.name: [s.name for s in snapshots.load_index(m, m.require_state()).live()] for m in lacking}
    if len(lacking) == 1:
        (only,) = have.values()
        message = f"machine {lacking[0].name} has no snapshot named {name!r}"
        hint = (f"its snapshots: {', '.join(only)}" if only else
                f"it has no snapshots (take one with vmctl snapshot save {lacking[0].name} NAME)")
    else:
        message = f"no snapshot named {name!r} on machines {', '.join(m.name for m in lacking)}"
        hint = "their snapshots: " + "; ".join(f"{k}: {', '.join(v) or 'none'}" for k, v in have.items())
    if not named and name in project_machines:
        hint += (f". As in Vagrant, one word is the snapshot; {name} is a machine: to name it, give "
                 f"the snapshot too (vmctl snapshot {command} {name} SNAPSHOT)")
    raise SnapshotError(message, hint=hint)


def restore(words: list[str], *, provision: bool | None, provision_with: str | None, start: bool) -> None:
    """Restore machines to a snapshot (memory too, when it has it: no reboot)."""
    from vmctl.cli.common import emitters, parse_provision_with
    from vmctl.machine import snapshots

    emit, emit_output = emitters()
    only = parse_provision_with(provision_with)
    machines, name, named = _machines("restore", words, takes_snapshot=True)
    assert name is not None
    every = [m.name for m in machines]
    machines = _created(machines, named, emit, "it has no snapshot to restore")
    if not machines:
        return
    _check_provision_with(machines, only)
    with _locked(machines):
        _require_everywhere(machines, name, command="restore", named=named, project_machines=every)
        for m in machines:
            snapshots.restore(m, name, provision=True if only else provision, only=only, start=start,
                              emit=emit, emit_output=emit_output)


def _check_provision_with(machines: list[Machine], only: set[str] | None) -> None:
    from vmctl.cli.machines import _check_provision_with as check

    check(machines, only)


def delete(words: list[str]) -> None:
    """Delete a snapshot of machines (its layer is merged, the chain stays short)."""
    from vmctl.cli.common import emitters
    from vmctl.machine import snapshots

    emit, _ = emitters()
    machines, name, named = _machines("delete", words, takes_snapshot=True)
    assert name is not None
    every = [m.name for m in machines]
    machines = _created(machines, named, emit, "it has no snapshot to delete")
    with _locked(machines):
        _require_everywhere(machines, name, command="delete", named=named, project_machines=every)
        for m in machines:
            snapshots.delete(m, name, emit=emit)


def push(words: list[str]) -> None:
    """Take a snapshot and push it on the machine's stack (`pop` restores it)."""
    from vmctl.cli.common import emitters
    from vmctl.machine import snapshots

    emit, _ = emitters()
    machines, _, named = _machines("push", words, takes_snapshot=False)
    machines = _created(machines, named, emit, "it has no state to push")
    name = snapshots.push_name()
    with _locked(machines):
        for m in machines:
            snapshots.save(m, name, force=False, emit=emit)


def pop(words: list[str], *, provision: bool | None, provision_with: str | None, start: bool,
        delete: bool) -> None:
    """Restore the last pushed snapshot (and delete it, unless --no-delete)."""
    from vmctl.cli.common import emitters, parse_provision_with
    from vmctl.machine import snapshots

    emit, emit_output = emitters()
    only = parse_provision_with(provision_with)
    machines, _, named = _machines("pop", words, takes_snapshot=False)
    machines = _created(machines, named, emit, "it has nothing pushed")
    _check_provision_with(machines, only)
    with _locked(machines):
        for m in machines:
            snap = snapshots.latest_push(m)
            if snap is None:
                emit(f"==> {m.name}: no pushed snapshot to pop (vmctl snapshot push saves one).")
                continue
            snapshots.restore(m, snap.name, provision=True if only else provision, only=only, start=start,
                              emit=emit, emit_output=emit_output, delete_after=delete)


def list_snapshots(words: list[str], *, as_json: bool) -> None:
    """List machines' snapshots: a table (tab-separated when not on a terminal), JSON, or
    Vagrant's machine-readable lines."""
    from vmctl import term
    from vmctl.cli.status import _machine_readable
    from vmctl.machine import snapshots

    mr = _machine_readable(as_json)
    machines, _, _ = _machines("list", words, takes_snapshot=False)
    found: list[tuple[Machine, list[dict[str, Any]] | None]] = []
    for m in machines:
        if m.state is None:
            found.append((m, None))
            continue
        if m.state is not None and snapshots.index_path(m).exists():
            _settle_if_pending(m)
        found.append((m, snapshots.describe(m)))
    if mr is not None:
        _list_machine_readable(mr, found)
    elif as_json:
        term.out_json({"machines": [{"name": m.name, "snapshots": snaps or []} for m, snaps in found]})
    else:
        rows = []
        for m, snaps in found:
            if snaps is None:
                term.info(f"==> {m.name}: not created.")
            for s in snaps or []:
                rows.append([m.name, s["name"], s["created"], "yes" if s["memory"] else "no",
                             term.human_bytes(s["size_bytes"]), s["parent"] or "-"])
        _table(["machine", "snapshot", "created", "memory", "size", "parent"], rows)
        if not rows and all(s is not None for _, s in found):
            term.info("no snapshots (take one with vmctl snapshot save NAME)")


def _settle_if_pending(m: Machine) -> None:
    """A command interrupted in the middle is settled first (it needs the lock; a
    machine another command is working on is listed as it is)."""
    from vmctl.errors import MachineError
    from vmctl.machine import snapshots

    st = m.require_state()
    if snapshots.load_index(m, st).pending is None:
        return
    try:
        with m.locked():
            pass
    except MachineError:
        return


def _table(columns: list[str], rows: list[list[str]]) -> None:
    """On a terminal, aligned columns; otherwise one line per snapshot, columns separated
    by a tab (names hold none), under a header: `cut -f2` takes the names."""
    from vmctl import term

    if sys.stdout.isatty() or term.machine_readable():
        term.table(columns, rows)
        return
    term.raw("\t".join(c.upper() for c in columns))
    for row in rows:
        term.raw("\t".join(row))


def _list_machine_readable(mr: Any, found: list[tuple[Machine, list[dict[str, Any]] | None]]) -> None:
    """Vagrant's lines (plugins/commands/snapshot/command/list.rb): per machine, its
    provider; not created: an info line; none: an output line and a detail line;
    otherwise an empty `==> NAME: ` output line and one detail line per snapshot."""
    for m, snaps in found:
        mr.provider(m.name)
        if snaps is None:
            mr.emit("ui", "info", f"==> {m.name}: VM not created. Moving on...", target=m.name)
        elif not snaps:
            mr.emit("ui", "output", f"==> {m.name}: No snapshots have been taken yet!", target=m.name)
            mr.emit("ui", "detail", f"    {m.name}: You can take a snapshot using `vmctl snapshot save`. "
                    "Once a snapshot is taken, you can list them using this command, and use commands "
                    "such as `vmctl snapshot restore` to go back to a certain snapshot.", target=m.name)
        else:
            mr.emit("ui", "output", f"==> {m.name}: ", target=m.name)
            for s in snaps:
                mr.emit("ui", "detail", s["name"], target=m.name)


def register(app: typer.Typer) -> None:
    import typer

    snapshot_app = typer.Typer(
        name="snapshot",
        help="Save, restore, list and delete snapshots of machines (disks, and memory when running).",
        no_args_is_help=True,
        add_completion=False,
        pretty_exceptions_enable=False,
        rich_markup_mode=None,
    )
    snapshot_words = typer.Argument(..., metavar="[NAME] SNAPSHOT", show_default=False,
                                    help="The snapshot, after the machine's NAME (default: every machine).")
    machine_word = typer.Argument(None, metavar="[NAME]", show_default=False,
                                  help="The machine (default: every machine of the project).")
    provision_opt = typer.Option(None, "--provision/--no-provision", show_default=False,
                                 help="Run provisioners after the restore (default: only `always` ones, as on up).")
    provision_with_opt = typer.Option(None, "--provision-with", metavar="x,y,z",
                                      help="Run only these provisioners (names or types) after the restore.")
    no_start_opt = typer.Option(False, "--no-start", help="Do not start the machine after the restore.")

    @snapshot_app.command("save")
    def save_command(words: list[str] = snapshot_words,
                     force: bool = typer.Option(False, "-f", "--force", help="Replace a snapshot of that name.")) -> None:
        """Take a snapshot: disks, and memory when the machine runs (it keeps running)."""
        save(words, force=force)

    @snapshot_app.command("restore")
    def restore_command(words: list[str] = snapshot_words, provision: bool | None = provision_opt,
                        provision_with: str | None = provision_with_opt, no_start: bool = no_start_opt) -> None:
        """Restore a snapshot: a running one continues where it was, a stopped one boots."""
        restore(words, provision=provision, provision_with=provision_with, start=not no_start)

    @snapshot_app.command("list")
    def list_command(words: list[str] | None = machine_word,
                     as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
        """List snapshots."""
        list_snapshots(words or [], as_json=as_json)

    @snapshot_app.command("delete")
    def delete_command(words: list[str] = snapshot_words) -> None:
        """Delete a snapshot (its files are merged away)."""
        delete(words)

    @snapshot_app.command("push")
    def push_command(words: list[str] | None = machine_word) -> None:
        """Take a snapshot and push it on a stack; `pop` restores it."""
        push(words or [])

    @snapshot_app.command("pop")
    def pop_command(words: list[str] | None = machine_word, provision: bool | None = provision_opt,
                    provision_with: str | None = provision_with_opt, no_start: bool = no_start_opt,
                    no_delete: bool = typer.Option(False, "--no-delete", help="Keep the snapshot after restoring it.")) -> None:
        """Restore the last pushed snapshot, then delete it."""
        pop(words or [], provision=provision, provision_with=provision_with, start=not no_start,
            delete=not no_delete)

    app.add_typer(snapshot_app, name="snapshot")
