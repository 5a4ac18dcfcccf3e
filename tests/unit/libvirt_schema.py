"""Checking domain XML against libvirt's own RelaxNG schema with `virt-xml-validate`
(libvirt-clients, with xmllint from libxml2-utils; scripts/bootstrap installs both)."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path


def validate_domain(xml: str) -> None:
    """Assert that libvirt's schema accepts XML (a <domain>)."""
    validate(xml, "domain")


def validate(xml: str, schema: str) -> None:
    """Assert that libvirt's schema SCHEMA (domain, storagepool, storagevol ...) accepts XML."""
    tool = shutil.which("virt-xml-validate")
    assert tool is not None, "virt-xml-validate is missing: run scripts/bootstrap (libvirt-clients, libxml2-utils)"
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"{schema}.xml"
        path.write_text(xml)
        proc = subprocess.run([tool, str(path), schema], capture_output=True, text=True, check=False)
    assert proc.returncode == 0, f"libvirt's schema refuses the {schema}:\n{proc.stderr}\n{xml}"
