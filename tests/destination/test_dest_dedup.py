"""append_dedup through the real console script: one typed row per primary key, raw keeps all.

The expected typed rows come from `latest()`, an oracle written from the rule (latest by
cursor with NULL oldest, then by emitted_at, then the last received), applied to every record
a test sent; tests also spell out the rows they expect where the rule has a corner.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import pytest
from dest_helpers import FIXTURES, catalog_for, count, live_write, status

DEDUP = FIXTURES / "dedup"
EM = 1732550000000


def dedup_catalog(
    name: str,
    props: dict[str, Any],
    pk: list[list[str]] | None,
    cursor: list[str] | None = None,
    *,
    sync_mode: str = "incremental",
    mode: str = "append_dedup",
) -> dict[str, Any]:
    catalog = catalog_for([(name, props)], mode=mode)
    entry = catalog["streams"][0]
    entry["sync_mode"] = sync_mode
    if pk is not None:
        entry["primary_key"] = pk
    if cursor is not None:
        entry["cursor_field"] = cursor
    return catalog


def rec(stream: str, data: dict[str, Any], em: int = EM, *, compact: bool = False) -> bytes:
    """A RECORD line; compact=True gives the canonical form the writer's fast path takes."""
    msg = {"type": "RECORD", "record": {"stream": stream, "data": data, "emitted_at": em}}
    return json.dumps(msg, separators=(",", ":") if compact else None).encode()


def state(stream: str, value: Any) -> bytes:
    return json.dumps(
        {
            "type": "STATE",
            "state": {
                "type": "STREAM",
                "stream": {"stream_descriptor": {"name": stream}, "stream_state": value},
            },
        }
    ).encode()


def lines(*items: bytes) -> bytes:
    return b"\n".join(items) + b"\n"


def latest(records: list[tuple[dict[str, Any], int]], key: list[str], cursor: str | None):
    """Oracle: key tuple → the data of the record that must be the typed row."""
    out: dict[tuple, tuple[tuple, dict[str, Any]]] = {}
    for pos, (data, em) in enumerate(records):
        k = tuple(data.get(c) for c in key)
        if None in k:
            continue
        c = data.get(cursor) if cursor else None
        rank = (c is not None, c if c is not None else 0, em, pos)
        if k not in out or rank >= out[k][0]:
            out[k] = (rank, data)
    return {k: d for k, (_, d) in out.items()}


def typed(conn, table: str, columns: str, order: str = "1") -> list[tuple]:
    return conn.execute(f"SELECT {columns} FROM {table} ORDER BY {order}").fetchall()


PROPS = {"id": {"type": "integer"}, "name": {"type": "string"}, "seq": {"type": "integer"}}


# -- full refresh + append_dedup (the tutorial) -----------------------------------------------


def test_tutorial_synced_twice_one_row_per_id(run_write, dest_conn) -> None:
    """full_refresh + append_dedup: the tutorial's two syncs give 3 typed rows, 5 raw rows."""
    catalog = DEDUP / "tutorial_catalog_dedup.json"
    for n in (1, 2):
        result = run_write(catalog, FIXTURES / f"tutorial_sync{n}_append.jsonl")
        assert result.returncode == 0, result.messages
    assert typed(dest_conn, "append_full_refresh_demo", "id, name") == [
        (1, "Mary X"),
        (2, "John D"),
        (3, "Jane Y"),
    ]
    assert count(dest_conn, "_airbyte_raw_append_full_refresh_demo") == 5


def test_tutorial_rows_are_the_latest_records(run_write, dest_conn) -> None:
    """After the second sync every typed row is the second sync's record (its raw ab_id)."""
    catalog = DEDUP / "tutorial_catalog_dedup.json"
    run_write(catalog, FIXTURES / "tutorial_sync1_append.jsonl")
    run_write(catalog, FIXTURES / "tutorial_sync2_append.jsonl")
    rows = dest_conn.execute(
        "SELECT n.id, r._airbyte_emitted_at = n._airbyte_emitted_at, "
        "extract(epoch FROM r._airbyte_emitted_at)::bigint FROM append_full_refresh_demo n "
        "JOIN _airbyte_raw_append_full_refresh_demo r USING (_airbyte_ab_id) ORDER BY 1"
    ).fetchall()
    assert rows == [(1, True, 1732560000), (2, True, 1732560000), (3, True, 1732560000)]


# -- incremental ------------------------------------------------------------------------------


def _jsonl_records(path: Path) -> list[tuple[dict[str, Any], int]]:
    out = []
    for line in path.read_text().splitlines():
        msg = json.loads(line)
        if msg["type"] == "RECORD":
            out.append((msg["record"]["data"], msg["record"]["emitted_at"]))
    return out


def test_incremental_typed_table_is_the_latest_row_per_key(run_write, dest_conn) -> None:
    """insert → write → updates + inserts → write: typed equals the latest rows, row for row."""
    catalog = DEDUP / "incremental_catalog.json"
    sent: list[tuple[dict[str, Any], int]] = []
    for n in (1, 2):
        path = DEDUP / f"incremental_sync{n}.jsonl"
        result = run_write(catalog, path)
        assert result.returncode == 0, result.messages
        sent += _jsonl_records(path)
    expected = latest(sent, ["id"], "updated_at")
    rows = typed(
        dest_conn, "customers", 'id, name, to_char(updated_at, \'YYYY-MM-DD"T"HH24:MI:SS"Z"\')'
    )
    assert rows == [(k[0], d["name"], d["updated_at"]) for k, d in sorted(expected.items())]
    assert [r[1] for r in rows] == ["c1", "c2 edited", "c3", "c4 second edit", "c5", "c6", "c7"]


def test_incremental_raw_keeps_every_record(run_write, dest_conn) -> None:
    """The raw table holds all 11 records of the two syncs, duplicates included."""
    catalog = DEDUP / "incremental_catalog.json"
    for n in (1, 2):
        run_write(catalog, DEDUP / f"incremental_sync{n}.jsonl")
    assert count(dest_conn, "_airbyte_raw_customers") == 11
    ids = dest_conn.execute(
        "SELECT (_airbyte_data->>'id')::int, count(*) FROM _airbyte_raw_customers "
        "GROUP BY 1 ORDER BY 1"
    ).fetchall()
    assert ids == [(1, 1), (2, 2), (3, 1), (4, 3), (5, 2), (6, 1), (7, 1)]


def test_typed_rows_point_at_their_raw_record(run_write, dest_conn) -> None:
    """Each typed row's _airbyte_ab_id is the raw record whose data it holds."""
    catalog = DEDUP / "incremental_catalog.json"
    for n in (1, 2):
        run_write(catalog, DEDUP / f"incremental_sync{n}.jsonl")
    bad = dest_conn.execute(
        "SELECT count(*) FROM customers n LEFT JOIN _airbyte_raw_customers r "
        "USING (_airbyte_ab_id) WHERE r._airbyte_data->>'name' IS DISTINCT FROM n.name"
    ).fetchone()[0]
    assert bad == 0


