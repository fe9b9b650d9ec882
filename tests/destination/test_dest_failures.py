"""overwrite when the source fails or the input stops early: previous tables are untouched."""

from __future__ import annotations

import json
import os
import signal
import time

import psycopg
import pytest
from db_roles import throwaway_role
from dest_helpers import (
    FIXTURES,
    catalog_for,
    count,
    live_write,
    record,
    state,
    status,
    table_names,
)
from psycopg import sql

STREAM = "overwrite_full_refresh_demo"
CATALOG = FIXTURES / "tutorial_catalog_overwrite.json"
SOURCE_ERROR = json.dumps({
    "type": "TRACE",
    "trace": {"type": "ERROR", "emitted_at": 1, "error": {
        "message": "Lost the connection to the source database.",
        "failure_type": "transient_error"}},
}).encode()  # fmt: skip


def _previous(run_write, dest_conn) -> list:
    assert run_write(CATALOG, FIXTURES / "tutorial_sync1_overwrite.jsonl").returncode == 0
    return _rows(dest_conn)


def _rows(dest_conn) -> list:
    return dest_conn.execute(
        f"SELECT n.id, n.name, r._airbyte_ab_id FROM {STREAM} n "
        f"JOIN _airbyte_raw_{STREAM} r USING (_airbyte_ab_id) ORDER BY 1"
    ).fetchall()


def _lines(*lines: bytes) -> bytes:
    return b"\n".join(lines) + b"\n"


def test_no_complete_keeps_previous_tables(run_write, dest_conn) -> None:
    """STARTED but EOF before COMPLETE: no swap, error names the stream, exit non-zero; the
    report counts the records that arrived (not the 0 of them swapped in)."""
    before = _previous(run_write, dest_conn)
    result = run_write(CATALOG, _lines(
        status(STREAM, "STARTED"), record(STREAM, {"id": 9, "name": "X"}),
        state(STREAM, {"n": 1}), record(STREAM, {"id": 10, "name": "Y"}),
    ))  # fmt: skip
    assert result.returncode != 0
    assert STREAM in result.errors[0]["message"]
    logs = [m["log"]["message"] for m in result.of_type("LOG")]
    assert f"Stream {STREAM}: 2 record(s) received, not swapped in" in "\n".join(logs), logs
    assert _rows(dest_conn) == before
    assert table_names(dest_conn) == [f"_airbyte_raw_{STREAM}", STREAM]


@pytest.mark.parametrize("mode", ["append", "append_dedup"])
def test_no_complete_commits_nothing_after_the_last_state(run_write, dest_conn, mode) -> None:
    """append/append_dedup: the input ends after STARTED with no COMPLETE (the source was
    killed, or crashed without a word): the records before the last STATE are committed and it
    is echoed; the ones after it are not (the next sync resumes from that STATE and sends them
    again: append would hold them twice); the error names the stream, exit non-zero."""
    catalog = catalog_for([("a", {"id": {"type": "integer"}})], mode=mode)
    if mode == "append_dedup":
        catalog["streams"][0].update(sync_mode="incremental", primary_key=[["id"]])
    result = run_write(catalog, _lines(
        status("a", "STARTED"), *(record("a", {"id": i}) for i in (1, 2, 3)),
        state("a", {"n": 3}), record("a", {"id": 4}), record("a", {"id": 5}),
    ))  # fmt: skip
    assert result.returncode == 1
    (error,) = result.errors
    assert "The input ended before the COMPLETE status of stream(s) a." in error["message"]
    assert [s["state"]["stream"]["stream_state"] for s in result.states] == [{"n": 3}]
    assert dest_conn.execute("SELECT array_agg(id ORDER BY id) FROM a").fetchone() == ([1, 2, 3],)
    assert count(dest_conn, "_airbyte_raw_a") == 3


def test_a_stopped_stream_says_what_another_streams_state_committed(run_write, dest_conn):
    """Two streams; a stops after its STATE and two more records, b's STATE then commits them
    with its own (one commit covers every stream): the write fails naming a, and says those
    records of a were committed past its last echoed STATE, not that nothing was."""
    props = {"id": {"type": "integer"}}
    catalog = catalog_for([("a", props)], mode="append")
    catalog["streams"] += catalog_for([("b", props)], mode="append")["streams"]
    result = run_write(catalog, _lines(
        status("a", "STARTED"), status("b", "STARTED"),
        *(record("a", {"id": i}) for i in (1, 2, 3)), state("a", {"n": 3}),
        record("a", {"id": 4}), record("a", {"id": 5}), record("b", {"id": 1}),
        state("b", {"n": 1}), status("b", "COMPLETE"),
    ))  # fmt: skip
    assert result.returncode == 1
    (error,) = result.errors
    assert "before the COMPLETE status of stream(s) a." in error["message"], error
    assert "Records of stream(s) a after their last echoed STATE were committed" in (
        error["message"]), error  # fmt: skip
    assert "Nothing after the last echoed STATE" not in error["message"]


