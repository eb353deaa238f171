#!/usr/bin/env python3
"""Build the realistic benchmark images with the local Docker engine and save them.

Figures are only comparable across runs when the images are the same, so
everything here is pinned (Debian suite, wheel versions) and built once:
what was built is cached under ``benchmarks/cache/`` (git-ignored) and reused
until ``--rebuild`` is given.  Three images, each on the one before:

* ``bench-base``: a Debian bookworm root from ``debootstrap --variant=minbase``,
  brought in with ``docker import`` (one layer, as a distro base image is);
* ``bench-nginx``: Debian's nginx ``.deb`` files (fetched on the host with
  ``apt-get download``) copied in, installed with ``dpkg -i`` and deleted in a
  later step (so one layer ships bytes a later one hides: real waste);
* ``bench-app``: Debian's python3 packages the same way, then wheels fetched
  with ``pip download`` (numpy, pandas, scipy, requests, rich, flask)
  installed with pip from a local folder and deleted after, and a ``.env``
  written then removed.  About 800 MB and 25,000 files.

Builds use the classic builder (``DOCKER_BUILDKIT=0``) with ``--network none``:
containers here have no network, and everything they need is in the context.
Each image is then written with ``docker save`` to ``cache/<name>.tar``.

Usage: ``python benchmarks/build_images.py [--rebuild] [--only base|nginx|app]``.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
CACHE = HERE / "cache"
SUITE = "bookworm"
# Pinned so that the app image, and so every figure, stays the same from run to run.
WHEELS = ["numpy==1.26.4", "pandas==2.2.2", "scipy==1.13.1", "requests==2.32.3", "rich==13.7.1", "flask==3.0.3"]
PY_DEBS = ["python3", "python3-pip", "python3-venv", "python3-dev"]
NGINX_DEBS = ["nginx"]
IMAGES = ("base", "nginx", "app")


def log(message: str) -> None:
    print(f"[build {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def run(cmd: list[str], **kwargs: object) -> subprocess.CompletedProcess[str]:
    log("$ " + " ".join(cmd))
    return subprocess.run(cmd, check=True, text=True, **kwargs)  # type: ignore[call-overload,no-any-return]


def output(cmd: list[str]) -> str:
    return subprocess.run(cmd, check=True, text=True, capture_output=True).stdout


def debian_mirror() -> str:
    """The Debian mirror this machine's apt already uses (deb822 or one-line sources)."""
    files = [Path("/etc/apt/sources.list"), *sorted(Path("/etc/apt/sources.list.d").glob("*"))]
    for path in files:
        if not path.is_file():
            continue
        text = path.read_text(errors="replace")
        for block in re.split(r"\n\s*\n", text):
            uris = re.search(r"^URIs:\s*(\S+)", block, re.M)
            suites = re.search(r"^Suites:\s*(.+)$", block, re.M)
            if uris and suites and SUITE in suites.group(1).split() and "security" not in uris.group(1):
                return uris.group(1)
        for line in text.splitlines():
            parts = line.split()
            if len(parts) >= 3 and parts[0] == "deb" and parts[2] == SUITE:
                url = next(p for p in parts[1:] if not p.startswith("["))
                return url
    return "http://deb.debian.org/debian"


def image_exists(tag: str) -> bool:
    return subprocess.run(["docker", "image", "inspect", tag], capture_output=True).returncode == 0


def check_engine() -> None:
    try:
        info = json.loads(output(["docker", "info", "--format", "{{json .}}"]))
    except (subprocess.CalledProcessError, FileNotFoundError, ValueError) as exc:
        sys.exit(
            f"no Docker engine answers ({exc}); start one, e.g. as root: "
            "dockerd --bridge=none --iptables=false --ip6tables=false &"
        )
    driver = info.get("Driver")
    if driver != "overlay2":
        log(f"warning: the engine's storage driver is {driver}, not overlay2: daemon figures will differ")


def installed_packages(rootfs: Path) -> set[str]:
    """Packages dpkg says are installed in the debootstrapped root."""
    status = (rootfs / "var/lib/dpkg/status").read_text(errors="replace")
    out = set()
    for block in status.split("\n\n"):
        name = re.search(r"^Package:\s*(\S+)", block, re.M)
        state = re.search(r"^Status:.*\binstalled\b", block, re.M)
        if name and state:
            out.add(name.group(1))
    return out


def dependency_closure(packages: list[str]) -> set[str]:
    """Every real package ``packages`` need (Depends and Pre-Depends, recursively), as apt resolves them."""
    text = output(
        [
            "apt-cache",
            "-o",
            f"APT::Default-Release={SUITE}",
            "depends",
            "--recurse",
            "--no-recommends",
            "--no-suggests",
            "--no-conflicts",
            "--no-breaks",
            "--no-replaces",
            "--no-enhances",
            *packages,
        ]
    )
    names = set()
    for line in text.splitlines():
        if line and not line.startswith((" ", "<")) and ":" not in line:
            names.add(line.strip())
    return names