def test_unique_index_on_the_key(run_write, dest_conn) -> None:
    """The typed table gets a unique index on exactly the primary key columns."""
    run_write(DEDUP / "incremental_catalog.json", DEDUP / "incremental_sync1.jsonl")
    rows = dest_conn.execute(
        "SELECT i.relname, pg_get_indexdef(x.indexrelid) FROM pg_index x "
        "JOIN pg_class i ON i.oid = x.indexrelid WHERE x.indrelid = 'customers'::regclass "
        "AND x.indisunique"
    ).fetchall()
    assert len(rows) == 1
    assert rows[0][0] == "_airbyte_pk_customers"
    assert rows[0][1].endswith("USING btree (id)")


# -- ordering inside one batch ----------------------------------------------------------------


def test_in_batch_duplicates_latest_cursor_wins(run_write, dest_conn) -> None:
    """The same key 3x in one batch: the highest cursor wins, whatever the arrival order."""
    catalog = dedup_catalog("s", PROPS, [["id"]], ["seq"])
    data = [{"id": 1, "name": n, "seq": s} for n, s in (("b", 2), ("c", 3), ("a", 1))]
    result = run_write(catalog, lines(*(rec("s", d) for d in data)))
    assert result.returncode == 0, result.messages
    assert typed(dest_conn, "s", "id, name, seq") == [(1, "c", 3)]
    assert count(dest_conn, "_airbyte_raw_s") == 3


def test_full_tie_last_received_wins(run_write, dest_conn) -> None:
    """Same key, cursor and emitted_at 3x in one batch: the last line received wins."""
    catalog = dedup_catalog("s", PROPS, [["id"]], ["seq"])
    data = [{"id": 1, "name": n, "seq": 5} for n in ("first", "second", "last")]
    run_write(catalog, lines(*(rec("s", d) for d in data)))
    assert typed(dest_conn, "s", "name") == [("last",)]


def test_cursor_tie_latest_emitted_wins(run_write, dest_conn) -> None:
    """Equal cursors: the record with the latest emitted_at wins even if received first."""
    catalog = dedup_catalog("s", PROPS, [["id"]], ["seq"])
    run_write(
        catalog,
        lines(
            rec("s", {"id": 1, "name": "late", "seq": 5}, EM + 10),
            rec("s", {"id": 1, "name": "early", "seq": 5}, EM),
        ),
    )
    assert typed(dest_conn, "s", "name") == [("late",)]


def test_null_cursor_is_oldest(run_write, dest_conn) -> None:
    """A record with a NULL cursor loses to one with a cursor, though received later."""
    catalog = dedup_catalog("s", PROPS, [["id"]], ["seq"])
    run_write(
        catalog,
        lines(
            rec("s", {"id": 1, "name": "has cursor", "seq": 1}),
            rec("s", {"id": 1, "name": "no cursor", "seq": None}, EM + 1),
        ),
    )
    assert typed(dest_conn, "s", "name") == [("has cursor",)]


def test_no_cursor_latest_emitted_then_last_received(run_write, dest_conn) -> None:
    """Without a cursor: emitted_at decides, then the last received."""
    catalog = dedup_catalog("s", PROPS, [["id"]])
    run_write(
        catalog,
        lines(
            rec("s", {"id": 1, "name": "newest"}, EM + 5),
            rec("s", {"id": 1, "name": "older"}, EM),
            rec("s", {"id": 2, "name": "x"}),
            rec("s", {"id": 2, "name": "y"}),
        ),
    )
    assert typed(dest_conn, "s", "id, name") == [(1, "newest"), (2, "y")]


def test_tie_across_fast_and_slow_lines(run_write, dest_conn) -> None:
    """A full tie between a non-canonical line and a later canonical one: the later wins
    (the batch stages canonical lines first; the merge restores input order)."""
    catalog = dedup_catalog("s", PROPS, [["id"]], ["seq"])
    stdin = lines(
        rec("s", {"id": 1, "name": "slow first", "seq": 1}),
        rec("s", {"id": 1, "name": "fast last", "seq": 1}, compact=True),
        rec("s", {"id": 2, "name": "fast first", "seq": 1}, compact=True),
        rec("s", {"id": 2, "name": "slow last", "seq": 1}),
    )
    result = run_write(catalog, stdin)
    assert result.returncode == 0, result.messages
    assert typed(dest_conn, "s", "id, name") == [(1, "fast last"), (2, "slow last")]


@pytest.mark.parametrize(
    ("form", "keys"),
    [("canonical", 3_000), ("canonical", 12_000), ("non-canonical", 3_000), ("alternating", 3_000)],
)
def test_full_ties_in_large_batches_last_received_wins(
    run_write, dest_conn, form: str, keys: int
) -> None:
    """Every key twice in full ties, first with a long value, then with a short one: the
    second always wins. Rows of mixed sizes leave pages with room, where PostgreSQL may put a
    later row of a COPY or INSERT unless the table was emptied in the same transaction; the
    winner must follow the input, not where a row landed. The larger canonical run (~10 MB)
    also takes the second connection's stages."""
    rnd = random.Random(7)
    catalog = dedup_catalog("s", {**PROPS, "pad": {"type": "string"}}, [["id"]], ["seq"])
    items = [(k, "first", "x" * rnd.choice([300, 600, 900, 1200])) for k in range(keys)]
    items += [(k, "last", "y" * rnd.choice([10, 40, 80])) for k in range(keys)]
    stdin = lines(*(
        rec("s", {"id": k, "name": name, "seq": 1, "pad": pad},
            compact=form == "canonical" or (form == "alternating" and n % 2 == 0))
        for n, (k, name, pad) in enumerate(items)
    ))  # fmt: skip
    result = run_write(catalog, stdin)
    assert result.returncode == 0, result.messages
    rows = typed(dest_conn, "s", "id, name")
    assert len(rows) == keys
    assert [row for row in rows if row[1] != "last"] == []
    assert count(dest_conn, "_airbyte_raw_s") == 2 * keys


def test_keys_compare_as_typed_values(run_write, dest_conn) -> None:
    """1 and 1.0 are one integer key: one row, the last received."""
    catalog = dedup_catalog("s", PROPS, [["id"]])
    run_write(
        catalog, lines(rec("s", {"id": 1, "name": "int"}), rec("s", {"id": 1.0, "name": "float"}))
    )
    assert typed(dest_conn, "s", "id, name") == [(1, "float")]


