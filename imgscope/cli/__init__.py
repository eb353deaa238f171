"""The ``imgscope`` command line: a thin typer app, one module per command.

Nothing heavy is imported here: each command imports what it needs when it
runs, so ``imgscope --help`` stays instant.  Nothing else imports the CLI.
"""

from __future__ import annotations

import sys
from typing import Annotated, Any

import typer
from typer.core import TyperArgument, TyperGroup, TyperOption

from imgscope import __version__

#: What each option's value is, as the help shows it (``--max-size SIZE``); typer would print the
#: Python type (``<str>``).  Options not listed show SIZE, N, FILE or VALUE by their type.
METAVARS = {
    "layer": "N",
    "depth": "N",
    "top": "N",
    "max_layers": "N",
    "sort": "ORDER",
    "filter": "GLOB",
    "forbid_path": "GLOB",
    "path": "GLOB",
    "ignore": "GLOB",
    "platform": "OS/ARCH",
    "image": "TAG",
    "base": "REF",
    "baseline": "REPORT_OR_REF",
    "config": "FILE",
    "ignore_file": "FILE",
    "junit": "FILE",
    "markdown": "FILE",
    "sarif": "FILE",
    "fail_on": "SEVERITY",
    "format": "FORMAT",
    "min_efficiency": "FRACTION",
    "max_wasted_percent": "FRACTION",
    "max_growth": "SIZE_OR_PERCENT",
    "content": "PATH",
}


class _Argument(TyperArgument):
    """An argument shown by its name alone: ``REF`` in the usage line and the list, no ``{ref}`` or ``<str>``."""

    def display_type_rich(self, ctx: Any) -> str | None:
        return None

    def _usage_display_name(self) -> str:  # typer 0.29: the usage line
        return self._plain(usage=True)

    def make_metavar(self, *args: Any, **kwargs: Any) -> str:  # typer < 0.29: usage line and list
        return self._plain(usage=bool(kwargs.get("usage")))

    def _plain(self, usage: bool) -> str:
        name = self.metavar or (self.name or "value").upper()
        name = f"[{name}]" if usage and not self.required else name
        return name + ("..." if self.nargs != 1 else "")


def _name_values(command: Any) -> None:
    """Give every argument and valued option of ``command`` (and its subcommands) a plain metavar."""
    for param in command.params:
        if isinstance(param, TyperArgument):
            param.metavar = param.metavar or (param.name or "value").upper()
            param.__class__ = _Argument
        elif isinstance(param, TyperOption) and not param.is_flag and param.metavar is None:
            name = (param.name or "").strip("_")  # filter_ -> filter
            # By the click type's name, which every typer version sets (``bare_type`` is typer 0.29's only).
            kind = str(getattr(param.type, "name", ""))
            if name in METAVARS:
                param.metavar = METAVARS[name]
            elif "SIZE" in (param.help or "") or name.endswith(("_size", "_bytes")):
                param.metavar = "SIZE"
            elif kind in ("integer", "integer range"):
                param.metavar = "N"
            elif kind == "path":
                param.metavar = "FILE"
            else:
                param.metavar = "VALUE"
    for sub in getattr(command, "commands", {}).values():
        _name_values(sub)


class _Group(TyperGroup):
    """The root group: names every value in ``--help`` the way the docs do (REF, SIZE, N, GLOB)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        _name_values(self)


#: Every command, in the order ``--help`` lists them (one module each under ``imgscope.cli``).
COMMANDS = ("inspect", "container", "diff", "shared", "ci", "audit", "explore", "cache")


def _version(value: bool) -> None:
    if value:
        print(f"imgscope {__version__}")
        raise typer.Exit(0)


def _root(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Show the version and exit.")
    ] = False,
) -> None:
    """See what is inside a container image, layer by layer."""


def build_app(only: str | None = None) -> typer.Typer:
    """The app with every command, or with ``only`` that one (what a run of that command needs).

    Turning the commands' signatures into click commands takes typer 15-20 ms
    for all eight, paid before any work; a run of ``imgscope inspect`` needs
    one of them.  ``--help`` and unknown names get the whole app.
    """
    import importlib

    app = typer.Typer(
        cls=_Group,
        name="imgscope",
        help="See what is inside a container image, layer by layer, and what each Dockerfile step cost.",
        no_args_is_help=True,
        add_completion=False,
        pretty_exceptions_enable=False,
        rich_markup_mode=None,
    )
    app.callback()(_root)
    for name in COMMANDS if only is None else (only,):
        try:
            module = importlib.import_module(f"imgscope.cli.{name}")
        except ModuleNotFoundError as exc:
            if exc.name != f"imgscope.cli.{name}":
                raise
            continue
        module.register(app)
    return app


_whole: typer.Typer | None = None


def __getattr__(name: str) -> typer.Typer:
    """``imgscope.cli.app``: the whole app, built on first use (tests drive it with typer's runner)."""
    global _whole
    if name != "app":
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    if _whole is None:
        _whole = build_app()
    return _whole


def main() -> None:
    """The command line: Ctrl-C exits 130 without a traceback."""
    first = sys.argv[1] if len(sys.argv) > 1 else ""
    app = build_app(first) if first in COMMANDS else __getattr__("app")
    try:
        app()
    except KeyboardInterrupt:
        sys.stderr.write("imgscope: interrupted\n")
        sys.exit(130)


def run() -> None:
    """Console-script entry point: :func:`main`, then an exit that skips tearing the interpreter down.

    A finished command has nothing left to clean up, yet the interpreter's
    own exit frees every module and object one by one: 20-30 ms after an
    ``inspect`` of a large image, 15 ms after ``--help``, paid on every run.
    Here the output is flushed and the exit handlers run (the same ones), then
    the process ends.  With a non-daemon thread still running (none of
    imgscope's), the ordinary exit waits for it instead.  Code that calls
    :func:`main` in-process (tests) keeps the ordinary ``SystemExit``.
    """
    import atexit
    import os
    import threading

    try:
        main()
        code: str | int | None = 0
    except SystemExit as exc:
        code = exc.code
    run_exit_handlers = getattr(atexit, "_run_exitfuncs", None)
    others = [t for t in threading.enumerate() if t is not threading.main_thread() and not t.daemon]
    if run_exit_handlers is None or others:
        sys.exit(code)
    if code is None:
        status = 0
    elif isinstance(code, int):
        status = code
    else:  # sys.exit("message"): printed, status 1, as the interpreter does
        sys.stderr.write(f"{code}\n")
        status = 1
    run_exit_handlers()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # what the interpreter's exit makes of an output it cannot flush
            status = status or 120
    os._exit(status)
