"""vagrant + vagrant-libvirt beside vmctl: `up`, `ssh -c true`, `status` and `destroy -f`
on the same box in the same run, the two tools alternating within each round.

vagrant-libvirt needs libvirtd's system instance and insists on its NAT management
network, so vagrant and its libvirtd run in a sandbox that shares nothing with the host's
libvirt (other tests on this machine start their own libvirtd on the host's paths):

    network namespace  `ip netns add`: the management bridge, its dnsmasq and NAT rules
    mount namespace    held open by a `sleep`; libvirt's fixed paths (/etc/libvirt,
                       /run/libvirt, /var/lib/libvirt, ...) are folders of a temporary
                       directory bind-mounted over them, so no socket, pidfile or
                       definition is shared with a host libvirtd
    libvirtd, virtlogd started with -d inside both, their pidfiles in the temporary directory

vagrant runs inside both namespaces too (`nsenter` into the mount namespace, then
`ip netns exec`), with its own VAGRANT_HOME. On the way out, always: `vagrant destroy -f`,
then every process left in the network namespace (libvirtd, virtlogd, dnsmasq, a QEMU)
is killed by pid, the namespace deleted and the temporary directory removed.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

OPERATIONS = ("up", "ssh -c true", "status", "destroy -f")
BOX = "vmctl/tiny"
TOOLS = ("vagrant", "libvirtd", "virtlogd", "virsh", "dnsmasq", "ip", "nsenter", "unshare")
# Every path a privileged libvirtd keeps state under (its pidfiles are moved with -p).
LIBVIRT_PATHS = ("/etc/libvirt", "/run/libvirt", "/var/lib/libvirt", "/var/cache/libvirt",
                 "/var/log/libvirt")
URI = "qemu:///system"

VAGRANTFILE = """\
Vagrant.configure("2") do |config|
  config.vm.box = "vmctl/tiny"
  config.vm.synced_folder ".", "/vagrant", disabled: true
  config.vm.provider :libvirt do |libvirt|
    libvirt.driver = "{driver}"
    libvirt.memory = {memory}
    libvirt.cpus = {cpus}
  end
