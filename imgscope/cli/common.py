"""Options every command shares, and the one place failures become exit codes.

Commands stay thin: they parse options, call :func:`load_image` and an
analysis, hand the result to a renderer and return an exit code.  Errors a
user can cause (:class:`ImgscopeError`) print one line on stderr and exit 2;
``--debug`` shows the traceback too.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any

import typer

from imgscope.errors import ImgscopeError

if TYPE_CHECKING:
    from rich.console import Console

    from imgscope.model import Image
    from imgscope.scan import ContentVisitor

PlatformOpt = Annotated[
    str | None, typer.Option("--platform", help="Pick the image for OS/ARCH[/VARIANT], e.g. linux/arm64.")
]
ImageOpt = Annotated[str | None, typer.Option("--image", help="Pick one image of a multi-image archive by tag.")]
PullOpt = Annotated[bool, typer.Option("--pull", help="Daemon only: pull the image when it is absent.")]
VerifyOpt = Annotated[bool, typer.Option("--verify", help="Check every blob digest and every DiffID.")]
NoCacheOpt = Annotated[bool, typer.Option("--no-cache", help="Do not read or write the layer scan cache.")]
MaxLayerBytesOpt = Annotated[
    str | None, typer.Option("--max-layer-bytes", help="Stop on a layer that expands past SIZE (e.g. 2GB).")
]
DebugOpt = Annotated[bool, typer.Option("--debug", help="Show tracebacks of errors.")]
NoColorOpt = Annotated[bool, typer.Option("--no-color", help="Plain text output without colours.")]
IecOpt = Annotated[bool, typer.Option("--iec", help="Show sizes in KiB, MiB, GiB instead of kB, MB, GB.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Write the report as JSON on stdout.")]


@dataclass(frozen=True, slots=True)
class SourceOptions:
    """The REF options as typed on the command line."""

    platform: str | None = None
    image: str | None = None
    pull: bool = False
    verify: bool = False
    no_cache: bool = False
    max_layer_bytes: str | None = None


def make_console(no_color: bool, stderr: bool = False) -> Console:
    """A rich console; no colour when asked, or when NO_COLOR is set, or when not a terminal."""
    from rich.console import Console

    return Console(no_color=no_color, stderr=stderr, highlight=False, soft_wrap=False)


def load_image(ref: str, opts: SourceOptions, *, visitor: ContentVisitor | None = None, quiet: bool = False) -> Image:
    """Load a REF with the shared options; progress on stderr only when it is a terminal."""
    from imgscope import reference
    from imgscope.sources.common import LoadOptions
    from imgscope.units import parse_size

    max_bytes = parse_size(opts.max_layer_bytes, "--max-layer-bytes") if opts.max_layer_bytes else None
    progress_cb: Callable[[str, int, int], None] | None = None
    if not quiet and sys.stderr.isatty():
        err = make_console(False, stderr=True)

        def progress_cb(what: str, done: int, total: int) -> None:
            err.print(f"\r{what}: {done}/{total}", end="")
            if done >= total:
                err.print("\r" + " " * 40 + "\r", end="")

    options = LoadOptions(
        platform=opts.platform,
        image=opts.image,
        pull=opts.pull,
        verify=opts.verify,
        use_cache=not opts.no_cache,
        max_layer_bytes=max_bytes,
        visitor=visitor,
        progress=progress_cb,
    )
    return reference.load(ref, options)


def print_json(data: Any) -> None:
    """JSON and nothing else on stdout."""
    sys.stdout.write(json.dumps(data, indent=2, ensure_ascii=False) + "\n")
    sys.stdout.flush()


@contextmanager
def handle_errors(debug: bool) -> Iterator[None]:
    """Map user errors to one line on stderr and exit 2 (a traceback with --debug)."""
    try:
        yield
    except ImgscopeError as exc:
        if debug:
            import traceback

            traceback.print_exc()
        sys.stderr.write(f"imgscope: error: {exc.message}\n")
        raise typer.Exit(2) from None
    except BrokenPipeError:
        raise typer.Exit(0) from None
