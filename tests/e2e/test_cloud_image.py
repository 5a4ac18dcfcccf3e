"""A plain cloud image as a box, cloud-init, and the ansible provisioner on this computer
(issue 15), on two machines that share one `up`.

The image is built in the test suite from Debian packages (tests/e2e/recipes/cloud: systemd,
cloud-init, python3, the cloud kernel, GRUB; no vagrant user, no key; cached by the recipe's
hash like vmctl's own boxes) and given to vmctl as a bare qcow2 through config.vm.box_url.
vmctl seeds cloud-init with the vagrant user and the machine's key, merged with the
Vagrantfile's own cloud_init parts; then the real ansible-playbook runs once, with limit
"all", against both machines.
"""

from __future__ import annotations

import json
import tarfile
from pathlib import Path

import pytest
import yaml
from conftest import Vmctl, write_vagrantfile

RECIPE = Path(__file__).resolve().parent / "recipes" / "cloud"
INSECURE_BLOB = "AAAAC3NzaC1lZDI1NTE5AAAAIN1YdxBpNlzxDqfJyw/QKow1F+wvG9hXGoqiysfJOn5Y"

PLAYBOOK = """\
- hosts: all
  gather_facts: false
  tasks:
    - name: record what the inventory gave this machine
      copy:
        dest: /etc/vmctl-ansible.json
        mode: "0644"
        content: >-
          {{ {'host': inventory_hostname, 'groups': group_names | sort, 'greeting': greeting,
              'role': role | default(''), 'db_port': db_port | default(0),
              'all': groups['all'] | sort, 'user': ansible_user} | to_json }}
"""


