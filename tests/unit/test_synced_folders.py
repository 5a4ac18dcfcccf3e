"""Two-way synced folders without a VM: how the Vagrantfile's options are read and refused
(vmctl/vagrantfile/resolve.py, the rules in vmctl/untrusted.py), which kind each becomes on
this host and the domain XML that shares it (checked against libvirt's schema)."""

from __future__ import annotations

import textwrap
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from libvirt_schema import validate_domain

from vmctl import domain, untrusted
from vmctl.domain import filesystems as dfs
from vmctl.errors import ConfigError, MachineError
from vmctl.machine import disks, hardware
from vmctl.machine.state import MachineState
from vmctl.vagrantfile.loader import evaluate_project
from vmctl.vagrantfile.model import MachineConfig, ProjectConfig

MID = "0123456789ab"
ROOT_EMBED = hardware.Host(accel="tcg", uri="qemu:///embed?root=/x", embedded=True, is_root=True)
USER_EMBED = hardware.Host(accel="tcg", uri="qemu:///embed?root=/x", embedded=True, is_root=False)
USER_SESSION = hardware.Host(accel="tcg", uri="qemu:///session", embedded=False, is_root=False)


@pytest.fixture(autouse=True)
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("VMCTL_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


@pytest.fixture
def project(tmp_path: Path) -> Path:
    folder = tmp_path / "project"
    (folder / "share").mkdir(parents=True)
    return folder


def load(project: Path, lines: str, *, box: str | None = None) -> ProjectConfig:
    body = textwrap.indent(textwrap.dedent(lines).strip(), "  ")
    (project / "Vagrantfile").write_text(
        f'Vagrant.configure("2") do |config|\n  config.vm.box = "test/box"\n{body}\nend\n')
    lookup = None
    if box is not None:
        box_dir = project.parent / "box"
        box_dir.mkdir(exist_ok=True)
        (box_dir / "Vagrantfile").write_text(textwrap.dedent(box))
        lookup = lambda name, version: box_dir / "Vagrantfile"  # noqa: E731
    return evaluate_project(project / "Vagrantfile", env={"HOME": "/home/tester"}, box_vagrantfile=lookup)


def machine(project: Path, lines: str, **kwargs: str) -> MachineConfig:
    return load(project, lines, **kwargs).machines[0]


def failure(project: Path, lines: str) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        load(project, lines)
    return info.value


def folder(m: MachineConfig, guest: str):  # type: ignore[no-untyped-def]
    return next(f for f in m.synced_folders if f.guest == guest)


# -- options -----------------------------------------------------------------------------------

def test_virtiofs_9p_and_nfs_are_read(project: Path) -> None:
    m = machine(project, """
      config.vm.synced_folder "share", "/srv/a", type: "virtiofs", mount_options: ["noatime"]
      config.vm.synced_folder "share", "/srv/b", type: "9p", accessmode: "squash", mount_options: ["ro,cache=loose"]
      config.vm.synced_folder ".", "/srv/c", type: :nfs, nfs_udp: false, nfs_version: 4, mount_options: ["vers=3"]
      config.vm.synced_folder ".", "/srv/d", nfs: true
    """)
    a, b, c, d = (folder(m, g) for g in ("/srv/a", "/srv/b", "/srv/c", "/srv/d"))
    assert (a.type, a.two_way, a.accessmode, a.mount_options) == ("virtiofs", True, None, ("noatime",))
    assert (b.type, b.accessmode, b.mount_options) == ("9p", "squash", ("ro", "cache=loose"))
    assert (c.type, c.accessmode, c.nfs_options) == ("nfs", "mapped", (("nfs_udp", "false"), ("nfs_version", "4")))
    assert d.type == "nfs"
    assert not folder(m, "/vagrant").two_way  # rsync stays the default


def test_9p_defaults_to_mapped(project: Path) -> None:
    m = machine(project, 'config.vm.synced_folder "share", "/srv/b", type: "9p"')
    assert folder(m, "/srv/b").accessmode == "mapped"


@pytest.mark.parametrize(("line", "message"), [
    ('config.vm.synced_folder "share", "/s", type: "smb"', 'type "smb" is not supported: vmctl runs no SMB server'),
    ('config.vm.synced_folder "share", "/s", type: "virtualbox"', 'type "virtualbox" is not supported'),
    ('config.vm.synced_folder "share", "/s", type: "9p", accessmode: "mapped-file"', "accessmode must be"),
    ('config.vm.synced_folder "share", "/s", type: "virtiofs", accessmode: "mapped"', 'virtiofs has accessmode "passthrough" only'),
    ('config.vm.synced_folder "share", "/s", type: "9p", mount_options: ["a b"]', "is not a plain option word"),
    ('config.vm.synced_folder "share", "/s", type: "9p", mount_options: ["x;reboot"]', "is not a plain option word"),
    ('config.vm.synced_folder "missing", "/s", type: "virtiofs", create: true', "is not a folder"),
    ('config.vm.synced_folder "/", "/s", type: "virtiofs"', "holds every file of this computer"),
    ('config.vm.synced_folder "share/a,b", "/s", type: "virtiofs"', "holds a comma"),
])
def test_refusals(project: Path, line: str, message: str) -> None:
    (project / "share" / "a,b").mkdir()
    error = failure(project, line)
    assert message in error.message
    assert error.line == 3


def test_a_disabled_folder_of_any_type_is_fine(project: Path) -> None:
    m = machine(project, 'config.vm.synced_folder "share", "/s", type: "smb", disabled: true')
    assert folder(m, "/s").disabled


def test_symlinks_leading_out_of_the_project_are_refused(project: Path, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    (outside / "sub").mkdir(parents=True)
    (project / "link").symlink_to(outside)
    error = failure(project, 'config.vm.synced_folder "link", "/s", type: "virtiofs"')
    assert "is a symbolic link" in error.message
    error = failure(project, 'config.vm.synced_folder "link/sub", "/s", type: "9p"')
    assert "leads out of the project folder through a symbolic link" in error.message
    # A folder outside the project that the Vagrantfile names itself is shared as named.
    m = machine(project, f'config.vm.synced_folder "{outside}/sub", "/s", type: "virtiofs"')
    assert folder(m, "/s").host == str(outside / "sub")


def test_the_home_folder_and_what_holds_it_are_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path / "me"))
    (tmp_path / "me" / "code").mkdir(parents=True)
    assert "your home folder" in (untrusted.shared_folder_problem(str(tmp_path / "me"), "/p") or "")
    assert "your home folder" in (untrusted.shared_folder_problem(str(tmp_path), "/p") or "")
    assert untrusted.shared_folder_problem(str(tmp_path / "me" / "code"), "/p") is None
    assert "not an absolute path" in (untrusted.shared_folder_problem("code", "/p") or "")


