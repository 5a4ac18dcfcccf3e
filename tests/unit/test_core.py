"""Pure parts of the machine layer: provisioner selection, output lines, state files,
error rendering."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from vmctl import provision, state
from vmctl.errors import ConfigError, StateError
from vmctl.vagrantfile.model import Provisioner


def names(chosen):
    return [p.name for _, p in chosen]


PROVS = (
    Provisioner(type="shell", name="once", inline="true"),
    Provisioner(type="shell", name="always", inline="true", run="always"),
    Provisioner(type="shell", name="never", inline="true", run="never"),
    Provisioner(type="file", name="copy", source="a", destination="b"),
)


def test_first_up_runs_once_and_always():
    assert names(provision.select(PROVS, first_run=True, forced=False, only=None)) == ["once", "always", "copy"]


def test_later_boot_runs_only_always():
    assert names(provision.select(PROVS, first_run=False, forced=False, only=None)) == ["always"]


def test_provision_with_selects_by_name_or_type_including_never():
    assert names(provision.select(PROVS, first_run=False, forced=True, only={"never"})) == ["never"]
    assert names(provision.select(PROVS, first_run=False, forced=True, only={"file"})) == ["copy"]


def test_line_writer_prefixes_whole_lines():
    lines = []
    w = provision.LineWriter(lines.append, "    default: ")
    w(b"hel")
    w(b"lo\nwor")
    w(b"ld\r\n")
    w(b"tail")
    w.flush()
    assert lines == ["    default: hello", "    default: world", "    default: tail"]


def test_write_json_is_atomic_and_keeps_mode(tmp_path):
    target = tmp_path / "s.json"
    state.write_json(target, {"a": 1}, mode=0o600)
    assert json.loads(target.read_text()) == {"a": 1}
    assert oct(target.stat().st_mode & 0o777) == "0o600"
    assert [p.name for p in tmp_path.iterdir()] == ["s.json"]


def test_corrupt_state_names_the_file(tmp_path):
    target = tmp_path / "state.json"
    target.write_text('{"id": ')
    with pytest.raises(StateError) as exc:
        state.read_json(target, what="machine state")
    assert str(target) in exc.value.message
    assert "mv" in exc.value.hint


def test_index_round_trip(tmp_path, monkeypatch):
    monkeypatch.setenv("VMCTL_HOME", str(tmp_path))
    entry = state.IndexEntry(id="abc", name="default", project="/p", domain="d", uri="u",
                             box_name="vmctl/tiny", box_version="1", ports=[2200])
    with state.index_lock():
        state.save_index({"abc": entry})
    assert state.load_index() == {"abc": entry}
    assert state.machines_using_box("vmctl/tiny") == [entry]
    assert state.machines_using_box("vmctl/tiny", "2") == []


def test_busy_lock_says_so(tmp_path, monkeypatch):
    monkeypatch.setenv("VMCTL_HOME", str(tmp_path))
    from vmctl.errors import MachineError

    with state.file_lock("m1"), pytest.raises(MachineError, match="busy"), state.file_lock("m1", wait=False):
        pass


def test_config_error_renders_file_and_line():
    exc = ConfigError("unknown setting config.vm.bxo", file="/p/Vagrantfile", line=3,
                      source_line='  config.vm.bxo = "x"', hint="did you mean config.vm.box?")
    assert str(exc) == 'unknown setting config.vm.bxo at /p/Vagrantfile:3\n    config.vm.bxo = "x"'


def run_cli(*args, cwd, env_extra=None):
    env = {**os.environ, "VMCTL_HOME": str(cwd / "home"), **(env_extra or {})}
    env.pop("VMCTL_VAGRANTFILE", None)
    return subprocess.run([sys.executable, "-m", "vmctl", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=60)


def test_cli_error_is_one_line_with_hint_and_status_1(tmp_path):
    proc = run_cli("status", cwd=tmp_path)
    assert proc.returncode == 1
    assert proc.stderr.splitlines() == [
        "error: no Vagrantfile here or in any parent folder",
        "hint: run vmctl in a project folder, or set VMCTL_VAGRANTFILE",
    ]
    assert "Traceback" not in proc.stderr


def test_cli_debug_shows_traceback(tmp_path):
    proc = run_cli("--debug", "status", cwd=tmp_path)
    assert proc.returncode == 1
    assert "Traceback" in proc.stderr


def test_cli_usage_error_is_status_2(tmp_path):
    proc = run_cli("frobnicate", cwd=tmp_path)
    assert proc.returncode == 2


def test_version_does_not_import_heavy_modules(tmp_path):
    code = ("import sys; from vmctl.cli import main\n"
            "try:\n    main(['--version'])\nexcept SystemExit: pass\n"
            "heavy = [m for m in ('libvirt', 'paramiko', 'tree_sitter', 'requests') if m in sys.modules]\n"
            "print(heavy)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.stdout.strip().splitlines()[-1] == "[]"
