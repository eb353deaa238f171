"""``imgscope inspect REF``: every step of an image, its size and what it changed."""

from __future__ import annotations

from typing import Annotated, Any

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


def inspect(
    ref: Annotated[str, typer.Argument(help="Image: a daemon name, an archive or layout path, or a transport:REF.")],
    layer: Annotated[int | None, typer.Option("--layer", help="Show the changes of layer N (0 = base).")] = None,
    tree: Annotated[bool, typer.Option("--tree", help="Show the final file tree (or as of --layer N).")] = False,
    depth: Annotated[int | None, typer.Option("--depth", min=1, help="Tree depth to show.")] = None,
    sort: Annotated[str, typer.Option("--sort", help="Order of changes and tree entries: size or path.")] = "size",
    filter_: Annotated[
        str | None, typer.Option("--filter", help="Only paths matching GLOB ('**' crosses dirs).")
    ] = None,
    top: Annotated[int, typer.Option("--top", min=0, help="How many of the largest files to list.")] = 10,
    json_: JsonOpt = False,
    html: HtmlOpt = None,
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
    """Show every step of an image: layer sizes and what each step added, changed or removed."""
    with handle_errors(debug):
        from imgscope.errors import ImgscopeError

        if sort not in ("size", "path"):
            raise ImgscopeError(f"--sort {sort!r}: use size or path")
        opts = SourceOptions(platform, image, pull, verify, no_cache, max_layer_bytes, insecure=insecure)
        stacked = load_stacked(ref, opts, quiet=json_)
        count = len(stacked.image.scans)
        if layer is not None and not 0 <= layer < count:
            raise ImgscopeError(f"--layer {layer}: the image has layers 0 to {count - 1}")
        from imgscope.scan import paused_gc

        # Hundreds of thousands of objects and no cycles among them: the collector would
        # only walk them again and again (10-20% of the analysis and the JSON).
        with paused_gc():
            if json_ and html is None:
                _print_report(stacked, top, layer)
                return
            extra = _extra_sections(stacked)
            if html is not None:
                from imgscope.render.html import inspect_page

                write_html(html, inspect_page(stacked, extra))
            if json_:
                from imgscope.render.json_report import inspect_report

                print_json(_with_layer(inspect_report(stacked, top=top, extra=extra, lazy=True), layer))
                return
            _print_console(stacked, layer, tree, depth, sort, filter_, top, no_color, iec, extra)


def _print_report(stacked: Any, top: int, layer: int | None) -> None:
    """The JSON report; its waste section (written last) is computed beside the writing of the rest."""
    from imgscope.background import Forked
    from imgscope.render.json_report import inspect_report

    try:
        from imgscope.analysis import waste  # noqa: F401  (imported before the fork, not by the child)
    except ImportError:
        print_json(_with_layer(inspect_report(stacked, top=top, lazy=True), layer))
        return
    with Forked(_waste_section, stacked, work=len(stacked.final)) as section:
        print_json(_with_layer(inspect_report(stacked, top=top, extra={"waste": section}, lazy=True), layer))


def _with_layer(report: dict[str, Any], layer: int | None) -> dict[str, Any]:
    if layer is not None:
        report["selected_layer"] = layer
    return report


def _waste_section(stacked: Any) -> dict[str, Any]:
    from imgscope.analysis import waste

    return waste.to_dict(waste.analyse(stacked))


def _extra_sections(stacked: Any) -> dict[str, Any]:
    """Sections analyses contribute to the report (waste...), when those analyses exist."""
    extra: dict[str, Any] = {}
    try:
        from imgscope.analysis import waste
    except ImportError:
        return extra
    extra["waste"] = waste.to_dict(waste.analyse(stacked))
    return extra


def _print_console(
    stacked: Any,
    layer: int | None,
    tree: bool,
    depth: int | None,
    sort: str,
    pattern: str | None,
    top: int,
    no_color: bool,
    iec: bool,
    extra: dict[str, Any],
) -> None:
    from imgscope import stack as stacking
    from imgscope.render import console as view

    out = make_console(no_color)
    if layer is None:
        out.print(view.summary(stacked.image, iec))
        out.print()
    else:  # the layer was asked for: one line of context, then its changes (or tree)
        out.print(view.layer_header(stacked, layer, iec), soft_wrap=True)
    if tree:
        shown = stacked if layer is None else stacking.build(stacked.image, upto=layer)
        touched = None
        if layer is not None:
            touched = {c.path: c.kind for c in shown.layers[layer].changes}
        out.print(view.tree_view(shown.final, depth=depth, pattern=pattern, touched=touched, iec=iec, sort=sort))
    elif layer is not None:
        out.print(view.changes_table(stacked, layer, sort=sort, pattern=pattern, iec=iec))
    else:
        out.print(view.steps_table(stacked, iec, out.width))
        if "waste" in extra:
            try:
                from imgscope.render import waste as waste_view

                out.print(waste_view.render(extra["waste"], iec))
            except ImportError:
                pass
        if top:
            out.print(view.top_table(stacked.final.values(), top, iec))
    warn = view.warnings_text([*stacked.image.warnings, *stacked.warnings, *_layer_warnings(stacked)])
    if warn is not None:
        make_console(no_color, stderr=True).print(warn, end="")


def _layer_warnings(stacked: Any) -> list[str]:
    return [f"layer {r.index}: {w}" for r in stacked.layers for w in r.warnings]


def register(app: typer.Typer) -> None:
    """Add the command to the app."""
    app.command("inspect")(inspect)
