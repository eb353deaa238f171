#!/usr/bin/env python3
"""Coverage-guided fuzzing of imgscope's parsers with atheris (for maintainers; not run in CI).

The property is the one ``tests/test_fuzz.py`` checks with a few hundred
hypothesis examples: whatever the bytes, reading ends in an image that stacks
or in an ``ImgscopeError``; any other exception is a crash that atheris
saves as ``crash-<sha1>`` in the working directory.  Here libFuzzer mutates
the bytes under coverage guidance, for as long as you let it run.

Setup (atheris needs a Python built with a matching clang; see its README)::

    pip install atheris
    python -m tests.corpus /tmp/seeds/corpus        # hostile inputs as seeds (optional)

Run one target (the first argument), libFuzzer options after it::

    python scripts/fuzz_atheris.py layer    /tmp/seeds -max_total_time=3600
    python scripts/fuzz_atheris.py archive  -max_len=262144 -timeout=20
    python scripts/fuzz_atheris.py manifest -dict=scripts/fuzz.dict   # a dict is optional
    python scripts/fuzz_atheris.py index
    python scripts/fuzz_atheris.py config

Targets:

- ``layer``: the bytes are one layer blob (any compression) for the scanner;
- ``archive``: the bytes are a whole image file (tar, compressed tar) read from disk;
- ``manifest``: the bytes replace ``manifest.json`` of a small valid ``docker save`` archive;
- ``index``: the bytes replace ``index.json`` of a small valid OCI layout;
- ``config``: the bytes are an image config.

Reproduce a crash with ``python scripts/fuzz_atheris.py TARGET crash-<sha1>``: libFuzzer
runs the single input and shows the traceback.  Every input is read from memory or a
private temporary directory; the scan cache is off, so nothing is written elsewhere.
"""

from __future__ import annotations

import contextlib
import importlib
import io
import shutil
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

TARGETS = ("layer", "archive", "manifest", "index", "config")


def _targets(scratch: Path) -> dict[str, Callable[[bytes], None]]:
    """One callable per target; each raises only on a bug."""
    from imgscope import stack
    from imgscope.errors import ImgscopeError
    from imgscope.reference import load
    from imgscope.render.json_report import inspect_report
    from imgscope.scan import scan_layer
    from imgscope.sources.common import LoadOptions, parse_config
    from tests import corpus

    options = LoadOptions(use_cache=False)
    layers = corpus.good_layers()
    config = corpus.config_for(layers)
    archive = scratch / "archive"
    archive.mkdir()
    layout = scratch / "layout"
    corpus.oci_layout(layout, [(corpus.gz(layers[0]), corpus.OCI_GZIP), (layers[1], corpus.OCI_TAR)], config=config)
    names = ["0/layer.tar", "1/layer.tar"]

    def read(ref: str) -> None:
        try:
            image = load(ref, options)
        except ImgscopeError:
            return
        inspect_report(stack.build(image), top=5)

    def layer(data: bytes) -> None:
        with contextlib.suppress(ImgscopeError):
            scan_layer(io.BytesIO(data), "fuzzed layer")

    def whole(data: bytes) -> None:
        path = archive / "image.tar"
        path.write_bytes(data)
        read(str(path))

    def manifest(data: bytes) -> None:
        path = archive / "image.tar"
        corpus.docker_archive(path, layers, config=config, manifest=data, layer_names=names)
        read(str(path))

    def index(data: bytes) -> None:
        (layout / "index.json").write_bytes(data)
        read(f"oci:{layout}")

    def config_target(data: bytes) -> None:
        with contextlib.suppress(ImgscopeError):
            parse_config(data, "fuzzed config")

    return {"layer": layer, "archive": whole, "manifest": manifest, "index": index, "config": config_target}


def main() -> int:
    if len(sys.argv) < 2 or sys.argv[1] not in TARGETS:
        sys.stderr.write(f"usage: {sys.argv[0]} {{{','.join(TARGETS)}}} [libFuzzer options or inputs]\n")
        return 2
    try:
        atheris = importlib.import_module("atheris")
    except ImportError:
        sys.stderr.write("atheris is not installed: pip install atheris (see the docstring of this script)\n")
        return 2
    target = sys.argv.pop(1)
    scratch = Path(tempfile.mkdtemp(prefix="imgscope-atheris-"))
    try:
        with atheris.instrument_imports():
            run = _targets(scratch)[target]
        atheris.Setup(sys.argv, run)
        atheris.Fuzz()
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
