"""The ``imgscope`` command line: a thin typer app, one module per command.

Nothing heavy is imported here: each command imports what it needs when it
runs, so ``imgscope --help`` stays instant.  Nothing else imports the CLI.
"""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from imgscope import __version__

app = typer.Typer(
    name="imgscope",
    help="See what is inside a container image, layer by layer, and what each Dockerfile step cost.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)


def _version(value: bool) -> None:
    if value:
        print(f"imgscope {__version__}")
        raise typer.Exit(0)


@app.callback()
def _root(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Show the version and exit.")
    ] = False,
) -> None:
    """See what is inside a container image, layer by layer."""


def _register() -> None:
    import importlib

    for name in ("inspect", "container", "diff", "shared", "ci", "audit", "explore", "cache"):
        try:
            module = importlib.import_module(f"imgscope.cli.{name}")
        except ModuleNotFoundError as exc:
            if exc.name != f"imgscope.cli.{name}":
                raise
            continue
        module.register(app)


_register()


def main() -> None:
    """Console-script entry point: Ctrl-C exits 130 without a traceback."""
    try:
        app()
    except KeyboardInterrupt:
        sys.stderr.write("imgscope: interrupted\n")
        sys.exit(130)
