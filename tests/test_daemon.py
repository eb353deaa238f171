"""The daemon source against a real engine, with Docker itself as the oracle.

Oracles: the DiffIDs imgscope computes from ``docker save``'s stream equal
``docker image inspect``'s ``RootFS.Layers``; each layer's size as imgscope
counts it equals ``docker history``'s size for that step (empty steps 0).
Endpoint resolution, history alignment and error wording are also checked
without an engine.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from imgscope.errors import ImgscopeError
from imgscope.sources import daemon
from imgscope.sources.common import LoadOptions

TEST_IMAGES = ("imgscope-test/layers:latest", "imgscope-test/empty:latest")


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    full_env = {**os.environ, **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "imgscope", *args], capture_output=True, text=True, env=full_env, timeout=300
    )


# --------------------------------------------------------------------------- without an engine


def test_endpoint_docker_host_wins(tmp_path: Path) -> None:
    env = {
        "DOCKER_HOST": "tcp://127.0.0.1:2376",
        "DOCKER_TLS_VERIFY": "1",
        "DOCKER_CERT_PATH": str(tmp_path),
        "DOCKER_CONTEXT": "other",
    }
    (tmp_path / "ca.pem").write_text("x")
    ep = daemon.resolve_endpoint(env=env, home=tmp_path)
    assert ep.url == "tcp://127.0.0.1:2376"
    assert ep.origin == "DOCKER_HOST"
    assert ep.tls is not None and ep.tls.verify and ep.tls.ca == str(tmp_path / "ca.pem")
    assert ep.tls.cert is None


def _write_context(home: Path, name: str, host: str) -> None:
    digest = hashlib.sha256(name.encode()).hexdigest()
    meta = home / ".docker" / "contexts" / "meta" / digest
    meta.mkdir(parents=True)
    (meta / "meta.json").write_text(json.dumps({"Name": name, "Endpoints": {"docker": {"Host": host}}}))


def test_endpoint_current_context(tmp_path: Path) -> None:
    _write_context(tmp_path, "remote", "unix:///run/elsewhere.sock")
    (tmp_path / ".docker" / "config.json").write_text(json.dumps({"currentContext": "remote"}))
    ep = daemon.resolve_endpoint(env={}, home=tmp_path)
    assert ep.url == "unix:///run/elsewhere.sock"
    assert "context remote" in ep.label


def test_endpoint_docker_context_env_beats_config(tmp_path: Path) -> None:
    _write_context(tmp_path, "a", "unix:///a.sock")
    _write_context(tmp_path, "b", "tcp://127.0.0.1:1")
    (tmp_path / ".docker" / "config.json").write_text(json.dumps({"currentContext": "a"}))
    assert daemon.resolve_endpoint(env={"DOCKER_CONTEXT": "b"}, home=tmp_path).url == "tcp://127.0.0.1:1"


def test_endpoint_missing_context_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ImgscopeError, match="docker context 'gone'"):
        daemon.resolve_endpoint(env={"DOCKER_CONTEXT": "gone"}, home=tmp_path)


def test_endpoint_rootless_then_default(tmp_path: Path) -> None:
    env = {"XDG_RUNTIME_DIR": str(tmp_path)}
    assert daemon.resolve_endpoint(env=env, home=tmp_path).url == "unix:///var/run/docker.sock"
    (tmp_path / "docker.sock").touch()
    assert daemon.resolve_endpoint(env=env, home=tmp_path).url == f"unix://{tmp_path}/docker.sock"
    # "default" context means: the default rules.
    (tmp_path / ".docker").mkdir()
    (tmp_path / ".docker" / "config.json").write_text(json.dumps({"currentContext": "default"}))
    assert daemon.resolve_endpoint(env=env, home=tmp_path).url == f"unix://{tmp_path}/docker.sock"


def test_endpoint_podman(tmp_path: Path) -> None:
    assert (
        daemon.resolve_endpoint(True, env={"CONTAINER_HOST": "unix:///x.sock"}, home=tmp_path).url == "unix:///x.sock"
    )
    (tmp_path / "podman").mkdir()
    (tmp_path / "podman" / "podman.sock").touch()
    ep = daemon.resolve_endpoint(True, env={"XDG_RUNTIME_DIR": str(tmp_path)}, home=tmp_path)
    if not os.path.exists("/run/podman/podman.sock") or os.geteuid() != 0:
        assert ep.url == f"unix://{tmp_path}/podman/podman.sock"
    assert ep.engine == "podman"


def test_unreachable_daemon_message() -> None:
    result = run_cli("inspect", "docker://busybox", env={"DOCKER_HOST": "unix:///nonexistent"})
    assert result.returncode == 2
    assert result.stderr.strip() == (
        "imgscope: error: cannot reach the docker daemon at unix:///nonexistent (DOCKER_HOST): "
        "no such socket (is the daemon running?)"
    )
    assert "Traceback" not in result.stderr


def test_refused_tcp_message() -> None:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    result = run_cli("inspect", "some/image", env={"DOCKER_HOST": f"tcp://127.0.0.1:{port}"})
    assert result.returncode == 2
    assert (
        f"cannot reach the docker daemon at tcp://127.0.0.1:{port} (DOCKER_HOST): connection refused" in result.stderr
    )


def test_daemon_that_does_not_answer(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "hung.sock"
    server = socket.socket(socket.AF_UNIX)
    server.bind(str(path))
    server.listen(4)
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                accepted.append(server.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    monkeypatch.setenv("DOCKER_HOST", f"unix://{path}")
    monkeypatch.setattr(daemon, "PROBE_TIMEOUT", 1.0)
    try:
        with pytest.raises(
            ImgscopeError, match=r"cannot reach the docker daemon at unix://.*hung.sock .*no answer in time"
        ):
            daemon.load("x", "x", LoadOptions())
    finally:
        stop.set()
        thread.join()
        for conn in accepted:
            conn.close()
        server.close()


@pytest.mark.skipif(not hasattr(os, "fork") or os.geteuid() != 0, reason="needs root, to drop to another user")
def test_permission_denied_socket() -> None:
    """A socket we may not open (mode 0600, another owner) is named with the reason."""
    import shutil
    import tempfile

    import docker.errors  # noqa: F401 - loaded before the child drops its privileges

    directory = tempfile.mkdtemp(prefix="imgscope-perm-")
    os.chmod(directory, 0o755)
    path = os.path.join(directory, "private.sock")
    server = socket.socket(socket.AF_UNIX)
    server.bind(path)
    server.listen(1)
    os.chmod(path, 0o600)
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: become nobody, try, report through the pipe
        try:
            os.setgid(65534)
            os.setuid(65534)
            os.environ["DOCKER_HOST"] = f"unix://{path}"
            daemon.load("x", "x", LoadOptions())
            message = "no error"
        except ImgscopeError as exc:
            message = str(exc)
        except BaseException as exc:
            message = f"unexpected {type(exc).__name__}: {exc}"
        os.write(write_end, message.encode())
        os._exit(0)
    os.close(write_end)
    try:
        message = os.read(read_end, 4096).decode()
        os.waitpid(pid, 0)
    finally:
        os.close(read_end)
        server.close()
        shutil.rmtree(directory)
    assert message == (
        f"cannot reach the docker daemon at unix://{path} (DOCKER_HOST): "
        "permission denied on the socket (add your user to the docker group, or use sudo)"
    )


def test_why_names_permission_denied() -> None:
    inner = PermissionError(13, "Permission denied")
    try:
        try:
            raise ConnectionError("Connection aborted.", inner)
        except ConnectionError as exc:
            raise RuntimeError("Error while fetching server API version") from exc
    except RuntimeError as outer:
        assert daemon.why(outer).startswith("permission denied on the socket")


def test_chunk_reader_turns_transport_errors_into_one_line() -> None:
    def chunks() -> Any:
        yield b"x" * 10
        raise ConnectionResetError(104, "Connection reset by peer")

    reader = daemon.ChunkReader(chunks(), lambda exc: ImgscopeError(f"stopped mid-stream: {daemon.why(exc)}"))
    assert reader.read(10) == b"x" * 10
    with pytest.raises(ImgscopeError, match="stopped mid-stream: the connection was reset"):
        reader.read(10)


def test_align_history_uses_sizes_and_instructions() -> None:
    created = [
        "/bin/sh -c #(nop) COPY file:abc in /bin/busybox ",
        "/bin/sh -c #(nop)  ENV A=1",
        "/bin/sh -c rm /x",
        "/bin/sh -c #(nop)  LABEL a=b",
        "/bin/sh -c echo x > /y",
        '/bin/sh -c #(nop)  CMD ["sh"]',
    ]
    assert daemon.align_history([100, 0, 0, 0, 2, 0], created, [100, 0, 2]) == [False, True, False, True, False, True]
    # Two size-0 steps the instructions cannot tell apart: refuse to guess.
    unknown = ["/bin/sh -c #(nop) COPY f in /", "whatever", "whatever"]
    assert daemon.align_history([5, 0, 0], unknown, [5, 0]) is None
    # A step with bytes must own a layer; more layers than steps cannot align.
    assert daemon.align_history([5], ["RUN x"], [5, 1]) is None
    assert daemon.align_history([], [], [3]) == []


def test_plan_reads_batches_what_is_cheap() -> None:
    listed = {
        "/etc": "C",
        "/etc/a.conf": "C",
        "/etc/b.conf": "C",
        "/usr": "C",
        "/usr/lib": "C",
        "/usr/lib/big.so": "C",
        "/new": "A",
        "/new/x": "A",
        "/new/vol": "A",
        "/gone": "D",
        "/data": "C",
        "/data/f": "C",
    }
    image_bytes = {"/etc": 10_000, "/usr": 10**9, "/usr/lib": 10**9, "/data": 10}
    reads = daemon.plan_reads(listed, ["/new/vol", "/data"], lambda p: image_bytes.get(p, 0))
    assert dict(reads) == {
        "/etc": True,  # 10 kB of unchanged files beat two requests
        "/usr": False,  # a gigabyte does not: read the directories alone, then the file
        "/usr/lib": False,
        "/usr/lib/big.so": False,
        "/new": False,  # added, but a volume is mounted inside it
        "/new/x": False,
        "/new/vol": False,
        "/data": False,  # a mount point itself: its content is the volume's
        "/data/f": False,
    }
    assert len(reads) == len(dict(reads))
    # Without image sizes only added directories are read whole.
    assert dict(daemon.plan_reads({"/a": "A", "/a/b": "A", "/c": "C", "/c/d": "C"}, [], None)) == {
        "/a": True,
        "/c": False,
        "/c/d": False,
    }


def test_help_does_not_import_docker() -> None:
    code = "import sys; from imgscope.cli import app; import imgscope.cli.container; print('docker' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"


# --------------------------------------------------------------------------- against the engine


def _history_oldest_first(client: Any, tag: str) -> list[dict[str, Any]]:
    return list(reversed(client.api.history(tag)))


@pytest.mark.daemon
@pytest.mark.parametrize("tag", TEST_IMAGES)
def test_diff_ids_and_sizes_match_docker(docker_client: Any, daemon_images: dict[str, str], tag: str) -> None:
    image = daemon.load(tag, tag, LoadOptions(use_cache=False))
    attrs = docker_client.api.inspect_image(tag)
    assert [s.diff_id for s in image.scans] == attrs["RootFS"]["Layers"]
    assert image.image_id == attrs["Id"]
    assert tag in image.tags
    assert "docker-archive" in image.source
    # docker history, newest first in the API: pair it with the config's history.
    api_history = _history_oldest_first(docker_client, tag)
    steps = image.config.history
    assert len(api_history) == len(steps)
    layer = 0
    for api_step, step in zip(api_history, steps, strict=True):
        assert api_step["CreatedBy"] == step.created_by
        if step.empty_layer:
            assert api_step["Size"] == 0
            continue
        assert image.scans[layer].size == api_step["Size"], f"layer {layer}: {step.created_by}"
        layer += 1
    assert layer == len(image.scans)
    assert image.size == attrs["Size"]


@pytest.mark.daemon
@pytest.mark.parametrize("tag", TEST_IMAGES)
def test_warm_cache_does_not_call_save(
    docker_client: Any, daemon_images: dict[str, str], tag: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    streamed = daemon.load(tag, tag, LoadOptions())

    def no_save(*_args: Any, **_kwargs: Any) -> Any:
        raise AssertionError("save was called although every layer is cached")

    monkeypatch.setattr(daemon.Daemon, "_save_response", no_save)
    cached = daemon.load(tag, tag, LoadOptions())
    assert "scan cache" in cached.source
    assert cached.scans == streamed.scans
    assert cached.image_id == streamed.image_id
    assert cached.tags == streamed.tags
    a, b = cached.config, streamed.config
    for name in (
        "architecture",
        "os",
        "variant",
        "created",
        "entrypoint",
        "cmd",
        "env",
        "user",
        "working_dir",
        "exposed_ports",
        "volumes",
        "labels",
        "healthcheck",
        "diff_ids",
    ):
        assert getattr(a, name) == getattr(b, name), name
    assert [(h.created_by, h.empty_layer, h.comment or None) for h in a.history] == [
        (h.created_by, h.empty_layer, h.comment or None) for h in b.history
    ]
    # --no-cache streams again.
    monkeypatch.undo()
    assert "scan cache" not in daemon.load(tag, tag, LoadOptions(use_cache=False)).source


@pytest.mark.daemon
def test_partial_cache_still_streams(docker_client: Any, daemon_images: dict[str, str]) -> None:
    from imgscope import cache

    tag = TEST_IMAGES[0]
    image = daemon.load(tag, tag, LoadOptions())
    cache.open_cache().clear()
    cache.open_cache().put(image.scans[0])
    again = daemon.load(tag, tag, LoadOptions())
    assert "scan cache" not in again.source
    assert again.scans == image.scans


@pytest.mark.daemon
def test_missing_image_message_and_exit_2(docker_client: Any) -> None:
    result = run_cli("inspect", "docker://imgscope-test/does-not-exist:never")
    assert result.returncode == 2
    assert "image imgscope-test/does-not-exist:never not found in the docker daemon at" in result.stderr
    assert "use --pull to pull it" in result.stderr
    assert result.stdout == ""


@pytest.mark.daemon
def test_api_error_is_one_line(docker_client: Any) -> None:
    result = run_cli("inspect", "docker://Not A Valid Reference")
    assert result.returncode == 2
    assert result.stderr.startswith("imgscope: error: ")
    assert len(result.stderr.strip().splitlines()) == 1


@pytest.mark.daemon
def test_inspect_json_from_the_daemon(docker_client: Any, daemon_images: dict[str, str]) -> None:
    import jsonschema

    from imgscope.schemas import load_schema

    result = run_cli("inspect", "imgscope-test/layers", "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    jsonschema.validate(report, load_schema("inspect"))
    attrs = docker_client.api.inspect_image("imgscope-test/layers")
    assert report["image"]["size"] == attrs["Size"]
    assert report["image"]["tags"] == ["imgscope-test/layers:latest"]


class _CutSocket:
    """The raw socket file under a save response, reset by the peer after ``limit`` bytes."""

    def __init__(self, raw: Any, limit: int) -> None:
        self._raw = raw
        self._left = limit

    def readinto(self, buffer: Any) -> int:
        if self._left <= 0:
            raise ConnectionResetError(104, "Connection reset by peer")
        view = memoryview(buffer)[: self._left]
        n = int(self._raw.readinto(view) or 0)
        self._left -= n
        return n


class _CutFile:
    """The buffered socket file http.client read the headers from, over a :class:`_CutSocket`."""

    def __init__(self, fp: Any, limit: int) -> None:
        self._fp = fp
        self.raw = _CutSocket(fp.raw, limit)

    def read1(self, size: int) -> bytes:
        return bytes(self._fp.read1(size))

    def flush(self) -> None:
        self._fp.flush()

    def close(self) -> None:
        self._fp.close()


@pytest.mark.daemon
@pytest.mark.parametrize("direct", [True, False], ids=["off-the-socket", "through-requests"])
def test_stream_broken_mid_way(
    docker_client: Any, daemon_images: dict[str, str], monkeypatch: pytest.MonkeyPatch, direct: bool
) -> None:
    """A connection reset mid-save ends in one line naming the endpoint, whichever way the body is read."""
    original = daemon.Daemon._save_response
    if not direct:
        monkeypatch.setattr("imgscope.sources.httpbody.direct_body", lambda *a, **k: None)

    def broken(self: daemon.Daemon, image_id: str, platform: str | None) -> Any:
        response = original(self, image_id, platform)
        if direct:
            response.raw._fp.fp = _CutFile(response.raw._fp.fp, 100_000)
        else:
            chunks = response.iter_content(daemon.CHUNK, False)

            def cut() -> Any:
                yield next(chunks)
                raise ConnectionResetError(104, "Connection reset by peer")

            monkeypatch.setattr(response, "iter_content", lambda *a, **k: cut())
        return response

    monkeypatch.setattr(daemon.Daemon, "_save_response", broken)
    with pytest.raises(ImgscopeError, match=r"stopped sending image imgscope-test/layers mid-stream: the connection"):
        daemon.load("imgscope-test/layers", "imgscope-test/layers", LoadOptions(use_cache=False))


@pytest.mark.daemon
def test_platform_without_api_support_warns(docker_client: Any, daemon_images: dict[str, str]) -> None:
    image = daemon.load("imgscope-test/layers", "x", LoadOptions(platform="linux/s390x", use_cache=False))
    if daemon._api_version(docker_client) >= daemon.SAVE_PLATFORM_API:
        pytest.skip("this engine can pick a platform on save")
    assert any("--platform linux/s390x ignored" in w for w in image.warnings)
    same = daemon.load("imgscope-test/layers", "x", LoadOptions(platform=f"linux/{image.config.architecture}"))
    assert not any("--platform" in w for w in same.warnings)


@pytest.mark.daemon
def test_memory_stays_flat_while_streaming(docker_client: Any, daemon_images: dict[str, str]) -> None:
    """The save is read off the socket into one fixed buffer: no buffer grows with the archive."""
    from imgscope.sources.httpbody import SocketBody

    seen: list[tuple[int, int]] = []
    original = SocketBody.readinto

    def spy(self: SocketBody, buffer: memoryview) -> int:
        n = original(self, buffer)
        seen.append((len(self._buf), n))
        return n

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(SocketBody, "readinto", spy)
        image = daemon.load("imgscope-test/layers", "x", LoadOptions(use_cache=False))
    assert seen, "the save stream was not read off the socket"
    assert {size for size, _ in seen} == {SocketBody.BUFFER}
    assert sum(n for _, n in seen) >= sum(s.tar_bytes for s in image.scans)


@pytest.fixture(scope="module")
def podman_socket(
    docker_client: Any, daemon_images: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """A `podman system service` we start on a private socket, holding imgscope-test/layers.

    podman cannot run containers here, but it loads and saves images; the image is
    copied from Docker (`docker save | podman load`) so no registry is needed.
    """
    import shutil
    import time

    if shutil.which("podman") is None:
        pytest.skip("podman is not installed")
    sock = tmp_path_factory.mktemp("podman") / "podman.sock"
    service = subprocess.Popen(
        ["podman", "system", "service", "--time=0", f"unix://{sock}"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 30
        while not sock.exists():
            if service.poll() is not None or time.monotonic() > deadline:
                err = service.stderr.read().decode() if service.stderr else ""
                pytest.skip(f"podman system service did not start: {err.strip()[:200]}")
            time.sleep(0.1)
        data = b"".join(docker_client.images.get(TEST_IMAGES[0]).save(named=True))
        subprocess.run(["podman", "load"], input=data, check=True, capture_output=True)
        yield f"unix://{sock}"
        subprocess.run(["podman", "rmi", "-f", "localhost/" + TEST_IMAGES[0]], capture_output=True)
    finally:
        service.terminate()
        service.wait(timeout=30)


@pytest.mark.daemon
def test_podman_diff_ids_and_tar_sizes(podman_socket: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """podman's history counts layer tar bytes (not Docker's lstat sum): compare with those."""
    monkeypatch.setenv("CONTAINER_HOST", podman_socket)
    ref = TEST_IMAGES[0]
    image = daemon.load(ref, "podman://" + ref, LoadOptions(), podman=True)
    engine = daemon.connect(podman=True)
    try:
        attrs = engine.client.api.inspect_image(ref)
        history = list(reversed(engine.client.api.history(ref)))
    finally:
        engine.close()
    assert image.source.startswith("podman daemon " + podman_socket)
    assert [s.diff_id for s in image.scans] == attrs["RootFS"]["Layers"]
    owned = [h["Size"] for h, step in zip(history, image.config.history, strict=True) if not step.empty_layer]
    assert owned == [s.tar_bytes for s in image.scans]
    # Same layers, same Docker-counted sizes as through Docker.
    docker_image = daemon.load(ref, ref, LoadOptions())
    assert [s.size for s in image.scans] == [s.size for s in docker_image.scans]
    # Warm cache: podman's history aligns too, without a save.
    monkeypatch.setattr(daemon.Daemon, "_save_response", lambda *a, **k: pytest.fail("save called"))
    cached = daemon.load(ref, "podman://" + ref, LoadOptions(), podman=True)
    assert "scan cache" in cached.source
    assert [h.empty_layer for h in cached.config.history] == [h.empty_layer for h in image.config.history]


def test_podman_cli_without_socket(tmp_path: Path) -> None:
    result = run_cli("inspect", "podman://x", env={"CONTAINER_HOST": f"unix://{tmp_path}/none.sock"})
    assert result.returncode == 2
    assert "cannot reach the podman daemon at unix://" in result.stderr
    assert "podman system service" in result.stderr


@pytest.mark.daemon
def test_save_stream_scanned_by_a_helper_reads_the_same(
    docker_client: Any, daemon_images: dict[str, str], monkeypatch: pytest.MonkeyPatch, started_helpers: list[Any]
) -> None:
    """The save stream's layers relayed to a helper process (``scanproc``): same scans, and no helper left."""
    started = started_helpers
    monkeypatch.delenv("IMGSCOPE_WORKERS", raising=False)
    daemon.load("imgscope-test/layers", "x", LoadOptions(use_cache=False))
    assert not started  # by default a stream is scanned here: a helper costs more than it takes over
    monkeypatch.setenv("IMGSCOPE_WORKERS", "1")
    here = daemon.load("imgscope-test/layers", "x", LoadOptions(use_cache=False))
    assert not started
    monkeypatch.setenv("IMGSCOPE_WORKERS", "2")
    helped = daemon.load("imgscope-test/layers", "x", LoadOptions(use_cache=False))
    assert len(started) == 1 and started[0]._proc.poll() is not None
    assert helped.scans == here.scans
    # With a content visitor the layers are scanned here, with no helper: the visitor lives in this process.
    seen: list[str] = []
    daemon.load("imgscope-test/layers", "x", LoadOptions(use_cache=False, visitor=lambda p, s: seen.append(p)))
    assert seen and len(started) == 1
