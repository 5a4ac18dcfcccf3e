"""Remote libvirt hosts on the test machine, for the e2e tests of qemu+ssh (test_remote_host.py,
test_two_hosts.py).

A "remote host" is a network and mount namespace with its own libvirtd (bench/vagrant.py's
Sandbox) and its own sshd, joined to this machine's root namespace by a veth pair
(10.233.N.1 here, 10.233.N.2 there). The user is a mount namespace of its own whose /root holds
the user's ~/.ssh (and /root/.pyenv, the Python of the venv): a config with an alias for each
host, a test-only key and each host's pinned key. Nothing is written to the real /root.
`link` joins two hosts by a veth pair of their own, with a route to each other's address,
so each reaches the other at the address the user's alias names (what vmctl's udp tunnels
between hosts send to).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from bench.vagrant import Sandbox  # noqa: E402


class User:
    """The user's side: a mount namespace whose /root is HOME (ROOT/home), with ~/.ssh."""

    def __init__(self, root: Path) -> None:
        self.home = root / "home"
        self.ssh = self.home / ".ssh"
        self.ssh.mkdir(parents=True, mode=0o700)
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(self.ssh / "id_ed25519")], check=True)
        self.holder: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.holder = subprocess.Popen(
            ["unshare", "--mount", "--propagation", "private", "sh", "-c",
             f"mkdir {self.home}/.pyenv && mount --bind /root/.pyenv {self.home}/.pyenv && "
             f"mount --rbind {self.home} /root && echo ready && exec sleep infinity >/dev/null"],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE)
        assert self.holder.stdout is not None and self.holder.stdout.readline().strip() == b"ready"
        self.holder.stdout.close()

    def command(self, *argv: str, cwd: Path) -> list[str]:
        """ARGV run as the user whose ~/.ssh names the hosts."""
        assert self.holder is not None
        return ["nsenter", f"--mount=/proc/{self.holder.pid}/ns/mnt", f"--wd={cwd}", *argv]

    def stop(self) -> None:
        if self.holder is not None:
            self.holder.kill()
            self.holder.wait()
            self.holder = None


def make_pki(folder: Path, ip: str) -> Path:
    """A test CA, a server certificate for IP and a client certificate, as libvirt names them:
    FOLDER holds the server's (cacert.pem, servercert.pem, serverkey.pem), FOLDER/client the
    client's (cacert.pem, clientcert.pem, clientkey.pem). Returns FOLDER."""
    client = folder / "client"
    client.mkdir(parents=True)

    def openssl(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=folder, check=True, capture_output=True, timeout=60)

    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "cacert.pem",
            "-days", "2", "-subj", "/CN=vmctl e2e CA")
    for name, subject, ext in (
        ("server", f"/CN={ip}", f"subjectAltName=IP:{ip}\nextendedKeyUsage=serverAuth\nbasicConstraints=CA:FALSE\n"),
        ("client", "/CN=vmctl e2e client", "extendedKeyUsage=clientAuth\nbasicConstraints=CA:FALSE\n"),
    ):
        (folder / f"{name}.ext").write_text(ext)
        openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}key.pem", "-out", f"{name}.csr",
                "-subj", subject)
        openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "cacert.pem", "-CAkey", "ca.key", "-CAcreateserial",
                "-out", f"{name}cert.pem", "-days", "2", "-extfile", f"{name}.ext")
    for name in ("cacert.pem", "clientcert.pem", "clientkey.pem"):
        shutil.copy(folder / name, client / name)
    return folder


