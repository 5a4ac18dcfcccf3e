"""A Vagrantfile that tries to run host commands or change host files, through the real
`vmctl validate` and `vmctl up` commands (subprocesses): every attempt would create a canary
file if it ran; none does, and each fails with exit status 1 naming the file and the line.
No VM is involved: evaluation happens before anything is made (so `up` creates no state)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest

VMCTL = [sys.executable, "-m", "vmctl"]

# id: (the line that would create the canary CANARY, what the error says)
ATTACKS: dict[str, tuple[str, str]] = {
    "backticks": ("x = `touch CANARY`", "unsupported construct `backticks"),
    "percent-x": ("x = %x(touch CANARY)", "unsupported construct `backticks"),
    "backticks-in-interpolation": ('x = "v#{`touch CANARY`}"', "unsupported construct `backticks"),
    "command-heredoc": ("x = <<~`EOS`\n    touch CANARY\n  EOS", "a command heredoc runs a host command"),
    "system": ('system("touch CANARY")', "unsupported construct `system`"),
    "kernel-system": ('Kernel.system("touch CANARY")', "unsupported construct `system`"),
    "exec": ('exec("touch CANARY")', "unsupported construct `exec`"),
    "spawn": ('spawn("touch CANARY")', "unsupported construct `spawn`"),
    "process-spawn": ('Process.spawn("touch CANARY")', "unsupported construct `Process`"),
    "io-popen": ('IO.popen("touch CANARY").read', "unsupported construct `IO.popen`"),
    "open3": ('require "open3"; Open3.capture2("touch CANARY")', "unsupported construct `Open3`"),
    "file-write": ('File.write("CANARY", "x")', "unsupported construct `File.write`"),
    "file-open-w": ('File.open("CANARY", "w") { |f| f.write("x") }', "unsupported construct `File.open for writing`"),
    "file-open-a": ('File.open("CANARY", "a")', "unsupported construct `File.open for writing`"),
    "io-write": ('IO.write("CANARY", "x")', "unsupported construct `IO.write`"),
    "fileutils-touch": ('require "fileutils"; FileUtils.touch("CANARY")', "unsupported construct `FileUtils`"),
    "kernel-send": ('Kernel.send(:system, "touch CANARY")', "unsupported construct `send`"),
    "public-send": ('Kernel.public_send(:system, "touch CANARY")', "unsupported construct `public_send`"),
    "__send__": ('__send__(:system, "touch CANARY")', "unsupported construct `__send__`"),
    "method-object": ('method(:system).call("touch CANARY")', "undefined method `system'"),
    "eval-string": ('eval("system(\'touch CANARY\')")', "unsupported construct `eval`"),
    "instance-eval": ('instance_eval("system(\'touch CANARY\')")', "unsupported construct `instance_eval`"),
    "open-pipe": ('open("|touch CANARY")', "unsupported construct `open`"),
    "io-read-pipe": ('IO.read("|touch CANARY")', "No such file or directory"),
    "at-exit": ('at_exit { system("touch CANARY") }', "unsupported construct `at_exit`"),
    "erb": ('ERB.new("<%= `touch CANARY` %>").result', "unsupported construct `ERB`"),
    "const-get": ('Object.const_get(:Kernel).system("touch CANARY")', "unsupported construct `const_get`"),
    "in-a-block": ('[1].each { |i| system("touch CANARY") }', "unsupported construct `system`"),
    "rescued": ('begin; system("touch CANARY"); rescue Exception; end', "unsupported construct `system`"),
}


@dataclass
class Outcome:
    command: str
    returncode: int
    stdout: str
    stderr: str
    canary_exists: bool
    project_files: list[str]
    home_exists: bool


def vagrantfile(line: str) -> str:
    """A valid file with LINE on line 3, inside the configure block."""
    return 'Vagrant.configure("2") do |config|\n  config.vm.box = "test/box"\n  ' + line + "\nend\n"


def run_attack(root: Path, case: str, command: str, extra: dict[str, str] | None = None) -> Outcome:
    project = root / f"{case}-{command}"
    project.mkdir()
    canary = root / f"canary-{case}-{command}"
    line, _ = ATTACKS.get(case, ('require_relative "evil"', ""))
    (project / "Vagrantfile").write_text(vagrantfile(line.replace("CANARY", str(canary))))
    for name, text in (extra or {}).items():
        (project / name).write_text(text.replace("CANARY", str(canary)))
    home = root / f"home-{case}-{command}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("VMCTL_")}
    env.update(VMCTL_HOME=str(home), NO_COLOR="1", COLUMNS="200")
    proc = subprocess.run([*VMCTL, command], cwd=project, env=env, stdin=subprocess.DEVNULL,
                          capture_output=True, text=True, timeout=60, check=False)
    return Outcome(command, proc.returncode, proc.stdout, proc.stderr, canary.exists(),
                   sorted(p.name for p in project.iterdir()), home.exists())


REQUIRED_FILE = {"evil.rb": '# a helper\nsystem("touch CANARY")\n'}
TRIGGER = """\
Vagrant.configure("2") do |config|
  config.vm.box = "test/box"
  config.trigger.before :up do |t|
    t.run = {inline: "touch CANARY"}
  end
