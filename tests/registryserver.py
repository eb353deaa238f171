"""A real registry on loopback for the tests and the benchmark: Debian's ``docker-registry`` (distribution 2.8).

Started on 127.0.0.1 with a free port, storage in a temporary folder, plain
HTTP, or with htpasswd Basic auth, or with TLS from a CA made here with
openssl.  Images are pushed with ``skopeo copy``.  Requests are counted from
the registry's access log (one JSON line per request).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

REGISTRY_BIN = shutil.which("docker-registry") or "/usr/bin/docker-registry"
USER = "tester"
PASSWORD = "s3cret-pass"


def missing_tools() -> list[str]:
    """The programs these tests need that are not installed."""
    needed = {"docker-registry": REGISTRY_BIN, "skopeo": "skopeo", "htpasswd": "htpasswd", "openssl": "openssl"}
    return [name for name, exe in needed.items() if not (os.path.exists(exe) or shutil.which(exe))]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _openssl(*args: str | Path) -> None:
    subprocess.run(["openssl", *map(str, args)], check=True, capture_output=True)


def make_ca(folder: Path) -> tuple[Path, Path, Path]:
    """A CA and a server certificate for 127.0.0.1 signed by it: (ca.crt, server.crt, server.key)."""
    folder.mkdir(parents=True, exist_ok=True)
    ca_key, ca_crt = folder / "ca.key", folder / "ca.crt"
    key, csr, crt = folder / "server.key", folder / "server.csr", folder / "server.crt"
    ext = folder / "ext.cnf"
    ext.write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\n")
    _openssl(
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        ca_key,
        "-out",
        ca_crt,
        "-days",
        "2",
        "-subj",
        "/CN=imgscope test CA",
    )
    _openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", csr, "-subj", "/CN=127.0.0.1")
    _openssl(
        "x509",
        "-req",
        "-in",
        csr,
        "-CA",
        ca_crt,
        "-CAkey",
        ca_key,
        "-CAcreateserial",
        "-out",
        crt,
        "-days",
        "2",
        "-extfile",
        ext,
    )
    return ca_crt, crt, key


@dataclass
class Registry:
    """One running ``docker-registry``; ``host`` is ``127.0.0.1:PORT``."""

    root: Path
    auth: bool = False
    tls: bool = False
    port: int = 0
    proc: subprocess.Popen[bytes] | None = None
    ca: Path | None = None
    log: Path = field(init=False)

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> Registry:
        self.root.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.log = self.root / "registry.log"
        lines = [
            "version: 0.1",
            "log:",
            "  level: info",
            "  formatter: json",
            "  accesslog:",
            "    disabled: false",
            "storage:",
            "  filesystem:",
            f"    rootdirectory: {self.root / 'data'}",
            "  delete:",
            "    enabled: true",
            "http:",
            f"  addr: 127.0.0.1:{self.port}",
            "  secret: imgscope-test",
        ]
        if self.tls:
            self.ca, crt, key = make_ca(self.root / "certs")
            lines += ["  tls:", f"    certificate: {crt}", f"    key: {key}"]
        if self.auth:
            htpasswd = self.root / "htpasswd"
            subprocess.run(["htpasswd", "-Bbc", str(htpasswd), USER, PASSWORD], check=True, capture_output=True)
            lines += ["auth:", "  htpasswd:", "    realm: imgscope-test", f"    path: {htpasswd}"]
        config = self.root / "config.yml"
        config.write_text("\n".join(lines) + "\n")
        out = open(self.log, "wb")  # noqa: SIM115 - the registry writes it until stop()
        self.proc = subprocess.Popen([REGISTRY_BIN, "serve", str(config)], stdout=out, stderr=subprocess.STDOUT)
        out.close()
        self._wait()
        return self

    def _wait(self) -> None:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"docker-registry exited: {self.log.read_text()[-2000:]}")
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                return
            time.sleep(0.05)
        raise RuntimeError("docker-registry did not start listening")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def push(self, source: str, repo: str, *flags: str) -> str:
        """``skopeo copy [FLAGS] SOURCE docker://HOST/REPO``; returns the reference ``registry://HOST/REPO``."""
        cmd = ["skopeo", "copy", "--quiet", "--dest-tls-verify=false", *flags]
        if self.auth:
            cmd.append(f"--dest-creds={USER}:{PASSWORD}")
        cmd += [source, f"docker://{self.host}/{repo}"]
        subprocess.run(cmd, check=True, capture_output=True, timeout=300)
        return f"registry://{self.host}/{repo}"

    def requests(self) -> list[tuple[str, str]]:
        """(method, path) of every request the registry served, in order, from its access log."""
        out = []
        for line in self.log.read_text(errors="replace").splitlines():
            if line.startswith("{"):
                continue  # the application log (JSON) repeats what the access log says
            # The access log is Apache combined format: 127.0.0.1 - - [date] "GET /v2/... HTTP/1.1" 200 ...
            if '"' in line:
                request = line.split('"')[1].split(" ")
                if len(request) == 3 and request[0] in ("GET", "HEAD", "PUT", "POST", "PATCH", "DELETE"):
                    out.append((request[0], request[1]))
        return out

    def blob_gets(self) -> list[str]:
        """Paths of the GETs of blobs: what a load downloaded."""
        return [path for method, path in self.requests() if method == "GET" and "/blobs/" in path]


def reachable(url: str) -> bool:
    with contextlib.suppress(OSError):
        urllib.request.urlopen(url, timeout=2)
        return True
    return False
