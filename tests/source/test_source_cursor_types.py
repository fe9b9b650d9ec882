"""Cursor columns whose values PostgreSQL compares only when told their type: types whose
comparison operators live in a schema off the search_path (extensions installed in their own
schema), reg* types (compared as oid), composites, domains; and relations a read cannot use
yet (an unpopulated materialized view)."""

from __future__ import annotations

import pytest
from db_roles import throwaway_role
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


# (setup SQL, the cursor column, rows at the first read, rows inserted before the second, the
# first read's ids and saved cursor, the second read's ids)
ORDERS = {
    # citext in schema ext, off the search_path: case-insensitive, as the table orders it. As
    # text, 'HZ' > 'Hi' is false and 'a2' > 'Hi' true: the second read took a2 and lost HZ.
    "citext_off_the_search_path": (
        "CREATE SCHEMA ext; CREATE EXTENSION citext SCHEMA ext; "
        "CREATE TABLE t (id int PRIMARY KEY, c ext.citext)",
        "c", "(1, 'Hi')", "(2, 'HZ'), (3, 'a2')", [1], "Hi", [2],
    ),
    # ltree in schema ext has no operator the search_path finds: it was refused as a type that
    # "cannot be ordered". a.b.z and a.a sort below a.c, b above.
    "ltree_off_the_search_path": (
        "CREATE SCHEMA ext; CREATE EXTENSION ltree SCHEMA ext; "
        "CREATE TABLE t (id int PRIMARY KEY, c ext.ltree)",
        "c", "(1, 'a.b'), (2, 'a.c')", "(3, 'a.b.z'), (4, 'a.a'), (5, 'b')", [1, 2], "a.c", [5],
    ),
    # A composite compares field by field: (10,0) > (2,0) as numbers; (1,10) is below.
    "composite": (
        "CREATE TYPE version AS (major int, minor int); "
        "CREATE TABLE t (id int PRIMARY KEY, c version)",
        "c", "(1, ROW(1, 9)), (2, ROW(2, 0))", "(3, ROW(10, 0)), (4, ROW(1, 10))", [1, 2],
        "(2,0)", [3],
    ),
    # A domain over bit(3) compares as bit varying (a literal typed as plain `bit` would be cut
    # to one bit), and its CHECK does not judge the saved value.
    "domain_over_bit": (
        "CREATE DOMAIN flags AS bit(3) CHECK (VALUE <> B'111'); "
        "CREATE TABLE t (id int PRIMARY KEY, c flags)",
        "c", "(1, B'001'), (2, B'100')", "(3, B'101'), (4, B'011')", [1, 2], "100", [3],
    ),
    # char(3): a literal typed as plain `character` is char(1) ('abd' read as 'a'): the read
    # took the same chunk again for ever.
    "char_n": (
        "CREATE TABLE t (id int PRIMARY KEY, c char(3))",
        "c", "(1, 'abc'), (2, 'abd')", "(3, 'abe'), (4, 'abb')", [1, 2], "abd", [3],
    ),
}  # fmt: skip


@pytest.mark.parametrize("case", list(ORDERS))
def test_a_cursor_compares_as_its_table_orders(
    source_conn, source_config, tmp_path, case: str
) -> None:
    setup, column, rows, later, first_ids, cursor, second_ids = ORDERS[case]
    source_conn.execute(setup)
    source_conn.execute(f"INSERT INTO t VALUES {rows}")
    first, second = _two_reads(source_conn, source_config, tmp_path, column,
                               f"INSERT INTO t VALUES {later}")  # fmt: skip
    assert ids(first, "t") == first_ids
    assert stream_state(first)["cursor"] == cursor
    assert ids(second, "t") == second_ids
    assert not warnings(second)