end
"""


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory: pytest.TempPathFactory) -> dict[tuple[str, str], Outcome]:
    """Every attack through both commands, run a few at a time (each is a fresh process)."""
    root = tmp_path_factory.mktemp("attacks")
    jobs = {(case, command): (case, command, None) for case in ATTACKS for command in ("validate", "up")}
    for command in ("validate", "up"):
        jobs[("required-file", command)] = ("required-file", command, REQUIRED_FILE)
    with ThreadPoolExecutor(max_workers=(os.cpu_count() or 2) * 2) as pool:
        futures = {key: pool.submit(run_attack, root, *args) for key, args in jobs.items()}
        results = {key: future.result() for key, future in futures.items()}
    return results


@pytest.mark.parametrize("command", ["validate", "up"])
@pytest.mark.parametrize("case", sorted(ATTACKS))
def test_attack_runs_nothing_and_names_the_line(
    outcomes: dict[tuple[str, str], Outcome], case: str, command: str
) -> None:
    out = outcomes[(case, command)]
    _, said = ATTACKS[case]
    assert not out.canary_exists, f"{case}: the canary was created by vmctl {command}"
    assert out.returncode == 1, (out.returncode, out.stderr)
    assert out.stdout == ""
    first = out.stderr.splitlines()[0]
    assert first.startswith("error: ") and said in first, out.stderr
    assert first.endswith(" at Vagrantfile:3"), out.stderr
    assert "Traceback" not in out.stderr
    # Nothing was made: no project state, no VMCTL_HOME.
    assert out.project_files == ["Vagrantfile"]
    assert not out.home_exists


@pytest.mark.parametrize("command", ["validate", "up"])
def test_attack_in_a_required_file_names_that_file(outcomes: dict[tuple[str, str], Outcome], command: str) -> None:
    """`require_relative` of a local file is evaluated in the same sandbox; the error names
    the required file and its line (2), not the Vagrantfile's."""
    out = outcomes[("required-file", command)]
    assert not out.canary_exists
    assert out.returncode == 1
    assert out.stderr.startswith("error: unsupported construct `system` (runs a host command) at evil.rb:2\n"), out.stderr


def test_host_trigger_runs_only_when_allowed(tmp_path: Path) -> None:
    """`t.run` is Vagrant's declared host command at a hook. `validate` never runs it; `up`
    skips it with a warning unless VMCTL_ALLOW_HOST_TRIGGERS=1 (docs/vagrantfile.md), and with
    that it does run: the positive control showing a canary would be seen."""
    canary = tmp_path / "canary-trigger"
    (tmp_path / "Vagrantfile").write_text(TRIGGER.replace("CANARY", str(canary)))
    env = {k: v for k, v in os.environ.items() if not k.startswith("VMCTL_")}
    env.update(VMCTL_HOME=str(tmp_path / "home"), NO_COLOR="1")

    def run(*args: str, **extra: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*VMCTL, *args], cwd=tmp_path, env={**env, **extra}, stdin=subprocess.DEVNULL,
                              capture_output=True, text=True, timeout=60, check=False)

    proc = run("validate", "--json")
    assert proc.returncode == 0, proc.stderr
    assert '"touch ' in proc.stdout  # the trigger was read...
    assert not canary.exists()  # ...and not run

    proc = run("up")  # the box is not installed: up fails after its before-up triggers
    assert proc.returncode == 1 and "box test/box is not installed" in proc.stderr, proc.stderr
    assert "not running its host command" in proc.stderr and "VMCTL_ALLOW_HOST_TRIGGERS=1" in proc.stderr
    assert not canary.exists()

    proc = run("up", VMCTL_ALLOW_HOST_TRIGGERS="1")
    assert proc.returncode == 1
    assert canary.exists()


def test_the_vagrantfile_template_is_valid(tmp_path: Path) -> None:
    """The attacks fail because of their line, not because the file around them is broken."""
    (tmp_path / "Vagrantfile").write_text(vagrantfile("x = 1"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("VMCTL_")}
    env.update(VMCTL_HOME=str(tmp_path / "home"), NO_COLOR="1")
    proc = subprocess.run([*VMCTL, "validate"], cwd=tmp_path, env=env, stdin=subprocess.DEVNULL,
                          capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 0, proc.stderr
    assert textwrap.dedent(proc.stdout).startswith(f"{tmp_path / 'Vagrantfile'}: valid, 1 machine")
