"""registry:// against a real registry on loopback (Debian's docker-registry, distribution 2.8).

The oracle is the archive or layout the image was pushed from with ``skopeo
copy``: loaded from the registry, an image must be the same image (id,
DiffIDs, every entry of every layer) as loaded from the file.  Requests are
counted from the registry's own access log.  Token auth, redirects, rate
limits, timeouts and tampered blobs go through a small proxy in front of the
registry, since the registry itself only does htpasswd.

Skipped when docker-registry, skopeo, htpasswd or openssl is missing, unless
IMGSCOPE_REQUIRE_REGISTRY=1 (set by .ci/run): then they fail.
"""

from __future__ import annotations

import base64
import json
import os
import stat
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import jsonschema
import pytest

from imgscope import reference
from imgscope.errors import ImgscopeError
from imgscope.model import Image
from imgscope.schemas import load_schema
from imgscope.sources import registry
from imgscope.sources.common import LoadOptions
from imgscope.sources.scanproc import ScanWorker
from tests import imagebuild as ib
from tests.conftest import SAMPLES
from tests.registryserver import PASSWORD, USER, Registry, missing_tools

IMGSCOPE = [sys.executable, "-m", "imgscope"]


def _require_tools() -> None:
    missing = missing_tools()
    if missing:
        reason = f"registry tests need {', '.join(missing)}"
        if os.environ.get("IMGSCOPE_REQUIRE_REGISTRY") == "1":
            pytest.fail(f"{reason} (IMGSCOPE_REQUIRE_REGISTRY=1)", pytrace=False)
        pytest.skip(reason)


def _start(tmp: Path, **kwargs: bool) -> Iterator[Registry]:
    _require_tools()
    reg = Registry(tmp, **kwargs).start()
    try:
        yield reg
    finally:
        reg.stop()


@pytest.fixture(scope="module")
def plain(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    """A plain-HTTP registry with the sample image as Docker v2 and OCI, and the multi-arch index."""
    for reg in _start(tmp_path_factory.mktemp("registry")):
        reg.push(f"docker-archive:{SAMPLES / 'demo-legacy.tar'}", "demo/app:v2")
        reg.push(f"docker-archive:{SAMPLES / 'demo-legacy.tar'}", "demo/app:oci", "--format", "oci")
        reg.push(f"oci:{SAMPLES / 'multiarch-oci'}:multi", "demo/multi:latest", "--all")
        yield reg


def _load(ref: str, **options: object) -> Image:
    return reference.load(ref, LoadOptions(**options))  # type: ignore[arg-type]


def _same_image(a: Image, b: Image, *, same_config: bool = True) -> None:
    """The same image: config, DiffIDs and every entry of every layer."""
    if same_config:
        assert a.image_id == b.image_id
    assert [layer.diff_id for layer in a.layers] == [layer.diff_id for layer in b.layers]
    assert [s.entries for s in a.scans] == [s.entries for s in b.scans]
    assert [(s.whiteouts, s.opaques) for s in a.scans] == [(s.whiteouts, s.opaques) for s in b.scans]


def _imgscope(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*IMGSCOPE, *args], capture_output=True, text=True, env=env, timeout=300)


# --------------------------------------------------------------------------- references


@pytest.mark.parametrize(
    ("text", "host", "repo", "ref"),
    [
        ("registry://127.0.0.1:5000/demo/app", "127.0.0.1:5000", "demo/app", "latest"),
        ("registry://localhost:5000/a/b/c:v1.2", "localhost:5000", "a/b/c", "v1.2"),
        ("registry://ghcr.io/org/app@sha256:" + "a" * 64, "ghcr.io", "org/app", "sha256:" + "a" * 64),
        ("registry://docker.io/alpine:3", "registry-1.docker.io", "library/alpine", "3"),
        ("registry://[::1]:5000/x:y", "[::1]:5000", "x", "y"),
    ],
)
def test_parse_reference(text: str, host: str, repo: str, ref: str) -> None:
    parsed = registry.parse(text)
    assert (parsed.host, parsed.repository, parsed.reference) == (host, repo, ref)


@pytest.mark.parametrize(
    "text",
    [
        "registry://",
        "registry://host",
        "registry://host/",
        "registry://host/Upper",
        "registry://host/a@sha256:zz",
        "registry://host/a@sha256:" + "A" * 64,  # upper case: the client checks only what it can compute
        "registry://host/a@sha512:" + "a" * 128,
        "registry://host/a@sha256:" + "a" * 32,
    ],
)
def test_parse_reference_refuses(text: str) -> None:
    with pytest.raises(ImgscopeError, match="registry://"):
        registry.parse(text)


# --------------------------------------------------------------------------- credentials


def _write_config(folder: Path, monkeypatch: pytest.MonkeyPatch, config: dict[str, object]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps(config))
    monkeypatch.setenv("DOCKER_CONFIG", str(folder))