@pytest.mark.parametrize("mode", ["overwrite", "append"])
def test_a_stream_the_source_skipped_is_left_as_it_was(run_write, dest_conn, mode) -> None:
    """A configured stream the source sends nothing of (no status, no record) while it sends
    the others whole, as Airbyte's source-postgres skips a table that no longer exists: its
    tables are left as they were (not emptied), a WARN names it, and the write succeeds (the
    same input fails no differently on a retry)."""
    props = {"id": {"type": "integer"}}
    catalog = catalog_for([("a", props), ("gone", props)], mode=mode)
    first = run_write(catalog, _lines(record("a", {"id": 1}), record("gone", {"id": 7})))
    assert first.returncode == 0, first.errors
    result = run_write(catalog, _lines(
        status("a", "STARTED"), record("a", {"id": 2}), state("a", {"n": 1}),
        status("a", "COMPLETE"),
    ))  # fmt: skip
    assert result.returncode == 0, result.errors
    assert [s["state"]["stream"]["stream_state"] for s in result.states] == [{"n": 1}]
    assert dest_conn.execute("SELECT array_agg(id) FROM gone").fetchone() == ([7],)
    assert count(dest_conn, "_airbyte_raw_gone") == 1
    assert count(dest_conn, "a") == (1 if mode == "overwrite" else 2)
    warns = [m["log"]["message"] for m in result.of_type("LOG") if m["log"]["level"] == "WARN"]
    (warn,) = [m for m in warns if "gone" in m]
    assert "the source sent nothing of it" in warn and "or stopped before it" in warn


def test_a_stream_not_reached_by_a_failed_source_is_kept_and_named(run_write, dest_conn):
    """The source reports an error in stream a; stream b never came: the write fails, and the
    error names b among the overwrite streams whose previous tables are kept (b is not called
    skipped: the source did not finish)."""
    props = {"id": {"type": "integer"}}
    catalog = catalog_for([("a", props), ("b", props)], mode="overwrite")
    seeded = run_write(catalog, _lines(record("a", {"id": 1}), record("b", {"id": 7})))
    assert seeded.returncode == 0
    result = run_write(catalog, _lines(
        status("a", "STARTED"), record("a", {"id": 2}), SOURCE_ERROR,
    ))  # fmt: skip
    assert result.returncode == 1
    (error,) = result.errors
    assert "the previous tables of a, b are kept unchanged" in error["message"], error
    assert not [m for m in result.of_type("LOG") if "sent nothing" in m["log"]["message"]]
    assert dest_conn.execute("SELECT array_agg(id) FROM b").fetchone() == ([7],)
    assert dest_conn.execute("SELECT array_agg(id) FROM a").fetchone() == ([1],)


def test_a_stream_reported_incomplete_is_named_so(run_write, dest_conn) -> None:
    """A source that reports a stream INCOMPLETE (without a TRACE ERROR): its records after its
    last STATE are not committed, and the error says the source reported it INCOMPLETE."""
    catalog = catalog_for([("a", {"id": {"type": "integer"}})], mode="append")
    result = run_write(catalog, _lines(
        status("a", "STARTED"), record("a", {"id": 1}), state("a", {"n": 1}),
        record("a", {"id": 2}), status("a", "INCOMPLETE"),
    ))  # fmt: skip
    assert result.returncode == 1
    assert "The source reported stream(s) a INCOMPLETE" in result.errors[0]["message"]
    assert count(dest_conn, "a") == 1


def test_a_stream_that_ends_on_a_state_without_complete_succeeds(run_write, dest_conn):
    """A source that never sends COMPLETE but ends on a STATE: nothing of its stream is left
    past that STATE, so the write succeeds as before."""
    catalog = catalog_for([("a", {"id": {"type": "integer"}})], mode="append")
    result = run_write(catalog, _lines(status("a", "STARTED"), record("a", {"id": 1}),
                                       state("a", {"n": 1})))  # fmt: skip
    assert result.returncode == 0, result.errors
    assert count(dest_conn, "a") == 1