def test_a_box_may_not_add_two_way_folders(project: Path) -> None:
    cfg = load(project, 'config.vm.synced_folder "share", "/srv/app"', box="""
        Vagrant.configure("2") do |config|
          config.vm.synced_folder "/etc", "/host-etc", type: "virtiofs"
          config.vm.synced_folder ".", "/box", type: "9p"
          config.vm.synced_folder "ignored", "/srv/app", type: "nfs"
        end
    """)
    (m,) = cfg.machines
    guests = {f.guest: f for f in m.synced_folders}
    assert "/host-etc" not in guests and "/box" not in guests
    # The project's folder stays, one-way: the box's type: is ignored.
    assert guests["/srv/app"].type == "rsync" and guests["/srv/app"].host == str(project / "share")
    assert any("the host folder /etc" in w and "which a box may not do" in w for w in cfg.warnings)
    assert any(f"shares the host folder {project} two-way (9p)" in w for w in cfg.warnings)
    assert any("makes synced folder /srv/app two-way (nfs); it stays rsync" in w for w in cfg.warnings)


def test_validate_json_reports_nfs_options(project: Path) -> None:
    from vmctl.vagrantfile.model import machine_json

    m = machine(project, 'config.vm.synced_folder ".", "/srv", type: "nfs", nfs_udp: false, linux__nfs_options: ["rw"]')
    out = next(f for f in machine_json(m)["synced_folders"] if f["guest"] == "/srv")
    assert out["nfs_options"]["nfs_udp"] == "false" and "linux__nfs_options" in out["nfs_options"]
    rsync = next(f for f in machine_json(m)["synced_folders"] if f["guest"] == "/vagrant")
    assert "nfs_options" not in rsync  # rsync folders keep their shape