KEY_VALUES = [
    # (JSON schema of the key, three keys ascending in their column's type, not as text)
    ({"type": "integer"}, [9, 10, 100]),
    ({"type": "number"}, [-1.5, 2, 10.25]),
    ({"type": "string", "format": "date"}, ["1999-12-31", "2000-01-02", "2024-02-29"]),
    ({"type": "string", "format": "date-time"},
     ["2024-01-02T09:00:00+05:00", "2024-01-02T04:30:00Z", "2024-01-01T23:00:00-06:00"]),
]  # fmt: skip


@pytest.mark.parametrize(("schema", "keys"), KEY_VALUES, ids=[s.get("format", s["type"])
                                                               for s, _ in KEY_VALUES])  # fmt: skip
def test_first_load_keys_out_of_order_and_repeated(run_write, dest_conn, schema, keys) -> None:
    """A first load whose keys go down, then repeat across batches and inside one, some
    spelled differently (10 as 10.0, an instant in another offset): every key once, the
    newest record each. Keys compare in their column's type."""
    props = {"k": schema, "name": {"type": "string"}, "seq": {"type": "integer"}}
    catalog = dedup_catalog("s", props, [["k"]], ["seq"])
    low, mid, high = keys
    respelled = {10: 10.0, "2024-01-02T04:30:00Z": "2024-01-02T06:30:00+02:00"}.get(mid, mid)
    batches = [
        [(high, "h1", 1)],
        [(low, "l1", 1)],
        [(mid, "m1", 1), (high, "h2", 2)],
        [(mid, "m0", 0), (respelled, "m2", 2), (low, "l0", 0)],
    ]
    stdin = []
    for n, batch in enumerate(batches):
        stdin += [rec("s", {"k": k, "name": name, "seq": seq}, compact=True)
                  for k, name, seq in batch]  # fmt: skip
        stdin.append(state("s", n))
    result = run_write(catalog, lines(*stdin))
    assert result.returncode == 0, result.messages
    assert typed(dest_conn, "s", "name", order="k") == [("l1",), ("m2",), ("h2",)]
    assert count(dest_conn, "_airbyte_raw_s") == 7


# -- across batches and syncs -----------------------------------------------------------------


def test_cursor_going_backwards_does_not_overwrite(run_write, dest_conn) -> None:
    """An older record (by cursor) arriving in a later sync leaves the newer row in place."""
    catalog = dedup_catalog("s", PROPS, [["id"]], ["seq"])
    run_write(catalog, lines(rec("s", {"id": 1, "name": "new", "seq": 9}), state("s", 1)))
    result = run_write(
        catalog, lines(rec("s", {"id": 1, "name": "old", "seq": 3}, EM + 99), state("s", 2))
    )
    assert result.returncode == 0, result.messages
    assert typed(dest_conn, "s", "name, seq") == [("new", 9)]
    assert count(dest_conn, "_airbyte_raw_s") == 2


def test_later_batch_wins_a_full_tie(run_write, dest_conn) -> None:
    """Two batches (a STATE between) with the same key, cursor and emitted_at: the second wins."""
    catalog = dedup_catalog("s", PROPS, [["id"]], ["seq"])
    run_write(
        catalog,
        lines(
            rec("s", {"id": 1, "name": "batch 1", "seq": 1}),
            state("s", 1),
            rec("s", {"id": 1, "name": "batch 2", "seq": 1}),
            state("s", 2),
        ),
    )
    assert typed(dest_conn, "s", "name") == [("batch 2",)]


# -- first load into an empty table: plain INSERTs until a key repeats ------------------------


def test_first_load_key_repeated_in_a_later_batch_merges(run_write, dest_conn) -> None:
    """A first load takes plain INSERTs; a key already loaded by an earlier batch of the same
    write makes that batch (and the later ones) merge: newest cursor wins, older ones stay."""
    catalog = dedup_catalog("s", PROPS, [["id"]], ["seq"])
    records = [
        [({"id": 1, "name": "a1", "seq": 1}, EM), ({"id": 2, "name": "b1", "seq": 5}, EM)],
        [({"id": 2, "name": "b0", "seq": 4}, EM), ({"id": 3, "name": "c1", "seq": 1}, EM)],
        [({"id": 1, "name": "a2", "seq": 2}, EM), ({"id": 4, "name": "d1", "seq": 1}, EM)],
    ]
    stdin = [rec("s", d, em, compact=True) for batch in records for d, em in batch]
    for n in (6, 4, 2):
        stdin.insert(n, state("s", n))
    result = run_write(catalog, lines(*stdin))
    assert result.returncode == 0, result.messages
    expected = latest([r for batch in records for r in batch], ["id"], "seq")
    assert typed(dest_conn, "s", "id, name, seq") == [
        (k[0], d["name"], d["seq"]) for k, d in sorted(expected.items())
    ]
    assert [d["name"] for _, d in sorted(expected.items())] == ["a2", "b1", "c1", "d1"]
    assert count(dest_conn, "_airbyte_raw_s") == 6
    assert len(result.of_type("STATE")) == 3


def test_first_load_widening_then_repeated_key(run_write, dest_conn) -> None:
    """A first-load batch widens an integer column; a later batch repeats a key, so it merges
    through the stage, which must have been widened too."""
    catalog = dedup_catalog("s", PROPS, [["id"]], ["seq"])
    big = str(10**30).encode()
    first = rec("s", {"id": 1, "name": "a", "seq": 0}, compact=True).replace(
        b'"seq":0', b'"seq":' + big
    )
    second = rec("s", {"id": 1, "name": "b", "seq": 0}, compact=True).replace(
        b'"seq":0', b'"seq":1' + big
    )
    result = run_write(catalog, lines(first, state("s", 1), second, state("s", 2)))
    assert result.returncode == 0, result.messages
    assert typed(dest_conn, "s", "id, name, seq::text") == [(1, "b", "1" + big.decode())]
    assert dest_conn.execute(
        "SELECT data_type FROM information_schema.columns "
        "WHERE table_name = 's' AND column_name = 'seq'"
    ).fetchone() == ("numeric",)


def test_first_load_counts_survive_a_rolled_back_attempt(run_write, dest_conn) -> None:
    """A batch whose plain INSERT is rolled back (a repeated key) and merged instead counts its
    uncastable values and NULL keys once, not twice."""
    catalog = dedup_catalog("s", PROPS, [["id"]], ["seq"])
    result = run_write(
        catalog,
        lines(
            rec("s", {"id": 1, "name": "a", "seq": 1}),
            rec("s", {"name": "no id", "seq": 1}),
            state("s", 1),
            rec("s", {"id": 1, "name": "b", "seq": "not a number"}),
            rec("s", {"id": None, "name": "null id"}),
            rec("s", {"id": 2, "name": "c", "seq": "nan?"}),
            state("s", 2),
        ),
    )
    assert result.returncode == 0, result.messages
    assert typed(dest_conn, "s", "id, name, seq") == [(1, "a", 1), (2, "c", None)]
    warn = [m["log"]["message"] for m in result.of_type("LOG") if m["log"]["level"] == "WARN"]
    assert any("2 value(s) could not be cast" in w and "[seq: 2]" in w for w in warn), warn
    assert any("2 record(s) with a NULL or uncastable primary key" in w for w in warn), warn


