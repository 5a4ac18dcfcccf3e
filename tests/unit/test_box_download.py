"""Checksums, and resumable downloads against a local HTTP server."""

from __future__ import annotations

import hashlib
import json
import os
import socket
from pathlib import Path

import pytest

from vmctl.boxes import download
from vmctl.boxes.download import Checksum, hash_local, parse_checksum, partial_paths
from vmctl.boxes.download import download as fetch
from vmctl.errors import BoxError, ChecksumError, DownloadError

DATA = b"\x1f\x8b" + os.urandom(599_998)  # starts as a gzip file does (random bytes could start with "{" and look like a catalog)
TYPES = ["sha256", "sha512", "sha384", "sha1", "md5"]


@pytest.fixture(autouse=True)
def small_chunks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(download, "CHUNK", 64 * 1024)


def _sum(kind: str, data: bytes = DATA) -> Checksum:
    return Checksum(kind, hashlib.new(kind, data).hexdigest())


# --- checksums -----------------------------------------------------------------------------

@pytest.mark.parametrize("kind", TYPES)
def test_parse_checksum_infers_the_type_from_the_length(kind: str) -> None:
    hexdigest = hashlib.new(kind, b"x").hexdigest()
    assert parse_checksum(hexdigest.upper(), None) == Checksum(kind, hexdigest)
    assert parse_checksum(hexdigest, kind.upper()) == Checksum(kind, hexdigest)
    assert parse_checksum(f"{kind}:{hexdigest}", None) == Checksum(kind, hexdigest)


@pytest.mark.parametrize(
    ("value", "kind", "problem"),
    [
        ("xyz", None, "hexadecimal"),
        ("abc", None, "cannot tell the type"),
        ("a" * 64, "crc32", "unsupported checksum type"),
        ("a" * 64, "md5", "32"),
        (None, "sha256", "without --checksum"),
    ],
)
def test_parse_checksum_errors(value: str | None, kind: str | None, problem: str) -> None:
    with pytest.raises(BoxError, match=problem):
        parse_checksum(value, kind)


def test_no_checksum() -> None:
    assert parse_checksum(None, None) is None
    assert parse_checksum("  ", None) is None


@pytest.mark.parametrize("kind", TYPES)
def test_local_file_is_hashed_in_place_and_verified(tmp_path: Path, kind: str) -> None:
    path = tmp_path / "a.box"
    path.write_bytes(DATA)
    got = hash_local(path, expected=_sum(kind), description="reading")
    assert got.path == path  # not copied
    assert got.size == len(DATA)
    assert got.digests["sha256"] == hashlib.sha256(DATA).hexdigest()
    assert got.digests[kind] == hashlib.new(kind, DATA).hexdigest()


@pytest.mark.parametrize("kind", TYPES)
def test_local_checksum_mismatch_says_expected_and_found(tmp_path: Path, kind: str) -> None:
    path = tmp_path / "a.box"
    path.write_bytes(DATA)
    wrong = _sum(kind, b"something else")
    with pytest.raises(ChecksumError) as exc:
        hash_local(path, expected=wrong, description="reading")
    assert f"expected {kind} {wrong.hex}" in exc.value.message
    assert f"found {hashlib.new(kind, DATA).hexdigest()}" in exc.value.message


def test_local_file_missing(tmp_path: Path) -> None:
    with pytest.raises(BoxError, match="no such file"):
        hash_local(tmp_path / "nope.box", expected=None, description="reading")


# --- HTTP ----------------------------------------------------------------------------------

class Recorder:
    """A progress factory that records what it was told."""

    def __init__(self, interrupt_after: int | None = None) -> None:
        self.calls: list[tuple[str, int | None, int]] = []
        self.advanced = 0
        self.interrupt_after = interrupt_after

    def __call__(self, description: str, total: int | None, already: int) -> Recorder:
        self.calls.append((description, total, already))
        return self

    def __enter__(self) -> Recorder:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def advance(self, n: int) -> None:
        self.advanced += n
        if self.interrupt_after is not None and self.advanced >= self.interrupt_after:
            raise KeyboardInterrupt


