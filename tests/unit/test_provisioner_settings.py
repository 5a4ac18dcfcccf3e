"""The provisioners of issue 15 as the Vagrantfile gives them: ansible, ansible_local, docker,
reload, shell reboot/reset, config.vm.cloud_init; what a Vagrantfile (or a box's) may hand to
ansible on this computer."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from vmctl.errors import ConfigError
from vmctl.vagrantfile.loader import evaluate_project
from vmctl.vagrantfile.model import MachineConfig, ProjectConfig


def load(folder: Path, code: str, **kwargs: object) -> ProjectConfig:
    (folder / "Vagrantfile").write_text(textwrap.dedent(code))
    kwargs.setdefault("env", {"HOME": "/home/tester"})
    return evaluate_project(folder / "Vagrantfile", **kwargs)  # type: ignore[arg-type]


def machine(folder: Path, body: str, **kwargs: object) -> MachineConfig:
    return load(folder, f'Vagrant.configure("2") do |config|\n  config.vm.box = "b"\n{body}\nend\n', **kwargs).machines[0]


def failure(folder: Path, body: str, **kwargs: object) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        machine(folder, body, **kwargs)
    return info.value


@pytest.fixture
def project(tmp_path: Path) -> Path:
    (tmp_path / "playbook.yml").write_text("- hosts: all\n  tasks: []\n")
    (tmp_path / "vars.yml").write_text("a: 1\n")
    return tmp_path


# --- ansible ----------------------------------------------------------------------------------

def test_ansible_every_option(project: Path) -> None:
    (project / "requirements.yml").write_text("[]\n")
    (project / "vault.txt").write_text("secret\n")
    (project / "ansible.cfg").write_text("[defaults]\n")
    m = machine(project, """
      config.vm.provision "ansible" do |ansible|
        ansible.playbook = "playbook.yml"
        ansible.limit = ["web", "db"]
        ansible.groups = {
          "web" => ["node1", "node[2:3]"], "db" => "db1 db2",
          "web:vars" => {"port" => 80}, "all:vars" => ["a=1", "b='x y'"],
          "cluster:children" => [:web, "db"],
        }
        ansible.host_vars = {"node1" => {"http_port" => 8080}, node2: "x=1 y=True"}
        ansible.extra_vars = {greeting: "hello", list: [1, 2]}
        ansible.raw_arguments = ["--diff", "-e", "z=1", "--forks=2", "-vv"]
        ansible.raw_ssh_args = ["-o ServerAliveInterval=30", "-C"]
        ansible.tags = ["a", "b"]
        ansible.skip_tags = "c"
        ansible.start_at_task = "the task"
        ansible.verbose = "-vvv"
        ansible.sudo = true
        ansible.become_user = "root"
        ansible.vault_password_file = "vault.txt"
        ansible.config_file = "ansible.cfg"
        ansible.galaxy_role_file = "requirements.yml"
        ansible.galaxy_roles_path = "roles"
        ansible.galaxy_command = "ansible-galaxy install --role-file=%{role_file} --roles-path=%{roles_path}"
        ansible.playbook_command = "ansible-playbook"
        ansible.compatibility_mode = "2.0"
        ansible.host_key_checking = false
        ansible.force_remote_user = false
      end
    """)
    (p,) = m.provisioners
    a = p.ansible
    assert p.type == "ansible" and a is not None
    assert a.playbook == str(project / "playbook.yml")
    assert a.limit == "web,db" and not a.project_wide
    assert a.groups == {"web": ["node1", "node[2:3]"], "db": ["db1", "db2"]}
    assert a.group_vars == {"web": {"port": 80}, "all": {"a": 1, "b": "x y"}}
    assert a.group_children == {"cluster": ["web", "db"]}
    assert a.host_vars == {"node1": {"http_port": 8080}, "node2": {"x": 1, "y": True}}
    assert a.extra_vars == {"greeting": "hello", "list": [1, 2]}
    assert a.raw_arguments == ("--diff", "-e", "z=1", "--forks=2", "-vv")
    assert a.raw_ssh_args == ("-o", "ServerAliveInterval=30", "-C")
    assert (a.tags, a.skip_tags, a.start_at_task, a.verbose) == ("a,b", "c", "the task", "vvv")
    assert (a.become, a.become_user) == (True, "root")
    assert a.vault_password_file == str(project / "vault.txt")
    assert a.config_file == str(project / "ansible.cfg")
    assert a.galaxy_role_file == str(project / "requirements.yml")
    assert a.galaxy_roles_path == str(project / "roles")
    assert (a.compatibility_mode, a.host_key_checking, a.force_remote_user) == ("2.0", False, False)


def test_ansible_option_style_and_defaults(project: Path) -> None:
    m = machine(project, '  config.vm.provision "ansible", playbook: "playbook.yml", limit: "all", extra_vars: "@vars.yml", verbose: true')
    a = m.provisioners[0].ansible
    assert a is not None and a.project_wide
    assert a.extra_vars_file == str(project / "vars.yml") and a.extra_vars is None
    assert a.verbose == "v"
    assert a.playbook_command == "ansible-playbook" and a.galaxy_command.startswith("ansible-galaxy install")
    assert (a.become, a.force_remote_user, a.compatibility_mode) == (False, True, "auto")


def test_ansible_limit_all_in_one_machine_only(project: Path) -> None:
    cfg = load(project, """
    Vagrant.configure("2") do |config|
      config.vm.box = "b"
      config.vm.define "web"
      config.vm.define "db" do |db|
        db.vm.provision "ansible" do |a|
          a.playbook = "playbook.yml"
          a.limit = "all"
        end
      end
    end
    """)
    assert [len(m.provisioners) for m in cfg.machines] == [0, 1]
    assert cfg.machines[1].provisioners[0].ansible.project_wide


@pytest.mark.parametrize(("body", "message"), [
    ('a.limit = "all"', "needs a playbook"),
    ('a.playbook = "missing.yml"', "does not exist"),
    ('a.playbook = "/etc/hostname"', "lies outside the project folder"),
    ('a.playbook = "playbook.yml"; a.compatibility_mode = "3"', 'must be "auto", "1.8" or "2.0"'),
    ('a.playbook = "playbook.yml"; a.raw_arguments = ["--connection=local"]', "--connection 'local' is not allowed"),
    ('a.playbook = "playbook.yml"; a.raw_arguments = ["-c", "local"]', "--connection 'local' is not allowed"),
    ('a.playbook = "playbook.yml"; a.raw_arguments = ["-i", "/tmp/inv.sh"]', "use inventory_path"),
    ('a.playbook = "playbook.yml"; a.raw_arguments = ["--ssh-common-args=-o ProxyCommand=x"]', "use raw_ssh_args"),
    ('a.playbook = "playbook.yml"; a.raw_arguments = ["--module-path=/tmp"]', "config_file"),
    ('a.playbook = "playbook.yml"; a.raw_arguments = ["--vault-password-file=/usr/bin/id"]', "outside the project"),
    ('a.playbook = "playbook.yml"; a.raw_arguments = ["-e", "ansible_connection=local"]', "ansible_connection"),
    ('a.playbook = "playbook.yml"; a.raw_arguments = ["-e", \'{"ansible_host": "x"}\']', "ansible_host"),
    ('a.playbook = "playbook.yml"; a.raw_arguments = ["-e", "@/etc/passwd"]', "outside the project"),
    ('a.playbook = "playbook.yml"; a.raw_arguments = ["site.yml"]', "options only"),
    ('a.playbook = "playbook.yml"; a.raw_arguments = ["--check --diff"]', "not one option"),
    ('a.playbook = "playbook.yml"; a.raw_arguments = ["--bogus"]', "is not allowed"),
    ('a.playbook = "playbook.yml"; a.raw_ssh_args = ["-o ProxyCommand=touch /tmp/x"]', "ProxyCommand"),
    ('a.playbook = "playbook.yml"; a.raw_ssh_args = ["-oLocalCommand=id", "-oPermitLocalCommand=yes"]', "LocalCommand"),
    ('a.playbook = "playbook.yml"; a.raw_ssh_args = ["-F /tmp/cfg"]', "-F is not allowed"),
    ('a.playbook = "playbook.yml"; a.raw_ssh_args = ["-i ~/.ssh/id_rsa"]', "-i is not allowed"),
    ('a.playbook = "playbook.yml"; a.raw_ssh_args = ["-L 80:localhost:80"]', "-L is not allowed"),
    ('a.playbook = "playbook.yml"; a.host_vars = {"web" => {"ansible_connection" => "local"}}', "ansible_connection"),
    ('a.playbook = "playbook.yml"; a.host_vars = {"web" => "ansible_ssh_common_args=x"}', "ansible_ssh_common_args"),
    ('a.playbook = "playbook.yml"; a.groups = {"all:vars" => {"ansible_host_key_checking" => false}}', "host_key_checking"),
    ('a.playbook = "playbook.yml"; a.extra_vars = {ansible_ssh_executable: "/tmp/x"}', "ansible_ssh_executable"),
    ('a.playbook = "playbook.yml"; a.playbook_command = "/tmp/ansible-playbook"', "never another program or a path"),
    ('a.playbook = "playbook.yml"; a.playbook_command = "sh"', "is not ansible-playbook"),
    ('a.playbook = "playbook.yml"; a.playbook_command = "ansible-playbook -v"', "the program only"),
    ('a.playbook = "playbook.yml"; a.galaxy_command = "rm -rf %{roles_path}"', "is not ansible-galaxy"),
    ('a.playbook = "playbook.yml"; a.galaxy_command = "ansible-galaxy install -r /etc/x.yml"', "vmctl fills in"),
    ('a.playbook = "playbook.yml"; a.galaxy_command = "ansible-galaxy install --role-file=%{role_file} && id"', "not allowed in galaxy_command"),
    ('a.playbook = "playbook.yml"; a.vault_password_file = "/usr/bin/id"', "outside the project"),
    ('a.playbook = "playbook.yml"; a.inventory_path = "/etc"', "outside the project"),
    ('a.playbook = "playbook.yml"; a.galaxy_roles_path = "/tmp/roles"', "outside the project"),
    ('a.playbook = "playbook.yml"; a.groups = {"bad group" => ["x"]}', "is not a group name"),
    ('a.playbook = "playbook.yml"; a.groups = {"web" => ["x;y"]}', "is not a machine name"),
])
def test_ansible_refusals(project: Path, body: str, message: str) -> None:
    error = failure(project, f'  config.vm.provision "ansible" do |a|\n    {body}\n  end')
    assert message in error.message, error.message
    assert error.line is not None


def test_ansible_loosening_ssh_args_are_dropped_with_a_warning(project: Path) -> None:
    cfg = load(project, """
    Vagrant.configure("2") do |config|
      config.vm.box = "b"
      config.vm.provision "ansible" do |a|
        a.playbook = "playbook.yml"
        a.raw_ssh_args = ["-o UserKnownHostsFile=/dev/null", "-o StrictHostKeyChecking=no", "-A",
                          "-o ForwardAgent=yes", "-o ControlPersist=30m"]
      end
    end
    """)
    assert cfg.machines[0].provisioners[0].ansible.raw_ssh_args == ("-o", "ControlPersist=30m")
    dropped = [w for w in cfg.warnings if "not passed to ssh" in w]
    assert len(dropped) == 4 and any("pinned host key" in w for w in dropped)
    assert any("ssh agent" in w for w in dropped)


def test_ansible_files_allowed_through_vmctl_read_paths(tmp_path: Path) -> None:
    shared = tmp_path / "ansible"
    shared.mkdir()
    (shared / "site.yml").write_text("- hosts: all\n")
    project = tmp_path / "project"
    project.mkdir()
    body = '  config.vm.provision "ansible", playbook: "../ansible/site.yml"'
    error = failure(project, body)
    assert "VMCTL_READ_PATHS" in error.message + (error.hint or "")
    m = machine(project, body, env={"HOME": "/home/tester", "VMCTL_READ_PATHS": str(shared)})
    assert m.provisioners[0].ansible.playbook == str(shared / "site.yml")


def test_ansible_link_out_of_the_project_is_refused(project: Path) -> None:
    (project / "link.yml").symlink_to("/etc/hostname")
    error = failure(project, '  config.vm.provision "ansible", playbook: "link.yml"')
    assert "outside the project folder" in error.message


def test_a_box_may_not_add_ansible_runs_on_this_computer(tmp_path: Path) -> None:
    box = tmp_path / "box"
    box.mkdir()
    (box / "site.yml").write_text("- hosts: all\n")
    (box / "Vagrantfile").write_text(textwrap.dedent("""
    Vagrant.configure("2") do |config|
      config.vm.provision "ansible", playbook: "site.yml"
      config.vm.provision "setup", type: "ansible_local", playbook: "guest.yml"
      config.vm.provision "named", type: "shell", inline: "echo from the box"
    end
    """))
    project = tmp_path / "project"
    project.mkdir()
    (project / "playbook.yml").write_text("- hosts: all\n")
    cfg = load(project, """
    Vagrant.configure("2") do |config|
      config.vm.box = "evil/box"
      config.vm.provision "named", type: "ansible", playbook: "playbook.yml"
    end
    """, box_vagrantfile=lambda name, version: box / "Vagrantfile")
    (m,) = cfg.machines
    assert [p.type for p in m.provisioners] == ["ansible_local", "ansible"]
    assert m.provisioners[1].ansible.playbook == str(project / "playbook.yml")
    assert any("the Vagrantfile of box evil/box adds an ansible provisioner" in w for w in cfg.warnings)
    # the box's inline: under the project's named ansible provisioner is the box's option
    assert any("sets the ansible provisioner option inline" in w for w in cfg.warnings)


def test_ansible_local_options(project: Path) -> None:
    m = machine(project, """
      config.vm.provision "ansible_local" do |a|
        a.playbook = "site.yml"
        a.install_mode = :pip
        a.version = "2.9.6"
        a.pip_args = "--no-cache-dir"
        a.provisioning_path = "/srv/provisioning"
        a.tmp_path = "/tmp/ans"
        a.raw_arguments = ["--connection=local"]
        a.raw_ssh_args = ["-o X=1"]
      end
    """)
    a = m.provisioners[0].ansible
    assert a.playbook == "site.yml"  # a guest path, as written
    assert (a.install, a.install_mode, a.version, a.pip_args) == (True, "pip", "2.9.6", "--no-cache-dir")
    assert (a.provisioning_path, a.tmp_path) == ("/srv/provisioning", "/tmp/ans")
    assert a.raw_arguments == ("--connection=local",)  # in the guest: not this computer's business
    assert a.raw_ssh_args == ()


def test_ansible_local_bad_install_mode(project: Path) -> None:
    error = failure(project, '  config.vm.provision "ansible_local", playbook: "x.yml", install_mode: "magic"')
    assert ":default, :pip or :pip_args_only" in error.message


# --- docker, reload, shell ------------------------------------------------------------------

def test_docker_block_form(project: Path) -> None:
    m = machine(project, """
      config.vm.provision "docker", images: ["alpine"] do |d|
        d.pull_images "redis", "busybox"
        d.build_image "/vagrant/app", args: "-t app"
        d.run "web", image: "nginx", args: "-p 80:80", restart: "no"
        d.run "app", cmd: "sleep 1000", daemonize: true, auto_assign_name: false
        d.run "web", cmd: "nginx -g 'daemon off;'"
        d.post_install_provision "shell", inline: "echo installed"
      end
    """)
    d = m.provisioners[0].docker
    assert d.images == ("alpine", "redis", "busybox")
    assert [(b.path, b.args) for b in d.build_images] == [("/vagrant/app", "-t app")]
    web, app = d.runs
    assert (web.name, web.image, web.args, web.restart, web.cmd) == ("web", "nginx", "-p 80:80", "no", "nginx -g 'daemon off;'")
    assert (app.image, app.cmd, app.daemonize, app.auto_assign_name, app.restart) == ("app", "sleep 1000", True, False, "always")
    assert d.post_install is not None and d.post_install.inline == "echo installed"


def test_docker_post_install_must_be_shell(project: Path) -> None:
    error = failure(project, """
      config.vm.provision "docker" do |d|
        d.post_install_provision "docker"
      end
    """)
    assert "cannot be another docker provisioner" in error.message


def test_reload_and_shell_reboot_reset(project: Path) -> None:
    m = machine(project, """
      config.vm.provision "shell", inline: "echo 1", reboot: true
      config.vm.provision :reload
      config.vm.provision "shell" do |s|
        s.inline = "usermod -aG docker vagrant"
        s.reset = true
      end
    """)
    first, reload, third = m.provisioners
    assert (first.type, first.reboot, first.reset) == ("shell", True, False)
    assert reload.type == "reload"
    assert (third.reboot, third.reset) == (False, True)
    assert [p.summary for p in m.provisioners] == ["inline script, then reboot", "halt and boot the machine again",
                                                   "inline script"]


# --- cloud-init -------------------------------------------------------------------------------

def test_cloud_init_parts(project: Path) -> None:
    (project / "user-data.yml").write_text("#cloud-config\nruncmd: [touch /x]\n")
    m = machine(project, """
      config.vm.cloud_init :user_data, content_type: "text/cloud-config", path: "user-data.yml"
      config.vm.cloud_init do |c|
        c.content_type = "text/x-shellscript"
        c.inline = "#!/bin/sh\\necho hi"
        c.content_disposition_filename = "hello.sh"
      end
      config.vm.define "web" do |web|
        web.vm.cloud_init content_type: "text/x-shellscript", inline: "#!/bin/sh\\necho web"
      end
    """)
    assert [(c.content_type, c.path, c.inline, c.filename) for c in m.cloud_init] == [
        ("text/cloud-config", str(project / "user-data.yml"), None, None),
        ("text/x-shellscript", None, "#!/bin/sh\necho hi", "hello.sh"),
        ("text/x-shellscript", None, "#!/bin/sh\necho web", None),
    ]


@pytest.mark.parametrize(("line", "message"), [
    ('config.vm.cloud_init :meta_data, content_type: "text/cloud-config", inline: "x"', "the type is :user_data"),
    ('config.vm.cloud_init inline: "x"', "needs content_type:"),
    ('config.vm.cloud_init content_type: "application/json", inline: "x"', "is not one cloud-init reads"),
    ('config.vm.cloud_init content_type: "text/cloud-config"', "path: (a file) or inline:"),
    ('config.vm.cloud_init content_type: "text/cloud-config", inline: "x", path: "y"', "path: (a file) or inline:"),
    ('config.vm.cloud_init content_type: "text/cloud-config", path: "missing.yml"', "does not exist"),
    ('config.vm.cloud_init content_type: "text/cloud-config", inline: "x", content_disposition_filename: "../x"',
     "not a plain file name"),
])
def test_cloud_init_refusals(project: Path, line: str, message: str) -> None:
    assert message in failure(project, "  " + line).message


def test_validate_json_shape(project: Path) -> None:
    from vmctl.vagrantfile.model import machine_json

    m = machine(project, """
      config.vm.cloud_init content_type: "text/cloud-config", inline: "#cloud-config"
      config.vm.provision "ansible", playbook: "playbook.yml", limit: "all"
    """)
    document = machine_json(m)
    assert document["cloud_init"] == [{"content_type": "text/cloud-config", "path": None,
                                       "inline": "#cloud-config", "filename": None}]
    assert document["provisioners"][0]["ansible"]["limit"] == "all"
    import json

    json.dumps(document)  # plain data all the way down
