"""Commands: vmctl box add | list | remove | build | outdated | update | repackage | prune.

Thin: parse, call vmctl.boxes, print. Results go to stdout; progress and messages to stderr.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

box_app = typer.Typer(
    name="box",
    help="Manage boxes: add, list, remove, build.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)


PROVIDER = typer.Option("--provider", metavar="NAME", help="The provider: libvirt (vmctl's only one).")


@box_app.command("add")
def add(
    words: Annotated[list[str], typer.Argument(
        metavar="[NAME] SOURCE", show_default=False,
        help="A .box file or a box catalog JSON: a path, file://, http:// or https:// URL; "
        "before it, the box's name (Vagrant's `box add NAME URL`, like --name).")],
    name: Annotated[str | None, typer.Option("--name", help="The box's name (required for a .box file).")] = None,
    box_version: Annotated[
        str | None,
        typer.Option("--box-version", help='Version constraint for a catalog, e.g. ">= 1.2, < 2".'),
    ] = None,
    checksum: Annotated[str | None, typer.Option("--checksum", help="Expected checksum of the box file (hex).")] = None,
    checksum_type: Annotated[
        str | None,
        typer.Option("--checksum-type", help="sha256, sha512, sha384, sha1 or md5 (inferred from the length if omitted)."),
    ] = None,
    force: Annotated[bool, typer.Option("--force", "-f", help="Replace the box if that version is installed.")] = False,
    provider: Annotated[str | None, PROVIDER] = None,
    insecure: Annotated[bool, typer.Option("--insecure", help="Do not verify the server's TLS certificate (not recommended).")] = False,
    cacert: Annotated[str | None, typer.Option("--cacert", metavar="FILE", help="A CA bundle to trust for the download.")] = None,
    capath: Annotated[str | None, typer.Option("--capath", metavar="DIR", help="A folder of CA certificates to trust.")] = None,
    cert: Annotated[str | None, typer.Option("--cert", metavar="FILE", help="A client certificate (PEM) for the download.")] = None,
) -> None:
    """Download, verify and install a box: a .box file or catalog (path or URL), or a box
    name (owner/box) looked up on the registry (VAGRANT_SERVER_URL)."""
    from vmctl import environment, term
    from vmctl.boxes import add_box

    environment.require_provider(provider)
    if len(words) > 2 or (len(words) == 2 and name is not None):
        from vmctl.errors import UsageError

        raise UsageError("box add takes SOURCE, or NAME and SOURCE (or --name NAME and SOURCE)",
                         hint="e.g. vmctl box add vmctl/tiny ./tiny.box")
    if len(words) == 2:
        name = words[0]
    source = words[-1]
    box = add_box(
        source,
        name=name,
        version_constraint=box_version,
        checksum=checksum,
        checksum_type=checksum_type,
        force=force,
        progress=term.Progress,
        notify=term.info,
        options=_fetch_options(insecure, cacert or capath, cert),
    )
    term.out(f"added box {box.name} {box.version} ({box.provider})")


@box_app.command("list")
def list_(
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    box_info: Annotated[bool, typer.Option("-i", "--box-info", help="Show the boxes' own information (their info.json).")] = False,
) -> None:
    """List installed boxes."""
    from vmctl import term
    from vmctl.boxes import list_boxes

    boxes = list_boxes()
    if term.machine_readable():
        if as_json:
            from vmctl.errors import UsageError

            raise UsageError("--json and --machine-readable cannot be used together",
                             hint="choose one of the two output formats")
        _list_machine_readable(boxes, box_info)
        return
    if as_json:
        term.out_json(
            {
                "boxes": [
                    {"name": b.name, "version": b.version, "provider": b.provider, "size_bytes": b.size_bytes,
                     "disks": [{"path": str(path.relative_to(b.dir)), "format": fmt} for path, fmt in b.disks],
                     **({"info": _info(b)} if box_info else {})}
                    for b in boxes
                ]
            }
        )
        return
    if boxes and box_info:
        width = max(len(b.name) for b in boxes)
        for b in boxes:
            term.out(f"{b.name.ljust(width)} ({b.provider}, {b.version})")
            for key, value in _info(b).items():
                term.out(f"  - {key}: {value}")
        return
    if not boxes:
        term.info("no boxes installed")
        term.info("hint: add one with `vmctl box add SOURCE`, or build one with `vmctl box build tiny --add`")
        return
    term.table(
        ["name", "version", "provider", "size"],
        [[b.name, b.version, b.provider, term.human_bytes(b.size_bytes)] for b in boxes],
    )


def _info(box: Any) -> dict[str, Any]:
    """The box's own information (info.json in the box, as Vagrant's box list -i shows it)."""
    import json

    try:
        data = json.loads((box.dir / "info.json").read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _list_machine_readable(boxes: list[Any], box_info: bool) -> None:
    """Vagrant's lines: for each box, a `ui,info` line for people, then box-name,
    box-provider, box-version, box-architecture and one box-info line per info.json key."""
    from vmctl.cli import machine_readable as mr

    if not boxes:
        mr.emit("ui", "warn", "There are no installed boxes! Use `vmctl box add` to add some.")
        return
    width = max(len(b.name) for b in boxes)
    for b in boxes:
        mr.emit("ui", "info", f"{b.name.ljust(width)} ({b.provider}, {b.version})")
        mr.emit("box-name", b.name)
        mr.emit("box-provider", b.provider)
        mr.emit("box-version", b.version)
        mr.emit("box-architecture", b.metadata.get("architecture") or "n/a")
        for key, value in _info(b).items():
            mr.emit("box-info", key, value)
            if box_info:
                mr.emit("ui", "info", f"  - {key}: {value}")


@box_app.command("remove")
def remove(
    name: Annotated[str, typer.Argument(help="The box's name.")],
    box_version: Annotated[str | None, typer.Option("--box-version", help="The version to remove.")] = None,
    all_versions: Annotated[bool, typer.Option("--all", help="Remove every installed version.")] = False,
    force: Annotated[bool, typer.Option("--force", "-f", help="Remove even while machines use it.")] = False,
    provider: Annotated[str | None, PROVIDER] = None,
) -> None:
    """Remove an installed box."""
    from vmctl import environment, term
    from vmctl.boxes import remove_box
    from vmctl.errors import UsageError

    environment.require_provider(provider)
    if box_version is not None and all_versions:
        raise UsageError("--box-version and --all cannot be used together")
    for box in remove_box(name, version=box_version, all_versions=all_versions, force=force, release=release_pool_volumes):
        term.out(f"removed box {box.name} {box.version} ({box.provider})")


def release_pool_volumes(box: Any, in_use: bool) -> None:
    """The box's volumes in libvirt storage pools (daemon URIs) go with it, unless a
    machine's disk still stands on them (--force)."""
    from vmctl import storage, term
    from vmctl.boxes import pools

    uploaded = pools.entries(box)
    if not uploaded:
        return
    if in_use:
        for e in uploaded:
            term.warn(f"kept the volume {e['volume']} in pool {e['pool']} at {e['uri']}: machines still use it "
                      f"(remove it after them with: virsh -c {e['uri']} vol-delete --pool {e['pool']} {e['volume']})")
        return
    for e, problem in storage.remove_box_volumes(box):
        where = f"the volume {e['volume']} in the storage pool {e['pool']} at {e['uri']}"
        if problem is None:
            term.info(f"removed {where}")
        elif isinstance(problem, storage.Kept):
            term.warn(f"kept {where}: {problem} (another VMCTL_HOME's or user's machines share it; their box "
                      "remove removes it once none stands on it)")
        else:
            term.warn(f"could not remove {where}: {problem} (remove it by hand: virsh -c {e['uri']} vol-delete "
                      f"--pool {e['pool']} {e['volume']})")


