"""config.ignition (the vagrant-ignition plugin's settings): the config reaches the domain as
QEMU's fw_cfg entry opt/com.coreos/config; bad or unsafe settings are one clear error."""

from __future__ import annotations

import os
import textwrap
from pathlib import Path

import pytest

from vmctl.errors import ConfigError
from vmctl.vagrantfile.loader import evaluate_project
from vmctl.vagrantfile.model import MachineConfig

CONFIG = '{"ignition": {"version": "3.3.0"}}'


def evaluate(tmp_path: Path, body: str, files: dict[str, str] | None = None) -> tuple[MachineConfig, list[str]]:
    project = tmp_path / "project"
    project.mkdir(exist_ok=True)
    for name, text in (files if files is not None else {"config.ign": CONFIG}).items():
        (project / name).parent.mkdir(parents=True, exist_ok=True)
        (project / name).write_text(text)
    (project / "Vagrantfile").write_text(
        'Vagrant.configure("2") do |config|\n  config.vm.box = "vmctl/coreos-like"\n'
        + textwrap.indent(textwrap.dedent(body).strip(), "  ") + "\nend\n")
    result = evaluate_project(project / "Vagrantfile", env={"HOME": "/home/tester"})
    return result.machines[0], [str(w) for w in result.warnings]


def fw_cfg(cfg: MachineConfig) -> dict[str, str | None]:
    return {e.name: e.file for e in cfg.libvirt.fw_cfg}


def test_the_config_becomes_the_fw_cfg_entry_ignition_reads(tmp_path: Path) -> None:
    cfg, warnings = evaluate(tmp_path, """
        config.ignition.enabled = true
        config.ignition.path = "config.ign"
        config.ignition.config_obj = config.vm
        config.ignition.drive_name = "config"
    """)
    assert fw_cfg(cfg) == {"opt/com.coreos/config": str(tmp_path / "project" / "config.ign")}
    assert any("config.ignition.drive_name" in w for w in warnings)
    assert not any("config_obj" in w or "config.ignition.path" in w for w in warnings)


def test_per_machine_paths(tmp_path: Path) -> None:
    project = tmp_path / "project"
    files = {"a.ign": CONFIG, "b.ign": CONFIG}
    body = """
        config.ignition.enabled = true
        config.vm.define "a" do |a|
          a.ignition.path = "a.ign"
        end
    """
    cfg, _ = evaluate(tmp_path, body, files)
    assert fw_cfg(cfg) == {"opt/com.coreos/config": str(project / "a.ign")}


def test_not_enabled_gives_nothing_and_says_so(tmp_path: Path) -> None:
    cfg, warnings = evaluate(tmp_path, 'config.ignition.path = "config.ign"')
    assert fw_cfg(cfg) == {}
    assert any("config.ignition.enabled is not true" in w for w in warnings)


def test_enabled_without_a_path_gives_nothing_and_says_so(tmp_path: Path) -> None:
    # coreos-vagrant does this when it has no config.ign (vagrant-ignition then sends a key).
    cfg, warnings = evaluate(tmp_path, "config.ignition.enabled = true")
    assert fw_cfg(cfg) == {}
    assert any("names no config" in w for w in warnings)


@pytest.mark.parametrize(
    ("body", "files", "message"),
    [
        ('config.ignition.enabled = true\nconfig.ignition.path = "missing.ign"', None, "does not exist"),
        ('config.ignition.enabled = true\nconfig.ignition.path = "/etc/passwd"', None, "outside the project"),
        ('config.ignition.enabled = true\nconfig.ignition.path = "../x.ign"', None, "outside the project"),
        ('config.ignition.enabled = true\nconfig.ignition.path = "big.ign"',
         {"big.ign": "x" * (4 * 1024**2 + 1)}, "more than an Ignition config may have"),
        ('config.ignition.enabled = "yes"', None, "config.ignition.enabled"),
        ('config.ignition.enabled = true\nconfig.ignition.path = "config.ign"\n'
         'config.vm.provider :libvirt do |lv|\n  lv.qemuargs value: "-fw_cfg"\n'
         '  lv.qemuargs value: "name=opt/com.coreos/config,string={}"\nend', None, "both give an Ignition config"),
    ],
)
def test_bad_settings_are_one_error(tmp_path: Path, body: str, files: dict[str, str] | None, message: str) -> None:
    (tmp_path / "x.ign").write_text(CONFIG)
    with pytest.raises(ConfigError) as info:
        evaluate(tmp_path, body, files)
    assert message in str(info.value)


def test_a_link_out_of_the_project_is_refused(tmp_path: Path) -> None:
    (tmp_path / "outside.ign").write_text(CONFIG)
    project = tmp_path / "project"
    project.mkdir()
    os.symlink(tmp_path / "outside.ign", project / "config.ign")
    with pytest.raises(ConfigError, match="outside the project"):
        evaluate(tmp_path, 'config.ignition.enabled = true\nconfig.ignition.path = "config.ign"', files={})