def test_credentials_from_auths(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from imgscope.sources import credentials

    b64 = base64.b64encode(b"me:pa:ss").decode()  # a password may hold colons
    _write_config(
        tmp_path,
        monkeypatch,
        {
            "auths": {
                "https://r.example:5000/v1/": {"auth": b64},
                "other.example": {"username": "u", "password": "p"},
                "https://index.docker.io/v1/": {"auth": base64.b64encode(b"hub:tok").decode()},
                "empty.example": {},
            }
        },
    )
    assert credentials.lookup("r.example:5000") == ("me", "pa:ss")
    assert credentials.lookup("R.EXAMPLE:5000") == ("me", "pa:ss")
    assert credentials.lookup("other.example") == ("u", "p")
    assert credentials.lookup("registry-1.docker.io") == ("hub", "tok")
    assert credentials.lookup("empty.example") is None
    assert credentials.lookup("r.example") is None  # another port is another registry


def test_credentials_none_without_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from imgscope.sources import credentials

    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "nothing"))
    assert credentials.lookup("r.example") is None


def test_credentials_broken_auth_is_an_error_without_the_secret(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from imgscope.sources import credentials

    _write_config(tmp_path, monkeypatch, {"auths": {"r.example": {"auth": "not base64 at all!"}}})
    with pytest.raises(ImgscopeError) as info:
        credentials.lookup("r.example")
    assert "is not base64 user:password" in info.value.message
    assert "not base64 at all" not in info.value.message


# --------------------------------------------------------------------------- loading


@pytest.fixture(params=["1", "2"], ids=["in-process", "helpers"])
def helpers(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch, started_helpers: list[ScanWorker]
) -> Iterator[list[ScanWorker]]:
    """Blobs scanned in this process, or relayed to helper processes (``scanproc``); the helpers started."""
    monkeypatch.setenv("IMGSCOPE_WORKERS", request.param)
    started = started_helpers
    yield started
    assert all(w._proc.poll() is not None for w in started), "a helper outlived the load"
    if request.param == "1":
        assert not started


def test_blobs_relayed_to_helpers_read_the_same(plain: Registry, helpers: list[ScanWorker]) -> None:
    ref = f"registry://{plain.host}/demo/app:v2"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("IMGSCOPE_WORKERS", "1")
        here = _load(ref, use_cache=False)
    fetched = _load(ref, use_cache=False)
    assert fetched.scans == here.scans
    assert bool(helpers) == (os.environ["IMGSCOPE_WORKERS"] == "2")


def test_same_image_as_the_archive_it_was_pushed_from(plain: Registry, helpers: list[ScanWorker]) -> None:
    pushed = _load(str(SAMPLES / "demo-legacy.tar"))
    fetched = _load(f"registry://{plain.host}/demo/app:v2")
    _same_image(fetched, pushed)
    assert fetched.source == f"registry {plain.host}"
    assert fetched.tags == (f"{plain.host}/demo/app:v2",)
    # The manifest the registry serves is what skopeo wrote; its layers are gzip (skopeo compresses).
    assert fetched.manifest_digest and fetched.manifest_digest.startswith("sha256:")
    assert all(layer.media_type and "gzip" in layer.media_type for layer in fetched.layers)
    assert not fetched.warnings


def test_oci_media_types(plain: Registry) -> None:
    fetched = _load(f"registry://{plain.host}/demo/app:oci")
    # Converting to OCI, skopeo rewrites the config (new media types, so a new image id); the layers stay.
    _same_image(fetched, _load(str(SAMPLES / "demo-legacy.tar")), same_config=False)
    assert all(layer.media_type == "application/vnd.oci.image.layer.v1.tar+gzip" for layer in fetched.layers)


def test_zstd_layers(tmp_path: Path) -> None:
    # A registry of its own: skopeo reuses a gzip blob it knows to be in the same registry.
    for reg in _start(tmp_path / "registry"):
        zstd = ("--format", "oci", "--dest-compress", "--dest-compress-format", "zstd")
        ref = reg.push(f"docker-archive:{SAMPLES / 'demo-legacy.tar'}", "demo/zstd:1", *zstd)
        fetched = _load(ref, use_cache=False)
        _same_image(fetched, _load(str(SAMPLES / "demo-legacy.tar")), same_config=False)
        assert {layer.media_type for layer in fetched.layers} == {"application/vnd.oci.image.layer.v1.tar+zstd"}


def test_by_digest(plain: Registry) -> None:
    by_tag = _load(f"registry://{plain.host}/demo/app:v2")
    by_digest = _load(f"registry://{plain.host}/demo/app@{by_tag.manifest_digest}", use_cache=False)
    _same_image(by_digest, by_tag)
    assert by_digest.tags == ()


@pytest.mark.parametrize("platform", ["linux/amd64", "linux/arm64"])
def test_index_platform_choice_as_for_the_layout(plain: Registry, platform: str) -> None:
    layout = _load(str(SAMPLES / "multiarch-oci"), platform=platform)
    fetched = _load(f"registry://{plain.host}/demo/multi", platform=platform)
    _same_image(fetched, layout)
    assert f"{fetched.config.os}/{fetched.config.architecture}" == platform


def test_platform_not_in_the_index(plain: Registry) -> None:
    with pytest.raises(ImgscopeError, match=r"no image for linux/s390x; platforms here: .*linux/amd64"):
        _load(f"registry://{plain.host}/demo/multi", platform="linux/s390x")


def test_warm_cache_fetches_no_layer_blob(plain: Registry) -> None:
    ref = f"registry://{plain.host}/demo/app:v2"
    before = len(plain.requests())
    cold = _load(ref)
    cold_blobs = [p for m, p in plain.requests()[before:] if m == "GET" and "/blobs/" in p]
    layer_digests = {layer.digest for layer in cold.layers}
    config = f"/v2/demo/app/blobs/{_config_digest(plain, 'demo/app', 'v2')}"
    # Cold: the config and every distinct layer blob, each once.
    assert sorted(cold_blobs) == sorted([config] + [f"/v2/demo/app/blobs/{d}" for d in layer_digests])
    middle = len(plain.requests())
    warm = _load(ref)
    warm_requests = plain.requests()[middle:]
    assert [p for m, p in warm_requests if m == "GET" and "/blobs/" in p] == [config]
    assert [p for m, p in warm_requests if "/manifests/" in p] == ["/v2/demo/app/manifests/v2"]
    _same_image(warm, cold)


def _config_digest(reg: Registry, repo: str, tag: str) -> str:
    req = urllib.request.Request(
        f"http://{reg.host}/v2/{repo}/manifests/{tag}",
        headers={"Accept": "application/vnd.docker.distribution.manifest.v2+json"},
    )
    with urllib.request.urlopen(req, timeout=10) as resp:
        return str(json.loads(resp.read())["config"]["digest"])


def _layer_digests(reg: Registry, repo: str, tag: str) -> list[str]:
    req = urllib.request.Request(
        f"http://{reg.host}/v2/{repo}/manifests/{tag}",
        headers={"Accept": "application/vnd.docker.distribution.manifest.v2+json"},
    )
    with urllib.request.urlopen(req, timeout=10) as resp:
        return [str(layer["digest"]) for layer in json.loads(resp.read())["layers"]]


def test_second_image_on_a_shared_base_fetches_only_its_own_layers(plain: Registry, tmp_path: Path) -> None:
    base = ib.ImageSpec(steps=(ib.run("make base", ib.file("etc/base.txt", b"base\n" * 1000)),))
    app = base.extend(ib.run("make app", ib.file("app/main", b"app\n" * 500)))
    other = base.extend(ib.run("make other", ib.file("app/other", b"other\n" * 500)))
    refs = {}
    for name, spec in (("app", app), ("other", other)):
        archive = tmp_path / f"{name}.tar"
        ib.write_docker_archive(archive, spec)
        refs[name] = plain.push(f"docker-archive:{archive}", f"shared/{name}:1")
    _load(refs["app"])
    before = len(plain.requests())
    second = _load(refs["other"])
    blobs = [p for m, p in plain.requests()[before:] if m == "GET" and "/blobs/" in p]
    own = second.layers[1].digest
    config = _config_digest(plain, "shared/other", "1")
    assert sorted(blobs) == sorted([f"/v2/shared/other/blobs/{config}", f"/v2/shared/other/blobs/{own}"])
    _same_image(second, _load(str(tmp_path / "other.tar")))


def test_config_contradicting_a_blob_seen_before_is_reported(plain: Registry, tmp_path: Path) -> None:
    """The cache remembers what a blob held; a later config that says otherwise gets a warning."""
    from imgscope import cache

    fetched = _load(f"registry://{plain.host}/demo/app:v2")
    db = cache.open_cache()
    digest = fetched.layers[1].digest
    assert digest is not None
    db.put_blob(digest, "sha256:" + "0" * 64)
    again = _load(f"registry://{plain.host}/demo/app:v2")
    assert any("held sha256:000" in w and digest in w for w in again.warnings)


def test_verify_fetches_and_checks_every_blob(plain: Registry) -> None:
    _load(f"registry://{plain.host}/demo/app:v2")
    before = len(plain.requests())
    verified = _load(f"registry://{plain.host}/demo/app:v2", verify=True)
    blobs = {p for m, p in plain.requests()[before:] if m == "GET" and "/blobs/" in p}
    assert {f"/v2/demo/app/blobs/{layer.digest}" for layer in verified.layers} <= blobs


def test_missing_tag_and_repository_are_one_line_errors(plain: Registry) -> None:
    for ref, words in (
        (f"registry://{plain.host}/demo/app:nope", "manifest nope: 404 MANIFEST_UNKNOWN"),
        (f"registry://{plain.host}/no/such:v1", "manifest v1: 404"),
    ):
        done = _imgscope("inspect", ref)
        assert done.returncode == 2
        assert done.stderr.count("\n") == 1
        assert f"registry {plain.host}, repository" in done.stderr
        assert words in done.stderr


def test_connection_refused_is_a_one_line_error() -> None:
    from tests.registryserver import free_port

    done = _imgscope("inspect", f"registry://127.0.0.1:{free_port()}/demo/app")
    assert done.returncode == 2
    assert "connection refused" in done.stderr and done.stderr.count("\n") == 1


# --------------------------------------------------------------------------- auth and TLS


@pytest.fixture(scope="module")
def basic(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    for reg in _start(tmp_path_factory.mktemp("registry-auth"), auth=True):
        reg.push(f"docker-archive:{SAMPLES / 'demo-legacy.tar'}", "private/app:1")
        yield reg


def _docker_config(folder: Path, config: dict[str, object]) -> dict[str, str]:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps(config))
    return {**os.environ, "DOCKER_CONFIG": str(folder)}


def test_basic_auth_without_credentials(basic: Registry, tmp_path: Path) -> None:
    env = _docker_config(tmp_path / "empty", {})
    done = _imgscope("inspect", f"registry://{basic.host}/private/app:1", env=env)
    assert done.returncode == 2
    assert f"registry {basic.host}, repository private/app" in done.stderr
    assert "401" in done.stderr and "log in" in done.stderr
    assert done.stderr.count("\n") == 1


def test_basic_auth_wrong_password(basic: Registry, tmp_path: Path) -> None:
    auth = base64.b64encode(f"{USER}:wrong".encode()).decode()
    env = _docker_config(tmp_path / "wrong", {"auths": {basic.host: {"auth": auth}}})
    done = _imgscope("inspect", f"registry://{basic.host}/private/app:1", env=env)
    assert done.returncode == 2
    assert "401" in done.stderr and "refused" in done.stderr
    assert "wrong" not in done.stderr


def test_basic_auth_from_docker_config_auths(basic: Registry, tmp_path: Path) -> None:
    auth = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
    env = _docker_config(tmp_path / "auths", {"auths": {f"https://{basic.host}/v1/": {"auth": auth}}})
    done = _imgscope("inspect", "--json", f"registry://{basic.host}/private/app:1", env=env)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["image"]["id"] == _load(str(SAMPLES / "demo-legacy.tar")).image_id
    assert PASSWORD not in done.stdout + done.stderr


def test_basic_auth_from_a_credential_helper(basic: Registry, tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    helper = bin_dir / "docker-credential-imgscope16"
    asked = tmp_path / "asked"
    helper.write_text(
        "#!/bin/sh\n"
        f'[ "$1" = get ] || exit 1\ncat > {asked}\n'
        f'printf \'{{"ServerURL":"x","Username":"{USER}","Secret":"{PASSWORD}"}}\'\n'
    )
    helper.chmod(helper.stat().st_mode | stat.S_IEXEC)
    env = _docker_config(tmp_path / "helpers", {"credHelpers": {basic.host: "imgscope16"}})
    env["PATH"] = f"{bin_dir}:{env['PATH']}"
    done = _imgscope("inspect", f"registry://{basic.host}/private/app:1", env=env)
    assert done.returncode == 0, done.stderr
    assert asked.read_text() == basic.host
    env = _docker_config(tmp_path / "store", {"credsStore": "imgscope16"})
    env["PATH"] = f"{bin_dir}:{env['PATH']}"
    assert _imgscope("inspect", f"registry://{basic.host}/private/app:1", env=env).returncode == 0


def test_missing_credential_helper(basic: Registry, tmp_path: Path) -> None:
    env = _docker_config(tmp_path / "nohelper", {"credsStore": "no-such-helper-16"})
    done = _imgscope("inspect", f"registry://{basic.host}/private/app:1", env=env)
    assert done.returncode == 2
    assert "docker-credential-no-such-helper-16 is not installed" in done.stderr


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    for reg in _start(tmp_path_factory.mktemp("registry-tls"), tls=True):
        reg.push(f"docker-archive:{SAMPLES / 'demo-legacy.tar'}", "secure/app:1")
        yield reg


def test_tls_with_an_unknown_ca_is_refused(tls: Registry, tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "DOCKER_CERT_PATH"}
    done = _imgscope("inspect", f"registry://{tls.host}/secure/app:1", env=env)
    assert done.returncode == 2
    assert "TLS certificate not trusted" in done.stderr and done.stderr.count("\n") == 1


def test_tls_with_docker_cert_path(tls: Registry, tmp_path: Path) -> None:
    assert tls.ca is not None
    certs = tmp_path / "certs"
    certs.mkdir()
    (certs / "ca.pem").write_bytes(tls.ca.read_bytes())
    env = {**os.environ, "DOCKER_CERT_PATH": str(certs)}
    done = _imgscope("inspect", "--json", f"registry://{tls.host}/secure/app:1", env=env)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["image"]["source"] == f"registry {tls.host}"
    jsonschema.validate(report, load_schema("inspect"))


def test_tls_insecure_skips_verification(tls: Registry) -> None:
    env = {k: v for k, v in os.environ.items() if k != "DOCKER_CERT_PATH"}
    done = _imgscope("inspect", "--insecure", f"registry://{tls.host}/secure/app:1", env=env)
    assert done.returncode == 0, done.stderr


# --------------------------------------------------------------------------- a proxy in front


class Proxy:
    """A registry front: Bearer token auth, and faults on demand, forwarding to the real registry."""

    def __init__(self, upstream: Registry, *, token_user: tuple[str, str] | None = None) -> None:
        self.upstream = upstream
        self.token_user = token_user
        self.fault: Callable[[BaseHTTPRequestHandler], bool] | None = None
        self.corrupt_blobs = False
        self.redirect_blobs = False
        self.tokens: list[str] = []
        self.seen_auth: list[str | None] = []
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                proxy.handle(self)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.host = f"127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def handle(self, h: BaseHTTPRequestHandler) -> None:
        if self.fault is not None and self.fault(h):
            return
        if h.path.startswith("/token"):
            if self.token_user is not None:
                expected = "Basic " + base64.b64encode(":".join(self.token_user).encode()).decode()
                if h.headers.get("Authorization") != expected:
                    self._send(h, 401, b'{"errors":[{"code":"UNAUTHORIZED","message":"bad credentials"}]}')
                    return
            self.tokens.append(h.path)
            self._send(h, 200, b'{"token": "t0k3n"}')
            return
        self.seen_auth.append(h.headers.get("Authorization"))
        if h.headers.get("Authorization") != "Bearer t0k3n":
            challenge = f'Bearer realm="http://{self.host}/token",service="imgscope-test"'
            self._send(h, 401, b'{"errors":[{"code":"UNAUTHORIZED","message":"token needed"}]}', challenge)
            return
        if self.redirect_blobs and "/blobs/" in h.path:
            h.send_response(307)
            h.send_header("Location", f"http://{self.upstream.host}{h.path}")
            h.send_header("Content-Length", "0")
            h.end_headers()
            return
        req = urllib.request.Request(f"http://{self.upstream.host}{h.path}")
        if h.headers.get("Accept"):
            req.add_header("Accept", h.headers["Accept"])
        try:
            with urllib.request.urlopen(req, timeout=30) as resp:
                body = resp.read()
                ctype = resp.headers.get("Content-Type", "application/octet-stream")
                status = resp.status
        except urllib.error.HTTPError as exc:
            body, ctype, status = exc.read(), exc.headers.get("Content-Type", ""), exc.code
        if self.corrupt_blobs and "/blobs/" in h.path and len(body) > 100:
            body = body[:-40] + bytes(b ^ 0xFF for b in body[-40:])
        self._send(h, status, body, ctype=ctype)

    @staticmethod
    def _send(
        h: BaseHTTPRequestHandler,
        status: int,
        body: bytes,
        challenge: str | None = None,
        ctype: str = "application/json",
    ) -> None:
        h.send_response(status)
        h.send_header("Content-Type", ctype)
        h.send_header("Content-Length", str(len(body)))
        if challenge:
            h.send_header("WWW-Authenticate", challenge)
        h.end_headers()
        h.wfile.write(body)

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def proxy(plain: Registry) -> Iterator[Proxy]:
    p = Proxy(plain)
    yield p
    p.stop()


def test_bearer_token_auth(proxy: Proxy) -> None:
    fetched = _load(f"registry://{proxy.host}/demo/app:v2", use_cache=False)
    _same_image(fetched, _load(str(SAMPLES / "demo-legacy.tar")))
    assert proxy.tokens and all("scope=repository%3Ademo%2Fapp%3Apull" in t for t in proxy.tokens)
    assert all("service=imgscope-test" in t for t in proxy.tokens)
    # One token for the whole load, not one per request.
    assert len(proxy.tokens) == 1


def test_bearer_token_with_credentials(plain: Registry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    p = Proxy(plain, token_user=("robot", "tok-pass"))
    try:
        monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path))
        (tmp_path / "config.json").write_text(json.dumps({"auths": {p.host: {"username": "robot", "password": "x"}}}))
        with pytest.raises(ImgscopeError, match="token service said 401: credentials refused"):
            _load(f"registry://{p.host}/demo/app:v2", use_cache=False)
        (tmp_path / "config.json").write_text(
            json.dumps({"auths": {p.host: {"username": "robot", "password": "tok-pass"}}})
        )
        assert _load(f"registry://{p.host}/demo/app:v2", use_cache=False).layers
    finally:
        p.stop()


def test_redirected_blobs_do_not_carry_the_token(proxy: Proxy) -> None:
    proxy.redirect_blobs = True
    before = len(proxy.upstream.requests())
    fetched = _load(f"registry://{proxy.host}/demo/app:v2", use_cache=False)
    assert len(fetched.layers) == 7
    upstream_blobs = [p for m, p in proxy.upstream.requests()[before:] if m == "GET" and "/blobs/" in p]
    assert len(upstream_blobs) >= 2  # the config and the layers came from where the proxy sent us
    assert "Bearer t0k3n" not in (proxy.upstream.log.read_text())


def test_tampered_blob_is_refused(proxy: Proxy, helpers: list[ScanWorker]) -> None:
    proxy.corrupt_blobs = True
    with pytest.raises(ImgscopeError, match=r"has digest sha256:[0-9a-f]{64}: corrupt or tampered"):
        _load(f"registry://{proxy.host}/demo/app:v2", use_cache=False)


@pytest.mark.parametrize(
    ("status", "words"), [(429, "rate limited; retry after 30s"), (403, "access denied"), (500, "500")]
)
def test_http_errors_name_registry_and_repository(proxy: Proxy, status: int, words: str) -> None:
    def fault(h: BaseHTTPRequestHandler) -> bool:
        if "/manifests/" not in h.path:
            return False
        body = b'{"errors":[{"code":"TOOMANYREQUESTS","message":"slow down"}]}' if status == 429 else b""
        h.send_response(status)
        h.send_header("Retry-After", "30")
        h.send_header("Content-Length", str(len(body)))
        h.end_headers()
        h.wfile.write(body)
        return True

    proxy.fault = fault
    done = _imgscope("inspect", f"registry://{proxy.host}/demo/app:v2")
    assert done.returncode == 2
    assert done.stderr.startswith(f"imgscope: error: registry {proxy.host}, repository demo/app: manifest v2: ")
    assert words in done.stderr and done.stderr.count("\n") == 1


def test_timeout_is_a_one_line_error(proxy: Proxy) -> None:
    def fault(h: BaseHTTPRequestHandler) -> bool:
        if "/manifests/" in h.path:
            time.sleep(2)
            return True
        return False

    proxy.fault = fault
    env = {**os.environ, "IMGSCOPE_REGISTRY_TIMEOUT": "0.5"}
    done = _imgscope("inspect", f"registry://{proxy.host}/demo/app:v2", env=env)
    assert done.returncode == 2
    assert "timed out after 0.5s" in done.stderr and f"registry {proxy.host}" in done.stderr
    assert done.stderr.count("\n") == 1


def test_unknown_host_is_a_one_line_error() -> None:
    done = _imgscope("inspect", "registry://imgscope-16.invalid:5000/a/b")
    assert done.returncode == 2
    assert done.stderr == (
        "imgscope: error: registry imgscope-16.invalid:5000, repository a/b: "
        "cannot reach imgscope-16.invalid:5000: unknown host\n"
    )


# --------------------------------------------------------------------------- every command


def test_every_command_takes_a_registry_ref(plain: Registry, tmp_path: Path) -> None:
    ref = f"registry://{plain.host}/demo/app:v2"
    archive = str(SAMPLES / "demo-legacy.tar")
    done = _imgscope("diff", "--json", archive, ref)
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)["summary"]
    assert summary["size_delta"] == 0 and summary["shared_layers"] == 7
    done = _imgscope("shared", "--json", archive, ref)
    assert done.returncode == 0, done.stderr
    done = _imgscope("audit", "--json", ref)
    assert done.returncode in (0, 1), done.stderr
    assert json.loads(done.stdout)["image"]["reference"] == ref
    done = _imgscope("ci", "--json", "--baseline", ref, archive)
    assert done.returncode in (0, 1), done.stderr
    growth = json.loads(done.stdout)["growth"]
    assert (growth["baseline"], growth["baseline_kind"], growth["delta"]) == (ref, "image", 0)
    assert growth["before"] == _load(archive).size
    for command in ("inspect", "diff", "shared", "ci", "audit", "explore"):
        assert "--insecure" in _imgscope(command, "--help", env={**os.environ, "COLUMNS": "200"}).stdout


