"""Getting box files: local files hashed in place, HTTP(S) downloads streamed, hashed while they
stream, verified, and resumable.

A download in progress lives in ``downloads_dir()/KEY.part`` (KEY is a hash of the URL) with a
sidecar ``KEY.json`` recording the URL and the validator the server gave (a strong ``ETag``,
else ``Last-Modified``). When a download is cut off (network error, Ctrl-C, the process killed)
the partial file stays; the next download of the same URL asks for the rest with ``Range`` and
``If-Range``:

    206 Partial Content   the rest is appended (the partial file is hashed first)
    200 OK                the server ignores Range, or the file changed: start again cleanly
    416 Not Satisfiable   the partial file is already complete (when its size is the total),
                          otherwise start again

A checksum mismatch deletes the partial file (resuming wrong bytes cannot help) and installs
nothing. HTTPS certificates are verified (``REQUESTS_CA_BUNDLE`` is honoured); connecting and
reading have timeouts. requests is imported lazily.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import stat
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import unquote, urlsplit

from vmctl import paths
from vmctl.errors import BoxError, ChecksumError, DownloadError

if TYPE_CHECKING:
    import requests

CHECKSUM_TYPES = ("sha256", "sha512", "sha384", "sha1", "md5")
_HEX_LENGTHS = {32: "md5", 40: "sha1", 64: "sha256", 96: "sha384", 128: "sha512"}
CHUNK = 1024 * 1024
CONNECT_TIMEOUT = 15.0
READ_TIMEOUT = 60.0
CATALOG_LIMIT = 16 * 1024 * 1024


class ProgressLike(Protocol):
    def __enter__(self) -> ProgressLike: ...
    def __exit__(self, *exc: object) -> Any: ...
    def advance(self, n: int) -> None: ...


ProgressFactory = Callable[[str, int | None, int], ProgressLike]
Notify = Callable[[str], None]
Consumer = Callable[[bytes], None]  # takes the bytes of a box file in order (an unpacker)


class _NoProgress:
    def __enter__(self) -> _NoProgress:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def advance(self, n: int) -> None:
        pass


def _progress(factory: ProgressFactory | None, description: str, total: int | None, already: int) -> ProgressLike:
    return factory(description, total, already) if factory is not None else _NoProgress()


# --- checksums -----------------------------------------------------------------------------

@dataclass(frozen=True)
class Checksum:
    type: str
    hex: str

    def __str__(self) -> str:
        return f"{self.type}:{self.hex}"


def parse_checksum(value: str | None, checksum_type: str | None) -> Checksum | None:
    """A checksum from the command line or a catalog; the type is inferred from the length
    when not given. BoxError quoting the bad value otherwise."""
    if value is None or not value.strip():
        if checksum_type:
            raise BoxError(
                f"--checksum-type {checksum_type} was given without --checksum",
                hint="give both, e.g. --checksum HEX --checksum-type sha256",
            )
        return None
    text = value.strip().lower()
    if ":" in text and checksum_type is None:  # "sha256:abcd..."
        checksum_type, text = text.split(":", 1)
    if not re.fullmatch(r"[0-9a-f]+", text):
        raise BoxError(f"invalid checksum {value!r}: expected hexadecimal digits")
    if checksum_type is None:
        inferred = _HEX_LENGTHS.get(len(text))
        if inferred is None:
            raise BoxError(
                f"cannot tell the type of checksum {value!r} ({len(text)} hex digits)",
                hint="say which it is with --checksum-type sha256|sha512|sha384|sha1|md5",
            )
        checksum_type = inferred
    ctype = checksum_type.strip().lower()
    if ctype not in CHECKSUM_TYPES:
        raise BoxError(
            f"unsupported checksum type {checksum_type!r}",
            hint=f"use one of {', '.join(CHECKSUM_TYPES)}",
        )
    expected_len = {v: k for k, v in _HEX_LENGTHS.items()}[ctype]
    if len(text) != expected_len:
        raise BoxError(
            f"invalid {ctype} checksum {value!r}: {len(text)} hex digits, expected {expected_len}"
        )
    return Checksum(ctype, text)


class Hasher:
    """sha256 always (it is recorded with the box), plus the expected checksum's type."""

    def __init__(self, expected: Checksum | None) -> None:
        self.expected = expected
        self._hashes = {"sha256": hashlib.sha256()}
        if expected is not None and expected.type not in self._hashes:
            self._hashes[expected.type] = hashlib.new(expected.type)

    def update(self, data: bytes) -> None:
        for h in self._hashes.values():
            h.update(data)

    def digests(self) -> dict[str, str]:
        return {name: h.hexdigest() for name, h in self._hashes.items()}

    def verify(self, what: str) -> None:
        """Raise ChecksumError naming WHAT when the expected checksum does not match."""
        if self.expected is None:
            return
        found = self._hashes[self.expected.type].hexdigest()
        if found != self.expected.hex:
            raise ChecksumError(
                f"checksum mismatch for {what}: expected {self.expected.type} {self.expected.hex}, "
                f"found {found}",
                hint="the file is corrupt or not the one the catalog describes; nothing was installed",
            )


