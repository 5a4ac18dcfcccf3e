"""The same lifecycle through libvirtd (qemu:///system) instead of the embedded driver.
The test starts virtlogd and libvirtd itself when they are not running (no systemd here)."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest
from conftest import Vmctl, write_vagrantfile

pytestmark = pytest.mark.host_wide  # one lane for host-wide state: tests/conftest.py


def ensure_daemons() -> None:
    for daemon in ("virtlogd", "libvirtd"):
        if subprocess.run(["pgrep", "-x", daemon], capture_output=True).returncode != 0:
            binary = shutil.which(daemon) or f"/usr/sbin/{daemon}"
            subprocess.run([binary, "-d"], check=True)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if subprocess.run(["virsh", "-c", "qemu:///system", "version"], capture_output=True).returncode == 0:
            return
        time.sleep(0.3)
    raise AssertionError("libvirtd did not answer on qemu:///system")


@pytest.mark.skipif(os.geteuid() != 0, reason="qemu:///system needs root (CI runs as root)")
def test_lifecycle_on_qemu_system(vmctl: Vmctl, tiny_box: Path, project: Path) -> None:
    ensure_daemons()
    env = {"VMCTL_LIBVIRT_URI": "qemu:///system"}
    write_vagrantfile(project, """
        Vagrant.configure("2") do |config|
          config.vm.box = "vmctl/tiny"
          config.vm.hostname = "system-uri"
          config.vm.network "private_network", ip: "10.231.9.10"
          config.vm.provider :libvirt do |lv|
            lv.memory = 256
          end
        end
    """)
    try:
        vmctl("up", cwd=project, env=env)
        [m] = vmctl("status", "--json", cwd=project, env=env).json()["machines"]
        assert m["state"] == "running"
        listed = subprocess.run(["virsh", "-c", "qemu:///system", "list", "--name"],
                                capture_output=True, text=True, check=True).stdout.split()
        assert m["domain"] in listed
        # Its disk is a volume of the pool "default" (made, started and autostarted if missing).
        [overlay] = [d for d in m["disks"] if d["name"] == "box"]
        assert overlay["pool"] == "default" and overlay["volume"] in pool_volumes("default")
        info = virsh("pool-info", "default").stdout
        assert "running" in info and "Autostart:      yes" in info
        assert vmctl("ssh", "-c", "hostname", cwd=project, env=env).stdout.strip() == "system-uri"
        # The private network is a libvirt network libvirtd made (vmctl/libvirtnet.py): the
        # host reaches the guest's SSH server on the private address.
        [net] = m["networks"]
        assert net["mode"] == "libvirt" and net["network"] in virsh("net-list", "--name").stdout.split()
        with socket.create_connection(("10.231.9.10", 22), timeout=15) as s:
            assert s.recv(64).startswith(b"SSH-")
        vmctl("halt", cwd=project, env=env)
        assert vmctl("status", "--json", cwd=project, env=env).json()["machines"][0]["state"] == "poweroff"
    finally:
        vmctl("destroy", "-f", cwd=project, env=env, check=False)
    listed = subprocess.run(["virsh", "-c", "qemu:///system", "list", "--all", "--name"],
                            capture_output=True, text=True, check=True).stdout.split()
    assert m["domain"] not in listed
    assert not Path("/sys/class/net", net["bridge"]).exists()
    assert net["network"] not in virsh("net-list", "--all", "--name").stdout.split()
    left = pool_volumes("default")
    assert not [v for v in left if v.startswith(overlay["volume"].removesuffix("disk.qcow2"))], left
    # The tiny box's volume stays for the session's other machines; the host is left as found
    # (a machine after this uploads it again: vmctl checks that a recorded volume is there).
    for volume in left:
        if volume.startswith("vmctl-VAGRANTSLASH-tiny_vmctl_box_"):
            virsh("vol-delete", "--pool", "default", volume)


def virsh(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["virsh", "-c", "qemu:///system", *args], capture_output=True, text=True, check=check)


def pool_volumes(pool: str) -> list[str]:
    virsh("pool-refresh", pool)
    lines = virsh("vol-list", pool).stdout.splitlines()[2:]
    return sorted(line.split()[0] for line in lines if line.strip())


@pytest.mark.skipif(os.geteuid() != 0, reason="qemu:///system needs root (CI runs as root)")
def test_disks_are_volumes_of_a_storage_pool(vmctl: Vmctl, tiny_box: Path, tmp_path: Path) -> None:
    """Under a daemon, the box is uploaded once into the pool (made here, as it is missing),
    each machine's overlay and extra disk are volumes on it, destroy removes the machine's
    volumes and box remove the box's."""
    ensure_daemons()
    env = {"VMCTL_LIBVIRT_URI": "qemu:///system"}
    pool = f"vmctl-e2e-{os.getpid()}"
    pool_dir = Path("/var/lib/libvirt") / pool  # QEMU (libvirt-qemu) must pass through its parents
    box = "e2e/pool-tiny"
    vmctl("box", "add", "--name", box, str(next(tiny_box.glob("*.box"))))
    projects = []
    for name in ("one", "two"):
        project = tmp_path / name
        project.mkdir()
        project.chmod(0o755)
        write_vagrantfile(project, f"""
            Vagrant.configure("2") do |config|
              config.vm.box = "{box}"
              config.vm.provider :libvirt do |lv|
                lv.memory = 256
                lv.storage_pool_name = "{pool}"
                lv.storage_pool_path = "{pool_dir}"
                lv.storage :file, size: "64M"
              end
            end
        """)
        projects.append(project)
    try:
        first = vmctl("up", cwd=projects[0], env=env)
        assert "uploading the box image" in first.stderr
        [m] = vmctl("status", "--json", cwd=projects[0], env=env).json()["machines"]
        by_name = {d["name"]: d for d in m["disks"]}
        overlay, extra = by_name["box"], by_name["vdb"]
        assert overlay["pool"] == extra["pool"] == pool
        volumes = pool_volumes(pool)
        # the box's volume, and the empty mark that says its upload was whole (no upload lock left)
        [box_volume] = [v for v in volumes if "_vmctl_box_" in v and v.endswith(".img")]
        mark = box_volume.removesuffix(".img") + ".ok"
        assert [v for v in volumes if "_vmctl_box_" in v and not v.endswith(".img")] == [mark]
        assert box_volume.startswith("e2e-VAGRANTSLASH-pool-tiny_vmctl_box_")
        assert {overlay["volume"], extra["volume"]} <= set(volumes)
        assert overlay["volume"].startswith("vmctl-") and overlay["volume"].endswith("-disk.qcow2")
        # The domain names the volumes, not files; the overlay stands on the box's volume.
        xml = virsh("dumpxml", m["domain"]).stdout
        assert f"<source pool='{pool}' volume='{overlay['volume']}'" in xml
        assert box_volume in virsh("vol-dumpxml", "--pool", pool, overlay["volume"]).stdout
        assert vmctl("ssh", "-c", "test -b /dev/vdb && echo ok", cwd=projects[0], env=env).stdout.strip() == "ok"
        # What does not work on pools yet says so, and changes nothing.
        for argv in (("snapshot", "save", "s1"), ("package", "--output", str(tmp_path / "p.box"))):
            refused = vmctl(*argv, cwd=projects[0], env=env, check=False)
            assert refused.returncode == 1 and "not supported on storage pools yet" in refused.stderr, refused.stderr
            assert "hint:" in refused.stderr
        assert not (tmp_path / "p.box").exists()
        # A second machine of the box reuses its volume: uploaded once.
        second = vmctl("up", cwd=projects[1], env=env)
        assert "uploading the box image" not in second.stderr
        [m2] = vmctl("status", "--json", cwd=projects[1], env=env).json()["machines"]
        assert [v for v in pool_volumes(pool) if "_vmctl_box_" in v] == sorted([box_volume, mark])
        # A stopped machine starts again from its volumes (its disks planned again, none made anew).
        before = pool_volumes(pool)
        vmctl("reload", cwd=projects[1], env=env)
        assert vmctl("ssh", "-c", "test -b /dev/vdb && echo ok", cwd=projects[1], env=env).stdout.strip() == "ok"
        assert pool_volumes(pool) == before
        # The box stays while machines use it, volume and all.
        refused = vmctl("box", "remove", box, check=False)
        assert refused.returncode == 1 and "used by 2 machines" in refused.stderr
        vmctl("destroy", "-f", cwd=projects[0], env=env)
        vmctl("destroy", "-f", cwd=projects[1], env=env)
        left = pool_volumes(pool)
        assert sorted(left) == sorted([box_volume, mark]), left
        assert m["domain"] not in virsh("list", "--all", "--name").stdout.split()
        assert m2["domain"] not in virsh("list", "--all", "--name").stdout.split()
        removed = vmctl("box", "remove", box)
        assert f"removed the volume {box_volume} in the storage pool {pool}" in removed.stderr
        assert pool_volumes(pool) == []
    finally:
        for project in projects:
            vmctl("destroy", "-f", cwd=project, env=env, check=False)
        vmctl("box", "remove", box, "--force", check=False)
        virsh("pool-destroy", pool, check=False)
        virsh("pool-delete", pool, check=False)
        virsh("pool-undefine", pool, check=False)
