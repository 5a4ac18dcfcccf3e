"""The disk fills during a download, an unpack or a box build: the real `vmctl` command
(a subprocess) on small tmpfs mounts says so clearly (exit 1, "no space" / "disk is full", a
hint), installs nothing half-way and leaves the machine index alone.

What stays behind is by design: a download cut short by a full disk (whether writing the
download or the box unpacked while it downloads) keeps its partial file in
VMCTL_HOME/downloads, like any cut-off download, so that the next `box add`, once space is
freed, resumes it with a Range request. The staging folder is removed.

Mounting needs root (these machines run the tests as root)."""

from __future__ import annotations

import hashlib
import io
import json
import os
import subprocess
import sys
import tarfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

VMCTL = [sys.executable, "-m", "vmctl"]
MIB = 1024 * 1024

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="mounting a small tmpfs needs root")


@pytest.fixture
def small_fs(tmp_path: Path) -> Iterator[Callable[..., Path]]:
    """mount(name, size="8m", inodes=None) -> a folder on a fresh tmpfs of that size;
    everything mounted is unmounted at the end of the test."""
    mounted: list[Path] = []

    def mount(name: str, size: str = "8m", inodes: int | None = None) -> Path:
        point = tmp_path / name
        point.mkdir()
        options = f"size={size}" + (f",nr_inodes={inodes}" if inodes else "")
        subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(point)], check=True)
        mounted.append(point)
        return point

    yield mount
    for point in reversed(mounted):
        if subprocess.run(["umount", str(point)], check=False).returncode != 0:
            subprocess.run(["umount", "-l", str(point)], check=False)


def remount(point: Path, size: str) -> None:
    subprocess.run(["mount", "-o", f"remount,size={size}", str(point)], check=True)


def vmctl(*args: str, home: Path, cache: Path | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("VMCTL_")}
    env.update(VMCTL_HOME=str(home), NO_COLOR="1", COLUMNS="200")
    if cache is not None:
        env["VMCTL_CACHE"] = str(cache)
    return subprocess.run([*VMCTL, *args], env=env, cwd=cwd, stdin=subprocess.DEVNULL, capture_output=True,
                          text=True, timeout=300, check=False)


def box_bytes(image_size: int) -> bytes:
    """An uncompressed box whose box.img is IMAGE_SIZE bytes of incompressible (raw) data."""
    members = {
        "metadata.json": json.dumps({"provider": "libvirt", "format": "qcow2", "virtual_size": 1}).encode(),
        "box.img": os.urandom(image_size),
    }
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def seed_index(home: Path) -> bytes:
    """A machine index with one machine in it, as vmctl writes it; returns its bytes."""
    index = {"machines": {"0123456789ab": {
        "id": "0123456789ab", "name": "default", "project": "/srv/project", "domain": "vmctl-project-default-012345",
        "uri": "qemu:///embed?root=/x", "box_name": "other/box", "box_version": "0", "ports": [2222],
        "created": 1700000000.0,
    }}}
    data = (json.dumps(index, indent=2, sort_keys=True) + "\n").encode()
    (home / "index.json").write_bytes(data)
    return data


def box_store_entries(home: Path) -> list[str]:
    boxes = home / "boxes"
    return sorted(str(p.relative_to(boxes)) for p in boxes.rglob("*")) if boxes.exists() else []


def assert_clear_error(proc: subprocess.CompletedProcess[str], *words: str) -> None:
    assert proc.returncode == 1, (proc.returncode, proc.stderr)
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.splitlines()
    error = [line for line in lines if line.startswith("error: ")]
    hint = [line for line in lines if line.startswith("hint: ")]
    assert len(error) == 1 and hint, proc.stderr
    assert any(w in error[0].lower() for w in words), proc.stderr


def test_download_that_fills_the_disk_then_resumes(box_server, small_fs: Callable[..., Path]) -> None:
    home = small_fs("home", "8m")
    index = seed_index(home)
    url = box_server.put("big.box", box_bytes(12 * MIB))

    proc = vmctl("box", "add", url, "--name", "t/big", home=home)

    assert_clear_error(proc, "no space left on device", "disk is full")
    assert "free some disk space" in proc.stderr and "resume" in proc.stderr
    assert box_store_entries(home) == []  # no box folder, no staging folder
    assert (home / "index.json").read_bytes() == index
    parts = list((home / "downloads").glob("*.part"))
    assert len(parts) == 1 and 0 < parts[0].stat().st_size <= 8 * MIB  # kept, to resume
    kept = parts[0].stat().st_size

    # Space is freed: the same command resumes where the disk filled up, and installs.
    remount(home, "64m")
    proc = vmctl("box", "add", url, "--name", "t/big", home=home)
    assert proc.returncode == 0, proc.stderr
    resumed = box_server.requests[-1]
    assert resumed["headers"].get("Range") == f"bytes={kept}-" and resumed["status"] == 206, box_server.requests
    assert box_store_entries(home)[:1] == ["t-VAGRANTSLASH-big"]
    assert list((home / "downloads").glob("*.part")) == []
    assert (home / "index.json").read_bytes() == index


