"""Lint runs as a test, so CI enforces it without a separate step."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_ruff_is_clean() -> None:
    ruff = shutil.which("ruff") or str(Path(sys.executable).parent / "ruff")
    proc = subprocess.run([ruff, "check", "vmctl", "tests", "bench"], cwd=ROOT,
                          capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_imports_flow_one_way() -> None:
    """Lower layers never import the CLI, the project or the machine orchestration."""
    lower = ["vmctl/boxes", "vmctl/vagrantfile", "vmctl/hypervisor.py", "vmctl/domain",
             "vmctl/ssh.py", "vmctl/guest.py", "vmctl/provision", "vmctl/cloudinit.py", "vmctl/network.py",
             "vmctl/state.py", "vmctl/paths.py", "vmctl/run.py", "vmctl/errors.py",
             "vmctl/transfer.py", "vmctl/environment.py"]
    offenders = []
    for entry in lower:
        path = ROOT / entry
        files = sorted(path.rglob("*.py")) if path.is_dir() else [path]
        for f in files:
            text = f.read_text()
            for banned in ("vmctl.cli", "vmctl.project", "vmctl.machine ", "from vmctl import machine"):
                if banned in text:
                    offenders.append(f"{f.relative_to(ROOT)} imports {banned.strip()}")
    assert offenders == []
