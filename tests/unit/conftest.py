"""Shared fixtures. Box fixtures are named box_*: an isolated VMCTL_HOME, a factory of box
archives made in the test, and a local threaded HTTP server that can honour or ignore Range."""

from __future__ import annotations

import hashlib
import io
import json
import subprocess
import tarfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

BOX_METADATA = {"provider": "libvirt", "format": "qcow2", "virtual_size": 1}
BOX_VAGRANTFILE = 'Vagrant.configure("2") do |config|\n  config.vm.provider :libvirt do |lv|\n    lv.kernel = "vmlinuz"\n  end\nend\n'


@pytest.fixture
def box_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An isolated VMCTL_HOME for box tests."""
    home = tmp_path / "vmctl-home"
    monkeypatch.setenv("VMCTL_HOME", str(home))
    monkeypatch.delenv("VMCTL_CACHE", raising=False)
    return home


@pytest.fixture(scope="session")
def box_qcow2(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    """The bytes of a small, valid qcow2 image (made once per session)."""
    path = tmp_path_factory.mktemp("box-image") / "box.img"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(path), "16M"], check=True)
    return path.read_bytes()


def box_tar_bytes(
    members: list[tuple[str, bytes]] | dict[str, bytes],
    *,
    compression: str = "gz",
    extra: Callable[[tarfile.TarFile], None] | None = None,
) -> bytes:
    """A tar archive (compression "", "gz", "bz2", "xz") of regular-file MEMBERS."""
    buf = io.BytesIO()
    items = members.items() if isinstance(members, dict) else members
    with tarfile.open(fileobj=buf, mode=f"w:{compression}" if compression else "w") as tar:
        for name, data in items:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = 0o644
            info.mtime = int(time.time())
            tar.addfile(info, io.BytesIO(data))
        if extra is not None:
            extra(tar)
    return buf.getvalue()


@pytest.fixture
def box_make(tmp_path: Path, box_qcow2: bytes) -> Callable[..., Path]:
    """make(name="test.box", metadata=..., image=..., vagrantfile=..., files=..., compression=...,
    extra=callable(tar)) -> path of a .box written under tmp_path."""

    def make(
        name: str = "test.box",
        *,
        metadata: dict | bytes | None = None,
        image: bytes | None = None,
        vagrantfile: str | None = BOX_VAGRANTFILE,
        files: dict[str, bytes] | None = None,
        compression: str = "gz",
        extra: Callable[[tarfile.TarFile], None] | None = None,
        prefix: str = "./",
        omit: tuple[str, ...] = (),
    ) -> Path:
        meta = metadata if metadata is not None else BOX_METADATA
        members: dict[str, bytes] = {
            "metadata.json": meta if isinstance(meta, bytes) else json.dumps(meta).encode(),
            "box.img": image if image is not None else box_qcow2,
        }
        if vagrantfile is not None:
            members["Vagrantfile"] = vagrantfile.encode()
        members.update(files or {})
        for key in omit:
            members.pop(key, None)
        data = box_tar_bytes({prefix + k: v for k, v in members.items()}, compression=compression, extra=extra)
        path = tmp_path / name
        path.write_bytes(data)
        return path

    return make


def box_catalog(name: str, versions: dict[str, str | None], *, data: dict[str, bytes] | None = None,
                provider: str = "libvirt") -> dict:
    """A Vagrant catalog: VERSIONS maps a version to its box URL (None: no provider)."""
    entries = []
    for version, url in versions.items():
        providers = []
        if url is not None:
            p = {"name": provider, "url": url}
            if data and url in data:
                p.update(checksum_type="sha256", checksum=hashlib.sha256(data[url]).hexdigest())
            providers.append(p)
        entries.append({"version": version, "providers": providers})
    return {"name": name, "description": "test box", "versions": entries}


# --- a local HTTP server ------------------------------------------------------------------

@dataclass
class BoxServerFile:
    data: bytes
    etag: str | None = '"v1"'
    last_modified: str | None = None
    content_type: str = "application/octet-stream"


@dataclass
class BoxServer:
    """Serves FILES on 127.0.0.1. honour_range: answer Range (with If-Range) by 206/416;
    cut_after: once, send only that many body bytes then drop the connection;
    stall: sleep that long before sending the body."""

    files: dict[str, BoxServerFile] = field(default_factory=dict)
    honour_range: bool = True
    cut_after: int | None = None
    stall: float = 0.0
    requests: list[dict] = field(default_factory=list)
    port: int = 0
    handler: type[BaseHTTPRequestHandler] | None = None  # to serve the same files elsewhere (TLS)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}/{path.lstrip('/')}"

    def put(self, path: str, data: bytes, **kwargs: object) -> str:
        self.files[path.lstrip("/")] = BoxServerFile(data, **kwargs)  # type: ignore[arg-type]
        return self.url(path)

    def statuses(self) -> list[int]:
        return [r["status"] for r in self.requests]


def _make_handler(server: BoxServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: object) -> None:  # noqa: A002
            pass

        def do_GET(self) -> None:  # noqa: N802
            record = {"path": self.path, "headers": dict(self.headers.items()), "status": 0}
            server.requests.append(record)
            f = server.files.get(self.path.lstrip("/").split("?", 1)[0])
            if f is None:
                record["status"] = 404
                self.send_response(404)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            data = f.data
            start = 0
            status = 200
            rng = self.headers.get("Range")
            if_range = self.headers.get("If-Range")
            if server.honour_range and rng and rng.startswith("bytes=") and rng.endswith("-"):
                validator_ok = if_range is None or if_range in (f.etag, f.last_modified)
                if validator_ok:
                    start = int(rng[len("bytes="):-1])
                    status = 206
                    if start >= len(data):
                        record["status"] = 416
                        self.send_response(416)
                        self.send_header("Content-Range", f"bytes */{len(data)}")
                        self.send_header("Content-Length", "0")
                        self.end_headers()
                        return
            body = data[start:]
            record["status"] = status
            self.send_response(status)
            self.send_header("Content-Type", f.content_type)
            self.send_header("Content-Length", str(len(body)))
            if f.etag:
                self.send_header("ETag", f.etag)
            if f.last_modified:
                self.send_header("Last-Modified", f.last_modified)
            self.send_header("Accept-Ranges", "bytes" if server.honour_range else "none")
            if status == 206:
                self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
            self.end_headers()
            if server.stall:
                time.sleep(server.stall)
            if server.cut_after is not None:
                cut, server.cut_after = server.cut_after, None
                self.wfile.write(body[:cut])
                self.wfile.flush()
                self.close_connection = True
                return
            self.wfile.write(body)

    return Handler


class BoxQuietServer(ThreadingHTTPServer):
    """A threaded HTTP server that does not print clients hanging up (cut-off tests do)."""

    daemon_threads = True

    def handle_error(self, request: object, client_address: object) -> None:
        pass


@pytest.fixture
def box_server() -> Iterator[BoxServer]:
    """A threaded HTTP server on 127.0.0.1 (ephemeral port) for download tests."""
    state = BoxServer()
    state.handler = _make_handler(state)
    httpd = BoxQuietServer(("127.0.0.1", 0), state.handler)
    state.port = httpd.server_address[1]
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(5)


@pytest.fixture
def box_https_server(tmp_path: Path, box_server: BoxServer) -> Iterator[tuple[str, Path]]:
    """(base URL, certificate): box_server's files over HTTPS, self-signed for 127.0.0.1."""
    import ssl

    cert, key = tmp_path / "box-cert.pem", tmp_path / "box-key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )
    assert box_server.handler is not None
    httpd = BoxQuietServer(("127.0.0.1", 0), box_server.handler)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    httpd.socket = ctx.wrap_socket(httpd.socket, server_side=True)
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"https://127.0.0.1:{httpd.server_address[1]}", cert
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(5)


def box_http_date(ts: float) -> str:
    return formatdate(ts, usegmt=True)


@pytest.fixture
def box_tar() -> Callable[..., bytes]:
    """box_tar_bytes as a fixture (members, compression=..., extra=...)."""
    return box_tar_bytes


@pytest.fixture
def box_catalog_for() -> Callable[..., dict]:
    """box_catalog as a fixture (name, {version: url}, data={url: bytes})."""
    return box_catalog