# --- sources -------------------------------------------------------------------------------

def is_url(source: str) -> bool:
    return urlsplit(source).scheme.lower() in ("http", "https", "file")


def is_http(source: str) -> bool:
    return urlsplit(source).scheme.lower() in ("http", "https")


def file_url_path(url: str) -> Path:
    """The local path of a file:// URL."""
    parts = urlsplit(url)
    if parts.netloc not in ("", "localhost"):
        raise BoxError(f"cannot read {url}: file URLs must name a local file (no host)")
    from urllib.request import url2pathname  # lazy: urllib.request costs ~25 ms to import

    return Path(url2pathname(unquote(parts.path)))


@dataclass
class Fetched:
    """A complete, verified box file. `cleanup()` drops a downloaded copy once installed."""

    path: Path
    size: int
    digests: dict[str, str]
    downloaded: bool = False
    _cleanup: list[Path] = field(default_factory=list)

    def cleanup(self) -> None:
        for p in self._cleanup:
            with contextlib.suppress(FileNotFoundError):
                p.unlink()


def hash_local(
    path: Path,
    *,
    expected: Checksum | None,
    description: str,
    progress: ProgressFactory | None = None,
    consume: Consumer | None = None,
) -> Fetched:
    """Hash (and verify) the local file PATH in place: no copy is made. CONSUME, if given,
    is handed every byte of the file, in order, as it is read."""
    try:
        st = path.stat()
        if stat.S_ISDIR(st.st_mode):
            raise IsADirectoryError
        if not stat.S_ISREG(st.st_mode):  # /dev/zero or a FIFO would never end
            raise BoxError(f"{path} is not a regular file, so it is not a box file")
        size = st.st_size
        hasher = Hasher(expected)
        with path.open("rb") as f, _progress(progress, description, size, 0) as bar:
            while chunk := f.read(CHUNK):
                hasher.update(chunk)
                if consume is not None:
                    consume(chunk)
                bar.advance(len(chunk))
    except FileNotFoundError as exc:
        raise BoxError(f"no such file: {path}") from exc
    except IsADirectoryError as exc:
        raise BoxError(f"{path} is a folder, not a box file") from exc
    except OSError as exc:
        raise BoxError(f"could not read {path}: {exc.strerror}") from exc
    hasher.verify(str(path))
    return Fetched(path=path, size=size, digests=hasher.digests())


# --- HTTP ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class FetchOptions:
    """How to reach a server: Vagrant's box_download_* settings and the registry token.

    ca_cert: a CA bundle (file or folder) to trust besides the system's
    (config.vm.box_download_ca_cert); client_cert: a PEM certificate (and key) to present
    (box_download_client_cert); insecure: skip TLS verification (box_download_insecure,
    honoured with a loud warning by the caller); token: VAGRANT_CLOUD_TOKEN, sent as a bearer
    token to token_host (the registry's host) and to no other host.
    """

    ca_cert: str | None = None
    client_cert: str | None = None
    insecure: bool = False
    token: str | None = None
    token_host: str | None = None

    def headers_for(self, url: str) -> dict[str, str]:
        if self.token and self.token_host and urlsplit(url).netloc.lower() == self.token_host.lower():
            return {"Authorization": f"Bearer {self.token}"}
        return {}


NO_OPTIONS = FetchOptions()


def _session(options: FetchOptions = NO_OPTIONS) -> requests.Session:
    import requests

    from vmctl import __version__

    s = requests.Session()
    s.headers["User-Agent"] = f"vmctl/{__version__}"
    if options.insecure:
        s.verify = False
        import urllib3

        urllib3.disable_warnings(urllib3.exceptions.InsecureRequestWarning)
    elif options.ca_cert:
        s.verify = options.ca_cert
    if options.client_cert:
        s.cert = options.client_cert
    return s