def test_first_load_into_a_table_with_rows_merges(run_write, dest_conn) -> None:
    """Plain INSERTs are for an empty table only: a table holding rows is merged into."""
    catalog = dedup_catalog("s", PROPS, [["id"]], ["seq"])
    run_write(catalog, lines(rec("s", {"id": 1, "name": "old", "seq": 9}), state("s", 1)))
    result = run_write(catalog, lines(rec("s", {"id": 1, "name": "older", "seq": 1}),
                                      rec("s", {"id": 2, "name": "new", "seq": 1})))  # fmt: skip
    assert result.returncode == 0, result.messages
    assert typed(dest_conn, "s", "id, name") == [(1, "old"), (2, "new")]


def test_first_load_constraint_on_a_replaced_row_merges(run_write, dest_conn) -> None:
    """A user's CHECK refusing a record that a later record of its key replaces: the plain
    INSERT fails, the merge (which never writes the replaced row) succeeds."""
    catalog = dedup_catalog("s", PROPS, [["id"]], ["seq"])
    run_write(catalog, lines(rec("s", {"id": 9, "name": "x", "seq": 1}), state("s", 1)))
    dest_conn.execute("DELETE FROM s")
    dest_conn.execute("ALTER TABLE s ADD CHECK (name <> 'bad')")
    result = run_write(
        catalog,
        lines(
            rec("s", {"id": 1, "name": "bad", "seq": 1}),
            rec("s", {"id": 1, "name": "good", "seq": 2}),
            state("s", 2),
        ),
    )
    assert result.returncode == 0, result.messages
    assert typed(dest_conn, "s", "id, name, seq") == [(1, "good", 2)]


def test_composite_primary_key(run_write, dest_conn) -> None:
    """A two-column key: one row per (a, b) pair, the latest of each."""
    props = {"a": {"type": "integer"}, "b": {"type": "string"}, "v": {"type": "integer"}}
    catalog = dedup_catalog("s", props, [["a"], ["b"]], ["v"])
    sent = [
        ({"a": 1, "b": "x", "v": 1}, EM),
        ({"a": 1, "b": "y", "v": 1}, EM),
        ({"a": 2, "b": "x", "v": 1}, EM),
        ({"a": 1, "b": "x", "v": 2}, EM),
        ({"a": 1, "b": "y", "v": 0}, EM),
    ]
    run_write(catalog, lines(*(rec("s", d, e) for d, e in sent[:3]), state("s", 1)))
    run_write(catalog, lines(*(rec("s", d, e) for d, e in sent[3:]), state("s", 2)))
    expected = latest(sent, ["a", "b"], "v")
    assert typed(dest_conn, "s", "a, b, v", "1, 2") == [
        (k[0], k[1], d["v"]) for k, d in sorted(expected.items())
    ]
    assert typed(dest_conn, "s", "a, b, v", "1, 2") == [(1, "x", 2), (1, "y", 1), (2, "x", 1)]


def test_awkward_key_and_cursor_names(run_write, dest_conn) -> None:
    """Key columns "User ID" and "REGION", cursor "Updated At": quoted everywhere."""
    props = {
        "User ID": {"type": "integer"},
        "REGION": {"type": "string"},
        "Updated At": {"type": "integer"},
        "50% off": {"type": "string"},
    }
    catalog = dedup_catalog("Weird Stream", props, [["User ID"], ["REGION"]], ["Updated At"])
    data = [
        {"User ID": 1, "REGION": "eu", "Updated At": 2, "50% off": "b"},
        {"User ID": 1, "REGION": "eu", "Updated At": 1, "50% off": "a"},
        {"User ID": 1, "REGION": "US", "Updated At": 1, "50% off": "c"},
    ]
    result = run_write(catalog, lines(*(rec("Weird Stream", d) for d in data)))
    assert result.returncode == 0, result.messages
    rows = typed(dest_conn, '"Weird Stream"', '"User ID", "REGION", "Updated At", "50% off"', "2")
    assert rows == [(1, "US", 1, "c"), (1, "eu", 2, "b")]


def test_schema_evolution_new_column(run_write, dest_conn) -> None:
    """A property new in the second sync becomes a column; the updated row gets its value."""
    run_write(
        dedup_catalog("s", PROPS, [["id"]], ["seq"]),
        lines(
            rec("s", {"id": 1, "name": "a", "seq": 1}), rec("s", {"id": 2, "name": "b", "seq": 1})
        ),
    )
    props2 = {**PROPS, "email": {"type": "string"}}
    result = run_write(
        dedup_catalog("s", props2, [["id"]], ["seq"]),
        lines(rec("s", {"id": 1, "name": "a2", "seq": 2, "email": "a@x"})),
    )
    assert result.returncode == 0, result.messages
    assert typed(dest_conn, "s", "id, name, email") == [(1, "a2", "a@x"), (2, "b", None)]


def test_integer_widening_in_dedup(run_write, dest_conn) -> None:
    """An integer too big for bigint widens the column to numeric, as in append."""
    catalog = dedup_catalog("s", PROPS, [["id"]])
    run_write(catalog, lines(rec("s", {"id": 1, "name": "a", "seq": 1})))
    big = 10**30
    line = rec("s", {"id": 1, "name": "b", "seq": 0}, EM + 1, compact=True)
    result = run_write(catalog, line.replace(b'"seq":0', b'"seq":' + str(big).encode()) + b"\n")
    assert result.returncode == 0, result.messages
    assert typed(dest_conn, "s", "id, name, seq::text") == [(1, "b", str(big))]


# -- CDC deletions ----------------------------------------------------------------------------

CDC_PROPS = {
    "id": {"type": "integer"},
    "name": {"type": "string"},
    "_ab_cdc_lsn": {"type": "integer"},
    "_ab_cdc_deleted_at": {"type": "string", "format": "date-time"},
}
DELETED = "2024-03-01T00:00:00Z"


def _cdc(run_write, dest_config, mode: str | None, *batches: list[dict[str, Any]]):
    config = dict(dest_config)
    if mode is not None:
        config["cdc_deletion_mode"] = mode
    catalog = dedup_catalog("s", CDC_PROPS, [["id"]], ["_ab_cdc_lsn"])
    for n, batch in enumerate(batches):
        result = run_write(catalog, lines(*(rec("s", d) for d in batch), state("s", n)), config)
        assert result.returncode == 0, result.messages
    return result


