"""The whole machine lifecycle on real TCG guests of the tiny box, through the CLI."""

from __future__ import annotations

import json
import socket
import stat
import subprocess
from pathlib import Path

from conftest import Vmctl, write_vagrantfile

INSECURE_BLOB = "AAAAC3NzaC1lZDI1NTE5AAAAIN1YdxBpNlzxDqfJyw/QKow1F+wvG9hXGoqiysfJOn5Y"


def listening(port: int) -> list[str]:
    """Local addresses listening on PORT (from ss, as the issue asks)."""
    out = subprocess.run(["ss", "-ltnH"], capture_output=True, text=True, check=True).stdout
    found = []
    for line in out.splitlines():
        local = line.split()[3]
        addr, _, p = local.rpartition(":")
        if p == str(port):
            found.append(addr)
    return found


def occupied_port() -> tuple[socket.socket, int]:
    """A port some other program listens on (on 127.0.0.1), for collision tests."""
    blocker = socket.socket()
    blocker.bind(("127.0.0.1", 0))
    blocker.listen()
    return blocker, blocker.getsockname()[1]


def test_lifecycle(vmctl: Vmctl, tiny_box: Path, project: Path, destroy_after: list[Path]) -> None:
    (project / "hello.txt").write_text("synced\n")
    write_vagrantfile(project, """
        Vagrant.configure("2") do |config|
          config.vm.box = "vmctl/tiny"
          config.vm.hostname = "lifecycle"
          config.vm.network "forwarded_port", guest: 80, host: 18080, id: "web"
          config.vm.provision "shell", name: "count", inline: <<-SHELL
            echo run >> /root/provision-count
            echo "provisioned as $(id -un)"
          SHELL
          config.vm.provision "file", source: "hello.txt", destination: "/home/vagrant/copied.txt"
          config.vm.provider :libvirt do |lv|
            lv.memory = 256
            lv.machine_virtual_size = 6
          end
        end
    """)
    destroy_after.append(project)

    up = vmctl("up", cwd=project)
    # machine_virtual_size grows the overlay (the box's disk is 4 GB).
    sectors = vmctl("ssh", "-c", "cat /sys/block/vda/size", cwd=project).stdout
    assert int(sectors) * 512 == 6 * 1024**3
    assert "provisioned as root" in up.stdout
    assert "    default: " in up.stdout  # provisioner output is prefixed with the machine

    status = vmctl("status", "--json", cwd=project).json()
    [m] = status["machines"]
    assert m["name"] == "default" and m["state"] == "running"
    assert m["ssh"]["host"] == "127.0.0.1" and 2200 <= m["ssh"]["port"] <= 2299
    assert m["ssh"]["user"] == "vagrant"
    key = Path(m["ssh"]["private_key"])
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    web = next(p for p in m["forwarded_ports"] if p["id"] == "web")
    assert web["host"] == 18080 and web["host_ip"] == "127.0.0.1"

    # Forwarded ports listen on 127.0.0.1 only.
    assert listening(m["ssh"]["port"]) == ["127.0.0.1"]
    assert listening(18080) == ["127.0.0.1"]

    # ssh -c: the command's status, stdout and stderr kept apart.
    r = vmctl("ssh", "-c", "hostname; echo to-err >&2; exit 3", cwd=project, check=False)
    assert r.returncode == 3
    assert r.stdout.strip() == "lifecycle"
    assert "to-err" in r.stderr and "to-err" not in r.stdout
    # ... through the fast path (vmctl/cli/fast_ssh.py): OpenSSH exec'd with none of the
    # machine layer imported on the way (Python's import log shows what was).
    fast = vmctl("ssh", "-c", "echo fast; echo err >&2; exit 4", cwd=project, check=False,
                 env={"PYTHONPROFILEIMPORTTIME": "1"})
    imported = {line.split("|")[-1].strip() for line in fast.stderr.splitlines() if line.startswith("import time:")}
    assert (fast.returncode, fast.stdout) == (4, "fast\n") and "err" in fast.stderr.splitlines()
    assert "vmctl.cli.fast_ssh" in imported and not imported & {"vmctl.project", "vmctl.machine", "typer"}, imported

    # The insecure key is gone; the machine key works; synced folder and file provisioner.
    keys = vmctl("ssh", "-c", "cat ~/.ssh/authorized_keys", cwd=project).stdout
    assert INSECURE_BLOB not in keys and "insecure" not in keys
    assert keys.count("ssh-") == 1
    assert vmctl("ssh", "-c", "cat /vagrant/hello.txt", cwd=project).stdout == "synced\n"
    assert vmctl("ssh", "-c", "cat ~/copied.txt", cwd=project).stdout == "synced\n"
    for f in (project / ".vmctl").rglob("*"):
        if f.is_file() and f.name in ("private_key", "known_hosts", "state.json"):
            assert stat.S_IMODE(f.stat().st_mode) == 0o600, f

    # Data survives halt and up; provisioners do not run again.
    vmctl("ssh", "-c", "echo kept > ~/data && sync", cwd=project)
    vmctl("halt", cwd=project)
    assert vmctl("status", "--json", cwd=project).json()["machines"][0]["state"] == "poweroff"
    stopped = vmctl("ssh", "-c", "true", cwd=project, check=False)
    assert stopped.returncode == 1 and "is not running" in stopped.stderr
    up2 = vmctl("up", cwd=project)
    assert "provisioned as" not in up2.stdout
    assert vmctl("ssh", "-c", "cat ~/data", cwd=project).stdout == "kept\n"
    assert vmctl("ssh", "-c", "sudo cat /root/provision-count", cwd=project).stdout == "run\n"

    # up on a running machine does nothing.
    again = vmctl("up", cwd=project)
    assert "already running" in again.stderr

    # suspend / resume
    vmctl("suspend", cwd=project)
    assert vmctl("status", "--json", cwd=project).json()["machines"][0]["state"] == "saved"
    vmctl("resume", cwd=project)
    assert vmctl("status", "--json", cwd=project).json()["machines"][0]["state"] == "running"
    assert vmctl("ssh", "-c", "cat ~/data", cwd=project).stdout == "kept\n"

    # reload, then provision again by name.
    vmctl("reload", cwd=project)
    assert vmctl("status", "--json", cwd=project).json()["machines"][0]["state"] == "running"
    vmctl("provision", "--provision-with", "count", cwd=project)
    assert vmctl("ssh", "-c", "sudo cat /root/provision-count", cwd=project).stdout == "run\nrun\n"

    # port: the SSH port now (another lane's or user's machine may have taken the first one
    # while this machine was halted: vmctl then chose another on up, as Vagrant does).
    ssh_now = vmctl("status", "--json", cwd=project).json()["machines"][0]["ssh"]["port"]
    assert 2200 <= ssh_now <= 2299
    ports = vmctl("port", "--json", cwd=project).json()["ports"]
    assert {(p["guest"], p["host"]) for p in ports} >= {(22, ssh_now), (80, 18080)}

    # ssh-config works with plain OpenSSH.
    cfg = project / "ssh_config"
    cfg.write_text(vmctl("ssh-config", cwd=project).stdout)
    plain = subprocess.run(["ssh", "-F", str(cfg), "default", "echo via-openssh"],
                           capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    assert plain.stdout.strip() == "via-openssh", plain.stderr

    # destroy removes everything, and running it twice is fine.
    domain = m["domain"]
    vmctl("destroy", "-f", cwd=project)
    assert vmctl("status", "--json", cwd=project).json()["machines"][0]["state"] == "not_created"
    assert not (project / ".vmctl" / "machines" / "default").exists()
    index = json.loads((vmctl.home / "index.json").read_text())["machines"]
    assert not [e for e in index.values() if e["project"] == str(project)]
    assert domain not in vmctl("global-status", "--json").stdout
    assert not any((vmctl.home / "machines").iterdir())
    vmctl("destroy", "-f", cwd=project)


def test_destroy_without_terminal_needs_force(vmctl: Vmctl, tiny_box: Path, project: Path) -> None:
    write_vagrantfile(project, 'Vagrant.configure("2") { |c| c.vm.box = "vmctl/tiny" }\n')
    r = vmctl("destroy", cwd=project, check=False)
    assert r.returncode != 0
    assert "-f" in r.stderr and "Traceback" not in r.stderr


def test_two_machines_in_parallel_with_port_collision(
    vmctl: Vmctl, tiny_box: Path, project: Path, destroy_after: list[Path]
) -> None:
    blocker, taken = occupied_port()
    write_vagrantfile(project, f"""
        Vagrant.configure("2") do |config|
          config.vm.box = "vmctl/tiny"
          config.vm.synced_folder ".", "/vagrant", disabled: true
          config.vm.provider :libvirt do |lv|
            lv.memory = 256
          end
          ["one", "two"].each do |name|
            config.vm.define name do |m|
              m.vm.hostname = name
              m.vm.network "forwarded_port", guest: 80, host: {taken}, auto_correct: true
            end
          end
        end
    """)
    destroy_after.append(project)
    try:
        up = vmctl("up", cwd=project)
    finally:
        blocker.close()
    assert up.stderr.count("fixed port collision") == 2
    machines = vmctl("status", "--json", cwd=project).json()["machines"]
    assert [m["state"] for m in machines] == ["running", "running"]
    hosts = [p["host"] for m in machines for p in m["forwarded_ports"]]
    assert len(hosts) == len(set(hosts)) == 4 and taken not in hosts
    assert vmctl("ssh", "two", "-c", "hostname", cwd=project).stdout.strip() == "two"
    vmctl("destroy", "-f", cwd=project)
    states = [m["state"] for m in vmctl("status", "--json", cwd=project).json()["machines"]]
    assert states == ["not_created", "not_created"]


def test_taken_port_without_auto_correct_is_a_clear_error(
    vmctl: Vmctl, tiny_box: Path, project: Path, destroy_after: list[Path]
) -> None:
    blocker, taken = occupied_port()
    write_vagrantfile(project, f"""
        Vagrant.configure("2") do |config|
          config.vm.box = "vmctl/tiny"
          config.vm.network "forwarded_port", guest: 80, host: {taken}
        end
    """)
    destroy_after.append(project)
    try:
        r = vmctl("up", cwd=project, check=False)
    finally:
        blocker.close()
    assert r.returncode == 1
    assert f"host port {taken}" in r.stderr and "hint: " in r.stderr
    assert "Traceback" not in r.stderr
    assert vmctl("status", "--json", cwd=project).json()["machines"][0]["state"] == "not_created"


def test_guest_that_never_answers_is_removed_with_console_tail(
    vmctl: Vmctl, tiny_box: Path, project: Path, destroy_after: list[Path]
) -> None:
    write_vagrantfile(project, """
        Vagrant.configure("2") do |config|
          config.vm.box = "vmctl/tiny"
          config.vm.boot_timeout = 15
          config.vm.provider :libvirt do |lv|
            lv.cmd_line = "root=/dev/vda rw console=ttyS0 init=/bin/vmctl-no-such-init panic=0"
          end
        end
    """)
    destroy_after.append(project)
    r = vmctl("up", cwd=project, check=False, timeout=120)
    assert r.returncode == 1
    assert "serial console" in r.stderr
    assert "Traceback" not in r.stderr
    assert vmctl("status", "--json", cwd=project).json()["machines"][0]["state"] == "not_created"
    assert not (project / ".vmctl" / "machines" / "default").exists()


def test_missing_box_is_a_clear_error(vmctl: Vmctl, project: Path) -> None:
    """A box name that is not installed is looked up on the registry (here a local server
    that knows no box); not found there, `up` says so in one line and makes nothing."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    asked: list[str] = []

    class Registry(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def do_GET(self) -> None:  # noqa: N802 - http.server's naming
            asked.append(f"{self.path} {self.headers.get('Accept')}")
            self.send_response(404)
            self.send_header("Content-Length", "0")
            self.end_headers()

    server = ThreadingHTTPServer(("127.0.0.1", 0), Registry)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        write_vagrantfile(project, 'Vagrant.configure("2") { |c| c.vm.box = "nobody/nothing" }\n')
        r = vmctl("up", cwd=project, check=False, env={"VAGRANT_SERVER_URL": url})
    finally:
        server.shutdown()
    assert r.returncode == 1
    assert f"error: box nobody/nothing was not found on {url}\n" in r.stderr
    assert "hint: " in r.stderr and "Traceback" not in r.stderr
    assert asked == ["/nobody/nothing application/json"]
    assert vmctl("status", "--json", cwd=project).json()["machines"][0]["state"] == "not_created"