def test_unpack_that_fills_the_disk_during_the_download(box_server, small_fs: Callable[..., Path]) -> None:
    """The box is unpacked while it downloads: 5 MB fits, the download and its unpacked
    copy together do not. Whichever write fails first, the error is the same in substance."""
    home = small_fs("home", "8m")
    index = seed_index(home)
    url = box_server.put("mid.box", box_bytes(5 * MIB))

    proc = vmctl("box", "add", url, "--name", "t/mid", home=home)

    assert_clear_error(proc, "no space left on device")
    assert "free some disk space" in proc.stderr and "resume" in proc.stderr
    assert box_store_entries(home) == []  # the staging copy is gone
    assert (home / "index.json").read_bytes() == index
    parts = list((home / "downloads").glob("*.part"))
    assert len(parts) == 1
    used = int(subprocess.run(["df", "--output=used", "-B1", str(home)], capture_output=True, text=True,
                              check=True).stdout.split()[-1])
    assert used < parts[0].stat().st_size + 1 * MIB  # only the partial download is kept

    remount(home, "16m")
    proc = vmctl("box", "add", url, "--name", "t/mid", home=home)
    assert proc.returncode == 0, proc.stderr
    assert box_store_entries(home)[:1] == ["t-VAGRANTSLASH-mid"]
    assert list((home / "downloads").iterdir()) == []  # dropped once installed


def test_local_box_that_does_not_fit(tmp_path: Path, small_fs: Callable[..., Path]) -> None:
    home = small_fs("home", "4m")
    index = seed_index(home)
    source = tmp_path / "local.box"
    source.write_bytes(box_bytes(6 * MIB))
    digest = hashlib.sha256(source.read_bytes()).hexdigest()

    proc = vmctl("box", "add", str(source), "--name", "t/local", home=home)

    assert_clear_error(proc, "no space left on device")
    assert box_store_entries(home) == []
    assert (home / "index.json").read_bytes() == index
    assert hashlib.sha256(source.read_bytes()).hexdigest() == digest  # the source is untouched


def test_build_when_the_cache_runs_out_of_room(tmp_path: Path, small_fs: Callable[..., Path]) -> None:
    """Plenty of bytes but only 40 inodes: the free-space check passes, then mmdebstrap's
    first files hit ENOSPC (within a second, before it needs the network)."""
    cache = small_fs("cache", "2g", inodes=40)
    out = tmp_path / "out"

    proc = vmctl("box", "build", "tiny", "--output", str(out), home=tmp_path / "home", cache=cache)

    assert_clear_error(proc, "the disk is full")
    assert "free some space" in proc.stderr
    left = sorted(p.name for p in (cache / "builds").iterdir())
    assert len(left) == 1 and left[0].endswith(".lock"), left  # only the build lock, no .tmp-* folder
    assert not out.exists() or list(out.iterdir()) == []
    assert not (tmp_path / "home").exists() or box_store_entries(tmp_path / "home") == []


def test_build_refuses_to_start_on_a_tiny_cache(tmp_path: Path, small_fs: Callable[..., Path]) -> None:
    cache = small_fs("cache", "8m")
    out = tmp_path / "out"

    proc = vmctl("box", "build", "tiny", "--output", str(out), home=tmp_path / "home", cache=cache)

    assert_clear_error(proc, "not enough free disk space")
    assert "VMCTL_CACHE" in proc.stderr
    assert [p for p in (cache / "builds").iterdir() if not p.name.endswith(".lock")] == []
    assert not out.exists() or list(out.iterdir()) == []


def test_build_output_folder_fills_up(tmp_path: Path, small_fs: Callable[..., Path],
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """A cached build published into a full output folder: no half box, no catalog."""
    from vmctl.boxes import build

    cache = tmp_path / "cache"
    monkeypatch.setenv("VMCTL_CACHE", str(cache))
    folder = build.find_recipe("tiny")
    recipe = build.parse_recipe(folder)
    key = build.cache_key(folder, build.kernel_identity(recipe, build.find_kernel(recipe)))
    cached = cache / "builds" / key
    cached.mkdir(parents=True)
    content = os.urandom(12 * MIB)
    (cached / recipe.box_filename).write_bytes(content)
    (cached / "build.json").write_text(json.dumps({"sha256": hashlib.sha256(content).hexdigest(), "size": len(content)}))
    out = small_fs("out", "8m")

    proc = vmctl("box", "build", "tiny", "--output", str(out), home=tmp_path / "home", cache=cache)

    assert_clear_error(proc, "the disk is full")
    assert list(out.iterdir()) == []  # no partial box, no temporary file, no catalog
    assert (cached / recipe.box_filename).stat().st_size == len(content)  # the cache is intact
