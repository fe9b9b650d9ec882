"""Parsing one protocol line: orjson, and the stdlib for the numbers orjson refuses.

JSON allows any number; orjson refuses integers beyond 64 bits and numbers beyond a double.
The stdlib reads them, but int() refuses over 4,300 digits and float makes 1e400 inf: numbers
stay their text (orjson.Fragment), so a message parsed here and serialized again by
orjson.dumps (a STATE echoed, a RECORD renamed) keeps them exactly as they came. NaN and
Infinity are not JSON and stay refused.
"""

from __future__ import annotations

import json
from typing import Any

import orjson


def loads(line: bytes) -> Any:
    """One JSON value; raises ValueError (orjson.JSONDecodeError is one) or RecursionError."""
    try:
        return orjson.loads(line)
    except orjson.JSONDecodeError:
        return stdlib_loads(line)


def stdlib_loads(line: bytes) -> Any:
    """The stdlib parser alone, numbers kept as their text (see the module's docstring)."""
    return json.loads(
        line, parse_constant=_reject_constant, parse_int=orjson.Fragment,
        parse_float=orjson.Fragment,
    )  # fmt: skip


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")
