"""The acceptance tier: Vagrant's provider acceptance sequences (hashicorp/vagrant-spec's
provider/basic, synced folders over rsync, forwarded ports, shell provisioners, triggers),
said again in our own words and run through a command named `vagrant` that is vmctl, as
a CI script written for Vagrant would run them.

To keep CI time low, one machine of the tiny box is brought up once for the whole module
with a Vagrantfile that holds what every sequence needs; the sequences run in order on it,
and the lifecycle one (which ends in destroy) runs last. A second, short test boots a
machine that never answers, to see --destroy-on-error and its opposite.
"""

from __future__ import annotations

import os
import re
import socket
import stat
import subprocess
import sys
import textwrap
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import Result, Vmctl


class Vagrant:
    """Runs `vagrant ARGS` where `vagrant` is a script in front of vmctl on the PATH."""

    def __init__(self, vmctl: Vmctl, shim: Path) -> None:
        self.env = {**vmctl.env, "PATH": f"{shim}:{os.environ.get('PATH', '')}"}

    def __call__(self, *args: str, cwd: Path, check: bool = True, timeout: float = 300,
                 env: dict[str, str] | None = None) -> Result:
        proc = subprocess.run(["vagrant", *args], cwd=cwd, env={**self.env, **(env or {})},
                              stdin=subprocess.DEVNULL, capture_output=True, text=True,
                              timeout=timeout, check=False)
        result = Result(proc.returncode, proc.stdout, proc.stderr)
        if check and proc.returncode != 0:
            raise AssertionError(f"vagrant {' '.join(args)} exited {proc.returncode}\n"
                                 f"--- stdout\n{proc.stdout}\n--- stderr\n{proc.stderr}")
        return result

    def assert_running(self, cwd: Path) -> None:
        r = self(*["ssh", "-c", "echo foo"], cwd=cwd, check=False)
        assert r.returncode == 0, r.stderr
        assert r.stdout.endswith("foo\n")

    def assert_not_running(self, cwd: Path) -> None:
        r = self("ssh", "-c", "echo foo", cwd=cwd, check=False)
        assert r.returncode == 1, (r.stdout, r.stderr)


@pytest.fixture(scope="module")
def vagrant(vmctl: Vmctl, tmp_path_factory: pytest.TempPathFactory) -> Vagrant:
    shim = tmp_path_factory.mktemp("vagrant-shim")
    script = shim / "vagrant"
    script.write_text(f"#!/bin/sh\nexec {sys.executable} -m vmctl \"$@\"\n")
    script.chmod(0o755)
    return Vagrant(vmctl, shim)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Machine:
    folder: Path
    up: Result
    web_port: int


SCRIPTS = {
    # provisioner scripts: a path, arguments (one with a space), privileged or not
    "write-path.sh": "#!/bin/bash\necho from-a-path > /acceptance-path\n",
    "write-args.sh": "#!/bin/bash\nprintf '%s\\n' \"$1\" \"$2\" > /acceptance-args\n",
    "whoami-root.sh": "#!/bin/bash\nwhoami > /tmp/acceptance-privileged\n",
    "whoami-user.sh": "#!/bin/bash\nwhoami > /tmp/acceptance-unprivileged\n",
    # a trigger's guest script
    "greet.sh": "#!/bin/sh\necho \"greetings from $(hostname)\"\n",
}


@pytest.fixture(scope="module")
def machine(vagrant: Vagrant, tiny_box: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Machine]:
    folder = tmp_path_factory.mktemp("acceptance")
    folder.chmod(0o755)
    # as vagrant-spec does: the box added under a name of the test's choosing
    box_file = next(tiny_box.glob("*.box"))
    vagrant("box", "add", "acceptance-box", str(box_file), "--force", cwd=folder, timeout=600)
    (folder / "hello").write_text("hello\n")
    for name, text in SCRIPTS.items():
        (folder / name).write_text(text)
    web_port = free_port()
    (folder / "Vagrantfile").write_text(textwrap.dedent(f"""\
        Vagrant.configure("2") do |config|
          config.vm.box = "acceptance-box"
          config.vm.hostname = "acceptance"
          config.vm.synced_folder ".", "/vagrant", disabled: true
          config.vm.synced_folder ".", "/acceptance-rsync", type: "rsync"
          config.vm.synced_folder ".", "/never", type: "rsync", disabled: true
          config.vm.network "forwarded_port", guest: 8080, host: {web_port}

          config.vm.provision "shell", inline: "echo inline > /acceptance-inline"
          config.vm.provision "shell", path: "write-path.sh"
          config.vm.provision "shell", path: "write-args.sh", args: ["hello", "two words"]
          config.vm.provision "shell", path: "whoami-root.sh"
          config.vm.provision "shell", path: "whoami-user.sh", privileged: false

          config.trigger.before :up do |t|
            t.name = "Acceptance"
            t.info = "One, two, three..."
            t.run = {{inline: "echo 'Host says hello before up'"}}
          end
          config.trigger.after :up do |t|
            t.name = "Acceptance"
            t.run = {{inline: "echo 'Host says hello after up'"}}
          end
          config.trigger.after :up do |t|
            t.name = "Failing, on purpose"
            t.warn = "This one fails"
            t.on_error = :continue
            t.run_remote = {{inline: "exit 7"}}
          end
          config.trigger.after :up do |t|
            t.name = "Greeting"
            t.only_on = /accept|default/
            t.run_remote = {{path: "greet.sh"}}
          end
          config.trigger.before :all do |t|
            t.info = "Before every command but destroy"
            t.ignore = :destroy
          end
          config.trigger.before :destroy, name: "Going", warn: "Destroying now",
            run: {{inline: "echo 'Host says goodbye before destroy'"}}
          config.trigger.after :destroy, name: "Gone", warn: "Destroyed",
            run: {{inline: "echo 'Host says goodbye after destroy'"}}
        end
    """))
    up = vagrant("up", "--provider=libvirt", cwd=folder, env={"VMCTL_ALLOW_HOST_TRIGGERS": "1"})
    try:
        yield Machine(folder, up, web_port)
    finally:
        vagrant("destroy", "--force", cwd=folder, check=False, timeout=120)
        vagrant("box", "remove", "acceptance-box", "--force", cwd=folder, check=False)


