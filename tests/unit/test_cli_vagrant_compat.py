"""A CI script written for Vagrant runs with vmctl: Vagrant's global flags, its
machine-readable output, its command flags and environment variables, checked through
`vmctl.cli.main` in-process (exact output and exit status), with no VM: machines are
either not created or given a state file, and QEMU's answer is stubbed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import types
from pathlib import Path
from typing import Any

import pytest
from cli_runner import Outcome, run_main

from vmctl import hypervisor, term
from vmctl.cli import flags, machine_readable
from vmctl.machine import ForwardState, MachineState

T = 1700000000  # the timestamp of every machine-readable line here

ONE = 'Vagrant.configure("2") do |config|\n  config.vm.box = "vmctl/tiny"\nend\n'
TWO = """Vagrant.configure("2") do |config|
  config.vm.box = "vmctl/tiny"
  config.vm.provision "shell", name: "hello", inline: "echo hello"
  config.vm.define "web"
  config.vm.define "db"
end
"""


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A project folder (the current folder) with a one-machine Vagrantfile, its own
    VMCTL_HOME, none of the variables under test set, and a fixed clock."""
    folder = tmp_path / "proj"
    folder.mkdir()
    (folder / "Vagrantfile").write_text(ONE)
    monkeypatch.chdir(folder)
    monkeypatch.setenv("VMCTL_HOME", str(tmp_path / "home"))
    for name in list(os.environ):
        if name.startswith("VAGRANT_") or name in ("VMCTL_VAGRANTFILE", "VMCTL_DEBUG", "VMCTL_LIBVIRT_URI"):
            monkeypatch.delenv(name)
    monkeypatch.setattr(machine_readable, "time", types.SimpleNamespace(time=lambda: T + 0.7))
    yield folder
    term.set_modes()


def created(folder: Path, name: str = "default", *, port: int = 2222,
            forwards: tuple[tuple[int, int], ...] = ()) -> None:
    """Give machine NAME of the project in FOLDER a state file and an index entry, as `up`
    leaves them (a state file the index does not know is not trusted)."""
    import hashlib

    from vmctl import paths
    from vmctl.project import Project
    from vmctl.state import IndexEntry, index_lock, load_index, save_index

    m = Project(folder / "Vagrantfile").machines([name])[0]
    machine_id = hashlib.sha256(f"{folder}/{name}".encode()).hexdigest()[:12]
    home = paths.machines_dir() / machine_id
    domain = f"vmctl-proj-{name}-{machine_id[:6]}"
    uri = "qemu:///embed?root=/nonexistent"
    m._state = MachineState(
        id=machine_id, domain=domain, uri=uri, disk=str(home / "disk.qcow2"), console_log=str(home / "console.log"),
        ssh_port=port, ssh_user="vagrant",
        forwards=[ForwardState(id=None, guest=g, host=h, host_ip="127.0.0.1", protocol="tcp") for g, h in forwards],
        phase="created",
    )
    m._state_loaded = True
    with index_lock():
        entries = load_index()
        entries[machine_id] = IndexEntry(id=machine_id, name=name, project=str(folder), domain=domain, uri=uri,
                                         ports=[port])
        save_index(entries)
    m.save()


@pytest.fixture
def running(monkeypatch: pytest.MonkeyPatch) -> None:
    """QEMU says every machine runs (so nothing asks libvirt)."""
    monkeypatch.setattr(hypervisor, "qemu_status", lambda uri, dom: "running")
    monkeypatch.setattr(hypervisor, "qemu_alive", lambda uri, dom: True)


def lines(out: Outcome) -> list[str]:
    return out.stdout.splitlines()


# --- the machine-readable format -------------------------------------------------------

def test_escaping_is_vagrants() -> None:
    assert machine_readable.escape("a,b\nc\rd") == "a%!(VAGRANT_COMMA)b\\nc\\rd"
    assert machine_readable.format_line("state", "running", target="web", timestamp=12.9) == "12,web,state,running"
    assert machine_readable.format_line("metadata", "machine-count", 0, timestamp=1) == "1,,metadata,machine-count,0"
    assert machine_readable.format_line("ui", "info", "x,y", timestamp=1) == "1,,ui,info,x%!(VAGRANT_COMMA)y"


@pytest.mark.parametrize(("message", "target"), [
    ("==> web: booting", "web"), ("    db: provisioner output", "db"),
    ("no machines", ""), ("==> nothing", ""),
])
def test_ui_lines_name_the_machine_a_message_is_about(message: str, target: str) -> None:
    assert machine_readable.target_of(message) == target


# --- global flags ----------------------------------------------------------------------