def _cut_off(box_server, url: str, at: int) -> int:
    """Cut the connection after AT bytes; returns the size of the partial file kept (whole
    chunks received before the cut: at most AT)."""
    box_server.cut_after = at
    with pytest.raises(DownloadError) as exc:
        fetch(url, expected=_sum("sha256"), description="downloading")
    assert "cut off" in exc.value.message or "stopped" in exc.value.message
    part, sidecar = partial_paths(url)
    assert f"kept in {part}" in (exc.value.hint or "")
    kept = part.stat().st_size
    assert 0 < kept <= at
    assert part.read_bytes() == DATA[:kept]
    assert json.loads(sidecar.read_text())["validator"]["etag"] == '"v1"'
    return kept


def test_plain_download(box_home: Path, box_server) -> None:
    url = box_server.put("a.box", DATA)
    progress = Recorder()
    got = fetch(url, expected=_sum("sha512"), description="downloading", progress=progress)
    assert got.path.read_bytes() == DATA
    assert got.downloaded
    assert got.path.parent == box_home / "downloads"
    assert progress.calls == [("downloading", len(DATA), 0)]
    assert progress.advanced == len(DATA)
    assert box_server.requests[0]["headers"]["Accept-Encoding"] == "identity"
    assert "Range" not in box_server.requests[0]["headers"]
    got.cleanup()
    assert not any((box_home / "downloads").iterdir())


def test_cut_off_download_is_kept_then_resumed_with_range_and_if_range(box_home: Path, box_server) -> None:
    url = box_server.put("a.box", DATA)
    kept = _cut_off(box_server, url, 200_000)
    messages: list[str] = []
    progress = Recorder()
    got = fetch(url, expected=_sum("sha256"), description="downloading", progress=progress,
                notify=messages.append)
    last = box_server.requests[-1]
    assert last["headers"]["Range"] == f"bytes={kept}-"
    assert last["headers"]["If-Range"] == '"v1"'
    assert last["status"] == 206
    assert got.path.read_bytes() == DATA
    assert got.digests["sha256"] == hashlib.sha256(DATA).hexdigest()
    assert progress.calls == [("downloading", len(DATA), kept)]
    assert progress.advanced == len(DATA) - kept
    assert any("resuming" in m for m in messages)


def test_server_that_ignores_range_restarts_cleanly(box_home: Path, box_server) -> None:
    url = box_server.put("a.box", DATA)
    kept = _cut_off(box_server, url, 100_000)
    box_server.honour_range = False
    messages: list[str] = []
    got = fetch(url, expected=_sum("sha256"), description="downloading", notify=messages.append)
    last = box_server.requests[-1]
    assert last["headers"]["Range"] == f"bytes={kept}-"  # asked, but got the whole file
    assert last["status"] == 200
    assert got.path.read_bytes() == DATA
    assert any("starting over" in m for m in messages)


def test_changed_validator_restarts_cleanly(box_home: Path, box_server) -> None:
    url = box_server.put("a.box", DATA)
    _cut_off(box_server, url, 300_000)
    new = os.urandom(400_000)
    box_server.put("a.box", new, etag='"v2"')
    got = fetch(url, expected=_sum("sha256", new), description="downloading")
    last = box_server.requests[-1]
    assert last["headers"]["If-Range"] == '"v1"'
    assert last["status"] == 200
    assert got.path.read_bytes() == new
    _, sidecar = partial_paths(url)
    assert json.loads(sidecar.read_text())["validator"]["etag"] == '"v2"'


def test_last_modified_is_the_validator_without_a_strong_etag(box_home: Path, box_server) -> None:
    lm = "Wed, 21 Oct 2015 07:28:00 GMT"
    url = box_server.put("a.box", DATA, etag='W/"weak"', last_modified=lm)
    box_server.cut_after = 200_000
    with pytest.raises(DownloadError):
        fetch(url, expected=None, description="downloading")
    got = fetch(url, expected=_sum("sha256"), description="downloading")
    assert box_server.requests[-1]["headers"]["If-Range"] == lm
    assert box_server.requests[-1]["status"] == 206
    assert got.path.read_bytes() == DATA


def test_no_validator_means_no_resume(box_home: Path, box_server) -> None:
    url = box_server.put("a.box", DATA, etag=None)
    box_server.cut_after = 200_000
    with pytest.raises(DownloadError):
        fetch(url, expected=None, description="downloading")
    assert partial_paths(url)[0].stat().st_size > 0
    got = fetch(url, expected=_sum("sha256"), description="downloading")
    assert "Range" not in box_server.requests[-1]["headers"]
    assert got.path.read_bytes() == DATA


