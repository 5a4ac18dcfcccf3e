"""What the provisioners do in a guest, with a fake SSH session: shell reboot/reset, reload,
docker (and its container script against a fake docker), ansible_local, cloud-init's wait,
synced folders without rsync; failures name the provisioner and its exit status; the
project runs ansible with limit "all" once."""

from __future__ import annotations

import io
import subprocess
import tarfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from vmctl import guest, provision
from vmctl.errors import ProvisionError
from vmctl.provision import docker
from vmctl.ssh import Endpoint
from vmctl.vagrantfile.model import (
    AnsibleSettings,
    DockerBuild,
    DockerRun,
    DockerSettings,
    Provisioner,
    SyncedFolder,
)


@dataclass
class FakeSession:
    """Answers commands by the first matching rule (a substring -> (status, stdout))."""

    rules: list[tuple[str, tuple[int, bytes]]] = field(default_factory=list)
    commands: list[str] = field(default_factory=list)
    uploads: dict[str, bytes] = field(default_factory=dict)
    stdins: list[bytes] = field(default_factory=list)
    closed: bool = False
    endpoint: Endpoint = field(default_factory=lambda: Endpoint(
        host="127.0.0.1", port=2222, user="vagrant", alias="m", known_hosts=Path("/nonexistent"), keys=()))

    def run(self, command: str, *, stdin: bytes | None = None, on_stdout: Callable[[bytes], None] | None = None,
            on_stderr: Callable[[bytes], None] | None = None, timeout: float | None = None,
            pty: bool = False) -> tuple[int, bytes, bytes]:
        self.commands.append(command)
        if stdin is not None:
            self.stdins.append(stdin)
        for pattern, (status, out) in self.rules:
            if pattern in command:
                if on_stdout is not None:
                    on_stdout(out)
                    out = b""
                return status, out, b""
        return 0, b"", b""

    def check(self, command: str, *, stdin: bytes | None = None, what: str) -> bytes:
        status, out, _ = self.run(command, stdin=stdin)
        assert status == 0, command
        return out

    def upload(self, data: bytes, path: str, *, mode: str = "0644", sudo: bool = False) -> None:
        self.uploads[path] = data

    def close(self) -> None:
        self.closed = True


def context(session: FakeSession, tmp_path: Path, **kwargs: object) -> tuple[provision.Context, list[str]]:
    lines: list[str] = []
    ctx = provision.Context(machine="web", project_root=tmp_path, session=session, emit=lines.append,  # type: ignore[arg-type]
                            say=lines.append, **kwargs)  # type: ignore[arg-type]
    return ctx, lines


def test_shell_reboot_replaces_the_session(tmp_path: Path) -> None:
    old, new = FakeSession(), FakeSession()
    seen: list[object] = []

    def reboot(s: object) -> FakeSession:
        seen.append(s)
        return new

    ctx, lines = context(old, tmp_path, reboot=reboot)
    p = Provisioner(type="shell", inline="echo hi", reboot=True)
    result = provision.run_provisioner(old, p, 0, machine="web", project_root=tmp_path, emit=lines.append, context=ctx)  # type: ignore[arg-type]
    assert result is new and seen == [old]
    assert "==> web: rebooting the guest (reboot: true)..." in lines
    assert old.uploads["/tmp/vmctl-shell-shell--1"] == b"echo hi"


def test_shell_reset_logs_in_again(tmp_path: Path) -> None:
    old, new = FakeSession(), FakeSession()
    ctx, lines = context(old, tmp_path, reconnect=lambda s: new)
    p = Provisioner(type="shell", inline="usermod -aG docker vagrant", reset=True)
    assert provision.run_provisioner(old, p, 0, machine="web", project_root=tmp_path, emit=lines.append, context=ctx) is new  # type: ignore[arg-type]


def test_a_failed_shell_does_not_reboot_and_names_itself(tmp_path: Path) -> None:
    s = FakeSession(rules=[("sudo -n sh -c", (3, b"boom\n"))])
    ctx, lines = context(s, tmp_path, reboot=lambda s: pytest.fail("rebooted after a failure"))
    p = Provisioner(type="shell", name="setup", inline="false", reboot=True)
    with pytest.raises(ProvisionError) as info:
        provision.run_provisioner(s, p, 0, machine="web", project_root=tmp_path, emit=lines.append, context=ctx)  # type: ignore[arg-type]
    assert info.value.message == "web: provisioner setup failed with exit status 3"
    assert info.value.hint == "fix it, then run: vmctl provision web --provision-with setup"
    assert "    web: boom" in lines