def test_a_stream_without_statuses_still_commits_at_the_end(run_write, dest_conn) -> None:
    """A source that sends no STREAM_STATUS for a stream: a clean end of input commits all
    of its records, those after its last STATE too (nothing says it stopped early)."""
    catalog = catalog_for([("a", {"id": {"type": "integer"}})], mode="append")
    result = run_write(catalog, _lines(record("a", {"id": 1}), state("a", {"n": 1}),
                                       record("a", {"id": 2})))  # fmt: skip
    assert result.returncode == 0
    assert count(dest_conn, "a") == 2


def test_source_error_keeps_previous_tables(run_write, dest_conn) -> None:
    """A TRACE ERROR from the source (no COMPLETE) leaves the previous tables as they were."""
    before = _previous(run_write, dest_conn)
    result = run_write(CATALOG, _lines(
        record(STREAM, {"id": 9, "name": "X"}), SOURCE_ERROR,
    ))  # fmt: skip
    assert result.returncode != 0
    assert "source failed" in result.errors[0]["message"]
    assert _rows(dest_conn) == before
    assert table_names(dest_conn) == [f"_airbyte_raw_{STREAM}", STREAM]


def test_source_error_keeps_its_failure_type(run_write, dest_conn) -> None:
    """The write's closing error carries the source's failure_type (a config_error relabelled
    transient would be retried by the platform for nothing)."""
    config_error = SOURCE_ERROR.replace(b"transient_error", b"config_error")
    result = run_write(CATALOG, _lines(record(STREAM, {"id": 9, "name": "X"}), config_error))
    assert result.returncode != 0
    assert [e["failure_type"] for e in result.errors] == ["config_error"]


def test_no_statuses_clean_eof_swaps(run_write, dest_conn) -> None:
    """A source that sends no stream statuses: a clean end of input completes the stream."""
    _previous(run_write, dest_conn)
    result = run_write(CATALOG, _lines(record(STREAM, {"id": 7, "name": "Solo"})))
    assert result.returncode == 0
    assert [(i, n) for i, n, _ in _rows(dest_conn)] == [(7, "Solo")]


def test_complete_swaps_even_if_a_later_stream_fails(run_write, dest_conn) -> None:
    """COMPLETE swaps at once: input breaking afterwards does not undo that stream."""
    _previous(run_write, dest_conn)
    result = run_write(CATALOG, _lines(
        status(STREAM, "STARTED"), record(STREAM, {"id": 5, "name": "Done"}),
        status(STREAM, "COMPLETE"), b"{not json",
    ))  # fmt: skip
    assert result.returncode != 0
    assert [(i, n) for i, n, _ in _rows(dest_conn)] == [(5, "Done")]


def _committed_in_temporary(dest_conn) -> int:
    """Rows committed into the overwrite's temporary raw table: once the STATE's commit is
    done, the write only waits for input (the point a test stops it at; its STATE itself is
    held until the swap)."""
    try:
        return count(dest_conn, f"_airbyte_tmp__airbyte_raw_{STREAM}")
    except psycopg.errors.UndefinedTable:
        return 0


def _reloptions(dest_conn) -> dict[str, list[str] | None]:
    """Table (and its TOAST table) → reloptions, for the stream's tables and temporaries."""
    rows = dest_conn.execute(
        "SELECT c.relname, c.reloptions, t.reloptions FROM pg_class c "
        "LEFT JOIN pg_class t ON t.oid = c.reltoastrelid "
        "WHERE c.relkind = 'r' AND c.relname LIKE %s",
        (f"%{STREAM}",),
    ).fetchall()
    return {name: (opts, toast) for name, opts, toast in rows}


def test_overwrite_temporaries_load_without_autovacuum(tmp_path, dest_config, dest_conn) -> None:
    """While an overwrite loads, its temporary tables have autovacuum off (it would scan them
    mid-load and hold up the swap); the swapped-in tables have the server's default again."""
    with live_write(tmp_path, dest_config, CATALOG) as write:
        write.send_until(_lines(record(STREAM, {"id": 1, "name": "A"}), state(STREAM, {"n": 1})),
                         lambda: _committed_in_temporary(dest_conn) == 1)  # fmt: skip
        during = _reloptions(dest_conn)
        assert write.finish(_lines(status(STREAM, "COMPLETE"))) == 0
    off = ["autovacuum_enabled=off"]
    assert during == {
        f"_airbyte_tmp_{STREAM}": (off, off),
        f"_airbyte_tmp__airbyte_raw_{STREAM}": (off, off),
    }
    # Swapped in, the defaults back; the temporaries are gone.
    assert _reloptions(dest_conn) == {STREAM: (None, None), f"_airbyte_raw_{STREAM}": (None, None)}


