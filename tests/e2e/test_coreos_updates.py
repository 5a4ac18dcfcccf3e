"""The coreos-like box's own CoreOS parts, through vmctl (issue 17): Ignition configs from
fw_cfg handed over the three ways (a config Ignition rejects by `libvirt.qemuargs`, a good one by
`libvirt.sysinfo`, each on its own short-lived machine), then one shared machine: an Ignition
config at first boot (`config.ignition`), the 2014 coreos-vagrant cloud-config pattern, A/B /usr
updates with `vmctl reload` (whose first boot also runs Ignition again, with a config from
`libvirt.qemuargs`) and automatic rollbacks: a /usr that does not boot, and one that boots but
fails its health check. The shared machine's tests run in file order (booted once)."""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import Vmctl, write_vagrantfile

pytestmark = pytest.mark.host_wide  # one lane for host-wide state: tests/conftest.py

# coreos-vagrant's Vagrantfile did exactly this with its user-data (2014).
VAGRANTFILE = """
Vagrant.configure("2") do |config|
  config.vm.box = "vmctl/coreos-like"
  config.vm.synced_folder ".", "/vagrant", disabled: true
  config.vm.boot_timeout = 900  # TCG on a shared host: a first boot has taken over 300 s
  config.vm.network "private_network", ip: "172.17.8.150"
  config.vm.provider :libvirt do |libvirt|
    libvirt.memory = 1024
  end
  config.ignition.enabled = true
  config.ignition.path = "config.ign"
  config.vm.provision :file, :source => "user-data", :destination => "/tmp/vagrantfile-user-data"
  config.vm.provision :shell, :inline => "mv /tmp/vagrantfile-user-data /var/lib/coreos-vagrant/", :privileged => true
end
"""

IGNITION_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGnitionTestKeyNotUsedForLoginxxxxxxxxxxxxxxx ignition-test"
IGNITION_UNIT = (
    "[Unit]\nDescription=From Ignition\n[Service]\nType=oneshot\nRemainAfterExit=yes\n"
    "ExecStart=/bin/sh -c 'cat /etc/ign-marker > /run/ign-hello'\n[Install]\nWantedBy=multi-user.target\n"
)
IGNITION = {
    "ignition": {"version": "3.3.0"},
    "passwd": {"users": [{"name": "core", "sshAuthorizedKeys": [IGNITION_KEY]}]},
    "storage": {
        "files": [{"path": "/etc/ign-marker", "mode": 420,
                   "contents": {"source": "data:,hello%20from%20ignition%0A"}}],
        "directories": [{"path": "/var/lib/ign-dir", "mode": 488}],
        "links": [{"path": "/etc/ign-link", "target": "/etc/ign-marker"}],
    },
    "systemd": {"units": [{"name": "ign-hello.service", "enabled": True, "contents": IGNITION_UNIT}]},
}

USER_DATA = """\
#cloud-config
hostname: core-cc
write_files:
  - path: /etc/cloud-marker
    permissions: "0640"
    content: |
      written by coreos-cloudinit
coreos:
  etcd2:
    name: core-cc
    advertise-client-urls: http://$private_ipv4:2379
  units:
    - name: cc-hello.service
      command: start
      enable: true
      content: |
        [Unit]
        Description=Started by coreos-cloudinit

        [Service]
        Type=oneshot
        RemainAfterExit=yes
        ExecStart=/bin/sh -c 'cat /etc/cloud-marker > /run/cc-hello'

        [Install]
        WantedBy=multi-user.target
"""


