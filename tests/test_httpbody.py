"""The HTTP body read off the socket (imgscope.sources.httpbody), against real sockets.

The peer is the other end of a socket pair, or a loopback HTTP server driven
through requests as the Docker SDK drives the engine.  Every socket has a
timeout: a reader that waits for bytes past the body's end (the engine keeps
its connections open) fails instead of hanging the suite.
"""

from __future__ import annotations

import http.server
import io
import random
import socket
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from imgscope.errors import ImgscopeError
from imgscope.sources.httpbody import SocketBody, direct_body


def fail(exc: BaseException) -> ImgscopeError:
    return ImgscopeError(f"stopped mid-stream: {exc}")


def chunked(payload: bytes, sizes: Iterator[int], extension: bytes = b"", trailers: bytes = b"") -> bytes:
    """``payload`` framed as HTTP/1.1 chunks of the given sizes."""
    out = bytearray()
    pos = 0
    while pos < len(payload):
        size = min(next(sizes), len(payload) - pos)
        out += b"%x%s\r\n" % (size, extension) + payload[pos : pos + size] + b"\r\n"
        pos += size
    return bytes(out + b"0\r\n" + trailers + b"\r\n")


def read_all(body: SocketBody, size: int = 1 << 20) -> bytes:
    out = bytearray()
    buffer = bytearray(size)
    while True:
        n = body.readinto(memoryview(buffer))
        if not n:
            return bytes(out)
        out += buffer[:n]


class Peer:
    """The sending end of a socket pair, on its own thread."""

    def __init__(self, theirs: socket.socket, thread: threading.Thread) -> None:
        self._socket = theirs
        self._thread = thread

    def close(self) -> None:
        """Close once every byte was sent: the reader may stop before the last send returns."""
        self._thread.join(5)
        self._socket.close()


def serve(wire: bytes, pieces: int = 1, close: bool = False, head: bytes = b"") -> tuple[Any, Peer]:
    """A socket file whose peer sends ``head`` + ``wire`` in ``pieces`` sends, keeping the connection open."""
    ours, theirs = socket.socketpair()
    ours.settimeout(5)

    def send() -> None:
        data = head + wire
        step = max(1, len(data) // pieces)
        for at in range(0, len(data), step):
            theirs.sendall(data[at : at + step])
        if close:
            theirs.close()

    thread = threading.Thread(target=send, daemon=True)
    thread.start()
    fp = ours.makefile("rb")
    if head:
        assert fp.readline() == head  # the headers were read through the buffered file, as http.client does
    return fp, Peer(theirs, thread)


PAYLOAD = random.Random(18).randbytes(3 << 20)


@pytest.mark.parametrize("pieces", [1, 7, 4099])
@pytest.mark.parametrize("read_size", [1 << 20, 1000])
def test_a_chunked_body_reads_back_its_payload_and_stops_at_its_end(pieces: int, read_size: int) -> None:
    rng = random.Random(pieces)
    sizes = iter(lambda: rng.choice([1, 2, 100, 32768, 70000]), None)
    wire = chunked(PAYLOAD, sizes)
    fp, peer = serve(wire, pieces, head=b"HTTP/1.1 200 OK\r\n")  # the connection stays open after the body
    seen: list[int] = []
    body = SocketBody(fp, chunked=True, length=None, fail=fail, on_bytes=seen.append)
    assert read_all(body, read_size) == PAYLOAD
    assert body.finished and body.total == len(PAYLOAD) and seen[-1] == len(PAYLOAD)
    assert body.readinto(memoryview(bytearray(10))) == 0
    peer.close()


def test_chunk_extensions_and_trailers_are_passed_over() -> None:
    trailers = b"X-Sum: 1\r\nX-Other: 2\r\n"
    wire = chunked(PAYLOAD[:100_000], iter([5000] * 100), extension=b';name="v"', trailers=trailers)
    fp, peer = serve(wire, 3)
    assert read_all(SocketBody(fp, chunked=True, length=None, fail=fail)) == PAYLOAD[:100_000]
    peer.close()


def test_a_length_delimited_body_leaves_what_follows_unread() -> None:
    fp, peer = serve(PAYLOAD[:300_000] + b"NEXT RESPONSE", 5)
    body = SocketBody(fp, chunked=False, length=300_000, fail=fail)
    assert read_all(body) == PAYLOAD[:300_000]
    peer.close()
    assert SocketBody(io.BufferedReader(io.BytesIO(b"")), chunked=False, length=0, fail=fail).finished


@pytest.mark.parametrize(
    ("wire", "reason"),
    [
        (b"10\r\n" + b"x" * 8, "closed before the body ended"),  # cut inside a chunk
        (b"10\r\n" + b"x" * 16 + b"\r\n", "closed before the body ended"),  # cut before the last chunk
        (b"zz\r\n", "not hexadecimal"),
        (b"-1\r\nx", "not hexadecimal"),
        (b"0x10\r\n" + b"x" * 16, "not hexadecimal"),
        (b"1_0\r\n" + b"x" * 16, "not hexadecimal"),
        (b"4\r\nabcdXY", "does not end with CRLF"),
        (b"1" * 5000, "too long"),
    ],
)
def test_a_broken_chunked_body_fails_in_one_line(wire: bytes, reason: str) -> None:
    fp, _ = serve(wire, close=True)
    body = SocketBody(fp, chunked=True, length=None, fail=fail)
    with pytest.raises(ImgscopeError, match=reason):
        read_all(body)


def test_a_cut_length_delimited_body_fails() -> None:
    fp, _ = serve(b"x" * 1000, close=True)
    with pytest.raises(ImgscopeError, match="closed before the body ended"):
        read_all(SocketBody(fp, chunked=False, length=2000, fail=fail))


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: the connection outlives the body

    def do_GET(self) -> None:
        self.send_response(200)
        if self.path == "/chunked":
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            self.wfile.write(chunked(PAYLOAD, iter([32768] * 1000)))
        else:
            self.send_header("Content-Length", str(len(PAYLOAD)))
            self.end_headers()
            self.wfile.write(PAYLOAD)

    def log_message(self, *args: Any) -> None:
        pass


class _Server(http.server.ThreadingHTTPServer):
    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that closes before the body ends (as the test does) is expected."""


@pytest.fixture(scope="module", params=["http", "https"])
def loopback(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Any]]:
    """A loopback server, plain or TLS (a daemon behind ``tcp://...:2376`` with ``--tlsverify``): (url, verify)."""
    server = _Server(("127.0.0.1", 0), _Handler)
    verify: Any = True
    if request.param == "https":
        import ssl

        from tests.registryserver import make_ca

        ca, cert, key = make_ca(tmp_path_factory.mktemp("tls"))
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(cert, key)
        server.socket = context.wrap_socket(server.socket, server_side=True)
        verify = str(ca)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"{request.param}://127.0.0.1:{server.server_address[1]}", verify
    server.shutdown()
    server.server_close()


@pytest.mark.parametrize("path", ["/chunked", "/length"])
def test_a_requests_response_is_taken_over_unread(loopback: tuple[str, Any], path: str) -> None:
    import requests

    url, verify = loopback
    with requests.Session() as session:
        response = session.get(url + path, stream=True, timeout=5, verify=verify)
        body = direct_body(response, fail)
        assert body is not None
        assert read_all(body) == PAYLOAD
        response.close()
        # Once requests has read from a body, it is left to requests.
        started = session.get(url + path, stream=True, timeout=5, verify=verify)
        first = next(started.iter_content(10, False))
        assert direct_body(started, fail) is None
        assert first == PAYLOAD[:10]
        started.close()