def test_second_signal_does_not_cut_the_clean_up_short(
    run_write, tmp_path, dest_config, dest_conn
) -> None:
    """SIGINT then SIGTERM at once (Ctrl-C reaches the process group, then the orchestrator
    stops the connector): one clean interruption, the temporaries dropped, the previous tables
    intact — the second signal does not interrupt the clean-up."""
    before = _previous(run_write, dest_conn)
    with live_write(tmp_path, dest_config, CATALOG) as write:
        write.send_until(_lines(record(STREAM, {"id": 9, "name": "Z"}), state(STREAM, {"n": 1})),
                         lambda: _committed_in_temporary(dest_conn) == 1)  # fmt: skip
        os.kill(write.proc.pid, signal.SIGINT)
        os.kill(write.proc.pid, signal.SIGTERM)
        assert write.proc.wait(timeout=60) == 130
        assert write.proc.stdout is not None and write.proc.stderr is not None
        errors = [m for m in map(json.loads, write.proc.stdout.read().splitlines())
                  if m["type"] == "TRACE" and m["trace"]["type"] == "ERROR"]  # fmt: skip
        stderr = write.proc.stderr.read().decode()
    assert len(errors) == 1 and "interrupted" in errors[0]["trace"]["error"]["message"], errors
    assert "Traceback" not in stderr, stderr
    assert table_names(dest_conn) == sorted([STREAM, f"_airbyte_raw_{STREAM}"])
    assert _rows(dest_conn) == before


def test_sigterm_exits_143(run_write, tmp_path, dest_config, dest_conn) -> None:
    """SIGTERM (docker stop, an orchestrator's cancel) ends the write with 143, not Ctrl-C's
    130, after the same clean-up: the previous tables intact."""
    before = _previous(run_write, dest_conn)
    with live_write(tmp_path, dest_config, CATALOG) as write:
        write.send_until(_lines(record(STREAM, {"id": 9, "name": "Z"}), state(STREAM, {"n": 1})),
                         lambda: _committed_in_temporary(dest_conn) == 1)  # fmt: skip
        os.kill(write.proc.pid, signal.SIGTERM)
        assert write.proc.wait(timeout=60) == 143
    assert _rows(dest_conn) == before


def test_a_pausing_source_outlives_an_idle_transaction_timeout(
    tmp_path, dest_config, dest_conn, dest_db
) -> None:
    """A database whose sessions end after 1 s idle in a transaction: a full batch is loaded
    before the source pauses (the write's transaction open, waiting for the STATE), and the
    write still completes."""
    dest_conn.execute(
        sql.SQL("ALTER DATABASE {} SET idle_in_transaction_session_timeout = '1s'").format(
            sql.Identifier(dest_db)
        )
    )
    append = catalog_for(
        [(STREAM, {"id": {"type": "integer"}, "name": {"type": "string"}})], mode="append"
    )
    rows = 12_000  # about 12 MB: more than one batch, so one is loaded before the pause
    with live_write(tmp_path, dest_config, append) as write:
        assert write.proc.stdin is not None
        write.proc.stdin.write(
            _lines(*(record(STREAM, {"id": i, "name": "x" * 1000}) for i in range(rows)))
        )
        time.sleep(3)  # the source "pauses"
        assert write.finish(_lines(state(STREAM, {"n": 1}))) == 0
    assert count(dest_conn, STREAM) == rows


def test_empty_input_swaps_nothing(run_write, dest_conn) -> None:
    """`read | write` whose source died before its first line: no message at all is no clean
    end of input; the previous overwrite tables stay (before, they were swapped for empty ones
    and the write exited 0)."""
    before = _previous(run_write, dest_conn)
    result = run_write(CATALOG, b"")
    assert result.returncode == 1
    (error,) = result.errors
    assert "no message at all" in error["message"], error
    assert _rows(dest_conn) == before