@pytest.fixture(scope="module")
def cloud_qcow2(vmctl: Vmctl, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The recipe's disk image as a plain qcow2 (what a cloud publishes), no Vagrant metadata."""
    out = tmp_path_factory.mktemp("cloud-build")
    vmctl("box", "build", str(RECIPE), "--output", str(out), timeout=1800)
    (box,) = out.glob("*.box")
    image = out / "debian-12-test-cloud.qcow2"
    with tarfile.open(box) as tar:
        member = tar.getmember("box.img")
        source = tar.extractfile(member)
        assert source is not None
        with image.open("wb") as f:
            while chunk := source.read(1 << 20):
                f.write(chunk)
    image.chmod(0o644)
    assert image.read_bytes()[:4] == b"QFI\xfb"
    return image


@pytest.fixture(scope="module")
def cluster(vmctl: Vmctl, cloud_qcow2: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """Two machines of the cloud image, up (cloud-init, then ansible once for both)."""
    project = tmp_path_factory.mktemp("cloud-project")
    project.chmod(0o755)
    (project / "playbook.yml").write_text(PLAYBOOK)
    write_vagrantfile(project, f"""
        Vagrant.configure("2") do |config|
          config.vm.box = "vmctl-test/cloud"
          config.vm.box_url = "file://{cloud_qcow2}"
          config.vm.boot_timeout = 900  # two systemd guests with cloud-init, under TCG, on a shared host
          config.vm.cloud_init :user_data, content_type: "text/cloud-config", inline: <<~YAML
            #cloud-config
            write_files:
              - path: /etc/vmctl-test/from-cloud-config
                content: "written by cloud-init\\n"
            runcmd:
              - [sh, -c, "echo ran by cloud-init > /var/tmp/cloud-init-ran"]
          YAML
          config.vm.cloud_init content_type: "text/x-shellscript",
            inline: "#!/bin/sh\\nid vagrant > /var/tmp/script-saw-vagrant\\n"
          ["web", "db"].each do |name|
            config.vm.define name do |m|
              m.vm.hostname = name
            end
          end
          config.vm.provision "ansible" do |ansible|
            ansible.playbook = "playbook.yml"
            ansible.limit = "all"
            ansible.become = true
            ansible.groups = {{
              "webservers" => ["web"], "dbservers" => ["db"],
              "cluster:children" => ["webservers", "dbservers"],
              "webservers:vars" => {{"role" => "frontend"}},
            }}
            ansible.host_vars = {{"db" => {{"db_port" => 5432}}}}
            ansible.extra_vars = {{greeting: "hello from vmctl"}}
          end
          config.vm.provider :libvirt do |lv|
            lv.memory = 512
          end
        end
    """)
    try:
        up = vmctl("up", cwd=project, timeout=1500)
        yield project, up.stdout + up.stderr
    finally:
        vmctl("destroy", "-f", cwd=project, check=False, timeout=300)


def ssh(vmctl: Vmctl, project: Path, machine: str, command: str) -> str:
    return vmctl("ssh", machine, "-c", command, cwd=project, timeout=180).stdout


def test_cloud_image_is_a_box_with_a_seeded_login(vmctl: Vmctl, cluster: tuple[Path, str]) -> None:
    project, output = cluster
    boxes = {b["name"]: b for b in vmctl("box", "list", "--json").json()["boxes"]}
    assert "vmctl-test/cloud" in boxes
    assert "cloud-init seed: 2 parts of user-data, and a login for vagrant" in output
    for machine in ("web", "db"):
        # one login per machine (each costs a second or two under emulation)
        report = ssh(vmctl, project, machine, "; echo ---; ".join([
            "id -un; sudo -n id -u", "cat ~/.ssh/authorized_keys", "hostname",
            "cat /etc/vmctl-test/from-cloud-config; echo; cat /var/tmp/cloud-init-ran /var/tmp/script-saw-vagrant",
            "cloud-init status", "command -v rsync || echo none", "head -n 1 /vagrant/playbook.yml",
        ])).split("---\n")
        user, keys, hostname, cloud_files, status, rsync, synced = (part.strip() for part in report)
        assert user.split() == ["vagrant", "0"]  # the seeded login user, with passwordless sudo
        assert INSECURE_BLOB not in keys and len(keys.splitlines()) == 1  # the machine's own key only
        assert hostname == machine
        # the Vagrantfile's cloud-config and script ran, the script after the vagrant user existed
        written, ran, saw = (line.strip() for line in cloud_files.splitlines() if line.strip())
        assert (written, ran) == ("written by cloud-init", "ran by cloud-init") and "(vagrant)" in saw
        assert status.split()[-1] == "done"
        # the project folder reached /vagrant without rsync in the guest (tar over SSH)
        assert (rsync, synced) == ("none", "- hosts: all")


def test_ansible_ran_once_for_both_machines(vmctl: Vmctl, cluster: tuple[Path, str]) -> None:
    project, output = cluster
    assert output.count('running provisioner: ansible #1 (limit "all": once, for every machine)') == 1
    assert "the ansible provisioner runs this project's playbook with ansible-playbook on this computer" in output
    seen = {m: json.loads(ssh(vmctl, project, m, "cat /etc/vmctl-ansible.json")) for m in ("web", "db")}
    assert seen["web"] == {"host": "web", "groups": ["cluster", "webservers"], "greeting": "hello from vmctl",
                           "role": "frontend", "db_port": 0, "all": ["db", "web"], "user": "vagrant"}
    assert seen["db"]["groups"] == ["cluster", "dbservers"] and seen["db"]["db_port"] == 5432
    assert seen["db"]["role"] == "" and seen["db"]["greeting"] == "hello from vmctl"
    # the inventory: every machine, its pinned host key checked, never StrictHostKeyChecking=no
    inventory = project / ".vmctl" / "provisioners" / "ansible" / "inventory"
    data = yaml.safe_load(inventory.read_text())
    for machine in ("web", "db"):
        host = data["all"]["hosts"][machine]
        assert host["ansible_host"] == "127.0.0.1" and host["ansible_user"] == "vagrant"
        assert "StrictHostKeyChecking=yes" in host["ansible_ssh_common_args"]
        assert f"machines/{machine}/known_hosts" in host["ansible_ssh_common_args"]
    assert "StrictHostKeyChecking=no" not in inventory.read_text()