def test_an_extension_cursor_keeps_other_streams_records_as_they_were(
    source_conn, source_config, tmp_path
) -> None:
    """The citext cursor's comparisons name their schema; the session's search_path stays as
    it was, so a regclass value of another stream read after it still names its schema."""
    source_conn.execute("CREATE SCHEMA ext; CREATE EXTENSION citext SCHEMA ext")
    source_conn.execute("CREATE TABLE ext.other (id int)")
    source_conn.execute("CREATE TABLE t (id int PRIMARY KEY, c ext.citext)")
    source_conn.execute("INSERT INTO t VALUES (1, 'Hi')")
    source_conn.execute("CREATE TABLE refs (id int PRIMARY KEY, r regclass)")
    source_conn.execute("INSERT INTO refs VALUES (1, 'ext.other')")
    streams = [standard(stream_entry("t", ["id", "c"]), "c"),
               stream_entry("refs", ["id", "r"], sync_mode="full_refresh")]  # fmt: skip
    run = read(tmp_path, source_config, streams)
    assert run.returncode == 0, run.stdout[-2000:]
    assert [r["r"] for r in run.data("refs")] == ["ext.other"]


def test_an_extension_cursor_without_usage_on_its_schema_says_which_grant(
    source_conn, source_config, tmp_path
) -> None:
    """A role that may SELECT the table but not use the extension's schema cannot compare its
    cursor values: a config_error naming the GRANT USAGE it needs (was "GRANT SELECT", which
    the role had)."""
    source_conn.execute("CREATE SCHEMA ext; CREATE EXTENSION ltree SCHEMA ext")
    source_conn.execute("CREATE TABLE t (id int PRIMARY KEY, p ext.ltree)")
    source_conn.execute("INSERT INTO t VALUES (1, 'a.b')")
    with throwaway_role(source_conn, "low", "low-Passw0rd-1"):
        source_conn.execute("GRANT SELECT ON t TO low")
        config = {**source_config, "username": "low", "password": "low-Passw0rd-1"}
        run = read(tmp_path, config, [standard(stream_entry("t", ["id", "p"]), "p")])
        assert run.returncode != 0
        (error,) = run.errors()
        assert error["failure_type"] == "config_error", error
        assert "GRANT USAGE ON SCHEMA ext TO low" in error["message"], error


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


def test_a_regproc_cursor_over_overloaded_functions_reads(
    source_conn, source_config, tmp_path
) -> None:
    """Two overloads of f print as the same name, which does not cast back to one function:
    a reg* cursor is saved and compared as its oid."""
    source_conn.execute("CREATE FUNCTION f(int) RETURNS int LANGUAGE sql AS 'SELECT 1'")
    source_conn.execute("CREATE FUNCTION f(text) RETURNS int LANGUAGE sql AS 'SELECT 2'")
    source_conn.execute("CREATE TABLE t (id int PRIMARY KEY, r regproc)")
    source_conn.execute("INSERT INTO t VALUES (1, 'f(int)'::regprocedure), "
                        "(2, 'f(text)'::regprocedure)")  # fmt: skip
    first, second = _two_reads(source_conn, source_config, tmp_path, "r",
                               "INSERT INTO t VALUES (3, 'pg_catalog.now'::regproc)")  # fmt: skip
    assert ids(first, "t") == [1, 2]
    top = source_conn.execute("SELECT max(r::oid)::text FROM t WHERE id < 3").fetchone()[0]
    assert stream_state(first)["cursor"] == top
    assert ids(second, "t") == []  # now() has a lower oid than functions made today


def test_a_saved_reg_cursor_name_is_read_again_with_a_warning(
    source_conn, source_config, tmp_path
) -> None:
    """A regclass cursor state that saved a name (or one gone since) is no oid: the stream is
    read again whole, with a WARN, not failed."""
    source_conn.execute("CREATE TABLE t (id int PRIMARY KEY, r regclass)")
    source_conn.execute("INSERT INTO t VALUES (1, 't')")
    entry = standard(stream_entry("t", ["id", "r"]), "r")
    first = read(tmp_path / "1", source_config, [entry])
    state = last_state(first)
    state[0]["stream"]["stream_state"]["cursor"] = "gone_table"
    second = read(tmp_path / "2", source_config, [entry], state=state)
    assert second.returncode == 0, second.stdout[-2000:]
    assert ids(second, "t") == [1]
    assert any("'gone_table' is not a valid value" in w for w in warnings(second))


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


