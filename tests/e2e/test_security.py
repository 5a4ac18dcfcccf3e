"""Security after `vmctl up`, on one real TCG guest of the tiny box, through the CLI:
forwarded ports on 127.0.0.1 only, state files and folders private, no insecure public key
left in the guest (and the insecure key refused), and a guest whose host key changed behind
vmctl's back refused by `ssh`, `up` and `provision`, with nothing sent to it."""

from __future__ import annotations

import shutil
import stat
import subprocess
import time
from pathlib import Path

import paramiko
import pytest
from conftest import Vmctl, write_vagrantfile

import vmctl as vmctl_package

KEYS = Path(vmctl_package.__file__).parent / "data" / "insecure-keys"


def insecure_blobs() -> list[str]:
    """The base64 blobs of every insecure public key (ed25519 and RSA)."""
    lines = (KEYS / "vagrant.pub").read_text().split("\n")
    blobs = [line.split()[1] for line in lines if line.startswith("ssh-")]
    assert len(blobs) == 2
    return blobs


def listening(port: int) -> list[str]:
    """Local addresses listening on TCP PORT, from `ss`."""
    out = subprocess.run(["ss", "-ltnH"], capture_output=True, text=True, check=True).stdout
    return [line.split()[3].rpartition(":")[0] for line in out.splitlines()
            if line.split()[3].rpartition(":")[2] == str(port)]


def login(port: int, key: Path, user: str = "vagrant") -> paramiko.SSHClient:
    """A paramiko login that accepts whatever host key the guest shows (the test's own probe).
    A guest busy under TCG may drop a connection before its banner: that is retried; a
    refused key is not."""
    for attempt in range(10):
        client = paramiko.SSHClient()
        client.set_missing_host_key_policy(paramiko.AutoAddPolicy())
        try:
            client.connect("127.0.0.1", port=port, username=user, pkey=paramiko.PKey.from_path(key),
                           look_for_keys=False, allow_agent=False, timeout=20, banner_timeout=20, auth_timeout=20)
            return client
        except paramiko.AuthenticationException:
            client.close()
            raise
        except (paramiko.SSHException, OSError):
            client.close()
            if attempt == 9:
                raise
            time.sleep(1)
    raise AssertionError("unreachable")


def guest_run(port: int, key: Path, command: str) -> str:
    client = login(port, key)
    try:
        _, out, _ = client.exec_command(command, timeout=30)
        return out.read().decode()
    finally:
        client.close()