def test_raw_only_overwrite_fails_cleanly(run_write, dest_conn, dest_config) -> None:
    """An overwrite stream with no typed table (disable_type_dedupe) whose source fails: one
    TRACE ERROR with the source's reason, its temporary dropped (the clean-up crashed on the
    missing typed table and printed a traceback instead)."""
    config = {**dest_config, "disable_type_dedupe": True}
    lines = _lines(record(STREAM, {"id": 1, "name": "A"}), state(STREAM, {"n": 1}),
                   b'{"type":"TRACE","trace":{"type":"ERROR","emitted_at":1,"error":'
                   b'{"message":"source broke","failure_type":"transient_error"}}}')  # fmt: skip
    result = run_write(CATALOG, lines, config=config)
    assert result.returncode == 1
    (error,) = result.errors
    assert "source broke" in error["message"], error
    assert "Traceback" not in result.stderr, result.stderr
    assert not [t for t in table_names(dest_conn) if t.startswith("_airbyte_tmp_")]


def test_a_held_overwrite_state_does_not_hold_other_streams(run_write, dest_conn) -> None:
    """Overwrite stream a's STATE waits for its swap, which never comes (INCOMPLETE); append
    stream b's STATE after it is still echoed once b's records are committed (it was held
    behind a's, so the next sync would have loaded b's records again)."""
    props = {"id": {"type": "integer"}}
    catalog = catalog_for([("a", props)])
    catalog["streams"] += catalog_for([("b", props)], mode="append")["streams"]
    lines = _lines(status("a", "STARTED"), record("a", {"id": 1}), state("a", {"n": 1}),
                   status("a", "INCOMPLETE"), status("b", "STARTED"), record("b", {"id": 2}),
                   state("b", {"n": 2}), status("b", "COMPLETE"))  # fmt: skip
    result = run_write(catalog, lines)
    assert result.returncode == 1  # a did not complete: its previous tables stay
    echoed = [s["state"]["stream"]["stream_descriptor"]["name"] for s in result.states]
    assert echoed == ["b"], result.states
    assert count(dest_conn, "b") == 1 and "a" not in table_names(dest_conn)


def test_session_shortens_the_wait_behind_autovacuum(dest_config, dest_conn) -> None:
    """An overwrite's swap DROPs a table an autovacuum may be processing, which PostgreSQL
    cancels only after the waiter's deadlock_timeout: a superuser's write waits 100 ms, not
    the default second; any other role keeps the server's setting, without an error."""
    from destination_postgres import loader
    from destination_postgres.config import DestinationConfig

    def deadlock_timeout(config: dict) -> str:
        conninfo = DestinationConfig.from_dict(config).settings.conninfo()
        with psycopg.connect(conninfo) as conn:
            loader.setup_session(conn)
            row = conn.execute("SHOW deadlock_timeout").fetchone()
            return row[0] if row else ""

    assert deadlock_timeout(dest_config) == "100ms"
    with throwaway_role(dest_conn, "pgbyte_plain", "plain-pw-12345"):
        plain = {**dest_config, "username": "pgbyte_plain", "password": "plain-pw-12345"}
        assert deadlock_timeout(plain) == "1s"


def test_a_second_overwrite_of_the_same_tables_is_refused_while_one_loads(
    run_write, tmp_path, dest_config, dest_conn
) -> None:
    """A write loading an overwrite stream, and a second write of the same stream (another
    connection into the same tables): the second fails at once with a transient_error saying
    why, touching nothing; the first completes. Before, the second dropped the first's live
    temporaries as leftovers, and both failed."""
    before = _previous(run_write, dest_conn)
    with live_write(tmp_path, dest_config, CATALOG) as first:
        first.send_until(_lines(record(STREAM, {"id": 9, "name": "Z"}), state(STREAM, {"n": 1})),
                         lambda: _committed_in_temporary(dest_conn) == 1)  # fmt: skip
        second = run_write(CATALOG, FIXTURES / "tutorial_sync2_overwrite.jsonl")
        assert second.returncode == 1
        (error,) = second.errors
        assert error["failure_type"] == "transient_error", error
        assert "another write is loading" in error["message"], error["message"]
        assert _rows(dest_conn) == before  # the second swapped nothing in
        assert _committed_in_temporary(dest_conn) == 1  # the first's temporary is intact
        assert first.finish() == 0
    assert [row[:2] for row in _rows(dest_conn)] == [(9, "Z")]


