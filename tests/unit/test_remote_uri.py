"""The libvirt URI composed from vagrant-libvirt's connection settings (vmctl/remote.py),
the checks a Vagrantfile's URI passes, and the hop OpenSSH takes to a guest on a remote host."""

from __future__ import annotations

import shlex
from pathlib import Path

import pytest

from vmctl import openssh, remote


@pytest.mark.parametrize(("settings", "uri"), [
    # vagrant-libvirt's own examples (spec/unit/config_spec.rb), with no ~/.ssh/id_rsa
    ({}, None),
    ({"driver": "qemu"}, None),
    ({"qemu_use_session": True}, "qemu:///session"),
    ({"connect_via_ssh": True, "username": "my_user"}, "qemu+ssh://my_user@localhost/system"),
    ({"id_ssh_key_file": "/path/k"}, "qemu+ssh://localhost/system?keyfile=/path/k"),
    ({"socket": "/var/run/libvirt/libvirt-sock"}, "qemu:///system?socket=/var/run/libvirt/libvirt-sock"),
    ({"host": "kvm1", "connect_via_ssh": True}, "qemu+ssh://kvm1/system"),
    ({"host": "kvm1"}, "qemu://kvm1/system"),
    ({"host": "kvm1", "connect_via_ssh": True, "username": "a b"}, "qemu+ssh://a%20b@kvm1/system"),
    # vmctl keeps the port (vagrant-libvirt loses it)
    ({"host": "kvm1", "connect_via_ssh": True, "port": 2222, "id_ssh_key_file": "kvm"},
     "qemu+ssh://kvm1:2222/system?keyfile=HOME/.ssh/kvm"),
    ({"host": "kvm1", "connect_via_ssh": True, "socket": "/run/s"}, "qemu+ssh://kvm1/system?socket=/run/s"),
    ({"host": "kvm1", "connect_via_ssh": True, "qemu_use_session": True}, "qemu+ssh://kvm1/session"),
    ({"password": "x"}, "qemu:///system"),
])
def test_the_uri_is_composed_as_vagrant_libvirt_does(settings: dict, uri: str | None, tmp_path: Path) -> None:
    got = remote.compose_uri(settings, home=str(tmp_path))
    assert got == (uri.replace("HOME", str(tmp_path)) if uri else None)


def test_the_default_key_is_used_when_it_exists(tmp_path: Path) -> None:
    (tmp_path / ".ssh").mkdir()
    (tmp_path / ".ssh" / "id_rsa").write_text("k")
    assert remote.compose_uri({"host": "h", "connect_via_ssh": True}, home=str(tmp_path)) == \
        f"qemu+ssh://h/system?keyfile={tmp_path}/.ssh/id_rsa"
    # an explicit nil switches it off (vagrant-libvirt: id_ssh_key_file = nil)
    assert remote.compose_uri({"host": "h", "connect_via_ssh": True, "id_ssh_key_file": None},
                              home=str(tmp_path)) == "qemu+ssh://h/system"


@pytest.mark.parametrize(("uri", "spec", "keyfile"), [
    ("qemu:///system", None, None),
    ("qemu:///embed?root=/x", None, None),
    ("qemu+ssh://localhost/system", None, None),
    ("qemu+ssh://root@127.0.0.1/system", None, None),
    ("qemu+ssh://kvm1/system", "kvm1", None),
    ("qemu+ssh://me@kvm1:2222/system?keyfile=/k/id", "me@kvm1:2222", "/k/id"),
    ("qemu+tcp://kvm1:16509/system", "kvm1", None),  # the libvirt port is not ssh's
    ("qemu+ssh://me@[fd00::1]/system", "me@[fd00::1]", None),
])
def test_the_host_of_a_uri(uri: str, spec: str | None, keyfile: str | None) -> None:
    jump = remote.jump_of(uri)
    assert (jump.spec() if jump else None) == spec
    assert remote.host_of(uri) == spec
    assert (jump.keyfile if jump else None) == keyfile


