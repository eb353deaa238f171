"""Sizes and fractions as people write them and read them.

Decimal units by default (kB, MB, GB: powers of 1000, as ``docker`` and dive
show them), binary ones with ``--iec``; inputs accept both (``300MB`` is
300 * 10^6, ``300MiB`` 300 * 2^20) and a bare number is bytes.
"""

from __future__ import annotations

import re

from imgscope.errors import ImgscopeError

_UNITS = {
    "": 1,
    "b": 1,
    "k": 1000,
    "kb": 1000,
    "m": 1000**2,
    "mb": 1000**2,
    "g": 1000**3,
    "gb": 1000**3,
    "t": 1000**4,
    "tb": 1000**4,
    "ki": 1024,
    "kib": 1024,
    "mi": 1024**2,
    "mib": 1024**2,
    "gi": 1024**3,
    "gib": 1024**3,
    "ti": 1024**4,
    "tib": 1024**4,
}
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*$")


def parse_size(text: str, what: str = "size") -> int:
    """``300MB`` -> 300000000, ``1.5GiB`` -> bytes, ``42`` -> 42."""
    match = _SIZE.match(str(text))
    if not match:
        raise ImgscopeError(f"{what}: {text!r} is not a size (examples: 300MB, 1.5GiB, 4096)")
    number, unit = match.groups()
    factor = _UNITS.get(unit.lower())
    if factor is None:
        raise ImgscopeError(f"{what}: unknown unit {unit!r} in {text!r} (use B, kB, MB, GB, KiB, MiB, GiB)")
    return int(float(number) * factor)


def parse_fraction(text: str, what: str = "value") -> float:
    """``5%`` -> 0.05; ``0.05`` -> 0.05 (for options that take only a fraction)."""
    raw = str(text).strip()
    try:
        if raw.endswith("%"):
            return float(raw[:-1]) / 100
        value = float(raw)
    except ValueError as exc:
        raise ImgscopeError(f"{what}: {text!r} is not a fraction or a percent (examples: 0.9, 5%)") from exc
    return value


def format_size(n: int | float, iec: bool = False) -> str:
    """Human size: ``12.3 MB`` (decimal) or ``11.7 MiB`` (``iec``)."""
    base = 1024 if iec else 1000
    units = ["B", "KiB", "MiB", "GiB", "TiB"] if iec else ["B", "kB", "MB", "GB", "TB"]
    value = float(n)
    sign = "-" if value < 0 else ""
    value = abs(value)
    for unit in units:
        if value < base or unit == units[-1]:
            if unit == "B":
                return f"{sign}{int(value)} B"
            return f"{sign}{value:.1f} {unit}"
        value /= base
    return f"{sign}{value:.1f} {units[-1]}"  # pragma: no cover
