"""Synced folders, names and ports on real guests driven through the vmctl command: two-way
folders (virtiofs; nfs shared as virtiofs; 9p refused on the tiny box's cloud kernel, and
written from both sides on the debian box's generic kernel), rsync-auto, the /etc/hosts
block of a two-machine project, a UDP forwarded port.

One two-machine tiny-box project is brought up once for the module (CI time matters) and
the tests share it; a test that needs a machine of its own brings up a separate one. The
whole file takes about 4 minutes on a busy 2-core host, 1.5 of them for the debian box.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import VMCTL, Vmctl, write_vagrantfile

pytestmark = pytest.mark.host_wide  # one lane for host-wide state: tests/conftest.py

PROJECT = """
    Vagrant.configure("2") do |config|
      config.vm.box = "vmctl/tiny"
      config.vm.synced_folder ".", "/vagrant", disabled: true
      config.vm.provider :libvirt do |lv|
        lv.memory = 256
      end
      config.vm.define "web" do |web|
        web.vm.hostname = "web.example.test"
        web.vm.network "private_network", ip: "192.168.77.10"
        web.vm.network "forwarded_port", guest: 7777, host: 17777, protocol: "udp", guest_ip: "10.0.2.15",
          auto_correct: true
        web.vm.synced_folder "share", "/srv/share", type: "virtiofs"
        web.vm.synced_folder "nfs", "/srv/nfs", type: "nfs", nfs_version: 4, nfs_udp: false
        web.vm.synced_folder "src", "/srv/src", rsync__exclude: ["*.tmp", "cache/"]
        web.vm.provision "reboot-now", type: "shell", inline: "true", reboot: true, run: "never"
      end
      config.vm.define "db" do |db|
        db.vm.hostname = "db"
        db.vm.network "private_network", ip: "192.168.77.11"
      end
    end