# -- which kind, on which host -----------------------------------------------------------------

def test_nfs_becomes_virtiofs_where_libvirt_runs_virtiofsd_else_9p(project: Path) -> None:
    m = machine(project, 'config.vm.synced_folder "share", "/srv", type: "nfs"')
    expect = "virtiofs" if dfs.VIRTIOFSD.exists() else "9p"
    assert [(f.guest, k, t) for f, k, t in hardware.shared_folders(m, ROOT_EMBED)] == [("/srv", expect, "vmctl0")]
    assert [k for _, k, _ in hardware.shared_folders(m, USER_EMBED)] == ["9p"]
    assert [k for _, k, _ in hardware.shared_folders(m, USER_SESSION)] == ["9p"]


def test_virtiofs_refused_where_libvirt_cannot_run_virtiofsd(project: Path) -> None:
    m = machine(project, 'config.vm.synced_folder "share", "/srv", type: "virtiofs"')
    with pytest.raises(MachineError) as info:
        hardware.check_host(m, USER_EMBED)
    assert "synced folder /srv (virtiofs) cannot be shared here" in info.value.message
    assert 'type: "9p"' in (info.value.hint or "")


# -- the domain --------------------------------------------------------------------------------

def build(cfg: MachineConfig, home: Path, host: hardware.Host) -> tuple[ET.Element, list[str]]:
    folder = home / "machines" / MID
    st = MachineState(id=MID, domain="vmctl-p-default-012345", uri=host.uri, disk=str(folder / "disk.qcow2"),
                      console_log=str(folder / "console.log"), ssh_port=2222, ssh_user="vagrant",
                      uuid=hardware.domain_uuid(MID))
    st.disks = disks.plan(cfg, MID, disks.Box(Path("/boxes/box.img"), "qcow2", 20 * 1024**3), machine_type="pc",
                          tpm_dir=None, nvram_template=None)
    spec, notes = hardware.build(cfg, st, st.all_disks(), project_root=Path("/p"), host=host, private_nics=(),
                                 forwards=(domain.Forward("127.0.0.1", 2222, 22),))
    xml = domain.render_domain(spec)
    validate_domain(xml)
    return ET.fromstring(xml), notes


@pytest.mark.skipif(not dfs.VIRTIOFSD.exists(), reason="QEMU's virtiofsd is not installed (scripts/bootstrap)")
def test_domain_shares_folders(project: Path, home: Path) -> None:
    m = machine(project, """
      config.vm.synced_folder "share", "/srv/a", type: "virtiofs"
      config.vm.synced_folder "share", "/srv/b", type: "9p", accessmode: "squash"
      config.vm.synced_folder ".", "/srv/c", type: "nfs", nfs_version: 3
    """)
    root, notes = build(m, home, ROOT_EMBED)
    fs = root.findall("devices/filesystem")
    assert [(f.get("accessmode"), f.find("driver").get("type"), f.find("source").get("dir"), f.find("target").get("dir"))
            for f in fs] == [
        ("passthrough", "virtiofs", str(project / "share"), "vmctl0"),
        ("squash", "path", str(project / "share"), "vmctl1"),
        ("passthrough", "virtiofs", str(project), "vmctl2"),
    ]
    assert fs[0].find("binary").get("path") == "/usr/lib/qemu/virtiofsd"
    assert root.find("memoryBacking/source").get("type") == "memfd"
    assert root.find("memoryBacking/access").get("mode") == "shared"
    assert notes == [f"synced folder /srv/c: vmctl runs no NFS server; it shares {project} two-way with virtiofs "
                     "instead (nfs_version: 3 not used)"]