def test_security_after_up(vmctl: Vmctl, tiny_box: Path, project: Path, destroy_after: list[Path],
                           tmp_path: Path) -> None:
    write_vagrantfile(project, """
        Vagrant.configure("2") do |config|
          config.vm.box = "vmctl/tiny"
          config.vm.network "forwarded_port", guest: 80, host: 18181, id: "web"
          config.vm.network "forwarded_port", guest: 53, host: 18182, protocol: "udp", id: "dns"
          config.vm.provision "shell", name: "count", inline: "echo run >> /root/provision-count"
          config.vm.provider :libvirt do |lv|
            lv.memory = 256
          end
        end
    """)
    destroy_after.append(project)
    vmctl("up", cwd=project)
    [m] = vmctl("status", "--json", cwd=project).json()["machines"]
    port = m["ssh"]["port"]
    machine_key = Path(m["ssh"]["private_key"])

    # Forwarded ports listen on 127.0.0.1 only (ss), TCP and the SSH port alike.
    assert listening(port) == ["127.0.0.1"]
    assert listening(18181) == ["127.0.0.1"]
    udp = subprocess.run(["ss", "-lunH"], capture_output=True, text=True, check=True).stdout
    assert [line.split()[3] for line in udp.splitlines() if line.split()[3].endswith(":18182")] == ["127.0.0.1:18182"]

    # (b) The machine's folder is 0700; the key and every state file in it are 0600.
    state = project / ".vmctl" / "machines" / "default"
    assert machine_key == state / "private_key"
    assert stat.S_IMODE(state.stat().st_mode) == 0o700
    files = sorted(p for p in state.rglob("*") if p.is_file())
    assert {"private_key", "known_hosts"} <= {p.name for p in files}, files
    for f in files:
        mode = stat.S_IMODE(f.stat().st_mode)
        if f.suffix == ".pub":  # a public key is no secret (0644, as ssh-keygen makes it)
            assert mode & 0o022 == 0, (f, oct(mode))
        else:
            assert mode == 0o600, (f, oct(mode))
        assert f.stat().st_uid == project.stat().st_uid
    for folder in [p for p in state.rglob("*") if p.is_dir()]:
        assert stat.S_IMODE(folder.stat().st_mode) & 0o077 == 0, folder
    # ...and the global state that says how to reach machines is not world-writable.
    for f in [vmctl.home / "index.json", vmctl.home / "ports.json"]:
        if f.exists():
            assert stat.S_IMODE(f.stat().st_mode) & 0o022 == 0, f

    # (c) No insecure public key (ed25519 or RSA) is left in the guest's authorized_keys.
    authorized = vmctl("ssh", "-c", "cat ~/.ssh/authorized_keys", cwd=project).stdout
    for blob in insecure_blobs():
        assert blob not in authorized
    machine_public = subprocess.run(["ssh-keygen", "-y", "-f", str(machine_key)], capture_output=True,
                                    text=True, check=True).stdout.split()[1]
    assert [line.split()[1] for line in authorized.splitlines() if line.strip()] == [machine_public]

    # (d) Logging in with the insecure keys now fails: paramiko and OpenSSH.
    for name in ("vagrant.key.ed25519", "vagrant.key.rsa"):
        with pytest.raises(paramiko.AuthenticationException):
            login(port, KEYS / name).close()
        copy = tmp_path / name
        shutil.copyfile(KEYS / name, copy)
        copy.chmod(0o600)
        refused = subprocess.run(
            ["ssh", "-i", str(copy), "-p", str(port), "-o", "IdentitiesOnly=yes", "-o", "BatchMode=yes",
             "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR",
             "-o", "PubkeyAcceptedAlgorithms=+ssh-rsa", "vagrant@127.0.0.1", "touch insecure-got-in"],
            capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL,
        )
        assert refused.returncode == 255 and "Permission denied" in refused.stderr, refused.stderr
    assert guest_run(port, machine_key, "ls ~/insecure-got-in 2>&1 || echo absent").strip().endswith("absent")

    # (a) The guest's host key changes behind vmctl's back: the tiny box makes a new one at
    # boot when /etc/dropbear holds none (see boxes/tiny/files/etc/init.d/rcS).
    pinned = (state / "known_hosts").read_text()
    vmctl("ssh", "-c", "sudo rm -f /etc/dropbear/*key* && sudo sync", cwd=project)
    # -f: the deletion is synced already, and a graceful halt waits 60 s on the embedded
    # driver (QEMU stays up after the guest powers off; reported separately).
    vmctl("halt", "-f", cwd=project)
    up = vmctl("up", cwd=project, check=False)
    assert vmctl("status", "--json", cwd=project).json()["machines"][0]["state"] == "running"
    # up must log in (always-provisioners, synced folders), so it is the first to refuse.
    assert up.returncode == 1, up.stderr
    assert "error: the host key of" in up.stderr and "has changed: refusing to connect" in up.stderr, up.stderr
    assert "Traceback" not in up.stderr
    new_port = vmctl("status", "--json", cwd=project).json()["machines"][0]["ssh"]["port"]
    new_key = login(new_port, machine_key).get_transport().get_remote_server_key().get_base64()
    assert new_key not in pinned  # the guest really has a new host key

    ssh = vmctl("ssh", "-c", "touch ~/sent-by-ssh", cwd=project, check=False)
    assert ssh.returncode == 255, (ssh.returncode, ssh.stderr)
    assert "REMOTE HOST IDENTIFICATION HAS CHANGED" in ssh.stderr, ssh.stderr
    assert "Host key verification failed" in ssh.stderr, ssh.stderr

    provision = vmctl("provision", cwd=project, check=False)
    assert provision.returncode == 1, provision.stderr
    assert "error: the host key of" in provision.stderr and "has changed" in provision.stderr, provision.stderr
    assert "hint: " in provision.stderr and "Traceback" not in provision.stderr

    # Nothing was sent: the command did not run, the provisioner did not run again, and the
    # pin was not replaced by the new key.
    assert guest_run(new_port, machine_key, "ls ~/sent-by-ssh 2>&1 || echo absent").strip().endswith("absent")
    assert guest_run(new_port, machine_key, "sudo cat /root/provision-count") == "run\n"
    assert (state / "known_hosts").read_text() == pinned

    # destroy needs no SSH: it still removes everything vmctl made, and only that: a file
    # of the user's in the state folder stays (so does the folder), libvirt's log goes.
    domain = m["domain"]
    qemu_log = vmctl.home / "libvirt" / "log" / "qemu" / f"{domain}.log"
    assert qemu_log.exists()
    machine_home = Path(m["ssh"]["private_key"]).parent  # PROJECT/.vmctl/machines/default
    (machine_home / "notes.txt").write_text("mine")
    vmctl("destroy", "-f", cwd=project)
    assert sorted(p.name for p in state.iterdir()) == ["notes.txt"]
    assert not qemu_log.exists()
    (state / "notes.txt").unlink()
    vmctl("destroy", "-f", cwd=project)
    assert not state.exists()