class RemoteHost:
    """A libvirtd and an sshd in a namespace of their own, reached as ALIAS at 10.233.NET.2."""

    def __init__(self, root: Path, alias: str, net: int, tag: str, netns: str | None = None, *,
                 listen_tcp: bool = False, tls: bool = False) -> None:
        self.root = root
        self.alias = alias
        self.host_ip, self.ip = f"10.233.{net}.1", f"10.233.{net}.2"
        self.veth = (f"vmctl-{tag}0", f"vmctl-{tag}1")  # here, there
        # TLS: a CA, the host's certificate (for its address) and the user's, in root/pki;
        # the user's side (pkipath= of a qemu+tls URI) is root/pki/client
        self.pki = make_pki(root / "pki", self.ip) if tls else None
        self.sandbox = Sandbox(root / "host", netns=netns, listen_tcp=listen_tcp, tls=self.pki)
        self.sshd: subprocess.Popen[bytes] | None = None

    def run(self, *argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return subprocess.run(self.sandbox.command(*argv), capture_output=True, text=True, check=check, timeout=120,
                              stdin=subprocess.DEVNULL)

    def virsh(self, *args: str) -> str:
        return self.run("virsh", "-c", "qemu:///system", *args).stdout

    def start_sshd(self) -> None:
        d = self.root / "sshd"
        log = d / "log"
        log.unlink(missing_ok=True)
        self.sshd = subprocess.Popen(self.sandbox.command("/usr/sbin/sshd", "-D", "-f", str(d / "sshd_config"),
                                                          "-E", str(log)), stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + 20
        while b"Server listening" not in log.read_bytes() if log.exists() else True:
            assert time.monotonic() < deadline and self.sshd.poll() is None, "sshd did not start"
            time.sleep(0.1)

    def stop_sshd(self) -> None:
        if self.sshd is not None:
            self.sshd.terminate()
            self.sshd.wait(10)
            self.sshd = None

    def drop(self) -> None:
        """The link to the host drops: its sshd, and every session it serves (libvirt's
        connection, the hops to the guest), killed by pid (all of them this test's)."""
        self.stop_sshd()
        for pid in self.sandbox.netns_pids():
            try:
                if Path(f"/proc/{pid}/comm").read_text().strip() == "sshd":
                    os.kill(pid, signal.SIGKILL)
            except (OSError, ProcessLookupError):
                pass  # gone meanwhile

    def start(self, user: User) -> None:
        """Start the host and make it known to USER (an alias, the host's key, USER's key
        authorized for root)."""
        self.sandbox.start()
        netns = self.sandbox.netns
        here, there = self.veth
        subprocess.run(["ip", "link", "add", here, "type", "veth", "peer", "name", there, "netns", netns], check=True)
        subprocess.run(["ip", "addr", "add", f"{self.host_ip}/30", "dev", here], check=True)
        subprocess.run(["ip", "link", "set", here, "up"], check=True)
        subprocess.run(["ip", "-n", netns, "addr", "add", f"{self.ip}/30", "dev", there], check=True)
        subprocess.run(["ip", "-n", netns, "link", "set", there, "up"], check=True)
        d = self.root / "sshd"
        d.mkdir()
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(d / "host_key")], check=True)
        shutil.copy(user.ssh / "id_ed25519.pub", d / "authorized_keys")
        (d / "sshd_config").write_text(
            f"ListenAddress {self.ip}\nHostKey {d}/host_key\nAuthorizedKeysFile {d}/authorized_keys\n"
            "PermitRootLogin prohibit-password\nPasswordAuthentication no\nUsePAM no\nStrictModes no\n"
            f"PidFile {d}/pid\nAllowTcpForwarding yes\n")
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # sshd's privilege separation folder
        self.start_sshd()
        host_key = (d / "host_key.pub").read_text().split()[:2]
        with (user.ssh / "known_hosts").open("a") as f:
            f.write(f"{self.ip} {' '.join(host_key)}\n")
        with (user.ssh / "config").open("a") as f:
            f.write(f"Host {self.alias}\n  HostName {self.ip}\n  IdentityFile ~/.ssh/id_ed25519\n"
                    "  IdentitiesOnly yes\n  StrictHostKeyChecking yes\n  BatchMode yes\n")

    def stop(self) -> None:
        self.stop_sshd()
        self.sandbox.stop()  # deleting the namespace deletes its veths


def link(a: RemoteHost, b: RemoteHost, net: int, tag: str) -> None:
    """A veth pair between A's and B's namespaces (10.233.NET.1 and .2), and a route on each to
    the other's own address: A reaches B at B.ip (the address B's alias names), and back."""
    ends = (f"vmctl-{tag}a", f"vmctl-{tag}b")
    subprocess.run(["ip", "-n", a.sandbox.netns, "link", "add", ends[0], "type", "veth", "peer", "name", ends[1],
                    "netns", b.sandbox.netns], check=True)
    for host, end, mine, other in ((a, ends[0], 1, b), (b, ends[1], 2, a)):
        ns = host.sandbox.netns
        subprocess.run(["ip", "-n", ns, "addr", "add", f"10.233.{net}.{mine}/30", "dev", end], check=True)
        subprocess.run(["ip", "-n", ns, "link", "set", end, "up"], check=True)
        subprocess.run(["ip", "-n", ns, "route", "add", f"{other.ip}/32", "via", f"10.233.{net}.{3 - mine}"],
                       check=True)
