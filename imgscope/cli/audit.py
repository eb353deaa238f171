"""``imgscope audit REF``: secrets, risky modes and config before an image is pushed.

Thin on purpose: read the ignore file, load the image once with the secret
scanner as the layer-scan visitor (content is searched in the same single
streaming pass that scans the layers), load ``--base`` when given, stack,
audit, then write SARIF and the console or JSON report.  Exit 0 when no
finding reaches ``--fail-on``, 1 when one does, 2 on an input error.
"""

from __future__ import annotations

import dataclasses
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
    load_image,
    load_stacked,
    make_console,
    print_json,
    write_html,
)

if TYPE_CHECKING:
    from imgscope.analysis.audit import AuditReport


def audit(
    ref: Annotated[str, typer.Argument(help="Image: a daemon name, an archive or layout path, or a transport:REF.")],
    fail_on: Annotated[
        str,
        typer.Option("--fail-on", help="Exit 1 on a finding this severe or worse: low, medium, high, critical."),
    ] = "high",
    base: Annotated[
        str | None,
        typer.Option("--base", help="Base image: findings it already has are marked inherited, one severity lower."),
    ] = None,
    sarif: Annotated[Path | None, typer.Option("--sarif", help="Write a SARIF 2.1.0 log to FILE.")] = None,
    html: HtmlOpt = None,
    ignore_file: Annotated[
        Path | None,
        typer.Option("--ignore-file", help="Ignore file (default: .imgscopeignore in this directory, when present)."),
    ] = None,
    max_scan_bytes: Annotated[
        str, typer.Option("--max-scan-bytes", help="Read at most SIZE of each file's content (default 10MB).")
    ] = "10MB",
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
    """Find what must not ship: secrets in any layer, setuid and world-writable paths, root user."""
    with handle_errors(debug):
        from imgscope.analysis import audit as auditing
        from imgscope.analysis.secrets import ContentScanner
        from imgscope.errors import ImgscopeError
        from imgscope.units import parse_size

        if fail_on not in auditing.FAIL_ON_CHOICES:
            raise ImgscopeError(f"--fail-on {fail_on!r}: use one of {', '.join(auditing.FAIL_ON_CHOICES)}")
        limit = parse_size(max_scan_bytes, "--max-scan-bytes")
        ignore_path = ignore_file
        if ignore_path is None and Path(auditing.DEFAULT_IGNORE_FILE).is_file():
            ignore_path = Path(auditing.DEFAULT_IGNORE_FILE)
        ignore = auditing.load_ignore(ignore_path) if ignore_path is not None else ()
        opts = SourceOptions(
            platform, image, pull, verify, no_cache, max_layer_bytes, check_diff_ids=True, insecure=insecure
        )
        scanner = ContentScanner(limit)
        stacked = load_stacked(ref, opts, visitor=scanner, quiet=json_)
        # --image picks among this archive's images, not the base's (name it as PATH:TAG there).
        base_opts = dataclasses.replace(opts, image=None)
        base_img = load_image(base, base_opts, quiet=json_) if base else None
        report = auditing.audit(
            stacked,
            scanner.results(),
            stats=scanner.stats(),
            max_scan_bytes=limit,
            fail_on=fail_on,
            base=base_img,
            ignore=ignore,
            ignore_file=str(ignore_path) if ignore_path is not None else None,
        )
        if sarif is not None:
            _write_sarif(sarif, report)
        if html is not None:
            from imgscope.render.html import audit_page

            write_html(html, audit_page(report))
        if json_:
            from imgscope.render.audit import to_dict

            print_json(to_dict(report))
        else:
            from imgscope.render.audit import render

            # Wrapped to the terminal (COLUMNS when piped): the report must read at 80 columns.
            make_console(no_color).print(render(report, iec))
        if report.exit_code:
            raise typer.Exit(report.exit_code)


def _write_sarif(path: Path, report: AuditReport) -> None:
    import json

    from imgscope.errors import ImgscopeError
    from imgscope.render.sarif import to_sarif

    try:
        # A name that is not UTF-8 is a lone surrogate: written as its JSON escape, as print_json does.
        text = json.dumps(to_sarif(report), indent=2, ensure_ascii=False) + "\n"
        path.write_bytes(text.encode("utf-8", "backslashreplace"))
    except OSError as exc:
        raise ImgscopeError(f"--sarif {path}: cannot write ({exc.strerror or exc})") from exc


def register(app: typer.Typer) -> None:
    """Add the command to the app."""
    app.command("audit")(audit)