def _base() -> list[dict[str, Any]]:
    return [{"id": i, "name": f"r{i}", "_ab_cdc_lsn": 10} for i in (1, 2, 3)]


def test_hard_delete_is_the_default(run_write, dest_conn, dest_config) -> None:
    """No cdc_deletion_mode: a record with _ab_cdc_deleted_at set deletes its key's row."""
    delete = {"id": 2, "name": None, "_ab_cdc_lsn": 20, "_ab_cdc_deleted_at": DELETED}
    result = _cdc(run_write, dest_config, None, _base(), [delete])
    assert typed(dest_conn, "s", "id") == [(1,), (3,)]
    assert count(dest_conn, "_airbyte_raw_s") == 4
    # The end-of-write LOG says so: a table's own column of that name deletes rows too.
    assert any("1 record(s) had _ab_cdc_deleted_at set: each deleted its primary key's row "
               "from s" in m for m in result.logs), result.logs  # fmt: skip


def test_hard_delete_older_than_row_keeps_it(run_write, dest_conn, dest_config) -> None:
    """A delete record older (by cursor) than the row present does not delete it."""
    delete = {"id": 2, "name": None, "_ab_cdc_lsn": 5, "_ab_cdc_deleted_at": DELETED}
    _cdc(run_write, dest_config, "Hard delete", _base(), [delete])
    assert typed(dest_conn, "s", "id, name") == [(1, "r1"), (2, "r2"), (3, "r3")]


def test_hard_delete_in_batch(run_write, dest_conn, dest_config) -> None:
    """In one batch: insert then delete → no row; delete then newer insert → the row."""
    batch = [
        {"id": 7, "name": "gone", "_ab_cdc_lsn": 1},
        {"id": 7, "name": None, "_ab_cdc_lsn": 2, "_ab_cdc_deleted_at": DELETED},
        {"id": 8, "name": None, "_ab_cdc_lsn": 1, "_ab_cdc_deleted_at": DELETED},
        {"id": 8, "name": "back", "_ab_cdc_lsn": 2},
    ]
    _cdc(run_write, dest_config, "Hard delete", batch)
    assert typed(dest_conn, "s", "id, name") == [(8, "back")]


def test_soft_delete_keeps_the_row(run_write, dest_conn, dest_config) -> None:
    """Soft delete: the deleted key's row stays, upserted with its _ab_cdc_deleted_at."""
    delete = {"id": 2, "name": "r2", "_ab_cdc_lsn": 20, "_ab_cdc_deleted_at": DELETED}
    _cdc(run_write, dest_config, "Soft delete", _base(), [delete])
    rows = typed(dest_conn, "s", "id, _ab_cdc_lsn, _ab_cdc_deleted_at IS NOT NULL")
    assert rows == [(1, 10, False), (2, 20, True), (3, 10, False)]


def test_unknown_deletion_mode_is_a_config_error(run_write, dest_config) -> None:
    """cdc_deletion_mode outside the enum: one config_error naming the allowed values."""
    catalog = dedup_catalog("s", CDC_PROPS, [["id"]])
    result = run_write(catalog, b"", {**dest_config, "cdc_deletion_mode": "Delete please"})
    assert result.returncode != 0
    assert len(result.errors) == 1
    assert result.errors[0]["failure_type"] == "config_error"
    assert "Hard delete" in result.errors[0]["message"]


# -- keys that cannot be used -----------------------------------------------------------------


def test_null_or_uncastable_key_goes_to_raw_only(run_write, dest_conn) -> None:
    """Records whose key is missing, null or not an integer: raw only, counted in a WARN."""
    catalog = dedup_catalog("s", PROPS, [["id"]])
    stdin = lines(
        rec("s", {"id": 1, "name": "ok"}),
        rec("s", {"name": "no id"}),
        rec("s", {"id": None, "name": "null id"}),
        rec("s", {"id": "x", "name": "bad id"}),
    )
    result = run_write(catalog, stdin)
    assert result.returncode == 0, result.messages
    assert typed(dest_conn, "s", "id, name") == [(1, "ok")]
    assert count(dest_conn, "_airbyte_raw_s") == 4
    warn = [m["log"]["message"] for m in result.of_type("LOG") if m["log"]["level"] == "WARN"]
    assert any("3 record(s) with a NULL or uncastable primary key" in w for w in warn), warn


@pytest.mark.parametrize(
    ("pk", "fragment"),
    [
        (None, "no primary key"),
        ([], "no primary key"),
        ([["missing"]], "'missing' is not a property"),
        ([["id", "sub"]], "nested"),
    ],
)
def test_unusable_key_fails_at_start(run_write, dest_conn, pk, fragment: str) -> None:
    """No usable key: one TRACE ERROR naming the stream, non-zero exit, nothing written."""
    catalog = dedup_catalog("nokey_stream", PROPS, pk)
    other = catalog_for([("fine", PROPS)], mode="append")["streams"][0]
    catalog["streams"].append(other)
    result = run_write(catalog, lines(rec("fine", {"id": 1}), rec("nokey_stream", {"id": 1})))
    assert result.returncode != 0
    assert len(result.errors) == 1
    assert "nokey_stream" in result.errors[0]["message"]
    assert fragment in result.errors[0]["message"]
    assert result.errors[0]["failure_type"] == "config_error"
    assert (
        dest_conn.execute("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'").fetchone()[
            0
        ]
        == 0
    )


def test_source_defined_primary_key_is_used(run_write, dest_conn) -> None:
    """No configured primary_key: the stream's source_defined_primary_key is the key."""
    catalog = dedup_catalog("s", PROPS, None)
    catalog["streams"][0]["stream"]["source_defined_primary_key"] = [["id"]]
    result = run_write(
        catalog, lines(rec("s", {"id": 1, "name": "a"}), rec("s", {"id": 1, "name": "b"}))
    )
    assert result.returncode == 0, result.messages
    assert typed(dest_conn, "s", "id, name") == [(1, "b")]


def test_unusable_cursor_warns_and_uses_emitted_at(run_write, dest_conn) -> None:
    """A cursor that is no top-level property: a WARN, and emitted_at decides."""
    catalog = dedup_catalog("s", PROPS, [["id"]], ["nested", "field"])
    result = run_write(
        catalog,
        lines(rec("s", {"id": 1, "name": "new"}, EM + 1), rec("s", {"id": 1, "name": "old"}, EM)),
    )
    assert result.returncode == 0, result.messages
    assert typed(dest_conn, "s", "name") == [("new",)]
    assert any("cursor field" in m for m in result.logs)


