"""source-postgres driven by PyAirbyte (`ab.get_source(..., local_executable=...)`), as users do.

check, discover, reads into PyAirbyte's DuckDB cache with exact rows and values, incremental
reads with PyAirbyte's own state handling, get_records, and a bad password's error.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import psycopg
import pytest
from pyairbyte_helpers import (
    PyAirbyteDriver,
    events_table,
    failure,
    id_names,
    keyless_table,
    local_connector,
    ok,
    tutorial_table,
)

DATA = Path(__file__).resolve().parent / "data"
INTERNAL = ("_airbyte_raw_id", "_airbyte_extracted_at", "_airbyte_meta")


@pytest.fixture
def tutorial(source_conn: psycopg.Connection) -> None:
    tutorial_table(source_conn)


@pytest.fixture
def events(source_conn: psycopg.Connection) -> None:
    events_table(source_conn)


@pytest.fixture
def varied(source_conn: psycopg.Connection) -> None:
    source_conn.execute((DATA / "varied_types.sql").read_text(encoding="utf-8"))


def user_columns(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{k: v for k, v in row.items() if k not in INTERNAL} for row in rows]


def test_check_succeeds(pyairbyte: PyAirbyteDriver, source: dict, tutorial: None) -> None:
    """source.check() passes for a reachable database."""
    ok(pyairbyte.call("check", source=source))


def test_config_validates_against_spec(pyairbyte: PyAirbyteDriver, source: dict) -> None:
    """PyAirbyte validates the tutorial-style config against our spec without complaint."""
    result = ok(pyairbyte.call("spec", source=source))
    assert {"host", "database", "username"} <= set(result["spec"]["required"])


def test_discover_stream_names(
    pyairbyte: PyAirbyteDriver, source: dict, tutorial: None, events: None
) -> None:
    """get_available_streams() lists exactly the tables of the configured schema."""
    result = ok(pyairbyte.call("discover", source=source))
    assert sorted(result["streams"]) == ["events", "full_refresh_demo"]


def test_discover_json_schema(pyairbyte: PyAirbyteDriver, source: dict, tutorial: None) -> None:
    """get_stream_json_schema() gives each column its JSON type (id integer, name string)."""
    schema = ok(pyairbyte.call("discover", source=source))["schemas"]["full_refresh_demo"]
    assert schema["properties"] == {
        "id": {"type": "integer"},
        "name": {"type": ["null", "string"]},
    }


def test_discover_offers_updated_at_as_cursor(
    pyairbyte: PyAirbyteDriver, source: dict, events: None
) -> None:
    """PyAirbyte's configured catalog picks discover's default cursor (updated_at) and the PK."""
    result = ok(pyairbyte.call("discover", source=source))
    (stream,) = result["configured"]["streams"]
    assert (stream["sync_mode"], stream["cursor_field"], stream["primary_key"]) == (
        "incremental",
        ["updated_at"],
        [["id"]],
    )


def test_full_read_row_count(
    pyairbyte: PyAirbyteDriver, source: dict, varied: None, cache_dir: str
) -> None:
    """A full-refresh read puts exactly the table's rows into the DuckDB cache."""
    result = ok(pyairbyte.call("read", source=source, cache_dir=cache_dir, force_full_refresh=True))
    assert (result["processed_records"], len(result["rows"]["varied_types"])) == (3, 3)


def test_full_read_values(
    pyairbyte: PyAirbyteDriver, source: dict, varied: None, cache_dir: str
) -> None:
    """Every value of every common type arrives in the DuckDB cache as the table holds it."""
    expected = json.loads((DATA / "varied_types.expected.json").read_text(encoding="utf-8"))
    result = ok(pyairbyte.call("read", source=source, cache_dir=cache_dir, force_full_refresh=True))
    got = user_columns(result["rows"]["varied_types"])
    numbers = set(expected["number_columns"])
    for got_row, want_row in zip(got, expected["rows"], strict=True):
        for column, want in want_row.items():
            value = got_row[column]
            if column in numbers and want is not None and value is not None:
                assert math.isclose(float(value), want, rel_tol=1e-12), (column, value, want)
            else:
                assert value == want, (got_row["id"], column, value, want)