def fetch_debs(packages: list[str], have: set[str], dest: Path) -> None:
    """Download the .debs ``packages`` need beyond what the base has, with apt on the host."""
    if dest.is_dir() and any(dest.glob("*.deb")):
        return
    dest.mkdir(parents=True, exist_ok=True)
    need = sorted(dependency_closure(packages) - have)
    log(f"downloading {len(need)} packages into {dest}")
    # The suite debootstrap used, not its security updates: a package from bookworm-security
    # may need a newer version of something the base already has (perl-base, for one).
    run(["apt-get", "-t", SUITE, "download", *need], cwd=dest)
    write_install_script(dest)


def _package_names(field: str | None) -> set[str]:
    """Package names of a Depends-like field, every alternative included."""
    names = set()
    for alternative in (field or "").split(","):
        for option in alternative.split("|"):
            name = option.strip().split(" ")[0].split(":")[0]
            if name:
                names.add(name)
    return names


def write_install_script(debs: Path) -> None:
    """``install.sh``: ``dpkg -i`` in rounds, so that every Pre-Depends is configured first.

    One ``dpkg -i`` of the whole set fails on Pre-Depends (python3-minimal
    pre-depends on python3.11-minimal), so packages are put in rounds: a
    package goes after every pre-dependency's round and no earlier than any
    dependency's round (a round is one ``dpkg -i``, which configures it whole).
    """
    files: dict[str, str] = {}
    depends: dict[str, set[str]] = {}
    pre: dict[str, set[str]] = {}
    provides: dict[str, str] = {}
    for deb in sorted(debs.glob("*.deb")):
        fields = output(["dpkg-deb", "-f", str(deb), "Package", "Pre-Depends", "Depends", "Provides"])
        values = dict(re.findall(r"^([A-Za-z-]+):\s*(.*)$", fields, re.M))
        name = values.get("Package")
        if not name:
            continue
        files[name] = deb.name
        pre[name] = _package_names(values.get("Pre-Depends"))
        depends[name] = _package_names(values.get("Depends"))
        for virtual in _package_names(values.get("Provides")):
            provides.setdefault(virtual, name)
    # A dependency on a virtual package (python3.11-distutils) is one on the package providing it.
    for table in (depends, pre):
        for pkg, deps in table.items():
            table[pkg] = {d if d in files else provides.get(d, d) for d in deps}
    rounds: dict[str, int] = {}

    def round_of(pkg: str, seen: frozenset[str]) -> int:
        if pkg in rounds:
            return rounds[pkg]
        seen = seen | {pkg}
        level = 0
        for dep in depends.get(pkg, ()):
            if dep in files and dep not in seen:
                level = max(level, round_of(dep, seen))
        for dep in pre.get(pkg, ()):
            if dep in files and dep not in seen:
                level = max(level, round_of(dep, seen) + 1)
        rounds[pkg] = level
        return level

    for pkg in files:
        round_of(pkg, frozenset())
    lines = ["#!/bin/sh", "set -e", "cd /tmp/debs"]
    for level in range(max(rounds.values(), default=0) + 1):
        names = sorted(files[p] for p, r in rounds.items() if r == level)
        if names:
            lines.append("dpkg -i " + " ".join(names))
    (debs / "install.sh").write_text("\n".join(lines) + "\n")


def build_base(rebuild: bool) -> Path:
    rootfs = CACHE / "rootfs"
    if rebuild and rootfs.exists():
        shutil.rmtree(rootfs)
    if not (rootfs / "etc/debian_version").exists():
        if rootfs.exists():
            shutil.rmtree(rootfs)
        run(["debootstrap", "--variant=minbase", SUITE, str(rootfs), debian_mirror()])
    if rebuild or not image_exists("bench-base:latest"):
        log("docker import bench-base:latest")
        tar = subprocess.Popen(["tar", "-C", str(rootfs), "--numeric-owner", "-cf", "-", "."], stdout=subprocess.PIPE)
        subprocess.run(
            ["docker", "import", "-c", 'CMD ["/bin/bash"]', "-", "bench-base:latest"], stdin=tar.stdout, check=True
        )
        if tar.wait() != 0:
            sys.exit("tar of the debootstrapped root failed")
    return rootfs


NGINX_DOCKERFILE = """\
FROM bench-base:latest
COPY debs/ /tmp/debs/
RUN sh /tmp/debs/install.sh
RUN rm -rf /tmp/debs
EXPOSE 80
CMD ["nginx", "-g", "daemon off;"]
"""