"""


@pytest.fixture(scope="module")
def cluster(vmctl: Vmctl, tiny_box: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    folder = tmp_path_factory.mktemp("folders") / "project"
    folder.mkdir()
    folder.chmod(0o755)
    for sub in ("share", "nfs", "src"):
        (folder / sub).mkdir()
    write_vagrantfile(folder, PROJECT)
    try:
        up = vmctl("up", cwd=folder, timeout=600)
        assert "vmctl runs no NFS server" in up.stdout + up.stderr
        yield folder
    finally:
        vmctl("destroy", "-f", cwd=folder, check=False, timeout=180)


def ssh(vmctl: Vmctl, project: Path, machine: str, command: str, **kwargs: object) -> str:
    return vmctl("ssh", machine, "-c", command, cwd=project, **kwargs).stdout  # type: ignore[arg-type]


def test_virtiofs_folder_written_from_both_sides(vmctl: Vmctl, cluster: Path) -> None:
    (cluster / "share" / "from-host.txt").write_text("written on the host\n")
    assert ssh(vmctl, cluster, "web", "cat /srv/share/from-host.txt") == "written on the host\n"
    ssh(vmctl, cluster, "web", "echo written in the guest | sudo tee /srv/share/from-guest.txt >/dev/null")
    assert (cluster / "share" / "from-guest.txt").read_text() == "written in the guest\n"
    assert "/srv/share type virtiofs" in ssh(vmctl, cluster, "web", "mount")
    # A change on the host is seen at once (no copy).
    (cluster / "share" / "from-host.txt").write_text("changed\n")
    assert ssh(vmctl, cluster, "web", "cat /srv/share/from-host.txt") == "changed\n"
    # The guest sees the shared folder only: its parent is the guest's own /srv.
    assert ssh(vmctl, cluster, "web", "ls /srv/share/..").split() == ["nfs", "share", "src"]


def test_nfs_folder_is_shared_two_way(vmctl: Vmctl, cluster: Path) -> None:
    ssh(vmctl, cluster, "web", "echo from nfs | sudo tee /srv/nfs/guest.txt >/dev/null")
    assert (cluster / "nfs" / "guest.txt").read_text() == "from nfs\n"
    (cluster / "nfs" / "host.txt").write_text("to nfs\n")
    assert ssh(vmctl, cluster, "web", "cat /srv/nfs/host.txt") == "to nfs\n"


def test_two_way_folders_mounted_again_after_reload(vmctl: Vmctl, cluster: Path) -> None:
    vmctl("reload", "web", cwd=cluster, timeout=300)
    (cluster / "share" / "after-reload.txt").write_text("still shared\n")
    assert ssh(vmctl, cluster, "web", "cat /srv/share/after-reload.txt") == "still shared\n"
    assert "/srv/nfs type virtiofs" in ssh(vmctl, cluster, "web", "mount")


def test_two_way_folders_mounted_again_after_a_provisioners_reboot(vmctl: Vmctl, cluster: Path) -> None:
    before = ssh(vmctl, cluster, "web", "cat /proc/sys/kernel/random/boot_id")
    vmctl("provision", "web", "--provision-with", "reboot-now", cwd=cluster, timeout=300)
    assert ssh(vmctl, cluster, "web", "cat /proc/sys/kernel/random/boot_id") != before
    (cluster / "share" / "after-reboot.txt").write_text("shared after the reboot\n")
    assert ssh(vmctl, cluster, "web", "cat /srv/share/after-reboot.txt") == "shared after the reboot\n"
    assert "/srv/nfs type virtiofs" in ssh(vmctl, cluster, "web", "mount")


def test_suspend_refused_while_folders_are_shared(vmctl: Vmctl, cluster: Path) -> None:
    r = vmctl("suspend", "web", cwd=cluster, check=False)
    assert r.returncode == 1 and "QEMU cannot save the memory" in r.stderr, r.stderr
    assert "/srv/share (virtiofs)" in r.stderr
    assert ssh(vmctl, cluster, "web", "cat /srv/share/after-reload.txt") == "still shared\n"  # still running


def test_9p_refused_on_a_kernel_without_it(vmctl: Vmctl, tiny_box: Path, tmp_path: Path) -> None:
    project = tmp_path / "ninep"
    (project / "data").mkdir(parents=True)
    write_vagrantfile(project, """
        Vagrant.configure("2") do |config|
          config.vm.box = "vmctl/tiny"
          config.vm.synced_folder ".", "/vagrant", disabled: true
          config.vm.provider :libvirt do |lv|
            lv.memory = 256
          end
          config.vm.synced_folder "data", "/srv/data", type: "9p", accessmode: "mapped"
        end
    """)
    try:
        r = vmctl("up", cwd=project, check=False, timeout=300)
        assert r.returncode == 1, r.stdout + r.stderr
        assert "the guest's kernel has no 9p file system" in r.stderr
        assert "linux-image-amd64 has it" in r.stderr
    finally:
        vmctl("destroy", "-f", cwd=project, check=False, timeout=120)


def test_9p_folder_written_from_both_sides(vmctl: Vmctl, debian_box: Path, tmp_path: Path) -> None:
    """9p needs a guest kernel with it: the debian box's generic kernel (a minute or two to boot
    under TCG). The login user writes (mapped mode: the folder's top is the login user's for
    the guest); the host files stay the host user's."""
    project = tmp_path / "ninep-debian"
    (project / "data").mkdir(parents=True)
    (project / "data" / "from-host.txt").write_text("written on the host\n")
    write_vagrantfile(project, """
        Vagrant.configure("2") do |config|
          config.vm.box = "vmctl/debian"
          config.vm.boot_timeout = 900
          config.vm.synced_folder ".", "/vagrant", disabled: true
          config.vm.synced_folder "data", "/srv/data", type: "9p"
        end
    """)
    try:
        vmctl("up", cwd=project, timeout=1200)
        assert ssh(vmctl, project, "default", "cat /srv/data/from-host.txt") == "written on the host\n"
        ssh(vmctl, project, "default", "echo written by the login user > /srv/data/from-guest.txt")
        written = project / "data" / "from-guest.txt"
        assert written.read_text() == "written by the login user\n"
        assert written.stat().st_uid == os.getuid()  # mapped: the guest's owner is kept for the guest only
        assert "/srv/data type 9p" in ssh(vmctl, project, "default", "mount")
    finally:
        vmctl("destroy", "-f", cwd=project, check=False, timeout=180)


