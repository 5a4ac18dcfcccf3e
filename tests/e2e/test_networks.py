"""Private networks between machines (QEMU multicast sockets, no root, no bridge) and
rsync synced folders, on tiny-box guests. The networks ask for the multicast tunnel
(libvirt__tunnel_type: "mcast"), so they are segments even as root, where vmctl otherwise
makes host-only bridges (test_host_networks.py)."""

from __future__ import annotations

from pathlib import Path

from conftest import Vmctl, write_vagrantfile

TWO_NODES = """
    Vagrant.configure("2") do |config|
      config.vm.box = "vmctl/tiny"
      config.vm.synced_folder ".", "/vagrant", disabled: true
      config.vm.provider :libvirt do |lv|
        lv.memory = 256
      end
      {"node-1" => ["172.17.8.101", 40101, 40102], "node-2" => ["172.17.8.102", 40102, 40101]}.each do |name, (ip, here, there)|
        config.vm.define name do |node|
          node.vm.hostname = name
          node.vm.network "private_network", ip: ip, libvirt__tunnel_type: "mcast"
          # A point-to-point UDP tunnel between the two, on loopback.
          node.vm.network "private_network", ip: ip.sub("172.17.8.", "172.17.9."), libvirt__tunnel_type: "udp",
            libvirt__tunnel_local_port: here, libvirt__tunnel_port: there
        end
      end
    end
"""

OTHER_PROJECT = """
    Vagrant.configure("2") do |config|
      config.vm.box = "vmctl/tiny"
      config.vm.synced_folder ".", "/vagrant", disabled: true
      config.vm.network "private_network", ip: "172.17.8.103", libvirt__tunnel_type: "mcast"
      config.vm.provider :libvirt do |lv|
        lv.memory = 256
      end
    end
"""


def ping(vmctl: Vmctl, project: Path, machine: str, ip: str) -> bool:
    # As the login user: the box lets anyone ping (net.ipv4.ping_group_range), as distributions do.
    r = vmctl("ssh", machine, "-c", f"ping -c 2 -W 2 {ip}", cwd=project, check=False, timeout=60)
    return r.returncode == 0


def test_private_network_within_a_project_only(
    vmctl: Vmctl, tiny_box: Path, tmp_path: Path, destroy_after: list[Path]
) -> None:
    a = tmp_path / "cluster"
    b = tmp_path / "stranger"
    a.mkdir()
    b.mkdir()
    write_vagrantfile(a, TWO_NODES)
    write_vagrantfile(b, OTHER_PROJECT)
    destroy_after += [a, b]
    vmctl("up", cwd=a)
    vmctl("up", cwd=b)

    addr = vmctl("ssh", "node-1", "-c", "ip -4 addr", cwd=a).stdout
    assert "172.17.8.101/24" in addr
    assert ping(vmctl, a, "node-1", "172.17.8.102")
    assert ping(vmctl, a, "node-2", "172.17.8.101")
    assert ping(vmctl, a, "node-1", "172.17.9.102")  # through the udp tunnel
    # Another project's machine on the same subnet is on another wire.
    assert not ping(vmctl, b, "default", "172.17.8.101")
    assert not ping(vmctl, a, "node-2", "172.17.8.103")

    # The address comes back after a reboot.
    vmctl("reload", "node-2", cwd=a)
    assert ping(vmctl, a, "node-1", "172.17.8.102")


def test_synced_folder_and_rsync(vmctl: Vmctl, tiny_box: Path, project: Path, destroy_after: list[Path]) -> None:
    src = project / "src"
    (src / "sub").mkdir(parents=True)
    (src / "a.txt").write_text("one\n")
    (src / "sub" / "b.txt").write_text("two\n")
    (src / "skip.log").write_text("excluded\n")
    write_vagrantfile(project, """
        Vagrant.configure("2") do |config|
          config.vm.box = "vmctl/tiny"
          config.vm.synced_folder ".", "/vagrant", disabled: true
          config.vm.synced_folder "src", "/srv/app", type: "rsync", rsync__exclude: ["*.log"]
          config.vm.provider :libvirt do |lv|
            lv.memory = 256
          end
        end
    """)
    destroy_after.append(project)
    vmctl("up", cwd=project)
    listing = vmctl("ssh", "-c", "cd /srv/app && find . -type f | sort && stat -c %U a.txt", cwd=project).stdout
    assert listing.split() == ["./a.txt", "./sub/b.txt", "vagrant"]

    (src / "a.txt").write_text("changed\n")
    (src / "new.txt").write_text("new\n")
    vmctl("rsync", cwd=project)
    assert vmctl("ssh", "-c", "cat /srv/app/a.txt /srv/app/new.txt", cwd=project).stdout == "changed\nnew\n"


def test_unsupported_synced_folder_type_is_refused(vmctl: Vmctl, project: Path) -> None:
    write_vagrantfile(project, """
        Vagrant.configure("2") do |config|
          config.vm.box = "vmctl/tiny"
          config.vm.synced_folder ".", "/vagrant", type: "smb"
        end
    """)
    r = vmctl("up", cwd=project, check=False)
    assert r.returncode == 1
    assert "smb" in r.stderr and "rsync" in r.stderr
    assert "Traceback" not in r.stderr