def _host(url: str) -> str:
    return urlsplit(url).netloc or url


def translate_request_error(exc: Exception, url: str, *, partial: Path | None = None) -> DownloadError:
    """One place that maps requests' exceptions to DownloadError (most specific first)."""
    import requests

    host = _host(url)
    keep = (
        f"the partial download is kept in {partial}; run the same command again to resume"
        if partial is not None and partial.exists() and partial.stat().st_size > 0
        else "check the network and the URL, then run the command again"
    )
    if isinstance(exc, requests.exceptions.SSLError):
        if "CERTIFICATE_VERIFY_FAILED" in str(exc) or "certificate" in str(exc).lower():
            return DownloadError(
                f"could not verify the TLS certificate of {host} ({url})",
                hint="if the server uses a private certificate authority, point REQUESTS_CA_BUNDLE "
                "at its certificate",
            )
        return DownloadError(f"the TLS handshake with {host} failed ({url})",
                             hint="check that the server speaks HTTPS on that port")
    if isinstance(exc, requests.exceptions.ConnectTimeout):
        return DownloadError(f"timed out connecting to {host} ({url})", hint=keep)
    if isinstance(exc, requests.exceptions.ReadTimeout) or "Read timed out" in str(exc):
        return DownloadError(f"{host} stopped sending data (read timeout) while downloading {url}", hint=keep)
    if isinstance(exc, requests.exceptions.ChunkedEncodingError | requests.exceptions.ContentDecodingError):
        return DownloadError(f"the connection to {host} was cut off while downloading {url}", hint=keep)
    if isinstance(exc, requests.exceptions.InvalidURL | requests.exceptions.MissingSchema | requests.exceptions.InvalidSchema):
        return DownloadError(f"invalid URL {url!r}")
    if isinstance(exc, requests.exceptions.ConnectionError):
        reason = _root_reason(exc)
        return DownloadError(f"could not connect to {host} ({url}){': ' + reason if reason else ''}", hint=keep)
    return DownloadError(f"downloading {url} failed: {exc}", hint=keep)


def _root_reason(exc: BaseException) -> str:
    seen = exc
    for _ in range(10):  # requests -> urllib3 -> socket: a short chain
        nxt = getattr(seen, "reason", None) or seen.__context__
        if not isinstance(nxt, BaseException) or nxt is seen:
            break
        seen = nxt
    text = str(seen)
    if "Connection refused" in text:
        return "connection refused"
    if "Name or service not known" in text or "nodename nor servname" in text or "Temporary failure in name resolution" in text:
        return "the host name does not resolve"
    if "Network is unreachable" in text:
        return "network is unreachable"
    return ""


def _http_status_error(resp: requests.Response, url: str) -> DownloadError:
    if resp.status_code == 404:
        return DownloadError(f"not found: {url} (HTTP 404)", hint="check the URL")
    if resp.status_code in (401, 403):
        return DownloadError(
            f"access denied to {url} (HTTP {resp.status_code})",
            hint="vmctl downloads public boxes only; download it by hand and add the file",
        )
    return DownloadError(f"{url} answered HTTP {resp.status_code} {resp.reason or ''}".rstrip())


def fetch_small(url: str, *, limit: int = CATALOG_LIMIT, timeout: tuple[float, float] | None = None,
                options: FetchOptions = NO_OPTIONS, accept_json: bool = False) -> bytes:
    """The body of URL (a catalog), at most LIMIT bytes; DownloadError otherwise."""
    import requests

    headers = options.headers_for(url)
    if accept_json:
        headers["Accept"] = "application/json"
    try:
        with _session(options) as s, s.get(url, stream=True, headers=headers,
                                           timeout=timeout or (CONNECT_TIMEOUT, READ_TIMEOUT)) as resp:
            if resp.status_code != 200:
                raise _http_status_error(resp, url)
            return _read_limited(resp, url, limit)
    except requests.RequestException as exc:
        raise translate_request_error(exc, url) from exc


def _read_limited(resp: requests.Response, url: str, limit: int) -> bytes:
    data = bytearray()
    for chunk in resp.iter_content(64 * 1024):
        data += chunk
        if len(data) > limit:
            raise DownloadError(f"{url} is larger than {limit // (1024 * 1024)} MiB; it is not a box catalog")
    return bytes(data)


