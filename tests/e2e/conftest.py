"""End-to-end fixtures: real QEMU guests under libvirt, driven through the `vmctl` command.

One VMCTL_HOME is shared by the whole session (libvirt's first capability probe of a new
embedded root takes seconds), the tiny box (and, for the tests that use it, the debian box) is
built once (cached across runs by recipe hash) and added once. Every project is a fresh folder; every test destroys what it made,
and the session ends by destroying anything left over.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

VMCTL = [sys.executable, "-m", "vmctl"]

# The Ctrl-C tests send SIGINT to vmctl as a terminal would. A test run started in the
# background by a non-interactive shell inherits SIGINT ignored, and so would every vmctl it
# starts (an ignored signal stays ignored across exec): give them the default, as a
# terminal session has.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark e2e tests, and put the host-wide modules first: they share one lane (see
    tests/conftest.py), the longest queue, so it should start at once."""
    for item in items:
        if "/e2e/" in str(item.fspath):
            item.add_marker(pytest.mark.e2e)
    items.sort(key=lambda item: not item.get_closest_marker("host_wide"))  # stable


@dataclass
class Result:
    returncode: int
    stdout: str
    stderr: str

    def json(self) -> dict:
        return json.loads(self.stdout)


class Vmctl:
    """Runs the vmctl command as a user would, with the session's VMCTL_HOME."""

    def __init__(self, home: Path) -> None:
        self.home = home
        self.env = {
            **os.environ,
            "VMCTL_HOME": str(home),
            "NO_COLOR": "1",
            "PYTHONUNBUFFERED": "1",
        }
        for var in ("VMCTL_VAGRANTFILE", "VMCTL_LIBVIRT_URI", "VMCTL_DEBUG"):
            self.env.pop(var, None)

    def __call__(
        self, *args: str, cwd: Path | None = None, check: bool = True, timeout: float = 300,
        env: dict[str, str] | None = None,
    ) -> Result:
        proc = subprocess.run(
            [*VMCTL, *args], cwd=cwd, env={**self.env, **(env or {})}, stdin=subprocess.DEVNULL,
            capture_output=True, text=True, timeout=timeout, check=False,
        )  # fmt: skip
        result = Result(proc.returncode, proc.stdout, proc.stderr)
        if check and proc.returncode != 0:
            raise AssertionError(
                f"vmctl {' '.join(args)} exited {proc.returncode}\n"
                f"--- stdout\n{proc.stdout}\n--- stderr\n{proc.stderr}"
            )
        return result


@pytest.fixture(scope="session")
def e2e_home() -> Iterator[Path]:
    # World-traversable, so qemu:///system's QEMU (another user) can reach the files too.
    home = Path(tempfile.mkdtemp(prefix="vmctl-e2e-"))
    home.chmod(0o755)
    yield home
    cli = Vmctl(home)
    try:
        listed = cli("global-status", "--json", check=False)
        for m in listed.json().get("machines", []) if listed.returncode == 0 else []:
            if Path(m["project"]).is_dir():
                cli("destroy", "-f", m["name"], cwd=Path(m["project"]), check=False)
    finally:
        subprocess.run(["pkill", "-f", f"root={home}/libvirt"], check=False)
        subprocess.run(["pkill", "-f", str(home)], check=False)
        shutil.rmtree(home, ignore_errors=True)


@pytest.fixture(scope="session")
def vmctl(e2e_home: Path) -> Vmctl:
    return Vmctl(e2e_home)


@pytest.fixture(scope="session")
def tiny_box(vmctl: Vmctl, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """vmctl/tiny, built from boxes/tiny (cached by recipe hash) and added to the store.
    Returns the folder holding the built box and its catalog."""
    out = tmp_path_factory.mktemp("tiny-build")
    vmctl("box", "build", "tiny", "--output", str(out), "--add", timeout=1800)
    listed = vmctl("box", "list", "--json").json()
    assert any(b["name"] == "vmctl/tiny" for b in listed["boxes"])
    return out


@pytest.fixture(scope="session")
def debian_box(vmctl: Vmctl, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """vmctl/debian, built from boxes/debian (cached by recipe hash) and added to the store:
    a disk-booted box (GRUB, BIOS and UEFI) with Debian's generic kernel and systemd.
    Returns the folder holding the built box and its catalog."""
    out = tmp_path_factory.mktemp("debian-build")
    vmctl("box", "build", "debian", "--output", str(out), "--add", timeout=1800)
    listed = vmctl("box", "list", "--json").json()
    assert any(b["name"] == "vmctl/debian" for b in listed["boxes"])
    return out


@pytest.fixture
def project(tmp_path: Path) -> Iterator[Path]:
    folder = tmp_path / "project"
    folder.mkdir()
    folder.chmod(0o755)
    yield folder


def write_vagrantfile(folder: Path, body: str) -> Path:
    path = folder / "Vagrantfile"
    path.write_text(textwrap.dedent(body).lstrip())
    return path


@pytest.fixture
def destroy_after(vmctl: Vmctl) -> Iterator[list[Path]]:
    """Projects registered here are destroyed at the end of the test, pass or fail."""
    projects: list[Path] = []
    yield projects
    for folder in projects:
        vmctl("destroy", "-f", cwd=folder, check=False, timeout=120)
