"""The box store: adding from box files and catalogs (local and HTTP), finding, removing."""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable
from pathlib import Path

import pytest

import vmctl.boxes
from vmctl.boxes import (
    InstalledBox,
    add_box,
    check_outdated,
    find_box,
    find_box_vagrantfile,
    list_boxes,
    prune_boxes,
    remove_box,
)
from vmctl.boxes import archive as archive_mod
from vmctl.errors import BoxError, ChecksumError
from vmctl.state import IndexEntry, save_index


def test_public_api_is_pinned() -> None:
    assert sorted(vmctl.boxes.__all__) == [
        "InstalledBox", "add_box", "check_outdated", "find_box", "find_box_vagrantfile",
        "list_boxes", "prune_boxes", "remove_box", "repackage_box", "update_box",
    ]


def test_add_a_local_box_file(box_home: Path, box_make: Callable[..., Path]) -> None:
    path = box_make(files={"vmlinuz": b"kernel", "initrd.img": b"initrd"})
    messages: list[str] = []
    box = add_box(str(path), name="vmctl/tiny", notify=messages.append)
    assert isinstance(box, InstalledBox)
    assert (box.name, box.version, box.provider) == ("vmctl/tiny", "0", "libvirt")
    assert box.dir == box_home / "boxes" / "vmctl-VAGRANTSLASH-tiny" / "0" / "libvirt"
    assert box.image == box.dir / "box.img"
    assert box.vagrantfile == box.dir / "Vagrantfile"
    assert (box.dir / "vmlinuz").read_bytes() == b"kernel"
    assert box.metadata == {"provider": "libvirt", "format": "qcow2", "virtual_size": 1}
    assert box.source == str(path)
    assert box.size_bytes == sum(p.stat().st_size for p in box.dir.iterdir())
    record = json.loads((box.dir / "vmctl-box.json").read_text())
    assert record["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert (record["checksum_type"], record["checksum"]) == ("sha256", record["sha256"])
    assert record["catalog_url"] is None and record["added"]
    assert messages[0] == f"box: adding vmctl/tiny 0 from {path}"
    assert list_boxes() == [box]
    # nothing else was left in the store
    assert sorted(p.name for p in (box_home / "boxes").iterdir()) == ["vmctl-VAGRANTSLASH-tiny"]


def test_a_box_file_needs_a_name(box_home: Path, box_make: Callable[..., Path]) -> None:
    with pytest.raises(BoxError) as exc:
        add_box(str(box_make()))
    assert "needs a name" in exc.value.message
    assert "--name" in (exc.value.hint or "")


@pytest.mark.parametrize("name", ["", "a b", "../x", "x/../y", "/abs", "x/", "a-VAGRANTSLASH-b"])
def test_invalid_names(box_home: Path, box_make: Callable[..., Path], name: str) -> None:
    with pytest.raises(BoxError, match="invalid box name"):
        add_box(str(box_make()), name=name)


def test_a_box_file_refuses_a_version_constraint(box_home: Path, box_make: Callable[..., Path]) -> None:
    with pytest.raises(BoxError, match="only be used with a box catalog"):
        add_box(str(box_make()), name="x/y", version_constraint=">= 1")


def test_adding_twice_needs_force(box_home: Path, box_make: Callable[..., Path]) -> None:
    first = add_box(str(box_make(vagrantfile="# one\n")), name="x/y")
    with pytest.raises(BoxError) as exc:
        add_box(str(box_make(vagrantfile="# two\n")), name="x/y")
    assert "already installed" in exc.value.message
    assert "--force" in (exc.value.hint or "")
    second = add_box(str(box_make(vagrantfile="# two\n")), name="x/y", force=True)
    assert second.dir == first.dir
    assert second.vagrantfile is not None and second.vagrantfile.read_text() == "# two\n"
    assert not [p for p in (box_home / "boxes").iterdir() if p.name.startswith(".")]


def test_checksum_given_for_a_box_file(box_home: Path, box_make: Callable[..., Path]) -> None:
    path = box_make()
    with pytest.raises(ChecksumError):
        add_box(str(path), name="x/y", checksum=hashlib.md5(b"no").hexdigest(), checksum_type="md5")
    assert list_boxes() == []
    box = add_box(str(path), name="x/y", checksum=hashlib.sha384(path.read_bytes()).hexdigest())
    assert box.record["checksum_type"] == "sha384"


def test_file_url_source(box_home: Path, box_make: Callable[..., Path]) -> None:
    path = box_make()
    box = add_box(path.as_uri(), name="x/file")
    assert box.name == "x/file"


def test_missing_source(box_home: Path, tmp_path: Path, box_server, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(BoxError, match="no such file"):
        add_box(str(tmp_path / "nope.box"), name="x/y")
    monkeypatch.setenv("VAGRANT_SERVER_URL", box_server.url(""))
    with pytest.raises(BoxError, match=r"box hashicorp/bionic64 was not found on http://127\.0\.0\.1:\d+$"):
        add_box("hashicorp/bionic64")


def _registry(box_server, box_make: Callable[..., Path], name: str, *, box_host: str = "127.0.0.1",
              providers: tuple[str, ...] = ("libvirt",)) -> bytes:
    data = box_make(vagrantfile="# from the registry\n").read_bytes()
    box_url = box_server.put(f"downloads/{name}.box", data).replace("127.0.0.1", box_host)
    catalog = {"name": name, "versions": [{"version": "2.1.0", "providers": [
        {"name": p, "url": box_url, "checksum_type": "sha256", "checksum": hashlib.sha256(data).hexdigest()}
        for p in providers]}]}
    box_server.put(name, json.dumps(catalog).encode(), content_type="application/json")
    return data


def test_box_names_resolve_on_the_registry(box_home: Path, box_server, box_make: Callable[..., Path],
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    _registry(box_server, box_make, "acme/web")
    monkeypatch.setenv("VAGRANT_SERVER_URL", box_server.url("").rstrip("/"))
    box = add_box("acme/web", version_constraint="~> 2.0")
    assert (box.name, box.version) == ("acme/web", "2.1.0")
    catalog_request = box_server.requests[0]
    assert catalog_request["path"] == "/acme/web"
    assert catalog_request["headers"]["Accept"] == "application/json"
    assert box.catalog_url == box_server.url("acme/web")


def test_the_registry_token_goes_to_the_registry_only(box_home: Path, box_server, box_make: Callable[..., Path],
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    _registry(box_server, box_make, "acme/private", box_host="localhost")
    monkeypatch.setenv("VAGRANT_SERVER_URL", box_server.url(""))
    monkeypatch.setenv("VAGRANT_CLOUD_TOKEN", "tok-123")
    add_box("acme/private")
    catalog, download = box_server.requests
    assert catalog["headers"].get("Authorization") == "Bearer tok-123"
    assert "Authorization" not in download["headers"]  # the box lives on another host


def test_a_box_for_other_providers_names_them(box_home: Path, box_server, box_make: Callable[..., Path],
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    _registry(box_server, box_make, "acme/vbox", providers=("virtualbox", "vmware_desktop"))
    monkeypatch.setenv("VMCTL_SERVER_URL", box_server.url(""))
    monkeypatch.setenv("VAGRANT_SERVER_URL", "http://127.0.0.1:9/never-asked")
    with pytest.raises(BoxError, match=r"has no libvirt version .*\(it has: virtualbox, vmware_desktop\)"):
        add_box("acme/vbox")


def _write_catalog(tmp_path: Path, box_make: Callable[..., Path], box_catalog_for: Callable[..., dict],
                   versions: tuple[str, ...] = ("1.0.0", "1.1.0", "2.0.0")) -> Path:
    data = {}
    for v in versions:
        data[f"tiny-{v}.box"] = box_make(f"tiny-{v}.box", vagrantfile=f"# {v}\n").read_bytes()
    catalog = box_catalog_for("vmctl/tiny", {v: f"tiny-{v}.box" for v in versions}, data=data)
    path = tmp_path / "tiny.json"
    path.write_text(json.dumps(catalog))
    return path


def test_add_from_a_local_catalog_with_a_constraint(
    box_home: Path, box_make: Callable[..., Path], box_catalog_for: Callable[..., dict], tmp_path: Path
) -> None:
    catalog = _write_catalog(tmp_path, box_make, box_catalog_for)
    box = add_box(str(catalog), version_constraint=">= 1.0, < 2")
    assert (box.name, box.version) == ("vmctl/tiny", "1.1.0")
    assert box.source == str(catalog)
    assert box.catalog_url == str(catalog)
    assert box.vagrantfile is not None and box.vagrantfile.read_text() == "# 1.1.0\n"
    newest = add_box(str(catalog))
    assert newest.version == "2.0.0"
    assert [b.version for b in list_boxes()] == ["1.1.0", "2.0.0"]
    assert find_box("vmctl/tiny") == newest
    assert find_box("vmctl/tiny", "~> 1.0") == box
    assert find_box("vmctl/tiny", "> 2") is None
    assert find_box("other/box") is None
    assert find_box_vagrantfile("vmctl/tiny", "< 2") == box.vagrantfile
    assert find_box_vagrantfile("other/box") is None


def test_catalog_detected_by_content_and_name_checked(
    box_home: Path, box_make: Callable[..., Path], box_catalog_for: Callable[..., dict], tmp_path: Path
) -> None:
    catalog = _write_catalog(tmp_path, box_make, box_catalog_for, ("1.0.0",))
    renamed = catalog.rename(tmp_path / "catalog-without-suffix")
    with pytest.raises(BoxError, match="describes box 'vmctl/tiny', not 'other/name'"):
        add_box(str(renamed), name="other/name")
    assert add_box(str(renamed), name="vmctl/tiny").version == "1.0.0"


def test_json_that_is_not_a_catalog(box_home: Path, tmp_path: Path) -> None:
    path = tmp_path / "metadata.json"
    path.write_text('{"provider": "libvirt"}')
    with pytest.raises(BoxError, match="not a box catalog"):
        add_box(str(path))


def test_catalog_checksum_mismatch_installs_nothing(
    box_home: Path, box_make: Callable[..., Path], tmp_path: Path
) -> None:
    box_make("tiny.box")
    catalog = {"name": "vmctl/tiny", "versions": [{"version": "1", "providers": [
        {"name": "libvirt", "url": "tiny.box", "checksum_type": "sha256", "checksum": "0" * 64}]}]}
    path = tmp_path / "tiny.json"
    path.write_text(json.dumps(catalog))
    with pytest.raises(ChecksumError) as exc:
        add_box(str(path))
    assert f"expected sha256 {'0' * 64}" in exc.value.message
    assert list_boxes() == []


def test_add_from_a_catalog_over_http(
    box_home: Path, box_make: Callable[..., Path], box_catalog_for: Callable[..., dict], box_server
) -> None:
    data = box_make("tiny.box").read_bytes()
    box_server.put("boxes/tiny-1.0.0.box", data)
    catalog = box_catalog_for("vmctl/tiny", {"1.0.0": "tiny-1.0.0.box"}, data={"tiny-1.0.0.box": data})
    url = box_server.put("boxes/catalog", json.dumps(catalog).encode(), content_type="application/json")
    progress_calls: list[tuple[str, int | None, int]] = []

    class Bar:
        def __init__(self, d: str, t: int | None, a: int) -> None:
            progress_calls.append((d, t, a))

        def __enter__(self) -> Bar:
            return self

        def __exit__(self, *exc: object) -> None:
            pass

        def advance(self, n: int) -> None:
            pass

    box = add_box(url, progress=Bar)
    assert (box.name, box.version, box.source) == ("vmctl/tiny", "1.0.0", url)
    # One bar: the box is unpacked while it downloads.
    assert progress_calls == [("downloading vmctl/tiny 1.0.0", len(data), 0)]
    assert [r["path"] for r in box_server.requests][-1] == "/boxes/tiny-1.0.0.box"
    assert not any((box_home / "downloads").glob("*.part"))  # the download is dropped once installed
    # a direct box URL needs a name, and is version 0
    direct = add_box(box_server.url("boxes/tiny-1.0.0.box"), name="direct/tiny")
    assert direct.version == "0" and direct.source == box_server.url("boxes/tiny-1.0.0.box")


def test_ctrl_c_while_installing_leaves_nothing(
    box_home: Path, box_make: Callable[..., Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    def interrupted(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(archive_mod, "inspect_image", interrupted)
    with pytest.raises(KeyboardInterrupt):
        add_box(str(box_make()), name="x/y")
    assert list(box_home.joinpath("boxes").iterdir()) == []


def test_stale_staging_folders_are_cleaned(box_home: Path, box_make: Callable[..., Path]) -> None:
    stale = box_home / "boxes" / ".staging-killed"
    (stale / "libvirt").mkdir(parents=True)
    add_box(str(box_make()), name="x/y")
    assert not stale.exists()


def _install_versions(box_make: Callable[..., Path], box_catalog_for: Callable[..., dict], tmp_path: Path,
                      versions: tuple[str, ...]) -> None:
    catalog = _write_catalog(tmp_path, box_make, box_catalog_for, versions)
    for v in versions:
        add_box(str(catalog), version_constraint=f"= {v}")


def test_remove(box_home: Path, box_make: Callable[..., Path], box_catalog_for: Callable[..., dict],
                tmp_path: Path) -> None:
    _install_versions(box_make, box_catalog_for, tmp_path, ("1.0.0", "1.1.0", "2.0.0"))
    with pytest.raises(BoxError) as exc:
        remove_box("vmctl/tiny")
    assert "several versions installed: 1.0.0, 1.1.0, 2.0.0" in exc.value.message
    assert "--box-version" in (exc.value.hint or "") and "--all" in (exc.value.hint or "")
    with pytest.raises(BoxError, match="version 9 is not installed"):
        remove_box("vmctl/tiny", version="9")
    removed = remove_box("vmctl/tiny", version="1.1")  # 1.1 == 1.1.0
    assert [b.version for b in removed] == ["1.1.0"]
    assert [b.version for b in list_boxes()] == ["1.0.0", "2.0.0"]
    removed = remove_box("vmctl/tiny", all_versions=True)
    assert [b.version for b in removed] == ["1.0.0", "2.0.0"]
    assert list(box_home.joinpath("boxes").iterdir()) == []
    with pytest.raises(BoxError, match="not installed"):
        remove_box("vmctl/tiny")


def test_remove_refuses_while_a_machine_uses_the_box(box_home: Path, box_make: Callable[..., Path]) -> None:
    add_box(str(box_make()), name="vmctl/tiny")
    save_index({"m1": IndexEntry(id="m1", name="default", project="/work/proj", domain="vmctl-default",
                                 uri="qemu:///embed", box_name="vmctl/tiny", box_version="0")})
    with pytest.raises(BoxError) as exc:
        remove_box("vmctl/tiny")
    assert "used by 1 machine: default in /work/proj" in exc.value.message
    assert "--force" in (exc.value.hint or "")
    assert find_box("vmctl/tiny") is not None
    assert [b.name for b in remove_box("vmctl/tiny", force=True)] == ["vmctl/tiny"]
    assert find_box("vmctl/tiny") is None


def test_outdated_and_prune(box_home: Path, box_make: Callable[..., Path], box_catalog_for: Callable[..., dict],
                            tmp_path: Path) -> None:
    catalog = _write_catalog(tmp_path, box_make, box_catalog_for, ("1.0.0", "1.1.0", "2.0.0"))
    add_box(str(catalog), version_constraint="= 1.0.0")
    add_box(str(catalog), version_constraint="= 1.1.0")
    add_box(str(box_make()), name="direct/box")
    status = {s.box.name: s for s in check_outdated()}
    assert status["vmctl/tiny"].box.version == "1.1.0"
    assert status["vmctl/tiny"].latest == "2.0.0" and status["vmctl/tiny"].outdated
    assert status["direct/box"].error == "not added from a catalog"
    save_index({"m1": IndexEntry(id="m1", name="old", project="/p", domain="d", uri="u",
                                 box_name="vmctl/tiny", box_version="1.0.0")})
    assert prune_boxes() == []  # 1.0.0 is in use
    save_index({})
    assert [b.version for b in prune_boxes(dry_run=True)] == ["1.0.0"]
    assert [b.version for b in prune_boxes()] == ["1.0.0"]
    assert [(b.name, b.version) for b in list_boxes()] == [("direct/box", "0"), ("vmctl/tiny", "1.1.0")]


def test_a_download_that_is_not_a_box_is_not_kept_to_resume(box_home: Path, box_server) -> None:
    """Refused while it streams (not a tar archive): resuming those bytes cannot help."""
    url = box_server.put("junk.box", b"not a tar archive, whatever its size " * 100_000)
    with pytest.raises(BoxError, match="not a box archive"):
        add_box(url, name="test/junk")
    assert list((box_home / "downloads").glob("*.part")) == []
    assert not (box_home / "boxes").exists() or [p.name for p in (box_home / "boxes").iterdir()] == []


def test_a_resumed_download_is_unpacked_from_its_start(box_home: Path, box_server, box_make) -> None:
    """The bytes already on disk are unpacked first, then the rest as it arrives."""
    from vmctl.boxes.download import partial_paths

    data = box_make(compression="").read_bytes()
    url = box_server.put("half.box", data)
    part, sidecar = partial_paths(url)
    part.parent.mkdir(parents=True, exist_ok=True)
    part.write_bytes(data[: len(data) // 2])
    etag = box_server.files["half.box"].etag
    sidecar.write_text(json.dumps({"url": url, "validator": {"etag": etag}, "total": len(data)}))
    box = add_box(url, name="test/half")
    assert box_server.requests[-1]["headers"].get("Range") == f"bytes={len(data) // 2}-"
    assert (box.dir / "box.img").exists() and not part.exists()


def test_a_multi_disk_box_in_vagrant_libvirts_format(box_home: Path, box_make: Callable[..., Path],
                                                     box_qcow2: bytes, tmp_path: Path) -> None:
    import subprocess

    raw = tmp_path / "data.raw"
    subprocess.run(["qemu-img", "create", "-q", "-f", "raw", str(raw), "8M"], check=True)
    metadata = {"provider": "libvirt", "disks": [{"path": "box.img"}, {"path": "disk2.qcow2", "format": "qcow2"},
                                                 {"path": "data/third.img", "format": "raw"}]}
    path = box_make(metadata=metadata, files={"disk2.qcow2": box_qcow2, "data/third.img": raw.read_bytes()})
    box = add_box(str(path), name="multi/disk")
    assert [(p.relative_to(box.dir).as_posix(), fmt) for p, fmt in box.disks] == [
        ("box.img", "qcow2"), ("disk2.qcow2", "qcow2"), ("data/third.img", "raw")]
    assert box.image == box.dir / "box.img"


@pytest.mark.parametrize(("disks", "files", "error"), [
    ([{"path": "box.img"}, {"path": "missing.qcow2"}], {}, "which the box does not hold"),
    ([{"path": "../outside.img"}], {}, "is not a file of the box"),
    ([{"path": "box.img"}, {"path": "box.img"}], {}, "is not a file of the box"),
    ([{"path": "box.img", "format": "vmdk"}], {}, "expected qcow2 or raw"),
    ([{"path": "box.img", "format": "raw"}], {}, "says box.img is raw, but it is qcow2"),
    ([], {}, "list of 1 to 26 disks"),
])
def test_multi_disk_metadata_is_checked(box_home: Path, box_make: Callable[..., Path], disks: list, files: dict,
                                        error: str) -> None:
    path = box_make(metadata={"provider": "libvirt", "disks": disks}, files=files)
    with pytest.raises(BoxError, match=re.escape(error)):
        add_box(str(path), name="multi/bad")
    assert not (box_home / "boxes" / "multi-VAGRANTSLASH-bad").exists()