def test_incremental_read_uses_updated_at(
    pyairbyte: PyAirbyteDriver, source: dict, events: None, cache_dir: str
) -> None:
    """A default (incremental) read of a table with updated_at reads all rows and keeps a cursor
    state at the greatest updated_at, in the form the records carry it."""
    result = ok(pyairbyte.call("read", source=source, cache_dir=cache_dir))
    state = result["state"]["events"]["stream"]["stream_state"]
    assert (result["processed_records"], state["cursor_field"], state["cursor"]) == (
        3,
        ["updated_at"],
        "2024-01-03T00:00:00.000000",
    )


def test_incremental_second_read_gets_only_new_rows(
    pyairbyte: PyAirbyteDriver,
    source: dict,
    events: None,
    source_conn: psycopg.Connection,
    cache_dir: str,
) -> None:
    """PyAirbyte passes the state it kept back (--state): the second read emits only new rows."""
    ok(pyairbyte.call("read", source=source, cache_dir=cache_dir))
    source_conn.execute(
        "INSERT INTO events VALUES (4, 'd', '2024-01-04'), (5, 'e', '2024-01-05 12:00')"
    )
    second = ok(pyairbyte.call("read", source=source, cache_dir=cache_dir))
    ids = [row["id"] for row in second["rows"]["events"]]
    assert (second["processed_records"], ids) == (2, [1, 2, 3, 4, 5])


def test_incremental_update_merged_into_cache(
    pyairbyte: PyAirbyteDriver,
    source: dict,
    events: None,
    source_conn: psycopg.Connection,
    cache_dir: str,
) -> None:
    """An updated row is read again and merged into the cache by primary key (no duplicate)."""
    ok(pyairbyte.call("read", source=source, cache_dir=cache_dir))
    source_conn.execute("UPDATE events SET name = 'a2', updated_at = '2024-02-01' WHERE id = 1")
    second = ok(pyairbyte.call("read", source=source, cache_dir=cache_dir))
    names = id_names(second, "events")
    assert (second["processed_records"], names) == (1, [(1, "a2"), (2, "b"), (3, "c")])


def test_incremental_with_cursor_override(
    pyairbyte: PyAirbyteDriver,
    source: dict,
    tutorial: None,
    source_conn: psycopg.Connection,
    cache_dir: str,
) -> None:
    """set_cursor_keys(full_refresh_demo="id") makes the tutorial table incremental by id."""
    request = {"source": source, "cache_dir": cache_dir, "cursor_keys": {"full_refresh_demo": "id"}}
    ok(pyairbyte.call("read", **request))
    source_conn.execute("INSERT INTO full_refresh_demo VALUES (3, 'Jane Y')")
    second = ok(pyairbyte.call("read", **request))
    rows = id_names(second, "full_refresh_demo")
    assert (second["processed_records"], rows) == (
        1,
        [(1, "Mary X"), (2, "John D"), (3, "Jane Y")],
    )


def test_full_refresh_read_of_tutorial_table(
    pyairbyte: PyAirbyteDriver, source: dict, tutorial: None, cache_dir: str
) -> None:
    """read(force_full_refresh=True) of the tutorial table caches its two rows."""
    result = ok(pyairbyte.call("read", source=source, cache_dir=cache_dir, force_full_refresh=True))
    rows = id_names(result, "full_refresh_demo")
    assert rows == [(1, "Mary X"), (2, "John D")]


def test_default_read_of_tutorial_table(
    pyairbyte: PyAirbyteDriver, source: dict, tutorial: None
) -> None:
    """The README's first PyAirbyte call, source.read() into the default cache, reads the
    tutorial table (no updated-at column)."""
    result = ok(pyairbyte.call("read", source=source))
    rows = id_names(result, "full_refresh_demo")
    assert rows == [(1, "Mary X"), (2, "John D")]