def test_up_runs_triggers(machine: Machine) -> None:
    out = machine.up.stdout + machine.up.stderr
    for text in ("One, two, three...", "Host says hello before up", "Host says hello after up",
                 "This one fails", "trigger Failing, on purpose failed, continuing",
                 "greetings from acceptance", "Before every command but destroy"):
        assert text in out, text


def test_shell_provisioners(vagrant: Vagrant, machine: Machine) -> None:
    def cat(path: str) -> str:
        r = vagrant("ssh", "-c", f"cat {path}", cwd=machine.folder)
        return r.stdout

    assert cat("/acceptance-inline") == "inline\n"
    assert cat("/acceptance-path") == "from-a-path\n"
    assert cat("/acceptance-args") == "hello\ntwo words\n"
    assert cat("/tmp/acceptance-privileged") == "root\n"
    assert cat("/tmp/acceptance-unprivileged") == "vagrant\n"


def test_synced_folder_rsync(vagrant: Vagrant, machine: Machine) -> None:
    assert vagrant("ssh", "-c", "cat /acceptance-rsync/hello", cwd=machine.folder).stdout == "hello\n"
    assert vagrant("ssh", "-c", "test -d /never", cwd=machine.folder, check=False).returncode == 1
    (machine.folder / "bar").write_text("goodbye\n")
    vagrant("rsync", cwd=machine.folder)
    assert vagrant("ssh", "-c", "cat /acceptance-rsync/bar", cwd=machine.folder).stdout == "goodbye\n"


def test_forwarded_port(vagrant: Vagrant, machine: Machine) -> None:
    vagrant("ssh", "-c", "mkdir -p /tmp/www && echo served > /tmp/www/index.html && "
            "busybox httpd -p 8080 -h /tmp/www", cwd=machine.folder)
    assert vagrant("port", "--guest", "8080", cwd=machine.folder).stdout == f"{machine.web_port}\n"
    deadline = time.monotonic() + 30
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{machine.web_port}/", timeout=5) as resp:
                assert (resp.status, resp.read()) == (200, b"served\n")
                break
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(1)


def test_machine_readable_and_ssh_config(vagrant: Vagrant, machine: Machine) -> None:
    lines = vagrant("status", "--machine-readable", cwd=machine.folder).stdout.splitlines()
    fields = [line.split(",", 3) for line in lines]
    assert [f[1:] for f in fields[:3]] == [["default", "metadata", "provider,libvirt"],
                                          ["default", "provider-name", "libvirt"],
                                          ["default", "state", "running"]]
    assert all(f[0].isdigit() for f in fields)
    ports = vagrant("port", "--machine-readable", cwd=machine.folder).stdout
    assert f",default,forwarded_port,8080,{machine.web_port}" in ports
    config = machine.folder / "ssh-config"
    config.write_text(vagrant("ssh-config", "--host", "acceptance-host", cwd=machine.folder).stdout)
    plain = subprocess.run(["ssh", "-F", str(config), "acceptance-host", "echo via-openssh"],
                           capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL, check=False)
    assert plain.stdout == "via-openssh\n", plain.stderr


