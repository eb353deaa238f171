"""A small client for the Distribution (Docker Registry HTTP API v2) protocol, over ``http.client``.

Only what reading an image needs: the ``/v2/`` ping, manifests by tag or
digest, blobs streamed and checked against their digest.  Authentication
follows the registry's ``WWW-Authenticate`` challenge: a Bearer token from
its token service (anonymous, or with the user's credentials), or Basic.
Plain HTTP is used only for a loopback registry or when ``--insecure`` asks
for it; TLS trusts the system's CAs plus Docker's (``DOCKER_CERT_PATH``,
``/etc/docker/certs.d/HOST:PORT/``).  Every failure becomes one line naming
the registry and the repository.
"""

from __future__ import annotations

import base64
import hashlib
import http.client
import io
import ipaddress
import json
import os
import re
import socket
import ssl
import threading
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from imgscope.errors import ImgscopeError

MANIFEST_ACCEPT = ", ".join(
    (
        "application/vnd.oci.image.index.v1+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.docker.distribution.manifest.v2+json",
    )
)
SCHEMA1 = (
    "application/vnd.docker.distribution.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v1+prettyjws",
)
MAX_MANIFEST = 4 << 20
MAX_REDIRECTS = 5
CERTS_D = Path("/etc/docker/certs.d")
USER_AGENT = "imgscope"
_DIGEST = re.compile(r"sha256:[0-9a-f]{64}")

# (username, password); ("", token) is an identity token, not supported by every registry.
Credentials = tuple[str, str]


@dataclass(frozen=True, slots=True)
class Endpoint:
    """Where a repository lives and how to reach it (picklable, for scan workers)."""

    host: str  # HOST[:PORT] as typed (docker.io mapped to its API host)
    repository: str
    insecure: bool = False
    credentials: Credentials | None = None

    @property
    def label(self) -> str:
        return f"registry {self.host}, repository {self.repository}"

    @property
    def loopback(self) -> bool:
        return is_loopback(self.host)


def split_host(host: str) -> tuple[str, int | None]:
    """``HOST[:PORT]`` (``[v6]:PORT`` too) as a name and an optional port."""
    if host.startswith("["):
        name, _, rest = host[1:].partition("]")
        return name, int(rest[1:]) if rest.startswith(":") and rest[1:].isdigit() else None
    name, sep, port = host.rpartition(":")
    if sep and port.isdigit() and ":" not in name:
        return name, int(port)
    return host, None


def is_loopback(host: str) -> bool:
    """Whether a registry is on this machine, where plain HTTP is as safe as the machine."""
    name, _ = split_host(host)
    if name == "localhost" or name.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def _tls_context(host: str, verify: bool) -> ssl.SSLContext:
    """System CAs plus Docker's CA files for this host; a client certificate when one is there."""
    if not verify:
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        return ctx
    ctx = ssl.create_default_context()
    dirs = [CERTS_D / host]
    cert_path = os.environ.get("DOCKER_CERT_PATH")
    if cert_path:
        dirs.append(Path(cert_path))
    for folder in dirs:
        try:
            files = sorted(folder.iterdir()) if folder.is_dir() else []
        except OSError:
            continue
        for path in files:
            try:
                if path.suffix == ".crt" or path.name == "ca.pem":
                    ctx.load_verify_locations(cafile=str(path))
                elif path.name in ("cert.pem",) or path.suffix == ".cert":
                    key = path.with_name("key.pem") if path.name == "cert.pem" else path.with_suffix(".key")
                    if key.exists():
                        ctx.load_cert_chain(str(path), str(key))
            except (ssl.SSLError, OSError) as exc:
                raise ImgscopeError(f"registry {host}: cannot use {path} ({exc})") from exc
    return ctx


def _challenge(header: str) -> tuple[str, dict[str, str]]:
    """``Bearer realm="...",service="..."`` -> ("bearer", {...})."""
    scheme, _, rest = header.strip().partition(" ")
    params = {k.lower(): v for k, v in re.findall(r'(\w+)="([^"]*)"', rest)}
    for k, v in re.findall(r'(\w+)=([^",\s]+)', rest):
        params.setdefault(k.lower(), v)
    return scheme.lower(), params


