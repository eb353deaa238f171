"""``imgscope container NAME_OR_ID``: what a container wrote, classified against its image.

Thin wiring: the daemon source reads the container's changes and loads its
image, the stack gives the image's final tree, the container analysis
classifies, a renderer prints.  ``podman://NAME`` reads a podman container
through podman's Docker-compatible socket; ``docker://NAME`` is the default.
"""

from __future__ import annotations

import posixpath
from typing import TYPE_CHECKING, Annotated

import typer

from imgscope.cli.common import (
    DebugOpt,
    IecOpt,
    JsonOpt,
    NoColorOpt,
    SourceOptions,
    handle_errors,
    load_stacked,
    make_console,
    print_json,
)

if TYPE_CHECKING:
    from imgscope.analysis.container import ContainerReport, ContentDiff
    from imgscope.sources.daemon import Daemon, FileContent
    from imgscope.stack import Stack


def container(
    name_or_id: Annotated[
        str, typer.Argument(metavar="NAME_OR_ID", help="A container name or id (podman://NAME for podman).")
    ],
    content: Annotated[
        str | None,
        typer.Option("--content", metavar="PATH", help="Show a unified diff of one changed file against the image."),
    ] = None,
    json_: JsonOpt = False,
    debug: DebugOpt = False,
    no_color: NoColorOpt = False,
    iec: IecOpt = False,
) -> None:
    """Show what a container (running or stopped) wrote since it was created, with sizes and change kinds."""
    with handle_errors(debug):
        from imgscope.analysis import container as analysis
        from imgscope.errors import ImgscopeError
        from imgscope.sources import daemon as source

        podman = name_or_id.startswith("podman://")
        name = name_or_id.split("://", 1)[1] if name_or_id.startswith(("docker://", "podman://")) else name_or_id
        if not name:
            raise ImgscopeError("no container name or id given")
        engine = source.connect(podman)
        try:
            # The image first: its tree tells the source which changed directories are cheap
            # to read in one request.
            attrs = engine.container_attrs(name)
            image_id = str(attrs.get("Image") or "")
            if not image_id or not engine.image_exists(image_id):
                shown = str(attrs.get("Name") or name).lstrip("/")
                raise ImgscopeError(
                    f"the image of container {shown} ({(attrs.get('Config') or {}).get('Image') or image_id}) "
                    f"is no longer in {engine.endpoint.label}"
                )
            transport = "podman://" if podman else "docker://"
            stacked = load_stacked(transport + image_id, SourceOptions(), quiet=json_)
            snapshot = engine.container(str(attrs.get("Id") or name), analysis.bytes_below(stacked))
            report = analysis.analyse(snapshot, stacked)
            diff = _content(engine, report, stacked, content) if content else None
        finally:
            engine.close()
        if json_:
            from imgscope.render.container import report_dict

            print_json(report_dict(report, diff))
            return
        _print(report, diff, no_color, iec)


def _content(engine: Daemon, report: ContainerReport, stacked: Stack, raw_path: str) -> ContentDiff:
    """Fetch the two versions of one changed file and diff them."""
    from imgscope.analysis.container import TEXT_DIFF_LIMIT, content_diff
    from imgscope.errors import ImgscopeError
    from imgscope.model import DIR, FILE, HARDLINK, SYMLINK

    path = posixpath.normpath("/" + raw_path.lstrip("/"))
    change = report.change(path)
    if change is None:
        raise ImgscopeError(f"--content {path}: the container has not changed this path (docker diff does not list it)")
    if change.type == DIR:
        raise ImgscopeError(f"--content {path}: is a directory; pick a file below it")
    old: FileContent | None = None
    new: FileContent | None = None
    image = change.image
    if image is not None:
        if image.type == SYMLINK:
            old = _link_content(image.link)
        elif image.type == FILE:
            found = stacked.final.get(path)
            where = found.entry.link if found is not None and found.entry.type == HARDLINK else path
            old = engine.image_file(report.image_id, where, image.digest, TEXT_DIFF_LIMIT)
            if old is None:
                raise ImgscopeError(f"--content {path}: the image's version could not be read from the daemon")
    current = change.current
    if current is not None:
        if current.type == SYMLINK:
            new = _link_content(current.link)
        elif current.type in (FILE, HARDLINK):
            new = engine.container_file(report.container_id, path, TEXT_DIFF_LIMIT)
    if old is None and new is None:
        raise ImgscopeError(f"--content {path}: neither the image nor the container holds a regular file there")
    return content_diff(path, change.kind, old, new)


def _link_content(target: str) -> FileContent:
    """A symlink compared by its target, as a one-line text."""
    import xxhash

    from imgscope.sources.daemon import FileContent

    raw = target.encode("utf-8", "surrogateescape")
    return FileContent(len(raw), xxhash.xxh3_64(raw).hexdigest(), raw + b"\n")


def _print(report: ContainerReport, diff: ContentDiff | None, no_color: bool, iec: bool) -> None:
    from imgscope.render import container as view

    out = make_console(no_color)
    out.print(view.header(report, iec))
    out.print()
    out.print(view.changes_table(report, iec))
    mounts = view.mounts_text(report)
    if mounts is not None:
        out.print()
        out.print(mounts, end="")
    if diff is not None:
        out.print()
        out.print(view.content_view(diff, iec))
    if report.warnings:
        err = make_console(no_color, stderr=True)
        for line in report.warnings:
            err.print(f"warning: {line}", style="yellow")


def register(app: typer.Typer) -> None:
    """Add the command to the app."""
    app.command("container")(container)