def test_default_incremental_read_of_tutorial_table(
    pyairbyte: PyAirbyteDriver,
    source: dict,
    tutorial: None,
    source_conn: psycopg.Connection,
    cache_dir: str,
) -> None:
    """PyAirbyte configures every stream incremental, with discover's default cursor ([] here):
    the tutorial table (no cursor column) still reads, and a second read gets only the new row."""
    ok(pyairbyte.call("read", source=source, cache_dir=cache_dir))
    source_conn.execute("INSERT INTO full_refresh_demo VALUES (3, 'Jane Y')")
    second = ok(pyairbyte.call("read", source=source, cache_dir=cache_dir))
    rows = id_names(second, "full_refresh_demo")
    assert (second["processed_records"], rows) == (
        1,
        [(1, "Mary X"), (2, "John D"), (3, "Jane Y")],
    )


def test_default_incremental_read_of_keyless_table_keeps_rows(
    pyairbyte: PyAirbyteDriver,
    source: dict,
    source_conn: psycopg.Connection,
    cache_dir: str,
) -> None:
    """A table with neither primary key nor cursor column, read twice by source.read(): the
    cache holds every row after the second read, not only the new one."""
    keyless_table(source_conn)
    ok(pyairbyte.call("read", source=source, cache_dir=cache_dir))
    source_conn.execute("INSERT INTO notes VALUES (3, 'three')")
    second = ok(pyairbyte.call("read", source=source, cache_dir=cache_dir))
    rows = sorted((row["a"], row["b"]) for row in second["rows"]["notes"])
    assert rows == [(1, "one"), (2, "two"), (3, "three")]


def test_view_read_twice_keeps_all_rows(
    pyairbyte: PyAirbyteDriver,
    source: dict,
    tutorial: None,
    source_conn: psycopg.Connection,
    cache_dir: str,
) -> None:
    """A view (no xmin, no key, no cursor) is read whole each time, so PyAirbyte's replace of
    its cache table keeps every row."""
    source_conn.execute("CREATE VIEW demo_view AS SELECT id, name FROM full_refresh_demo")
    request = {"source": source, "cache_dir": cache_dir, "streams": ["demo_view"]}
    ok(pyairbyte.call("read", **request))
    source_conn.execute("INSERT INTO full_refresh_demo VALUES (3, 'Jane Y')")
    second = ok(pyairbyte.call("read", **request))
    rows = id_names(second, "demo_view")
    assert rows == [(1, "Mary X"), (2, "John D"), (3, "Jane Y")]


def test_get_records_of_tutorial_table(
    pyairbyte: PyAirbyteDriver, source: dict, tutorial: None
) -> None:
    """source.get_records("full_refresh_demo") yields the tutorial's two records."""
    result = ok(pyairbyte.call("get_records", source=source, stream="full_refresh_demo"))
    rows = [(r["id"], r["name"]) for r in result["records"]]
    assert rows == [(1, "Mary X"), (2, "John D")]


def test_get_records_with_cursor(pyairbyte: PyAirbyteDriver, source: dict, events: None) -> None:
    """source.get_records("events") yields every record of a table with an updated_at cursor."""
    result = ok(pyairbyte.call("get_records", source=source, stream="events"))
    assert [(r["id"], r["name"]) for r in result["records"]] == [(1, "a"), (2, "b"), (3, "c")]


def test_check_wrong_password_fails_clearly(
    pyairbyte: PyAirbyteDriver, source_config: dict, tutorial: None
) -> None:
    """check() with a wrong password raises PyAirbyte's check error naming the cause."""
    secret = "Wr0ng-Pa55-" + "x7q"
    source = local_connector("source-postgres", {**source_config, "password": secret})
    result = pyairbyte.call("check", source=source)
    assert not result["ok"]
    assert result["error_type"] == "AirbyteConnectorCheckFailedError", failure(result)
    reason = result["error"].lower()
    assert "authentication failed" in reason and "password" in reason, failure(result)


