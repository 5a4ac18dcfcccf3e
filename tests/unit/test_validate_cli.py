"""`vmctl validate [--json]`: exact output and exit status, on an isolated project."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from cli_runner import Outcome, run_commands

from vmctl.cli import validate as validate_cli

CORPUS = Path(__file__).resolve().parent.parent / "vagrantfiles"


def run_validate(*args: str) -> Outcome:
    """Invoke `vmctl validate ARGS` on an app holding only those commands."""
    return run_commands(validate_cli.register, "validate", *args)


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty project folder as the current directory, with no box store to consult."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("VMCTL_VAGRANTFILE", raising=False)
    monkeypatch.setenv("VMCTL_HOME", str(tmp_path / ".vmctl-home"))
    monkeypatch.setenv("HOME", "/home/tester")
    return tmp_path


def write(folder: Path, code: str) -> None:
    (folder / "Vagrantfile").write_text(textwrap.dedent(code))


VALID = """
puts "hello from the Vagrantfile"
Vagrant.configure("2") do |config|
  config.vm.box = "debian/bookworm64"
  config.ssh.compression = true
  config.vm.define "web", primary: true do |web|
    web.vm.hostname = "web"
    web.vm.network "forwarded_port", guest: 80, host: 8080
    web.vm.network "private_network", ip: "192.168.56.10"
    web.vm.provider :libvirt do |lv|
      lv.memory = 1024
      lv.cpus = 2
    end
    web.vm.provision "shell", inline: "echo hi"
  end
  config.vm.define "db", autostart: false do |db|
    db.ssh.insert_key = false
  end
end
"""


def test_human_output(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write(project, VALID)
    monkeypatch.setattr("os.geteuid", lambda: 0)  # as root, the host reaches the private network
    out = run_validate()
    assert out.code == 0
    assert out.stdout == (
        f"{project / 'Vagrantfile'}: valid, 2 machines\n"
        "web: box debian/bookworm64, 2 cpus, 1024 MiB, hostname web, primary\n"
        "  port 127.0.0.1:8080 -> 80/tcp\n"
        "  private network 192.168.56.10/255.255.255.0\n"
        f"  synced folder {project} -> /vagrant (rsync)\n"
        "  provision shell: inline script (run once)\n"
        "  ssh user vagrant\n"
        "db: box debian/bookworm64, 1 cpu, 512 MiB, no autostart\n"
        f"  synced folder {project} -> /vagrant (rsync)\n"
        "  ssh user vagrant, insecure key kept\n"
    )
    assert out.stderr == (
        "hello from the Vagrantfile\n"
        "warning: Vagrantfile:5: config.ssh.compression is not used by vmctl (ignored)\n"
    )


def test_json_output(project: Path) -> None:
    write(project, VALID)
    out = run_validate("--json")
    assert out.code == 0
    document = json.loads(out.stdout)
    assert document["valid"] is True
    assert [m["name"] for m in document["machines"]] == ["web", "db"]
    web = document["machines"][0]
    assert {k: web[k] for k in ("box", "box_version", "box_url", "hostname", "cpus", "memory")} == {
        "box": "debian/bookworm64", "box_version": None, "box_url": None, "hostname": "web", "cpus": 2, "memory": 1024,
    }
    assert web["forwarded_ports"] == [
        {"guest": 80, "host": 8080, "host_ip": "127.0.0.1", "protocol": "tcp", "auto_correct": False, "id": None}
    ]
    assert web["private_networks"][0]["ip"] == "192.168.56.10"
    assert web["synced_folders"][0] | {"host": "?"} == {
        "host": "?", "guest": "/vagrant", "type": "rsync", "disabled": False, "owner": None, "group": None,
        "rsync__exclude": [], "rsync__args": None,
    }
    assert web["provisioners"][0]["inline"] == "echo hi"
    assert web["ssh"] == {
        "username": "vagrant", "insert_key": True, "private_key_path": None, "port": None, "guest_port": None,
        "shell": None, "sudo_command": None, "pty": False, "keep_alive": True, "connect_timeout": None,
        "forward_agent": False, "forward_x11": False, "forward_env": [], "keys_only": True, "extra_args": [],
        "config": None, "remote_user": None,
    }
    assert web["libvirt"]["memory"] == 1024 and web["libvirt"]["disks"] == [] and web["disks"] == []
    assert document["warnings"] == ["Vagrantfile:5: config.ssh.compression is not used by vmctl (ignored)"]
    assert out.stderr == "hello from the Vagrantfile\n"


def test_invalid_file(project: Path) -> None:
    write(project, 'Vagrant.configure("2") do |config|\n  config.vm.bxo = "x"\nend\n')
    out = run_validate()
    assert (out.code, out.stdout) == (1, "")
    assert out.stderr == (
        "error: unknown setting `config.vm.bxo` at Vagrantfile:2\n"
        '    config.vm.bxo = "x"\n'
        "hint: did you mean `config.vm.box`?\n"
    )
    out = run_validate("--json")
    assert out.code == 1
    assert json.loads(out.stdout) == {
        "valid": False,
        "error": {"message": "unknown setting `config.vm.bxo`", "file": "Vagrantfile", "line": 2,
                  "hint": "did you mean `config.vm.box`?"},
    }


def test_refused_construct_json(project: Path) -> None:
    write(project, "x = 1\nsystem('rm -rf /')\n")
    document = json.loads(run_validate("--json").stdout)
    assert document["error"]["message"] == "unsupported construct `system` (runs a host command)"
    assert (document["error"]["file"], document["error"]["line"]) == ("Vagrantfile", 2)


def test_no_vagrantfile(project: Path) -> None:
    out = run_validate()
    assert out.code == 1 and out.stderr.startswith("error: no Vagrantfile here or in any parent folder\n")
    document = json.loads(run_validate("--json").stdout)
    assert document["valid"] is False and document["error"]["file"] is None


def test_found_in_a_parent_folder_and_through_vmctl_vagrantfile(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write(project, 'Vagrant.configure("2") { |c| c.vm.box = "parent" }\n')
    (project / "sub" / "deeper").mkdir(parents=True)
    monkeypatch.chdir(project / "sub" / "deeper")
    assert json.loads(run_validate("--json").stdout)["machines"][0]["box"] == "parent"
    other = project / "other.rb"
    other.write_text('Vagrant.configure("2") { |c| c.vm.box = "other" }\n')
    monkeypatch.setenv("VMCTL_VAGRANTFILE", str(other))
    assert json.loads(run_validate("--json").stdout)["machines"][0]["box"] == "other"


def test_corpus_case_through_the_cli(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The CLI prints the same document the corpus test checks."""
    case = CORPUS / "kubernetes-cluster"
    monkeypatch.chdir(case)
    out = run_validate("--json")
    document = json.loads(out.stdout.replace(str(case), "$PROJECT"))
    assert document == json.loads((case / "expected.json").read_text())