@pytest.mark.parametrize("setup", ["read-only", "no-create", "no-schema"])
def test_a_role_that_cannot_create_gets_the_fix_in_the_write(
    run_write, dest_config, dest_conn, setup: str
) -> None:
    """A write (not only `check`) as a role whose sessions are read-only, or that may not
    create in the schema: a config_error with the ALTER ROLE / GRANT to run (before: a
    system_error, or "grant the privilege or remove the stream")."""
    role = "pgbyte_cannot"
    with throwaway_role(dest_conn, role, "cannot-pw-12345"):
        if setup != "no-schema":  # else the write must create it, without CREATE on the db
            dest_conn.execute("CREATE SCHEMA locked")
            dest_conn.execute(f"GRANT USAGE ON SCHEMA locked TO {role}")
        if setup == "read-only":
            dest_conn.execute(f"GRANT CREATE ON SCHEMA locked TO {role}")
            dest_conn.execute(f"ALTER ROLE {role} SET default_transaction_read_only = on")
        config = {**dest_config, "username": role, "password": "cannot-pw-12345",
                  "schema": "locked"}  # fmt: skip
        result = run_write(CATALOG, FIXTURES / "tutorial_sync1_overwrite.jsonl", config=config)
        assert result.returncode == 1
        (error,) = result.errors
        assert error["failure_type"] == "config_error", error
        fix = {"read-only": "default_transaction_read_only = off",
               "no-create": "GRANT USAGE, CREATE ON SCHEMA locked",
               "no-schema": "GRANT CREATE ON DATABASE"}[setup]  # fmt: skip
        assert fix in error["message"], error["message"]


def test_a_reader_that_goes_away_stops_the_write_with_one_line(tmp_path, dest_config, dest_conn):
    """The reader of the echoed STATEs closes its end (`... | head -1`, a client that
    crashed): the write stops with one line on stderr and exit 1 (it printed three chained
    BrokenPipeError tracebacks and exited 120), and what it committed stays."""
    import subprocess

    from dest_helpers import SCRIPT

    lines = []
    for i in range(20_000):
        lines.append(record("gone", {"id": i}))
        if i % 10 == 9:  # 2,000 echoes: more than a pipe holds, so it cannot finish unread
            lines.append(state("gone", {"i": i}))
    (tmp_path / "in.jsonl").write_bytes(b"\n".join(lines) + b"\n")
    (tmp_path / "config.json").write_text(json.dumps(dest_config))
    catalog = catalog_for([("gone", {"id": {"type": "integer"}})], "append")
    (tmp_path / "catalog.json").write_text(json.dumps(catalog))
    with (tmp_path / "in.jsonl").open("rb") as stdin:
        proc = subprocess.Popen(
            [SCRIPT, "write", "--config", str(tmp_path / "config.json"),
             "--catalog", str(tmp_path / "catalog.json")],
            stdin=stdin, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        )  # fmt: skip
        first = json.loads(proc.stdout.readline())
        proc.stdout.close()
        stderr = proc.stderr.read().decode()
        code = proc.wait(timeout=120)
    assert first["type"] == "STATE"
    assert code == 1, stderr
    assert "the reader of its output (its STATE messages) went away" in stderr, stderr
    assert "a STATE it did not get is lost with it" in stderr
    assert "Traceback" not in stderr and stderr.count("\n") == 1, stderr
    echoed = first["state"]["destinationStats"]["recordCount"]
    assert echoed <= count(dest_conn, "gone") <= 20_000


def test_a_roles_idle_session_timeout_does_not_end_a_write_while_the_source_pauses(
    tmp_path, dest_config, dest_conn
) -> None:
    """A role with idle_session_timeout = 1s (PostgreSQL 14): the write's connections sit idle
    between transactions while the source pauses, and PostgreSQL ended them ("terminating
    connection due to idle-session timeout"), failing the sync. The write turns it off for its
    sessions, as it does idle_in_transaction_session_timeout."""
    if dest_conn.info.server_version < 140000:
        pytest.skip("idle_session_timeout is PostgreSQL 14's")
    with throwaway_role(dest_conn, "pgbyte_idle", "idle-pw-12345", "LOGIN CREATEDB"):
        dest_conn.execute("ALTER ROLE pgbyte_idle SET idle_session_timeout = '1s'")
        dest_conn.execute("GRANT CREATE ON SCHEMA public TO pgbyte_idle")
        config = {**dest_config, "username": "pgbyte_idle", "password": "idle-pw-12345"}
        catalog = catalog_for([("idle", {"id": {"type": "integer"}})], "append")
        with live_write(tmp_path, config, catalog) as write:
            write.send_until_state(_lines(record("idle", {"id": 1}), state("idle", {"n": 1})))
            time.sleep(2.5)  # the source pauses past the role's timeout
            assert write.finish(_lines(record("idle", {"id": 2}), state("idle", {"n": 2}))) == 0
        assert dest_conn.execute("SELECT count(*) FROM idle").fetchone() == (2,)
