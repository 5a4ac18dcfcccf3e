"""Snapshots on real TCG guests of the tiny box, through the CLI (issue 13).

One machine is brought up for the module and every test works on it in order (the disk
full test first, while its snapshots folder does not exist yet, and the destroy last);
a second project with two machines checks that a snapshot command acts on both.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import VMCTL, Result, Vmctl, write_vagrantfile

VAGRANTFILE = """
    Vagrant.configure("2") do |config|
      config.vm.box = "vmctl/tiny"
      config.vm.synced_folder ".", "/vagrant", disabled: true
      config.vm.provision "shell", name: "once", inline: "echo x >> /home/vagrant/once-count"
      config.vm.provision "shell", name: "always", run: "always", inline: "echo x >> /home/vagrant/always-count"
      config.vm.provider :libvirt do |lv|
        lv.memory = 256
      end
    end
"""


@pytest.fixture(scope="module")
def project(vmctl: Vmctl, tiny_box: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    folder = tmp_path_factory.mktemp("snapshots")
    folder.chmod(0o755)
    write_vagrantfile(folder, VAGRANTFILE)
    try:
        vmctl("up", cwd=folder)
        yield folder
    finally:
        vmctl("destroy", "-f", cwd=folder, check=False, timeout=120)


def sh(vmctl: Vmctl, project: Path, command: str, check: bool = True) -> Result:
    return vmctl("ssh", "-c", command, cwd=project, check=check)


def state_of(vmctl: Vmctl, project: Path, name: str = "default") -> str:
    machines = vmctl("status", "--json", cwd=project).json()["machines"]
    return next(m["state"] for m in machines if m["name"] == name)


def names(vmctl: Vmctl, project: Path, machine: str = "default") -> list[str]:
    listed = vmctl("snapshot", "list", "--json", cwd=project).json()["machines"]
    return [s["name"] for m in listed if m["name"] == machine for s in m["snapshots"]]


def index(project: Path, machine: str = "default") -> dict:
    return json.loads((project / ".vmctl" / "machines" / machine / "snapshots.json").read_text())


def machine_home(vmctl: Vmctl, project: Path, machine: str = "default") -> Path:
    state = json.loads((project / ".vmctl" / "machines" / machine / "state.json").read_text())
    return vmctl.home / "machines" / state["id"]


def clock_is_right(vmctl: Vmctl, project: Path, slack: float = 1.5) -> bool:
    """Whether the guest's clock reads the host's time (give or take SLACK seconds)."""
    before = time.time()
    guest = float(sh(vmctl, project, "date +%s.%N").stdout)
    after = time.time()
    print(f"clock: host {before:.3f}..{after:.3f}, guest {guest:.3f}")
    return before - slack <= guest <= after + slack


def popen(vmctl: Vmctl, *args: str, cwd: Path) -> subprocess.Popen[str]:
    return subprocess.Popen([*VMCTL, *args], cwd=cwd, env=vmctl.env, stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


# --- a full disk (first: the machine's snapshots folder does not exist yet) ----------------

@pytest.mark.skipif(os.geteuid() != 0, reason="mounting a small tmpfs needs root")
def test_a_full_disk_during_save_changes_nothing(vmctl: Vmctl, project: Path) -> None:
    """The machine's snapshots folder on a 4 MiB file system: the saved state does not fit.
    (QEMU runs in a mount namespace of its own, made when it starts: the small file system
    is mounted while the machine is stopped.)"""
    folder = machine_home(vmctl, project) / "snapshots"
    assert not folder.exists()
    sh(vmctl, project, "echo before > ~/full.txt; sync")
    vmctl("halt", cwd=project)
    folder.mkdir(mode=0o700)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m,mode=0700", "tmpfs", str(folder)], check=True)
    try:
        vmctl("up", cwd=project)
        full = vmctl("snapshot", "save", "full", cwd=project, check=False)
        assert full.returncode == 1, full.stderr
        assert "No space left on device" in full.stderr or "disk is full" in full.stderr, full.stderr
        assert "free some disk space" in full.stderr
        assert list(folder.iterdir()) == []  # the overlay and the state file made for it are gone
        assert state_of(vmctl, project) == "running"
        assert sh(vmctl, project, "cat ~/full.txt").stdout == "before\n"
        assert names(vmctl, project) == [] and index(project)["pending"] is None
        vmctl("halt", cwd=project)
    finally:
        subprocess.run(["umount", str(folder)], check=True)
    vmctl("up", cwd=project)
    vmctl("snapshot", "save", "full", cwd=project)  # with room, the same command works
    vmctl("snapshot", "delete", "full", cwd=project)
    assert names(vmctl, project) == []


# --- the sequence of vagrant-libvirt's acceptance test, through a `vagrant` that is vmctl --------

def test_vagrant_libvirt_acceptance_sequence(vmctl: Vmctl, project: Path, tmp_path: Path) -> None:
    shim = tmp_path / "bin"
    shim.mkdir()
    (shim / "vagrant").write_text(f"#!/bin/sh\nexec {sys.executable} -m vmctl \"$@\"\n")
    (shim / "vagrant").chmod(0o755)
    env = {"PATH": f"{shim}:{os.environ.get('PATH', '')}"}

    def vagrant(*args: str) -> int:
        return subprocess.run(["vagrant", *args], cwd=project, env={**vmctl.env, **env}, stdin=subprocess.DEVNULL,
                              capture_output=True, text=True, timeout=300, check=False).returncode

    once = sh(vmctl, project, "cat ~/once-count").stdout
    always = sh(vmctl, project, "cat ~/always-count").stdout
    assert vagrant("ssh", "--", "-t", "touch a.txt") == 0
    assert vagrant("snapshot", "save", "default", "test") == 0
    assert vagrant("ssh", "--", "-t", "rm a.txt") == 0
    assert vagrant("ssh", "--", "-t", "ls a.txt") != 0
    assert vagrant("ssh", "--", "-t", "touch b.txt") == 0
    assert vagrant("snapshot", "restore", "test") == 0
    assert vagrant("ssh", "--", "-t", "ls a.txt") == 0
    assert vagrant("ssh", "--", "-t", "ls b.txt") != 0
    assert vagrant("snapshot", "delete", "test") == 0
    # Restore ran no `once` provisioner again (Vagrant #6752); an `always` one runs, as on up.
    assert sh(vmctl, project, "cat ~/once-count").stdout == once
    assert sh(vmctl, project, "cat ~/always-count").stdout == always + "x\n"
    assert names(vmctl, project) == []
    home = machine_home(vmctl, project)
    assert sorted(p.name for p in home.rglob("*.qcow2")) == [Path(json.loads(
        (project / ".vmctl/machines/default/state.json").read_text())["disk"]).name]


# --- a running machine: memory, processes, the clock, SSH ----------------------------------------

def test_running_snapshot_brings_back_memory_processes_and_the_clock(vmctl: Vmctl, project: Path) -> None:
    known_hosts = (project / ".vmctl" / "machines" / "default" / "known_hosts").read_bytes()
    assert "tmpfs" in sh(vmctl, project, "grep ' /tmp ' /proc/mounts").stdout
    sh(vmctl, project, "echo in-memory > /tmp/mem.txt; sh -c 'while true; do sleep 1; done' "
                       "</dev/null >/dev/null 2>&1 & echo $! > /tmp/pid")
    pid = sh(vmctl, project, "cat /tmp/pid").stdout.strip()
    vmctl("snapshot", "save", "live", cwd=project, check=True)
    assert state_of(vmctl, project) == "running"  # saving does not stop the machine
    sh(vmctl, project, f"rm /tmp/mem.txt; kill {pid}; echo after > ~/after.txt; sync")
    time.sleep(3)  # the guest's clock would now lag 3 s behind, were it not set
    started = time.monotonic()
    vmctl("snapshot", "restore", "live", cwd=project)
    # SSH works at once: the restore waited for it and set the clock over it.
    assert sh(vmctl, project, "true").returncode == 0
    took = time.monotonic() - started
    assert sh(vmctl, project, "cat /tmp/mem.txt").stdout == "in-memory\n"
    assert sh(vmctl, project, f"kill -0 {pid} && echo alive").stdout == "alive\n"
    assert sh(vmctl, project, "cat ~/after.txt", check=False).returncode != 0
    assert clock_is_right(vmctl, project)
    # The pinned host key still holds (OpenSSH checked it above), and was not replaced.
    assert (project / ".vmctl" / "machines" / "default" / "known_hosts").read_bytes() == known_hosts
    assert took < 60


# --- push and pop ---------------------------------------------------------------------------

def test_push_and_pop(vmctl: Vmctl, project: Path) -> None:
    vmctl("snapshot", "push", cwd=project)
    sh(vmctl, project, "touch ~/p1")
    vmctl("snapshot", "push", cwd=project)
    sh(vmctl, project, "touch ~/p2")
    pushed = [n for n in names(vmctl, project) if n.startswith("push_")]
    assert len(pushed) == 2
    vmctl("snapshot", "pop", cwd=project)
    assert sh(vmctl, project, "ls ~/p1 ~/p2", check=False).stdout.split() == ["/home/vagrant/p1"]
    assert [n for n in names(vmctl, project) if n.startswith("push_")] == pushed[:1]
    vmctl("snapshot", "pop", "--no-delete", cwd=project)
    assert sh(vmctl, project, "ls ~/p1", check=False).returncode != 0
    assert [n for n in names(vmctl, project) if n.startswith("push_")] == pushed[:1]
    vmctl("snapshot", "pop", cwd=project)
    nothing = vmctl("snapshot", "pop", cwd=project)
    assert "no pushed snapshot to pop" in nothing.stderr


# --- a stopped machine ---------------------------------------------------------------------------

def test_stopped_machine_snapshot_is_its_disks(vmctl: Vmctl, project: Path) -> None:
    sh(vmctl, project, "echo cold > ~/cold.txt; echo tmp > /tmp/cold-tmp; sync")
    vmctl("halt", cwd=project)
    vmctl("snapshot", "save", "cold", cwd=project)
    listed = vmctl("snapshot", "list", "--json", cwd=project).json()["machines"][0]["snapshots"]
    assert next(s for s in listed if s["name"] == "cold")["memory"] is False
    vmctl("up", cwd=project)
    sh(vmctl, project, "rm ~/cold.txt; echo later > ~/later.txt; sync")
    # Restored without starting: stopped, on the snapshot's disks.
    vmctl("snapshot", "restore", "cold", "--no-start", cwd=project)
    assert state_of(vmctl, project) == "poweroff"
    vmctl("up", cwd=project)
    assert sh(vmctl, project, "cat ~/cold.txt").stdout == "cold\n"
    assert sh(vmctl, project, "ls ~/later.txt /tmp/cold-tmp", check=False).returncode != 0  # booted afresh
    # A running machine's snapshot restored while the machine is stopped comes back running.
    sh(vmctl, project, "echo hot > /tmp/hot.txt")
    vmctl("snapshot", "save", "hot", cwd=project)
    vmctl("halt", cwd=project)
    vmctl("snapshot", "restore", "hot", cwd=project)
    assert state_of(vmctl, project) == "running"
    assert sh(vmctl, project, "cat /tmp/hot.txt").stdout == "hot\n"
    # ...and with --no-start it waits suspended; up resumes it.
    vmctl("snapshot", "restore", "hot", "--no-start", cwd=project)
    assert state_of(vmctl, project) == "saved"
    vmctl("up", cwd=project)
    assert sh(vmctl, project, "cat /tmp/hot.txt").stdout == "hot\n"
    assert clock_is_right(vmctl, project)


# --- list, status, errors --------------------------------------------------------------------------

def test_list_status_and_what_is_refused(vmctl: Vmctl, project: Path) -> None:
    listed = vmctl("snapshot", "list", "--json", cwd=project).json()
    [m] = listed["machines"]
    assert m["name"] == "default"
    for s in m["snapshots"]:
        assert set(s) == {"name", "created", "parent", "memory", "size_bytes", "box", "box_version"}
        assert s["box"] == "vmctl/tiny" and s["size_bytes"] > 0
    status = vmctl("status", "--json", cwd=project).json()["machines"][0]
    assert status["snapshots"] == len(m["snapshots"]) >= 2
    table = vmctl("snapshot", "list", cwd=project).stdout
    cut = subprocess.run(["cut", "-f2"], input=table, capture_output=True, text=True, check=True).stdout
    assert cut.split() == ["SNAPSHOT", *[s["name"] for s in m["snapshots"]]]
    taken = vmctl("snapshot", "save", "cold", cwd=project, check=False)
    assert taken.returncode == 1 and "already has a snapshot named 'cold'" in taken.stderr
    missing = vmctl("snapshot", "restore", "nope", cwd=project, check=False)
    assert missing.returncode == 1 and "its snapshots: " in missing.stderr and "cold" in missing.stderr


# --- faults: vmctl killed, Ctrl-C, two commands at once ---------------------------------------------------

def settled(vmctl: Vmctl, project: Path) -> Result:
    """The next command after an interruption: it settles what was pending and says so."""
    result = vmctl("snapshot", "list", cwd=project)
    assert index(project)["pending"] is None
    return result


@pytest.mark.parametrize("delay", [0.3, 0.6, 0.9, 1.3])
def test_vmctl_killed_during_save(vmctl: Vmctl, project: Path, delay: float) -> None:
    name = f"kill-{int(delay * 10)}"
    sh(vmctl, project, f"echo {delay} > ~/killed-save")
    proc = popen(vmctl, "snapshot", "save", name, cwd=project)
    time.sleep(delay)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    pending = index(project)["pending"]
    after = settled(vmctl, project)
    if pending is not None:
        assert "was interrupted" in after.stderr and ("finished" in after.stderr or "undone" in after.stderr)
    # Before or after, never between: running, on one consistent disk, saved or not.
    assert state_of(vmctl, project) == "running"
    assert sh(vmctl, project, "cat ~/killed-save").stdout == f"{delay}\n"
    if name in names(vmctl, project):
        sh(vmctl, project, "echo changed > ~/killed-save")
        vmctl("snapshot", "restore", name, cwd=project)
        assert sh(vmctl, project, "cat ~/killed-save").stdout == f"{delay}\n"
        vmctl("snapshot", "delete", name, cwd=project)


@pytest.mark.parametrize("delay", [0.3, 0.6, 0.9, 1.3])
def test_vmctl_killed_during_restore(vmctl: Vmctl, project: Path, delay: float) -> None:
    sh(vmctl, project, "echo saved > ~/killed-restore")
    vmctl("snapshot", "save", "--force", "target", cwd=project)
    sh(vmctl, project, "echo changed > ~/killed-restore")
    proc = popen(vmctl, "snapshot", "restore", "target", cwd=project)
    time.sleep(delay)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    settled(vmctl, project)
    assert state_of(vmctl, project) == "running"
    content = sh(vmctl, project, "cat ~/killed-restore").stdout
    assert content in ("saved\n", "changed\n")
    if content == "saved\n":  # restored: its clock was set, by the restore or the next command
        assert clock_is_right(vmctl, project)


def test_ctrl_c_during_save_finishes_the_step_first(vmctl: Vmctl, project: Path) -> None:
    proc = popen(vmctl, "snapshot", "save", "interrupted", cwd=project)
    time.sleep(0.6)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert "Traceback" not in err
    assert proc.returncode in (0, 130)
    assert index(project)["pending"] is None  # nothing left to settle
    assert state_of(vmctl, project) == "running"
    if "interrupted" in names(vmctl, project):
        vmctl("snapshot", "delete", "interrupted", cwd=project)


def test_two_snapshot_commands_at_once(vmctl: Vmctl, project: Path) -> None:
    for _ in range(5):
        first = popen(vmctl, "snapshot", "restore", "cold", "--no-provision", cwd=project)
        time.sleep(0.4)
        second = vmctl("snapshot", "save", "racing", cwd=project, check=False)
        first.communicate(timeout=120)
        assert first.returncode == 0
        if second.returncode == 1:
            assert "machine default is busy: another vmctl command is working on it" in second.stderr
            break
        vmctl("snapshot", "delete", "racing", cwd=project)
    else:
        pytest.fail("the second command never met the first")
    assert "racing" not in names(vmctl, project)


# --- destroy ------------------------------------------------------------------------------------------

def test_destroy_removes_every_snapshot(vmctl: Vmctl, project: Path) -> None:
    home = machine_home(vmctl, project)
    (home / "snapshots" / "users-file.txt").write_text("not vmctl's")
    vmctl("destroy", "-f", cwd=project)
    assert sorted(p.name for p in home.rglob("*")) == ["snapshots", "users-file.txt"]
    (home / "snapshots" / "users-file.txt").unlink()
    (home / "snapshots").rmdir()
    home.rmdir()
    assert not (project / ".vmctl" / "machines" / "default" / "snapshots.json").exists()


# --- two machines ---------------------------------------------------------------------------------------

def test_two_machines_at_once(vmctl: Vmctl, tiny_box: Path, tmp_path: Path, destroy_after: list[Path]) -> None:
    folder = tmp_path / "two"
    folder.mkdir()
    folder.chmod(0o755)
    write_vagrantfile(folder, """
        Vagrant.configure("2") do |config|
          config.vm.box = "vmctl/tiny"
          config.vm.synced_folder ".", "/vagrant", disabled: true
          config.vm.provider :libvirt do |lv|
            lv.memory = 256
          end
          config.vm.define "one"
          config.vm.define "two"
        end
    """)
    destroy_after.append(folder)
    vmctl("up", cwd=folder)
    for m in ("one", "two"):
        vmctl("ssh", m, "-c", f"echo {m} > ~/who; echo {m} > /tmp/who", cwd=folder)
    vmctl("snapshot", "save", "both", cwd=folder)  # one word: the snapshot, of every machine
    vmctl("snapshot", "save", "two", "only-two", cwd=folder)
    for m in ("one", "two"):
        vmctl("ssh", m, "-c", "echo changed > ~/who; rm /tmp/who", cwd=folder)
    lacking = vmctl("snapshot", "restore", "only-two", cwd=folder, check=False)
    assert lacking.returncode == 1 and "machine one has no snapshot named 'only-two'" in lacking.stderr
    assert vmctl("ssh", "two", "-c", "cat ~/who", cwd=folder).stdout == "changed\n"  # nothing restored
    vmctl("snapshot", "restore", "both", cwd=folder)
    for m in ("one", "two"):
        assert vmctl("ssh", m, "-c", "cat ~/who /tmp/who", cwd=folder).stdout == f"{m}\n{m}\n"
    listed = vmctl("snapshot", "list", "--json", cwd=folder).json()["machines"]
    assert [(m["name"], [s["name"] for s in m["snapshots"]]) for m in listed] == [
        ("one", ["both"]), ("two", ["both", "only-two"])]
    vmctl("snapshot", "delete", "both", cwd=folder)
    assert [len(m["snapshots"]) for m in vmctl("snapshot", "list", "--json", cwd=folder).json()["machines"]] == [0, 1]


# --- extra disks -----------------------------------------------------------------------------------------

def test_extra_disks_are_in_running_and_stopped_snapshots(vmctl: Vmctl, tiny_box: Path, tmp_path: Path,
                                                          destroy_after: list[Path]) -> None:
    """A qcow2 and a raw extra disk: a marker written straight onto each comes back with a
    snapshot of the running machine and with one of the stopped machine. The guest's page
    cache is dropped before reading, so the marker is read from the disk, not from memory."""
    folder = tmp_path / "disks"
    folder.mkdir()
    folder.chmod(0o755)
    write_vagrantfile(folder, """
        Vagrant.configure("2") do |config|
          config.vm.box = "vmctl/tiny"
          config.vm.synced_folder ".", "/vagrant", disabled: true
          config.vm.provider :libvirt do |lv|
            lv.memory = 256
            lv.storage :file, size: "64M"
            lv.storage :file, size: "64M", type: "raw"
          end
        end
    """)
    destroy_after.append(folder)
    started = time.monotonic()
    vmctl("up", cwd=folder)

    def write(word: str) -> None:
        sh(vmctl, folder, f"for d in vdb vdc; do printf '{word}-'$d | sudo dd of=/dev/$d bs=512 conv=sync "
                          "2>/dev/null; done; sync")

    def read() -> str:
        return sh(vmctl, folder, "sync; echo 3 | sudo tee /proc/sys/vm/drop_caches >/dev/null; "
                                 "for d in vdb vdc; do sudo dd if=/dev/$d bs=512 count=1 2>/dev/null | "
                                 "tr -d '\\000'; echo; done").stdout

    write("running")
    vmctl("snapshot", "save", "live", cwd=folder)
    write("changed")
    assert read() == "changed-vdb\nchanged-vdc\n"
    vmctl("snapshot", "restore", "live", cwd=folder)
    assert read() == "running-vdb\nrunning-vdc\n"

    write("stopped")
    vmctl("halt", cwd=folder)
    vmctl("snapshot", "save", "cold", cwd=folder)
    vmctl("up", cwd=folder)
    write("changed")
    vmctl("snapshot", "restore", "cold", cwd=folder)  # the machine boots on the snapshot's disks
    assert read() == "stopped-vdb\nstopped-vdc\n"

    listed = vmctl("snapshot", "list", "--json", cwd=folder).json()["machines"][0]["snapshots"]
    assert [s["name"] for s in listed] == ["live", "cold"] and all(s["size_bytes"] > 0 for s in listed)
    vmctl("snapshot", "delete", "live", cwd=folder)
    vmctl("snapshot", "delete", "cold", cwd=folder)
    assert read() == "stopped-vdb\nstopped-vdc\n"  # the merges kept the data
    print(f"extra disks: {time.monotonic() - started:.1f} s")
