"""config.ssh.* where they take effect: the host's ssh (vmctl ssh, ssh-config) and the commands
vmctl runs in the guest. No VM."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from vmctl import ssh
from vmctl.errors import SSHError


def endpoint(tmp_path: Path, **settings: object) -> ssh.Endpoint:
    return replace(ssh.Endpoint(host="127.0.0.1", port=2222, user="vagrant", alias="vmctl-abc",
                                known_hosts=tmp_path / "known_hosts", keys=(tmp_path / "key",)), **settings)


def test_defaults_are_vmctls(tmp_path: Path) -> None:
    opts = ssh.openssh_options(endpoint(tmp_path), tmp_path / "key")
    assert "IdentitiesOnly=yes" in opts and "ConnectTimeout=10" in opts
    assert not any(o.startswith(("ForwardAgent", "ForwardX11", "SendEnv")) for o in opts)


def test_session_settings_reach_the_hosts_ssh(tmp_path: Path) -> None:
    config = tmp_path / "ssh_config"
    config.write_text("# shared settings\nHost *\n  ServerAliveInterval 30\n  SendEnv LANG\n")
    ep = endpoint(tmp_path, forward_agent=True, forward_x11=True, forward_env=("LANG", "LC_*"), keys_only=False,
                  connect_timeout=30, extra_args=("-C", "-o", "Compression=yes"), config_file=config)
    opts = ssh.openssh_options(ep, tmp_path / "key")
    for expected in ("ForwardAgent=yes", "ForwardX11=yes", "ForwardX11Trusted=yes", "SendEnv=LANG", "SendEnv=LC_*",
                     "IdentitiesOnly=no", "ConnectTimeout=30"):
        assert expected in opts, expected
    assert opts[opts.index("-F") + 1] == str(config)
    assert opts[-3:] == ["-C", "-o", "Compression=yes"]
    block = ssh.config_block("default", ep, tmp_path / "key")
    assert f"  Include {config}" in block.splitlines()[1]
    for line in ("  ForwardAgent yes", "  ForwardX11 yes", "  SendEnv LANG", "  IdentitiesOnly no", "  ConnectTimeout 30"):
        assert line in block.splitlines()


@pytest.mark.parametrize("text", [
    "Host *\n  ProxyCommand touch /tmp/x\n",
    "Match exec \"touch /tmp/x\"\n",
    "LocalCommand touch /tmp/x\nPermitLocalCommand yes\n",
    "PKCS11Provider /tmp/evil.so\n",
    "Include /tmp/other\n",
])
def test_an_ssh_config_that_acts_on_the_host_is_refused_when_used(tmp_path: Path, text: str) -> None:
    config = tmp_path / "ssh_config"
    config.write_text(text)
    ep = endpoint(tmp_path, config_file=config)
    with pytest.raises(SSHError, match="refusing the SSH config"):
        ssh.openssh_options(ep, tmp_path / "key")
    with pytest.raises(SSHError, match="refusing the SSH config"):
        ssh.config_block("default", ep, tmp_path / "key")


def test_extra_args_are_checked_again_where_used(tmp_path: Path) -> None:
    with pytest.raises(SSHError, match="ProxyCommand"):
        ssh.openssh_options(endpoint(tmp_path, extra_args=("-oProxyCommand=sh",)), tmp_path / "key")


def test_guest_commands_follow_shell_and_sudo_command(tmp_path: Path) -> None:
    assert ssh.guest_command(endpoint(tmp_path), "echo hi", privileged=True) == "sudo -n sh -c 'echo hi'"
    assert ssh.guest_command(endpoint(tmp_path), "echo hi", privileged=False) == "sh -c 'echo hi'"
    ep = endpoint(tmp_path, shell="bash -l", sudo_command="sudo -E -H %c")
    assert ssh.guest_command(ep, "echo hi", privileged=True) == "sudo -E -H bash -l -c 'echo hi'"