def _reason(resp: http.client.HTTPResponse, body: bytes) -> str:
    """The registry's error code and message when it sent them, else the HTTP reason."""
    try:
        errors = json.loads(body).get("errors") or []
        first = errors[0]
        text = f"{first.get('code', '')}: {first.get('message', '')}".strip(": ")
        if text:
            return f"{resp.status} {text}"[:300]
    except (ValueError, AttributeError, IndexError, TypeError, KeyError):
        pass
    return f"{resp.status} {resp.reason}"


class BlobReader(io.RawIOBase):
    """A blob's bytes as they arrive, hashed; the end is checked against the digest and size.

    The digest is checked when the last byte has been read (:meth:`finish`
    drains whatever the scanner left), so a layer that is not what the manifest
    names fails the load instead of reaching a report or the cache.
    """

    def __init__(self, resp: http.client.HTTPResponse, digest: str, size: int | None, label: str) -> None:
        self._resp = resp
        self._digest = digest
        self._size = size
        self._label = label
        self._hash = hashlib.sha256()
        self.read_bytes = 0
        self._done = False
        # Set by whoever runs several downloads at once, to stop the others when one fails or on Ctrl-C.
        self.abort: threading.Event | None = None

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        if self._done:
            return 0
        if self.abort is not None and self.abort.is_set():
            raise ImgscopeError(f"{self._label}: blob {self._digest}: download stopped")
        try:
            n = self._resp.readinto(buffer)
        except (OSError, http.client.HTTPException) as exc:
            raise ImgscopeError(f"{self._label}: blob {self._digest}: download failed ({_describe(exc)})") from exc
        if n:
            self._hash.update(memoryview(buffer)[:n])
            self.read_bytes += n
            if self._size is not None and self.read_bytes > self._size:
                raise ImgscopeError(
                    f"{self._label}: blob {self._digest} is larger than the {self._size} bytes announced"
                )
            return n
        self._check()
        return 0

    def _check(self) -> None:
        self._done = True
        self._resp.close()
        if self._size is not None and self.read_bytes != self._size:
            raise ImgscopeError(
                f"{self._label}: blob {self._digest} ended after {self.read_bytes} of {self._size} bytes"
            )
        actual = "sha256:" + self._hash.hexdigest()
        if self._digest.startswith("sha256:") and actual != self._digest:
            raise ImgscopeError(f"{self._label}: blob {self._digest} has digest {actual}: corrupt or tampered")

    def finish(self) -> None:
        """Read what is left and check the digest."""
        buf = bytearray(1 << 20)
        while not self._done:
            self.readinto(memoryview(buf))

    def close(self) -> None:
        self._resp.close()
        super().close()


def timeout() -> float:
    """Seconds to wait for a registry to answer or send more: ``IMGSCOPE_REGISTRY_TIMEOUT``, default 60."""
    try:
        return max(0.1, float(os.environ.get("IMGSCOPE_REGISTRY_TIMEOUT", "60")))
    except ValueError:
        return 60.0


def _describe(exc: BaseException) -> str:
    if isinstance(exc, socket.timeout | TimeoutError):
        return f"timed out after {timeout():g}s"
    if isinstance(exc, ssl.SSLCertVerificationError):
        hint = "put its CA in /etc/docker/certs.d/HOST/ or DOCKER_CERT_PATH, or use --insecure"
        return f"TLS certificate not trusted: {exc.verify_message} ({hint})"
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, socket.gaierror):
        return "unknown host"
    return str(exc) or type(exc).__name__


