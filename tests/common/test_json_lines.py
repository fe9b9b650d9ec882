"""Protocol lines parsed exactly: orjson (3.13) reads some numbers rounded without an error,
so json_lines tells those lines apart and parses them with the stdlib."""

from __future__ import annotations

import json

import orjson
import pytest
from pgbyte_common import json_lines

ROUNDED_BY_ORJSON = [
    "123456789012345678901234567890",  # past 64 bits: a float
    "-9223372036854775809",  # below a signed 64-bit integer
    "0.1000000000000000000000001",  # more digits than a double
    "1234567.123456789012",
    "12345678901234567e5",
    "1e-400",  # read as 0.0
    "3e-324",  # read as 5e-324
    "1.23456789012345e-320",  # a subnormal: fewer digits kept
    "1e400",  # refused by orjson: the stdlib reads it
]


@pytest.mark.parametrize("number", ROUNDED_BY_ORJSON)
def test_numbers_orjson_rounds_come_back_exactly(number: str) -> None:
    line = ('{"type":"STATE","state":{"data":{"n":' + number + "}}}").encode()
    assert orjson.dumps(json_lines.loads(line)) == line


@pytest.mark.parametrize("number", ["3.14", "1732550000000", "18446744073709551615", "-0.0",
                                    "1.5e3", "0.000001"])  # fmt: skip
def test_plain_numbers_stay_python_numbers(number: str) -> None:
    """Where orjson writes a number back exactly, the stdlib parse gives a Python number too
    (a STATE's destinationStats.recordCount stays an int: pgbyte's echo thread added it up
    with int(), which failed on the text form, ending the sync)."""
    line = ('{"n":' + number + ',"id":"1234567890123456789012"}').encode()  # forces stdlib
    assert json_lines.may_round(line)
    value = json_lines.loads(line)["n"]
    assert isinstance(value, int | float) and value == json.loads(number)


def test_most_lines_skip_the_regex() -> None:
    """The class prefilter answers for lines without a 16-character run of digits and points
    or a 3-digit negative exponent (timestamps, uuids, ordinary numbers)."""
    line = orjson.dumps({"type": "RECORD", "record": {"stream": "s", "emitted_at": 1732550000000,
                         "data": {"id": 1, "at": "2024-01-02T03:04:05.000000", "v": 1.25e-5,
                                  "u": "123e4567-e89b-12d3-a456-426614174000"}}})  # fmt: skip
    assert not json_lines.may_round(line)