@pytest.fixture(scope="module")
def coreos_box(vmctl: Vmctl, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("coreos-build")
    vmctl("box", "build", "coreos-like", "--output", str(out), "--add", timeout=1800)
    return out


# Ignition refuses this config (a relative path); handed over by libvirt.qemuargs this time.
BAD_VAGRANTFILE = """
Vagrant.configure("2") do |config|
  config.vm.box = "vmctl/coreos-like"
  config.vm.synced_folder ".", "/vagrant", disabled: true
  config.vm.boot_timeout = 900  # TCG on a shared host: a first boot has taken over 300 s
  config.vm.provider :libvirt do |libvirt|
    libvirt.qemuargs value: "-fw_cfg"
    libvirt.qemuargs value: "name=opt/com.coreos/config,file=PROJECT/bad.ign"
  end
end
"""
BAD_IGNITION = {"ignition": {"version": "3.3.0"}, "storage": {"files": [{"path": "etc/relative"}]}}


def test_a_config_ignition_rejects_fails_up_with_its_message(
    vmctl: Vmctl, coreos_box: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    project = tmp_path_factory.mktemp("bad-ignition")
    project.chmod(0o755)
    write_vagrantfile(project, BAD_VAGRANTFILE.replace("PROJECT", str(project)))
    (project / "bad.ign").write_text(json.dumps(BAD_IGNITION))
    try:
        started = time.monotonic()
        r = vmctl("up", cwd=project, check=False, timeout=600)
        assert r.returncode == 1, r.stderr
        assert "the machine stopped while vmctl waited for SSH" in r.stderr
        assert "Ignition failed" in r.stderr and "path not absolute" in r.stderr, r.stderr
        assert time.monotonic() - started < 300
    finally:
        vmctl("destroy", "-f", cwd=project, check=False, timeout=300)


# vagrant-libvirt's sysinfo Hash with vmctl's "fw_cfg" block: the config by file (relative to
# the Vagrantfile), beside an SMBIOS block.
SYSINFO_VAGRANTFILE = """
Vagrant.configure("2") do |config|
  config.vm.box = "vmctl/coreos-like"
  config.vm.synced_folder ".", "/vagrant", disabled: true
  config.vm.boot_timeout = 900  # TCG on a shared host: a first boot has taken over 300 s
  config.vm.provider :libvirt do |libvirt|
    libvirt.sysinfo = {
      'system' => { 'serial' => 'ign-by-sysinfo' },
      'fw_cfg' => { 'opt/com.coreos/config' => { 'file' => 'sysinfo.ign' } }
    }
  end
end
"""


def hello_unit(marker: str, out: str) -> str:
    """A oneshot unit for multi-user.target that copies MARKER to OUT (in /run: this boot's)."""
    return ("[Unit]\nDescription=From Ignition\n[Service]\nType=oneshot\nRemainAfterExit=yes\n"
            f"ExecStart=/bin/sh -c 'cat {marker} > {out}'\n[Install]\nWantedBy=multi-user.target\n")


def small_ignition(name: str, text: str) -> dict:
    """A config with a file /etc/NAME-marker holding TEXT and an enabled NAME.service that
    copies it to /run/NAME-hello, plus a key for core."""
    return {
        "ignition": {"version": "3.3.0"},
        "passwd": {"users": [{"name": "core", "sshAuthorizedKeys": [IGNITION_KEY]}]},
        "storage": {"files": [{"path": f"/etc/{name}-marker", "mode": 420,
                               "contents": {"source": "data:," + text.replace(" ", "%20") + "%0A"}}]},
        "systemd": {"units": [{"name": f"{name}.service", "enabled": True,
                               "contents": hello_unit(f"/etc/{name}-marker", f"/run/{name}-hello")}]},
    }  # fmt: skip


def test_ignition_by_libvirt_sysinfo_fw_cfg(
    vmctl: Vmctl, coreos_box: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    project = tmp_path_factory.mktemp("sysinfo-ignition")
    project.chmod(0o755)
    write_vagrantfile(project, SYSINFO_VAGRANTFILE)
    (project / "sysinfo.ign").write_text(json.dumps(small_ignition("sysinfo", "from libvirt.sysinfo")))
    try:
        vmctl("up", cwd=project, timeout=900)
        # The file was written and the unit enabled before systemd started: it ran on this boot,
        # before the first login (vmctl's, with its own key: Ignition's key was added beside it).
        out = run(vmctl, project, "cat /run/sysinfo-hello /etc/sysinfo-marker; systemctl is-enabled sysinfo.service")
        assert out == "from libvirt.sysinfo\n" * 2 + "enabled\n"
        assert IGNITION_KEY in run(vmctl, project, "cat ~/.ssh/authorized_keys.d/ignition")
        assert IGNITION_KEY not in run(vmctl, project, "cat ~/.ssh/authorized_keys")
        assert "Ignition finished successfully" in run(vmctl, project, "sudo cat /var/log/ignition.log")
        # The SMBIOS block of the same Hash reached the machine too.
        assert run(vmctl, project, "sudo cat /sys/class/dmi/id/product_serial") == "ign-by-sysinfo\n"
    finally:
        vmctl("destroy", "-f", cwd=project, check=False, timeout=300)


@pytest.fixture(scope="module")
def machine(vmctl: Vmctl, coreos_box: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    project = tmp_path_factory.mktemp("coreos-updates")
    project.chmod(0o755)
    write_vagrantfile(project, VAGRANTFILE)
    (project / "user-data").write_text(USER_DATA)
    (project / "config.ign").write_text(json.dumps(IGNITION))
    try:
        vmctl("up", cwd=project, timeout=600)
        yield project
    finally:
        vmctl("destroy", "-f", cwd=project, check=False, timeout=300)


# The shared machine's Vagrantfile from the update on: the Ignition config by qemuargs instead.
QEMUARGS_VAGRANTFILE = VAGRANTFILE.replace(
    '  config.ignition.enabled = true\n  config.ignition.path = "config.ign"\n', ""
).replace(
    "    libvirt.memory = 1024\n",
    '    libvirt.memory = 1024\n    libvirt.qemuargs value: "-fw_cfg"\n'
    '    libvirt.qemuargs value: "name=opt/com.coreos/config,file=PROJECT/qemu.ign"\n',
)


def run(vmctl: Vmctl, project: Path, command: str, timeout: float = 300) -> str:
    return vmctl("ssh", "-c", command, cwd=project, timeout=timeout).stdout


def eventually(vmctl: Vmctl, project: Path, command: str, done, timeout: float = 240) -> str:  # noqa: ANN001
    """COMMAND's output once DONE(output) holds (the machine may be rebooting meanwhile)."""
    deadline = time.monotonic() + timeout
    last = ""
    while time.monotonic() < deadline:
        try:
            r = vmctl("ssh", "-c", command, cwd=project, check=False, timeout=120)
        except subprocess.TimeoutExpired:  # a session caught by a reboot
            continue
        last = r.stdout + r.stderr
        if r.returncode == 0 and done(r.stdout):
            return r.stdout
        time.sleep(3)
    raise AssertionError(f"{command!r} never gave the expected output; last:\n{last}")


def usr_status(vmctl: Vmctl, project: Path) -> dict:
    return json.loads(run(vmctl, project, "update-usr status --json"))


def test_ignition_at_first_boot(vmctl: Vmctl, machine: Path) -> None:
    # Applied before systemd started: the unit it enabled ran on that very boot.
    assert run(vmctl, machine, "cat /run/ign-hello /etc/ign-link") == "hello from ignition\n" * 2
    assert run(vmctl, machine, "stat -c %a%U /var/lib/ign-dir /etc/ign-marker") == "750root\n644root\n"
    assert run(vmctl, machine, "systemctl is-enabled ign-hello.service").strip() == "enabled"
    # Its key is added beside vmctl's (which still logs in), not in place of it.
    assert IGNITION_KEY in run(vmctl, machine, "cat ~/.ssh/authorized_keys.d/ignition")
    assert "Ignition finished successfully" in run(vmctl, machine, "sudo cat /var/log/ignition.log")
    assert run(vmctl, machine, "test -e /boot/ignition.firstboot || echo once") == "once\n"


def test_coreos_vagrant_cloud_config(vmctl: Vmctl, machine: Path) -> None:
    # The path unit applies the user-data once Vagrant's shell provisioner has moved it.
    out = eventually(vmctl, machine, "cat /run/cc-hello", lambda s: "coreos-cloudinit" in s, 300)
    assert out == "written by coreos-cloudinit\n"
    assert run(vmctl, machine, "hostname").strip() == "core-cc"
    assert run(vmctl, machine, "sudo stat -c %a%U /etc/cloud-marker").strip() == "640root"
    assert run(vmctl, machine, "systemctl is-enabled cc-hello.service").strip() == "enabled"
    dropin = run(vmctl, machine, "cat /run/systemd/system/etcd.service.d/20-cloudinit.conf")
    assert 'Environment="ETCD_NAME=core-cc"' in dropin
    assert 'Environment="ETCD_ADVERTISE_CLIENT_URLS=http://172.17.8.150:2379"' in dropin
    journal = run(vmctl, machine, "sudo journalctl -u coreos-vagrant-user-data.service --no-pager -o cat")
    assert "applied /var/lib/coreos-vagrant/vagrantfile-user-data" in journal
    # By hand, as on CoreOS: a bad file is one error line and status 1.
    bad = vmctl("ssh", "-c", "printf 'hostname: x\\n' > /tmp/bad && sudo coreos-cloudinit --from-file /tmp/bad",
                cwd=machine, check=False)
    assert bad.returncode == 1 and "neither a cloud-config" in bad.stderr


def test_usr_update_then_automatic_rollback(vmctl: Vmctl, machine: Path) -> None:
    before = usr_status(vmctl, machine)
    assert before["active"] == "USR-A" and before["passive"] == "USR-B"
    assert before["pending"] is None and before["last_rollback"] is None
    box_version = before["versions"]["USR-A"]
    assert box_version and before["versions"]["USR-B"] is None

    # A new /usr: this one plus a marker (an overlay over /usr, so nothing is copied first),
    # packed and written to the passive partition, USR-B.
    run(vmctl, machine, "sudo mkdir -p /var/tmp/up/share /var/tmp/work /var/tmp/newusr && "
        "echo update 9.0.1 | sudo tee /var/tmp/up/share/update-marker >/dev/null && "
        "sudo mount -t overlay overlay -o lowerdir=/usr,upperdir=/var/tmp/up,workdir=/var/tmp/work "
        "/var/tmp/newusr && sudo update-usr pack --version 9.0.1 /var/tmp/newusr /var/tmp/usr.img && "
        "sudo umount /var/tmp/newusr && sudo update-usr apply /var/tmp/usr.img", timeout=900)
    pending = usr_status(vmctl, machine)
    assert pending["pending"] == "USR-B" and pending["versions"]["USR-B"] == "9.0.1"

    # That boot also runs Ignition again (armed by /boot/ignition.firstboot, as on Fedora
    # CoreOS), with a config that libvirt.qemuargs -fw_cfg hands over this time: the reload
    # defines the machine as the Vagrantfile says now.
    write_vagrantfile(machine, QEMUARGS_VAGRANTFILE.replace("PROJECT", str(machine)))
    (machine / "qemu.ign").write_text(json.dumps(small_ignition("qemuargs", "from libvirt.qemuargs")))
    run(vmctl, machine, "sudo touch /boot/ignition.firstboot")

    # Tried on the next boot, kept once the machine is up and healthy.
    vmctl("reload", cwd=machine, timeout=900)
    now = json.loads(eventually(vmctl, machine, "update-usr status --json",
                                lambda s: json.loads(s)["confirmed"]))
    assert now["active"] == "USR-B" and now["passive"] == "USR-A" and now["pending"] is None
    assert now["versions"] == {"USR-A": box_version, "USR-B": "9.0.1"}
    assert run(vmctl, machine, "cat /usr/share/update-marker") == "update 9.0.1\n"
    assert "ro" in run(vmctl, machine, "findmnt -no OPTIONS /usr").strip().split(",")
    touch = vmctl("ssh", "-c", "sudo touch /usr/x", cwd=machine, check=False)
    assert touch.returncode != 0 and "Read-only file system" in touch.stderr
    out = run(vmctl, machine, "cat /run/qemuargs-hello /etc/qemuargs-marker; systemctl is-enabled qemuargs.service")
    assert out == "from libvirt.qemuargs\n" * 2 + "enabled\n"
    assert run(vmctl, machine, "test -e /boot/ignition.firstboot || echo once") == "once\n"

    # A broken /usr (no systemd in it): apply refuses it, --force writes it, and the boot
    # that tries it goes back to USR-B by itself, saying why.
    run(vmctl, machine, "mkdir -p /tmp/broken/share && echo broken > /tmp/broken/share/x && "
        "sudo update-usr pack --version 9.0.2 /tmp/broken /tmp/broken.img")
    refused = vmctl("ssh", "-c", "sudo update-usr apply /tmp/broken.img", cwd=machine, check=False)
    assert refused.returncode == 1 and "holds no lib/systemd/systemd" in refused.stderr
    run(vmctl, machine, "sudo update-usr apply --force /tmp/broken.img")
    assert usr_status(vmctl, machine)["pending"] == "USR-A"
    vmctl("reload", cwd=machine, timeout=900)
    back = usr_status(vmctl, machine)
    assert back["active"] == "USR-B" and back["pending"] is None and back["confirmed"]
    rollback = back["last_rollback"]
    assert rollback["from"] == "USR-A" and rollback["to"] == "USR-B" and rollback["version"] == "9.0.2"
    assert "holds no /sbin/init" in rollback["reason"] and rollback["time"]
    assert run(vmctl, machine, "cat /usr/share/update-marker") == "update 9.0.1\n"
    human = run(vmctl, machine, "update-usr status")
    assert "last rollback:" in human and "USR-A (version 9.0.2) abandoned for USR-B" in human


def test_a_usr_failing_its_health_check_is_rolled_back(vmctl: Vmctl, machine: Path) -> None:
    # After the test above: USR-B (9.0.1) runs, USR-A holds the broken 9.0.2.
    before = usr_status(vmctl, machine)
    assert before["active"] == "USR-B" and before["confirmed"] and before["pending"] is None
    boots = len(run(vmctl, machine, "sudo journalctl --list-boots --no-pager -q").splitlines())

    # A /usr that boots to multi-user.target, but whose own health check says it is not fit.
    run(vmctl, machine, "sudo rm -f /var/tmp/usr.img && "
        "sudo mkdir -p /var/tmp/up3/lib/update-usr/health.d /var/tmp/up3/share /var/tmp/work3 /var/tmp/newusr3 && "
        "printf '#!/bin/sh\\necho schema 7 not migrated\\nexit 1\\n' | "
        "sudo tee /var/tmp/up3/lib/update-usr/health.d/fail >/dev/null && "
        "sudo chmod 755 /var/tmp/up3/lib/update-usr/health.d/fail && "
        "echo update 9.0.3 | sudo tee /var/tmp/up3/share/update-marker >/dev/null && "
        "sudo mount -t overlay overlay -o lowerdir=/usr,upperdir=/var/tmp/up3,workdir=/var/tmp/work3 "
        "/var/tmp/newusr3 && sudo update-usr pack --version 9.0.3 /var/tmp/newusr3 /var/tmp/usr3.img && "
        "sudo umount /var/tmp/newusr3 && sudo update-usr apply /var/tmp/usr3.img", timeout=900)
    assert usr_status(vmctl, machine)["pending"] == "USR-A"

    # A reboot from inside this time. The trial boot reaches multi-user, update-usr-confirm
    # finds the check failing and reboots; the boot after that is on USR-B again, by itself.
    run(vmctl, machine, "sudo systemd-run --quiet --on-active=2 /usr/bin/systemctl reboot")
    back = json.loads(eventually(vmctl, machine, "update-usr status --json",
                                 lambda s: (json.loads(s)["last_rollback"] or {}).get("version") == "9.0.3",
                                 timeout=900))  # fmt: skip
    assert back["active"] == "USR-B" and back["pending"] is None and back["confirmed"]
    rollback = back["last_rollback"]
    assert rollback["from"] == "USR-A" and rollback["to"] == "USR-B", rollback
    assert rollback["reason"] == ("the health check on USR-A failed: "
                                  "/usr/lib/update-usr/health.d/fail exited 1: schema 7 not migrated"), rollback
    assert run(vmctl, machine, "cat /usr/share/update-marker") == "update 9.0.1\n"
    assert run(vmctl, machine, "test -e /usr/lib/update-usr/health.d/fail || echo gone") == "gone\n"
    # Two boots since the reboot: the trial (which got as far as the health check) and this one.
    assert len(run(vmctl, machine, "sudo journalctl --list-boots --no-pager -q").splitlines()) == boots + 2
    trial = run(vmctl, machine, "sudo journalctl -b -1 -u update-usr-confirm.service --no-pager -o cat")
    assert "the health check on USR-A failed" in trial and "rebooting onto USR-B" in trial, trial
