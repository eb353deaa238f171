"""Options every command shares, and the one place failures become exit codes.

Commands stay thin: they parse options, call :func:`load_image` and an
analysis, hand the result to a renderer and return an exit code.  Errors a
user can cause (:class:`ImgscopeError`) print one line on stderr and exit 2;
``--debug`` shows the traceback too.
"""

from __future__ import annotations

import contextlib
import json
import sys
import types
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TextIO

import typer

from imgscope.background import Forked
from imgscope.errors import ImgscopeError
from imgscope.render.encoded import EncodedList

if TYPE_CHECKING:
    from rich.console import Console

    from imgscope.model import Image, LayerScan
    from imgscope.scan import ContentVisitor
    from imgscope.stack import Stack

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
InsecureOpt = Annotated[
    bool,
    typer.Option("--insecure", help="registry:// only: allow plain HTTP and unverified TLS for this registry."),
]
DebugOpt = Annotated[bool, typer.Option("--debug", help="Show tracebacks of errors.")]
NoColorOpt = Annotated[bool, typer.Option("--no-color", help="Plain text output without colours.")]
IecOpt = Annotated[bool, typer.Option("--iec", help="Show sizes in KiB, MiB, GiB instead of kB, MB, GB.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Write the report as JSON on stdout.")]
HtmlOpt = Annotated[
    Path | None, typer.Option("--html", help="Also write a self-contained HTML report to FILE (opens offline).")
]


@dataclass(frozen=True, slots=True)
class SourceOptions:
    """The REF options as typed on the command line."""

    platform: str | None = None
    image: str | None = None
    pull: bool = False
    verify: bool = False
    no_cache: bool = False
    max_layer_bytes: str | None = None
    # Gates (audit, ci) always check DiffIDs against the bytes they read.
    check_diff_ids: bool = False
    insecure: bool = False


def make_console(no_color: bool, stderr: bool = False) -> Console:
    """A rich console; no colour when asked, or when NO_COLOR is set, or when not a terminal."""
    from imgscope.render.console import SafeConsole

    return SafeConsole(no_color=no_color, stderr=stderr, highlight=False, soft_wrap=False)


class ProgressLine:
    """One line of a terminal rewritten in place: "what: done/total", gone when done reaches total.

    Written to the stream itself, not through the console: the console strips
    carriage returns (it prints text taken from images), and every update then
    ran on after the last.  A source may report many times per step (a daemon
    stream does per socket read): a repeated report costs one comparison, and
    only a changed line is written, cut to the stream's width (taken once) so
    that it never wraps (a wrapped line cannot be rewritten).
    """

    def __init__(self, stream: TextIO) -> None:
        import os
        import shutil

        self._stream = stream
        self._shown = ""
        self._last: tuple[str, int, int] | None = None
        columns = shutil.get_terminal_size().columns  # COLUMNS, else stdout's terminal, else 80
        if not os.environ.get("COLUMNS", "").isdigit():
            with contextlib.suppress(OSError, ValueError):
                columns = os.get_terminal_size(stream.fileno()).columns  # stdout may be a pipe
        self._width = max(0, columns - 1)

    def __call__(self, what: str, done: int, total: int) -> None:
        if (what, done, total) == self._last:
            return
        self._last = (what, done, total)
        self._show(f"{what}: {done}/{total}"[: self._width] if done < total else "")

    def clear(self) -> None:
        """Blank the line if it shows anything: an error or Ctrl-C then starts on a clean line."""
        self._last = None
        self._show("")

    def _show(self, text: str) -> None:
        if text == self._shown:
            return
        line = "\r" + text.ljust(len(self._shown))  # spaces over what the last line had beyond this one
        if len(text) < len(self._shown):
            line += "\r" + text  # the cursor back at the end of the text
        self._stream.write(line)
        self._stream.flush()
        self._shown = text