def test_check_wrong_password_hides_secret(
    pyairbyte: PyAirbyteDriver, source_config: dict, tutorial: None
) -> None:
    """Neither the error, PyAirbyte's output nor any log file it wrote shows the password."""
    secret = "Wr0ng-Pa55-" + "k3z"
    source = local_connector("source-postgres", {**source_config, "password": secret})
    result = pyairbyte.call("check", source=source)
    logs = "".join(
        path.read_text(encoding="utf-8", errors="replace")
        for path in pyairbyte.logs.rglob("*")
        if path.is_file()
    )
    shown = result["error"] + result["output"] + result["traceback"] + logs
    assert not result["ok"] and secret not in shown


def test_official_style_config_reads(
    pyairbyte: PyAirbyteDriver,
    source_config: dict,
    tutorial: None,
    cache_dir: str,
) -> None:
    """A config shaped as for Airbyte's own source-postgres (ssl_mode, tunnel_method,
    replication_method objects) validates in PyAirbyte and reads the tutorial table."""
    config = {
        **source_config,
        "ssl_mode": {"mode": "prefer"},
        "tunnel_method": {"tunnel_method": "NO_TUNNEL"},
        "replication_method": {"method": "Standard"},
    }
    source = local_connector("source-postgres", config)
    ok(pyairbyte.call("spec", source=source))
    result = ok(pyairbyte.call("read", source=source, cache_dir=cache_dir))
    assert [row["id"] for row in result["rows"]["full_refresh_demo"]] == [1, 2]


def test_xmin_replication_second_read_gets_only_changes(
    pyairbyte: PyAirbyteDriver,
    source_config: dict,
    tutorial: None,
    source_conn: psycopg.Connection,
    cache_dir: str,
) -> None:
    """Under {"method": "Xmin"} PyAirbyte's second read returns the inserted and the updated
    row only, and the cache merges them by primary key."""
    config = {**source_config, "replication_method": {"method": "Xmin"}}
    request = {"source": local_connector("source-postgres", config), "cache_dir": cache_dir}
    ok(pyairbyte.call("read", **request))
    source_conn.execute("INSERT INTO full_refresh_demo VALUES (3, 'Jane Y')")
    source_conn.execute("UPDATE full_refresh_demo SET name = 'Mary Z' WHERE id = 1")
    second = ok(pyairbyte.call("read", **request))
    rows = id_names(second, "full_refresh_demo")
    assert (second["processed_records"], rows) == (
        2,
        [(1, "Mary Z"), (2, "John D"), (3, "Jane Y")],
    )


def test_xmin_replication_keeps_every_row_of_a_keyless_table(
    pyairbyte: PyAirbyteDriver,
    source_config: dict,
    source_conn: psycopg.Connection,
    cache_dir: str,
) -> None:
    """Under {"method": "Xmin"}, a table with neither primary key nor cursor read twice: PyAirbyte
    replaces its cache table on each read, so the second read sends every row (it sent the
    new one only, and the cache was left with just that row)."""
    keyless_table(source_conn)
    config = {**source_config, "replication_method": {"method": "Xmin"}}
    request = {"source": local_connector("source-postgres", config), "cache_dir": cache_dir,
               "streams": ["notes"]}  # fmt: skip
    ok(pyairbyte.call("read", **request))
    source_conn.execute("INSERT INTO notes VALUES (3, 'three')")
    second = ok(pyairbyte.call("read", **request))
    rows = sorted((row["a"], row["b"]) for row in second["rows"]["notes"])
    assert rows == [(1, "one"), (2, "two"), (3, "three")]


def test_many_rows_read_exactly_once(
    pyairbyte: PyAirbyteDriver,
    source: dict,
    source_conn: psycopg.Connection,
    cache_dir: str,
) -> None:
    """50,000 rows (several chunks and STATE checkpoints) land in the cache exactly once."""
    source_conn.execute(
        "CREATE TABLE many AS SELECT g AS id, md5(g::text) AS h, "
        "timestamp '2024-01-01' + g * interval '1 second' AS updated_at "
        "FROM generate_series(1, 50000) g"
    )
    source_conn.execute("ALTER TABLE many ADD PRIMARY KEY (id)")
    result = ok(pyairbyte.call("read", source=source, cache_dir=cache_dir))
    ids = [row["id"] for row in result["rows"]["many"]]
    assert (result["processed_records"], ids) == (50000, list(range(1, 50001)))