def test_the_hop_is_ssh_w_with_every_value_after_its_option() -> None:
    jump = remote.Jump("kvm1", "me", 2222, "/k/my key%1")
    argv = jump.argv("127.0.0.1", "2201")
    assert argv == ["ssh", "-o", "BatchMode=yes", "-o", "ExitOnForwardFailure=yes", "-l", "me", "-p", "2222",
                    "-i", "/k/my key%1", "-W", "127.0.0.1:2201", "--", "kvm1"]
    # as a ProxyCommand: OpenSSH expands %h and %p, a % of a value is doubled, words are quoted
    command = jump.proxy_command()
    assert "%h:%p" in command and "%%1" in command
    assert shlex.split(command.replace("%%", "%"))[-4:] == ["-W", "%h:%p", "--", "kvm1"]


def test_ssh_and_ssh_config_go_through_the_host(tmp_path: Path) -> None:
    jump = remote.Jump("kvm1", "me")
    login = openssh.Login(port=2201, user="vagrant", alias="vmctl-x", known_hosts=str(tmp_path / "kh"),
                          key=str(tmp_path / "key"), proxy_command=jump.proxy_command())
    opts = openssh.options(login)
    assert f"ProxyCommand={jump.proxy_command()}" in opts
    block = openssh.config_block("default", login)
    assert f"  ProxyCommand {jump.proxy_command()}" in block.splitlines()
    assert "  HostName 127.0.0.1" in block.splitlines()  # the host's own 127.0.0.1
    local = openssh.Login(port=2201, user="vagrant", alias="vmctl-x", known_hosts=str(tmp_path / "kh"),
                          key=str(tmp_path / "key"))
    assert "ProxyCommand" not in " ".join(openssh.options(local)) + openssh.config_block("default", local)


@pytest.mark.parametrize(("uri", "words"), [
    ("qemu+ssh://kvm1/system", None),
    ("qemu+ssh://me@kvm1:22/system?keyfile=/home/me/.ssh/k&no_verify=1", None),
    ("qemu+tls://kvm1/system?pkipath=/etc/pki", None),
    ("qemu:///system?socket=/run/libvirt/libvirt-sock", None),
    ("qemu+ssh://kvm1/system?command=/tmp/evil", "command="),
    ("qemu+ssh://kvm1/system?netcat=touch%20/x", "netcat="),
    ("qemu+ssh://kvm1/system?known_hosts=/etc/passwd", "known_hosts="),
    ("qemu+ext:///system?command=/tmp/evil", "+ext runs a command"),
    ("qemu+ssh://-oProxyCommand=x/system", "not a host name"),
    ("qemu+ssh://-l@kvm1/system", "not a user name"),
    ("qemu+ssh://kvm1/system?keyfile=-oProxyCommand=x", "not an absolute path"),
    ("qemu+ssh://kvm 1/system", "space"),
])
def test_a_vagrantfile_uri_may_not_run_anything(uri: str, words: str | None) -> None:
    problem = remote.uri_problem(uri)
    assert problem is None if words is None else words in (problem or "")


def test_the_ansible_inventory_carries_the_hop(tmp_path: Path) -> None:
    from vmctl.provision.ansible import InventoryHost, ssh_common_args

    hop = remote.Jump("kvm1", "me", 2222).proxy_command()
    h = InventoryHost(name="default", port=2201, user="vagrant", key=tmp_path / "k", known_hosts=tmp_path / "kh",
                      alias="vmctl-x", proxy_command=hop)
    words = shlex.split(ssh_common_args(h))  # as ansible splits it
    assert words[-2:] == ["-o", f"ProxyCommand={hop}"]
    assert "ProxyCommand" not in ssh_common_args(InventoryHost(
        name="default", port=2201, user="vagrant", key=tmp_path / "k", known_hosts=tmp_path / "kh", alias="vmctl-x"))
