"""The `vmctl box` commands: exact output and exit codes, in an isolated VMCTL_HOME."""

from __future__ import annotations

import json
import subprocess
import sys
import types
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from cli_runner import Outcome, run_commands

from vmctl.cli import box as box_cli
from vmctl.state import IndexEntry, save_index

VMCTL = Path(sys.executable).parent / "vmctl"


def run_box(*args: str) -> Outcome:
    """Invoke `vmctl box ARGS` on an app holding only those commands."""
    return run_commands(box_cli.register, "box", *args)


def test_list_empty(box_home: Path) -> None:
    out = run_box("list")
    assert (out.code, out.stdout) == (0, "")
    assert out.stderr.startswith("no boxes installed\nhint: ")
    out = run_box("list", "--json")
    assert (out.code, json.loads(out.stdout)) == (0, {"boxes": []})


def test_add_list_remove(box_home: Path, box_make: Callable[..., Path]) -> None:
    path = box_make()
    out = run_box("add", str(path), "--name", "vmctl/tiny")
    assert out.code == 0, out.stderr
    assert out.stdout == "added box vmctl/tiny 0 (libvirt)\n"
    assert f"box: adding vmctl/tiny 0 from {path}" in out.stderr

    out = run_box("list", "--json")
    data = json.loads(out.stdout)
    size = data["boxes"][0]["size_bytes"]
    assert isinstance(size, int) and size > 0
    assert data == {"boxes": [{"name": "vmctl/tiny", "version": "0", "provider": "libvirt", "size_bytes": size,
                               "disks": [{"path": "box.img", "format": "qcow2"}]}]}

    out = run_box("list")
    lines = out.stdout.splitlines()
    assert lines[0].split() == ["NAME", "VERSION", "PROVIDER", "SIZE"]
    assert lines[1].split()[:3] == ["vmctl/tiny", "0", "libvirt"]

    out = run_box("add", str(path), "--name", "vmctl/tiny")
    assert out.code == 1
    assert "error: box vmctl/tiny version 0 is already installed\nhint: add --force to replace it\n" in out.stderr

    out = run_box("remove", "vmctl/tiny")
    assert (out.code, out.stdout) == (0, "removed box vmctl/tiny 0 (libvirt)\n")
    assert json.loads(run_box("list", "--json").stdout) == {"boxes": []}


def test_add_needs_a_name_for_a_box_file(box_home: Path, box_make: Callable[..., Path]) -> None:
    path = box_make()
    out = run_box("add", str(path))
    assert out.code == 1
    assert f"error: {path} is a box file, so vmctl needs a name for it\n" in out.stderr
    assert "hint: give one with --name" in out.stderr


def test_add_with_checksum_options(box_home: Path, box_make: Callable[..., Path]) -> None:
    path = box_make()
    out = run_box("add", str(path), "--name", "x/y", "--checksum", "0" * 64, "--checksum-type", "sha256")
    assert out.code == 1
    assert f"error: checksum mismatch for {path}: expected sha256 {'0' * 64}, found " in out.stderr
    out = run_box("add", str(path), "--name", "x/y", "--checksum-type", "crc", "--checksum", "00")
    assert out.code == 1 and "unsupported checksum type 'crc'" in out.stderr


def test_add_from_catalog_with_box_version(box_home: Path, box_make: Callable[..., Path],
                                           box_catalog_for: Callable[..., dict], tmp_path: Path) -> None:
    data = {f"t-{v}.box": box_make(f"t-{v}.box").read_bytes() for v in ("1.0", "1.5", "2.0")}
    catalog = box_catalog_for("vmctl/tiny", {v: f"t-{v}.box" for v in ("1.0", "1.5", "2.0")}, data=data)
    (tmp_path / "c.json").write_text(json.dumps(catalog))
    out = run_box("add", str(tmp_path / "c.json"), "--box-version", ">= 1.0, < 2")
    assert (out.code, out.stdout) == (0, "added box vmctl/tiny 1.5 (libvirt)\n")
    out = run_box("add", str(tmp_path / "c.json"), "--box-version", ">> 1")
    assert out.code == 1 and "invalid version constraint '>> 1'" in out.stderr


def test_remove_refuses_while_a_machine_uses_it(box_home: Path, box_make: Callable[..., Path]) -> None:
    assert run_box("add", str(box_make()), "--name", "vmctl/tiny").code == 0
    save_index({"abc": IndexEntry(id="abc", name="web", project="/srv/app", domain="vmctl-web-abc",
                                  uri="qemu:///embed", box_name="vmctl/tiny", box_version="0")})
    out = run_box("remove", "vmctl/tiny")
    assert out.code == 1
    assert "error: box vmctl/tiny version 0 is used by 1 machine: web in /srv/app\n" in out.stderr
    assert "hint: destroy those machines first (vmctl destroy), or add --force\n" in out.stderr
    assert len(json.loads(run_box("list", "--json").stdout)["boxes"]) == 1
    out = run_box("remove", "vmctl/tiny", "--force")
    assert (out.code, out.stdout) == (0, "removed box vmctl/tiny 0 (libvirt)\n")