def load_image(
    ref: str,
    opts: SourceOptions,
    *,
    visitor: ContentVisitor | None = None,
    quiet: bool = False,
    on_layer: Callable[[int, LayerScan], None] | None = None,
) -> Image:
    """Load a REF with the shared options; progress on stderr only when it is a terminal.

    ``on_layer`` is told each layer's scan as soon as it is known (``LoadOptions.on_layer``).
    """
    from imgscope import reference
    from imgscope.sources.common import LoadOptions
    from imgscope.units import parse_size

    max_bytes = parse_size(opts.max_layer_bytes, "--max-layer-bytes") if opts.max_layer_bytes else None
    progress_cb: Callable[[str, int, int], None] | None = None
    if not quiet and sys.stderr.isatty():
        progress_cb = ProgressLine(sys.stderr)

    options = LoadOptions(
        platform=opts.platform,
        image=opts.image,
        pull=opts.pull,
        verify=opts.verify,
        check_diff_ids=opts.check_diff_ids,
        use_cache=not opts.no_cache,
        max_layer_bytes=max_bytes,
        insecure=opts.insecure,
        visitor=visitor,
        progress=progress_cb,
        on_layer=on_layer,
    )
    try:
        return reference.load(ref, options)
    finally:
        if isinstance(progress_cb, ProgressLine):
            progress_cb.clear()


def load_stacked(
    ref: str,
    opts: SourceOptions,
    *,
    visitor: ContentVisitor | None = None,
    quiet: bool = False,
) -> Stack:
    """Load a REF and stack it, each layer applied as soon as it and those below it are scanned.

    Stacking then runs between the scans of later layers (``stack.Stacker``)
    instead of after the last one; the result is what ``stack.build`` gives.
    """
    from imgscope import stack as stacking
    from imgscope.scan import paused_gc

    stacker = stacking.Stacker()
    image = load_image(ref, opts, visitor=visitor, quiet=quiet, on_layer=stacker.add)
    with paused_gc():
        return stacker.finish(image)


def print_json(data: Any) -> None:
    """JSON and nothing else on stdout, valid UTF-8 whatever the image's file names are.

    Names that are not UTF-8 reach us as lone surrogates (``surrogateescape``);
    written raw they would make the output invalid UTF-8.  They are written as
    JSON escapes (``"caf\\udce9.txt"``): lossless for a reader that keeps
    surrogates (Python), a replacement character for one that does not (jq).
    Containers of containers are indented; the innermost (a file, a change)
    take one line each, which keeps even a huge report readable and greppable.
    """
    out = _JsonOut(sys.stdout)
    _write_json(data, out, "", _encoder())
    out.write("\n")
    out.flush()


class _JsonOut:
    """Collects pieces of JSON text and writes them in batches, escaping surrogates on the way.

    ``json.dumps(indent=2)`` runs json's pure-Python encoder and builds the whole
    text at once: for an image of 200,000 files, seconds of CPU and a peak of
    several times the output's size in memory.  Written piece by piece with the
    C encoder, the same JSON costs a fraction of both.
    """

    def __init__(self, stream: Any) -> None:
        self._stream = stream
        self._pieces: list[str] = []
        self._size = 0

    def write(self, text: str) -> None:
        if not text.isascii():
            text = text.encode("utf-8", "backslashreplace").decode("utf-8")
        self._pieces.append(text)
        self._size += len(text)
        if self._size > 1 << 16:
            self.flush()

    def flush(self) -> None:
        self._stream.write("".join(self._pieces))
        self._pieces.clear()
        self._size = 0
        self._stream.flush()


# What is not written on one line: containers, and the generators of a lazy report.
_CONTAINERS = frozenset(
    (dict, list, tuple, types.GeneratorType, type(iter([])), type(iter(())), map, EncodedList, Forked)
)


def _encoder() -> Callable[[Any], str]:
    """``json.dumps(value, ensure_ascii=False)``, minus the set-up ``dumps`` repeats on every call.

    Each ``JSONEncoder.encode`` call builds a new C encoder; with one call per
    file of the image that set-up costs as much as the encoding itself.
    """
    base = json.JSONEncoder(ensure_ascii=False, check_circular=False)
    make = getattr(json.encoder, "c_make_encoder", None)
    if make is None:  # pragma: no cover - CPython always has it
        return base.encode
    iterencode = make(
        None,
        base.default,
        json.encoder.encode_basestring,
        None,
        base.key_separator,
        base.item_separator,
        base.sort_keys,
        base.skipkeys,
        base.allow_nan,
    )
    join = "".join

    def encode(value: Any) -> str:
        return join(iterencode(value, 0))

    return encode