def test_box_vagrantfile_comes_from_the_box_store(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    box_file = project / "box" / "Vagrantfile"
    box_file.parent.mkdir()
    box_file.write_text('Vagrant.configure("2") { |c| c.ssh.username = "core" }\n')
    seen = project / "lookups"  # a file: the Vagrantfile is evaluated in a child process

    def find_box_vagrantfile(name: str, constraint: str | None = None) -> Path | None:
        with seen.open("a") as f:
            f.write(f"{name} {constraint}\n")
        return box_file

    import vmctl.boxes.installed

    monkeypatch.setattr(vmctl.boxes.installed, "find_box_vagrantfile", find_box_vagrantfile)
    write(project, 'Vagrant.configure("2") { |c| c.vm.box = "acme/core"; c.vm.box_version = "1.2" }\n')
    document = json.loads(run_validate("--json").stdout)
    assert document["machines"][0]["ssh"]["username"] == "core"
    assert seen.read_text() == "acme/core 1.2\n"


def test_the_installed_command(project: Path) -> None:
    write(project, 'Vagrant.configure("2") { |c| c.vm.box = "x" }\n')
    result = subprocess.run([sys.executable, "-m", "vmctl", "validate", "--json"], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["machines"][0]["box"] == "x"
    write(project, "raise 'stop'\n")
    result = subprocess.run([sys.executable, "-m", "vmctl", "validate"], capture_output=True, text=True)
    assert result.returncode == 1
    assert result.stderr == "error: Vagrantfile aborted: stop at Vagrantfile:1\n    raise 'stop'\n"


def test_a_private_network_the_host_cannot_reach_is_said_plainly(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write(project, """
    Vagrant.configure("2") do |config|
      config.vm.network "private_network", ip: "192.168.56.10"
      config.vm.network "private_network", ip: "192.168.57.10", libvirt__tunnel_type: "mcast"
    end
    """)
    monkeypatch.setattr("os.geteuid", lambda: 1000)
    out = run_validate()
    assert out.code == 0
    assert "the host cannot reach the private network address 192.168.56.10" in out.stderr
    assert "192.168.57.10" not in out.stderr  # a tunnel the Vagrantfile asked for
    assert "  private network 192.168.57.10/255.255.255.0 (mcast tunnel)\n" in out.stdout
    monkeypatch.setattr("os.geteuid", lambda: 0)
    assert "cannot reach" not in run_validate().stderr
