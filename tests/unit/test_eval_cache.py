"""The evaluated Vagrantfile is kept between commands (vmctl/vagrantfile/cache.py) and a
stale one is never used: each kind of input the evaluation reads is changed here, through
the real `vmctl` command, and the next command sees the change."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest

VMCTL = [sys.executable, "-m", "vmctl"]


class Project:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.folder = root / "project"
        self.folder.mkdir()
        self.env = {k: v for k, v in os.environ.items() if not k.startswith(("VMCTL_", "VAGRANT_"))}
        self.env["VAGRANT_SERVER_URL"] = "http://127.0.0.1:9"  # never the internet's registry
        self.env.update(VMCTL_HOME=str(root / "home"), NO_COLOR="1")

    def write(self, name: str, text: str) -> Path:
        path = self.folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text).lstrip())
        return path

    def run(self, *args: str, env: dict[str, str] | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run([*VMCTL, "--debug", *args], cwd=cwd or self.folder, env={**self.env, **(env or {})},
                              capture_output=True, text=True, timeout=60, check=False)
        assert proc.returncode == 0, proc.stderr
        return proc

    def hostname(self, **kwargs: object) -> tuple[str, bool]:
        """(the hostname the Vagrantfile resolves to, whether the cache answered)."""
        proc = self.run("validate", "--json", **kwargs)  # type: ignore[arg-type]
        cached = "evaluation cache: " in proc.stderr and " unchanged (" in proc.stderr
        return json.loads(proc.stdout)["machines"][0]["hostname"], cached


@pytest.fixture
def project(tmp_path: Path) -> Project:
    return Project(tmp_path)


def vagrantfile(expression: str, before: str = "") -> str:
    return f'{before}\nVagrant.configure("2") do |c|\n  c.vm.box = "t/b"\n  c.vm.hostname = ({expression}).to_s\nend\n'


def test_the_second_command_uses_the_kept_result(project: Project) -> None:
    project.write("Vagrantfile", vagrantfile('"one"'))
    assert project.hostname() == ("one", False)
    assert project.hostname() == ("one", True)


def test_the_vagrantfile_changes_same_size_same_mtime(project: Project) -> None:
    path = project.write("Vagrantfile", vagrantfile('"aaa"'))
    assert project.hostname()[0] == "aaa"
    st = path.stat()
    path.write_text(path.read_text().replace('"aaa"', '"bbb"'))
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert project.hostname() == ("bbb", False)


def test_a_loaded_file_changes(project: Project) -> None:
    project.write("config.rb", '$name = "first"\n')
    project.write("Vagrantfile", vagrantfile("$name", 'load File.join(__dir__, "config.rb")'))
    assert project.hostname()[0] == "first"
    project.write("config.rb", '$name = "second"\n')
    assert project.hostname() == ("second", False)


def test_yaml_settings_change(project: Project) -> None:
    project.write("settings.yml", "name: a1\n")
    project.write("Vagrantfile", vagrantfile('YAML.load_file("settings.yml")["name"]'))
    assert project.hostname()[0] == "a1"
    project.write("settings.yml", "name: a2\n")
    assert project.hostname()[0] == "a2"


def test_an_environment_variable_changes_appears_and_goes(project: Project) -> None:
    project.write("Vagrantfile", vagrantfile('ENV["NODE_NAME"] || "unset"'))
    assert project.hostname()[0] == "unset"
    assert project.hostname(env={"NODE_NAME": "n1"}) == ("n1", False)
    assert project.hostname(env={"NODE_NAME": "n1"}) == ("n1", True)
    assert project.hostname(env={"NODE_NAME": "n2"})[0] == "n2"
    assert project.hostname()[0] == "unset"
    # A variable the Vagrantfile never asked for changes nothing.
    assert project.hostname(env={"UNRELATED": "x"}) == ("unset", True)


def test_the_whole_environment_when_it_is_listed(project: Project) -> None:
    project.write("Vagrantfile", vagrantfile('"n" + ENV.keys.select { |k| k.start_with?("CACHETEST_") }.size.to_s'))
    assert project.hostname()[0] == "n0"
    assert project.hostname(env={"CACHETEST_A": "1"})[0] == "n1"


def test_a_file_test_changes(project: Project) -> None:
    project.write("Vagrantfile", vagrantfile('File.exist?("flag") ? "flagged" : "plain"'))
    assert project.hostname()[0] == "plain"
    project.write("flag", "")
    assert project.hostname() == ("flagged", False)
    (project.folder / "flag").unlink()
    assert project.hostname()[0] == "plain"


def test_a_glob_changes(project: Project) -> None:
    project.write("nodes/a.yml", "")
    project.write("Vagrantfile", vagrantfile('"n" + Dir.glob("nodes/*.yml").size.to_s'))
    assert project.hostname()[0] == "n1"
    project.write("nodes/b.yml", "")
    assert project.hostname()[0] == "n2"
    project.write("elsewhere/c.yml", "")  # a folder the glob does not list
    assert project.hostname() == ("n2", True)


def test_a_folder_listing_and_a_file_size_change(project: Project) -> None:
    project.write("data/x", "12")
    project.write("Vagrantfile", vagrantfile('"e#{Dir.entries("data").size}s#{File.size("data/x")}"'))
    assert project.hostname()[0] == "e3s2"
    project.write("data/x", "1234")
    assert project.hostname()[0] == "e3s4"
    project.write("data/y", "")
    assert project.hostname()[0] == "e4s4"


def test_argv_when_the_vagrantfile_looks_at_it(project: Project) -> None:
    project.write("Vagrantfile", 'puts "ARGV=#{ARGV.join(",")}"\nVagrant.configure("2") { |c| c.vm.box = "t/b" }\n')
    assert "ARGV=validate" in project.run("validate").stderr
    assert "ARGV=status" in project.run("status").stderr
    assert "ARGV=status" in project.run("status").stderr


def test_the_working_folder_when_the_vagrantfile_looks_at_it(project: Project) -> None:
    sub = project.folder / "sub"
    sub.mkdir()
    project.write("Vagrantfile", vagrantfile('File.basename(Dir.pwd)'))
    assert project.hostname()[0] == "project"
    assert project.hostname(cwd=sub)[0] == "sub"


def test_a_link_that_points_elsewhere(project: Project) -> None:
    project.write("a.yml", "name: froma\n")
    project.write("b.yml", "name: fromb\n")
    link = project.folder / "settings.yml"
    link.symlink_to("a.yml")
    project.write("Vagrantfile", vagrantfile('YAML.load_file("settings.yml")["name"]'))
    assert project.hostname()[0] == "froma"
    link.unlink()
    link.symlink_to("b.yml")
    assert project.hostname()[0] == "fromb"


def test_the_read_policy_changes(project: Project, tmp_path: Path) -> None:
    outside = tmp_path / "outside.txt"
    outside.write_text("wider")
    project.write("Vagrantfile", vagrantfile(f'(File.read("{outside}") rescue "narrow").strip'))
    assert project.hostname()[0] == "narrow"
    assert project.hostname(env={"VMCTL_READ_PATHS": str(outside)})[0] == "wider"


def test_a_box_installed_later_brings_its_vagrantfile(project: Project, box_make: Callable[..., Path]) -> None:
    project.write("Vagrantfile", 'Vagrant.configure("2") { |c| c.vm.box = "late/box" }\n')

    def user() -> str:
        return json.loads(project.run("validate", "--json").stdout)["machines"][0]["ssh"]["username"]

    assert user() == "vagrant"
    box = box_make(vagrantfile='Vagrant.configure("2") { |c| c.ssh.username = "core" }\n')
    add = subprocess.run([*VMCTL, "box", "add", "--name", "late/box", str(box)], env=project.env,
                         capture_output=True, text=True, check=False)
    assert add.returncode == 0, add.stderr
    assert user() == "core"
    box = box_make(name="v2.box", vagrantfile='Vagrant.configure("2") { |c| c.ssh.username = "rocky" }\n')
    add = subprocess.run([*VMCTL, "box", "add", "--force", "--name", "late/box", str(box)], env=project.env,
                         capture_output=True, text=True, check=False)
    assert add.returncode == 0, add.stderr
    assert user() == "rocky"


def test_a_failed_evaluation_is_not_kept(project: Project) -> None:
    project.write("Vagrantfile", vagrantfile('ENV.fetch("MUST")'))
    proc = subprocess.run([*VMCTL, "validate"], cwd=project.folder, env=project.env, capture_output=True, text=True,
                          check=False)
    assert proc.returncode == 1
    assert project.hostname(env={"MUST": "given"})[0] == "given"


def test_the_cache_can_be_turned_off(project: Project) -> None:
    project.write("Vagrantfile", vagrantfile('"one"'))
    project.hostname()
    assert project.hostname(env={"VMCTL_EVAL_CACHE": "0"}) == ("one", False)


def test_a_change_to_the_evaluator_is_a_new_stamp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from vmctl.vagrantfile import cache

    code = tmp_path / "vagrantfile"
    code.mkdir()
    (code / "interpreter.py").write_text("x = 1\n")
    monkeypatch.setattr(cache, "_CODE", code)
    first = cache.code_stamp()
    (code / "interpreter.py").write_text("x = 22\n")
    assert cache.code_stamp() != first


def test_kept_results_live_in_vmctl_home_only(project: Project) -> None:
    project.write("Vagrantfile", vagrantfile('"one"'))
    project.hostname()
    kept = list((project.root / "home" / "cache" / "evaluations").glob("*.pickle"))
    assert len(kept) == 1 and (kept[0].stat().st_mode & 0o777) == 0o600
    assert not (project.folder / ".vmctl").exists()
