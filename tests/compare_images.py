"""Images made to be compared: a base, two apps on it, a rebuild, and a look-alike on another base.

Why: ``diff`` and ``shared`` are about relations between images, which no
single sample image has.  The set is described once here and written with
:mod:`tests.imagebuild`:

- ``base``: busybox-like files, one layer, ``CMD``.
- ``app1``: base + ``ENV`` + ``COPY`` app + ``RUN`` that installs a library.
- ``app2``: base + ``COPY`` of other data at the root.
- ``app1_rebuilt``: app1 with the ``COPY`` step changed; the ``RUN`` after it
  writes the same bytes, so its layer has the same DiffID on another chain.
- ``other``: a different base, topped with exactly app2's top layer
  ("same content, different base").
"""

from __future__ import annotations

from pathlib import Path

from tests import imagebuild as ib

BUSYBOX = bytes(range(256)) * 40  # 10240 bytes standing in for a binary
PASSWD = "root:x:0:0:root:/root:/bin/sh\n"


def base_spec() -> ib.ImageSpec:
    return ib.ImageSpec(
        steps=(
            ib.copy(
                "file:base",
                "/",
                ib.directory("bin"),
                ib.file("bin/busybox", BUSYBOX, mode=0o755),
                ib.symlink("bin/sh", "busybox"),
                ib.directory("etc"),
                ib.file("etc/passwd", PASSWD),
                ib.file("etc/os-release", "ID=imgscope-test\n"),
            ),
            ib.nop('CMD ["sh"]'),
        )
    )


def library_step() -> ib.BuildStep:
    return ib.run(
        "pip install lib",
        ib.directory("usr"),
        ib.directory("usr/lib"),
        ib.directory("usr/lib/python"),
        ib.file("usr/lib/python/lib.py", "def f():\n    return 1\n" * 50),
        ib.directory("usr/lib/python/__pycache__"),
        ib.file("usr/lib/python/__pycache__/lib.cpython-311.pyc", b"\x00pyc" * 300),
    )


def app1_spec(app_text: str = "print('hello')\n") -> ib.ImageSpec:
    return base_spec().extend(
        ib.nop("ENV APP=one"),
        ib.copy("file:app", "/app/", ib.directory("app"), ib.file("app/main.py", app_text)),
        library_step(),
        ib.nop('CMD ["python", "/app/main.py"]'),
        env=(*base_spec().env, "APP=one"),
        cmd=("python", "/app/main.py"),
    )


def app2_top() -> ib.BuildStep:
    return ib.copy("file:data", "/", ib.file("data.bin", b"D" * 5000))


def app2_spec() -> ib.ImageSpec:
    return base_spec().extend(app2_top())


def other_spec() -> ib.ImageSpec:
    other_base = ib.ImageSpec(
        steps=(
            ib.copy(
                "file:otherbase",
                "/",
                ib.directory("bin"),
                ib.file("bin/toybox", b"T" * 7000, mode=0o755),
                ib.symlink("bin/sh", "toybox"),
            ),
        )
    )
    return other_base.extend(app2_top())


def write_set(directory: Path) -> dict[str, Path]:
    """Write every image of the set as a ``docker save`` archive; name -> path."""
    specs = {
        "base": base_spec(),
        "app1": app1_spec(),
        "app2": app2_spec(),
        "app1_rebuilt": app1_spec("print('hello, world')\nprint('again')\n"),
        "other": other_spec(),
    }
    out: dict[str, Path] = {}
    for name, spec in specs.items():
        path = directory / f"{name}.tar"
        ib.write_docker_archive(path, spec, tag=f"imgscope-test/{name.replace('_', '-')}:latest")
        out[name] = path
    return out