end
"""

# vmctl's side: runs `vmctl ARGS...` in its bench project, returns (seconds, stdout).
VmctlRunner = Callable[..., tuple[float, str]]


def missing() -> str | None:
    """What this machine lacks to run vagrant-libvirt in a sandbox, or None."""
    for tool in TOOLS:
        if shutil.which(tool) is None:
            return tool
    with tempfile.TemporaryDirectory(prefix="vmctl-bench-vagrant-home-") as home:
        plugins = subprocess.run(["vagrant", "plugin", "list"], env=vagrant_env(Path(home)),
                                 stdin=subprocess.DEVNULL, capture_output=True, text=True, check=False)
    if "vagrant-libvirt" not in plugins.stdout:
        return "vagrant-libvirt"
    return None


def vagrant_env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VAGRANT_", "VMCTL_"))}
    env.update(VAGRANT_HOME=str(home), VAGRANT_DEFAULT_PROVIDER="libvirt",
               # No release check over the network in the middle of a timed command.
               VAGRANT_CHECKPOINT_DISABLE="1", NO_COLOR="1")
    return env


class Sandbox:
    """A network and a mount namespace with their own libvirtd and virtlogd."""

    def __init__(self, root: Path, netns: str | None = None, *, listen_tcp: bool = False,
                 tls: Path | None = None) -> None:
        self.root = root
        self.netns = netns or f"vmctl-bench-{os.getpid()}"  # NETNS: several sandboxes at once
        # LISTEN_TCP: libvirtd also answers qemu+tcp:// on port 16509 of the namespace, with no
        # authentication (a test's namespace only: nothing but this machine reaches it).
        # TLS: a folder with cacert.pem, servercert.pem and serverkey.pem: libvirtd also answers
        # qemu+tls:// on port 16514, to clients with a certificate of that CA.
        self.listen_tcp = listen_tcp
        self.tls = tls
        self.holder: subprocess.Popen[bytes] | None = None
        self.netns_added = False

    def command(self, *argv: str, cwd: Path = Path("/")) -> list[str]:
        """ARGV run inside both namespaces, in CWD (entering a mount namespace resets it)."""
        assert self.holder is not None
        return ["nsenter", f"--mount=/proc/{self.holder.pid}/ns/mnt", f"--wd={cwd}",
                "ip", "netns", "exec", self.netns, *argv]

    def start(self) -> None:
        subprocess.run(["ip", "netns", "add", self.netns], check=True)
        self.netns_added = True
        # QEMU's VNC server (vagrant-libvirt's default display) binds 127.0.0.1.
        subprocess.run(["ip", "-n", self.netns, "link", "set", "lo", "up"], check=True)
        binds = []
        for path in LIBVIRT_PATHS:
            source = self.root / path.lstrip("/")
            source.mkdir(parents=True)
            binds.append(f"mount --bind {shlex.quote(str(source))} {path}")
        # The installed daemons' configuration, none of the host's definitions or hooks.
        etc = self.root / "etc" / "libvirt"
        for conf in Path("/etc/libvirt").glob("*.conf"):
            shutil.copy(conf, etc / conf.name)
        if self.listen_tcp or self.tls:
            with (etc / "libvirtd.conf").open("a") as f:
                f.write(f"\nlisten_tcp = {int(self.listen_tcp)}\nauth_tcp = \"none\"\n")
                if self.tls:
                    f.write(f'listen_tls = 1\nca_file = "{self.tls}/cacert.pem"\n'
                            f'cert_file = "{self.tls}/servercert.pem"\nkey_file = "{self.tls}/serverkey.pem"\n')
                else:
                    f.write("listen_tls = 0\n")
        # `ip netns exec` gives the holder a sysfs of the network namespace (libvirt's
        # network driver reads /sys/class/net); `--propagation private` keeps the binds
        # from reaching the host.
        script = "set -e; " + "; ".join(binds) + "; echo ready; exec sleep infinity >/dev/null"
        self.holder = subprocess.Popen(
            ["ip", "netns", "exec", self.netns, "unshare", "--mount", "--propagation", "private",
             "sh", "-c", script],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE)
        assert self.holder.stdout is not None
        if self.holder.stdout.readline().strip() != b"ready":
            raise RuntimeError(f"vagrant sandbox: the mount namespace was not set up ({self.holder.wait()})")
        self.holder.stdout.close()
        for daemon in ("virtlogd", "libvirtd"):
            listen = ["--listen"] if daemon == "libvirtd" and (self.listen_tcp or self.tls) else []
            subprocess.run(self.command(daemon, "-d", *listen, "-p", str(self.root / f"{daemon}.pid")),
                           stdin=subprocess.DEVNULL, check=True, timeout=60)
        # libvirt's QEMU capabilities probe, once, before anything is timed (vmctl's
        # warm-up pays its own).
        subprocess.run(self.command("virsh", "-c", URI, "domcapabilities", "--virttype", "qemu"),
                       stdin=subprocess.DEVNULL, capture_output=True, check=True, timeout=300)

    def stop(self) -> None:
        """Kill what was started here, by pid; delete the namespace. Safe to call twice."""
        for daemon in ("libvirtd", "virtlogd"):
            with contextlib.suppress(OSError, ValueError):  # not started, or already gone
                pid = int((self.root / f"{daemon}.pid").read_text())
                if self.owns(pid):  # not a stale pidfile's pid, reused by another process
                    kill_and_wait([pid], signal.SIGTERM)
        if self.netns_added:
            # Whatever libvirtd left behind: dnsmasq, a QEMU of an interrupted run.
            kill_and_wait(self.netns_pids(), signal.SIGKILL)
        if self.holder is not None:
            self.holder.kill()
            self.holder.wait()
            self.holder = None
        if self.netns_added:
            subprocess.run(["ip", "netns", "del", self.netns], check=False)
            self.netns_added = False

    def owns(self, pid: int) -> bool:
        """PID runs in this sandbox's network namespace."""
        try:
            return os.stat(f"/proc/{pid}/ns/net").st_ino == os.stat(f"/run/netns/{self.netns}").st_ino
        except OSError:
            return False

    def netns_pids(self) -> list[int]:
        out = subprocess.run(["ip", "netns", "pids", self.netns], capture_output=True, text=True,
                             check=False).stdout
        holder = self.holder.pid if self.holder else None
        return [int(p) for p in out.split() if int(p) != holder]


def kill_and_wait(pids: list[int], sig: signal.Signals, timeout: float = 15) -> None:
    """Signal PIDS and wait until they are gone: SIGKILL for one still running at the
    deadline; a zombie (a daemon's, reaped by init, not by us) is waited for a while more."""
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)
    deadline = time.monotonic() + timeout
    for pid in pids:
        while (state := process_state(pid)) is not None:
            if time.monotonic() > deadline:
                if state == "Z":
                    break
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
                deadline += timeout
            time.sleep(0.05)


