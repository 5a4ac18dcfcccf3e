"""Vagrant triggers on a real guest: info messages, run_remote in the guest, and host
commands (`run`) refused unless VMCTL_ALLOW_HOST_TRIGGERS=1."""

from __future__ import annotations

from pathlib import Path

from conftest import Vmctl, write_vagrantfile


def test_triggers(vmctl: Vmctl, tiny_box: Path, project: Path, destroy_after: list[Path]) -> None:
    canary = project / "host-canary"
    write_vagrantfile(project, f"""
        Vagrant.configure("2") do |config|
          config.vm.box = "vmctl/tiny"
          config.vm.synced_folder ".", "/vagrant", disabled: true
          config.trigger.before :up do |t|
            t.info = "about to start"
          end
          config.trigger.after :up do |t|
            t.name = "mark"
            t.run_remote = {{inline: "echo marked > /tmp/trigger-ran"}}
          end
          config.trigger.after :up do |t|
            t.name = "host"
            t.run = {{inline: "touch {canary}"}}
          end
          config.trigger.before :destroy do |t|
            t.warn = "going away"
          end
        end
    """)
    destroy_after.append(project)
    up = vmctl("up", cwd=project)
    assert "==> default: about to start" in up.stderr
    assert vmctl("ssh", "-c", "cat /tmp/trigger-ran", cwd=project).stdout == "marked\n"
    assert "VMCTL_ALLOW_HOST_TRIGGERS" in up.stderr
    assert not canary.exists()

    vmctl("provision", cwd=project)  # no provision triggers: nothing else runs
    assert not canary.exists()

    gone = vmctl("destroy", "-f", cwd=project, env={"VMCTL_ALLOW_HOST_TRIGGERS": "1"})
    assert "warning: going away" in gone.stderr
