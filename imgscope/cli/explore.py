"""``imgscope explore REF``: browse an image layer by layer in the terminal.

Thin on purpose: it checks that there is a terminal, builds the loader (load,
stack, explorer model, with progress shown inside the app) and the file
reader, and runs :class:`imgscope.explore.app.ExploreApp`.  textual is
imported only here, when the command runs.
"""

from __future__ import annotations

import os
import sys
from typing import TYPE_CHECKING, Annotated

import typer

from imgscope.cli.common import (
    DebugOpt,
    IecOpt,
    ImageOpt,
    InsecureOpt,
    MaxLayerBytesOpt,
    NoCacheOpt,
    NoColorOpt,
    PlatformOpt,
    PullOpt,
    SourceOptions,
    VerifyOpt,
    handle_errors,
)

if TYPE_CHECKING:
    from collections.abc import Callable

    from imgscope.explore.child import ChildAudit
    from imgscope.explore.content import FileContent
    from imgscope.explore.model import ExploreModel, Progress
    from imgscope.model import Entry


def make_loader(ref: str, opts: SourceOptions) -> Callable[[Progress], ExploreModel]:
    """A function that loads ``ref`` and builds the explorer model, reporting progress as it goes."""

    def load(progress: Progress) -> ExploreModel:
        from imgscope import reference
        from imgscope import stack as stacking
        from imgscope.explore.model import ExploreModel
        from imgscope.sources.common import LoadOptions
        from imgscope.units import parse_size

        max_bytes = parse_size(opts.max_layer_bytes, "--max-layer-bytes") if opts.max_layer_bytes else None
        options = LoadOptions(
            platform=opts.platform,
            image=opts.image,
            pull=opts.pull,
            verify=opts.verify,
            use_cache=not opts.no_cache,
            max_layer_bytes=max_bytes,
            progress=progress,
        )
        progress("reading the image", 0, 0)
        image = reference.load(ref, options)
        progress("stacking layers", 0, len(image.scans))
        stacked = stacking.build(image)
        return ExploreModel.build(stacked, progress=progress)

    return load


def make_reader(ref: str, opts: SourceOptions) -> Callable[[str, int, Entry], FileContent]:
    """A function that reads one stored file of ``ref`` back from its layer (for the viewer)."""

    def read(path: str, layer: int, entry: Entry) -> FileContent:
        from imgscope.explore.content import read_file

        return read_file(ref, opts, path, layer, entry)

    return read


def make_auditor(ref: str, opts: SourceOptions) -> ChildAudit:
    """The full audit (file contents too) of ``ref`` in a child process; call it to wait for the result.

    A plain child process (see :mod:`imgscope.explore.child`), not a
    multiprocessing pool: under textual the pool's resource tracker fails.
    """
    from imgscope.explore.child import ChildAudit

    return ChildAudit(ref, opts)


def explore(
    ref: Annotated[str, typer.Argument(help="Image: a daemon name, an archive or layout path, or a transport:REF.")],
    platform: PlatformOpt = None,
    image: ImageOpt = None,
    pull: PullOpt = False,
    verify: VerifyOpt = False,
    no_cache: NoCacheOpt = False,
    max_layer_bytes: MaxLayerBytesOpt = None,
    insecure: InsecureOpt = False,
    debug: DebugOpt = False,
    no_color: NoColorOpt = False,
    iec: IecOpt = False,
) -> None:
    """Browse an image interactively: steps, the file tree of each step, what it changed and wasted."""
    with handle_errors(debug):
        from imgscope import reference
        from imgscope.errors import ImgscopeError
        from imgscope.units import parse_size

        if not (sys.stdin.isatty() and sys.stdout.isatty()):
            raise ImgscopeError("explore needs a terminal; for a report use `imgscope inspect` (or --json)")
        reference.parse(ref)  # a mistyped path fails here, before the screen is taken over
        if max_layer_bytes:
            parse_size(max_layer_bytes, "--max-layer-bytes")
        if no_color:
            os.environ["NO_COLOR"] = "1"
        opts = SourceOptions(platform, image, pull, verify, no_cache, max_layer_bytes, insecure=insecure)
        from imgscope.explore.app import ExploreApp

        auditor = make_auditor(ref, opts)
        app = ExploreApp(
            loader=make_loader(ref, opts),
            reader=make_reader(ref, opts),
            auditor=auditor,
            iec=iec,
            what=ref,
            freeze_gc=True,
        )
        try:
            code = app.run()
        finally:
            auditor.close()
        if app.crash is not None:
            # A bug inside the app: one line (the traceback with --debug), and never exit 0.
            if debug:
                import traceback

                traceback.print_exception(app.crash)
            from imgscope.render.console import printable

            message = f"{type(app.crash).__name__}: {app.crash}".splitlines()[0]
            sys.stderr.write(f"imgscope: internal error in explore: {printable(message)}\n")
            raise typer.Exit(1)
        if app.error is not None:
            raise app.error
        if code:
            raise typer.Exit(code)


def register(app: typer.Typer) -> None:
    """Add the command to the app."""
    app.command("explore")(explore)
