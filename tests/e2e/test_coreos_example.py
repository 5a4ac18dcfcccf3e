"""The CoreOS walkthrough: Vagrantfile.example on the coreos-like box, one machine (plain etcd,
then TLS turned on in config.rb and provisioned again) and a three-machine etcd cluster over TLS
(slow, but CI runs it)."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import pytest
from conftest import Result, Vmctl

pytestmark = pytest.mark.host_wide  # one lane for host-wide state: tests/conftest.py

REPO = Path(__file__).resolve().parents[2]
INSECURE_BLOB = "AAAAC3NzaC1lZDI1NTE5AAAAIN1YdxBpNlzxDqfJyw/QKow1F+wvG9hXGoqiysfJOn5Y"


@pytest.fixture(scope="module")
def coreos_box(vmctl: Vmctl, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("coreos-build")
    vmctl("box", "build", "coreos-like", "--output", str(out), "--add", timeout=1800)
    return out


def example_project(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copy(REPO / "Vagrantfile.example", folder / "Vagrantfile")
    return folder


def eventually(vmctl: Vmctl, project: Path, machine: str, command: str, expect: str,
               env: dict[str, str], timeout: float = 120) -> str:
    """Run COMMAND until its output contains EXPECT (services settle after `up` returns)."""
    deadline = time.monotonic() + timeout
    last = ""
    while time.monotonic() < deadline:
        r = vmctl("ssh", machine, "-c", command, cwd=project, env=env, check=False, timeout=300)
        last = r.stdout + r.stderr
        if r.returncode == 0 and expect in r.stdout:
            return r.stdout
        time.sleep(2)
    raise AssertionError(f"{machine}: {command!r} never printed {expect!r}; last output:\n{last}")


def etcd_tls(project: Path) -> None:
    """Turn on etcd over TLS the way a user does: `$etcd_tls = true` in config.rb."""
    (project / "config.rb").write_text("$etcd_tls = true\n")


def assert_tls_only(vmctl: Vmctl, project: Path, machine: str, ip: str, env: dict[str, str]) -> None:
    """etcd on IP answers only TLS clients with a certificate of the cluster's CA."""
    def ssh(command: str) -> Result:
        return vmctl("ssh", machine, "-c", command, cwd=project, env=env, check=False, timeout=300)

    etcdctl = "/usr/bin/etcdctl.etcd-client --dial-timeout=3s --command-timeout=5s"
    # Plain http: etcdctl gets no answer, and an HTTP GET never reaches etcd.
    plain = ssh(f"{etcdctl} --endpoints=http://{ip}:2379 get /message")
    assert plain.returncode != 0, plain
    get = ssh(f"python3 -c \"import urllib.request; print(urllib.request.urlopen('http://{ip}:2379/version', "
              f"timeout=5).read())\"")  # fmt: skip
    assert get.returncode != 0 and "etcdserver" not in get.stdout, get
    # TLS without a client certificate: refused.
    anonymous = ssh(f"{etcdctl} --endpoints=https://{ip}:2379 --cacert=/etc/etcd/tls/ca.crt get /message")
    assert anonymous.returncode != 0, anonymous


def test_example_one_machine(vmctl: Vmctl, coreos_box: Path, tmp_path: Path, destroy_after: list[Path]) -> None:
    project = example_project(tmp_path / "coreos")
    env = {"NUM_INSTANCES": "1"}
    destroy_after.append(project)
    up = vmctl("up", cwd=project, env=env, timeout=600)
    assert "core-01" in up.stderr

    [m] = vmctl("status", "--json", cwd=project, env=env).json()["machines"]
    assert m["name"] == "core-01" and m["state"] == "running" and m["ssh"]["user"] == "core"

    def ssh(command: str) -> str:
        return vmctl("ssh", "-c", command, cwd=project, env=env, timeout=300).stdout

    assert ssh("whoami").strip() == "core"
    assert ssh("hostname").strip() == "core-01"
    assert "ro" in ssh("findmnt -no OPTIONS /usr").strip().split(",")
    assert ssh("docker run --rm debian:bookworm /bin/echo hello world").strip() == "hello world"
    keys = ssh("cat ~/.ssh/authorized_keys")
    assert INSECURE_BLOB not in keys and "insecure" not in keys
    assert "172.17.8.101/24" in ssh("ip -4 addr")

    eventually(vmctl, project, "core-01", "journalctl -u hello.service --no-pager", "Hello World", env)
    eventually(vmctl, project, "core-01", "etcdctl put /message hello", "OK", env)
    assert ssh("etcdctl get --print-value-only /message").strip() == "hello"

    # TLS turned on in config.rb, then the running machine provisioned again: a new cluster,
    # https only, and etcdctl still just works for core.
    etcd_tls(project)
    provision = vmctl("provision", cwd=project, env=env, timeout=600)
    assert "etcd-tls" in provision.stderr + provision.stdout
    members = eventually(vmctl, project, "core-01", "etcdctl member list", "https://172.17.8.101:2379", env)
    assert "https://172.17.8.101:2380" in members and "http://" not in members, members
    eventually(vmctl, project, "core-01", "etcdctl put /message tls", "OK", env)
    assert ssh("etcdctl get --print-value-only /message").strip() == "tls"
    assert_tls_only(vmctl, project, "core-01", "172.17.8.101", env)
    assert_tls_only(vmctl, project, "core-01", "127.0.0.1", env)


@pytest.mark.slow
def test_example_three_machine_cluster_tls(
    vmctl: Vmctl, coreos_box: Path, tmp_path: Path, destroy_after: list[Path]
) -> None:
    project = example_project(tmp_path / "cluster")
    etcd_tls(project)
    env = {"NUM_INSTANCES": "3"}
    destroy_after.append(project)
    # destroy_after runs without NUM_INSTANCES: destroy the cluster explicitly as well.
    try:
        vmctl("up", cwd=project, env=env, timeout=1200)
        machines = vmctl("status", "--json", cwd=project, env=env).json()["machines"]
        assert [(m["name"], m["state"]) for m in machines] == [
            ("core-01", "running"), ("core-02", "running"), ("core-03", "running"),
        ]
        members = eventually(vmctl, project, "core-02", "etcdctl member list", "core-03", env)
        assert len([line for line in members.splitlines() if "started" in line]) == 3, members
        for i in (1, 2, 3):
            assert f"https://172.17.8.10{i}:2380, https://172.17.8.10{i}:2379" in members, members
        # One CA, made on core-01, whose key never leaves it.
        fingerprint = "openssl x509 -noout -fingerprint -sha256 -in /etc/etcd/tls/ca.crt"
        cas = {vmctl("ssh", m, "-c", fingerprint, cwd=project, env=env).stdout for m in ("core-01", "core-03")}
        assert len(cas) == 1, cas
        assert vmctl("ssh", "core-02", "-c", "sudo test -e /etc/etcd/tls/ca.key", cwd=project, env=env,
                     check=False).returncode == 1  # fmt: skip
        assert_tls_only(vmctl, project, "core-02", "172.17.8.101", env)
        eventually(vmctl, project, "core-01", "etcdctl put /services/web 172.17.8.101:80", "OK", env)
        got = eventually(vmctl, project, "core-03", "etcdctl get --print-value-only /services/web",
                         "172.17.8.101:80", env)
        assert got.strip() == "172.17.8.101:80"
        eventually(vmctl, project, "core-02", "journalctl -u hello.service --no-pager", "Hello World", env)
    finally:
        vmctl("destroy", "-f", cwd=project, env=env, check=False, timeout=300)