def test_9p_alone_needs_no_shared_memory(project: Path, home: Path) -> None:
    m = machine(project, 'config.vm.synced_folder "share", "/srv/b", type: "9p"')
    root, _ = build(m, home, USER_EMBED)
    (fs,) = root.findall("devices/filesystem")
    assert fs.get("accessmode") == "mapped" and fs.find("binary") is None
    assert root.find("memoryBacking") is None


def test_rsync_only_adds_no_filesystem(project: Path, home: Path) -> None:
    root, _ = build(machine(project, 'config.vm.synced_folder "share", "/srv"'), home, ROOT_EMBED)
    assert root.find("devices/filesystem") is None and root.find("memoryBacking") is None


def test_the_builder_refuses_what_it_cannot_write() -> None:
    with pytest.raises(ValueError):
        dfs.SharedFolder(tag="vmctl0", source=Path("/a,b"), driver="9p")
    with pytest.raises(ValueError):
        dfs.SharedFolder(tag="vmctl0", source=Path("relative"), driver="9p")
    with pytest.raises(ValueError):
        dfs.SharedFolder(tag="bad tag", source=Path("/a"), driver="9p")
    with pytest.raises(ValueError):
        dfs.SharedFolder(tag="vmctl0", source=Path("/a"), driver="virtiofs", accessmode="mapped")


# -- rsync-auto --------------------------------------------------------------------------------

@pytest.mark.parametrize(("rel", "excludes", "excluded"), [
    ("a.txt", [], False),
    (".vmctl/machines/x", [], True),
    ("sub/.vagrant/id", [], True),
    ("x.log", ["*.log"], True),
    ("sub/x.log", ["*.log"], True),
    ("node_modules/pkg/index.js", ["node_modules/"], True),
    ("build/out.o", ["/build"], True),
    ("src/build/out.o", ["/build"], False),
    ("src/build/out.o", ["build"], True),
    ("docs/a.md", ["*.log", "/build"], False),
])
def test_rsync_excludes(rel: str, excludes: list[str], excluded: bool) -> None:
    from vmctl.guest import rsync_excluded

    assert rsync_excluded(rel, excludes) is excluded


def test_rsync_auto_watches_rsync_folders_only(project: Path) -> None:
    from vmctl.machine.watch import Target, affected, targets

    m = machine(project, """
      config.vm.synced_folder "share", "/srv/app", rsync__exclude: ["*.tmp"]
      config.vm.synced_folder ".", "/srv/manual", rsync__auto: false
      config.vm.synced_folder "share", "/srv/two-way", type: "9p"
      config.vm.synced_folder ".", "/vagrant", disabled: true
    """)
    assert next(f for f in m.synced_folders if f.guest == "/srv/manual").rsync_auto is False

    class FakeMachine:
        config = m
        project_root = project

    (t,) = targets([FakeMachine()])  # type: ignore[list-item]
    assert isinstance(t, Target) and t.folder.guest == "/srv/app" and t.host == (project / "share").resolve()
    assert affected(t, [str(t.host / "a.txt")])
    assert not affected(t, [str(t.host / "a.tmp"), str(project / "elsewhere.txt")])


# -- the /etc/hosts block --------------------------------------------------------------------

def test_hosts_block() -> None:
    from vmctl.guest import HOSTS_BEGIN, HOSTS_END, hosts_block

    block = hosts_block([("192.168.77.10", ["web.example.test", "web", "web"]), ("fd00::2", ["db"]),
                         ("not-an-ip", ["x"]), ("10.0.0.3", ["bad name", "ok"]), ("10.0.0.4", ["$(reboot)"])])
    assert block.splitlines() == [HOSTS_BEGIN, "192.168.77.10 web.example.test web", "fd00::2 db", "10.0.0.3 ok",
                                  HOSTS_END]
    assert hosts_block([]) == ""