def test_symlink_out_of_the_project_refused(vmctl: Vmctl, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    project = tmp_path / "linked"
    project.mkdir()
    (project / "data").symlink_to(outside)
    write_vagrantfile(project, textwrap.dedent("""
        Vagrant.configure("2") do |config|
          config.vm.box = "vmctl/tiny"
          config.vm.synced_folder "data", "/srv/data", type: "virtiofs"
        end
    """))
    r = vmctl("up", cwd=project, check=False)
    assert r.returncode == 1
    assert "is a symbolic link" in r.stderr
    listed = vmctl("global-status", "--json").json()["machines"]
    assert not any(m["project"] == str(project) for m in listed)


def test_rsync_auto_copies_a_change_within_a_second(vmctl: Vmctl, cluster: Path) -> None:
    src = cluster / "src"
    (src / "cache").mkdir(exist_ok=True)
    proc = subprocess.Popen([*VMCTL, "rsync-auto", "web"], cwd=cluster, env=vmctl.env, stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(iter(proc.stdout.readline, "")), daemon=True)  # type: ignore[union-attr]
    reader.start()
    try:
        deadline = time.monotonic() + 60
        while not any("is watching" in line for line in lines):
            assert proc.poll() is None and time.monotonic() < deadline, "".join(lines)
            time.sleep(0.1)
        copies = sum("rsync:" in line for line in lines)
        (src / "ignored.tmp").write_text("not copied\n")
        (src / "cache" / "big").write_text("not copied\n")
        (src / "new.txt").write_text("copied by rsync-auto\n")
        changed = time.monotonic()
        while sum("rsync:" in line for line in lines) == copies:
            assert time.monotonic() - changed < 10, "".join(lines)
            time.sleep(0.05)
        started = time.monotonic() - changed
        # The copy starts within a second of the change (watchfiles' debounce is 150 ms).
        assert started < 1.0, f"the copy started {started:.2f} s after the change"
        deadline = time.monotonic() + 60  # the copy itself: rsync over ssh, slow on a busy host
        while True:
            r = vmctl("ssh", "web", "-c", "cat /srv/src/new.txt", cwd=cluster, check=False)
            if r.returncode == 0:
                break
            assert time.monotonic() < deadline, "".join(lines)
        assert r.stdout == "copied by rsync-auto\n"
        listing = ssh(vmctl, cluster, "web", "ls -a /srv/src").split()
        assert "ignored.tmp" not in listing and "cache" not in listing
        # A change to an excluded file alone starts no copy.
        copies = sum("rsync:" in line for line in lines)
        (src / "again.tmp").write_text("x\n")
        time.sleep(1.5)
        assert sum("rsync:" in line for line in lines) == copies
    finally:
        proc.send_signal(signal.SIGINT)
        code = proc.wait(timeout=20)
        reader.join(timeout=5)
    assert code == 0, "".join(lines)
    assert "rsync-auto stopped" in "".join(lines)


def test_machines_find_each_other_by_name(vmctl: Vmctl, cluster: Path) -> None:
    assert ssh(vmctl, cluster, "web", "getent hosts db").split() == ["192.168.77.11", "db"]
    assert ssh(vmctl, cluster, "db", "getent hosts web.example.test").split()[:2] == ["192.168.77.10", "web.example.test"]
    assert ssh(vmctl, cluster, "db", "getent hosts web").split()[0] == "192.168.77.10"
    # By name, over the private network, as the login user.
    ssh(vmctl, cluster, "web", "ping -c 1 -W 5 db >/dev/null")
    hosts = ssh(vmctl, cluster, "web", "cat /etc/hosts")
    assert hosts.count("# BEGIN vmctl") == 1 and hosts.count("# END vmctl") == 1
    assert "127.0.0.1" in hosts  # the rest of the file stays


# A UDP echo server in perl (perl-base is in every Debian, the tiny box's too), detached
# from the SSH session.
UDP_ECHO = ("setsid perl -MIO::Socket::INET -e '$s = IO::Socket::INET->new(LocalPort => 7777, Proto => q(udp)) "
            "or die; while ($s->recv($m, 2048)) { $s->send(qq(echo:$m)) }' </dev/null >/dev/null 2>&1 &")


def test_udp_echo_through_a_forwarded_port(vmctl: Vmctl, cluster: Path) -> None:
    ports = vmctl("port", "web", "--json", cwd=cluster).json()["ports"]
    udp = next(p for p in ports if p["protocol"] == "udp")
    assert (udp["guest"], udp["host_ip"], udp["guest_ip"]) == (7777, "127.0.0.1", "10.0.2.15")
    vmctl("ssh", "web", "-c", UDP_ECHO, cwd=cluster)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(1.0)
        reply = b""
        deadline = time.monotonic() + 20
        while not reply:
            assert time.monotonic() < deadline, "no UDP reply through the forwarded port"
            sock.sendto(b"ping", ("127.0.0.1", udp["host"]))
            try:
                reply = sock.recv(2048)
            except TimeoutError:
                continue
    assert reply == b"echo:ping"


def test_a_destroyed_machine_leaves_the_others_hosts_block(vmctl: Vmctl, cluster: Path) -> None:
    """Runs last: it destroys db."""
    vmctl("destroy", "-f", "db", cwd=cluster, timeout=180)
    hosts = ssh(vmctl, cluster, "web", "cat /etc/hosts")
    assert "192.168.77.11" not in hosts and "192.168.77.10 web.example.test web" in hosts