def test_ctrl_c_keeps_the_partial_file_and_the_next_run_resumes(box_home: Path, box_server) -> None:
    url = box_server.put("a.box", DATA)
    with pytest.raises(KeyboardInterrupt):
        fetch(url, expected=_sum("sha256"), description="downloading", progress=Recorder(interrupt_after=128 * 1024))
    part, _ = partial_paths(url)
    kept = part.stat().st_size
    assert 0 < kept < len(DATA)
    got = fetch(url, expected=_sum("sha256"), description="downloading")
    assert box_server.requests[-1]["headers"]["Range"] == f"bytes={kept}-"
    assert got.path.read_bytes() == DATA


def test_complete_partial_answered_416_is_verified_without_downloading(box_home: Path, box_server) -> None:
    url = box_server.put("a.box", DATA)
    part, sidecar = partial_paths(url)
    part.parent.mkdir(parents=True)
    part.write_bytes(DATA)
    sidecar.write_text(json.dumps({"url": url, "validator": {"etag": '"v1"'}}))
    got = fetch(url, expected=_sum("sha256"), description="downloading")
    assert box_server.statuses() == [416]
    assert got.path.read_bytes() == DATA


def test_partial_longer_than_the_file_restarts(box_home: Path, box_server) -> None:
    url = box_server.put("a.box", DATA)
    part, sidecar = partial_paths(url)
    part.parent.mkdir(parents=True)
    part.write_bytes(DATA + b"junk")
    sidecar.write_text(json.dumps({"url": url, "validator": {"etag": '"v1"'}}))
    got = fetch(url, expected=_sum("sha256"), description="downloading")
    assert box_server.statuses() == [416, 200]
    assert got.path.read_bytes() == DATA


def test_http_checksum_mismatch_discards_the_download(box_home: Path, box_server) -> None:
    url = box_server.put("a.box", DATA)
    wrong = _sum("sha1", b"other")
    with pytest.raises(ChecksumError) as exc:
        fetch(url, expected=wrong, description="downloading")
    assert f"expected sha1 {wrong.hex}" in exc.value.message
    assert f"found {hashlib.sha1(DATA).hexdigest()}" in exc.value.message
    part, sidecar = partial_paths(url)
    assert not part.exists() and not sidecar.exists()


def test_http_404(box_home: Path, box_server) -> None:
    with pytest.raises(DownloadError, match=r"not found: .*missing.box \(HTTP 404\)"):
        fetch(box_server.url("missing.box"), expected=None, description="downloading")


def test_connection_refused(box_home: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(DownloadError) as exc:
        fetch(f"http://127.0.0.1:{port}/a.box", expected=None, description="downloading")
    assert f"could not connect to 127.0.0.1:{port}" in exc.value.message
    assert exc.value.hint


def test_read_timeout_keeps_the_partial(box_home: Path, box_server) -> None:
    url = box_server.put("a.box", DATA)
    box_server.stall = 1.0
    with pytest.raises(DownloadError) as exc:
        fetch(url, expected=None, description="downloading", timeout=(2.0, 0.2))
    assert "read timeout" in exc.value.message


def test_tls_handshake_errors_are_translated(box_home: Path, box_server) -> None:
    # An https URL against a plain-HTTP server fails the TLS handshake.
    url = f"https://127.0.0.1:{box_server.port}/a.box"
    with pytest.raises(DownloadError) as exc:
        fetch(url, expected=None, description="downloading", timeout=(2.0, 2.0))
    assert "TLS handshake with 127.0.0.1" in exc.value.message


def test_probe_tells_a_catalog_from_a_box(box_home: Path, box_server) -> None:
    cat = box_server.put("catalog", b'{"name": "x/y", "versions": []}', content_type="text/plain")
    box = box_server.put("thebox", DATA)
    assert download.probe_catalog(cat) == b'{"name": "x/y", "versions": []}'
    assert download.probe_catalog(box) is None


def test_https_is_verified_and_requests_ca_bundle_is_honoured(
    box_home: Path, box_server, box_https_server, monkeypatch: pytest.MonkeyPatch
) -> None:
    base, cert = box_https_server
    box_server.put("a.box", DATA)
    with pytest.raises(DownloadError) as exc:
        fetch(f"{base}/a.box", expected=None, description="downloading", timeout=(5.0, 5.0))
    assert "could not verify the TLS certificate of 127.0.0.1" in exc.value.message
    assert "REQUESTS_CA_BUNDLE" in (exc.value.hint or "")
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(cert))
    got = fetch(f"{base}/a.box", expected=_sum("sha256"), description="downloading")
    assert got.path.read_bytes() == DATA