def test_hosts_entries_name_created_machines_and_the_opt_out(project: Path) -> None:
    from vmctl.machine import Machine

    cfg = load(project, """
      config.vm.define "web" do |web|
        web.vm.hostname = "web.example.test"
        web.vm.network "private_network", ip: "192.168.77.10"
      end
      config.vm.define "db" do |db|
        db.vm.network "private_network", ip: "192.168.77.11"
        db.vm.allow_hosts_modification = false
      end
    """)
    web_cfg, db_cfg = cfg.machines
    assert web_cfg.allow_hosts_modification and not db_cfg.allow_hosts_modification
    web, db = Machine(project, web_cfg), Machine(project, db_cfg)
    web.peers = db.peers = lambda: [web, db]
    # db is not created: web's block names web only.
    assert web.hosts_entries() == [("192.168.77.10", ["web.example.test", "web", "web"])]

    class FakeSession:
        commands: list[str] = []

        def check(self, command: str, **_: object) -> bytes:
            self.commands.append(command)
            return b""

    s = FakeSession()
    db.update_hosts(s)  # type: ignore[arg-type]
    assert s.commands == []  # allow_hosts_modification = false: left alone
    alone = Machine(project, web_cfg)
    assert alone.hosts_entries() is None  # a machine alone in its project gets no block


# -- forwarded ports: udp, guest_ip, host_ip ----------------------------------------------------

def test_forwarded_port_udp_and_guest_ip(project: Path) -> None:
    cfg = load(project, """
      config.vm.network "forwarded_port", guest: 53, host: 5353, protocol: "udp", guest_ip: "10.0.2.15"
      config.vm.network "forwarded_port", guest: 80, host: 8080, host_ip: "0.0.0.0"
    """)
    udp, web = cfg.machines[0].forwarded_ports
    assert (udp.protocol, udp.guest_ip, udp.host_ip) == ("udp", "10.0.2.15", "127.0.0.1")
    assert web.guest_ip is None and web.host_ip == "0.0.0.0"
    # A host_ip off loopback only when the user wrote it, and then with a one-line note.
    notes = [w for w in cfg.warnings if "listens on" in w]
    assert len(notes) == 1 and "other computers can reach it" in notes[0] and "\n" not in notes[0]
    rules = domain.hostfwd_rules(tuple(domain.Forward(p.host_ip, p.host or 0, p.guest, p.protocol, p.guest_ip)
                                       for p in (udp, web)))
    assert rules == "hostfwd=udp:127.0.0.1:5353-10.0.2.15:53,hostfwd=tcp:0.0.0.0:8080-:80"


@pytest.mark.parametrize("value", ["10.0.2.15,guestfwd=tcp:1.2.3.4:1-cmd:id", "fd00::1", "guest"])
def test_forwarded_port_guest_ip_must_be_an_ipv4_address(project: Path, value: str) -> None:
    error = failure(project, f'config.vm.network "forwarded_port", guest: 53, host: 5353, guest_ip: "{value}"')
    assert "is not an IPv4 address" in error.message
    with pytest.raises(ValueError):
        domain.hostfwd_rules((domain.Forward("127.0.0.1", 5353, 53, "udp", value),))


def test_a_box_may_not_forward_off_loopback(project: Path) -> None:
    cfg = load(project, "", box="""
        Vagrant.configure("2") do |config|
          config.vm.network "forwarded_port", guest: 53, host: 5353, protocol: "udp", host_ip: "0.0.0.0"
        end
    """)
    assert cfg.machines[0].forwarded_ports == ()
    assert any("forwards port 53 on 0.0.0.0" in w for w in cfg.warnings)