class RegistryClient:
    """One repository of one registry: ping, manifests, blobs, with the auth the registry asks for.

    Counts its requests (``requests``) so a test or benchmark can tell how many
    blobs a load fetched.
    """

    def __init__(self, endpoint: Endpoint, *, lookup: Callable[[str], Credentials | None] | None = None) -> None:
        self.endpoint = endpoint
        self.label = endpoint.label
        self._lookup = lookup
        self._scheme: str | None = None
        self._auth: str | None = None  # the Authorization header that worked
        self._challenge: tuple[str, dict[str, str]] | None = None
        self._conns: dict[tuple[str, str], http.client.HTTPConnection] = {}
        # Built once per (host, verify): a context loads the system CAs (milliseconds each), and the
        # parallel layer downloads open a connection each.  The credentials may run a helper program.
        self._tls: dict[tuple[str, bool], ssl.SSLContext] = {}
        self._creds: tuple[Credentials | None] | None = None  # (the answer,) once looked up
        self._lock = threading.Lock()
        self.requests: list[tuple[str, str]] = []  # (method, path)

    # --- transport -------------------------------------------------------------------------

    def _credentials(self) -> Credentials | None:
        if self.endpoint.credentials is not None:
            return self.endpoint.credentials
        with self._lock:
            if self._creds is None:
                self._creds = (self._lookup(self.endpoint.host) if self._lookup else None,)
            return self._creds[0]

    def _tls_context(self, netloc: str, verify: bool) -> ssl.SSLContext:
        with self._lock:
            ctx = self._tls.get((netloc, verify))
            if ctx is None:
                ctx = self._tls[(netloc, verify)] = _tls_context(netloc, verify)
            return ctx

    def _connection(self, scheme: str, netloc: str) -> http.client.HTTPConnection:
        key = (scheme, netloc)
        conn = self._conns.pop(key, None)
        if conn is not None:
            return conn
        name, port = split_host(netloc)
        if scheme == "https":
            verify = not self.endpoint.insecure
            return http.client.HTTPSConnection(name, port, timeout=timeout(), context=self._tls_context(netloc, verify))
        return http.client.HTTPConnection(name, port, timeout=timeout())

    def _release(self, scheme: str, netloc: str, conn: http.client.HTTPConnection) -> None:
        self._conns[(scheme, netloc)] = conn

    def _send(
        self, method: str, url: str, headers: dict[str, str], body: bytes | None = None
    ) -> tuple[http.client.HTTPResponse, http.client.HTTPConnection, str, str]:
        parts = urllib.parse.urlsplit(url)
        path = parts.path + (f"?{parts.query}" if parts.query else "")
        for attempt in (1, 2):
            conn = self._connection(parts.scheme, parts.netloc)
            try:
                conn.request(method, path or "/", body=body, headers={"User-Agent": USER_AGENT, **headers})
                resp = conn.getresponse()
            except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError) as exc:
                conn.close()
                if attempt == 2:
                    raise ImgscopeError(f"{self.label}: {parts.netloc}: {_describe(exc)}") from exc
                continue  # a kept-alive connection the server had closed: once more on a new one
            except (OSError, http.client.HTTPException) as exc:
                conn.close()
                raise ImgscopeError(f"{self.label}: cannot reach {parts.netloc}: {_describe(exc)}") from exc
            self.requests.append((method, parts.path))
            return resp, conn, parts.scheme, parts.netloc
        raise AssertionError("unreachable")  # pragma: no cover

    def _base(self) -> str:
        """``https://host`` or, for loopback or ``--insecure`` when TLS is not offered, ``http://host``."""
        if self._scheme is None:
            self._scheme = self._probe()
        return f"{self._scheme}://{self.endpoint.host}"

    def _probe(self) -> str:
        """Ping ``/v2/`` over HTTPS; fall back to HTTP only where that is allowed."""
        plain_ok = self.endpoint.insecure or self.endpoint.loopback
        try:
            resp, conn, _, _ = self._send("GET", f"https://{self.endpoint.host}/v2/", {})
        except ImgscopeError as exc:
            cause = exc.__cause__
            # A plain-HTTP server answers a TLS hello with garbage or a reset; a bad certificate is not that.
            plain_server = isinstance(
                cause, ssl.SSLError | ConnectionResetError | ConnectionRefusedError | http.client.HTTPException
            ) and not isinstance(cause, ssl.SSLCertVerificationError)
            if plain_ok and plain_server:
                return self._ping_plain()
            if isinstance(cause, ssl.SSLError) and not isinstance(cause, ssl.SSLCertVerificationError):
                # Most often a registry that serves plain HTTP: say how to allow it rather than quote OpenSSL.
                raise ImgscopeError(
                    f"{self.label}: {self.endpoint.host} does not answer over TLS ({cause.reason or cause}); "
                    f"if it serves plain HTTP and you trust the network, use --insecure"
                ) from cause
            raise
        self._after_ping(resp, conn, "https")
        return "https"

    def _ping_plain(self) -> str:
        resp, conn, _, _ = self._send("GET", f"http://{self.endpoint.host}/v2/", {})
        self._after_ping(resp, conn, "http")
        return "http"

    def _after_ping(self, resp: http.client.HTTPResponse, conn: http.client.HTTPConnection, scheme: str) -> None:
        resp.read()
        self._release(scheme, self.endpoint.host, conn)
        if resp.status == 401:
            header = resp.getheader("WWW-Authenticate") or ""
            self._challenge = _challenge(header) if header else None
        elif resp.status == 404:
            raise ImgscopeError(f"{self.label}: {self.endpoint.host} does not speak the registry API v2 (404 on /v2/)")

    # --- auth ------------------------------------------------------------------------------

    def _authorize(self, header: str | None) -> None:
        """Answer a 401: get a Bearer token, or use Basic credentials; fail when there are none."""
        challenge = _challenge(header) if header else self._challenge
        creds = self._credentials()
        if challenge is None:
            raise ImgscopeError(f"{self.label}: 401 unauthorized (and the registry says not how to log in)")
        scheme, params = challenge
        if scheme == "basic":
            if creds is None:
                raise ImgscopeError(f"{self.label}: 401 unauthorized: log in first (docker login {self.endpoint.host})")
            token = base64.b64encode(f"{creds[0]}:{creds[1]}".encode()).decode()
            self._auth = f"Basic {token}"
            return
        if scheme != "bearer" or "realm" not in params:
            raise ImgscopeError(f"{self.label}: 401 unauthorized with an unknown scheme {scheme!r}")
        self._auth = f"Bearer {self._token(params, creds)}"

    def _token(self, params: dict[str, str], creds: Credentials | None) -> str:
        query = {"scope": params.get("scope") or f"repository:{self.endpoint.repository}:pull"}
        if params.get("service"):
            query["service"] = params["service"]
        realm = params["realm"]
        realm_parts = urllib.parse.urlsplit(realm)
        if realm_parts.scheme not in ("https", "http") or (
            realm_parts.scheme == "http" and not (self.endpoint.insecure or is_loopback(realm_parts.netloc))
        ):
            raise ImgscopeError(f"{self.label}: token service {realm} is not HTTPS (use --insecure to allow it)")
        url = realm + ("&" if "?" in realm else "?") + urllib.parse.urlencode(query)
        headers = {}
        if creds is not None:
            headers["Authorization"] = "Basic " + base64.b64encode(f"{creds[0]}:{creds[1]}".encode()).decode()
        resp, conn, scheme, netloc = self._send("GET", url, headers)
        body = resp.read(MAX_MANIFEST)
        self._release(scheme, netloc, conn)
        if resp.status in (401, 403):
            who = "anonymous pulls are not allowed: log in first" if creds is None else "credentials refused"
            raise ImgscopeError(f"{self.label}: token service said {resp.status}: {who}")
        if resp.status != 200:
            raise ImgscopeError(f"{self.label}: token service {realm}: {_reason(resp, body)}")
        try:
            data = json.loads(body)
            token = data.get("token") or data.get("access_token")
        except (ValueError, AttributeError) as exc:
            raise ImgscopeError(f"{self.label}: token service {realm} sent no token") from exc
        if not isinstance(token, str) or not token:
            raise ImgscopeError(f"{self.label}: token service {realm} sent no token")
        return token

    # --- requests --------------------------------------------------------------------------

    def _get(
        self, path: str, accept: str | None, what: str
    ) -> tuple[http.client.HTTPResponse, http.client.HTTPConnection, str, str]:
        """GET with auth and redirects; returns a 200 response (body unread) or raises a one-line error."""
        url = self._base() + path
        retried = False
        redirects = 0
        while True:
            headers: dict[str, str] = {}
            if accept:
                headers["Accept"] = accept
            same_host = urllib.parse.urlsplit(url).netloc == self.endpoint.host
            if self._auth and same_host:  # never hand the registry's token to a blob store it redirects to
                headers["Authorization"] = self._auth
            resp, conn, scheme, netloc = self._send("GET", url, headers)
            if resp.status == 200:
                # The caller reads the body; the connection is reused only after that.
                return resp, conn, scheme, netloc
            body = resp.read(MAX_MANIFEST)
            self._release(scheme, netloc, conn)
            if resp.status == 401 and same_host and not retried:
                retried = True
                self._authorize(resp.getheader("WWW-Authenticate"))
                continue
            if resp.status in (301, 302, 303, 307, 308) and redirects < MAX_REDIRECTS:
                location = resp.getheader("Location") or ""
                url = urllib.parse.urljoin(url, location)
                redirects += 1
                if urllib.parse.urlsplit(url).scheme == "http" and not (
                    self.endpoint.insecure or is_loopback(urllib.parse.urlsplit(url).netloc)
                ):
                    raise ImgscopeError(f"{self.label}: {what} redirects to plain HTTP ({url.split('?')[0]})")
                continue
            raise ImgscopeError(f"{self.label}: {what}: {self._explain(resp, body)}")

    def _explain(self, resp: http.client.HTTPResponse, body: bytes) -> str:
        reason = _reason(resp, body)
        if resp.status == 401:
            hint = "log in first" if self._credentials() is None else "the credentials were refused"
            return f"{reason} ({hint})"
        if resp.status == 403:
            return f"{reason} (access denied)"
        if resp.status == 429:
            after = resp.getheader("Retry-After")
            return f"{reason} (rate limited{f'; retry after {after}s' if after else ''})"
        return reason

    def manifest(self, reference: str) -> tuple[bytes, str, str]:
        """A manifest or index by tag or digest: (bytes, media type, digest), checked when asked by digest."""
        what = f"manifest {reference}"
        if ":" in reference and not _DIGEST.fullmatch(reference):  # a tag has no colon: a digest we cannot check
            raise ImgscopeError(f"{self.label}: invalid manifest digest {reference!r}")
        path = f"/v2/{self.endpoint.repository}/manifests/{reference}"
        resp, conn, scheme, netloc = self._get(path, MANIFEST_ACCEPT, what)
        try:
            body = resp.read(MAX_MANIFEST + 1)
        except (OSError, http.client.HTTPException) as exc:
            raise ImgscopeError(f"{self.label}: {what}: download failed ({_describe(exc)})") from exc
        if resp.isclosed():
            self._release(scheme, netloc, conn)
        else:
            conn.close()
        if len(body) > MAX_MANIFEST:
            raise ImgscopeError(f"{self.label}: {what} is larger than {MAX_MANIFEST >> 20} MiB")
        media = (resp.getheader("Content-Type") or "").split(";")[0].strip()
        if media in SCHEMA1:
            raise ImgscopeError(f"{self.label}: {what} is a schema 1 manifest, which imgscope does not read")
        digest = "sha256:" + hashlib.sha256(body).hexdigest()
        if _DIGEST.fullmatch(reference) and digest != reference:
            raise ImgscopeError(f"{self.label}: {what} has digest {digest}: corrupt or tampered")
        return body, media, digest

    def blob_bytes(self, digest: str, limit: int) -> bytes:
        """A small blob (a config) whole, checked against its digest."""
        reader = self.open_blob(digest, None)
        data = reader.read(limit + 1)
        if len(data) > limit:
            reader.close()
            raise ImgscopeError(f"{self.label}: blob {digest} is too large to be metadata")
        reader.finish()
        return data

    def open_blob(self, digest: str, size: int | None) -> BlobReader:
        """A blob as a stream; its digest is checked at its end (see :class:`BlobReader`)."""
        if not _DIGEST.fullmatch(digest) and not re.fullmatch(r"[a-z0-9]+:[0-9a-f]{32,}", digest):
            raise ImgscopeError(f"{self.label}: invalid blob digest {digest!r}")
        resp, _conn, _scheme, _netloc = self._get(
            f"/v2/{self.endpoint.repository}/blobs/{digest}", None, f"blob {digest}"
        )
        return BlobReader(resp, digest, size, self.label)

    def close(self) -> None:
        for conn in self._conns.values():
            conn.close()
        self._conns.clear()
