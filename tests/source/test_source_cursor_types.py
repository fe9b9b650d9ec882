"""Cursor columns whose values PostgreSQL compares only when told their type: types whose
comparison operators live in a schema off the search_path (extensions installed in their own
schema), reg* types (compared as oid), composites, domains; and relations a read cannot use
yet (an unpopulated materialized view)."""

from __future__ import annotations

import pytest
from xmin_helpers import ids, last_state, read, stream_entry, stream_state, warnings


def standard(entry: dict, cursor: str) -> dict:
    return {**entry, "cursor_field": [cursor]}


def _two_reads(source_conn, source_config, tmp_path, cursor: str, later: str) -> tuple:
    """Read t by `cursor`, run the SQL `later`, read again from the first read's state."""
    entry = standard(stream_entry("t", ["id", cursor]), cursor)
    first = read(tmp_path / "1", source_config, [entry])
    assert first.returncode == 0, first.stdout[-2000:]
    source_conn.execute(later)
    second = read(tmp_path / "2", source_config, [entry], state=last_state(first))
    assert second.returncode == 0, second.stdout[-2000:]
    return first, second


def test_an_extension_type_off_the_search_path_compares_as_its_own_type(
    source_conn, source_config, tmp_path
) -> None:
    """citext installed in schema ext (not on the role's search_path): the cursor compares
    case-insensitively, as the table orders it, not as text. As text, 'HZ' > 'Hi' is false and
    'a2' > 'Hi' true: the read after the first would skip HZ and take a2."""
    source_conn.execute("CREATE SCHEMA ext; CREATE EXTENSION citext SCHEMA ext")
    source_conn.execute("CREATE TABLE t (id int PRIMARY KEY, c ext.citext)")
    source_conn.execute("INSERT INTO t VALUES (1, 'Hi')")
    first, second = _two_reads(source_conn, source_config, tmp_path, "c",
                               "INSERT INTO t VALUES (2, 'HZ'), (3, 'a2')")  # fmt: skip
    assert ids(first, "t") == [1]
    assert stream_state(first)["cursor"] == "Hi"
    assert ids(second, "t") == [2]
    assert stream_state(second)["cursor"] == "HZ"
    assert not warnings(second)


def test_an_extension_type_whose_operators_are_off_the_search_path_is_a_cursor(
    source_conn, source_config, tmp_path
) -> None:
    """ltree in schema ext has no operator PostgreSQL finds by the search_path: it was refused
    as a type that "cannot be ordered"."""
    source_conn.execute("CREATE SCHEMA ext; CREATE EXTENSION ltree SCHEMA ext")
    source_conn.execute("CREATE TABLE t (id int PRIMARY KEY, p ext.ltree)")
    source_conn.execute("INSERT INTO t VALUES (1, 'a.b'), (2, 'a.c')")
    first, second = _two_reads(source_conn, source_config, tmp_path, "p",
                               "INSERT INTO t VALUES (3, 'a.b.z'), (4, 'a.a')")  # fmt: skip
    assert ids(first, "t") == [1, 2]
    assert stream_state(first)["cursor"] == "a.c"
    assert ids(second, "t") == []  # a.b.z and a.a both sort below a.c
    source_conn.execute("INSERT INTO t VALUES (5, 'b')")
    third = read(tmp_path / "3", source_config, [standard(stream_entry("t", ["id", "p"]), "p")],
                 state=last_state(second))  # fmt: skip
    assert ids(third, "t") == [5]


@pytest.mark.parametrize(
    ("column", "values", "later"),
    [
        ("regclass", "(1, 'pg_class'), (2, 'pg_type')", "(3, 'pg_proc')"),
        ("regtype", "(1, 'integer'), (2, 'text')", "(3, 'uuid')"),
    ],
)
def test_a_reg_type_cursor_compares_by_oid(
    source_conn, source_config, tmp_path, column: str, values: str, later: str
) -> None:
    """regclass/regtype values are saved as names and compared as the oids they name (the
    order the table sorts them by); compared untyped, the saved name failed as an oid."""
    source_conn.execute(f"CREATE TABLE t (id int PRIMARY KEY, r {column})")
    source_conn.execute(f"INSERT INTO t VALUES {values}")
    first, second = _two_reads(source_conn, source_config, tmp_path, "r",
                               f"INSERT INTO t VALUES {later}")  # fmt: skip
    assert ids(first, "t") == [1, 2]
    newer = source_conn.execute(
        f"SELECT r > (SELECT max(r::oid)::{column} FROM t WHERE id < 3) FROM t WHERE id = 3"
    ).fetchone()[0]
    assert ids(second, "t") == ([3] if newer else [])


def test_a_composite_cursor_compares_field_by_field(source_conn, source_config, tmp_path) -> None:
    """A composite cursor (version numbers as (major, minor)) orders as the table does."""
    source_conn.execute("CREATE TYPE version AS (major int, minor int)")
    source_conn.execute("CREATE TABLE t (id int PRIMARY KEY, v version)")
    source_conn.execute("INSERT INTO t VALUES (1, ROW(1, 9)), (2, ROW(2, 0))")
    first, second = _two_reads(source_conn, source_config, tmp_path, "v",
                               "INSERT INTO t VALUES (3, ROW(10, 0)), (4, ROW(1, 10))")  # fmt: skip
    assert ids(first, "t") == [1, 2]
    assert stream_state(first)["cursor"] == "(2,0)"
    assert ids(second, "t") == [3]  # (10,0) > (2,0) as numbers; (1,10) is below


def test_a_domain_cursor_compares_as_its_base_type(source_conn, source_config, tmp_path) -> None:
    """A domain over bit(3): the saved value is compared as bit varying (a literal typed as
    plain `bit` would be cut to one bit), and its CHECK does not judge the saved value."""
    source_conn.execute("CREATE DOMAIN flags AS bit(3) CHECK (VALUE <> B'111')")
    source_conn.execute("CREATE TABLE t (id int PRIMARY KEY, f flags)")
    source_conn.execute("INSERT INTO t VALUES (1, B'001'), (2, B'100')")
    first, second = _two_reads(source_conn, source_config, tmp_path, "f",
                               "INSERT INTO t VALUES (3, B'101'), (4, B'011')")  # fmt: skip
    assert stream_state(first)["cursor"] == "100"
    assert ids(second, "t") == [3]


def test_an_unpopulated_materialized_view_is_a_config_error(
    source_conn, source_config, tmp_path
) -> None:
    """A materialized view made WITH NO DATA cannot be read until refreshed: a config_error
    that says how, not a system error."""
    source_conn.execute("CREATE MATERIALIZED VIEW m AS SELECT 1 AS id WITH NO DATA")
    run = read(tmp_path, source_config, [stream_entry("m", ["id"], sync_mode="full_refresh")])
    assert run.returncode != 0
    (error,) = run.errors()
    assert error["failure_type"] == "config_error", error
    assert "REFRESH MATERIALIZED VIEW public.m" in error["message"], error
