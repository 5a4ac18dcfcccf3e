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
    assert data == {"boxes": [{"name": "vmctl/tiny", "version": "0", "provider": "libvirt", "size_bytes": size}]}

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
