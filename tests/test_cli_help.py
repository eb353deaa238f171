"""``--help`` of every command names its values as the docs do (REF, SIZE, N, GLOB), never by Python type."""

from __future__ import annotations

import re

import pytest
from typer.testing import CliRunner

from imgscope.cli import app

COMMANDS = [["inspect"], ["container"], ["diff"], ["shared"], ["ci"], ["audit"], ["explore"], ["cache", "info"]]


@pytest.mark.parametrize("command", COMMANDS, ids=[" ".join(c) for c in COMMANDS])
def test_help_has_no_type_placeholders(command: list[str]) -> None:
    result = CliRunner().invoke(app, [*command, "--help"], env={"COLUMNS": "120"})
    assert result.exit_code == 0, result.output
    text = result.output
    assert not re.search(r"\{[a-z_]+\}|<(str|int|path|float|int range|list\[str\])>", text), text
    assert "Usage: imgscope " + " ".join(command) in text
    # Every valued option shows a metavar in capitals after its name.
    for line in text.splitlines():
        found = re.match(r"\s+(--[a-z-]+) (\S+)\s", line)
        if found:
            assert found.group(2).isupper() or found.group(2) in ("/",), line


def test_help_names_values_like_the_docs() -> None:
    runner = CliRunner()
    inspect = runner.invoke(app, ["inspect", "--help"], env={"COLUMNS": "120"}).output
    assert "Usage: imgscope inspect [OPTIONS] REF" in inspect
    for expected in ("--layer N", "--filter GLOB", "--max-layer-bytes SIZE", "--platform OS/ARCH", "--sort ORDER"):
        assert expected in inspect
    # Named by their type, not listed by name: a path is FILE, an integer N.
    assert "--html FILE" in inspect and "--top N" in inspect and " VALUE " not in inspect
    diff = runner.invoke(app, ["diff", "--help"], env={"COLUMNS": "120"}).output
    assert "Usage: imgscope diff [OPTIONS] REF_A REF_B" in diff
    ci = runner.invoke(app, ["ci", "--help"], env={"COLUMNS": "120"}).output
    for expected in ("--max-size SIZE", "--baseline REPORT_OR_REF", "--max-growth SIZE_OR_PERCENT", "--junit FILE"):
        assert expected in ci
