"""Boxes end to end: the tiny box built from its recipe, served over HTTP with its catalog,
and added by catalog URL into a fresh VMCTL_HOME."""

from __future__ import annotations

import functools
import json
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from conftest import Vmctl


def test_add_tiny_box_by_catalog_url(tiny_box: Path, tmp_path: Path) -> None:
    catalog = json.loads((tiny_box / "vmctl-tiny.json").read_text())
    assert catalog["name"] == "vmctl/tiny"
    [version] = catalog["versions"]
    [provider] = version["providers"]
    assert provider["name"] == "libvirt" and provider["checksum_type"] == "sha256"

    handler = functools.partial(SimpleHTTPRequestHandler, directory=str(tiny_box))
    handler.log_message = lambda *a, **k: None  # type: ignore[method-assign]
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/vmctl-tiny.json"
        fresh = Vmctl(tmp_path / "home")
        added = fresh("box", "add", url, "--box-version", f">= {version['version']}")
        assert "vmctl/tiny" in added.stdout + added.stderr
        boxes = fresh("box", "list", "--json").json()["boxes"]
        assert [(b["name"], b["version"], b["provider"]) for b in boxes] == [
            ("vmctl/tiny", version["version"], "libvirt")
        ]
        assert boxes[0]["size_bytes"] > 1_000_000
        # Adding the same version again is refused with a hint, and changes nothing.
        again = fresh("box", "add", url, check=False)
        assert again.returncode == 1 and "--force" in again.stderr
    finally:
        server.shutdown()


def test_rebuild_is_cached(vmctl: Vmctl, tiny_box: Path, tmp_path: Path) -> None:
    import time

    start = time.monotonic()
    r = vmctl("box", "build", "tiny", "--output", str(tmp_path))
    assert time.monotonic() - start < 10
    assert "cached" in r.stderr + r.stdout
    assert (tmp_path / "vmctl-tiny.json").exists()