def probe_catalog(url: str, *, timeout: tuple[float, float] | None = None,
                  options: FetchOptions = NO_OPTIONS) -> bytes | None:
    """For an HTTP URL that does not say what it is: its body when it looks like JSON, else None."""
    import requests

    try:
        with _session(options) as s, s.get(
            url, stream=True, timeout=timeout or (CONNECT_TIMEOUT, READ_TIMEOUT),
            headers={"Accept": "application/json, */*;q=0.5", "Accept-Encoding": "identity",
                     **options.headers_for(url)},
        ) as resp:
            if resp.status_code != 200:
                raise _http_status_error(resp, url)
            ctype = resp.headers.get("Content-Type", "")
            length = int(resp.headers.get("Content-Length") or 0)
            if length > CATALOG_LIMIT:
                return None
            first = next(resp.iter_content(1024), b"")
            if "json" not in ctype and not first.lstrip().startswith(b"{"):
                return None
            return first + _read_limited(resp, url, CATALOG_LIMIT - len(first))
    except requests.RequestException as exc:
        raise translate_request_error(exc, url) from exc


def _key(url: str) -> str:
    return hashlib.sha256(url.encode()).hexdigest()[:32]


def partial_paths(url: str) -> tuple[Path, Path]:
    """(the partial file, its sidecar) for URL."""
    d = paths.downloads_dir()
    key = _key(url)
    return d / f"{key}.part", d / f"{key}.json"


def _validator(headers: Any) -> dict[str, str]:
    etag = headers.get("ETag")
    found: dict[str, str] = {}
    if etag and not etag.startswith("W/"):
        found["etag"] = etag
    last_modified = headers.get("Last-Modified")
    if last_modified:
        found["last_modified"] = last_modified
    return found