def test_remove_ambiguous_and_usage(box_home: Path, box_make: Callable[..., Path],
                                    box_catalog_for: Callable[..., dict], tmp_path: Path) -> None:
    data = {f"t-{v}.box": box_make(f"t-{v}.box").read_bytes() for v in ("1.0", "2.0")}
    (tmp_path / "c.json").write_text(json.dumps(
        box_catalog_for("vmctl/tiny", {v: f"t-{v}.box" for v in ("1.0", "2.0")}, data=data)))
    for v in ("1.0", "2.0"):
        assert run_box("add", str(tmp_path / "c.json"), "--box-version", v).code == 0
    out = run_box("remove", "vmctl/tiny")
    assert out.code == 1
    assert "error: box vmctl/tiny has several versions installed: 1.0, 2.0\n" in out.stderr
    out = run_box("remove", "vmctl/tiny", "--box-version", "1.0", "--all")
    assert out.code == 2
    out = run_box("remove", "vmctl/tiny", "--box-version", "1.0")
    assert out.stdout == "removed box vmctl/tiny 1.0 (libvirt)\n"
    out = run_box("remove", "vmctl/tiny", "--all")
    assert out.stdout == "removed box vmctl/tiny 2.0 (libvirt)\n"


def test_build_is_wired_to_build_recipe(box_home: Path, box_make: Callable[..., Path], tmp_path: Path,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    import hashlib

    box = box_make("tiny-1.0.0.box")
    sha = hashlib.sha256(box.read_bytes()).hexdigest()
    catalog = tmp_path / "tiny.json"
    catalog.write_text(json.dumps({"name": "vmctl/tiny", "versions": [{"version": "1.0.0", "providers": [
        {"name": "libvirt", "url": box.name, "checksum_type": "sha256", "checksum": sha}]}]}))
    calls: list[tuple[str, Path | None]] = []

    @dataclass
    class FakeResult:
        name: str = "vmctl/tiny"
        version: str = "1.0.0"
        box_path: Path = box
        catalog_path: Path = catalog

    def build_recipe(recipe: str, output: Path | None, *, notify: Callable[[str], None]) -> FakeResult:
        calls.append((recipe, output))
        notify("build: pretending")
        return FakeResult()

    fake = types.ModuleType("vmctl.boxes.build")
    fake.build_recipe = build_recipe  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "vmctl.boxes.build", fake)

    out = run_box("build", "tiny", "--output", str(tmp_path / "out"))
    assert out.code == 0, out.stderr
    assert calls == [("tiny", tmp_path / "out")]
    assert out.stdout == f"built box vmctl/tiny 1.0.0\n  box:     {box}\n  catalog: {catalog}\n"
    assert "build: pretending" in out.stderr
    assert json.loads(run_box("list", "--json").stdout) == {"boxes": []}

    out = run_box("build", "tiny", "--add")
    assert out.code == 0, out.stderr
    assert out.stdout.endswith("added box vmctl/tiny 1.0.0 (libvirt)\n")
    out = run_box("build", "tiny", "--add")  # same build: nothing to do
    assert out.stdout.endswith("box vmctl/tiny 1.0.0 is already installed (same build)\n")


def test_outdated_and_prune_commands(box_home: Path) -> None:
    out = run_box("outdated", "--json")
    assert (out.code, json.loads(out.stdout)) == (0, {"boxes": []})
    out = run_box("prune")
    assert (out.code, out.stdout, out.stderr) == (0, "", "nothing to prune\n")


@pytest.mark.skipif(not VMCTL.exists(), reason="the vmctl console script is not installed in this venv")
def test_the_real_command(box_home: Path, box_make: Callable[..., Path]) -> None:
    """Through the installed `vmctl` script: error rendering, exit codes, JSON."""
    env = {"VMCTL_HOME": str(box_home), "PATH": "/usr/bin:/bin", "NO_COLOR": "1"}
    path = box_make()
    proc = subprocess.run([str(VMCTL), "box", "add", str(path)], env=env, capture_output=True, text=True)
    assert proc.returncode == 1
    assert proc.stdout == ""
    assert proc.stderr.startswith(f"error: {path} is a box file, so vmctl needs a name for it\nhint: ")
    proc = subprocess.run([str(VMCTL), "box", "add", str(path), "--name", "vmctl/tiny"], env=env,
                          capture_output=True, text=True)
    assert (proc.returncode, proc.stdout) == (0, "added box vmctl/tiny 0 (libvirt)\n"), proc.stderr
    proc = subprocess.run([str(VMCTL), "box", "list", "--json"], env=env, capture_output=True, text=True)
    assert [b["name"] for b in json.loads(proc.stdout)["boxes"]] == ["vmctl/tiny"]
    proc = subprocess.run([str(VMCTL), "box", "remove", "vmctl/tiny", "--all", "--box-version", "0"], env=env,
                          capture_output=True, text=True)
    assert proc.returncode == 2