def test_a_cursor_retyped_to_text_orders_by_emitted_at(run_write, dest_conn) -> None:
    """The source's cursor column was text, then integer: the destination column was retyped
    to text to hold both, where '10' < '9'. The newer record still wins (emitted_at decides),
    with a WARN saying why; before, the row stayed at its old version."""
    as_text = {"id": {"type": "integer"}, "v": {"type": "string"}, "ver": {"type": "string"}}
    first = run_write(dedup_catalog("s", as_text, [["id"]], ["ver"]),
                      lines(rec("s", {"id": 1, "v": "a", "ver": "9"})))  # fmt: skip
    assert first.returncode == 0, first.messages
    as_int = {**as_text, "ver": {"type": "integer"}}
    second = run_write(dedup_catalog("s", as_int, [["id"]], ["ver"]),
                       lines(rec("s", {"id": 1, "v": "a-new", "ver": 10}, EM + 1)))  # fmt: skip
    assert second.returncode == 0, second.messages
    assert typed(dest_conn, "s", "v") == [("a-new",)]
    assert any("do not order as the source's bigint" in m for m in second.logs), second.logs


def test_a_renamed_key_column_warns_of_the_rows_it_leaves(run_write, dest_conn) -> None:
    """The source renamed its key column (id → pid): the key index moves to pid, and the rows
    typed before, whose pid is NULL, stay beside the new ones — said in a WARN (before, only
    "column(s) added" was logged)."""
    old = {"id": {"type": "integer"}, "v": {"type": "string"}}
    records = lines(rec("s", {"id": 1, "v": "a"}), rec("s", {"id": 2, "v": "b"}))
    first = run_write(dedup_catalog("s", old, [["id"]]), records)
    assert first.returncode == 0, first.messages
    new = {"pid": {"type": "integer"}, "v": {"type": "string"}}
    second = run_write(dedup_catalog("s", new, [["pid"]]), lines(rec("s", {"pid": 1, "v": "a2"})))
    assert second.returncode == 0, second.messages
    assert count(dest_conn, "s") == 3
    assert any("primary key changed to (pid)" in m and "2 row(s)" in m for m in second.logs), (
        second.logs
    )


# -- tables from earlier syncs ----------------------------------------------------------------


def test_keyless_rows_an_append_left_are_named_when_dedup_begins(run_write, dest_conn) -> None:
    """Rows an append sync typed with a NULL key (append_dedup keeps such records in the raw
    table only) stay in the typed table when the stream switches to append_dedup: a WARN says
    how many and what to do (nothing was said)."""
    append = dedup_catalog("s", PROPS, [["id"]], ["seq"], mode="append")
    first = run_write(append, lines(rec("s", {"id": None, "name": "a", "seq": 1}),
                                    rec("s", {"id": None, "name": "b", "seq": 2}),
                                    rec("s", {"id": 1, "name": "c", "seq": 1})))  # fmt: skip
    assert first.returncode == 0, first.messages
    result = run_write(dedup_catalog("s", PROPS, [["id"]], ["seq"]),
                       lines(rec("s", {"id": 2, "name": "d", "seq": 1})))  # fmt: skip
    assert result.returncode == 0, result.messages
    assert count(dest_conn, "s") == 4
    assert any("its typed table gets its key now; 2 row(s) of public.s" in m
               and "Delete them" in m for m in result.logs), result.logs  # fmt: skip
    again = run_write(dedup_catalog("s", PROPS, [["id"]], ["seq"]),
                      lines(rec("s", {"id": 3, "name": "e", "seq": 1})))  # fmt: skip
    assert not any("row(s) of public.s typed before" in m for m in again.logs), again.logs


def test_existing_append_table_is_deduplicated(run_write, dest_conn) -> None:
    """A typed table an append sync filled with duplicates: the first dedup sync keeps the
    latest row per key and adds the unique index."""
    append = dedup_catalog("s", PROPS, [["id"]], ["seq"], mode="append")
    run_write(
        append,
        lines(
            rec("s", {"id": 1, "name": "a", "seq": 2}),
            rec("s", {"id": 1, "name": "b", "seq": 1}),
            rec("s", {"id": 2, "name": "c", "seq": 1}),
        ),
    )
    assert count(dest_conn, "s") == 3
    result = run_write(
        dedup_catalog("s", PROPS, [["id"]], ["seq"]),
        lines(rec("s", {"id": 3, "name": "d", "seq": 1})),
    )
    assert result.returncode == 0, result.messages
    assert typed(dest_conn, "s", "id, name") == [(1, "a"), (2, "c"), (3, "d")]
    assert (
        dest_conn.execute(
            "SELECT count(*) FROM pg_indexes WHERE indexname = '_airbyte_pk_s'"
        ).fetchone()[0]
        == 1
    )


def test_back_to_append_drops_the_key_index(run_write, dest_conn) -> None:
    """A stream switched from append_dedup to append keeps duplicates again (index dropped)."""
    run_write(dedup_catalog("s", PROPS, [["id"]]), lines(rec("s", {"id": 1, "name": "a"})))
    result = run_write(
        dedup_catalog("s", PROPS, [["id"]], mode="append"), lines(rec("s", {"id": 1, "name": "b"}))
    )
    assert result.returncode == 0, result.messages
    assert typed(dest_conn, "s", "id, name", "2") == [(1, "a"), (1, "b")]


def test_changed_primary_key_replaces_the_index(run_write, dest_conn) -> None:
    """A stream whose key changes from (id) to (id, name): the index follows the new key."""
    run_write(dedup_catalog("s", PROPS, [["id"]]), lines(rec("s", {"id": 1, "name": "a"})))
    result = run_write(
        dedup_catalog("s", PROPS, [["id"], ["name"]]),
        lines(rec("s", {"id": 1, "name": "b"}), rec("s", {"id": 1, "name": "b"})),
    )
    assert result.returncode == 0, result.messages
    assert typed(dest_conn, "s", "id, name", "2") == [(1, "a"), (1, "b")]
    indexdef = dest_conn.execute(
        "SELECT indexdef FROM pg_indexes WHERE indexname = '_airbyte_pk_s'"
    ).fetchone()[0]
    assert indexdef.endswith("(id, name)")


def test_raw_only_dedup_stream_keeps_every_record(run_write, dest_conn, dest_config) -> None:
    """disable_type_dedupe with append_dedup: only the raw table, every record in it."""
    config = {**dest_config, "disable_type_dedupe": True}
    catalog = dedup_catalog("s", PROPS, [["id"]])
    result = run_write(catalog, lines(rec("s", {"id": 1}), rec("s", {"id": 1})), config)
    assert result.returncode == 0, result.messages
    assert count(dest_conn, "_airbyte_raw_s") == 2
    assert "s" not in [r[0] for r in dest_conn.execute("SELECT tablename FROM pg_tables")]


