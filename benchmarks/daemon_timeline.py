"""When one ``imgscope`` command talks to the engine: each request, the first and last byte, the exit.

Runs the command in this process with ``socket.socket.sendall`` and
``recv_into`` wrapped, and prints, from the start of this script, the wall and
CPU time of: the import of the CLI, every request sent (its first line), the
first megabyte received, the last byte received and the exit.  What lies
between says who the time belongs to: before the save request, imgscope's
start; until the first megabyte, the engine preparing the save; until the last
byte, the transfer and the scan; after it, the analyses and the output.

    python benchmarks/daemon_timeline.py inspect bench-app:latest --json --no-cache > /dev/null

The marks go to stderr; the command's own output to stdout.
"""

from __future__ import annotations

import atexit
import socket
import sys
import time
from typing import Any

START = time.perf_counter()
marks: list[tuple[str, float, float]] = []
received = {"bytes": 0, "first": 0.0, "last_wall": 0.0, "last_cpu": 0.0}


def mark(what: str) -> None:
    marks.append((what, time.perf_counter() - START, time.process_time()))


_sendall = socket.socket.sendall
_recv_into = socket.socket.recv_into


def sendall(self: socket.socket, data: Any, *args: Any) -> None:
    mark("sent " + bytes(data[:80]).split(b"\r\n")[0].decode(errors="replace"))
    _sendall(self, data, *args)


def recv_into(self: socket.socket, buffer: Any, *args: Any) -> int:
    n = _recv_into(self, buffer, *args)
    received["bytes"] += n
    if received["bytes"] >= 1_000_000 and not received["first"]:
        received["first"] = 1.0
        mark("first MB received")
    if n:
        received["last_wall"] = time.perf_counter() - START
        received["last_cpu"] = time.process_time()
    return n


def report() -> None:
    mark("exit")
    if received["bytes"]:
        marks.append(("last byte received", received["last_wall"], received["last_cpu"]))
    print(f"{'wall':>8} {'CPU':>8}  ({received['bytes'] / 1e6:.0f} MB received)", file=sys.stderr)
    for what, wall, cpu in sorted(marks, key=lambda m: m[1]):
        print(f"{wall:7.3f}s {cpu:7.3f}s  {what}", file=sys.stderr)


def main() -> None:
    socket.socket.sendall = sendall  # type: ignore[method-assign]
    socket.socket.recv_into = recv_into  # type: ignore[method-assign]
    atexit.register(report)
    sys.argv = ["imgscope", *sys.argv[1:]]
    import imgscope.cli

    mark("imported the CLI")
    imgscope.cli.run()


if __name__ == "__main__":
    main()
