"""``imgscope diff A B``: what a rebuild changed, in which step, and how many bytes.

Exit codes follow ``diff``: 0 identical, 1 different, 2 on error; ``--exit-zero``
keeps 0 for scripts that only want the report.
"""

from __future__ import annotations

from typing import Annotated

import typer

from imgscope.cli.common import (
    DebugOpt,
    HtmlOpt,
    IecOpt,
    ImageOpt,
    InsecureOpt,
    JsonOpt,
    MaxLayerBytesOpt,
    NoCacheOpt,
    NoColorOpt,
    PlatformOpt,
    PullOpt,
    SourceOptions,
    VerifyOpt,
    handle_errors,
    load_stacked,
    make_console,
    print_json,
    write_html,
)

FORMATS = ("text", "json", "markdown")


def diff(
    ref_a: Annotated[str, typer.Argument(metavar="REF_A", help="The old image (any REF).")],
    ref_b: Annotated[str, typer.Argument(metavar="REF_B", help="The new image (any REF).")],
    format_: Annotated[str, typer.Option("--format", help="Output: text, json or markdown.")] = "text",
    json_: JsonOpt = False,
    html: HtmlOpt = None,
    path: Annotated[
        list[str] | None,
        typer.Option("--path", help="Only paths matching GLOB (or under a matching directory). Repeatable."),
    ] = None,
    ignore: Annotated[
        list[str] | None,
        typer.Option("--ignore", help="Leave out paths matching GLOB, e.g. '*.pyc' or '/var/log/**'. Repeatable."),
    ] = None,
    mtime: Annotated[bool, typer.Option("--mtime", help="Count a changed mtime as a difference.")] = False,
    exit_zero: Annotated[bool, typer.Option("--exit-zero", help="Exit 0 even when the images differ.")] = False,
    top: Annotated[
        int, typer.Option("--top", min=0, help="Files listed in text and markdown (0 = all; JSON has all).")
    ] = 50,
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
    """Compare two images: aligned steps, files, config and sizes. Exit 1 when they differ."""
    with handle_errors(debug):
        from imgscope.errors import ImgscopeError

        fmt = "json" if json_ else format_
        if fmt not in FORMATS:
            raise ImgscopeError(f"--format {format_!r}: use text, json or markdown")
        opts = SourceOptions(platform, image, pull, verify, no_cache, max_layer_bytes, insecure=insecure)
        quiet = fmt != "text"
        stacked_a = load_stacked(ref_a, opts, quiet=quiet)
        stacked_b = load_stacked(ref_b, opts, quiet=quiet)

        from imgscope.analysis.diff import diff as compare

        result = compare(stacked_a, stacked_b, paths=path or (), ignores=ignore or (), mtime=mtime)
        shown_top = top or None
        if html is not None:
            from imgscope.render.html import diff_page

            write_html(html, diff_page(result))
        if fmt == "json":
            from imgscope.render.diff import to_dict

            print_json(to_dict(result))
        elif fmt == "markdown":
            import sys

            from imgscope.render.diff import to_markdown

            sys.stdout.write(to_markdown(result, shown_top, iec))
        else:
            from imgscope.render.diff import render

            make_console(no_color).print(render(result, shown_top, iec))
            _warn(result, no_color)
    if not result.identical and not exit_zero:
        raise typer.Exit(1)


def _warn(result: object, no_color: bool) -> None:
    from imgscope.analysis.diff import ImageDiff
    from imgscope.render import console as view

    assert isinstance(result, ImageDiff)
    lines = [
        f"{label}: {w}"
        for label, stacked in (("A", result.a), ("B", result.b))
        for w in (*stacked.image.warnings, *stacked.warnings)
    ]
    warn = view.warnings_text(lines)
    if warn is not None:
        make_console(no_color, stderr=True).print(warn, end="")


def register(app: typer.Typer) -> None:
    """Add the command to the app."""
    app.command("diff")(diff)