@pytest.mark.parametrize(("argv", "rest", "expect"), [
    (["status", "--machine-readable"], ["status"], {"machine_readable": True}),
    (["--machine-readable", "status", "web"], ["status", "web"], {"machine_readable": True}),
    (["up", "--no-color", "--debug"], ["up"], {"color": False, "debug": True}),
    (["--no-color", "--color", "up"], ["up"], {"color": True}),
    (["--color", "--no-color", "up"], ["up"], {"color": True}),
    (["up", "--timestamp"], ["up"], {"timestamp": True}),
    (["--debug-timestamp", "up"], ["up"], {"debug": True, "timestamp": True}),
    (["up", "--no-tty"], ["up"], {"tty": False}),
    (["status", "-v"], ["status"], {"version": True}),
    # the value of an option stays its value; after --, nothing is a global flag
    (["ssh", "-c", "--debug"], ["ssh", "-c", "--debug"], {}),
    (["ssh", "--command", "--version"], ["ssh", "--command", "--version"], {}),
    (["ssh", "--", "--debug"], ["ssh", "--", "--debug"], {}),
    # ssh's own --no-tty
    (["ssh", "--no-tty", "-c", "true"], ["ssh", "--no-tty", "-c", "true"], {}),
    # -c of upload is a flag (--compress): the next word is not its value
    (["upload", "-c", "--debug", "src"], ["upload", "-c", "src"], {"debug": True}),
])
def test_global_flags_anywhere_before_double_dash(argv: list[str], rest: list[str], expect: dict[str, Any]) -> None:
    found, remaining = flags.split(argv)
    assert remaining == rest
    defaults = vars(flags.GlobalFlags())
    assert {k: v for k, v in vars(found).items() if defaults[k] != v} == expect


def _value_options(command: Any) -> set[str]:
    found: set[str] = set()
    for param in getattr(command, "params", []):
        if getattr(param, "is_flag", True) is False and param.param_type_name == "option":
            found |= {o for o in param.opts + param.secondary_opts}
    for sub in getattr(command, "commands", {}).values():
        found |= _value_options(sub)
    return found


def test_value_options_match_the_commands() -> None:
    """flags.VALUE_OPTIONS lists exactly the options that take a value, command by command."""
    import typer.main

    from vmctl.cli import app

    app._register()
    group = typer.main.get_command(app.app)
    actual = {name: _value_options(cmd) for name, cmd in group.commands.items()}  # type: ignore[attr-defined]
    assert {k: v for k, v in actual.items() if v} == {k: set(v) for k, v in flags.VALUE_OPTIONS.items()}


def test_version_flags_and_command(project: Path) -> None:
    from vmctl import __version__

    for argv in (["--version"], ["-v"], ["status", "--version"]):
        assert run_main(*argv).stdout == f"vmctl {__version__}\n"
    assert run_main("version").stdout == f"Installed Version: {__version__}\n"
    out = run_main("version", "--machine-readable")
    assert lines(out) == [f"{T},,ui,output,Installed Version: {__version__}", f"{T},,version-installed,{__version__}"]


def test_help_with_h_everywhere(project: Path) -> None:
    for argv in (["-h"], ["status", "-h"], ["up", "-h"], ["box", "list", "-h"], ["ssh", "-h"], ["upload", "-h"]):
        out = run_main(*argv)
        assert out.code == 0 and out.stdout.startswith("Usage: vmctl"), argv
    assert "--machine-readable" in run_main("-h").stdout


