"""Typed rows PostgreSQL refuses as too big: the stream is kept raw, and the write goes on.

catalog.py refuses a typed table up front only when its fixed-width values alone could
overflow a row; short strings and numerics cannot be TOASTed either, so 800 integers beside
200 short strings (about 10.7 kB a row) pass that check and PostgreSQL refuses the typed row
("row is too big", SQLSTATE 54000). Before, that failed the whole write with nothing
committed. Through the real console script, then in-process (fine grain: tiny batches put the
refusal on the second connection, in overwrite's split typing and in append's staged batches).
"""

from __future__ import annotations

import io
import json
import os
from typing import Any

import pytest
from dest_helpers import catalog_for, count, record, state, status, table_names
from destination_postgres.catalog import parse_catalog
from destination_postgres.config import DestinationConfig
from destination_postgres.writer import Writer
from pgbyte_common.messages import MessageWriter

MODES = ["overwrite", "append", "append_dedup"]
STRING = "abcdefghijklmnopqrst"


def wide_props(payload: str) -> dict[str, Any]:
    """`ints`: an id, 799 integers and 200 strings; `numbers`: an id and 899 numbers."""
    props: dict[str, Any] = {"id": {"type": "integer"}}
    if payload == "ints":
        props |= {f"c{i}": {"type": "integer"} for i in range(1, 800)}
        props |= {f"s{i}": {"type": "string"} for i in range(200)}
    else:
        props |= {f"n{i}": {"type": "number"} for i in range(1, 900)}
    return props


def wide_data(payload: str, n: int) -> dict[str, Any]:
    """A record whose typed row exceeds the 8,160 bytes a row holds (none of it TOASTable)."""
    data: dict[str, Any] = {"id": n}
    if payload == "ints":
        data |= {f"c{i}": i % 5 + 1 for i in range(1, 800)}
        data |= {f"s{i}": STRING for i in range(200)}
    else:
        data |= {f"n{i}": 12345.678901 for i in range(1, 900)}
    return data


def catalog(mode: str, streams: list[tuple[str, dict[str, Any]]]) -> dict[str, Any]:
    """catalog_for, with `id` as the primary key of append_dedup streams."""
    result = catalog_for(streams, mode=mode)
    if mode == "append_dedup":
        for entry in result["streams"]:
            entry["primary_key"] = [["id"]]
    return result


def lines(*items: bytes) -> bytes:
    return b"\n".join(items) + b"\n"


def too_big_warns(logs: list[str], stream: str = "wide") -> list[str]:
    return [m for m in logs if f"Stream {stream}:" in m and "too big" in m]


def logged_warns(out: io.BytesIO) -> list[str]:
    """The WARN LOG messages an in-process write printed."""
    messages = [json.loads(line) for line in out.getvalue().splitlines()]
    return [m["log"]["message"] for m in messages
            if m["type"] == "LOG" and m["log"]["level"] == "WARN"]  # fmt: skip


def temporaries(conn: Any) -> list[str]:
    return [t for t in table_names(conn) if t.startswith("_airbyte_tmp_")]


# -- through the console script ----------------------------------------------------------------


@pytest.mark.parametrize("payload", ["ints", "numbers"])
@pytest.mark.parametrize("mode", MODES)
def test_rows_too_big_keep_the_stream_raw(run_write, dest_conn, mode: str, payload: str) -> None:
    """Typed rows refused as too big: exit 0, every record in the raw table, no typed table,
    one WARN naming the stream and why (before: exit 1, nothing committed)."""
    props = wide_props(payload)
    data = lines(*(record("wide", wide_data(payload, n)) for n in (1, 2, 3)), state("wide", 1))
    result = run_write(catalog(mode, [("wide", props)]), data)
    assert result.returncode == 0, result.errors
    assert count(dest_conn, "_airbyte_raw_wide") == 3
    assert "wide" not in table_names(dest_conn) and temporaries(dest_conn) == []
    (warn,) = too_big_warns(result.logs)
    assert "row is too big" in warn and "raw table only" in warn, warn