def test_reload_provisioner(tmp_path: Path) -> None:
    old, new = FakeSession(), FakeSession()
    ctx, lines = context(old, tmp_path, reload=lambda s: new)
    p = Provisioner(type="reload")
    assert provision.run_provisioner(old, p, 1, machine="web", project_root=tmp_path, emit=lines.append, context=ctx) is new  # type: ignore[arg-type]
    assert lines == ["==> web: reloading the machine..."]
    assert provision.label(p, 1) == "reload #2"


def test_project_wide_is_ansible_with_limit_all() -> None:
    assert provision.project_wide(Provisioner(type="ansible", ansible=AnsibleSettings(playbook="p", limit="all")))
    assert not provision.project_wide(Provisioner(type="ansible", ansible=AnsibleSettings(playbook="p", limit="web")))
    assert not provision.project_wide(Provisioner(type="ansible_local", ansible=AnsibleSettings(playbook="p", limit="all")))


# --- docker -------------------------------------------------------------------------------------

DOCKER = DockerSettings(
    images=("redis:7",),
    build_images=(DockerBuild("/vagrant/app", "-t app"),),
    runs=(DockerRun(name="web", image="nginx", args="-p 80:80"),),
    post_install=Provisioner(type="shell", inline="echo post-install", run="always"),
)


def test_docker_installs_then_post_install_then_images_builds_and_containers(tmp_path: Path) -> None:
    s = FakeSession(rules=[("command -v docker", (1, b""))])
    ctx, lines = context(s, tmp_path)
    p = Provisioner(type="docker", docker=DOCKER)
    provision.run_provisioner(s, p, 0, machine="web", project_root=tmp_path, emit=lines.append, context=ctx)  # type: ignore[arg-type]
    joined = "\n".join(s.commands)
    order = [joined.index(x) for x in ("docker.io", "/tmp/vmctl-shell-docker--1-post-install", "docker version",
                                       "docker pull redis:7", "docker build -t app /vagrant/app", "docker run --cidfile=")]
    assert order == sorted(order)
    assert "==> web: installing docker in the guest..." in lines and "    web: running container web..." in lines


def test_docker_already_installed_skips_the_post_install(tmp_path: Path) -> None:
    s = FakeSession()
    ctx, lines = context(s, tmp_path)
    provision.run_provisioner(s, Provisioner(type="docker", docker=DOCKER), 0, machine="web", project_root=tmp_path,  # type: ignore[arg-type]
                              emit=lines.append, context=ctx)
    assert not any("docker.io" in c or "post-install" in c for c in s.commands)


def test_docker_failure_names_the_step(tmp_path: Path) -> None:
    s = FakeSession(rules=[("docker pull", (125, b"pull access denied\n"))])
    ctx, lines = context(s, tmp_path)
    with pytest.raises(ProvisionError) as info:
        provision.run_provisioner(s, Provisioner(type="docker", docker=DOCKER), 2, machine="web",  # type: ignore[arg-type]
                                  project_root=tmp_path, emit=lines.append, context=ctx)
    assert info.value.message == "web: provisioner docker #3 failed with exit status 125 (docker pull redis:7)"


def test_docker_not_running(tmp_path: Path) -> None:
    s = FakeSession(rules=[("docker version", (1, b""))])
    ctx, lines = context(s, tmp_path)
    with pytest.raises(ProvisionError, match="docker is not running in the guest"):
        provision.run_provisioner(s, Provisioner(type="docker", docker=DOCKER), 0, machine="web",  # type: ignore[arg-type]
                                  project_root=tmp_path, emit=lines.append, context=ctx)


def test_docker_run_arguments_as_vagrant_builds_them() -> None:
    run = DockerRun(name="my/app", image="img:1", cmd="sleep 1", args="-v /x:/y", restart="no")
    assert docker.run_args(run) == (f"--cidfile={docker.cid_path(run)} -d --name my-app --restart=no -v /x:/y img:1 sleep 1")
    plain = DockerRun(name="w", image="w", daemonize=False, auto_assign_name=False, restart=None)
    assert docker.run_args(plain) == f"--cidfile={docker.cid_path(plain)}  w"


FAKE_DOCKER = r"""#!/bin/sh
# A docker that keeps its containers as files: STATE/ID holds "running" or "stopped".
state="$FAKE_DOCKER_STATE"; mkdir -p "$state"
echo "docker $*" >> "$state/log"
case "$1" in
  run)
    shift; cid=""
    for a in "$@"; do case "$a" in --cidfile=*) cid="${a#--cidfile=}";; esac; done
    id=$(date +%s%N | sha256sum | cut -c1-64); echo running > "$state/$id"; echo "$id" > "$cid"; echo "$id" ;;
  ps)
    for f in "$state"/*; do n=$(basename "$f"); [ "$n" = log ] && continue
      if [ "$2" = "-a" ] || [ "$(cat "$f")" = running ]; then echo "$n"; fi; done ;;
  start) echo running > "$state/$2" ;;
  stop) echo stopped > "$state/$2" ;;
  rm) rm -f "$state/$2" ;;
  inspect) echo sha256:image1 ;;
  images) echo sha256:image1 ;;
esac
"""