def _flat(value: Any) -> bool:
    """Whether a dict or list holds no container (then it takes one line)."""
    items = value.values() if type(value) is dict else value
    return _CONTAINERS.isdisjoint(map(type, items))


def _write_json(value: Any, out: _JsonOut, pad: str, encode: Callable[[Any], str]) -> None:
    """Indented like ``indent=2`` down to the innermost containers, which take one line each."""
    kind = type(value)
    if kind is dict and value and not _flat(value):
        inner = pad + "  "
        sep = "{\n"
        for key, item in value.items():
            out.write(f"{sep}{inner}{encode(str(key))}: ")
            _write_json(item, out, inner, encode)
            sep = ",\n"
        out.write(f"\n{pad}}}")
    elif kind is list and value and not _flat(value):
        inner = pad + "  "
        sep = "[\n" + inner
        between = ",\n" + inner
        for item in value:
            if type(item) is dict and _flat(item):  # the bulk: one file or change per line
                out.write(sep + encode(item))
            else:
                out.write(sep)
                _write_json(item, out, inner, encode)
            sep = between
        out.write(f"\n{pad}]")
    elif kind is EncodedList:  # JSON text made on demand (render.encoded): one item per line
        inner = pad + "  "
        sep = "[\n" + inner
        between = ",\n" + inner
        for batch in value.batches():
            out.write(sep + between.join(batch))
            sep = between
        out.write("[]" if sep.startswith("[") else f"\n{pad}]")
    elif kind is Forked:  # a section computed beside the writing (imgscope.background): here it is needed
        _write_json(value.result(), out, pad, encode)
    elif isinstance(value, Iterator):  # a lazily made list (inspect_report(lazy=True)): one item at a time
        inner = pad + "  "
        sep = "[\n" + inner
        between = ",\n" + inner
        for item in value:
            if type(item) is dict and _flat(item):
                out.write(sep + encode(item))
            else:
                out.write(sep)
                _write_json(item, out, inner, encode)
            sep = between
        out.write("[]" if sep.startswith("[") else f"\n{pad}]")
    else:
        out.write(encode(value))


@contextmanager
def handle_errors(debug: bool) -> Iterator[None]:
    """Map user errors to one line on stderr and exit 2 (a traceback with --debug)."""
    try:
        yield
    except ImgscopeError as exc:
        if debug:
            import traceback

            traceback.print_exc()
        from imgscope.render.console import printable

        # Messages quote names from the input: never let them drive the terminal.
        sys.stderr.write(f"imgscope: error: {printable(exc.message)}\n")
        raise typer.Exit(2) from None
    except BrokenPipeError:
        # The reader went away (`| head`): exit as a SIGPIPE'd tool would, without a flush error at exit.
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        raise typer.Exit(141) from None
    except KeyboardInterrupt:
        sys.stderr.write("imgscope: interrupted\n")
        raise typer.Exit(130) from None
    except OSError as exc:
        # An unreadable input (a blob without read permission, a file gone mid-read) is the
        # input's fault: one line and exit 2, never a traceback with exit 1, which ci and audit
        # mean as "a check failed".
        if debug:
            import traceback

            traceback.print_exc()
        from imgscope.render.console import printable

        where = f"{exc.filename}: " if exc.filename else ""
        sys.stderr.write(f"imgscope: error: {printable(where + (exc.strerror or str(exc)))}\n")
        raise typer.Exit(2) from None


def write_html(path: Path, text: str) -> None:
    """Write an ``--html`` report; a file that cannot be written is a user error (exit 2)."""
    try:
        path.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise ImgscopeError(f"--html {path}: cannot write ({exc.strerror or exc})") from exc