@pytest.mark.parametrize("mode", MODES)
def test_other_streams_and_states_go_on(run_write, dest_conn, mode: str) -> None:
    """Another stream of the same write is typed as usual, and every STATE is echoed in order
    with its count, before and after the refusal (overwrite: at the stream's COMPLETE)."""
    narrow = {"id": {"type": "integer"}, "name": {"type": "string"}}
    streams = [("narrow", narrow), ("wide", wide_props("ints"))]
    data = lines(
        record("narrow", {"id": 1, "name": "a"}), state("narrow", 1),
        record("wide", wide_data("ints", 1)), record("wide", wide_data("ints", 2)),
        state("wide", 1), status("wide", "COMPLETE"),
        record("narrow", {"id": 2, "name": "b"}), state("narrow", 2),
        status("narrow", "COMPLETE"),
    )  # fmt: skip
    result = run_write(catalog(mode, streams), data)
    assert result.returncode == 0, result.errors
    echoed = [
        (s["state"]["stream"]["stream_state"], s["state"]["destinationStats"]["recordCount"])
        for s in result.states
    ]
    if mode == "overwrite":  # a stream's states wait for its swap: wide's COMPLETE comes first
        assert echoed == [(1, 2.0), (1, 1.0), (2, 1.0)]
    else:
        assert echoed == [(1, 1.0), (1, 2.0), (2, 1.0)]
    assert dest_conn.execute("SELECT id, name FROM narrow ORDER BY id").fetchall() == [
        (1, "a"),
        (2, "b"),
    ]
    assert count(dest_conn, "_airbyte_raw_wide") == 2 and "wide" not in table_names(dest_conn)


@pytest.mark.parametrize("mode", MODES)
def test_a_later_sync_of_the_stream_does_not_fail(run_write, dest_conn, mode: str) -> None:
    """A second write of the same stream (append: its typed table is missing beside a raw one
    with records, so the write first tries to rebuild it) is kept raw the same way."""
    cat = catalog(mode, [("wide", wide_props("ints"))])
    first = run_write(cat, lines(*(record("wide", wide_data("ints", n)) for n in (1, 2))))
    assert first.returncode == 0, first.errors
    second = run_write(cat, lines(*(record("wide", wide_data("ints", n)) for n in (3, 4, 5))))
    assert second.returncode == 0, second.errors
    assert len(too_big_warns(second.logs)) == 1, second.logs
    assert count(dest_conn, "_airbyte_raw_wide") == (3 if mode == "overwrite" else 5)
    assert "wide" not in table_names(dest_conn) and temporaries(dest_conn) == []


@pytest.mark.parametrize("mode", MODES)
def test_an_earlier_typed_table_is_left_as_it_was(run_write, dest_conn, mode: str) -> None:
    """A typed table an earlier, narrower sync made keeps its rows (not dropped, not replaced,
    not filled), and the WARN names it."""
    narrow = {"id": {"type": "integer"}, "c1": {"type": "integer"}}
    first = run_write(catalog(mode, [("wide", narrow)]),
                      lines(*(record("wide", {"id": n, "c1": n}) for n in (1, 2))))  # fmt: skip
    assert first.returncode == 0, first.errors
    data = lines(*(record("wide", wide_data("ints", n)) for n in (3, 4, 5)))
    second = run_write(catalog(mode, [("wide", wide_props("ints"))]), data)
    assert second.returncode == 0, second.errors
    assert dest_conn.execute("SELECT id, c1 FROM wide ORDER BY id").fetchall() == [(1, 1), (2, 2)]
    assert count(dest_conn, "_airbyte_raw_wide") == (3 if mode == "overwrite" else 5)
    (warn,) = too_big_warns(second.logs)
    assert "public.wide" in warn and "earlier sync" in warn, warn


@pytest.mark.parametrize("mode", ["append", "append_dedup"])
def test_a_typed_table_this_write_made_goes_when_a_later_batch_is_refused(
    run_write, dest_conn, mode: str
) -> None:
    """Rows that fit are typed and committed at a STATE; a later batch is refused: the typed
    table this write created is dropped with it (no typed table, as for a stream catalog.py
    finds too wide), and the WARN comes once however many batches follow."""
    data = lines(
        record("wide", {"id": 1}), state("wide", 1),
        record("wide", wide_data("ints", 2)), state("wide", 2),
        record("wide", wide_data("ints", 3)), state("wide", 3),
    )  # fmt: skip
    result = run_write(catalog(mode, [("wide", wide_props("ints"))]), data)
    assert result.returncode == 0, result.errors
    assert len(result.states) == 3 and len(too_big_warns(result.logs)) == 1, result.logs
    assert count(dest_conn, "_airbyte_raw_wide") == 3 and "wide" not in table_names(dest_conn)