def test_docker_container_script_against_a_fake_docker(tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "docker").write_text(FAKE_DOCKER)
    (bin_dir / "docker").chmod(0o755)
    state = tmp_path / "state"
    env = {"PATH": f"{bin_dir}:/usr/bin:/bin", "FAKE_DOCKER_STATE": str(state)}
    cids = str(tmp_path / "cids")

    def apply(run: DockerRun) -> list[str]:
        before = (state / "log").read_text().splitlines() if (state / "log").exists() else []
        subprocess.run(["sh", "-c", docker.container_script(run, cids)], env=env, check=True, capture_output=True)
        return [line.split()[1] for line in (state / "log").read_text().splitlines()[len(before):]
                if line.split()[1] in ("run", "start", "stop", "rm")]

    web = DockerRun(name="web", image="nginx", args="-p 80:80")
    assert apply(web) == ["run"]  # made
    assert apply(web) == []  # running, same settings: left alone
    (first,) = [f for f in state.iterdir() if f.name != "log"]
    first.write_text("stopped")
    assert apply(web) == ["start"]  # stopped: started again
    assert apply(DockerRun(name="web", image="nginx", args="-p 8080:80")) == ["stop", "rm", "run"]  # changed: made again


# --- ansible_local ---------------------------------------------------------------------------------

def test_ansible_local_flow(tmp_path: Path) -> None:
    s = FakeSession(rules=[("command -v ansible-playbook", (1, b""))])
    ctx, lines = context(s, tmp_path)
    p = Provisioner(type="ansible_local", ansible=AnsibleSettings(playbook="site.yml", groups={"web": ["web"]}))
    provision.run_provisioner(s, p, 0, machine="web", project_root=tmp_path, emit=lines.append, context=ctx)  # type: ignore[arg-type]
    assert s.commands[0] == "test -f /vagrant/site.yml"
    assert "installing ansible" in "\n".join(lines)
    inventory = s.uploads["/tmp/vagrant-ansible/inventory/vagrant_ansible_local_inventory"].decode()
    assert "ansible_connection: local" in inventory
    assert s.commands[-1].startswith("cd /vagrant && PYTHONUNBUFFERED=1")
    assert "--limit=web --inventory=/tmp/vagrant-ansible/inventory/vagrant_ansible_local_inventory site.yml" in s.commands[-1]


def test_ansible_local_without_install_and_missing(tmp_path: Path) -> None:
    s = FakeSession(rules=[("command -v ansible-playbook", (1, b""))])
    ctx, lines = context(s, tmp_path)
    p = Provisioner(type="ansible_local", ansible=AnsibleSettings(playbook="site.yml", install=False))
    with pytest.raises(ProvisionError, match="ansible-playbook is not installed in the guest"):
        provision.run_provisioner(s, p, 0, machine="web", project_root=tmp_path, emit=lines.append, context=ctx)  # type: ignore[arg-type]


def test_ansible_local_playbook_missing_in_the_guest(tmp_path: Path) -> None:
    s = FakeSession(rules=[("test -f", (1, b""))])
    ctx, lines = context(s, tmp_path)
    p = Provisioner(type="ansible_local", ansible=AnsibleSettings(playbook="site.yml"))
    with pytest.raises(ProvisionError, match="the playbook /vagrant/site.yml is not in the guest"):
        provision.run_provisioner(s, p, 0, machine="web", project_root=tmp_path, emit=lines.append, context=ctx)  # type: ignore[arg-type]


# --- guest: cloud-init, folders without rsync -------------------------------------------------------

def test_wait_for_cloud_init() -> None:
    assert guest.wait_for_cloud_init(FakeSession(rules=[("cloud-init", (0, b"vmctl-no-cloud-init\n"))]), timeout=5) == (False, 0, "")  # type: ignore[arg-type]
    assert guest.wait_for_cloud_init(FakeSession(rules=[("cloud-init", (0, b"vmctl-cloud-init-status=0\n"))]), timeout=5) == (True, 0, "")  # type: ignore[arg-type]
    failed = FakeSession(rules=[("cloud-init", (0, b"vmctl-cloud-init-status=1\nstatus: error\n--- the end\nboom\n"))])
    assert guest.wait_for_cloud_init(failed, timeout=5) == (True, 1, "status: error\n--- the end\nboom")  # type: ignore[arg-type]


