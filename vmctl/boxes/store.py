"""The box store: installed boxes under VMCTL_HOME, adding and removing them.

    VMCTL_HOME/boxes/
      vmctl-VAGRANTSLASH-tiny/          the box name, "/" escaped as Vagrant does
        1.0.0/libvirt/
          metadata.json  box.img  Vagrantfile  vmlinuz  initrd.img ...   what the box carries
          vmctl-box.json                 vmctl's record: source, checksums, date added
      .staging-XXXX/                     a box being installed (removed on any failure)

A box is installed atomically: it is unpacked into a staging folder on the same filesystem,
checked (members, metadata.json, ``qemu-img info`` of box.img), and renamed into place; on any
failure or Ctrl-C the staging folder is deleted and nothing remains. Installs and removals
hold the ``boxes`` lock; stale staging folders (a killed process) are cleaned under it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import json
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from vmctl import paths
from vmctl.boxes import archive, download
from vmctl.boxes.catalog import Catalog, newest_version, parse_catalog, select_version
from vmctl.boxes.download import Checksum, Fetched, Notify, ProgressFactory, parse_checksum
from vmctl.boxes.installed import (  # noqa: F401 - the store's readers, re-exported
    DIRECT_VERSION,
    PROVIDER,
    RECORD,
    SLASH,
    InstalledBox,
    _installed,
    _load,
    box_dir,
    disk_files,
    escape_name,
    find_box,
    find_box_vagrantfile,
    list_boxes,
    parse_box_name,
    unescape_name,
)
from vmctl.boxes.version import parse_constraint, parse_version
from vmctl.errors import BoxError, DownloadError

# --- adding --------------------------------------------------------------------------------

@dataclass(frozen=True)
class _Plan:
    name: str
    version: str
    box_url: str  # URL or local path of the .box
    checksum: Checksum | None
    source: str  # what to record: the catalog URL, or the box URL/path
    catalog_url: str | None = None


def _local_path(source: str) -> Path | None:
    """The local file SOURCE names (a path or file:// URL), or None for http(s)."""
    if download.is_http(source):
        return None
    if download.is_url(source):
        return download.file_url_path(source)
    return Path(source).expanduser().absolute()


def _looks_like_json(path: Path) -> bool:
    try:
        with path.open("rb") as f:
            head = f.read(64)
    except OSError:
        return False
    return head.lstrip().startswith(b"{")


def _decode_json(data: bytes, where: str) -> Any:
    try:
        return json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise BoxError(f"{where} is not valid JSON ({exc})",
                       hint="a box catalog is Vagrant's box metadata JSON") from exc


DEFAULT_SERVER_URL = "https://vagrantcloud.com"
_REGISTRY_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*/[A-Za-z0-9_][A-Za-z0-9_.-]*")


def server_url(configured: str | None = None) -> str:
    """The box registry: VMCTL_SERVER_URL, else the Vagrantfile's config.vm.box_server_url
    (CONFIGURED), else Vagrant's VAGRANT_SERVER_URL, else the public Vagrant registry."""
    return (os.environ.get("VMCTL_SERVER_URL") or configured or os.environ.get("VAGRANT_SERVER_URL")
            or DEFAULT_SERVER_URL).rstrip("/")


def registry_name(source: str) -> str | None:
    """SOURCE if it is a box name to look up on the registry (owner/box, not a file here)."""
    if download.is_url(source) or not _REGISTRY_NAME.fullmatch(source) or ".." in source:
        return None
    if Path(source).expanduser().exists():
        return None
    return source


def registry_options(options: download.FetchOptions, server: str) -> download.FetchOptions:
    """OPTIONS with VAGRANT_CLOUD_TOKEN (or VMCTL_CLOUD_TOKEN), sent to SERVER's host only."""
    token = os.environ.get("VMCTL_CLOUD_TOKEN") or os.environ.get("VAGRANT_CLOUD_TOKEN")
    if not token:
        return options
    return dataclasses.replace(options, token=token, token_host=urlsplit(server).netloc)


def _read_catalog(source: str, options: download.FetchOptions = download.NO_OPTIONS,
                  server: str | None = None) -> Catalog | None:
    """The catalog SOURCE names, or None when SOURCE is a box file. A box name (owner/box)
    that is no local file is looked up on the registry, as Vagrant does: GET SERVER/NAME
    with Accept: application/json answers its catalog."""
    name = registry_name(source)
    if name is not None:
        base = server or server_url()
        url = f"{base}/{name}"
        try:
            raw = download.fetch_small(url, options=options, accept_json=True)
        except DownloadError as exc:
            if "HTTP 404" in exc.message:
                raise BoxError(f"box {name} was not found on {base}",
                               hint="check the name, or set VAGRANT_SERVER_URL to the registry that has it") from exc
            raise
        data = _decode_json(raw, url)
        if not isinstance(data, dict) or "versions" not in data:
            raise BoxError(f"{url} did not answer a box catalog for {name}",
                           hint="set VAGRANT_SERVER_URL to a Vagrant box registry")
        return parse_catalog(data, url)
    local = _local_path(source)
    if local is not None:
        if not local.exists():
            raise BoxError(f"no such file: {local}", hint="check the path")
        if local.is_dir():
            raise BoxError(f"{local} is a folder; give a .box file or a box catalog JSON")
        if not local.is_file():
            raise BoxError(f"{local} is not a regular file; give a .box file or a box catalog JSON")
        if local.suffix.lower() != ".json" and not _looks_like_json(local):
            return None
        try:
            if local.stat().st_size > download.CATALOG_LIMIT:
                return None
            raw = local.read_bytes()
        except OSError as exc:
            raise BoxError(f"could not read {local}: {exc.strerror}") from exc
        url = local.as_uri()
        data = _decode_json(raw, str(local))
    else:
        path = source.split("?", 1)[0].lower()
        if path.endswith(".json"):
            raw = download.fetch_small(source, options=options)
        elif path.endswith((".box", ".qcow2", ".img")):
            return None
        else:
            probed = download.probe_catalog(source, options=options)
            if probed is None:
                return None
            raw = probed
        url = source
        data = _decode_json(raw, source)
    if not isinstance(data, dict) or "versions" not in data:
        raise BoxError(
            f"{source} is JSON but not a box catalog (it has no \"versions\")",
            hint="give a .box file, or Vagrant's box catalog JSON (name, versions, providers)",
        )
    return parse_catalog(data, url)


def _plan(source: str, name: str | None, constraint: str | None, checksum: Checksum | None,
          options: download.FetchOptions = download.NO_OPTIONS, server: str | None = None) -> _Plan:
    catalog = _read_catalog(source, options, server)
    if catalog is None:
        if name is None:
            raise BoxError(
                f"{source} is a box file, so vmctl needs a name for it",
                hint="give one with --name, e.g. vmctl box add --name my/box " + source,
            )
        if constraint and constraint.strip():
            raise BoxError(
                "a version constraint can only be used with a box catalog; "
                f"{source} is a box file (installed as version {DIRECT_VERSION})",
                hint="drop --box-version, or add the box through its catalog JSON",
            )
        local = _local_path(source)
        box_url = str(local) if local is not None else source
        return _Plan(parse_box_name(name), DIRECT_VERSION, box_url, checksum, source=box_url)
    if name is not None and parse_box_name(name) != catalog.name:
        raise BoxError(
            f"the catalog {source} describes box {catalog.name!r}, not {name!r}",
            hint=f"drop --name, or use the name {catalog.name}",
        )
    box_name = parse_box_name(catalog.name)
    version, provider = select_version(catalog, parse_constraint(constraint))
    if download.is_http(catalog.url) and not download.is_http(provider.url):
        # A catalog from the network names network URLs only: a file:// URL or a path
        # would make vmctl read this computer's files (/dev/zero hangs, a key leaks).
        raise BoxError(
            f"the catalog {catalog.url} names {provider.url!r}, which is not an http(s) URL",
            hint="a catalog fetched over HTTP(S) may only point at http:// or https:// boxes; nothing was installed",
        )
    if checksum is None and provider.checksum is not None:
        checksum = Checksum(provider.checksum_type or "sha256", provider.checksum)
    record_source = catalog.url if download.is_http(catalog.url) else str(_local_path(catalog.url))
    box_url = provider.url if download.is_http(provider.url) else str(_local_path(provider.url))
    return _Plan(box_name, str(version.version), box_url, checksum,
                 source=record_source, catalog_url=record_source)


@contextlib.contextmanager
def _boxes_lock() -> Iterator[None]:
    from vmctl.state import file_lock

    with file_lock("boxes"):
        yield


@contextlib.contextmanager
def _staging(root: Path) -> Iterator[Path]:
    """A new staging folder under ROOT, locked while in use and removed afterwards. Folders
    left by a killed vmctl (unlocked) are removed first; folders in use are left alone.
    Made and locked under the boxes lock, so no other vmctl takes a new one for a stale one."""
    import fcntl

    root.mkdir(parents=True, exist_ok=True)
    with _boxes_lock():
        for entry in root.glob(".staging-*"):
            with contextlib.suppress(OSError):
                fd = os.open(entry, os.O_RDONLY | os.O_DIRECTORY)
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # BlockingIOError: in use
                    shutil.rmtree(entry, ignore_errors=True)
                finally:
                    os.close(fd)
        staging = Path(tempfile.mkdtemp(prefix=".staging-", dir=root))
        lock = os.open(staging, os.O_RDONLY | os.O_DIRECTORY)
        fcntl.flock(lock, fcntl.LOCK_EX)
    try:
        yield staging
    finally:
        shutil.rmtree(staging, ignore_errors=True)
        os.close(lock)


def add_box(
    source: str,
    *,
    name: str | None = None,
    version_constraint: str | None = None,
    checksum: str | None = None,
    checksum_type: str | None = None,
    force: bool = False,
    progress: ProgressFactory | None = None,
    notify: Notify | None = None,
    options: download.FetchOptions = download.NO_OPTIONS,
    server: str | None = None,
) -> InstalledBox:
    """Install the box SOURCE names (a .box or a catalog; a path, file://, http:// or https://;
    or a box name, owner/box, looked up on the registry SERVER, by default server_url()).

    From a catalog: the newest version satisfying VERSION_CONSTRAINT with a libvirt provider,
    verified against the catalog's checksum (a CHECKSUM given here takes precedence). A box
    file needs NAME and is installed as version "0". Raises BoxError (DownloadError,
    ChecksumError) and leaves nothing behind on failure.

    The box is unpacked into a staging folder while it downloads (or is read) and hashed;
    only a verified, checked box is moved into the store.
    """
    say = notify or (lambda _msg: None)
    if name is not None:
        name = parse_box_name(name)
    expected = parse_checksum(checksum, checksum_type)
    server = server or server_url()
    options = registry_options(options, server)
    plan = _plan(source, name, version_constraint, expected, options, server)
    final = box_dir(plan.name, plan.version)
    if final.exists() and not force:
        raise BoxError(
            f"box {plan.name} version {plan.version} is already installed",
            hint="add --force to replace it",
        )
    say(f"box: adding {plan.name} {plan.version} from {plan.box_url}")
    label = f"{plan.name} {plan.version} ({plan.box_url})"
    root = paths.boxes_dir()
    try:
        with _staging(root) as staging:
            unpacker = archive.SourceUnpacker(staging / PROVIDER, label=label)
            try:
                fetched = _fetch(plan, progress, say, unpacker.feed, options)
                files = unpacker.finish()
            except BaseException as exc:
                unpacker.abort()
                if exc is not unpacker.error or not download.is_http(plan.box_url):
                    raise
                if not isinstance(exc.__cause__, OSError):
                    download.discard_partial(plan.box_url)  # not a box: resuming it cannot help
                    raise
                raise BoxError(  # the disk filled up: the download itself is fine
                    f"could not unpack {label}: {exc.__cause__.strerror or exc.__cause__}",
                    hint=f"free some disk space under {root} and run the same command again: "
                    "the download resumes where it stopped",
                ) from exc.__cause__
            try:
                box = _install(plan, fetched, files, staging, final, label, force=force,
                               plain_image=unpacker.plain_image)
            except BoxError:
                fetched.cleanup()  # complete and verified, but not a box: fetching it again cannot help
                raise
    except OSError as exc:
        raise BoxError(f"could not install box {plan.name} {plan.version}: {exc.strerror or exc}",
                       hint=f"check the free space and permissions under {root}") from exc
    fetched.cleanup()
    say(f"box: installed {box.name} {box.version} in {box.dir}")
    return box


def _fetch(plan: _Plan, progress: ProgressFactory | None, say: Notify, consume: download.Consumer,
           options: download.FetchOptions = download.NO_OPTIONS) -> Fetched:
    description = f"{plan.name} {plan.version}"
    if download.is_http(plan.box_url):
        fetched = download.download(plan.box_url, expected=plan.checksum,
                                    description=f"downloading {description}",
                                    progress=progress, notify=say, consume=consume, options=options)
    else:
        local = _local_path(plan.box_url)
        assert local is not None
        fetched = download.hash_local(local, expected=plan.checksum,
                                      description=f"reading {local.name}", progress=progress,
                                      consume=consume)
    if plan.checksum is not None:
        say(f"box: {plan.checksum.type} checksum verified")
    return fetched


def _install(plan: _Plan, fetched: Fetched, files: list[str], staging: Path, final: Path, label: str, *,
             force: bool, plain_image: bool = False) -> InstalledBox:
    """Check the box unpacked in STAGING/libvirt, record it, and move it to FINAL. A plain
    image (PLAIN_IMAGE) gets the metadata.json of a one-disk box."""
    new = staging / PROVIDER
    if plain_image:
        info = archive.inspect_image(new / archive.PLAIN_IMAGE, label)
        (new / "metadata.json").write_text(json.dumps(archive.plain_image_metadata(info), indent=2) + "\n")
        files = [*files, "metadata.json"]
    metadata = archive.check_metadata(new, label)
    disks = []
    for path, declared in disk_files(metadata):
        info = archive.inspect_image(new / path, label)
        if declared is not None and declared != info.get("format"):
            raise BoxError(f"refusing the box {label}: metadata.json says {path} is {declared}, "
                           f"but it is {info.get('format')}")
        disks.append({"path": path, "format": info.get("format"), "virtual_size": info.get("virtual-size")})
    info = {"format": disks[0]["format"]}
    checksum = plan.checksum or Checksum("sha256", fetched.digests["sha256"])
    record = {
        "name": plan.name,
        "version": plan.version,
        "provider": PROVIDER,
        "source": plan.source,
        "catalog_url": plan.catalog_url,
        "box_url": plan.box_url,
        "checksum_type": checksum.type,
        "checksum": checksum.hex,
        "sha256": fetched.digests["sha256"],
        "size": fetched.size,
        "image_format": info.get("format"),
        "disks": disks,
        "files": sorted(files),
        "added": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    }
    if plain_image:
        record["cloud_image"] = True
    (new / RECORD).write_text(json.dumps(record, indent=2, sort_keys=True) + "\n")
    _os_sync_dir(new)
    with _boxes_lock():
        final.parent.mkdir(parents=True, exist_ok=True)
        if final.exists() and not force:  # another vmctl installed it meanwhile
            raise BoxError(f"box {plan.name} version {plan.version} is already installed",
                           hint="add --force to replace it")
        try:
            if final.exists():
                os.rename(final, staging / "replaced")
            try:
                os.rename(new, final)
            except OSError:
                if (staging / "replaced").exists():
                    os.rename(staging / "replaced", final)
                raise
        finally:
            _remove_empty_parents(final)
    box = _load(final, plan.name, plan.version, PROVIDER)
    if box is None:  # pragma: no cover - we just wrote it
        raise BoxError(f"box {plan.name} {plan.version} vanished while being installed")
    return box


def _os_sync_dir(folder: Path) -> None:
    for entry in folder.iterdir():
        if entry.is_file():
            fd = os.open(entry, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)


def _remove_empty_parents(folder: Path) -> None:
    """Drop FOLDER's version and name folders when a failure or removal left them empty."""
    root = paths.boxes_dir()
    for parent in (folder.parent, folder.parent.parent):
        if parent == root or root not in parent.parents:
            break
        try:
            parent.rmdir()
        except OSError:
            break


def installed_same_build(catalog_path: Path) -> bool:
    """Whether the newest libvirt version in the local catalog CATALOG_PATH is installed with
    the very checksum the catalog gives (so `box build --add` can skip re-installing it)."""
    catalog = _read_catalog(str(catalog_path))
    if catalog is None:
        return False
    version, provider = select_version(catalog)
    box = find_box(catalog.name, f"= {version.version}")
    if box is None or provider.checksum is None:
        return False
    record = box.record
    return record.get("checksum") == provider.checksum or (
        provider.checksum_type == "sha256" and record.get("sha256") == provider.checksum
    )


# --- removing ------------------------------------------------------------------------------

def remove_box(
    name: str,
    *,
    version: str | None = None,
    all_versions: bool = False,
    force: bool = False,
    release: Callable[[InstalledBox, bool], None] | None = None,
) -> list[InstalledBox]:
    """Remove box NAME: VERSION, every version (ALL_VERSIONS), or the only one installed.

    Refuses while a machine created from it exists (vmctl.state.machines_using_box) unless
    FORCE. RELEASE(box, in_use) is called for each box before its folder goes (it removes the
    box's storage pool volumes, vmctl/storage.py). Returns the boxes removed.
    """
    from vmctl.state import machines_using_box

    if version is not None and all_versions:
        raise BoxError("give either a version or --all, not both")
    installed = _installed(name)
    if not installed:
        raise BoxError(f"box {name} is not installed", hint="see the installed boxes with: vmctl box list")
    versions = ", ".join(b.version for b in installed)
    if all_versions:
        targets = installed
    elif version is not None:
        wanted = _same_version(version)
        targets = [b for b in installed if wanted(b.version)]
        if not targets:
            raise BoxError(f"box {name} version {version} is not installed (installed: {versions})")
    elif len(installed) == 1:
        targets = installed
    else:
        raise BoxError(
            f"box {name} has several versions installed: {versions}",
            hint="say which with --box-version VERSION, or remove them all with --all",
        )
    users = machines_using_box(name)
    for box in targets:
        using = [m for m in users if m.box_version in (None, box.version)]
        if using and not force:
            who = ", ".join(f"{m.name} in {m.project}" for m in using)
            raise BoxError(
                f"box {name} version {box.version} is used by {len(using)} "
                f"machine{'s' if len(using) != 1 else ''}: {who}",
                hint="destroy those machines first (vmctl destroy), or add --force",
            )
    if release is not None:
        for box in targets:
            release(box, any(m.box_version in (None, box.version) for m in users))
    root = paths.boxes_dir()
    with _staging(root) as trash, _boxes_lock():
        for i, box in enumerate(targets):
            try:
                os.rename(box.dir, trash / f"removed-{i}")
            except FileNotFoundError:
                pass
            except OSError as exc:
                raise BoxError(f"could not remove {box.dir}: {exc.strerror}") from exc
            finally:
                _remove_empty_parents(box.dir)
    return targets


def _same_version(text: str) -> Callable[[str], bool]:
    try:
        wanted = parse_version(text)
    except BoxError:
        return lambda v: v == text

    def match(v: str) -> bool:
        try:
            return parse_version(v) == wanted
        except BoxError:
            return v == text

    return match


# --- outdated and prune --------------------------------------------------------------------

@dataclass(frozen=True)
class OutdatedStatus:
    box: InstalledBox
    latest: str | None  # the newest libvirt version in the catalog
    error: str | None = None

    @property
    def outdated(self) -> bool:
        if self.latest is None:
            return False
        try:
            return parse_version(self.latest) > parse_version(self.box.version)
        except BoxError:
            return False


def check_outdated(names: list[str] | None = None) -> list[OutdatedStatus]:
    """For the newest installed version of each box added from a catalog: the catalog's newest."""
    newest_installed: dict[str, InstalledBox] = {}
    for box in list_boxes():
        if names and box.name not in names:
            continue
        newest_installed[box.name] = box  # list_boxes sorts by version: the last one wins
    results: list[OutdatedStatus] = []
    for box in newest_installed.values():
        url = box.catalog_url
        if url is None:
            results.append(OutdatedStatus(box, None, "not added from a catalog"))
            continue
        try:
            catalog = _read_catalog(url)
            latest = newest_version(catalog) if catalog is not None else None
        except BoxError as exc:
            results.append(OutdatedStatus(box, None, exc.message))
            continue
        results.append(OutdatedStatus(box, str(latest) if latest else None))
    return results


def prune_boxes(*, dry_run: bool = False,
                release: Callable[[InstalledBox, bool], None] | None = None) -> list[InstalledBox]:
    """Remove every version but the newest of each box, keeping versions machines use.
    RELEASE: as for remove_box."""
    from vmctl.state import machines_using_box

    by_name: dict[str, list[InstalledBox]] = {}
    for box in list_boxes():
        by_name.setdefault(box.name, []).append(box)
    removed: list[InstalledBox] = []
    for name, boxes in by_name.items():
        users = machines_using_box(name)
        for box in boxes[:-1]:
            if any(m.box_version in (None, box.version) for m in users):
                continue
            if not dry_run:
                remove_box(name, version=box.version, release=release)
            removed.append(box)
    return removed


# --- update and repackage ------------------------------------------------------------------

@dataclass(frozen=True)
class UpdateResult:
    name: str
    installed: str | None  # the newest version installed before
    available: str | None  # the newest version the catalog offers within the constraint
    added: InstalledBox | None = None  # what was installed now
    note: str | None = None  # why nothing was done, when nothing was


def update_box(
    name: str,
    constraint: str | None = None,
    *,
    source: str | None = None,
    options: download.FetchOptions = download.NO_OPTIONS,
    server: str | None = None,
    progress: ProgressFactory | None = None,
    notify: Notify | None = None,
) -> UpdateResult:
    """Install the newest version of box NAME that CONSTRAINT allows, if it is newer than the
    newest installed one, from the catalog the box came from (else SOURCE, else the registry).
    Installed versions stay: machines keep the version they were made from (as in Vagrant)."""
    installed = _installed(name)
    if not installed:
        return UpdateResult(name, None, None, note="not installed (vmctl up adds it)")
    newest = installed[-1]
    catalog_source = newest.catalog_url or source or (registry_name(name) and name)
    if not catalog_source:
        return UpdateResult(name, newest.version, None, note="not added from a catalog: nothing to update from")
    server = server or server_url()
    options = registry_options(options, server)
    catalog = _read_catalog(catalog_source, options, server)
    if catalog is None:
        return UpdateResult(name, newest.version, None, note=f"{catalog_source} is a box file, not a catalog")
    version, _provider = select_version(catalog, parse_constraint(constraint))
    if parse_version(str(version.version)) <= parse_version(newest.version):
        return UpdateResult(name, newest.version, str(version.version), note="up to date")
    added = add_box(catalog_source, version_constraint=f"= {version.version}", options=options, server=server,
                    progress=progress, notify=notify)
    return UpdateResult(name, newest.version, str(version.version), added=added)


def repackage_box(name: str, version: str, output: Path) -> Path:
    """Write the installed box NAME VERSION back into a box file at OUTPUT (Vagrant's `box
    repackage`): the files the box came with, as a tar; vmctl's own record is left out."""
    import tarfile

    wanted = _same_version(version)
    box = next((b for b in _installed(name) if wanted(b.version)), None)
    if box is None:
        raise BoxError(f"box {name} version {version} is not installed",
                       hint="see the installed boxes with: vmctl box list")
    files = box.record.get("files") or sorted(
        str(p.relative_to(box.dir)) for p in box.dir.rglob("*") if p.is_file() and p.name != RECORD)
    output = output.absolute()
    tmp = output.with_name(f".{output.name}.{os.getpid()}.tmp")
    try:
        with tarfile.open(tmp, "w", format=tarfile.GNU_FORMAT) as tar:
            for rel in files:
                path = box.dir / rel
                if path.is_file() and not path.is_symlink():
                    tar.add(path, arcname=rel, recursive=False)
        os.replace(tmp, output)
    except OSError as exc:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise BoxError(f"could not write {output}: {exc.strerror or exc}") from exc
    return output