# --- update, repackage, init (issue 12) ----------------------------------------------------

def _catalog(tmp_path: Path, box_make: Callable[..., Path], box_catalog_for: Callable[..., dict],
             versions: tuple[str, ...]) -> Path:
    data = {f"t-{v}.box": box_make(f"t-{v}.box", vagrantfile=f"# {v}\n").read_bytes() for v in versions}
    catalog = box_catalog_for("acme/app", {v: f"t-{v}.box" for v in versions}, data=data)
    path = tmp_path / "c.json"
    path.write_text(json.dumps(catalog))
    return path


def test_box_update_installs_a_newer_version_from_the_catalog(box_home: Path, box_make: Callable[..., Path],
                                                              box_catalog_for: Callable[..., dict],
                                                              tmp_path: Path) -> None:
    catalog = _catalog(tmp_path, box_make, box_catalog_for, ("1.0",))
    assert run_box("add", str(catalog)).code == 0
    out = run_box("update", "--box", "acme/app")
    assert (out.code, out.stdout) == (0, "box acme/app (1.0): up to date\n")
    _catalog(tmp_path, box_make, box_catalog_for, ("1.0", "1.2", "2.0"))
    out = run_box("update", "--box", "acme/app")
    assert (out.code, out.stdout) == (0, "updated box acme/app: 1.0 -> 2.0\n")
    listed = json.loads(run_box("list", "--json").stdout)["boxes"]
    assert [b["version"] for b in listed] == ["1.0", "2.0"]  # the old one stays for its machines
    out = run_box("update", "--box", "not/installed")
    assert out.stdout == "box not/installed (not installed): not installed (vmctl up adds it)\n"


def test_box_update_of_the_project_respects_its_constraint(box_home: Path, box_make: Callable[..., Path],
                                                           box_catalog_for: Callable[..., dict], tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    catalog = _catalog(tmp_path, box_make, box_catalog_for, ("1.0", "1.5", "2.0"))
    assert run_box("add", str(catalog), "--box-version", "= 1.0").code == 0
    project = tmp_path / "project"
    project.mkdir()
    (project / "Vagrantfile").write_text('Vagrant.configure("2") { |c| c.vm.box = "acme/app"; c.vm.box_version = "< 2" }\n')
    monkeypatch.chdir(project)
    out = run_box("update")
    assert (out.code, out.stdout) == (0, "updated box acme/app: 1.0 -> 1.5\n"), out.stderr


def test_box_repackage_round_trip(box_home: Path, box_make: Callable[..., Path], tmp_path: Path,
                                  monkeypatch: pytest.MonkeyPatch) -> None:
    assert run_box("add", "--name", "acme/orig", str(box_make(vagrantfile="# mine\n"))).code == 0
    monkeypatch.chdir(tmp_path)
    out = run_box("repackage", "acme/orig", "libvirt", "0")
    assert (out.code, out.stdout) == (0, f"wrote {tmp_path / 'package.box'}\n")
    assert run_box("add", "--name", "acme/copy", str(tmp_path / "package.box")).code == 0
    boxes = {b["name"]: b for b in json.loads(run_box("list", "--json").stdout)["boxes"]}
    assert boxes["acme/copy"]["disks"] == [{"path": "box.img", "format": "qcow2"}]
    copy = box_home / "boxes" / "acme-VAGRANTSLASH-copy" / "0" / "libvirt" / "Vagrantfile"
    assert copy.read_text() == "# mine\n"
    out = run_box("repackage", "acme/orig", "virtualbox", "0")
    assert out.code == 2 and "vmctl provides only 'libvirt'" in out.stderr
    out = run_box("repackage", "acme/orig", "libvirt", "9")
    assert out.code == 1 and "version 9 is not installed" in out.stderr


def test_init_writes_a_vagrantfile_that_validates(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from vmctl.cli import init as init_cli
    from vmctl.vagrantfile.loader import evaluate_project

    monkeypatch.chdir(tmp_path)
    out = run_commands(init_cli.register, "init", "generic/debian12", "https://example.org/d.json",
                       "--box-version", "~> 4.3")
    assert out.code == 0, out.stderr
    (m,) = evaluate_project(tmp_path / "Vagrantfile", env={}).machines
    assert (m.box, m.box_version, m.box_url) == ("generic/debian12", "~> 4.3", "https://example.org/d.json")
    out = run_commands(init_cli.register, "init", "other")
    assert out.code == 1 and "already exists" in out.stderr and "--force" in out.stderr
    assert run_commands(init_cli.register, "init", "other", "--force", "--minimal").code == 0
    assert (tmp_path / "Vagrantfile").read_text() == 'Vagrant.configure("2") do |config|\n  config.vm.box = "other"\nend\n'
    out = run_commands(init_cli.register, "init", "x", "--minimal", "--output", "-")
    assert out.stdout == 'Vagrant.configure("2") do |config|\n  config.vm.box = "x"\nend\n'