def test_synced_folder_without_rsync_is_copied_with_tar(tmp_path: Path) -> None:
    host = tmp_path / "project"
    (host / "src").mkdir(parents=True)
    (host / "src" / "main.py").write_text("print(1)\n")
    (host / "README").write_text("hi\n")
    (host / ".vmctl" / "machines").mkdir(parents=True)
    (host / ".vmctl" / "machines" / "private_key").write_text("secret")
    (host / "node_modules").mkdir()
    (host / "node_modules" / "big.js").write_text("x")
    (host / "link-to-etc").symlink_to("/etc")
    (host / "link-to-readme").symlink_to(host / "README")
    s = FakeSession()
    folder = SyncedFolder(host=str(host), guest="/vagrant", rsync_exclude=("node_modules/",))
    guest.copy_folder_with_tar(s, folder, host, "vagrant", "vagrant")  # type: ignore[arg-type]
    assert "sudo -n tar -C /vagrant --no-same-owner -xf -" in s.commands[0]
    assert "chown -R vagrant:vagrant /vagrant" in s.commands[0]
    with tarfile.open(fileobj=io.BytesIO(s.stdins[0])) as tar:
        names = sorted(tar.getnames())
        assert tar.extractfile("link-to-readme").read() == b"hi\n"  # type: ignore[union-attr]
    assert names == ["README", "link-to-readme", "src", "src/main.py"]


# --- the project: ansible with limit "all" once ------------------------------------------------------

def test_run_deferred_runs_each_project_wide_provisioner_once(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from vmctl import project as project_mod
    from vmctl.provision import ansible

    p = Provisioner(type="ansible", ansible=AnsibleSettings(playbook="/p/site.yml", limit="all"))

    @dataclass
    class FakeMachine:
        name: str
        deferred: list
        running: bool = True

        @property
        def state(self) -> object:
            return type("St", (), {"phase": "created"})()

        def _qemu_running(self) -> bool:
            return self.running

        def inventory_host(self) -> str:
            return self.name

    web, db, off = FakeMachine("web", [(2, p)]), FakeMachine("db", [(2, p)]), FakeMachine("off", [], running=False)
    project = type("P", (), {"root": tmp_path, "all_machines": lambda self: [web, db, off]})()
    calls: list[tuple] = []
    monkeypatch.setattr(ansible, "run_project_wide", lambda prov, name, hosts, **kw: calls.append((name, hosts)))
    said: list[str] = []
    assert project_mod.run_deferred(project, [web, db], emit=said.append, emit_output=said.append) == []  # type: ignore[arg-type]
    assert calls == [("ansible #3", ["web", "db"])]
    assert web.deferred == [] and db.deferred == []
    # when machines failed to come up, it does not run, and says so
    web.deferred = [(2, p)]
    assert project_mod.run_deferred(project, [web], emit=said.append, emit_output=said.append, failed=1) == []  # type: ignore[arg-type]
    assert len(calls) == 1 and "did not come up" in said[-1]


def test_up_shows_cloud_inits_failure() -> None:
    from types import SimpleNamespace

    from vmctl.machine.configure import GuestMixin

    fake = SimpleNamespace(name="web", config=SimpleNamespace(boot_timeout=300), _has_seed=lambda: True)
    lines: list[str] = []
    failed = FakeSession(rules=[("cloud-init", (0, b"vmctl-cloud-init-status=1\nstatus: error\ndetail: runcmd failed\n"))])
    with pytest.raises(ProvisionError) as info:
        GuestMixin._wait_for_cloud_init(fake, failed, emit=lines.append)  # type: ignore[arg-type]
    assert info.value.message == "web: cloud-init failed (cloud-init status exit status 1):\nstatus: error\ndetail: runcmd failed"
    assert "/var/log/cloud-init.log" in (info.value.hint or "")
    GuestMixin._wait_for_cloud_init(fake, FakeSession(rules=[("cloud-init", (0, b"vmctl-no-cloud-init\n"))]),  # type: ignore[arg-type]
                                    emit=lines.append)
    assert lines == ["==> web: warning: the box has no cloud-init: config.vm.cloud_init was not applied"]
    lines.clear()
    GuestMixin._wait_for_cloud_init(fake, FakeSession(rules=[("cloud-init", (0, b"vmctl-cloud-init-status=2\nwarnings\n"))]),  # type: ignore[arg-type]
                                    emit=lines.append)
    assert lines[0].startswith("==> web: warning: cloud-init finished with recoverable errors")
    no_seed = SimpleNamespace(name="web", config=fake.config, _has_seed=lambda: False)
    quiet = FakeSession()
    GuestMixin._wait_for_cloud_init(no_seed, quiet, emit=lines.append)  # type: ignore[arg-type]
    assert quiet.commands == []