def test_a_swap_failing_after_the_refusal_leaves_no_temporary(run_write, dest_conn) -> None:
    """overwrite: the typed temporary dropped at the refusal comes back when the swap then
    fails (a view on the raw table) and its transaction rolls back; the clean-up drops it too,
    and the previous tables stay."""
    cat = catalog("overwrite", [("wide", wide_props("ints"))])
    assert run_write(cat, lines(record("wide", wide_data("ints", 1)))).returncode == 0
    dest_conn.execute("CREATE VIEW wide_v AS SELECT * FROM _airbyte_raw_wide")
    result = run_write(cat, lines(*(record("wide", wide_data("ints", n)) for n in (2, 3))))
    (error,) = result.errors
    assert result.returncode == 1 and "Cannot replace public._airbyte_raw_wide" in error["message"]
    assert temporaries(dest_conn) == [] and count(dest_conn, "_airbyte_raw_wide") == 1


def test_a_refused_attempt_counts_no_uncastable_value(run_write, dest_conn) -> None:
    """A bad value in a batch refused as too big is not reported as NULL in the typed table
    (the guarded attempt counted it, then was rolled back with the batch's typed rows)."""
    narrow = {"id": {"type": "integer"}, "c1": {"type": "integer"}}
    assert run_write(catalog("append", [("wide", narrow)]),
                     lines(record("wide", {"id": 1, "c1": 1}))).returncode == 0  # fmt: skip
    bad = record("wide", wide_data("ints", 2) | {"c1": "not a number"})
    result = run_write(catalog("append", [("wide", wide_props("ints"))]), lines(bad))
    assert result.returncode == 0, result.errors
    assert len(too_big_warns(result.logs)) == 1, result.logs
    assert not [m for m in result.logs if "could not be cast" in m], result.logs


@pytest.mark.parametrize("mode", MODES)
def test_long_values_in_an_ordinary_table_stay_typed(run_write, dest_conn, mode: str) -> None:
    """Ten 40 kB strings a row (TOASTed out of line) are no reason to keep a stream raw."""
    props = {"id": {"type": "integer"}} | {f"t{i}": {"type": "string"} for i in range(10)}
    rows = [{"id": n} | {f"t{i}": os.urandom(20_000).hex() for i in range(10)} for n in (1, 2)]
    result = run_write(catalog(mode, [("long", props)]), lines(*(record("long", r) for r in rows)))
    assert result.returncode == 0, result.errors
    assert too_big_warns(result.logs, "long") == []
    typed = dest_conn.execute("SELECT id, t0, t9 FROM long ORDER BY id").fetchall()
    assert typed == [(r["id"], r["t0"], r["t9"]) for r in rows]


# -- in-process: the refusal on the second connection -------------------------------------------


def _writer(dest_config: dict[str, Any], cat: dict[str, Any], out: Any, opened: list[Any]):
    """A Writer of tiny batches, counting the second connections it opens."""
    config = DestinationConfig.from_dict(dest_config)

    def connect() -> Any:
        opened.append(config.settings.connect())
        return opened[-1]

    targets = parse_catalog(cat, config)
    return Writer(config.settings.connect(), targets, MessageWriter(out), batch_bytes=4096,
                  connect=connect)  # fmt: skip


def _compact(data: dict[str, Any]) -> bytes:
    """A canonical RECORD line (the fast path, and what a staged batch takes)."""
    return record("wide", data).replace(b", ", b",").replace(b": ", b":")


@pytest.mark.parametrize("refused", ["low half", "high half"])
def test_overwrite_typing_split_over_two_connections(dest_config, dest_conn, refused) -> None:
    """overwrite's typed INSERT split over two connections, one half refused as too big: both
    halves are rolled back and the stream is swapped in raw only."""
    wide = [_compact(wide_data("ints", n)) for n in range(1, 41)]
    narrow = [_compact({"id": n}) for n in range(41, 2001)]
    data = [*wide, *narrow] if refused == "low half" else [*narrow, *wide]
    opened: list[Any] = []
    out = io.BytesIO()
    cat = catalog("overwrite", [("wide", wide_props("ints"))])
    blocks = [data[i : i + 20] for i in range(0, len(data), 20)]  # as stdin's chunks come
    assert _writer(dest_config, cat, out, opened).run(blocks) == 0, out.getvalue()
    assert len(opened) == 1  # the second connection loaded batches, and typed one half
    pages = dest_conn.execute("SELECT pg_relation_size('_airbyte_raw_wide') / 8192").fetchone()
    assert pages[0] >= 4  # so the typing was split (loader.normalize_split)
    assert count(dest_conn, "_airbyte_raw_wide") == 2000
    assert "wide" not in table_names(dest_conn) and temporaries(dest_conn) == []
    assert len(logged_warns(out)) == 1, logged_warns(out)


