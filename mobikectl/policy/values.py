"""Leaf values of a policy file: durations, sizes, percentages, addresses, choices.

Each converter takes the value as TOML gave it and returns the typed value, or raises
`Invalid` saying what it expected (the loader adds the file, the key path and the value).
"""

from __future__ import annotations

import datetime
import ipaddress
import math
import re
from typing import Any, Callable


class Invalid(Exception):
    """A leaf value is wrong: `expected` says what would be right."""

    def __init__(self, expected: str) -> None:
        super().__init__(expected)
        self.expected = expected


Converter = Callable[[Any], Any]


# --- showing values the way they were written -----------------------------------------------

def show(value: Any) -> str:
    """A value as TOML would spell it, for messages."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, list):
        return "[" + ", ".join(show(v) for v in value) + "]"
    if isinstance(value, dict):
        return "a table"
    if isinstance(value, (datetime.date, datetime.time)):
        return value.isoformat()
    return repr(value)


# --- leaf converters -------------------------------------------------------------------------

def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def integer(minimum: int) -> Converter:
    def convert(value: Any) -> int:
        if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
            raise Invalid(f"an integer >= {minimum}")
        return value
    return convert


def boolean(value: Any) -> bool:
    if not isinstance(value, bool):
        raise Invalid("true or false")
    return value


def text(value: Any) -> str:
    if not isinstance(value, str):
        raise Invalid("a string")
    return value


_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)\s*(ms|s|m|h)")
_DURATION_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_duration(value: Any) -> float:
    """ "500ms", "2s", "1m30s", "1h", or a number of seconds -> seconds. ValueError if not."""
    if _is_number(value):
        if not math.isfinite(value) or value < 0:
            raise ValueError(value)
        return float(value)
    if not isinstance(value, str):
        raise ValueError(value)
    spec = value.strip()
    pos, total = 0, 0.0
    for part in _DURATION_PART.finditer(spec):
        if part.start() != pos:
            raise ValueError(value)
        total += float(part.group(1)) * _DURATION_UNITS[part.group(2)]
        pos = part.end()
    if pos == 0 or pos != len(spec):
        raise ValueError(value)
    return total


def duration(*, positive: bool) -> Converter:
    what = "a duration > 0" if positive else "a duration >= 0"

    def convert(value: Any) -> float:
        try:
            seconds = parse_duration(value)
        except ValueError:
            raise Invalid(f'{what} such as "500ms", "2s", "1m" or a number of seconds') from None
        if positive and seconds <= 0:
            raise Invalid(f'{what} such as "500ms", "2s", "1m"')
        return seconds
    return convert


_SIZE = re.compile(r"(\d+(?:\.\d+)?)\s*(B|kB|KB|MB|GB|KiB|MiB|GiB)")
_SIZE_UNITS = {"B": 1e-6, "kB": 1e-3, "KB": 1e-3, "MB": 1.0, "GB": 1e3,
               "KiB": 1024 / 1e6, "MiB": 1024**2 / 1e6, "GiB": 1024**3 / 1e6}


def size_mb(value: Any) -> float:
    """ "15MB", "500kB", "1GiB" (or the number 0) -> megabytes (10^6 bytes)."""
    if _is_number(value) and value == 0:
        return 0.0
    match = _SIZE.fullmatch(value.strip()) if isinstance(value, str) else None
    if match is None:
        raise Invalid('a size with a unit such as "15MB" or "500kB" (B, kB, MB, GB, KiB, MiB, GiB), or 0')
    return float(match.group(1)) * _SIZE_UNITS[match.group(2)]


def fraction(value: Any) -> float:
    """ "20%" or 0.2 -> 0.2; from 0 (no limit) up to, not including, 100%."""
    expected = 'a percentage from "0%" (no limit) up to "99%", or a fraction such as 0.2'
    if _is_number(value):
        number = float(value)
    elif isinstance(value, str) and re.fullmatch(r"\d+(?:\.\d+)?\s*%", value.strip()):
        number = float(value.strip().rstrip("%").strip()) / 100
    else:
        raise Invalid(expected)
    if not math.isfinite(number) or not 0 <= number < 1:
        raise Invalid(expected)
    return number


def choice(options: list[str]) -> Converter:
    def convert(value: Any) -> str:
        if value not in options:
            raise Invalid("one of " + ", ".join(show(o) for o in options))
        return value
    return convert


def ip_address(*, allow_empty: bool) -> Converter:
    def convert(value: Any) -> str:
        if allow_empty and value == "":
            return ""
        try:
            return str(ipaddress.ip_address(value))
        except (ValueError, TypeError):
            raise Invalid("an IP address such as \"10.200.0.10\"" + (' or "" (off)' if allow_empty else "")) from None
    return convert
