"""The published JSON Schemas of every ``--json`` output, shipped inside the package.

Scripts that consume imgscope's JSON can validate against these; the tests
validate every command's output against them so the schema cannot drift.
"""

from __future__ import annotations

import json
from importlib import resources
from typing import Any


def load_schema(command: str) -> dict[str, Any]:
    """The schema of ``imgscope COMMAND --json`` (``inspect``, ``diff``, ...)."""
    text = resources.files("imgscope").joinpath("schema", f"{command}.schema.json").read_text("utf-8")
    data: dict[str, Any] = json.loads(text)
    return data
