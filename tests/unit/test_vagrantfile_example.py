"""Vagrantfile.example (the CoreOS walkthrough) evaluates as documented: plain etcd by default,
etcd over TLS with `$etcd_tls = true` in config.rb (the e2e tests boot it)."""

from __future__ import annotations

import shutil
from pathlib import Path

from vmctl.vagrantfile.loader import evaluate_project
from vmctl.vagrantfile.model import ProjectConfig

REPO = Path(__file__).resolve().parents[2]


def example(folder: Path, instances: int, config_rb: str | None = None) -> ProjectConfig:
    shutil.copy(REPO / "Vagrantfile.example", folder / "Vagrantfile")
    if config_rb is not None:
        (folder / "config.rb").write_text(config_rb)
    env = {"HOME": "/home/tester", "NUM_INSTANCES": str(instances)}
    return evaluate_project(folder / "Vagrantfile", env=env)


def scripts(project: ProjectConfig, machine: int) -> dict[str, str]:
    return {p.name or "": p.inline or "" for p in project.machines[machine].provisioners}


def test_plain_etcd_by_default(tmp_path: Path) -> None:
    project = example(tmp_path, 1)
    [machine] = project.machines
    steps = scripts(project, 0)
    assert list(steps) == ["etcd", "hello"]
    etcd = steps["etcd"]
    assert "ETCD_LISTEN_CLIENT_URLS=http://172.17.8.101:2379,http://127.0.0.1:2379" in etcd
    assert "ETCD_DATA_DIR=/var/lib/etcd/default" in etcd and "https" not in etcd
    assert "rm -f /etc/etcd/etcdctl.env" in etcd and machine.name == "core-01"


def test_etcd_tls_from_config_rb(tmp_path: Path) -> None:
    project = example(tmp_path, 3, "$etcd_tls = true\n")
    assert [m.name for m in project.machines] == ["core-01", "core-02", "core-03"]
    first, third = scripts(project, 0), scripts(project, 2)
    assert list(first) == ["etcd-tls", "etcd", "hello"]
    # The first machine is the CA and signs for the others; they ask it.
    assert first["etcd-tls"] == ("etcd-tls ca --name core-01 --ip 172.17.8.101 "
                                 "--member core-02=172.17.8.102 --member core-03=172.17.8.103")  # fmt: skip
    assert third["etcd-tls"] == "etcd-tls join --ca-server 172.17.8.101 --name core-03 --ip 172.17.8.103"
    etcd = third["etcd"]
    for setting in (
        "ETCD_LISTEN_PEER_URLS=https://172.17.8.103:2380",
        "ETCD_LISTEN_CLIENT_URLS=https://172.17.8.103:2379,https://127.0.0.1:2379",
        "ETCD_INITIAL_CLUSTER=core-01=https://172.17.8.101:2380,core-02=https://172.17.8.102:2380,"
        "core-03=https://172.17.8.103:2380",
        "ETCD_DATA_DIR=/var/lib/etcd/tls",
        "ETCD_CLIENT_CERT_AUTH=true",
        "ETCD_PEER_CLIENT_CERT_AUTH=true",
        "ETCD_TRUSTED_CA_FILE=/etc/etcd/tls/ca.crt",
    ):
        assert f"\n{setting}\n" in etcd, setting
    assert "http://" not in etcd and "etcdctl.env" not in etcd


def test_one_machine_tls_signs_for_no_one(tmp_path: Path) -> None:
    project = example(tmp_path, 1, "$etcd_tls = true\n")
    assert scripts(project, 0)["etcd-tls"] == "etcd-tls ca --name core-01 --ip 172.17.8.101"
