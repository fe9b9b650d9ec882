"""destination-postgres driven by PyAirbyte: our source → PyAirbyte → our destination.

`ab.get_destination("destination-postgres", local_executable=...)` then `destination.write()`
from a source (no cache) or from a read result (records replayed from the DuckDB cache); the
destination's tables (the tutorial's `_airbyte_raw_<stream>` and typed `<stream>`) are checked
by SQL.
"""

from __future__ import annotations

from typing import Any

import psycopg
import pytest
from psycopg import sql
from pyairbyte_helpers import (
    PyAirbyteDriver,
    events_table,
    failure,
    keyless_table,
    local_connector,
    ok,
    tutorial_table,
)


@pytest.fixture
def destination(dest_config: dict) -> dict[str, Any]:
    """Our destination as PyAirbyte gets it: local_executable=.venv/bin/destination-postgres."""
    return local_connector("destination-postgres", dest_config)


@pytest.fixture
def tutorial_written(
    pyairbyte: PyAirbyteDriver, source: dict, destination: dict, source_conn: psycopg.Connection
) -> dict[str, Any]:
    """The tutorial table written by PyAirbyte from our source into our destination (the
    driver's result, checked ok)."""
    tutorial_table(source_conn)
    return ok(pyairbyte.call("write", source=source, destination=destination))


def rows(conn: psycopg.Connection, table: str, columns: str) -> list[tuple[Any, ...]]:
    query = sql.SQL("SELECT {} FROM public.{} ORDER BY 1").format(
        sql.SQL(columns), sql.Identifier(table)
    )
    return conn.execute(query).fetchall()


def tables(conn: psycopg.Connection) -> list[str]:
    found = conn.execute(
        "SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY 1"
    ).fetchall()
    return [name for (name,) in found]


def test_destination_check_succeeds(pyairbyte: PyAirbyteDriver, destination: dict) -> None:
    """destination.check() passes for a reachable database."""
    ok(pyairbyte.call("check_destination", destination=destination))


def test_destination_check_wrong_password(pyairbyte: PyAirbyteDriver, dest_config: dict) -> None:
    """destination.check() with a wrong password fails naming the cause, never the password."""
    secret = "Wr0ng-Pa55-" + "d9w"
    destination = local_connector("destination-postgres", {**dest_config, "password": secret})
    result = pyairbyte.call("check_destination", destination=destination)
    reason = result.get("error", "").lower()
    assert result["error_type"] == "AirbyteConnectorCheckFailedError", failure(result)
    assert "authentication failed" in reason and secret.lower() not in reason, failure(result)


def test_write_tutorial_tables(tutorial_written: dict, dest_conn: psycopg.Connection) -> None:
    """Writing the tutorial table creates exactly its raw and typed tables in the destination."""
    assert tables(dest_conn) == ["_airbyte_raw_full_refresh_demo", "full_refresh_demo"]


def test_write_tutorial_raw_rows(tutorial_written: dict, dest_conn: psycopg.Connection) -> None:
    """The raw table holds one JSON document per source row, with an id and emitted_at."""
    raw = rows(
        dest_conn,
        "_airbyte_raw_full_refresh_demo",
        "_airbyte_data, _airbyte_ab_id IS NOT NULL, "
        "_airbyte_emitted_at > now() - interval '1 hour'",
    )
    assert raw == [
        ({"id": 1, "name": "Mary X"}, True, True),
        ({"id": 2, "name": "John D"}, True, True),
    ]


def test_write_tutorial_typed_rows(tutorial_written: dict, dest_conn: psycopg.Connection) -> None:
    """The typed table holds the source rows in typed columns."""
    assert tutorial_written["processed_records"] == 2
    assert rows(dest_conn, "full_refresh_demo", "id, name") == [(1, "Mary X"), (2, "John D")]


def test_write_from_read_result(
    pyairbyte: PyAirbyteDriver,
    source: dict,
    destination: dict,
    source_conn: psycopg.Connection,
    dest_conn: psycopg.Connection,
    cache_dir: str,
) -> None:
    """destination.write(source.read()) replays the cached records into the typed table."""
    events_table(source_conn)
    ok(
        pyairbyte.call(
            "write", source=source, destination=destination, via="read_result", cache_dir=cache_dir
        )
    )
    assert rows(dest_conn, "events", "id, name, updated_at::text") == [
        (1, "a", "2024-01-01 00:00:00"),
        (2, "b", "2024-01-02 00:00:00"),
        (3, "c", "2024-01-03 00:00:00"),
    ]


