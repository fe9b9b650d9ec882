"""Parsing one protocol line exactly: orjson, and the stdlib for the numbers orjson rounds.

JSON allows any number. orjson (3.13) reads an integer beyond 64 bits as a float, rounded,
and a decimal with more digits than a double holds rounded too, without an error (1e400 it
refuses). The stdlib reads them, but int() refuses over 4,300 digits and float makes 1e400
inf: numbers stay their text (orjson.Fragment), so a message parsed here and serialized again
by orjson.dumps (a STATE echoed, a RECORD renamed) keeps them exactly as they came. NaN and
Infinity are not JSON and stay refused. Which lines orjson may round is told from their text
(may_round): a long run of digits, which may also sit in a string — such a line then takes the
stdlib's slower way for nothing, and is read exactly all the same.
"""

from __future__ import annotations

import decimal
import json
import math
import re
import sys
from typing import Any

import orjson

# An integer of 19+ digits (past 64 bits from -9223372036854775809 on), a decimal of 16+
# significant digits (the 17 characters with its point), a 16+-digit mantissa before an
# exponent, a negative exponent of 3+ digits (1e-400 read as 0.0, 3e-324 as 5e-324): what
# orjson may read rounded.
_MAY_ROUND = re.compile(rb"\d{19,}|(?=[\d.]{17})\d+\.\d+|\d{16,}[eE]|[eE]-\d{3}")
# The regex tries its branches at every position (about 70 ns a byte); this table maps a line
# in one C pass to what they need — digits and points as d, e/E as e, a minus as s — so most
# lines are told apart by two substring searches, and only the rest go to the regex.
_CLASSES = bytes(
    ord("d") if chr(i) in "0123456789." else ord("e") if chr(i) in "eE" else
    ord("s") if chr(i) == "-" else ord(" ")
    for i in range(256)
)  # fmt: skip


def may_round(text: bytes) -> bool:
    """Whether orjson could read a number of `text` rounded (see the module's docstring)."""
    classes = text.translate(_CLASSES)
    if b"dddddddddddddddd" not in classes and b"esddd" not in classes:
        return False
    return _MAY_ROUND.search(text) is not None


def loads(line: bytes) -> Any:
    """One JSON value, its numbers exact; raises ValueError (orjson.JSONDecodeError is one) or
    RecursionError."""
    if may_round(line):
        return stdlib_loads(line)
    try:
        return orjson.loads(line)
    except orjson.JSONDecodeError:
        return stdlib_loads(line)


def stdlib_loads(line: bytes) -> Any:
    """The stdlib parser alone: numbers orjson would write back exactly as Python numbers (a
    count stays an int), the others kept as their text (see the module's docstring)."""
    return json.loads(
        line, parse_constant=_reject_constant, parse_int=_exact_int, parse_float=_exact_float,
    )  # fmt: skip


def decimal_loads(data: bytes) -> Any:
    """The stdlib parser with fractions as Decimal (integers are exact ints already): for a
    value a program computes with, as the source does with a saved cursor (a Fragment is
    only text to write back)."""
    return json.loads(data, parse_float=decimal.Decimal, parse_constant=_reject_constant)


def _exact_int(text: str) -> int | orjson.Fragment:
    """An int where orjson writes it (64 bits, signed or not), else the text (int() refuses
    over 4,300 digits: never tried on those)."""
    if len(text) <= 20:
        value = int(text)
        if -(1 << 63) <= value < 1 << 64:
            return value
    return orjson.Fragment(text)


def _exact_float(text: str) -> float | orjson.Fragment:
    """A float where a double holds the number (15 significant digits or fewer, a normal
    double's range: not past it, not a subnormal), else the text."""
    mantissa = text.lower().partition("e")[0]
    digits = mantissa.lstrip("-").replace(".", "").lstrip("0").rstrip("0")
    if len(digits) <= 15:
        value = float(text)
        if not digits or (math.isfinite(value) and abs(value) >= sys.float_info.min):
            return value
    return orjson.Fragment(text)


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")
