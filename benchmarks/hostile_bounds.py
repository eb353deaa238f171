"""Full-size hostile inputs of issue 19, for measuring time and peak RSS (not run by pytest).

    python benchmarks/hostile_bounds.py OUT_DIR      # writes the inputs below into OUT_DIR
    /usr/bin/time -v imgscope inspect OUT_DIR/xattrs.tar --no-cache >/dev/null

- ``xattrs.tar``: 400 entries with 1,000,000 characters of xattrs each, layer xz-compressed
  (about 92 KB): every entry's attributes were kept (2.1 GB peak).
- ``members.tar.gz``: an outer archive of 1,000,000 empty members (tarfile kept a TarInfo each).
- ``wide.tar``: one layer of 1,000,000 empty files in one directory, for ``inspect --tree``.
- ``negative-pax.tar``: a PAX ``size=-1536``, once an endless loop.

The test suite checks the same limits at small sizes (tests/test_hostile_bounds.py).
"""

from __future__ import annotations

import gzip
import lzma
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests import corpus
from tests.corpus import END, header, layer, member, pax


def xattrs(out: Path) -> None:
    parts = []
    for i in range(400):
        parts.append(pax({b"SCHILY.xattr.user.big": b"v" * 1_000_000}))
        parts.append(member(f"f{i}", b"x"))
    blob = lzma.compress(layer(*parts))
    config = corpus.config_for([layer(*parts)])
    corpus.docker_archive(out / "xattrs.tar", [blob], config=config)


def members(out: Path) -> None:
    with gzip.open(out / "members.tar.gz", "wb", compresslevel=1) as fh:
        for i in range(1_000_000):
            fh.write(header(f"e/{i}"))
        fh.write(END)


def wide(out: Path) -> None:
    parts = [header("d/", typeflag=b"5", mode=0o755)]
    parts.extend(header(f"d/{i:07d}") for i in range(1_000_000))
    corpus.docker_archive(out / "wide.tar", [layer(*parts)])


def negative_pax(out: Path) -> None:
    corpus.docker_archive(out / "negative-pax.tar", [layer(pax({b"size": b"-1536"}), member("a", b"a"))])


def main() -> None:
    out = Path(sys.argv[1] if len(sys.argv) > 1 else "benchmarks/cache/hostile")
    out.mkdir(parents=True, exist_ok=True)
    for make in (xattrs, members, wide, negative_pax):
        make(out)
        print(f"{make.__name__}: done")


if __name__ == "__main__":
    main()