@box_app.command("build")
def build(
    recipe: Annotated[str, typer.Argument(help="A recipe folder (e.g. boxes/tiny) or a recipe shipped with vmctl (e.g. tiny).")],
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Where to write NAME-VERSION.box and NAME.json.")] = None,
    add_it: Annotated[bool, typer.Option("--add", help="Install the built box.")] = False,
    force: Annotated[bool, typer.Option("--force", "-f", help="With --add: replace a different build of that version.")] = False,
) -> None:
    """Build a box from a recipe (mmdebstrap and Debian's packages)."""
    from vmctl import term
    from vmctl.boxes.build import build_recipe

    result = build_recipe(recipe, output, notify=term.info)
    term.out(f"built box {result.name} {result.version}")
    term.out(f"  box:     {result.box_path}")
    term.out(f"  catalog: {result.catalog_path}")
    if add_it:
        from vmctl.boxes import add_box
        from vmctl.boxes.store import installed_same_build

        if not force and installed_same_build(Path(result.catalog_path)):
            term.out(f"box {result.name} {result.version} is already installed (same build)")
            return
        box = add_box(str(result.catalog_path), force=force, progress=term.Progress, notify=term.info)
        term.out(f"added box {box.name} {box.version} ({box.provider})")


@box_app.command("outdated")
def outdated(
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Check installed boxes against their catalogs for newer versions."""
    from vmctl import term
    from vmctl.boxes import check_outdated

    results = check_outdated()
    if as_json:
        term.out_json(
            {
                "boxes": [
                    {"name": r.box.name, "version": r.box.version, "latest": r.latest,
                     "outdated": r.outdated, "error": r.error}
                    for r in results
                ]
            }
        )
        return
    if not results:
        term.info("no boxes installed")
        return
    rows = []
    for r in results:
        status = r.error or ("newer version available" if r.outdated else "up to date")
        rows.append([r.box.name, r.box.version, r.latest or "-", status])
    term.table(["name", "installed", "latest", "status"], rows)


@box_app.command("update")
def update(
    box: Annotated[str | None, typer.Option("--box", metavar="NAME", help="Update this box, not the project's.")] = None,
    provider: Annotated[str | None, PROVIDER] = None,
    insecure: Annotated[bool, typer.Option("--insecure", help="Do not verify the server's TLS certificate.")] = False,
    cacert: Annotated[str | None, typer.Option("--cacert", metavar="FILE", help="A CA bundle to trust.")] = None,
    cert: Annotated[str | None, typer.Option("--cert", metavar="FILE", help="A client certificate (PEM).")] = None,
) -> None:
    """Install newer versions of the project's boxes (or of --box NAME) from their catalogs.

    Machines keep the version they were made from; new machines get the new one.
    """
    from vmctl import environment, term
    from vmctl.boxes import update_box

    environment.require_provider(provider)
    options = _fetch_options(insecure, cacert, cert)
    if box is not None:
        wanted: list[tuple[str, str | None, str | None, str | None]] = [(box, None, None, None)]
    else:
        from vmctl.cli.common import project

        seen: set[tuple[str, str | None]] = set()
        wanted = []
        for m in project("box", "update").config.machines:
            if m.box and (m.box, m.box_version) not in seen:
                seen.add((m.box, m.box_version))
                wanted.append((m.box, m.box_version, m.box_url, m.box_download.server_url))
        if not wanted:
            term.info("no machine of this project names a box")
            return
    for name, constraint, source, server in wanted:
        result = update_box(name, constraint, source=source, options=options,
                            server=_server(server), progress=term.Progress, notify=term.info)
        if result.added is not None:
            term.out(f"updated box {name}: {result.installed} -> {result.added.version}")
        else:
            term.out(f"box {name} ({result.installed or 'not installed'}): {result.note}")


@box_app.command("repackage")
def repackage(
    name: Annotated[str, typer.Argument(help="The box's name.")],
    provider: Annotated[str, typer.Argument(help="Its provider: libvirt.")],
    version: Annotated[str, typer.Argument(help="Its version.")],
    output: Annotated[Path, typer.Option("--output", "-o", help="The box file to write.")] = Path("package.box"),
) -> None:
    """Write an installed box back into a .box file (package.box in this folder)."""
    from vmctl import environment, term
    from vmctl.boxes import repackage_box

    environment.require_provider(provider)
    path = repackage_box(name, version, output)
    term.out(f"wrote {path}")


def _fetch_options(insecure: bool, ca: str | None, cert: str | None) -> Any:
    from vmctl import term
    from vmctl.boxes.download import FetchOptions

    if insecure:
        term.warn("--insecure: the server's TLS certificate is NOT verified; anyone on the network path "
                  "can hand you another box")
    return FetchOptions(ca_cert=str(Path(ca).absolute()) if ca else None,
                        client_cert=str(Path(cert).absolute()) if cert else None, insecure=insecure)


def _server(configured: str | None) -> str:
    from vmctl.boxes.store import server_url

    return server_url(configured)


@box_app.command("prune")
def prune(
    dry_run: Annotated[bool, typer.Option("--dry-run", "-n", help="Only say what would be removed.")] = False,
    provider: Annotated[str | None, PROVIDER] = None,
) -> None:
    """Remove old versions of boxes (keeping the newest and any a machine uses)."""
    from vmctl import environment, term
    from vmctl.boxes import prune_boxes

    environment.require_provider(provider)
    removed = prune_boxes(dry_run=dry_run, release=release_pool_volumes)
    verb = "would remove" if dry_run else "removed"
    for box in removed:
        term.out(f"{verb} box {box.name} {box.version} ({box.provider})")
    if not removed:
        term.info("nothing to prune")


def register(app: typer.Typer) -> None:
    app.add_typer(box_app, name="box")
