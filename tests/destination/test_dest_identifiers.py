"""Identifier edge cases (fixture files): reserved words, case, spaces, quotes, unicode, and
names over 63 bytes, which are shortened with a stable hash so two never collide."""

from __future__ import annotations

import json

from dest_helpers import FIXTURES, catalog_for, column_types, count, table_names
from destination_postgres import naming

CATALOG = FIXTURES / "identifiers_catalog.json"
RECORDS = FIXTURES / "identifiers_records.jsonl"
STREAMS = [s["stream"]["name"] for s in json.loads(CATALOG.read_text())["streams"]]


def test_every_stream_gets_its_two_tables(run_write, dest_conn) -> None:
    """Each stream has its raw and normalized table, short names kept exactly as given."""
    result = run_write(CATALOG, RECORDS)
    assert result.returncode == 0, result.errors
    expected = sorted(
        [naming.raw_table(s) for s in STREAMS] + [naming.normalized_table(s) for s in STREAMS]
    )
    assert table_names(dest_conn) == expected
    for short in ("select", "MixedCase_Stream", "with space", "quo\"te's", "ünïcödé_表"):
        assert short in expected and f"_airbyte_raw_{short}" in expected


def test_long_names_do_not_collide(run_write, dest_conn) -> None:
    """Two long stream names sharing 63 bytes land in different tables with one row each."""
    assert run_write(CATALOG, RECORDS).returncode == 0
    long_names = [s for s in STREAMS if len(s.encode()) > 63]
    tables = {naming.normalized_table(s) for s in long_names}
    assert len(tables) == 2
    for table in tables:
        assert len(table.encode()) <= 63
        assert count(dest_conn, table) == 1


def test_columns_keep_names_and_values(run_write, dest_conn) -> None:
    """Odd property names become columns (long ones shortened, distinct) holding their values."""
    assert run_write(CATALOG, RECORDS).returncode == 0
    cols = column_types(dest_conn, "select")
    for name in ("order", "Group", "two words", 'it\'s "q"', "naïve_列"):
        assert name in cols
    long_cols = [c for c in cols if c.startswith("ppp")]
    assert len(long_cols) == 2 and all(len(c.encode()) <= 63 for c in long_cols)
    row = dest_conn.execute(
        'SELECT "order", "Group", "two words", "it\'s ""q""", "naïve_列" FROM "select"'
    ).fetchone()
    assert row == (1, "g", "tw", "q", "u")


def test_shortening_is_stable() -> None:
    """The same long name always maps to the same identifier, and within 63 bytes."""
    name = "é" * 40
    assert naming.fit(name) == naming.fit(name)
    assert len(naming.fit(name).encode()) <= 63
    assert naming.fit(name) != naming.fit(name + "x")


def test_empty_and_nul_property_names_get_columns(run_write, dest_conn) -> None:
    """A property named "" gets the column "_"; one whose name holds \\u0000 loses the NUL, as
    the data's keys do; both load their values instead of failing the write."""
    line = (
        b'{"type":"RECORD","record":{"stream":"odd","emitted_at":1,'
        b'"data":{"id":1,"":"empty","a\\u0000b":"nul"}}}\n'
    )
    props = {"id": {"type": "integer"}, "": {"type": "string"}, "a\x00b": {"type": "string"}}
    result = run_write(catalog_for([("odd", props)], "append"), line)
    assert result.returncode == 0, result.errors
    assert dest_conn.execute('SELECT id, "_", ab FROM odd').fetchone() == (1, "empty", "nul")