def test_incremental_write_appends_only_new_rows(
    pyairbyte: PyAirbyteDriver,
    source: dict,
    destination: dict,
    source_conn: psycopg.Connection,
    dest_conn: psycopg.Connection,
    cache_dir: str,
) -> None:
    """PyAirbyte keeps the state our destination echoes: a second write sends only new rows,
    which the destination merges (append_dedup by the primary key)."""
    events_table(source_conn)
    request = {"source": source, "destination": destination, "cache_dir": cache_dir}
    ok(pyairbyte.call("write", **request))
    source_conn.execute("INSERT INTO events VALUES (4, 'd', '2024-01-04')")
    source_conn.execute("UPDATE events SET name = 'a2', updated_at = '2024-01-05' WHERE id = 1")
    second = ok(pyairbyte.call("write", **request))
    assert second["processed_records"] == 2
    assert rows(dest_conn, "events", "id, name") == [(1, "a2"), (2, "b"), (3, "c"), (4, "d")]


def test_incremental_write_keeps_destination_state(
    pyairbyte: PyAirbyteDriver,
    source: dict,
    destination: dict,
    source_conn: psycopg.Connection,
    cache_dir: str,
) -> None:
    """The state PyAirbyte stores for the destination is the source's cursor, echoed by it."""
    events_table(source_conn)
    result = ok(
        pyairbyte.call("write", source=source, destination=destination, cache_dir=cache_dir)
    )
    state = result["destination_state"]["events"]["stream"]["stream_state"]
    assert (state["cursor_field"], state["cursor"]) == (
        ["updated_at"],
        "2024-01-03T00:00:00.000000",
    )


def test_incremental_write_of_keyless_table_keeps_rows(
    pyairbyte: PyAirbyteDriver,
    source: dict,
    destination: dict,
    source_conn: psycopg.Connection,
    dest_conn: psycopg.Connection,
    cache_dir: str,
) -> None:
    """A table with neither primary key nor cursor column, written twice with PyAirbyte keeping
    the state: the destination's typed table holds every row, not only the new one."""
    keyless_table(source_conn)
    request = {"source": source, "destination": destination, "cache_dir": cache_dir}
    ok(pyairbyte.call("write", **request))
    source_conn.execute("INSERT INTO notes VALUES (3, 'three')")
    ok(pyairbyte.call("write", **request))
    assert rows(dest_conn, "notes", "a, b") == [(1, "one"), (2, "two"), (3, "three")]


def test_write_raw_only_with_disable_type_dedupe(
    pyairbyte: PyAirbyteDriver,
    source: dict,
    dest_config: dict,
    source_conn: psycopg.Connection,
    dest_conn: psycopg.Connection,
) -> None:
    """An Airbyte-shaped destination config with disable_type_dedupe: true (and tunnel_method)
    gets only the raw table from a PyAirbyte write."""
    tutorial_table(source_conn)
    config = {
        **dest_config,
        "disable_type_dedupe": True,
        "tunnel_method": {"tunnel_method": "NO_TUNNEL"},
    }
    destination = local_connector("destination-postgres", config)
    ok(pyairbyte.call("write", source=source, destination=destination))
    assert tables(dest_conn) == ["_airbyte_raw_full_refresh_demo"]


def test_write_from_read_result_emitted_at_is_recent(
    pyairbyte: PyAirbyteDriver,
    source: dict,
    destination: dict,
    source_conn: psycopg.Connection,
    dest_conn: psycopg.Connection,
    cache_dir: str,
) -> None:
    """After destination.write(source.read()), _airbyte_emitted_at is the time of the read."""
    tutorial_table(source_conn)
    request = {"source": source, "destination": destination, "cache_dir": cache_dir}
    ok(pyairbyte.call("write", via="read_result", **request))
    recent = rows(
        dest_conn,
        "_airbyte_raw_full_refresh_demo",
        "_airbyte_data ->> 'id', _airbyte_emitted_at > now() - interval '1 hour'",
    )
    assert recent == [("1", True), ("2", True)]


def test_no_log_shows_the_password(
    pyairbyte: PyAirbyteDriver,
    source: dict,
    destination: dict,
    source_config: dict,
    source_conn: psycopg.Connection,
    cache_dir: str,
) -> None:
    """After a read and a write, no file PyAirbyte logged this session holds the password."""
    tutorial_table(source_conn)
    request = {"source": source, "destination": destination, "cache_dir": cache_dir}
    ok(pyairbyte.call("write", via="read_result", **request))
    leaks = [
        str(path)
        for path in pyairbyte.logs.rglob("*")
        if path.is_file()
        and source_config["password"] in path.read_text(encoding="utf-8", errors="replace")
    ]
    assert leaks == []