@pytest.mark.parametrize("mode", ["append", "append_dedup"])
def test_a_staged_batch_refused_keeps_the_stream_raw(dest_config, dest_conn, mode) -> None:
    """append's batches staged on the second connection and moved by the first: the first one
    refused as too big rolls back its typed rows only; every record reaches the raw table."""
    data = [_compact({"id": n}) for n in range(1, 201)]
    data += [_compact(wide_data("ints", n)) for n in range(201, 211)]
    data += [state("wide", 1)]
    opened: list[Any] = []
    out = io.BytesIO()
    writer = _writer(dest_config, catalog(mode, [("wide", wide_props("ints"))]), out, opened)
    # A line per block (a block is taken in bulk): small batches, as with a slow source.
    assert writer.run([[line] for line in data]) == 0, out.getvalue()
    assert writer._stage_seq >= 10  # the batches went through shared stages
    assert count(dest_conn, "_airbyte_raw_wide") == 210 and "wide" not in table_names(dest_conn)
    assert len(logged_warns(out)) == 1 and out.getvalue().count(b'"STATE"') == 1


@pytest.mark.parametrize("mode", ["append", "append_dedup"])
def test_columns_added_past_the_limit_keep_the_stream_raw(run_write, dest_conn, mode) -> None:
    """900 properties, then 900 others: the typed table cannot take them all (PostgreSQL's
    1,600 columns, dropped ones counted). Every such sync failed on the ALTER TABLE, naming no
    table; now the records go to the raw table with a WARN that says what to do, and dropping
    the typed table as it says has the next sync rebuild it with the current columns."""
    first_props = {"id": {"type": "integer"}} | {f"a{i}": {"type": "integer"} for i in range(900)}
    later_props = {"id": {"type": "integer"}} | {f"b{i}": {"type": "integer"} for i in range(900)}
    first = run_write(catalog(mode, [("grow", first_props)]),
                      lines(record("grow", {"id": 1, "a0": 1})))  # fmt: skip
    assert first.returncode == 0, first.errors
    later = catalog(mode, [("grow", later_props)])
    second = run_write(later, lines(record("grow", {"id": 2, "b0": 2})))
    assert second.returncode == 0, second.errors
    (warn,) = [m for m in second.logs if "1600 columns" in m]
    assert "public.grow" in warn and "drop public.grow" in warn, warn
    assert count(dest_conn, "_airbyte_raw_grow") == 2
    assert dest_conn.execute("SELECT id FROM grow").fetchall() == [(1,)]
    dest_conn.execute("DROP TABLE grow")
    third = run_write(later, lines(record("grow", {"id": 3, "b0": 3})))
    assert third.returncode == 0, third.errors
    rows = dest_conn.execute("SELECT id, b0 FROM grow ORDER BY id").fetchall()
    assert rows == [(1, None), (2, 2), (3, 3)]


@pytest.mark.parametrize("mode", ["append", "append_dedup"])
def test_a_refused_record_does_not_hold_later_syncs_back(run_write, dest_conn, mode) -> None:
    """A batch refused as too wide keeps its records raw only; later syncs of narrow records
    type them as before (not marked for a catch-up that the same record would refuse on
    every sync, keeping the stream raw for good)."""
    cat = catalog(mode, [("wide", wide_props("ints"))])
    narrow = lines(*(record("wide", {"id": n, "c1": n}) for n in (1, 2)))
    assert run_write(cat, narrow).returncode == 0
    refused = run_write(cat, lines(record("wide", wide_data("ints", 3))))
    assert refused.returncode == 0 and len(too_big_warns(refused.logs)) == 1, refused.logs
    for n in (4, 5):
        later = run_write(cat, lines(record("wide", {"id": n, "c1": n})))
        assert later.returncode == 0 and too_big_warns(later.logs) == [], later.logs
    assert [r[0] for r in dest_conn.execute("SELECT id FROM wide ORDER BY id")] == [1, 2, 4, 5]
