"""HTTPS box downloads through the real `vmctl box add` command (a subprocess), against a
local HTTPS server whose certificates are made here with `cryptography`: a self-signed,
a wrong-name and an expired certificate are refused with a clear error (exit 1, no
traceback, nothing installed); REQUESTS_CA_BUNDLE naming the right certificate is honoured.
(test_box_download.py checks the same at library level; this is the command a user runs.)"""

from __future__ import annotations

import datetime as dt
import hashlib
import ipaddress
import json
import os
import ssl
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from http.server import ThreadingHTTPServer
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

VMCTL = [sys.executable, "-m", "vmctl"]


class BoxQuietServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: object, client_address: object) -> None:
        pass  # the refused handshakes are the point of these tests


def make_certificate(folder: Path, name: str, *, san: x509.GeneralName, expired: bool = False) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "vmctl test server")])
    now = dt.datetime.now(dt.UTC)
    start, end = (now - dt.timedelta(days=10), now - dt.timedelta(days=1)) if expired else (now - dt.timedelta(hours=1), now + dt.timedelta(days=1))
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject).issuer_name(subject).public_key(key.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(start).not_valid_after(end)
        .add_extension(x509.SubjectAlternativeName([san]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = folder / f"{name}.pem", folder / f"{name}-key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    key_path.chmod(0o600)
    return cert_path, key_path


@pytest.fixture
def https_server(box_server, tmp_path: Path) -> Iterator[Callable[..., tuple[str, Path]]]:
    """serve(name, san=..., expired=False) -> (base URL, certificate): box_server's files over
    HTTPS with a fresh self-signed certificate."""
    servers: list[tuple[BoxQuietServer, threading.Thread]] = []

    def serve(name: str, *, san: x509.GeneralName | None = None, expired: bool = False) -> tuple[str, Path]:
        cert, key = make_certificate(tmp_path, name, san=san or x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                                     expired=expired)
        httpd = BoxQuietServer(("127.0.0.1", 0), box_server.handler)
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(cert, key)
        httpd.socket = ctx.wrap_socket(httpd.socket, server_side=True)
        thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        thread.start()
        servers.append((httpd, thread))
        return f"https://127.0.0.1:{httpd.server_address[1]}", cert

    yield serve
    for httpd, thread in servers:
        httpd.shutdown()
        httpd.server_close()
        thread.join(5)


def vmctl(*args: str, home: Path, ca_bundle: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("VMCTL_") and k not in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "SSL_CERT_FILE")}
    env.update(VMCTL_HOME=str(home), NO_COLOR="1", COLUMNS="200")
    if ca_bundle is not None:
        env["REQUESTS_CA_BUNDLE"] = str(ca_bundle)
    return subprocess.run([*VMCTL, *args], env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                          timeout=120, check=False)


def assert_refused(proc: subprocess.CompletedProcess[str], home: Path, host: str) -> None:
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    assert f"error: could not verify the TLS certificate of {host}" in proc.stderr, proc.stderr
    assert "hint: if the server uses a private certificate authority, point REQUESTS_CA_BUNDLE" in proc.stderr
    boxes = home / "boxes"
    assert not boxes.exists() or list(boxes.iterdir()) == []
    downloads = home / "downloads"
    assert not downloads.exists() or list(downloads.glob("*.part")) == []  # not a byte was kept


def test_self_signed_certificate_is_refused_until_trusted(
    box_server, https_server, box_make: Callable[..., Path], tmp_path: Path
) -> None:
    box_server.put("x.box", box_make().read_bytes())
    base, cert = https_server("self-signed")
    home = tmp_path / "home"
    host = base.removeprefix("https://")

    proc = vmctl("box", "add", f"{base}/x.box", "--name", "t/x", home=home)
    assert_refused(proc, home, host)
    assert box_server.requests == []  # TLS failed before any request was sent

    proc = vmctl("box", "add", f"{base}/x.box", "--name", "t/x", home=home, ca_bundle=cert)
    assert proc.returncode == 0, proc.stderr
    listed = json.loads(vmctl("box", "list", "--json", home=home).stdout)
    assert [b["name"] for b in listed["boxes"]] == ["t/x"]


@pytest.mark.parametrize(
    ("case", "san", "expired"),
    [
        ("wrong-name", x509.DNSName("box.example.invalid"), False),
        ("expired", None, True),
    ],
)
def test_trusted_but_wrong_certificates_are_still_refused(
    box_server, https_server, box_make: Callable[..., Path], tmp_path: Path,
    case: str, san: x509.GeneralName | None, expired: bool,
) -> None:
    """Trusting a certificate (REQUESTS_CA_BUNDLE) does not excuse a name or a date."""
    box_server.put("x.box", box_make().read_bytes())
    base, cert = https_server(case, san=san, expired=expired)
    home = tmp_path / "home"
    proc = vmctl("box", "add", f"{base}/x.box", "--name", "t/x", home=home, ca_bundle=cert)
    assert_refused(proc, home, base.removeprefix("https://"))
    assert box_server.requests == []


def test_catalog_over_https_is_verified_too(
    box_server, https_server, box_make: Callable[..., Path], tmp_path: Path
) -> None:
    data = box_make().read_bytes()
    base, cert = https_server("catalog")
    box_server.put("x.box", data)
    catalog = {"name": "t/cat", "versions": [{"version": "1.0.0", "providers": [
        {"name": "libvirt", "url": f"{base}/x.box", "checksum_type": "sha256",
         "checksum": hashlib.sha256(data).hexdigest()}]}]}
    box_server.put("cat.json", json.dumps(catalog).encode(), content_type="application/json")
    home = tmp_path / "home"

    proc = vmctl("box", "add", f"{base}/cat.json", home=home)
    assert_refused(proc, home, base.removeprefix("https://"))

    proc = vmctl("box", "add", f"{base}/cat.json", home=home, ca_bundle=cert)
    assert proc.returncode == 0, proc.stderr
    assert "sha256 checksum verified" in proc.stderr