def _read_sidecar(sidecar: Path, url: str) -> dict[str, Any] | None:
    try:
        data = json.loads(sidecar.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or data.get("url") != url:
        return None
    return data


_CONTENT_RANGE = re.compile(r"^\s*bytes\s+(?:(\d+)-(\d+)|\*)/(\d+|\*)\s*$")


def _parse_content_range(value: str | None) -> tuple[int | None, int | None]:
    """(first byte, total) from a Content-Range header, None where absent."""
    m = _CONTENT_RANGE.match(value or "")
    if not m:
        return None, None
    start = int(m.group(1)) if m.group(1) is not None else None
    total = int(m.group(3)) if m.group(3) != "*" else None
    return start, total


@contextlib.contextmanager
def _download_lock(key: str) -> Iterator[None]:
    from vmctl.state import file_lock

    with file_lock(f"download-{key}"):
        yield


def download(
    url: str,
    *,
    expected: Checksum | None,
    description: str,
    progress: ProgressFactory | None = None,
    notify: Notify | None = None,
    timeout: tuple[float, float] | None = None,
    consume: Consumer | None = None,
    options: FetchOptions = NO_OPTIONS,
) -> Fetched:
    """Download URL into downloads_dir(), resuming a partial download of the same URL.
    CONSUME, if given, is handed every byte of the file in order while it downloads (a
    resumed download's bytes already on disk first), so that it can unpack meanwhile."""
    import requests

    say = notify or (lambda _msg: None)
    part, sidecar = partial_paths(url)
    part.parent.mkdir(parents=True, exist_ok=True)
    timeouts = timeout or (CONNECT_TIMEOUT, READ_TIMEOUT)

    with _download_lock(_key(url)), _session(options) as session:
        for _attempt in range(3):
            have = part.stat().st_size if part.exists() else 0
            meta = _read_sidecar(sidecar, url) if have else None
            validator = (meta or {}).get("validator") or {}
            if_range = validator.get("etag") or validator.get("last_modified")
            headers = {"Accept-Encoding": "identity", **options.headers_for(url)}
            if have and if_range:
                headers["Range"] = f"bytes={have}-"
                headers["If-Range"] = if_range
                say(f"box: resuming the download of {url} at {_mib(have)}")
            elif have:
                say(f"box: cannot resume the download of {url} (no validator recorded); starting over")
                have = 0
            try:
                resp = session.get(url, headers=headers, stream=True, timeout=timeouts)
            except requests.RequestException as exc:
                raise translate_request_error(exc, url, partial=part) from exc
            with resp:
                if have and resp.status_code == 416:
                    _, total = _parse_content_range(resp.headers.get("Content-Range"))
                    if total == have:
                        return _finish(url, part, sidecar, expected, description, progress, have, consume)
                    say(f"box: the server cannot resume {url}; starting over")
                    _discard(part, sidecar)
                    continue
                if have and resp.status_code == 206:
                    start, total = _parse_content_range(resp.headers.get("Content-Range"))
                    if start != have:
                        say(f"box: the server answered an unexpected range for {url}; starting over")
                        _discard(part, sidecar)
                        continue
                    mode = "ab"
                elif resp.status_code == 200:
                    if have:
                        say(f"box: {url} changed on the server or it cannot resume; starting over")
                    have = 0
                    total = _int(resp.headers.get("Content-Length"))
                    mode = "wb"
                    _write_sidecar(sidecar, url, _validator(resp.headers), total)
                else:
                    raise _http_status_error(resp, url)
                return _stream(resp, url, part, sidecar, mode, have, total, expected, description, progress,
                               consume)
        raise DownloadError(f"the server keeps answering unexpected ranges for {url}",
                            hint=f"delete {part} and try again")


def _stream(
    resp: requests.Response,
    url: str,
    part: Path,
    sidecar: Path,
    mode: str,
    have: int,
    total: int | None,
    expected: Checksum | None,
    description: str,
    progress: ProgressFactory | None,
    consume: Consumer | None,
) -> Fetched:
    import requests

    hasher = Hasher(expected)
    if have:
        _hash_file(part, hasher, have, consume=consume)
    try:
        with part.open(mode) as f, _progress(progress, description, total, have) as bar:
            for chunk in resp.iter_content(CHUNK):
                if chunk:
                    f.write(chunk)
                    hasher.update(chunk)
                    if consume is not None:
                        consume(chunk)
                    bar.advance(len(chunk))
    except requests.RequestException as exc:
        raise translate_request_error(exc, url, partial=part) from exc
    except OSError as exc:
        raise DownloadError(f"could not write {part}: {exc.strerror}",
                            hint=f"free some disk space under {part.parent} and run the same command "
                            "again: the download resumes where it stopped") from exc
    size = part.stat().st_size
    if total is not None and size != total:
        raise DownloadError(
            f"the download of {url} stopped at {size} of {total} bytes",
            hint=f"the partial download is kept in {part}; run the same command again to resume",
        )
    return _verified(url, part, sidecar, hasher, size)


def _finish(url: str, part: Path, sidecar: Path, expected: Checksum | None, description: str,
            progress: ProgressFactory | None, size: int, consume: Consumer | None) -> Fetched:
    hasher = Hasher(expected)
    with _progress(progress, f"{description} (verifying)", size, 0) as bar:
        _hash_file(part, hasher, size, bar, consume=consume)
    return _verified(url, part, sidecar, hasher, size)


def _verified(url: str, part: Path, sidecar: Path, hasher: Hasher, size: int) -> Fetched:
    try:
        hasher.verify(url)
    except ChecksumError:
        _discard(part, sidecar)
        raise
    return Fetched(path=part, size=size, digests=hasher.digests(), downloaded=True,
                   _cleanup=[part, sidecar])


def _hash_file(path: Path, hasher: Hasher, size: int, bar: ProgressLike | None = None, *,
               consume: Consumer | None = None) -> None:
    with path.open("rb") as f:
        remaining = size
        while remaining > 0 and (chunk := f.read(min(CHUNK, remaining))):
            hasher.update(chunk)
            if consume is not None:
                consume(chunk)
            remaining -= len(chunk)
            if bar is not None:
                bar.advance(len(chunk))


def _write_sidecar(sidecar: Path, url: str, validator: dict[str, str], total: int | None) -> None:
    from vmctl.state import write_json

    write_json(sidecar, {"url": url, "validator": validator, "total": total, "started": time.time()})


def discard_partial(url: str) -> None:
    """Forget a partial download of URL (its bytes are known to be no use)."""
    _discard(*partial_paths(url))


def _discard(part: Path, sidecar: Path) -> None:
    for p in (part, sidecar):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(p)


def _int(value: str | None) -> int | None:
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


def _mib(n: int) -> str:
    return f"{n / (1024 * 1024):.1f} MiB"