def test_no_color_and_force_color(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[bool | None] = []
    original = term.set_modes

    def set_modes(**kw: Any) -> None:
        seen.append(kw.get("color"))
        original(**kw)

    monkeypatch.setattr(term, "set_modes", set_modes)
    run_main("version", "--no-color")
    run_main("version", "--color")
    monkeypatch.setenv("VAGRANT_NO_COLOR", "1")
    run_main("version")
    monkeypatch.setenv("VAGRANT_FORCE_COLOR", "1")
    run_main("version")
    run_main("version", "--no-color")  # the flag wins over the environment
    assert seen == [False, True, False, True, False]


def test_no_tty_and_machine_readable_turn_spinners_off(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import io

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    monkeypatch.setenv("TERM", "xterm")
    monkeypatch.setattr(sys, "stderr", Terminal())
    term.set_modes()
    assert term.interactive()
    term.set_modes(interactive=False)
    assert not term.interactive()
    term.set_modes(ui=machine_readable.ui)
    assert not term.interactive()
    seen: list[bool] = []
    original = term.set_modes
    monkeypatch.setattr(term, "set_modes", lambda **kw: (seen.append(kw.get("interactive", True)), original(**kw)))
    run_main("version", "--no-tty")
    run_main("version")
    assert seen[:2] == [False, True]


def test_forced_color_renders_tables_with_rich(project: Path) -> None:
    plain = run_main("status")
    assert plain.stdout.splitlines()[0].split() == ["NAME", "STATE", "DOMAIN"]
    coloured = run_main("--color", "status")
    assert "\x1b[1m" in coloured.stdout and "not_created" in coloured.stdout


def test_debug_logs_from_vagrant_log(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert "debug: " not in run_main("status").stderr
    monkeypatch.setenv("VAGRANT_LOG", "debug")
    assert "debug: vmctl" in run_main("status").stderr
    monkeypatch.setenv("VMCTL_DEBUG", "0")  # vmctl's own name wins
    assert "debug: " not in run_main("status").stderr
    monkeypatch.delenv("VMCTL_DEBUG")
    monkeypatch.setenv("VAGRANT_LOG", "nonsense")  # Vagrant: an unknown level logs nothing
    assert "debug: " not in run_main("status").stderr


def test_timestamp_on_log_lines(project: Path) -> None:
    err = run_main("--debug", "--timestamp", "status").stderr
    line = next(x for x in err.splitlines() if "debug: vmctl" in x)
    assert line[:4].isdigit() and line.index("debug:") > 20


# --- status, global-status -------------------------------------------------------------

def test_status_machine_readable_not_created(project: Path) -> None:
    out = run_main("status", "--machine-readable")
    assert out.code == 0, out.stderr
    long = "The machine is not created. Run `vmctl up` to create it."
    assert lines(out) == [
        f"{T},default,metadata,provider,libvirt",
        f"{T},default,provider-name,libvirt",
        f"{T},default,state,not_created",
        f"{T},default,state-human-short,not created",
        f"{T},default,state-human-long,{long}",
        f"{T},,ui,info,Current machine states:\\n\\n{'default'.ljust(25)} not created (libvirt)\\n\\n{long}",
    ]
    assert out.stderr == ""


def test_status_machine_readable_two_machines_in_vagrants_order(project: Path, running: None) -> None:
    (project / "Vagrantfile").write_text(TWO)
    created(project, "db")
    out = run_main("--machine-readable", "status")
    assert out.code == 0, out.stderr
    got = lines(out)
    assert [x.split(",")[1:3] for x in got] == [
        ["web", "metadata"], ["db", "metadata"],
        ["web", "provider-name"], ["web", "state"], ["web", "state-human-short"], ["web", "state-human-long"],
        ["db", "provider-name"], ["db", "state"], ["db", "state-human-short"], ["db", "state-human-long"],
        ["", "ui"],
    ]
    assert got[7] == f"{T},db,state,running"
    assert "db                        running (libvirt)" in got[-1]
    assert got[-1].endswith("This environment represents multiple machines%!(VAGRANT_COMMA) They are "
                            "all listed above with their current state. For more information about a "
                            "specific machine%!(VAGRANT_COMMA) run `vmctl status NAME`.".replace(
                                "machines%!(VAGRANT_COMMA) They", "machines. They"))


def test_json_and_machine_readable_together_is_a_usage_error(project: Path) -> None:
    out = run_main("status", "--json", "--machine-readable")
    assert out.code == 2
    assert f"{T},,ui,error,--json and --machine-readable cannot be used together" in out.stdout


def test_machine_readable_error_exit(project: Path) -> None:
    out = run_main("status", "nope", "--machine-readable")
    assert out.code == 1
    assert lines(out)[-2:] == [
        f"{T},,ui,error,no machine named 'nope' in {project}/Vagrantfile\\nhint: machines defined there: default",
        f"{T},,error-exit,MachineError,no machine named 'nope' in {project}/Vagrantfile",
    ]
    assert out.stderr == ""


def test_global_status_machine_readable(project: Path, running: None) -> None:
    created(project)
    from vmctl.state import IndexEntry, save_index

    save_index({"0123456789ab": IndexEntry(id="0123456789ab", name="default", project=str(project),
                                           domain="vmctl-proj-default-012345", uri="qemu:///embed?root=/x")})
    out = run_main("global-status", "--machine-readable")
    got = lines(out)
    assert got[:5] == [
        f"{T},,metadata,machine-count,1",
        f"{T},default,machine-id,0123456",
        f"{T},default,provider-name,libvirt",
        f"{T},default,machine-home,{project}",
        f"{T},default,state,running",
    ]
    cells = [x.split(",", 4)[4] for x in got[5:]]
    width = max(35, len(str(project)))
    assert cells[:7] == ["id       ", "name    ", "provider ", "state   ", "directory".ljust(width) + " ", "",
                         "-" * (9 + 8 + 9 + 8 + width + 1)]
    assert cells[7:13] == ["0123456  ", "default ", "libvirt ", "running ", str(project).ljust(width) + " ", ""]
    assert cells[13].startswith(" \\nThe above shows every vmctl machine")


def test_global_status_machine_readable_empty(project: Path) -> None:
    got = lines(run_main("global-status", "--machine-readable"))
    assert got[0] == f"{T},,metadata,machine-count,0"
    assert got[-1] == f"{T},,ui,info,There are no vmctl machines on this host."


# --- ssh-config, port ------------------------------------------------------------------

def test_ssh_config_machine_readable_and_host(project: Path) -> None:
    created(project)
    out = run_main("ssh-config", "--host", "box1", "--machine-readable")
    assert out.code == 0, out.stderr
    got = lines(out)
    assert got[0] == f"{T},default,metadata,provider,libvirt"
    assert got[1].startswith(f"{T},default,ssh-config,Host box1\\n  HostName 127.0.0.1\\n  User vagrant\\n  Port 2222\\n")
    assert got[1].endswith("  LogLevel ERROR\\n")
    # then, as Vagrant, the config itself and an empty line
    assert got[2:4] == ["Host box1", "  HostName 127.0.0.1"] and got[-1] == ""
    plain = run_main("ssh-config")
    assert plain.stdout.startswith("Host default\n  HostName 127.0.0.1\n")


def test_port_machine_readable_and_guest(project: Path) -> None:
    created(project, forwards=((80, 8080),))
    got = lines(run_main("port", "--machine-readable"))
    assert got[0] == f"{T},default,metadata,provider,libvirt"
    assert got[1].startswith(f"{T},,ui,info,The forwarded ports for the machine are listed below.")
    assert got[2:] == [
        f"{T},,ui,info,", f"{T},,ui,info,    22 (guest) => 2222 (host)", f"{T},default,forwarded_port,22,2222",
        f"{T},,ui,info,    80 (guest) => 8080 (host)", f"{T},default,forwarded_port,80,8080",
    ]
    assert run_main("port", "--guest", "80").stdout == "8080\n"
    assert run_main("port", "--guest=22", "--machine-readable").stdout.splitlines()[-1] == f"{T},,ui,info,2222"
    missing = run_main("port", "--guest", "443")
    assert missing.code == 1 and missing.stderr.startswith("error: machine default forwards no host port to guest port 443")
    assert run_main("port", "--guest", "http").code == 2



def test_port_tunnel_on_this_computer_lists_the_ports_and_ends(project: Path) -> None:
    """A machine on this computer has nothing to tunnel: --tunnel lists its ports, says so,
    and ends with 0 (a script may use --tunnel for any machine)."""
    created(project, forwards=((80, 8080),))
    out = run_main("port", "--tunnel")
    assert out.code == 0
    assert lines(out) == ["    22 (guest) => 2222 (host 127.0.0.1, tcp)", "    80 (guest) => 8080 (host 127.0.0.1, tcp)"]
    assert "runs on this computer" in out.stderr and "nothing to tunnel" in out.stderr
    got = json.loads(run_main("port", "--json").stdout)
    assert got["libvirt_host"] is None
    assert [(p["host"], p["libvirt_host"], p["tunnel"]) for p in got["ports"]] == [(2222, None, None), (8080, None, None)]
    assert run_main("port", "--tunnel", "--machine-readable").code == 2

# --- box list --------------------------------------------------------------------------

def test_box_list_machine_readable_and_box_info(project: Path, box_make: Any) -> None:
    path = box_make(files={"info.json": json.dumps({"author": "me", "homepage": "https://x, y"}).encode()})
    assert run_main("box", "add", str(path), "--name", "vmctl/tiny").code == 0
    got = lines(run_main("box", "list", "--machine-readable"))
    assert got == [
        f"{T},,ui,info,vmctl/tiny (libvirt, 0)".replace(", 0)", "%!(VAGRANT_COMMA) 0)"),
        f"{T},,box-name,vmctl/tiny", f"{T},,box-provider,libvirt", f"{T},,box-version,0",
        f"{T},,box-architecture,n/a", f"{T},,box-info,author,me",
        f"{T},,box-info,homepage,https://x%!(VAGRANT_COMMA) y",
    ]
    assert run_main("box", "list", "-i").stdout == (
        "vmctl/tiny (libvirt, 0)\n  - author: me\n  - homepage: https://x, y\n")
    assert json.loads(run_main("box", "list", "--json", "--box-info").stdout)["boxes"][0]["info"] == {
        "author": "me", "homepage": "https://x, y"}


def test_box_list_machine_readable_empty(project: Path) -> None:
    assert lines(run_main("box", "list", "--machine-readable")) == [
        f"{T},,ui,warn,There are no installed boxes! Use `vmctl box add` to add some."]


def test_box_add_name_and_source(project: Path, box_make: Any) -> None:
    """Vagrant's `box add NAME URL` names the box as --name does."""
    path = box_make()
    out = run_main("box", "add", "acceptance", str(path))
    assert (out.code, out.stdout) == (0, "added box acceptance 0 (libvirt)\n")
    assert run_main("box", "add", "a", "b", "c").code == 2
    assert run_main("box", "add", "a", str(path), "--name", "b").code == 2


def test_box_provider_flag(project: Path, box_make: Any) -> None:
    path = box_make()
    bad = run_main("box", "add", str(path), "--name", "x/y", "--provider", "virtualbox")
    assert bad.code == 2 and "error: --provider asks for the provider 'virtualbox'" in bad.stderr
    assert run_main("box", "add", str(path), "--name", "x/y", "--provider=libvirt").code == 0
    assert run_main("box", "remove", "x/y", "--provider", "libvirt").code == 0


# --- up, destroy, reload, provision ---------------------------------------------------

@pytest.fixture
def calls(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """Record what the commands ask of the core instead of doing it."""
    from vmctl import project as project_mod
    from vmctl.machine import Machine

    seen: dict[str, Any] = {}

    def up_machines(proj: Any, machines: list[Any], **kw: Any) -> list[Any]:
        seen["up"] = {"machines": [m.name for m in machines], **{k: kw[k] for k in
                      ("provision", "parallel", "only", "destroy_on_error")}}
        return []

    def destroy_machines(machines: list[Any], **kw: Any) -> list[Any]:
        seen["destroy"] = {"machines": [m.name for m in machines], "parallel": kw["parallel"],
                           "graceful": kw["graceful"]}
        return []

    monkeypatch.setattr(project_mod, "up_machines", up_machines)
    monkeypatch.setattr(project_mod, "destroy_machines", destroy_machines)
    monkeypatch.setattr(Machine, "reload", lambda self, **kw: seen.setdefault("reload", []).append(
        {"name": self.name, "force": kw["force"], "only": kw["only"], "provision": kw["provision"]}))
    monkeypatch.setattr(Machine, "halt", lambda self, **kw: seen.setdefault("halt", []).append(self.name))
    return seen


def test_up_with_vagrants_flags(project: Path, calls: dict[str, Any]) -> None:
    (project / "Vagrantfile").write_text(TWO)
    out = run_main("up", "--provider=libvirt", "--no-destroy-on-error", "--install-provider",
                   "--provision-with", "hello,shell", "--no-parallel")
    assert out.code == 0, out.stderr
    assert calls["up"] == {"machines": ["web", "db"], "provision": True, "parallel": False,
                           "only": {"hello", "shell"}, "destroy_on_error": False}
    run_main("up", "web", "--provider", "libvirt", "--no-install-provider")
    assert calls["up"] == {"machines": ["web"], "provision": None, "parallel": True, "only": None,
                           "destroy_on_error": True}


def test_up_other_provider_is_a_usage_error(project: Path, calls: dict[str, Any]) -> None:
    out = run_main("up", "--provider=virtualbox")
    assert (out.code, out.stdout) == (2, "")
    assert out.stderr == ("error: --provider asks for the provider 'virtualbox', but vmctl provides only 'libvirt'\n"
                          "hint: use --provider=libvirt\n")
    assert "up" not in calls


def test_default_provider_from_the_environment(project: Path, calls: dict[str, Any],
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VAGRANT_DEFAULT_PROVIDER", "libvirt")
    assert run_main("up").code == 0
    monkeypatch.setenv("VAGRANT_DEFAULT_PROVIDER", "docker")
    for argv in (["up"], ["status"], ["ssh-config"]):
        out = run_main(*argv)
        assert out.code == 1
        assert out.stderr.splitlines() == [
            "error: VAGRANT_DEFAULT_PROVIDER asks for the provider 'docker', but vmctl provides only 'libvirt'",
            "hint: unset VAGRANT_DEFAULT_PROVIDER or set it to libvirt",
        ]


def test_unknown_provision_with_is_a_usage_error(project: Path, calls: dict[str, Any]) -> None:
    (project / "Vagrantfile").write_text(TWO)
    out = run_main("up", "--provision-with", "hello,ansible")
    assert out.code == 2
    assert out.stderr.startswith("error: --provision-with names ansible, which is neither a provisioner")
    assert "hint: provisioners and types here: file, hello, shell" in out.stderr
    assert run_main("provision", "--provision-with", ",").code == 2


def test_no_parallel_from_the_environment(project: Path, calls: dict[str, Any],
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VAGRANT_NO_PARALLEL", "1")
    run_main("up")
    assert calls["up"]["parallel"] is False
    run_main("up", "--parallel")  # the flag wins
    assert calls["up"]["parallel"] is True


def test_destroy_flags(project: Path, calls: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    (project / "Vagrantfile").write_text(TWO)
    refused = run_main("destroy")
    assert refused.code == 2 and "there is no terminal to ask" in refused.stderr
    assert run_main("destroy", "-f", "-g").code == 0
    assert calls["destroy"] == {"machines": ["db", "web"], "parallel": False, "graceful": True}
    out = run_main("destroy", "--parallel")  # implies --force, as in Vagrant
    assert out.code == 0 and "warning: --parallel implies --force" in out.stderr
    assert calls["destroy"] == {"machines": ["db", "web"], "parallel": True, "graceful": False}
    monkeypatch.setenv("VAGRANT_NO_PARALLEL", "1")
    run_main("destroy", "--parallel", "--force")
    assert calls["destroy"]["parallel"] is False


def test_reload_and_halt_flags(project: Path, calls: dict[str, Any]) -> None:
    (project / "Vagrantfile").write_text(TWO)
    assert run_main("reload", "web", "-f", "--provision-with", "hello").code == 0
    assert calls["reload"] == [{"name": "web", "force": True, "only": {"hello"}, "provision": True}]
    assert run_main("halt", "--force").code == 0
    assert calls["halt"] == ["db", "web"]  # in reverse order, as Vagrant halts


# --- ssh -------------------------------------------------------------------------------

@pytest.fixture
def execs(project: Path, running: None, monkeypatch: pytest.MonkeyPatch) -> list[list[str]]:
    created(project)
    seen: list[list[str]] = []

    def execv(binary: str, argv: list[str]) -> None:
        seen.append(argv)

    monkeypatch.setattr(os, "execv", execv)
    return seen


def test_ssh_options(project: Path, execs: list[list[str]]) -> None:
    run_main("ssh", "-c", "echo foo")
    argv = execs[-1]
    assert argv[-2:] == ["127.0.0.1", "echo foo"] and "-t" not in argv and "-T" not in argv
    assert "-i" in argv and argv[argv.index("-l") + 1] == "vagrant"
    run_main("ssh", "-c", "tty", "-t")
    assert execs[-1][-3:] == ["-t", "127.0.0.1", "tty"]
    run_main("ssh", "--no-tty", "--command=true")
    assert execs[-1][-3:] == ["-T", "127.0.0.1", "true"]
    run_main("ssh", "--plain", "-c", "true")
    assert "-i" not in execs[-1] and "-l" not in execs[-1] and "StrictHostKeyChecking=yes" in execs[-1]
    # words after -- go to ssh after the host, as Vagrant puts them (ssh reads options
    # there too, and what follows is the command); the machine name is still a name
    run_main("ssh", "--", "-L", "8080:localhost:80")
    assert execs[-1][-3:] == ["127.0.0.1", "-L", "8080:localhost:80"]
    run_main("ssh", "default", "-c", "true", "--", "-v")
    assert execs[-1][-3:] == ["127.0.0.1", "-v", "true"]
    run_main("ssh", "--", "-t", "touch a.txt")  # vagrant-libvirt's snapshot acceptance test
    assert execs[-1][-3:] == ["127.0.0.1", "-t", "touch a.txt"]


def test_ssh_on_a_stopped_machine_is_exit_1(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    created(project)
    monkeypatch.setattr(hypervisor, "qemu_alive", lambda uri, dom: False)
    out = run_main("ssh", "-c", "echo foo")
    assert (out.code, out.stdout) == (1, "")
    assert out.stderr == "error: machine default is not running\nhint: start it with vmctl up default\n"


# --- the fast parser and typer agree ---------------------------------------------------

FAST = [
    ["status"], ["status", "web", "db"], ["status", "--json"], ["status", "web", "--json", "db"],
    ["ssh-config"], ["ssh-config", "web", "--host", "h"], ["ssh-config", "--host=h"],
    ["port"], ["port", "web", "--json"], ["port", "--guest", "80"], ["port", "--guest=80", "web"],
    ["ssh"], ["ssh", "web"], ["ssh", "-c", "echo foo"], ["ssh", "web", "--command", "ls -l"],
    ["ssh", "--command=x", "-p", "-t"], ["ssh", "--plain", "--no-tty", "-c", "x"], ["ssh", "--tty"],
    ["ssh", "-c", "-x"], ["version"],
]
TYPER_ONLY = [
    ["status", "-h"], ["status", "--bogus"], ["port", "a", "b"], ["port", "--guest"], ["ssh", "-pt"],
    ["ssh", "-cls"], ["ssh", "a", "b"], ["version", "x"], ["ssh", "-c"], ["status", "--json=1"],
]


def _typer_kwargs(argv: list[str], extra: list[str], monkeypatch: pytest.MonkeyPatch) -> tuple[int, dict[str, Any] | None]:
    """What typer passes to the command function for ARGV (with the function stubbed)."""
    from vmctl.cli import app, port, ssh, status, version

    got: list[dict[str, Any]] = []
    for module, name in ((status, "status"), (ssh, "ssh"), (ssh, "ssh_config"), (port, "port"),
                         (version, "version")):
        monkeypatch.setattr(module, name, lambda *a, _n=name, **kw: got.append({"fn": _n, "args": a, **kw}))
    try:
        app.run(argv, extra)
        code = 0
    except SystemExit as exc:
        code = int(exc.code or 0)
    return code, (got[0] if got else None)


@pytest.mark.parametrize("argv", FAST, ids=" ".join)
def test_fast_parser_agrees_with_typer(argv: list[str], monkeypatch: pytest.MonkeyPatch,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    from vmctl.cli import fast

    parsed = fast.parse(argv, [])
    assert parsed is not None
    function, kwargs = parsed
    code, typer_call = _typer_kwargs(argv, [], monkeypatch)
    assert code == 0 and typer_call is not None
    assert typer_call.pop("fn") == function.__name__
    positional = typer_call.pop("args")
    first = {"status": "names", "ssh_config": "names", "port": "name", "ssh": "name"}.get(function.__name__)
    if first:
        typer_call[first] = positional[0]
    assert typer_call == kwargs


@pytest.mark.parametrize("argv", TYPER_ONLY, ids=" ".join)
def test_fast_parser_leaves_the_rest_to_typer(argv: list[str]) -> None:
    from vmctl.cli import fast

    assert fast.parse(argv, []) is None


# --- start-up --------------------------------------------------------------------------

@pytest.mark.parametrize("argv", [["--version"], ["version"], ["status"], ["ssh-config"], ["port"]])
def test_fast_commands_do_not_import_typer_or_rich(argv: list[str], project: Path) -> None:
    code = ("import sys\nfrom vmctl.cli import main\n"
            f"try:\n    main({argv!r})\nexcept SystemExit: pass\n"
            "print([m for m in ('typer', 'rich', 'paramiko', 'libvirt', 'requests', 'pydantic') if m in sys.modules])")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                          cwd=project, env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])})
    assert proc.stdout.strip().splitlines()[-1] == "[]", proc.stderr


# What only up, destroy, snapshots, provisioning and the Vagrantfile's evaluation need: the
# commands scripts call in loops import none of it (each was milliseconds of every start).
NOT_ON_THE_FAST_PATH = (
    "vmctl.domain", "vmctl.network", "vmctl.machine.hardware", "vmctl.machine.snapshots", "vmctl.guest",
    "vmctl.provision", "vmctl.vagrantfile.interpreter", "vmctl.vagrantfile.loader", "vmctl.vagrantfile.resolve",
    "vmctl.boxes.store", "typer", "rich", "paramiko", "libvirt", "requests", "yaml", "tree_sitter", "uuid",
    "subprocess", "xml.etree.ElementTree",
)  # fmt: skip


@pytest.mark.parametrize("argv", [["status"], ["ssh-config"], ["port"], ["ssh", "-c", "true"]], ids=" ".join)
def test_fast_commands_on_a_created_machine_import_only_what_they_use(argv: list[str], project: Path) -> None:
    """With a created machine and a kept evaluation: none of NOT_ON_THE_FAST_PATH is
    imported, and no settings class of the Vagrantfile is made a dataclass (vmctl/records.py:
    the unpickled settings are only read)."""
    created(project, forwards=((80, 8080),))
    code = ("import os, sys\nfrom vmctl import hypervisor\n"
            "hypervisor.qemu_status = lambda uri, dom: 'running'\n"
            "hypervisor.qemu_alive = lambda uri, dom: True\n"
            "os.execv = lambda binary, argv: print('exec', binary)\n"
            f"from vmctl.cli import main\nmain({argv!r})\nfrom vmctl import records\n"
            f"print(sorted(m for m in {NOT_ON_THE_FAST_PATH!r} if m in sys.modules), "
            "sorted(c.__name__ for c in records._made))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                          cwd=project, env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])})
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout.splitlines()
    assert "8080" in proc.stdout if argv == ["port"] else True
    assert out[-1] == "[] []", proc.stdout + proc.stderr


def test_version_imports_almost_nothing(project: Path) -> None:
    code = ("import sys\nbefore = set(sys.modules)\nfrom vmctl.cli import main\nmain(['--version'])\n"
            "print(sorted(m for m in set(sys.modules) - before if m.startswith('vmctl')))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.stdout.splitlines()[-1] == "['vmctl', 'vmctl.cli', 'vmctl.cli.flags']"


# --- where the Vagrantfile is ----------------------------------------------------------

def test_vagrant_cwd_and_vagrantfile_name(project: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    other = tmp_path / "other"
    (other / "deep").mkdir(parents=True)
    (other / "Vagrantfile.ci").write_text(TWO)
    monkeypatch.setenv("VAGRANT_CWD", str(other / "deep"))
    # VAGRANT_CWD moves the search; the default names do not match Vagrantfile.ci
    missing = run_main("status")
    assert missing.code == 1 and missing.stderr.startswith("error: no Vagrantfile here or in any parent folder")
    monkeypatch.setenv("VAGRANT_VAGRANTFILE", "Vagrantfile.ci")
    out = run_main("status", "--json")
    assert [m["name"] for m in json.loads(out.stdout)["machines"]] == ["web", "db"]
    monkeypatch.setenv("VAGRANT_VAGRANTFILE", "ci/Vagrantfile")
    assert "VAGRANT_VAGRANTFILE is 'ci/Vagrantfile', which is not a file name" in run_main("status").stderr
    # VMCTL_VAGRANTFILE (a path) wins over both
    monkeypatch.setenv("VMCTL_VAGRANTFILE", str(project / "Vagrantfile"))
    assert [m["name"] for m in json.loads(run_main("status", "--json").stdout)["machines"]] == ["default"]
    monkeypatch.delenv("VMCTL_VAGRANTFILE")
    monkeypatch.setenv("VAGRANT_CWD", str(tmp_path / "nowhere"))
    monkeypatch.delenv("VAGRANT_VAGRANTFILE")
    gone = run_main("status")
    assert gone.code == 1 and f"VAGRANT_CWD names {tmp_path / 'nowhere'}, which is not a folder" in gone.stderr


def test_lowercase_vagrantfile_is_found(project: Path) -> None:
    (project / "Vagrantfile").rename(project / "vagrantfile")
    sub = project / "sub"
    sub.mkdir()
    os.chdir(sub)
    assert json.loads(run_main("status", "--json").stdout)["machines"][0]["name"] == "default"


# --- upload ----------------------------------------------------------------------------

def test_upload_arguments(project: Path, running: None, monkeypatch: pytest.MonkeyPatch) -> None:
    """SOURCE [DESTINATION] [NAME]: with two words the second is a machine when one of that
    name is created (as Vagrant decides), else the destination."""
    from vmctl import transfer
    from vmctl.machine import Machine

    (project / "Vagrantfile").write_text(TWO)
    created(project, "db")
    monkeypatch.setattr(Machine, "require_running", Machine.require_state)
    (project / "site").mkdir()
    (project / "site" / "index.html").write_text("hi\n")
    sent: list[tuple[Any, int]] = []
    monkeypatch.setattr(transfer, "upload", lambda u, endpoint, key: sent.append((u, endpoint.port)) or "/tmp/x")
    out = run_main("upload", "site", "db")
    assert out.code == 0, out.stderr
    u, port = sent[-1]
    assert (u.destination, u.is_dir, u.compression, port) == ("site", True, None, 2222)
    assert out.stdout == "Upload has completed successfully!\n\n  Source: site\n  Destination: /tmp/x\n"
    assert "==> db: uploading site to site" in out.stderr
    # two words, the second not a created machine: a destination (and then web is not running)
    assert run_main("upload", "site", "/srv/www", "db", "--compress").code == 0
    assert (sent[-1][0].destination, sent[-1][0].compression) == ("/srv/www", "tgz")
    assert run_main("upload", "site", "web").code == 1  # web: a destination; no primary machine
    assert run_main("upload", "site", "x", "db", "-C", "zip", "-t").code == 0
    assert (sent[-1][0].destination, sent[-1][0].temporary, sent[-1][0].compression) == (None, True, "zip")
    bad = run_main("upload", "site", "x", "db", "--compression-type", "rar")
    assert bad.code == 2 and "error: unknown compression type 'rar'\nhint: use one of: tgz, zip" in bad.stderr
    missing = run_main("upload", "nothing-here", "x", "db")
    assert missing.code == 1 and "the upload source nothing-here does not exist" in missing.stderr
    assert run_main("upload", "a", "b", "c", "d").code == 2


@pytest.mark.parametrize("compression", [None, "tgz", "zip"])
@pytest.mark.parametrize("kind", ["file", "folder"])
def test_upload_guest_script(kind: str, compression: str | None, tmp_path: Path) -> None:
    """The script the guest runs, run here by sh in place of a guest's shell: it receives
    what vmctl sends on its stdin and puts it where Vagrant's upload would."""
    from vmctl import transfer

    src = tmp_path / "src"
    if kind == "file":
        src = tmp_path / "notes.txt"
        src.write_text("one, two\n")
        src.chmod(0o750)
    else:
        (src / "sub").mkdir(parents=True)
        (src / "a.txt").write_text("a\n")
        (src / ".hidden").write_text("h\n")
        (src / "sub" / "b.txt").write_text("b\n")
    home = tmp_path / "home"
    home.mkdir()

    def send(destination: str | None, temporary: bool = False) -> str:
        u = transfer.parse_upload(str(src), destination, temporary=temporary, compression=compression)
        script = transfer.guest_script(u)
        proc = subprocess.Popen(["sh", "-c", script], cwd=home, stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                env={**os.environ, "TMPDIR": str(tmp_path)})
        if compression == "zip":
            with transfer._zip_of(u) as archive:
                transfer._file_writer(archive)(proc.stdin)
        elif compression == "tgz":
            transfer._tar_writer(u, "w|gz")(proc.stdin)
        elif u.is_dir:
            transfer._tar_writer(u, "w|")(proc.stdin)
        else:
            transfer._file_writer(u.source)(proc.stdin)
        proc.stdin.close()
        out, err = proc.stdout.read(), proc.stderr.read()
        assert proc.wait() == 0, err
        return out.decode().strip()

    def check(path: Path) -> None:
        if kind == "file":
            assert path.read_text() == "one, two\n"
            if compression != "zip":
                assert path.stat().st_mode & 0o777 == 0o750  # the mode is kept
        else:
            assert sorted(str(p.relative_to(path)) for p in path.rglob("*")) == [".hidden", "a.txt", "sub", "sub/b.txt"]
            assert (path / "sub" / "b.txt").read_text() == "b\n"

    assert send(None) == src.name  # the source's name, in the user's home
    check(home / src.name)
    check(home / send("deep/er/target"))  # missing folders are made
    if kind == "file":
        (home / "folder").mkdir()
        assert send("folder/") == f"folder/{src.name}"
        assert send("folder") == f"folder/{src.name}"
        check(home / "folder" / src.name)
    temp = Path(send(None, temporary=True))
    assert temp.parent == tmp_path and temp.name.startswith("vmctl-")
    if kind == "file":
        assert temp.suffix == ".txt"
    check(temp)
    leftovers = [p.name for p in tmp_path.iterdir() if p.name.startswith("vmctl-") and p != temp]
    assert leftovers == []  # the compressed upload's work files are gone