APP_DOCKERFILE = """\
FROM bench-base:latest
COPY debs/ /tmp/debs/
RUN sh /tmp/debs/install.sh
RUN rm -rf /tmp/debs
COPY wheels/ /tmp/wheels/
RUN pip3 install --no-index --find-links /tmp/wheels --break-system-packages {wheels}
RUN rm -rf /tmp/wheels
WORKDIR /app
COPY app.py /app/app.py
RUN printf 'SECRET_KEY=benchmark-not-a-secret\\nDATABASE_URL=postgres://app@db/app\\n' > /app/.env
RUN rm /app/.env
ENV PYTHONUNBUFFERED=1
EXPOSE 8000
CMD ["python3", "/app/app.py"]
"""

APP_PY = """\
import flask
import numpy
import pandas

app = flask.Flask(__name__)


@app.route("/")
def index():
    frame = pandas.DataFrame({"x": numpy.arange(10)})
    return frame.to_json()


if __name__ == "__main__":
    app.run(host="0.0.0.0", port=8000)
"""


def docker_build(tag: str, context: Path) -> None:
    env = {**os.environ, "DOCKER_BUILDKIT": "0"}
    run(["docker", "build", "--network", "none", "-t", tag, str(context)], env=env)


def build_nginx(rootfs: Path, rebuild: bool) -> None:
    if not rebuild and image_exists("bench-nginx:latest"):
        return
    ctx = CACHE / "ctx-nginx"
    fetch_debs(NGINX_DEBS, installed_packages(rootfs), ctx / "debs")
    (ctx / "Dockerfile").write_text(NGINX_DOCKERFILE)
    docker_build("bench-nginx:latest", ctx)


def build_app(rootfs: Path, rebuild: bool) -> None:
    if not rebuild and image_exists("bench-app:latest"):
        return
    ctx = CACHE / "ctx-app"
    fetch_debs(PY_DEBS, installed_packages(rootfs), ctx / "debs")
    wheels = ctx / "wheels"
    if not (wheels.is_dir() and any(wheels.glob("*.whl"))):
        wheels.mkdir(parents=True, exist_ok=True)
        run(
            [
                sys.executable,
                "-m",
                "pip",
                "download",
                "--only-binary=:all:",
                "--python-version",
                "3.11",
                "--platform",
                "manylinux2014_x86_64",
                "--platform",
                "manylinux_2_17_x86_64",
                "-d",
                str(wheels),
                *WHEELS,
            ]
        )
    (ctx / "app.py").write_text(APP_PY)
    (ctx / "Dockerfile").write_text(APP_DOCKERFILE.format(wheels=" ".join(WHEELS)))
    docker_build("bench-app:latest", ctx)


def save(name: str, rebuild: bool) -> Path:
    out = CACHE / f"bench-{name}.tar"
    if rebuild or not out.exists():
        tmp = out.with_suffix(".tmp")
        run(["docker", "save", "-o", str(tmp), f"bench-{name}:latest"])
        tmp.replace(out)
    return out


def ensure_loaded(name: str) -> bool:
    """A saved image whose engine forgot it (a new engine) is loaded back rather than rebuilt."""
    tar = CACHE / f"bench-{name}.tar"
    if image_exists(f"bench-{name}:latest") or not tar.exists():
        return image_exists(f"bench-{name}:latest")
    run(["docker", "load", "-i", str(tar)])
    return True


def describe(tar: Path) -> dict[str, int]:
    """Layer count, entries and bytes of a saved image, with GNU tar as the independent counter."""
    script = f"tar -xOf {tar} --wildcards '*/layer.tar' | tar -tvf - --ignore-zeros"
    listing = subprocess.run(["bash", "-c", script], check=True, capture_output=True, text=True).stdout.splitlines()
    files = sum(1 for line in listing if line.startswith("-"))
    manifest = json.loads(subprocess.run(["tar", "-xOf", str(tar), "manifest.json"], capture_output=True).stdout)
    return {
        "archive_bytes": tar.stat().st_size,
        "layers": len(manifest[0]["Layers"]),
        "entries": len(listing),
        "regular_files": files,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rebuild", action="store_true", help="build everything again, ignoring the cache")
    parser.add_argument("--only", choices=IMAGES, action="append", help="build only these images")
    args = parser.parse_args()
    CACHE.mkdir(exist_ok=True)
    check_engine()
    wanted = args.only or list(IMAGES)
    if not args.rebuild:
        for name in wanted:
            ensure_loaded(name)
    rootfs = build_base(args.rebuild)
    if "nginx" in wanted:
        build_nginx(rootfs, args.rebuild)
    if "app" in wanted:
        build_app(rootfs, args.rebuild)
    summary = {}
    for name in wanted:
        tar = save(name, args.rebuild)
        summary[f"bench-{name}"] = describe(tar)
    (CACHE / "images.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
