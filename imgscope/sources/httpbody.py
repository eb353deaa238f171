"""An HTTP/1.1 response body read straight off its connection's socket.

Why: a ``docker save`` of an 800 MB image arrives as some 25,000 chunks of
32 KiB (``Transfer-Encoding: chunked``).  Through requests and urllib3 each
chunk costs a generator step, two ``recv`` calls and three copies before the
scanner sees it; that was a third of imgscope's CPU while the stream flowed,
and the stream is where a daemon load trails ``docker save``.  Here one
``recv_into`` takes whatever the socket holds (often several chunks) into one
buffer, the chunk framing is undone in place, and each payload byte is copied
once, into the reader's buffer.

Only a response nobody has read from is taken over, and only a chunked or a
length-delimited one; anything else (a body that ends when the connection
closes, a library whose internals differ) is left to :class:`ChunkReader`.
Transport and framing errors reach ``fail``, which names the endpoint.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from typing import Any

from imgscope.errors import ImgscopeError

__all__ = ["SocketBody", "direct_body"]

_HEX = b"0123456789abcdefABCDEF"


class SocketBody(io.RawIOBase):
    """A read-only file over an HTTP body, chunked or of a known length.

    ``fp`` is the buffered socket file the status line and headers were read
    from: what it read ahead belongs to the body and is taken first; from then
    on its raw socket is read directly, one ``recv_into`` per refill, and only
    while the body still lacks bytes (the peer keeps the connection open after
    the last chunk, so a read past the end would wait forever).
    """

    BUFFER = 1 << 20  # bytes taken off the socket per refill, at most
    MAX_LINE = 4096  # a chunk-size line or a trailer longer than this is refused

    _SIZE, _DATA, _CRLF, _TRAILER, _DONE = range(5)

    def __init__(
        self,
        fp: Any,
        *,
        chunked: bool,
        length: int | None,
        fail: Callable[[BaseException], ImgscopeError],
        on_bytes: Callable[[int], None] | None = None,
    ) -> None:
        if not chunked and length is None:
            raise ValueError("a body that ends with its connection is not read here")
        self._fp: Any = fp  # until what it read ahead is taken
        self._raw: Any = fp.raw
        self._buf = bytearray(self.BUFFER)
        self._view = memoryview(self._buf)
        self._pos = 0
        self._end = 0
        self._chunked = chunked
        self._phase = self._SIZE if chunked else self._DATA
        self._left = 0 if chunked else int(length or 0)  # payload bytes of the current chunk (or body) unread
        if not chunked and not self._left:
            self._phase = self._DONE
        self._fail = fail
        self._on_bytes = on_bytes
        self.total = 0
        self.finished = self._phase == self._DONE

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        """Payload bytes into ``buffer``: as many as arrived, waiting on the socket only when none did."""
        if self.finished:
            return 0
        out = 0
        want = len(buffer)
        try:
            while out < want and self._phase != self._DONE:
                if self._phase == self._DATA:
                    have = self._end - self._pos
                    if have:
                        n = min(have, self._left, want - out)
                        buffer[out : out + n] = self._view[self._pos : self._pos + n]
                        self._pos += n
                        self._left -= n
                        out += n
                        if not self._left:
                            self._phase = self._CRLF if self._chunked else self._DONE
                        continue
                elif self._frame():
                    continue
                if out:
                    break  # hand over what arrived; the next call waits for more
                self._refill()
        except ImgscopeError:
            raise
        except Exception as exc:  # socket errors and broken framing alike
            raise self._fail(exc) from exc
        if self._phase == self._DONE and not out:
            self.finished = True
        self.total += out
        if out and self._on_bytes is not None:
            self._on_bytes(self.total)
        return out

    def _frame(self) -> bool:
        """Read one piece of chunk framing from the buffer; False when it needs more bytes."""
        if self._phase == self._CRLF:
            if self._end - self._pos < 2:
                return False
            if self._buf[self._pos] != 13 or self._buf[self._pos + 1] != 10:  # CR LF
                raise ValueError("a chunk of the body does not end with CRLF")
            self._pos += 2
            self._phase = self._SIZE
            return True
        line = self._line()
        if line is None:
            return False
        if self._phase == self._TRAILER:
            if not line:
                self._phase = self._DONE
            return True
        size_text = line.split(b";", 1)[0].strip(b" \t")
        if not size_text or size_text.translate(None, _HEX) or len(size_text) > 16:
            raise ValueError(f"a chunk size of the body is not hexadecimal: {size_text[:20]!r}")
        self._left = int(size_text, 16)
        self._phase = self._DATA if self._left else self._TRAILER
        return True

    def _line(self) -> bytes | None:
        """The next line without its line end, or None if it has not fully arrived."""
        nl = self._buf.find(b"\n", self._pos, self._end)
        if nl < 0:
            if self._end - self._pos > self.MAX_LINE:
                raise ValueError("a chunk-size line of the body is too long")
            return None
        line = bytes(self._view[self._pos : nl])
        self._pos = nl + 1
        return line[:-1] if line.endswith(b"\r") else line

    def _refill(self) -> None:
        """Move the unread bytes to the front and add what the socket has (waiting if it has none)."""
        unread = self._end - self._pos
        if self._pos:
            self._view[:unread] = self._view[self._pos : self._end]
            self._pos, self._end = 0, unread
        room = self._view[self._end :]
        if self._fp is not None:
            # What the header parser read ahead (at most one raw read when it read none).
            ahead = self._fp.read1(len(room))
            self._fp = None
            room[: len(ahead)] = ahead
            n = len(ahead)
        else:
            n = int(self._raw.readinto(room) or 0)
        if not n:
            raise EOFError("the connection closed before the body ended")
        self._end += n


def direct_body(
    response: Any,
    fail: Callable[[BaseException], ImgscopeError],
    on_bytes: Callable[[int], None] | None = None,
) -> SocketBody | None:
    """A :class:`SocketBody` over a ``requests`` response opened with ``stream=True``, or None.

    None when the response is not one this can take over untouched: not an
    ``http.client`` response under urllib3, already read from, or neither
    chunked nor of a known length.
    """
    import http.client

    raw = getattr(response, "raw", None)
    low = getattr(raw, "_fp", None)
    if not isinstance(low, http.client.HTTPResponse) or getattr(raw, "_fp_bytes_read", None) != 0:
        return None
    fp = getattr(low, "fp", None)
    if fp is None or not hasattr(fp, "read1") or not hasattr(getattr(fp, "raw", None), "readinto"):
        return None
    if low.chunked:
        if low.chunk_left is not None:  # http.client has started on the chunks
            return None
        return SocketBody(fp, chunked=True, length=None, fail=fail, on_bytes=on_bytes)
    if low.length is None:
        return None
    return SocketBody(fp, chunked=False, length=low.length, fail=fail, on_bytes=on_bytes)