def test_upload(vagrant: Vagrant, machine: Machine) -> None:
    site = machine.folder / "site"
    (site / "css").mkdir(parents=True)
    (site / "index.html").write_text("<p>hi</p>\n")
    (site / "css" / "a.css").write_text("p {}\n")
    script = machine.folder / "job.sh"
    script.write_text("#!/bin/sh\necho job\n")
    script.chmod(0o755)
    f = machine.folder

    def ssh(cmd: str) -> str:
        return vagrant("ssh", "-c", cmd, cwd=f).stdout

    vagrant("upload", "job.sh", cwd=f)
    assert ssh("./job.sh") == "job\n"  # to the user's home, mode kept
    vagrant("upload", "site", "/tmp/site", "default", cwd=f)
    assert ssh("cat /tmp/site/index.html /tmp/site/css/a.css") == "<p>hi</p>\np {}\n"
    vagrant("upload", "--compress", "site", "/tmp/site-tgz", cwd=f)
    assert ssh("cat /tmp/site-tgz/css/a.css") == "p {}\n"
    vagrant("upload", "-C", "zip", "site", "/tmp/site-zip", cwd=f)
    assert ssh("cat /tmp/site-zip/index.html") == "<p>hi</p>\n"
    temp = vagrant("upload", "--temporary", "job.sh", cwd=f).stdout
    where = temp.strip().splitlines()[-1].split("Destination: ")[1]
    assert where.startswith("/tmp/vmctl-") and where.endswith(".sh")
    assert ssh(f"{where}") == "job\n"
    assert stat.S_IMODE(script.stat().st_mode) == 0o755
    denied = vagrant("upload", "job.sh", "/etc/job.sh", cwd=f, check=False)
    assert denied.returncode == 1 and "error: the upload of job.sh failed" in denied.stderr


def test_basic_lifecycle(vagrant: Vagrant, machine: Machine) -> None:
    """provider/basic: running after up; suspend, no ssh; resume, ssh; halt, no ssh; up,
    ssh; destroy (with its triggers)."""
    f = machine.folder
    vagrant.assert_running(f)
    vagrant("suspend", cwd=f)
    vagrant.assert_not_running(f)
    vagrant("resume", cwd=f)
    vagrant.assert_running(f)
    halted = vagrant("halt", "--machine-readable", cwd=f)
    vagrant.assert_not_running(f)
    up = vagrant("--machine-readable", "up", cwd=f)
    vagrant.assert_running(f)
    # machine-readable: every line is TIMESTAMP,TARGET,TYPE,DATA, messages about the machine
    # name it, nothing on stderr
    for r in (halted, up):
        assert r.stderr == ""
        assert all(re.fullmatch(r"\d+,[^,]*,[a-z-]+(,.*)?", line) for line in r.stdout.splitlines()), r.stdout
    assert re.search(r"^\d+,default,ui,info,==> default: shutting down gracefully", halted.stdout, re.M)
    assert re.search(r"^\d+,default,ui,info,==> default: booting the machine", up.stdout, re.M)
    gone = vagrant("destroy", "--force", cwd=f, env={"VMCTL_ALLOW_HOST_TRIGGERS": "1"})
    out = gone.stdout + gone.stderr
    for text in ("Destroying now", "Host says goodbye before destroy", "Destroyed",
                 "Host says goodbye after destroy"):
        assert text in out, text
    assert "Before every command but destroy" not in out
    assert ",default,state,not_created" in vagrant("status", "--machine-readable", cwd=f).stdout


def test_destroy_on_error(vagrant: Vagrant, tiny_box: Path, tmp_path: Path) -> None:
    """A new machine that does not answer in time is removed, unless --no-destroy-on-error
    keeps it to look at (then destroy removes it)."""
    folder = tmp_path / "never-ready"
    folder.mkdir()
    folder.chmod(0o755)
    (folder / "Vagrantfile").write_text(textwrap.dedent("""\
        Vagrant.configure("2") do |config|
          config.vm.box = "vmctl/tiny"
          config.vm.boot_timeout = 1
          config.vm.synced_folder ".", "/vagrant", disabled: true
        end
    """))
    try:
        first = vagrant("up", "--provider", "libvirt", cwd=folder, check=False)
        assert first.returncode == 1 and "did not answer SSH within 1 s" in first.stderr
        assert ",default,state,not_created" in vagrant("status", "--machine-readable", cwd=folder).stdout
        kept = vagrant("up", "--no-destroy-on-error", cwd=folder, check=False)
        assert kept.returncode == 1
        assert "hint: the machine is kept as it is (--no-destroy-on-error)" in kept.stderr
        state = vagrant("status", "--machine-readable", cwd=folder).stdout
        assert ",default,state,not_created" not in state
    finally:
        vagrant("destroy", "-f", cwd=folder, check=False, timeout=120)
    assert ",default,state,not_created" in vagrant("status", "--machine-readable", cwd=folder).stdout


def test_reload_force_right_after_up(vagrant: Vagrant, tiny_box: Path, tmp_path: Path) -> None:
    """`reload --force` pulls the plug at once: the machine key written during `up` must
    already be on the guest's disk, or OpenSSH (given only that key) is refused after."""
    folder = tmp_path / "force"
    folder.mkdir()
    folder.chmod(0o755)
    (folder / "Vagrantfile").write_text(textwrap.dedent("""\
        Vagrant.configure("2") do |config|
          config.vm.box = "vmctl/tiny"
          config.vm.synced_folder ".", "/vagrant", disabled: true
        end
    """))
    try:
        vagrant("up", cwd=folder)
        forced = vagrant("reload", "--force", cwd=folder)
        assert "forcing shutdown" in forced.stderr
        vagrant.assert_running(folder)
    finally:
        vagrant("destroy", "-f", cwd=folder, check=False, timeout=120)