@pytest.mark.parametrize(
    ("before", "after", "rows", "later"),
    [
        ("int", "text", "(1, 999)", "(2, '1000')"),
        ("timestamp", "text", "(1, '2030-01-01 00:00')", "(2, '2030-01-01 12:00:00')"),
    ],
)
def test_a_cursor_retyped_to_text_reads_the_stream_again(
    source_conn, source_config, tmp_path, before: str, after: str, rows: str, later: str
) -> None:
    """The cursor column ALTERed from a number or timestamp to text: compared as text, '1000'
    sorts below the saved '999' (and '2030-01-01 12:00:00' below '2030-01-01T00:00:00'), so
    the new row was skipped in silence. The state saved the type it compared as: the stream
    is read again whole, with a WARN."""
    source_conn.execute(f"CREATE TABLE t (id int PRIMARY KEY, c {before})")
    source_conn.execute(f"INSERT INTO t VALUES {rows}")
    first, second = _two_reads(
        source_conn, source_config, tmp_path, "c",
        f"ALTER TABLE t ALTER COLUMN c TYPE {after}; INSERT INTO t VALUES {later}",
    )  # fmt: skip
    assert ids(first, "t") == [1]
    assert ids(second, "t") == [1, 2]
    assert any("(its type was changed); re-reading the whole stream" in w
               for w in warnings(second)), warnings(second)  # fmt: skip


def test_a_cursor_widened_to_another_number_type_resumes(
    source_conn, source_config, tmp_path
) -> None:
    """integer to numeric orders the same: the read resumes after the saved value."""
    source_conn.execute("CREATE TABLE t (id int PRIMARY KEY, c int)")
    source_conn.execute("INSERT INTO t VALUES (1, 5)")
    _, second = _two_reads(
        source_conn, source_config, tmp_path, "c",
        "ALTER TABLE t ALTER COLUMN c TYPE numeric; INSERT INTO t VALUES (2, 5.5)",
    )  # fmt: skip
    assert ids(second, "t") == [2]
    assert not warnings(second)


@pytest.mark.parametrize(
    ("setup", "change"),
    [
        ("CREATE TABLE t (id int PRIMARY KEY, c varchar(10))", "ALTER TABLE t ALTER c TYPE text"),
        # the enum's name is saved qualified (s2 is off the search_path), then read unqualified
        ("CREATE SCHEMA s2; CREATE TYPE s2.mood AS ENUM ('sad', 'ok', 'happy'); "
         "CREATE TABLE t (id int PRIMARY KEY, c s2.mood)",
         "ALTER DATABASE {db} SET search_path = public, s2"),
    ],
    ids=["varchar_to_text", "enum_named_otherwise"],
)  # fmt: skip
def test_a_cursor_type_that_orders_alike_resumes(
    source_conn, source_config, tmp_path, setup: str, change: str
) -> None:
    """varchar ALTERed to text, or an enum whose name prints otherwise once the search_path
    changes: the same order, so the read resumes (it read the whole stream again, which an
    append destination kept twice)."""
    source_conn.execute(setup)
    source_conn.execute("INSERT INTO t VALUES (1, 'sad'), (2, 'ok')")
    database = source_config["database"]
    _, second = _two_reads(source_conn, source_config, tmp_path, "c",
                           change.format(db=f'"{database}"'))  # fmt: skip
    assert ids(second, "t") == []
    assert not warnings(second)


def test_a_saved_cursor_past_64_bits_as_a_json_number_resumes_exactly(
    source_conn, source_config, tmp_path
) -> None:
    """A state (hand-made, or another tool's) whose cursor is a JSON number past 64 bits:
    orjson read it rounded to 1.2345678901234568e+29 without an error, and the read resumed
    past every row up to that rounded value — none of the four rows after the saved one."""
    base = 123456789012345678901234567890
    source_conn.execute("CREATE TABLE t (id int PRIMARY KEY, c numeric)")
    source_conn.execute("INSERT INTO t SELECT i, %s::numeric + i FROM generate_series(0, 5) i",
                        (str(base),))  # fmt: skip
    entry = standard(stream_entry("t", ["id", "c"]), "c")
    saved = [{"type": "STREAM", "stream": {
        "stream_descriptor": {"name": "t", "namespace": "public"},
        "stream_state": {"state_type": "cursor_based", "version": 2, "cursor_field": ["c"],
                         "cursor": base + 1, "cursor_record_count": 1}}}]  # fmt: skip
    run = read(tmp_path, source_config, [entry], state=saved)
    assert run.returncode == 0, run.stdout[-2000:]
    assert ids(run, "t") == [2, 3, 4, 5]
    assert stream_state(run)["cursor"] == str(base + 5)
