"""Every shape of RECORD line loads the same: the fast path (canonical lines sliced to their
data), the slow path (anything else, parsed), and fast batches Postgres refuses (redone)."""

from __future__ import annotations

import json
import sys
from decimal import Decimal

from dest_helpers import FIXTURES, catalog_for

PROPS = {"id": {"type": "integer"}, "v": {"type": "number"}, "s": {"type": "string"}}


def test_all_line_shapes_load_identically(run_write, dest_conn) -> None:
    """CDK order, source order, namespaces, spaces, reordered keys, meta, tabs: all 9 load."""
    result = run_write(catalog_for([("fmt", PROPS)], "overwrite"), FIXTURES / "formats.jsonl")
    assert result.returncode == 0, result.errors
    rows = dest_conn.execute("SELECT id, v FROM fmt ORDER BY id").fetchall()
    exact = Decimal("1.10000000000000000001")
    assert rows == [(i, None if i == 7 else exact) for i in range(1, 10)]


def test_raw_data_is_the_data_object(run_write, dest_conn) -> None:
    """The raw table holds exactly each record's data (no envelope, no meta), digits intact."""
    assert (
        run_write(catalog_for([("fmt", PROPS)], "append"), FIXTURES / "formats.jsonl").returncode
        == 0
    )
    raw = dest_conn.execute(
        "SELECT _airbyte_data::text FROM _airbyte_raw_fmt ORDER BY (_airbyte_data->>'id')::int"
    ).fetchall()
    assert raw[0][0] == '{"s": "cdk order", "v": 1.10000000000000000001, "id": 1}'
    assert raw[7][0].endswith('"id": 8}') and "tab\\tin\\tstring and \\\\ backslash" in raw[7][0]
    assert all(set(json.loads(r[0])) == {"id", "v", "s"} for r in raw)


def test_numbers_beyond_a_double_on_the_slow_path(run_write, dest_conn) -> None:
    """A record the parser must read (it carries meta) holding a 5,000-digit integer and
    1e400, and a STATE holding such numbers: the record loads digit for digit and the STATE
    comes back with its numbers exactly as sent (before: "not valid JSON" — int() refuses
    over 4,300 digits — and the sync failed on that row every time)."""
    huge = "9" * 5000
    record = ('{"type":"RECORD","record":{"stream":"big","emitted_at":1,"meta":{"changes":[]},'
              '"data":{"id":1,"n":' + huge + ',"f":1e400}}}')  # fmt: skip
    state = ('{"type":"STATE","state":{"type":"STREAM","stream":{"stream_descriptor":'
             '{"name":"big"},"stream_state":{"cursor":' + huge + ',"f":1e400}}}}')  # fmt: skip
    props = {"id": {"type": "integer"}, "n": {"type": "integer"}, "f": {"type": "number"}}
    limit = sys.get_int_max_str_digits()
    sys.set_int_max_str_digits(0)  # for this test's own parse of the echoed STATE
    try:
        catalog = catalog_for([("big", props)], "append")
        result = run_write(catalog, (record + "\n" + state + "\n").encode())
        assert result.returncode == 0, result.errors
        (echoed,) = [m["state"] for m in result.messages if m["type"] == "STATE"]
        assert echoed["stream"]["stream_state"] == {"cursor": int(huge), "f": 1e400}
    finally:
        sys.set_int_max_str_digits(limit)
    row = dest_conn.execute("SELECT n::text, f::text FROM big").fetchone()
    assert row == (huge, "1" + "0" * 400)


def test_emitted_at_out_of_range_is_taken_as_now_on_both_paths(run_write, dest_conn) -> None:
    """An emitted_at in nanoseconds (1.7e18, read as milliseconds: year 53,000) or past year
    9999: the fast path takes the current time, and now so does the slow path, where
    to_timestamp failed the whole write ("timestamp out of range"), every STATE unechoed.
    Seconds (below 10^11) stay seconds on both."""
    values = [1_700_000_000_000_000_000, 253_402_300_800_000, "1e400", 1_700_000_000]
    lines = []
    for i, em in enumerate(values):
        for spaced in (False, True):  # the fast path's canonical line, then a parsed one
            sep = ", " if spaced else ","
            lines.append(f'{{"type":"RECORD","record":{{"stream":"em","data":{{"id":{i}}}'
                         f'{sep}"emitted_at":{em}}}}}')  # fmt: skip
    result = run_write(catalog_for([("em", {"id": {"type": "integer"}})], "append"),
                       "\n".join(lines).encode() + b"\n")  # fmt: skip
    assert result.returncode == 0, result.errors
    rows = dest_conn.execute(
        "SELECT (_airbyte_data->>'id')::int, bool_and(_airbyte_emitted_at > now() - interval "
        "'1 hour'), count(DISTINCT date_trunc('day', _airbyte_emitted_at)) "
        "FROM _airbyte_raw_em GROUP BY 1 ORDER BY 1"
    ).fetchall()
    assert rows == [(0, True, 1), (1, True, 1), (2, True, 1), (3, False, 1)]