def test_github_action_runs_ci_against_a_registry_baseline(plain: Registry, tmp_path: Path) -> None:
    """The composite action's check step, run as the runner would, with a baseline in the registry."""
    import shutil

    import yaml

    action = yaml.safe_load((Path(__file__).resolve().parent.parent / "action.yml").read_text())
    step = next(s for s in action["runs"]["steps"] if s.get("id") == "check")
    venv_bin = tmp_path / "imgscope-venv" / "bin"
    venv_bin.mkdir(parents=True)
    exe = shutil.which("imgscope", path=str(Path(sys.executable).parent))
    assert exe is not None
    (venv_bin / "imgscope").symlink_to(exe)
    output, summary = tmp_path / "output", tmp_path / "summary.md"
    env = {
        **os.environ,
        "RUNNER_TEMP": str(tmp_path),
        "GITHUB_OUTPUT": str(output),
        "GITHUB_STEP_SUMMARY": str(summary),
        "IMAGE": str(SAMPLES / "demo-legacy.tar"),
        "BASELINE": f"registry://{plain.host}/demo/app:v2",
        "ARGS": "--max-growth 1% --max-size 1MB",
        "INSECURE": "false",
    }
    done = subprocess.run(["bash", "-c", step["run"]], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert output.read_text() == "exit-code=0\n"
    text = summary.read_text()
    assert "max-growth" in text and f"registry://{plain.host}/demo/app:v2" in text
    env["ARGS"] = "--max-size 1kB"
    done = subprocess.run(["bash", "-c", step["run"]], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 1
    assert output.read_text().endswith("exit-code=1\n")


def test_explore_opens_a_file_by_fetching_its_layer_only(plain: Registry) -> None:
    """explore's file viewer reads one file: from a registry, only that layer's blob is downloaded."""
    from imgscope.cli.common import SourceOptions
    from imgscope.explore.content import read_file

    ref = f"registry://{plain.host}/demo/app:v2"
    image = _load(ref)
    layer = 4  # the demo image's /etc/passwd (README of sample_images)
    entry = next(e for e in image.scans[layer].entries if e.path == "/etc/passwd")
    before = len(plain.requests())
    fetched = read_file(ref, SourceOptions(), "/etc/passwd", layer, entry)
    blobs = [p for m, p in plain.requests()[before:] if m == "GET" and "/blobs/" in p]
    from_archive = read_file(str(SAMPLES / "demo-legacy.tar"), SourceOptions(), "/etc/passwd", layer, entry)
    assert fetched.data == from_archive.data and fetched.data
    # Not even the config: the manifest names the layer's blob.
    assert blobs == [f"/v2/demo/app/blobs/{image.layers[layer].digest}"]


def test_plain_http_registry_elsewhere_than_loopback_needs_insecure(
    plain: Registry, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Plain HTTP is refused unless the registry is on loopback or --insecure says so."""
    from imgscope.sources import registry_client

    monkeypatch.setattr(registry_client, "is_loopback", lambda host: False)
    monkeypatch.setattr(registry_client.Endpoint, "loopback", property(lambda self: False))
    ref = f"registry://{plain.host}/demo/app:v2"
    with pytest.raises(ImgscopeError, match=r"does not answer over TLS .*use --insecure"):
        _load(ref, use_cache=False)
    assert _load(ref, use_cache=False, insecure=True).layers


def test_ci_baseline_in_the_registry_is_fetched_once(plain: Registry) -> None:
    """ci checks DiffIDs, yet a warm baseline downloads no layer: its blobs' DiffIDs were recorded by digest."""
    ref = f"registry://{plain.host}/demo/app:v2"
    archive = str(SAMPLES / "demo-legacy.tar")
    config = f"/v2/demo/app/blobs/{_config_digest(plain, 'demo/app', 'v2')}"
    layers = {f"/v2/demo/app/blobs/{digest}" for digest in _layer_digests(plain, "demo/app", "v2")}
    counts = []
    for _ in range(2):
        before = len(plain.requests())
        done = _imgscope("ci", "--json", "--baseline", ref, "--max-growth", "1%", archive)
        assert done.returncode == 0, done.stderr
        assert json.loads(done.stdout)["growth"]["delta"] == 0
        counts.append([p for m, p in plain.requests()[before:] if m == "GET" and "/blobs/" in p])
    assert config in counts[0] and layers <= set(counts[0])
    assert counts[1] == [config]
    # audit checks DiffIDs too; the registry image it reads is vouched for the same way.
    before = len(plain.requests())
    done = _imgscope("audit", "--json", "--base", ref, archive)
    assert done.returncode in (0, 1), done.stderr
    assert [p for m, p in plain.requests()[before:] if m == "GET" and "/blobs/" in p] == [config]


def test_vouched_layers_count_as_checked(plain: Registry) -> None:
    ref = f"registry://{plain.host}/demo/app:v2"
    cold = _load(ref, check_diff_ids=True)
    warm = _load(ref, check_diff_ids=True)
    assert cold.diff_ids_verified and warm.diff_ids_verified
    # Without the record of what each blob held, a cached scan is not proof: the layers are read again.
    from imgscope import cache

    db = cache.open_cache()
    for layer in cold.layers:
        assert layer.digest is not None
        db.put_blob(layer.digest, "sha256:" + "1" * 64)
    before = len(plain.requests())
    again = _load(ref, check_diff_ids=True)
    fetched = [p for m, p in plain.requests()[before:] if m == "GET" and "/blobs/" in p]
    assert {f"/v2/demo/app/blobs/{layer.digest}" for layer in cold.layers} <= set(fetched)
    assert again.diff_ids_verified


def test_a_layer_fetched_now_with_another_diff_id_is_warned_once(plain: Registry, tmp_path: Path) -> None:
    """load_plan warns of a fetched layer's DiffID mismatch; the cache's record of it is no second warning."""
    layout = tmp_path / "layout"
    built = ib.write_oci_layout(layout, ib.ImageSpec(steps=(ib.run("one", ib.file("a.txt", b"a\n" * 100)),)))
    # The config now names another DiffID than the layer's: rewrite config, manifest and index by hand.
    blobs = layout / "blobs" / "sha256"
    config = json.loads(built.config)
    config["rootfs"]["diff_ids"] = ["sha256:" + "2" * 64]
    config_bytes = ib.jdump(config)
    (blobs / ib.sha256(config_bytes).removeprefix("sha256:")).write_bytes(config_bytes)
    index = json.loads((layout / "index.json").read_bytes())
    manifest = json.loads((blobs / index["manifests"][0]["digest"].removeprefix("sha256:")).read_bytes())
    manifest["config"].update(digest=ib.sha256(config_bytes), size=len(config_bytes))
    manifest_bytes = ib.jdump(manifest)
    (blobs / ib.sha256(manifest_bytes).removeprefix("sha256:")).write_bytes(manifest_bytes)
    index["manifests"][0].update(digest=ib.sha256(manifest_bytes), size=len(manifest_bytes))
    (layout / "index.json").write_bytes(ib.jdump(index))
    ref = plain.push(f"oci:{layout}:latest", "mismatch/app:1")
    image = _load(ref)
    about_the_layer = [w for w in image.warnings if built.diff_ids[0] in w]
    assert len(about_the_layer) == 1, image.warnings


def test_credential_helper_answering_json_that_is_not_an_object(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from imgscope.sources import credentials

    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    helper = bin_dir / "docker-credential-imgscopelist"
    helper.write_text('#!/bin/sh\nprintf \'["not", "an", "object"]\'\n')
    helper.chmod(helper.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    _write_config(tmp_path / "config", monkeypatch, {"credHelpers": {"r.example": "imgscopelist"}})
    assert credentials.lookup("r.example") is None


@pytest.mark.parametrize("digest", ["sha256:" + "A" * 64, "sha512:" + "a" * 128])
def test_client_refuses_a_manifest_digest_it_cannot_check(digest: str) -> None:
    from imgscope.sources.registry_client import Endpoint, RegistryClient

    client = RegistryClient(Endpoint("127.0.0.1:1", "x"))  # nothing listens: refused before connecting
    with pytest.raises(ImgscopeError, match="invalid manifest digest"):
        client.manifest(digest)


def test_a_failing_small_layer_stops_the_big_download_at_once(
    proxy: Proxy, tmp_path: Path, helpers: list[ScanWorker]
) -> None:
    """Parallel downloads are taken as they end: the small layer's 404 does not wait for the big layer."""
    import random

    big = random.Random(16).randbytes(4 << 20)
    spec = ib.ImageSpec(
        steps=(ib.run("big", ib.file("big.bin", big)), ib.run("small", ib.file("small.txt", b"small\n")))
    )
    archive = tmp_path / "two.tar"
    ib.write_docker_archive(archive, spec)
    proxy.upstream.push(f"docker-archive:{archive}", "parallel/app:1")
    big_digest, small_digest = _layer_digests(proxy.upstream, "parallel/app", "1")

    def fault(h: BaseHTTPRequestHandler) -> bool:
        if h.headers.get("Authorization") != "Bearer t0k3n":
            return False
        if h.path.endswith(small_digest):
            Proxy._send(h, 404, b'{"errors":[{"code":"BLOB_UNKNOWN","message":"blob unknown"}]}')
            return True
        if h.path.endswith(big_digest):
            with urllib.request.urlopen(f"http://{proxy.upstream.host}{h.path}", timeout=30) as resp:
                body = resp.read()
            h.send_response(200)
            h.send_header("Content-Length", str(len(body)))
            h.end_headers()
            try:
                for at in range(0, len(body), 64 << 10):  # about 13 s for the whole blob
                    h.wfile.write(body[at : at + (64 << 10)])
                    h.wfile.flush()
                    time.sleep(0.2)
                sent_all.set()
            except OSError:
                pass  # the client stopped reading
            return True
        return False

    proxy.fault = fault
    sent_all = threading.Event()
    with pytest.raises(ImgscopeError, match="404") as info:
        _load(f"registry://{proxy.host}/parallel/app:1", use_cache=False)
    assert small_digest in info.value.message
    # The error came while the big blob was still being sent (waiting for it, the load would
    # have ended only after the whole blob): an order of events, not a time bound.
    assert not sent_all.is_set()


def test_one_tls_context_per_host_for_all_the_parallel_downloads(
    tls: Registry, monkeypatch: pytest.MonkeyPatch
) -> None:
    from imgscope.sources import registry_client

    built: list[tuple[str, bool]] = []
    real = registry_client._tls_context

    def counting(host: str, verify: bool) -> object:
        built.append((host, verify))
        return real(host, verify)

    monkeypatch.setattr(registry_client, "_tls_context", counting)
    monkeypatch.delenv("DOCKER_CERT_PATH", raising=False)
    client = registry.client_for(registry.parse(f"registry://{tls.host}/secure/app:1"), LoadOptions(insecure=True))
    image = registry.load(
        f"registry://{tls.host}/secure/app:1", LoadOptions(insecure=True, use_cache=False), client=client
    )
    assert len({layer.digest for layer in image.layers}) > 1  # several downloads, side by side
    assert sum(1 for m, p in client.requests if "/blobs/" in p) > 2
    assert built == [(tls.host, False)]


def test_credentials_are_looked_up_once_per_client(basic: Registry) -> None:
    from imgscope.sources.registry_client import Endpoint, RegistryClient

    asked: list[str] = []

    def lookup(host: str) -> tuple[str, str]:
        asked.append(host)
        return USER, "wrong"

    client = RegistryClient(Endpoint(basic.host, "private/app"), lookup=lookup)
    with pytest.raises(ImgscopeError, match="refused"):
        registry.load(f"registry://{basic.host}/private/app:1", LoadOptions(use_cache=False), client=client)
    assert asked == [basic.host]
