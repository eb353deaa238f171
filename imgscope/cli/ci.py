"""``imgscope ci REF``: fail a build when an image passes its size or waste budget.

Thin on purpose: read the rules (config file, then options), load and stack
the image, run the waste analysis, measure the push size only when that rule
is on, read the baseline only when one is given, evaluate, then write
whatever outputs were asked for.  Exit 0 when every rule passes, 1 when one
fails, 2 on a config or input error (one line naming the file and line).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

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

if TYPE_CHECKING:
    from imgscope.analysis.rules import CiReport, PushSize, Snapshot
    from imgscope.model import Image

SizeOpt = str | None


def ci(
    ref: Annotated[str, typer.Argument(help="Image: a daemon name, an archive or layout path, or a transport:REF.")],
    config: Annotated[
        str | None,
        typer.Option("--config", help="Rules file (default: .imgscope.yaml/.toml, else .dive-ci, in this directory)."),
    ] = None,
    baseline: Annotated[
        str | None,
        typer.Option("--baseline", help="A saved `imgscope inspect --json` report, or an image REF, to compare with."),
    ] = None,
    max_size: Annotated[SizeOpt, typer.Option("--max-size", help="Image size limit (300MB, 1GiB, off).")] = None,
    max_compressed_size: Annotated[
        SizeOpt, typer.Option("--max-compressed-size", help="Push size limit: manifest sizes, else gzip -6 estimate.")
    ] = None,
    max_layers: Annotated[str | None, typer.Option("--max-layers", help="Most layers allowed (N, off).")] = None,
    max_layer_size: Annotated[SizeOpt, typer.Option("--max-layer-size", help="Largest layer allowed.")] = None,
    min_efficiency: Annotated[
        str | None, typer.Option("--min-efficiency", help="Least efficiency allowed (0.9 or 90%, off).")
    ] = None,
    max_wasted_bytes: Annotated[SizeOpt, typer.Option("--max-wasted-bytes", help="Most wasted bytes allowed.")] = None,
    max_wasted_percent: Annotated[
        str | None, typer.Option("--max-wasted-percent", help="Most wasted over stored bytes (10% or 0.1, off).")
    ] = None,
    max_growth: Annotated[
        list[str] | None,
        typer.Option("--max-growth", help="Most growth since --baseline (50MB or 5%); repeatable."),
    ] = None,
    forbid_path: Annotated[
        list[str] | None,
        typer.Option("--forbid-path", help="Glob that must not exist in the final image (**/.env); repeatable."),
    ] = None,
    max_junk_bytes: Annotated[
        SizeOpt, typer.Option("--max-junk-bytes", help="Most bytes of caches and junk left in the image.")
    ] = None,
    junit: Annotated[
        Path | None, typer.Option("--junit", help="Write a JUnit XML report (one testcase per rule).")
    ] = None,
    markdown: Annotated[Path | None, typer.Option("--markdown", help="Write a markdown summary.")] = None,
    html: HtmlOpt = None,
    json_: JsonOpt = False,
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
    """Check an image against size and waste budgets; exit 1 when a rule fails."""
    with handle_errors(debug):
        from imgscope.analysis import ciconfig, rules, waste

        started = time.monotonic()
        given = {
            "max-size": max_size,
            "max-compressed-size": max_compressed_size,
            "max-layers": max_layers,
            "max-layer-size": max_layer_size,
            "min-efficiency": min_efficiency,
            "max-wasted-bytes": max_wasted_bytes,
            "max-wasted-percent": max_wasted_percent,
            "max-growth": max_growth,
            "forbid-path": forbid_path,
            "max-junk-bytes": max_junk_bytes,
        }
        options = {
            name: (value if isinstance(value, list) else [value]) for name, value in given.items() if value is not None
        }
        settings = ciconfig.load_settings(config, options, baseline)
        opts = SourceOptions(
            platform, image, pull, verify, no_cache, max_layer_bytes, check_diff_ids=True, insecure=insecure
        )
        stacked = load_stacked(ref, opts, quiet=json_)
        img = stacked.image
        report_waste = waste.analyse(stacked)
        push = None
        if any(not limit.off for limit in settings.rules.of("max-compressed-size")):
            push = _push_size(ref, img, opts)
        snapshot = _baseline(settings.baseline, opts) if settings.baseline else None
        report = rules.evaluate(settings.rules, stacked, report_waste, push=push, baseline=snapshot)
        elapsed = time.monotonic() - started
        _write_outputs(report, junit, markdown, elapsed, iec)
        if html is not None:
            from imgscope.render.html import ci_page

            write_html(html, ci_page(report))
        if json_:
            from imgscope.render.ci import report_dict

            print_json(report_dict(report))
        else:
            from imgscope.render.ci import render

            make_console(no_color).print(render(report, iec), soft_wrap=True)
        if not report.passed:
            raise typer.Exit(1)


def _push_size(ref: str, img: Image, opts: SourceOptions) -> PushSize:
    """Manifest sizes where the source stores compressed blobs; gzip -6 of the others, read again."""
    from imgscope.analysis.rules import manifest_push_sizes, push_size
    from imgscope.sources.common import LoadOptions
    from imgscope.sources.layerbytes import gzip_sizes

    manifest = manifest_push_sizes(img)
    missing = {img.scans[i].diff_id: img.scans[i].tar_bytes for i, size in enumerate(manifest) if size is None}
    estimates: dict[int, int] = {}
    if missing:
        by_diff = gzip_sizes(ref, LoadOptions(platform=opts.platform, image=opts.image), missing)
        estimates = {i: by_diff[img.scans[i].diff_id] for i, size in enumerate(manifest) if size is None}
    return push_size(manifest, estimates)


def _baseline(text: str, opts: SourceOptions) -> Snapshot:
    """A saved report when ``text`` names one, else an image to load and stack."""
    from imgscope.analysis import ciconfig
    from imgscope.analysis.rules import snapshot_of
    from imgscope.errors import ImgscopeError

    if ciconfig.is_report_path(text):
        return ciconfig.read_report(Path(text))
    if text.lower().endswith(".json") and "://" not in text:
        raise ImgscopeError(f"baseline {text}: no such file")

    try:
        base = load_stacked(text, opts, quiet=True)
    except ImgscopeError as exc:
        raise ImgscopeError(f"baseline {text}: {exc.message}") from exc
    return snapshot_of(base, text)


def _write_outputs(report: CiReport, junit: Path | None, markdown: Path | None, elapsed: float, iec: bool) -> None:
    """JUnit and markdown files, and the markdown appended to ``$GITHUB_STEP_SUMMARY`` when set."""
    from imgscope.analysis.ciconfig import step_summary_path

    if junit is not None:
        from imgscope.render.junit import ci_junit

        _write(junit, ci_junit(report, elapsed=elapsed, iec=iec), "--junit")
    summary = step_summary_path()
    if markdown is not None or summary is not None:
        from imgscope.render.markdown import ci_summary

        text = ci_summary(report, iec)
        if markdown is not None:
            _write(markdown, text, "--markdown")
        if summary is not None:
            try:
                with open(summary, "a", encoding="utf-8") as fh:
                    fh.write(text + "\n")
            except OSError as exc:
                # The verdict matters more than the summary: warn, do not fail the run.
                sys.stderr.write(f"imgscope: warning: GITHUB_STEP_SUMMARY {summary}: cannot append ({exc.strerror})\n")


def _write(path: Path, text: str, option: str) -> None:
    from imgscope.errors import ImgscopeError

    try:
        path.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise ImgscopeError(f"{option} {path}: cannot write ({exc.strerror})") from exc


def register(app: typer.Typer) -> None:
    """Add the command to the app."""
    app.command("ci")(ci)
