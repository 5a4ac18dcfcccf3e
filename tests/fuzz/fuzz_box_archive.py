#!/usr/bin/env python3
"""Coverage-guided fuzzing of the box unpacker with atheris (libFuzzer for Python).

    .venv/bin/pip install atheris
    .venv/bin/python tests/fuzz/fuzz_box_archive.py [CORPUS_DIR] [-max_total_time=60] [-timeout=5]

Each input is the bytes of a .box file. It is unpacked into a staging folder, and its
metadata.json checked, exactly as `vmctl box add` does before `qemu-img info`. A run must end
in a result or a VmctlError: any other exception is a crash libFuzzer reports (and saves as
crash-*); an input that takes longer than -timeout seconds is a hang. Anything written beside
the staging folder (an escape) is a crash too. Without a corpus folder, one is made with a
valid box and a few archives of each kind (gzip, bzip2, xz, sparse) to start from.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import sys
import tarfile
import tempfile
from pathlib import Path

import atheris

# VMCTL_ATHERIS_INSTRUMENT=vmctl instruments only vmctl (starts in a second; what the pytest
# smoke run uses); the default instruments everything loaded, tarfile and the decompressors
# included (about 10 s to start, much better coverage).
if os.environ.get("VMCTL_ATHERIS_INSTRUMENT") == "vmctl":
    with atheris.instrument_imports(include=["vmctl"]):
        from vmctl.boxes import archive
        from vmctl.errors import VmctlError
else:
    from vmctl.boxes import archive
    from vmctl.errors import VmctlError

# libFuzzer ends the process with exit(), so nothing runs after it: the scratch folder is
# VMCTL_ATHERIS_WORK when given (the pytest run gives its tmp_path), else a new one in /tmp.
WORK = Path(os.environ.get("VMCTL_ATHERIS_WORK") or tempfile.mkdtemp(prefix="vmctl-atheris-"))
OUTSIDE = WORK / "outside"
OUTSIDE.mkdir(parents=True, exist_ok=True)


def seed_corpus(folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    members = {
        "metadata.json": json.dumps({"provider": "libvirt", "format": "qcow2", "virtual_size": 1}).encode(),
        "box.img": b"QFI\xfb" + b"\0" * 508,
        "Vagrantfile": b'Vagrant.configure("2") { |c| c.vm.box = "x" }\n',
    }
    for mode, suffix in (("w", "tar"), ("w:gz", "tar.gz"), ("w:bz2", "tar.bz2"), ("w:xz", "tar.xz")):
        for fmt in (tarfile.GNU_FORMAT, tarfile.PAX_FORMAT):
            buf = io.BytesIO()
            with tarfile.open(fileobj=buf, mode=mode, format=fmt) as tar:
                for name, data in members.items():
                    info = tarfile.TarInfo("./" + name)
                    info.size = len(data)
                    tar.addfile(info, io.BytesIO(data))
            (folder / f"box-{fmt}.{suffix}").write_bytes(buf.getvalue())


def test_one_input(data: bytes) -> None:
    stage = WORK / "stage"
    box = WORK / "fuzz.box"
    box.write_bytes(data)
    try:
        archive.unpack(box, stage / "libvirt", label="fuzz.box")
        archive.check_metadata(stage / "libvirt", "fuzz.box")
    except VmctlError:
        pass
    finally:
        escaped = sorted(os.listdir(OUTSIDE))
        shutil.rmtree(stage, ignore_errors=True)
    if escaped:
        raise AssertionError(f"an archive wrote outside its staging folder: {escaped}")
    for leftover in sorted(os.listdir(WORK)):
        if leftover not in ("fuzz.box", "outside"):
            raise AssertionError(f"an archive left {leftover} beside its staging folder")


def main() -> None:
    args = sys.argv[1:]
    folders = [a for a in args if not a.startswith("-")]
    if not folders:
        corpus = Path(tempfile.mkdtemp(prefix="corpus-", dir=WORK.parent if "VMCTL_ATHERIS_WORK" in os.environ else None))
        seed_corpus(corpus)
        args.append(str(corpus))
    if os.environ.get("VMCTL_ATHERIS_INSTRUMENT") != "vmctl":
        atheris.instrument_all()
    print(f"fuzz_box_archive: scratch folder {WORK}", file=sys.stderr)
    atheris.Setup([sys.argv[0], *args], test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
