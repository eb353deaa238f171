"""``imgscope cache info|clear``: the layer scan cache (see imgscope/cache.py)."""

from __future__ import annotations

from typing import Annotated

import typer

from imgscope.cli.common import DebugOpt, JsonOpt, handle_errors, print_json

cache_app = typer.Typer(
    help="The layer scan cache: scans of layers already read, keyed by DiffID.", no_args_is_help=True
)


@cache_app.command("info")
def info(json_: JsonOpt = False, debug: DebugOpt = False) -> None:
    """Where the cache is, how many layer scans it holds and its size on disk."""
    with handle_errors(debug):
        from imgscope.cache import open_cache
        from imgscope.units import format_size

        facts = open_cache().info()
        if json_:
            print_json({"schema_version": 1, "path": facts.path, "layers": facts.layers, "bytes": facts.bytes})
            return
        print(f"cache: {facts.path}\nlayers: {facts.layers}\nsize: {format_size(facts.bytes)} ({facts.bytes} bytes)")


@cache_app.command("clear")
def clear(
    debug: DebugOpt = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Print nothing.")] = False,
) -> None:
    """Remove every cached layer scan."""
    with handle_errors(debug):
        from imgscope.cache import open_cache

        removed = open_cache().clear()
        if not quiet:
            print(f"removed {removed} cached layer scans")


def register(app: typer.Typer) -> None:
    """Add the command group to the app."""
    app.add_typer(cache_app, name="cache")
