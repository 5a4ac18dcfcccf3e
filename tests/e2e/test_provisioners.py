"""Provisioners on real TCG guests (issue 15): shell reboot/reset and the reload provisioner
on the tiny box; the docker provisioner on the coreos-like box (podman's docker)."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import Vmctl, write_vagrantfile


def boot_ids(vmctl: Vmctl, project: Path) -> list[str]:
    out = vmctl("ssh", "-c", "sudo cat /root/boot-ids", cwd=project).stdout
    return out.split()


def test_reboot_reset_reload_and_failures(vmctl: Vmctl, tiny_box: Path, project: Path, destroy_after: list[Path]) -> None:
    write_vagrantfile(project, """
        Vagrant.configure("2") do |config|
          config.vm.box = "vmctl/tiny"
          config.vm.synced_folder ".", "/vagrant", disabled: true
          record = "cat /proc/sys/kernel/random/boot_id >> /root/boot-ids; sync"
          config.vm.provision "first", type: "shell", inline: record
          config.vm.provision "reboot", type: "shell", inline: "echo before the reboot; #{record}", reboot: true
          config.vm.provision "second", type: "shell", inline: record
          config.vm.provision "reset", type: "shell", inline: "echo logged in as $(id -un)", reset: true, privileged: false
          config.vm.provision "reload", type: "reload"
          config.vm.provision "third", type: "shell", inline: record
          config.vm.provision "fails", type: "shell", inline: "echo about to fail; exit 7", run: "never"
          config.vm.provider :libvirt do |lv|
            lv.memory = 256
          end
        end
    """)
    destroy_after.append(project)
    up = vmctl("up", cwd=project, timeout=600)
    assert "==> default: rebooting the guest (reboot: true)..." in up.stderr
    assert "==> default: logging in again (reset: true)..." in up.stderr
    assert "==> default: reloading the machine..." in up.stderr
    assert "    default: logged in as vagrant" in up.stdout
    first, before_reboot, second, third = boot_ids(vmctl, project)
    # the reboot provisioner's own line was written in the old boot; the next provisioner
    # ran in a new one, and so did the one after the reload
    assert first == before_reboot
    assert len({first, second, third}) == 3

    failed = vmctl("provision", "--provision-with", "fails", cwd=project, check=False)
    assert failed.returncode == 1
    assert "    default: about to fail" in failed.stdout
    assert "error: default: provisioner fails failed with exit status 7" in failed.stderr
    assert "hint: fix it, then run: vmctl provision default --provision-with fails" in failed.stderr

    again = vmctl("provision", "--provision-with", "reboot,second", cwd=project, timeout=300)
    assert "rebooting the guest" in again.stderr
    ids = boot_ids(vmctl, project)
    assert ids[-1] != ids[-2] and ids[-2] == third


@pytest.fixture(scope="module")
def coreos_box(vmctl: Vmctl, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("coreos-build")
    vmctl("box", "build", "coreos-like", "--output", str(out), "--add", timeout=1800)
    return out


def test_docker_provisioner_on_podman(vmctl: Vmctl, coreos_box: Path, project: Path, destroy_after: list[Path]) -> None:
    (project / "app").mkdir()
    (project / "app" / "Dockerfile").write_text(
        "FROM debian:bookworm\nRUN echo built by the docker provisioner > /built.txt\n")
    write_vagrantfile(project, """
        Vagrant.configure("2") do |config|
          config.vm.box = "vmctl/coreos-like"
          config.vm.provision "docker" do |d|
            d.build_image "/vagrant/app", args: "-t vmctl-test-app"
            d.run "hello", image: "vmctl-test-app",
              cmd: "sh -c 'cat /built.txt; while true; do sleep 5; done'"
            d.run "once", image: "debian:bookworm", cmd: "echo ran once", daemonize: false, restart: "no"
            d.post_install_provision "shell", inline: "touch /root/post-install-ran"
          end
          config.vm.provider :libvirt do |lv|
            lv.memory = 768
          end
        end
    """)
    destroy_after.append(project)
    up = vmctl("up", cwd=project, timeout=900)
    assert "    default: building /vagrant/app..." in up.stdout
    assert "    default: running container hello..." in up.stdout
    assert "ran once" in up.stdout

    def ssh(command: str) -> str:
        return vmctl("ssh", "-c", command, cwd=project, timeout=180).stdout

    running = ssh("docker ps --format '{{.Names}} {{.Image}}'")
    assert "hello localhost/vmctl-test-app:latest" in running or "hello vmctl-test-app" in running, running
    assert ssh("docker logs hello").strip() == "built by the docker provisioner"
    first_id = ssh("docker inspect --format '{{.Id}}' hello").strip()
    # docker was there already: no post-install provisioner
    assert ssh("sudo test -e /root/post-install-ran && echo ran || echo no").strip() == "no"

    # Provisioning again leaves the running container alone; a stopped one is started.
    vmctl("provision", "--provision-with", "docker", cwd=project, timeout=600)
    assert ssh("docker inspect --format '{{.Id}}' hello").strip() == first_id
    ssh("docker stop hello >/dev/null")
    vmctl("provision", "--provision-with", "docker", cwd=project, timeout=600)
    assert ssh("docker inspect --format '{{.Id}} {{.State.Running}}' hello").split() == [first_id, "true"]


def test_cloud_init_seed_on_a_box_without_cloud_init(vmctl: Vmctl, tiny_box: Path, project: Path,
                                                     destroy_after: list[Path]) -> None:
    """The seed CD-ROM is attached (libvirt takes the domain), a box without cloud-init gets a
    warning, and destroy removes the seed with the disk."""
    import json
    import subprocess

    write_vagrantfile(project, """
        Vagrant.configure("2") do |config|
          config.vm.box = "vmctl/tiny"
          config.vm.synced_folder ".", "/vagrant", disabled: true
          config.vm.cloud_init content_type: "text/cloud-config", inline: "#cloud-config\\nruncmd: [[touch, /x]]\\n"
          config.vm.provider :libvirt do |lv|
            lv.memory = 256
          end
        end
    """)
    destroy_after.append(project)
    up = vmctl("up", cwd=project)
    assert "==> default: cloud-init seed: 1 part of user-data" in up.stderr
    assert "==> default: warning: the box has no cloud-init: config.vm.cloud_init was not applied" in up.stderr
    state = json.loads((project / ".vmctl" / "machines" / "default" / "state.json").read_text())
    seed = Path(state["disk"]).parent / "cidata.iso"
    assert seed.stat().st_mode & 0o777 == 0o600
    blkid = subprocess.run(["blkid", "-o", "export", str(seed)], capture_output=True, text=True, check=True).stdout
    assert "LABEL=cidata" in blkid
    vmctl("destroy", "-f", cwd=project)
    assert not seed.exists() and not seed.parent.exists()