def test_incremental_overwrite_is_overwrite(run_write, dest_conn) -> None:
    """sync_mode incremental + destination_sync_mode overwrite replaces both tables."""
    catalog = dedup_catalog("s", PROPS, [["id"]], ["seq"], mode="overwrite")
    run_write(catalog, lines(rec("s", {"id": 1, "name": "a"}), status("s", "COMPLETE")))
    run_write(catalog, lines(rec("s", {"id": 2, "name": "b"}), status("s", "COMPLETE")))
    assert typed(dest_conn, "s", "id, name") == [(2, "b")]
    assert count(dest_conn, "_airbyte_raw_s") == 1


# -- commits and states -----------------------------------------------------------------------


def test_state_echoed_only_after_merge_committed(tmp_path, dest_config, dest_conn) -> None:
    """When a STATE comes back, the merged rows before it are visible to another session."""
    seen = []
    with live_write(tmp_path, dest_config, dedup_catalog("s", PROPS, [["id"]], ["seq"])) as write:
        for n in range(3):
            write.send_until_state(
                lines(
                    rec("s", {"id": 1, "name": f"v{n}", "seq": n}),
                    rec("s", {"id": 10 + n, "name": "new", "seq": 0}),
                    state("s", n),
                )
            )
            seen.append(typed(dest_conn, "s", "id, name"))
        assert write.finish() == 0
    assert seen == [
        [(1, "v0"), (10, "new")],
        [(1, "v1"), (10, "new"), (11, "new")],
        [(1, "v2"), (10, "new"), (11, "new"), (12, "new")],
    ]


def _trace_errors(out: bytes) -> list[dict]:
    return [m["trace"]["error"] for m in map(json.loads, out.splitlines())
            if m["type"] == "TRACE" and m["trace"]["type"] == "ERROR"]  # fmt: skip


def test_a_key_index_gone_mid_write_is_a_clear_transient_error(
    tmp_path, dest_config, dest_conn
) -> None:
    """The key index dropped while a dedup write runs (another sync overwrote the table: its
    new table has none): a transient_error saying so (it was PostgreSQL's system_error about
    ON CONFLICT); what was committed stays, and the next write makes the index anew."""
    catalog = dedup_catalog("s", PROPS, [["id"]], ["seq"])
    with live_write(tmp_path, dest_config, catalog) as write:
        write.send_until_state(lines(rec("s", {"id": 1, "name": "a", "seq": 1}), state("s", 1)))
        write.send_until_state(lines(rec("s", {"id": 1, "name": "b", "seq": 2}), state("s", 2)))
        dest_conn.execute("DROP INDEX _airbyte_pk_s")
        assert write.finish(lines(rec("s", {"id": 1, "name": "c", "seq": 3}), state("s", 3))) != 0
        errors = _trace_errors(write.proc.stdout.read())
    assert len(errors) == 1 and errors[0]["failure_type"] == "transient_error", errors
    assert "the unique index on the primary key of public.s is gone" in errors[0]["message"]
    assert typed(dest_conn, "s", "id, name") == [(1, "b")]
    (tmp_path / "again").mkdir()
    with live_write(tmp_path / "again", dest_config, catalog) as write:
        write.send_until_state(lines(rec("s", {"id": 1, "name": "c", "seq": 3}), state("s", 3)))
        assert write.finish() == 0
    assert typed(dest_conn, "s", "id, name") == [(1, "c")]


def test_a_key_index_gone_during_a_first_load_is_a_clear_transient_error(
    tmp_path, dest_config, dest_conn
) -> None:
    """A first load into an empty table INSERTs while no key repeats, counting on the key
    index to refuse one; an overwrite racing it swaps in a table without the index. Every
    later batch then went in unchecked (duplicate keys, exit 0); now the write stops there
    with the same transient_error as a merge, and the duplicate is not committed."""
    catalog = dedup_catalog("s", PROPS, [["id"]], ["seq"])
    with live_write(tmp_path, dest_config, catalog) as write:
        write.send_until_state(lines(rec("s", {"id": 1, "name": "a", "seq": 1}), state("s", 1)))
        dest_conn.execute("DROP INDEX _airbyte_pk_s")
        assert write.finish(lines(rec("s", {"id": 1, "name": "b", "seq": 2}), state("s", 2))) != 0
        errors = _trace_errors(write.proc.stdout.read())
    assert len(errors) == 1 and "is gone since this write began" in errors[0]["message"], errors
    assert typed(dest_conn, "s", "id, name") == [(1, "a")]


def test_failed_batch_leaves_last_committed_rows(run_write, dest_conn) -> None:
    """Bad input after a STATE: the typed rows are those committed at that STATE."""
    catalog = dedup_catalog("s", PROPS, [["id"]], ["seq"])
    stdin = lines(
        rec("s", {"id": 1, "name": "kept", "seq": 1}),
        state("s", 1),
        rec("s", {"id": 1, "name": "lost", "seq": 2}),
        b"{not json",
    )
    result = run_write(catalog, stdin)
    assert result.returncode != 0
    assert len(result.states) == 1
    assert typed(dest_conn, "s", "name") == [("kept",)]
    assert count(dest_conn, "_airbyte_raw_s") == 1


# -- the merge's plan (in-process, fine grain) ------------------------------------------------


def test_merge_probes_the_key_index_not_the_table(run_write, dest_config, dest_conn) -> None:
    """A small batch against a 20,000-row table: the delete and the upsert go through the key
    index (no sequential scan of the typed table)."""
    import psycopg
    from destination_postgres import ddl, dedup, loader
    from destination_postgres.catalog import parse_catalog
    from destination_postgres.config import DestinationConfig

    catalog = dedup_catalog("s", CDC_PROPS, [["id"]], ["_ab_cdc_lsn"])
    first = (rec("s", {"id": i, "name": "x", "_ab_cdc_lsn": 1}, compact=True) for i in range(20000))
    assert run_write(catalog, lines(*first)).returncode == 0
    dest_conn.execute("ANALYZE s")
    config = DestinationConfig.from_dict(dest_config)
    (target,) = parse_catalog(catalog, config)
    with psycopg.connect(config.settings.conninfo()) as conn:
        loader.setup_session(conn)
        ddl.prepare(conn, target)
        dedup.prepare(conn, target, lambda level, text: None)
        stage = target.dedup_plan.stage
        conn.execute(
            f"INSERT INTO pg_temp.{stage} (id, name, _ab_cdc_lsn, _ab_cdc_deleted_at, "
            "_airbyte_emitted_at) VALUES (5, 'y', 2, NULL, now()), (6, NULL, 2, now(), now())"
        )
        statement = dedup.merge_statement(target, target.dedup_plan)
        plan = "\n".join(r[0] for r in conn.execute(b"EXPLAIN " + statement.as_bytes(conn)))
        conn.rollback()
    assert "Conflict Arbiter Indexes: _airbyte_pk_s" in plan
    assert "Seq Scan on s " not in plan and "Seq Scan on s\n" not in plan, plan
    assert "Index Scan using _airbyte_pk_s" in plan, plan