def process_state(pid: int) -> str | None:
    """PID's state letter ("R", "S", "Z", ...), or None once it is gone."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return None


class VagrantProject:
    """A throwaway vagrant project on BOX, run inside SANDBOX."""

    def __init__(self, sandbox: Sandbox, root: Path, driver: str, memory: int, cpus: int) -> None:
        self.sandbox = sandbox
        self.env = vagrant_env(root / "vagrant-home")
        self.dir = root / "project"
        self.dir.mkdir()
        (self.dir / "Vagrantfile").write_text(VAGRANTFILE.format(driver=driver, memory=memory, cpus=cpus))

    def run(self, *args: str, check: bool = True, timeout: float = 600) -> tuple[float, str]:
        argv = self.sandbox.command("vagrant", *args, cwd=self.dir)
        start = time.perf_counter()
        proc = subprocess.run(argv, env=self.env, stdin=subprocess.DEVNULL, capture_output=True,
                              text=True, timeout=timeout, check=False)
        elapsed = time.perf_counter() - start
        if check and proc.returncode != 0:
            raise RuntimeError(f"vagrant {' '.join(args)} failed ({proc.returncode}):\n"
                               f"{proc.stdout}{proc.stderr}")
        return elapsed, proc.stdout

    def add_box(self, box_file: Path) -> None:
        self.run("box", "add", "--name", BOX, str(box_file))

    def operation(self, name: str) -> tuple[float, str]:
        return self.run(*name.split())


@contextlib.contextmanager
def sandboxed_project(box_file: Path, driver: str, memory: int, cpus: int, *, prefix: str,
                      log: Callable[[str], None] | None = None) -> Iterator[VagrantProject]:
    """A vagrant project with BOX_FILE added, in a new sandbox; on the way out, always:
    `vagrant destroy -f`, the sandbox stopped, its folder removed."""
    root = Path(tempfile.mkdtemp(prefix=prefix))
    # QEMU runs as libvirt-qemu and must reach the kernel and initrd in VAGRANT_HOME.
    root.chmod(0o755)
    sandbox = Sandbox(root / "sandbox")
    project: VagrantProject | None = None
    try:
        if log is not None:
            log(f"vagrant: sandbox {sandbox.netns} (network + mount namespace, own libvirtd)")
        sandbox.start()
        project = VagrantProject(sandbox, root, driver, memory, cpus)
        project.add_box(box_file)
        yield project
    finally:
        try:
            if project is not None:
                project.run("destroy", "-f", check=False, timeout=300)
        finally:
            sandbox.stop()
            shutil.rmtree(root, ignore_errors=True)


def side_by_side(box_file: Path, vmctl: VmctlRunner, runs: int, driver: str, memory: int, cpus: int,
                 log: Callable[[str], None] = print) -> dict[str, tuple[list[float], list[float]]]:
    """For each of OPERATIONS, RUNS timings of vagrant's and of vmctl's, after one warm-up
    round of each (vagrant's first `up` also uploads the box into libvirt's storage pool).
    DRIVER is vagrant-libvirt's domain type: "kvm", or "qemu" for TCG."""
    samples: dict[str, tuple[list[float], list[float]]] = {op: ([], []) for op in OPERATIONS}
    with sandboxed_project(box_file, driver, memory, cpus, prefix="vmctl-bench-vagrant-", log=log) as project:
        for i in range(runs + 1):
            # Alternate who goes first, so a slow phase of the machine hits both alike.
            tools = [("vagrant", project.operation), ("vmctl", lambda op: vmctl(*op.split()))]
            if i % 2:
                tools.reverse()
            line = []
            for tool, run in tools:
                for op in OPERATIONS:
                    seconds, out = run(op)
                    if op == "status" and "running" not in out:
                        raise RuntimeError(f"{tool} status: not running:\n{out}")
                    if i > 0:
                        samples[op][0 if tool == "vagrant" else 1].append(seconds)
                    line.append(f"{tool} {op} {seconds:.2f} s")
            log(f"  {'warm-up' if i == 0 else f'round {i}'}: " + ", ".join(line))
    return samples


def boots(box_file: Path, command: str, *, memory: int = 256, cpus: int = 1,
          log: Callable[[str], None] = print) -> str:
    """`vagrant up` of BOX_FILE under vagrant-libvirt (TCG) in a sandbox, then
    `vagrant ssh -c COMMAND`; its output. Always destroyed and cleaned up."""
    with sandboxed_project(box_file, "qemu", memory, cpus, prefix="vmctl-vagrant-boots-") as project:
        seconds, _ = project.run("up", timeout=900)
        log(f"vagrant up: {seconds:.1f} s")
        return project.run("ssh", "-c", command)[1]


if __name__ == "__main__":
    import sys

    # python bench/vagrant.py boots FILE.box [COMMAND]: does vagrant-libvirt boot this box?
    if len(sys.argv) not in (3, 4) or sys.argv[1] != "boots":
        sys.exit("usage: python bench/vagrant.py boots FILE.box [COMMAND]")
    if (lack := missing()) is not None:
        sys.exit(f"{lack} is missing: apt-get install vagrant vagrant-libvirt dnsmasq-base")
    print(boots(Path(sys.argv[2]).resolve(), sys.argv[3] if len(sys.argv) == 4 else "uname -a"), end="")
