"""The docker provisioner: images and containers of the guest's docker, as Vagrant's.

In order: docker is installed when the guest has no `docker` command (the guest's package
manager) and then the post_install_provision shell provisioner runs; the daemon is started
if it does not answer (podman's `docker` needs none); `images` are pulled, `build_image`
folders built, and each `run` container made to run:

    a container vmctl made before (its id in /var/lib/vagrant/cids/SHA1(name), as Vagrant
    keeps it) with the same settings and image is started if it stopped; with other
    settings (or a newer image) it is replaced; otherwise `docker run` makes it, with
    --cidfile, -d (daemonize), --name (auto_assign_name), --restart, the args and the cmd.

Commands run with sudo in the guest; `args`, `cmd` and build `args` are appended as they
are written, as Vagrant does, so the guest's shell splits them.
"""

from __future__ import annotations

import hashlib
import shlex

from vmctl.errors import ProvisionError
from vmctl.provision import Context, LineWriter, failure
from vmctl.vagrantfile.model import DockerRun, Provisioner

q = shlex.quote
CIDS = "/var/lib/vagrant/cids"

INSTALL_SCRIPT = """set -e
if command -v apt-get >/dev/null 2>&1; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker.io
elif command -v dnf >/dev/null 2>&1; then
  dnf -y -q install docker || dnf -y -q install moby-engine
elif command -v yum >/dev/null 2>&1; then
  yum -y -q install docker
elif command -v zypper >/dev/null 2>&1; then
  zypper --non-interactive --quiet install docker
elif command -v apk >/dev/null 2>&1; then
  apk add --quiet docker
elif command -v pacman >/dev/null 2>&1; then
  pacman -Sy --noconfirm --quiet docker
else
  echo "no package manager vmctl knows in the guest" >&2; exit 3
fi
"""

START_SCRIPT = """if ! docker version >/dev/null 2>&1; then
  if command -v systemctl >/dev/null 2>&1; then systemctl start docker;
  elif command -v service >/dev/null 2>&1; then service docker start;
  elif command -v rc-service >/dev/null 2>&1; then rc-service docker start; fi
  i=0; until docker version >/dev/null 2>&1; do i=$((i+1)); [ $i -lt 30 ] || exit 1; sleep 1; done
fi
"""


def container_name(run: DockerRun) -> str:
    # "/" cannot be in a container's name; Vagrant replaces it in names it made itself.
    return run.name.replace("/", "-")


def run_args(run: DockerRun, cids: str = CIDS) -> str:
    """`docker run`'s arguments for RUN, as Vagrant builds them."""
    cidfile = cid_path(run, cids)
    args = f"--cidfile={q(cidfile)} "
    if run.daemonize:
        args += "-d "
    if run.auto_assign_name:
        args += f"--name {q(container_name(run))} "
    if run.restart:
        args += f"--restart={q(run.restart)}"
    if run.args:
        args += f" {run.args}"
    return f"{args} {q(run.image)} {run.cmd or ''}".strip()


def cid_path(run: DockerRun, cids: str = CIDS) -> str:
    return f"{cids}/{hashlib.sha1(run.name.encode()).hexdigest()}"  # noqa: S324 - Vagrant's file name


def container_script(run: DockerRun, cids: str = CIDS) -> str:
    """A guest script (run as root) that makes RUN's container run, as Vagrant's client does
    (CIDS: where the container ids are kept)."""
    args = run_args(run, cids)
    digest = hashlib.sha1(args.encode()).hexdigest()  # noqa: S324 - a change detector, as Vagrant's
    cid = q(cid_path(run, cids))
    name = q(container_name(run))
    image = q(run.image)
    return f"""set -e
mkdir -p {q(cids)}
create() {{
  rm -f {cid}
  docker run {args}
  echo {digest} > {cid}.args
}}
id=""
[ -s {cid} ] && id=$(cat {cid})
if [ -n "$id" ] && docker ps -a -q --no-trunc | grep -wFq "$id"; then
  current=$(docker inspect --format='{{{{.Image}}}}' "$id" 2>/dev/null || true)
  latest=$(docker images -q --no-trunc {image} 2>/dev/null | head -n1)
  if [ "$(cat {cid}.args 2>/dev/null)" != {digest} ]; then
    echo "container {name}: its settings changed: making it again"
    docker stop "$id" >/dev/null; docker rm "$id" >/dev/null; create
  elif [ -n "$latest" ] && [ "${{current#sha256:}}" != "${{latest#sha256:}}" ]; then
    echo "container {name}: its image changed: making it again"
    docker stop "$id" >/dev/null; docker rm "$id" >/dev/null; create
  elif ! docker ps -q --no-trunc | grep -wFq "$id"; then
    docker start "$id" >/dev/null
  fi
else
  create
fi
"""


def run(ctx: Context, p: Provisioner, name: str) -> None:
    assert p.docker is not None
    d, s, machine = p.docker, ctx.session, ctx.machine
    out = LineWriter(ctx.emit, f"    {machine}: ")

    def sudo(script: str, what: str) -> None:
        status, _, _ = s.run(f"sudo -n sh -c {q(script)}", on_stdout=out, on_stderr=out)
        out.flush()
        if status != 0:
            raise failure(machine, p, name, status, what)

    if s.run("command -v docker")[0] != 0:
        ctx.say(f"==> {machine}: installing docker in the guest...")
        sudo(INSTALL_SCRIPT, "installing docker")
        if d.post_install is not None:
            from vmctl.provision.shell import run_shell

            ctx.say(f"==> {machine}: running the docker provisioner's post-install provisioner...")
            run_shell(ctx, d.post_install, f"{name} post-install")
            s = ctx.session
    status, _, err = s.run(f"sudo -n sh -c {q(START_SCRIPT)}")
    if status != 0:
        raise ProvisionError(f"{machine}: provisioner {name}: docker is not running in the guest",
                             hint="check the guest's docker service (sudo systemctl status docker)")
    for image in d.images:
        ctx.emit(f"    {machine}: pulling {image}...")
        sudo(f"docker pull {q(image)}", f"docker pull {image}")
    for build in d.build_images:
        ctx.emit(f"    {machine}: building {build.path}...")
        sudo(f"docker build {build.args or ''} {q(build.path)}", f"docker build {build.path}")
    for container in d.runs:
        ctx.emit(f"    {machine}: running container {container.name}...")
        sudo(container_script(container), f"docker run {container.name}")