def test_rerun_after_a_failure_holds_each_key_once(run_write, dest_conn) -> None:
    """A write that fails after its STATE, then a re-run resending from before that STATE:
    exactly one row per key, each the latest version."""
    catalog = dedup_catalog("s", PROPS, [["id"]], ["seq"])
    first = [rec("s", {"id": i, "name": f"v1-{i}", "seq": 1}) for i in range(1, 6)]
    failed = run_write(catalog, lines(*first, state("s", 5), first[0], b"[broken"))
    assert failed.returncode != 0 and len(failed.states) == 1
    again = [rec("s", {"id": i, "name": f"v2-{i}", "seq": 2}) for i in range(3, 9)]
    result = run_write(catalog, lines(*again, state("s", 8)))
    assert result.returncode == 0, result.messages
    expected = [(i, f"v1-{i}") for i in (1, 2)] + [(i, f"v2-{i}") for i in range(3, 9)]
    assert typed(dest_conn, "s", "id, name") == expected


@pytest.mark.parametrize("mode", ["append", "append_dedup"])
def test_a_dropped_typed_table_is_rebuilt_from_the_raw_one(run_write, dest_conn, mode) -> None:
    """The typed table dropped by hand while the raw table keeps every record: the next write
    rebuilds it from them (dedup: the latest per key, by cursor) before loading its own, with an
    INFO line (before: recreated empty, and the old records were gone from it)."""
    catalog = dedup_catalog("s", PROPS, [["id"]], ["seq"], mode=mode)
    sent = [
        ({"id": 1, "name": "a", "seq": 1}, EM),
        ({"id": 2, "name": "b", "seq": 1}, EM),
        ({"id": 1, "name": "a2", "seq": 2}, EM + 1),
        ({"id": 3, "name": "c", "seq": 5}, EM + 1),
        ({"id": 3, "name": "c-old", "seq": 4}, EM + 2),
    ]
    first = run_write(catalog, lines(*(rec("s", d, em) for d, em in sent)))
    assert first.returncode == 0, first.messages
    dest_conn.execute("DROP TABLE s")
    later = ({"id": 2, "name": "b2", "seq": 2}, EM + 3)
    second = run_write(catalog, lines(rec("s", *later)))
    assert second.returncode == 0, second.messages
    assert any("was missing; rebuilt from the 5 record(s)" in m for m in second.logs), second.logs
    names = sorted(r[0] for r in dest_conn.execute("SELECT name FROM s").fetchall())
    if mode == "append":
        assert names == sorted(d["name"] for d, _ in [*sent, later])
    else:
        expected = latest([*sent, later], ["id"], "seq")
        assert names == sorted(d["name"] for d in expected.values())


@pytest.mark.parametrize("mode", ["append", "append_dedup"])
def test_a_legacy_raw_table_without_its_typed_one_is_typed_again(run_write, dest_conn, mode):
    """A raw table Airbyte's normalization made (text ids), its typed table gone (never made:
    normalization was off; or dropped): the typed table is rebuilt with text ids, as the raw
    table's are, and new records go into both (it failed on every write: text is no uuid)."""
    dest_conn.execute(
        "CREATE TABLE _airbyte_raw_s (_airbyte_ab_id varchar PRIMARY KEY, _airbyte_data jsonb, "
        "_airbyte_emitted_at timestamptz DEFAULT current_timestamp)"
    )
    dest_conn.execute(
        "INSERT INTO _airbyte_raw_s VALUES ('0b0c7a2e-4b8e-4a55-9c3e-1c2d3e4f5a6b', "
        """'{"id": 1, "name": "old", "seq": 1}', '2020-01-01'), ('legacy-2', """
        """'{"id": 2, "name": "two", "seq": 1}', '2020-01-01')"""
    )
    catalog = dedup_catalog("s", PROPS, [["id"]], ["seq"], mode=mode)
    result = run_write(catalog, lines(rec("s", {"id": 1, "name": "new", "seq": 2}), state("s", 1)))
    assert result.returncode == 0, result.messages
    assert any("rebuilt from the 2 record(s)" in m for m in result.logs), result.logs
    expected = [(1, "new"), (2, "two")] if mode == "append_dedup" else [
        (1, "new"), (1, "old"), (2, "two")]  # fmt: skip
    assert typed(dest_conn, "s", "id, name", order="id, name") == expected
    assert dest_conn.execute(
        "SELECT count(*) FROM s JOIN _airbyte_raw_s r USING (_airbyte_ab_id)"
    ).fetchone() == (len(expected),)
    assert dest_conn.execute(
        "SELECT data_type FROM information_schema.columns "
        "WHERE table_name = 's' AND column_name = '_airbyte_ab_id'"
    ).fetchone() == ("character varying",)


@pytest.mark.parametrize("refusal", ["trigger", "generated"])
def test_a_users_trigger_or_generated_column_refusing_a_batch_is_named(
    run_write, dest_conn, refusal: str
) -> None:
    """A user's trigger that RAISEs for one record, or a GENERATED column pgbyte would write:
    the write ends naming the stream and the input lines, with the STATEs before the refused
    batch committed and echoed, as for a CHECK (before: a system_error naming nothing, and the
    STATE before it neither committed nor echoed)."""
    catalog = dedup_catalog("s", PROPS, [["id"]], ["seq"], mode="append")
    first = run_write(catalog, lines(rec("s", {"id": 9, "name": "x", "seq": 1}), state("s", 1)))
    assert first.returncode == 0, first.errors
    if refusal == "trigger":
        dest_conn.execute(
            "CREATE FUNCTION no3() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
            "IF NEW.id = 3 THEN RAISE EXCEPTION 'no id 3 please'; END IF; RETURN NEW; END $$;"
            "CREATE TRIGGER no3 BEFORE INSERT ON s FOR EACH ROW EXECUTE FUNCTION no3()"
        )
        second_batch = [rec("s", {"id": 3, "name": "c", "seq": 3}), state("s", 3)]
    else:
        dest_conn.execute("ALTER TABLE s DROP COLUMN name, "
                          "ADD COLUMN name text GENERATED ALWAYS AS ('g') STORED")  # fmt: skip
        second_batch = [rec("s", {"id": 3, "name": "c", "seq": 3}), state("s", 3)]
    result = run_write(catalog, lines(rec("s", {"id": 4, "name": "d", "seq": 2}), state("s", 2),
                                      *second_batch))  # fmt: skip
    assert result.returncode == 1
    (error,) = result.errors
    assert "stream s on input lines" in error["message"], error
    if refusal == "trigger":
        assert "no id 3 please" in error["message"], error
        assert [s["state"]["stream"]["stream_state"] for s in result.states] == [2]
        assert typed(dest_conn, "s", "id") == [(4,), (9,)]
    else:
        assert "GENERATED ALWAYS column" in error["message"], error
