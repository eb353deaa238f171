"""``imgscope shared REF... | --all``: which layers a set of images shares, and what it saves.

``--all`` takes the images ``docker images`` lists (tagged images and dangling
ones, not the intermediate images of the legacy builder), which is the set
``docker system df`` counts shared sizes over; each is then read like any
``docker://`` image, so the figures come from scanned layers, not from the
daemon's own accounting.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from imgscope.cli.common import (
    DebugOpt,
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
    make_console,
    print_json,
)

if TYPE_CHECKING:
    from imgscope.model import Image


def shared(
    refs: Annotated[
        list[str] | None, typer.Argument(metavar="REF", help="Images to compare (any mix of sources).")
    ] = None,
    all_: Annotated[bool, typer.Option("--all", help="Every image of the local Docker daemon.")] = False,
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
    """Show which layers images share (by ChainID), each image's shared and unique bytes, and the savings."""
    with handle_errors(debug):
        from imgscope.errors import ImgscopeError

        names = list(refs or [])
        if all_ and names:
            raise ImgscopeError("give image references or --all, not both")
        if not all_ and not names:
            raise ImgscopeError("give at least one image reference, or --all for every daemon image")
        opts = SourceOptions(platform, image, pull, verify, no_cache, max_layer_bytes, insecure=insecure)
        images = daemon_images(opts, quiet=json_) if all_ else [(n, load_image(n, opts, quiet=json_)) for n in names]

        from imgscope.analysis.shared import analyse

        report = analyse(images)
        if json_:
            from imgscope.render.shared import to_dict

            print_json(to_dict(report))
            return
        from imgscope.render import console as view
        from imgscope.render.shared import render

        make_console(no_color).print(render(report, iec))
        warn = view.warnings_text(report.warnings)
        if warn is not None:
            make_console(no_color, stderr=True).print(warn, end="")


def daemon_images(opts: SourceOptions, quiet: bool = False) -> list[tuple[str, Image]]:
    """Every image ``docker images`` lists, loaded by ID; images removed meanwhile are skipped."""
    from docker.errors import DockerException, NotFound

    from imgscope.errors import ImgscopeError
    from imgscope.sources import daemon

    engine = daemon.connect()
    try:
        try:
            listed = engine.client.api.images()
        except (DockerException, OSError) as exc:
            raise ImgscopeError(f"cannot list images of {engine.endpoint.label}: {daemon.why(exc)}") from exc
        out: list[tuple[str, Image]] = []
        for item in listed or []:
            image_id = str(item.get("Id") or "")
            if not image_id:
                continue
            tags = [t for t in item.get("RepoTags") or [] if t and t != "<none>:<none>"]
            name = tags[0] if tags else image_id.removeprefix("sha256:")[:12]
            try:
                out.append((name, load_image(f"docker://{image_id}", opts, quiet=quiet)))
            except ImgscopeError:
                try:
                    engine.client.api.inspect_image(image_id)
                except NotFound:
                    continue  # removed while we were reading the others
                except (DockerException, OSError):
                    pass
                raise
        return out
    finally:
        engine.close()


def register(app: typer.Typer) -> None:
    """Add the command to the app."""
    app.command("shared")(shared)
