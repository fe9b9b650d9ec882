"""`pgbyte state show | reset` as a user runs them, and how states are addressed by stream.

Saved states of every shape pgbyte may meet (cursor, ctid first load, xmin, full refresh,
GLOBAL, Airbyte's legacy dict) are data files under tests/fixtures/orchestrator/states/.
"""

from __future__ import annotations

import contextlib
import shlex
import shutil
import signal
import subprocess
import time
from pathlib import Path

import orjson
import psycopg
import pytest
import yaml
from orchestrator_helpers import (
    FIXTURES,
    console_script,
    pgbyte,
    pgbyte_env,
    sync_json,
    write_connection,
)
from pgbyte.catalog import Route, StreamMap
from pgbyte.state import state_lock
from test_rewrite import pump

STATES = FIXTURES / "states"


def offline_connection(tmp_path: Path, state_fixture: str | None = None, **extra) -> Path:
    """A connection file whose state is a copy of a fixture (no database behind it)."""
    body = {
        "source": {"command": "source-postgres", "config": {}},
        "destination": {"command": "destination-postgres", "config": {}},
        "state": "state.json",
        "sync_mode": "incremental",
        **extra,
    }
    path = tmp_path / "offline.yaml"
    path.write_text(yaml.safe_dump(body))
    if state_fixture:
        shutil.copy(STATES / state_fixture, tmp_path / "state.json")
    return path


def saved(tmp_path: Path) -> list[dict]:
    return orjson.loads((tmp_path / "state.json").read_bytes())


def make_tables(source_conn, rows: int = 200) -> None:
    for table in ("items", "other"):
        source_conn.execute(f"CREATE TABLE {table}(id bigint PRIMARY KEY, val text)")
        source_conn.execute(
            f"INSERT INTO {table} SELECT i, 'v' || i FROM generate_series(1, %s) i", (rows,)
        )


def two_streams(
    tmp_path, source_config, dest_config, mode: str = "append", dest_password: str | None = None
) -> Path:
    streams = [
        {"name": t, "sync_mode": "incremental", "cursor_field": "id"} for t in ("items", "other")
    ]
    return write_connection(tmp_path, source_config, dest_config, streams=streams,
                            destination_sync_mode=mode, dest_password=dest_password)  # fmt: skip


# -- show -------------------------------------------------------------------------------------
def test_show_prints_each_stream_position_readably(tmp_path) -> None:
    """Each stream gets one line naming it, the state kind and its position in words."""
    conn = offline_connection(tmp_path, "stream_kinds.json")
    run = pgbyte("state", "show", str(conn), password="")
    lines = run.stdout.splitlines()
    expected = [
        ("public.users", "cursor updated_at = '2024-01-02T03:04:05.123456' (3 rows"),
        ("public.events", "resumes at ctid (1234,0)"),
        ("sales.orders", "xmin 1234 (raw 4294968530, wraparounds 1)"),
        ("public.countries", "full refresh"),
        ("archive.users", '{"some_other_source":{"page":7}}'),
        (
            "public.logs",
            "resumes at ctid (77,0) (relation filenode 16999), then rows changed after xmin 5150",
        ),
    ]
    found = [any(label in line and text in line for line in lines) for label, text in expected]
    assert (run.returncode, found) == (0, [True] * len(expected)), run.stdout


def test_show_json_prints_the_saved_state_unchanged(tmp_path) -> None:
    """--json prints exactly the list the next sync hands the source as --state."""
    conn = offline_connection(tmp_path, "stream_kinds.json")
    run = pgbyte("state", "show", str(conn), "--json", password="")
    assert orjson.loads(run.stdout) == saved(tmp_path)


@pytest.mark.parametrize(
    ("fixture", "needles"),
    [
        ("global.json", ["GLOBAL state", '"lsn":23896935', "public.users", "public.orders"]),
        ("legacy.json", ["LEGACY state", "public.users", "cursor id = '42'"]),
        (
            "airbyte_v3.json",  # Airbyte source-postgres 4.x: `cursors`, ctid_based, xmin_based
            [
                "cursor updated_at = '2024-01-02T03:04:05.123456Z'; the next sync reads rows "
                "from that value on",
                "resumes at block 88 (saved ctid (88,3), relation filenode 16401), then cursor id "
                "from 5000 on",
                "xmin 777; the next sync reads rows changed from it on",
            ],
        ),
    ],
)
def test_show_describes_global_legacy_and_airbyte_v3_states(tmp_path, fixture, needles) -> None:
    """GLOBAL (shared part + its streams), legacy and Airbyte 4.x states are shown per stream
    too."""
    conn = offline_connection(tmp_path, fixture)
    out = pgbyte("state", "show", str(conn), password="").stdout
    assert [n for n in needles if n not in out] == [], out


def test_show_describes_a_v3_cursor_past_a_doubles_digits(tmp_path) -> None:
    """A version 3 state (Airbyte's source-postgres 4.x) whose cursor is a JSON number of more
    digits than a double holds: read exactly, it was shown as malformed (the source takes it)."""
    conn = offline_connection(tmp_path)
    (tmp_path / "state.json").write_text(
        '[{"type": "STREAM", "stream": {"stream_descriptor": {"name": "t", "namespace": '
        '"public"}, "stream_state": {"version": 3, "state_type": "cursor_based", "cursors": '
        '{"amount": 12345.678901234567891}}}}]'
    )
    run = pgbyte("state", "show", str(conn), password="")
    assert run.returncode == 0, run.stderr
    assert "12345.678901234567891" in run.stdout and "malformed" not in run.stdout, run.stdout


def test_show_without_state_says_so(tmp_path) -> None:
    """No state file: a plain sentence, exit 0, and --json prints an empty list."""
    conn = offline_connection(tmp_path)
    text = pgbyte("state", "show", str(conn), password="")
    raw = pgbyte("state", "show", str(conn), "--json", password="")
    assert (text.returncode, "no saved state" in text.stdout, orjson.loads(raw.stdout)) == (
        0, True, []
    )  # fmt: skip


@pytest.mark.parametrize("command", [["state", "reset"], ["sync", "--json"]])
def test_a_state_path_under_a_file_is_a_clear_error(tmp_path, command) -> None:
    """`state:` whose folder is a file: exit 1 with one sentence naming the path, and with
    --json one JSON object (before: a FileExistsError traceback and nothing on stdout)."""
    (tmp_path / "afile").write_text("x")
    conn = offline_connection(tmp_path, state="afile/state.json")
    run = pgbyte(command[0], *command[1:], str(conn), password="")
    assert run.returncode == 1, run.stderr
    assert "Traceback" not in run.stderr
    assert "afile/state.json cannot be made (a part of its folder path is a file)" in (
        run.stderr + run.stdout
    )
    if "--json" in command:
        assert orjson.loads(run.stdout)["status"] == "failed"


@pytest.mark.parametrize("argv", [["state", "show", "-v"], ["state", "-v", "show"],
                                  ["-v", "state", "show"], ["state", "reset", "-v"]])  # fmt: skip
def test_verbose_is_taken_by_every_state_command(tmp_path, argv) -> None:
    """`-v` works before or after any command, as --help says; `state show -v` and
    `state -v show` were refused as unrecognized arguments."""
    conn = offline_connection(tmp_path, "stream_kinds.json")
    run = pgbyte(*argv, str(conn), password="")
    assert run.returncode == 0, run.stderr


def wait_for_older_transactions(source_conn, table: str) -> None:
    """Until no transaction older than `table`'s rows runs: Xmin is at-least-once, and a sync
    whose snapshot still saw one running (an autovacuum's ANALYZE) would read them again."""
    deadline = time.monotonic() + 60
    query = (
        "SELECT txid_snapshot_xmin(txid_current_snapshot()) % 4294967296 "  # xmin has no epoch
        f"<= (SELECT max(xmin::text::bigint) FROM {table})"
    )
    while source_conn.execute(query).fetchone()[0] and time.monotonic() < deadline:
        time.sleep(0.05)


def history_entry(started_at: str, status: str, committed: int) -> dict:
    """A history line of one sync of public.users committing `committed` records."""
    stream = {"stream": "users", "namespace": "public", "records_committed": committed}
    return {"started_at": started_at, "status": status, "streams": [stream]}


def test_show_marks_a_newest_sync_that_did_not_succeed(tmp_path) -> None:
    """The newest sync of a stream is shown even when it failed, marked (failed)."""
    conn = offline_connection(tmp_path, "stream_kinds.json")
    history = [history_entry("2026-01-01T10:00:00.000Z", "succeeded", 5),
               history_entry("2026-01-02T10:00:00.000Z", "failed", 2)]  # fmt: skip
    (tmp_path / "state.history.jsonl").write_bytes(
        b"".join(orjson.dumps(entry) + b"\n" for entry in history)
    )
    out = pgbyte("state", "show", str(conn), password="").stdout
    assert "last sync 2026-01-02 10:00:00 UTC (failed) committed 2 record(s)" in out, out


def test_a_damaged_history_is_read_around_and_appended_to_cleanly(tmp_path) -> None:
    """A history line cut short (a sync killed mid-append) or of another shape (edited by hand)
    is skipped by `history` and `state show`, and the next entry starts a line of its own."""
    from pgbyte.state import append_history, read_history

    conn = offline_connection(tmp_path, "stream_kinds.json")
    path = tmp_path / "state.history.jsonl"
    good = history_entry("2026-01-01T10:00:00.000Z", "succeeded", 5)
    odd = (b'[1,2]\n{"streams":"x"}\n{"streams":[{"namespace":[]}]}\n'
           b'{"total":{"records_emitted":"1"}}\n')  # fmt: skip
    path.write_bytes(orjson.dumps(good) + b"\n" + odd + b'{"connection":"c","stat')
    append_history(path, history_entry("2026-01-02T10:00:00.000Z", "failed", 2))
    assert [entry["status"] for entry in read_history(path)] == ["succeeded", "failed"]
    show = pgbyte("state", "show", str(conn), password="")
    assert show.returncode == 0, show.stderr
    assert "last sync 2026-01-02 10:00:00 UTC (failed) committed 2 record(s)" in show.stdout
    history = pgbyte("history", str(conn), password="")
    assert history.returncode == 0 and "Traceback" not in history.stderr, history.stderr
    assert "2026-01-01" in history.stdout and "2026-01-02" in history.stdout


def test_history_lists_syncs_in_the_order_they_started(tmp_path) -> None:
    """Entries are appended as syncs end: a sync refused while another ran ends first. The
    history lists them by their start, which its first column shows; --limit keeps the
    newest starts."""
    conn = offline_connection(tmp_path, "stream_kinds.json")
    ended = [history_entry("2026-01-01T10:00:05.000Z", "failed", 0),
             history_entry("2026-01-01T10:00:00.000Z", "succeeded", 5),
             history_entry("2026-01-01T10:00:09.000Z", "succeeded", 1)]  # fmt: skip
    (tmp_path / "state.history.jsonl").write_bytes(
        b"".join(orjson.dumps(entry) + b"\n" for entry in ended)
    )
    listed = orjson.loads(pgbyte("history", str(conn), "--json", password="").stdout)
    assert [e["started_at"][11:19] for e in listed] == ["10:00:00", "10:00:05", "10:00:09"]
    text = pgbyte("history", str(conn), "--limit", "2", password="").stdout
    starts = [line.split()[0][11:19] for line in text.splitlines() if line.startswith("2026")]
    assert starts == ["10:00:05", "10:00:09"], text


@pytest.mark.slow
def test_show_names_the_newest_sync_even_when_it_committed_nothing(
    tmp_path, pg_server, source_conn, source_config, dest_config
) -> None:  # fmt: skip
    """Xmin, `other` changed between two syncs: items' last sync is the second, committing 0."""
    make_tables(source_conn)
    wait_for_older_transactions(source_conn, "items")
    streams = [{"name": t, "sync_mode": "incremental"} for t in ("items", "other")]
    conn = write_connection(
        tmp_path, {**source_config, "replication_method": {"method": "Xmin"}}, dest_config,
        streams=streams, destination_sync_mode="append",
    )  # fmt: skip
    first, _ = sync_json(conn, pg_server.password)
    assert first.returncode == 0, first.stdout + first.stderr
    source_conn.execute("INSERT INTO other VALUES (201, 'new')")
    run, summary = sync_json(conn, pg_server.password)
    assert run.returncode == 0, run.stderr
    lines = pgbyte("state", "show", str(conn), password="").stdout.splitlines()
    items = next(i for i, line in enumerate(lines) if line.split()[0] == "public.items")
    when = summary["started_at"][:19].replace("T", " ")
    assert lines[items + 1].strip() == f"last sync {when} UTC committed 0 record(s)", lines


@pytest.mark.slow
def test_a_switch_from_xmin_to_standard_says_the_stream_is_read_again(
    tmp_path, pg_server, source_conn, source_config, dest_config
) -> None:  # fmt: skip
    """The connection switched from Xmin to Standard replication: the sync says the saved xmin
    state cannot serve and the stream is read from the start (it said "resumes from its saved
    state", and then the source WARNed that it re-reads everything)."""
    make_tables(source_conn)
    xmin = write_connection(
        tmp_path, {**source_config, "replication_method": {"method": "Xmin"}}, dest_config,
        streams=[{"name": "items", "sync_mode": "incremental"}], destination_sync_mode="append",
    )  # fmt: skip
    assert sync_json(xmin, pg_server.password)[0].returncode == 0
    standard = write_connection(
        tmp_path, source_config, dest_config, destination_sync_mode="append",
        streams=[{"name": "items", "sync_mode": "incremental", "cursor_field": "id"}],
    )  # fmt: skip
    assert standard == xmin  # the same connection file, so the same saved state
    run, _ = sync_json(standard, pg_server.password)
    assert run.returncode == 0, run.stderr
    assert (
        "public.items has a saved Xmin state, and the source is configured for Standard "
        "replication: the source reads it again from the start"
    ) in run.stderr, run.stderr
    assert "resumes from its saved state" not in run.stderr


# -- reset ------------------------------------------------------------------------------------
def test_reset_one_stream_keeps_the_others_exactly(tmp_path) -> None:
    """--stream namespace.name drops that stream's state only; the rest is kept as it was."""
    conn = offline_connection(tmp_path, "stream_kinds.json")
    before = saved(tmp_path)
    run = pgbyte("state", "reset", str(conn), "--stream", "public.users", password="")
    assert run.returncode == 0, run.stderr
    assert saved(tmp_path) == [s for s in before if s["stream"]["stream_descriptor"]
                               != {"name": "users", "namespace": "public"}]  # fmt: skip


@pytest.mark.parametrize(("entry", "warned"), [("append", True), ("overwrite", False)])
def test_reset_names_the_mode_of_a_dotted_streams_entry(tmp_path, entry, warned) -> None:
    """`streams: [{name: public.users, destination_sync_mode: append}]` (the dotted shorthand
    sync accepts): the reset took the connection's defaults (overwrite) and said the next sync
    replaces the tables, where it appends every row again."""
    streams = [{"name": "public.users", "sync_mode": "incremental", "cursor_field": ["id"],
                "destination_sync_mode": entry}]  # fmt: skip
    if entry == "overwrite":
        streams[0]["sync_mode"] = "full_refresh"
        del streams[0]["cursor_field"]
    conn = offline_connection(tmp_path, "stream_kinds.json", streams=streams,
                              destination_sync_mode="append_dedup")  # fmt: skip
    run = pgbyte("state", "reset", str(conn), "--stream", "public.users", password="")
    assert run.returncode == 0, run.stderr
    assert ("WARNING append mode" in run.stdout + run.stderr) is warned, run.stdout


def test_reset_unknown_stream_is_an_error_and_changes_nothing(tmp_path) -> None:
    """An unknown --stream: exit 2, the message names it and the streams that have state."""
    conn = offline_connection(tmp_path, "stream_kinds.json")
    before = (tmp_path / "state.json").read_bytes()
    run = pgbyte("state", "reset", str(conn), "--stream", "nope", password="")
    assert (run.returncode, "nope" in run.stderr, "sales.orders" in run.stderr) == (2, True, True)
    assert "`state reset --clear` without --stream clears every stream" in run.stderr
    assert (tmp_path / "state.json").read_bytes() == before


def test_reset_of_a_mistyped_namespace_is_an_error(tmp_path) -> None:
    """A connection listing `users` by bare name: `--stream pubic.users` (a typo) names no
    stream; exit 2 and the state stays, not "had no saved state" with exit 0."""
    conn = offline_connection(tmp_path, "stream_kinds.json", streams=[{"name": "users"}])
    before = (tmp_path / "state.json").read_bytes()
    run = pgbyte("state", "reset", str(conn), "--stream", "pubic.users", password="")
    assert (run.returncode, "--stream pubic.users: no such stream" in run.stderr) == (2, True)
    assert (tmp_path / "state.json").read_bytes() == before


def test_reset_ambiguous_name_asks_for_the_namespace(tmp_path) -> None:
    """A bare name with state in two namespaces is refused, listing both."""
    conn = offline_connection(tmp_path, "stream_kinds.json")
    run = pgbyte("state", "reset", str(conn), "--stream", "users", password="")
    assert run.returncode == 2
    assert "public.users" in run.stderr and "archive.users" in run.stderr


def test_reset_stream_of_a_global_state_keeps_the_shared_part(tmp_path) -> None:
    """A GLOBAL state loses that stream's entry only; shared_state and the others stay."""
    conn = offline_connection(tmp_path, "global.json")
    before = saved(tmp_path)[0]["global"]
    pgbyte("state", "reset", str(conn), "--stream", "users", password="")
    after = saved(tmp_path)[0]["global"]
    assert after == {**before, "stream_states": before["stream_states"][1:]}


def test_reset_stream_of_a_legacy_state_drops_its_entry(tmp_path) -> None:
    """A legacy {"streams": [...]} state loses that stream's entry only."""
    conn = offline_connection(tmp_path, "legacy.json")
    pgbyte("state", "reset", str(conn), "--stream", "public.orders", password="")
    streams = saved(tmp_path)[0]["data"]["streams"]
    assert [s["stream_name"] for s in streams] == ["users"]


def test_unreadable_state_is_reported_and_reset_removes_it(tmp_path) -> None:
    """A corrupt state file: show exits 1 pointing at reset; a full reset removes it."""
    conn = offline_connection(tmp_path)
    (tmp_path / "state.json").write_text('[{"type": "STREAM", "str')
    show = pgbyte("state", "show", str(conn), password="")
    reset = pgbyte("state", "reset", str(conn), password="")
    assert (show.returncode, reset.returncode) == (1, 0)
    assert f"run `pgbyte state reset {conn}` to start over" in show.stderr, show.stderr
    assert not (tmp_path / "state.json").exists()


def test_reset_is_refused_while_a_sync_holds_the_state(tmp_path) -> None:
    """While another process holds the connection's lock, reset exits 1 and changes nothing."""
    conn = offline_connection(tmp_path, "stream_kinds.json")
    before = (tmp_path / "state.json").read_bytes()
    with state_lock(tmp_path / "state.json", "test"):
        run = pgbyte("state", "reset", str(conn), password="")
    assert (run.returncode, "another pgbyte" in run.stderr) == (1, True)
    assert (tmp_path / "state.json").read_bytes() == before


def test_second_sync_of_a_connection_is_refused(tmp_path, pg_server, source_config,
                                                dest_config) -> None:  # fmt: skip
    """A sync started while another holds the connection's state fails without touching it."""
    conn = write_connection(tmp_path, source_config, dest_config)
    state = tmp_path / ".pgbyte" / "state" / "conn.json"
    with state_lock(state, "test"):
        run, summary = sync_json(conn, pg_server.password)
    assert (run.returncode, "another pgbyte" in summary["reason"]) == (1, True)
    assert not state.exists()


@pytest.mark.slow
def test_reset_stream_rereads_it_and_warns_about_append(
    tmp_path, pg_server, source_conn, dest_conn, source_config, dest_config
) -> None:  # fmt: skip
    """After `reset --stream items` the next sync re-reads items from the start (append: every
    row twice, as the reset warned) and reads nothing new of the other stream."""
    make_tables(source_conn)
    conn = two_streams(tmp_path, source_config, dest_config)
    assert sync_json(conn, pg_server.password)[0].returncode == 0
    reset = pgbyte("state", "reset", str(conn), "--stream", "items", password="")
    run, summary = sync_json(conn, pg_server.password)
    emitted = {s["stream"]: s["records_emitted"] for s in summary["streams"]}
    items = dest_conn.execute("SELECT count(*) FROM items").fetchone()[0]
    assert "WARNING append mode" in reset.stdout
    assert (run.returncode, emitted, items) == (0, {"items": 200, "other": 0}, 400)


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["append", "append_dedup"])
def test_reset_clear_empties_the_destination_tables(
    mode, tmp_path, pg_server, source_conn, dest_conn, source_config, dest_config
) -> None:  # fmt: skip
    """`reset --stream items --clear` empties items' raw and typed tables (other is untouched),
    so the next sync holds each source row exactly once."""
    make_tables(source_conn)
    conn = two_streams(tmp_path, source_config, dest_config, mode)
    assert sync_json(conn, pg_server.password)[0].returncode == 0
    clear = pgbyte("state", "reset", str(conn), "--stream", "items", "--clear",
                   password=pg_server.password)  # fmt: skip
    assert clear.returncode == 0, clear.stderr
    counts = dest_conn.execute(
        "SELECT (SELECT count(*) FROM items), (SELECT count(*) FROM _airbyte_raw_items), "
        "(SELECT count(*) FROM other)"
    ).fetchone()
    assert counts == (0, 0, 200)
    assert sync_json(conn, pg_server.password)[0].returncode == 0
    synced = dest_conn.execute("SELECT id, val FROM items ORDER BY id").fetchall()
    assert synced == source_conn.execute("SELECT id, val FROM items ORDER BY id").fetchall()
    source_conn.execute("INSERT INTO items SELECT i, 'v' || i FROM generate_series(201, 210) i")
    assert sync_json(conn, pg_server.password)[0].returncode == 0  # incremental again
    synced = dest_conn.execute("SELECT id, val FROM items ORDER BY id").fetchall()
    assert synced == source_conn.execute("SELECT id, val FROM items ORDER BY id").fetchall()


@pytest.mark.slow
def test_reset_clear_that_cannot_reach_the_destination_changes_nothing(
    tmp_path, pg_server, source_conn, dest_conn, source_config, dest_config
) -> None:  # fmt: skip
    """A clear whose destination refuses the login fails before the state is forgotten: the
    state and the tables stay (the state was gone and the tables full), and no secret shows."""
    make_tables(source_conn)
    conn = two_streams(tmp_path, source_config, dest_config)
    assert sync_json(conn, pg_server.password)[0].returncode == 0
    state = tmp_path / ".pgbyte" / "state" / "conn.json"
    before = state.read_bytes()
    two_streams(tmp_path, source_config, dest_config, dest_password="Wrong-pw-4321")
    clear = pgbyte("state", "reset", str(conn), "--stream", "items", "--clear",
                   password=pg_server.password)  # fmt: skip
    assert clear.returncode == 1, clear.stdout + clear.stderr
    assert "the destination's check failed" in clear.stderr, clear.stderr
    assert "Wrong-pw-4321" not in clear.stdout + clear.stderr
    assert state.read_bytes() == before
    assert dest_conn.execute("SELECT count(*) FROM items").fetchone()[0] == 200


@pytest.mark.slow
def test_reset_clear_checks_the_destination_where_it_writes(
    tmp_path, pg_server, source_conn, dest_conn, source_config, dest_config
) -> None:  # fmt: skip
    """A destination user that may write only its own schema, the streams mapped there by
    namespace: while the config's schema: (public) is not writable: the clear's check probes
    where the clear writes, and it succeeds (a check of schema: refused the clear)."""
    from db_roles import throwaway_role

    with throwaway_role(dest_conn, "clear_writer", "Clear-pw-7788"):
        dest_conn.execute("CREATE SCHEMA app AUTHORIZATION clear_writer")
        make_tables(source_conn)
        streams = [{"name": "items", "sync_mode": "incremental", "cursor_field": "id"}]
        conn = write_connection(
            tmp_path, source_config, {**dest_config, "username": "clear_writer"},
            dest_password="Clear-pw-7788", streams=streams, namespace="app",
            destination_sync_mode="append",
        )  # fmt: skip
        assert sync_json(conn, pg_server.password)[0].returncode == 0
        clear = pgbyte("state", "reset", str(conn), "--stream", "items", "--clear",
                       password=pg_server.password)  # fmt: skip
        assert clear.returncode == 0, clear.stdout + clear.stderr
        assert dest_conn.execute("SELECT count(*) FROM app.items").fetchone()[0] == 0


@pytest.mark.slow
def test_reset_clear_checks_every_schema_it_writes(
    tmp_path, pg_server, source_conn, dest_conn, source_config, dest_config
) -> None:  # fmt: skip
    """Streams of two source schemas mapped to two destination schemas, the user allowed to
    write only the first: the clear is refused before the state is forgotten (a check of the
    first schema alone let it forget the state, then fail to empty the tables)."""
    from db_roles import throwaway_role

    with throwaway_role(dest_conn, "clear_half", "Clear-pw-6644"):
        dest_conn.execute("CREATE SCHEMA w_public AUTHORIZATION clear_half")
        source_conn.execute("CREATE SCHEMA s2")
        for table in ("public.items", "s2.more"):
            source_conn.execute(f"CREATE TABLE {table} (id int PRIMARY KEY, val text)")
            source_conn.execute(f"INSERT INTO {table} VALUES (1, 'a'), (2, 'b')")
        conn = write_connection(
            tmp_path, {**source_config, "schemas": ["public", "s2"]},
            {**dest_config, "username": "clear_half"}, dest_password="Clear-pw-6644",
            namespace="w_${SOURCE_NAMESPACE}", sync_mode="incremental",
            destination_sync_mode="append",
            streams=[{"name": "items", "cursor_field": "id"}],
        )  # fmt: skip
        assert sync_json(conn, pg_server.password)[0].returncode == 0
        state = tmp_path / ".pgbyte" / "state" / "conn.json"
        before = state.read_bytes()
        body = yaml.safe_load(conn.read_text())
        body["streams"] = [{"name": "items", "cursor_field": "id"},
                           {"name": "more", "cursor_field": "id"}]  # fmt: skip
        conn.write_text(yaml.safe_dump(body, sort_keys=False))
        clear = pgbyte("state", "reset", str(conn), "--clear", password=pg_server.password)
        assert clear.returncode == 1, clear.stdout + clear.stderr
        assert "the destination's check failed" in clear.stderr, clear.stderr
        assert "w_s2" in clear.stderr, clear.stderr
        assert state.read_bytes() == before
        assert dest_conn.execute("SELECT count(*) FROM w_public.items").fetchone()[0] == 2


@pytest.mark.slow
@pytest.mark.parametrize("selector", ["items", "public.items"])
def test_reset_clear_stopped_while_emptying_keeps_no_cursor_over_emptied_tables(
    selector, tmp_path, pg_server, dest_db, source_conn, dest_conn, source_config, dest_config
) -> None:  # fmt: skip
    """SIGTERM (then a Ctrl-C) while the destination waits to swap items' emptied tables in
    (a reader holds them): pgbyte stops it and exits 143. The state of items is forgotten
    already (emptied tables under the old cursor would lose its rows for good: every later
    sync would read nothing), its rows are still there, and stderr says to run the same
    command again; that run empties them and the next sync brings each row back once — also
    when the stream is named namespace.name and the connection file lists it by bare name."""
    make_tables(source_conn)
    conn = two_streams(tmp_path, source_config, dest_config)
    conn.write_text(conn.read_text() + "state: state.json\n")
    assert sync_json(conn, pg_server.password)[0].returncode == 0
    command = [console_script("pgbyte"), "state", "reset", str(conn), "--stream", selector,
               "--clear"]  # fmt: skip
    with psycopg.connect(pg_server.conninfo(dest_db)) as reader:
        reader.execute("LOCK TABLE items IN ACCESS SHARE MODE")  # held until the rollback
        proc = subprocess.Popen(command, env=pgbyte_env(pg_server.password), text=True,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)  # fmt: skip
        try:
            waiting = ("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                       "AND datname = current_database()")  # fmt: skip
            deadline = time.monotonic() + 60
            while not dest_conn.execute(waiting).fetchone()[0]:
                assert proc.poll() is None, proc.communicate(timeout=60)
                assert time.monotonic() < deadline, "the clear never waited on the lock"
                time.sleep(0.05)
            proc.send_signal(signal.SIGTERM)
            # Then Ctrl-Cs until it exits: the first signal says why, also when a later one
            # comes during Python's shutdown (which put the default actions back: killed by
            # SIGINT). Apart, as two signals pending at once are handled in signal-number
            # order (SIGINT first).
            time.sleep(0.2)
            stop = time.monotonic() + 30
            while proc.poll() is None and time.monotonic() < stop:
                with contextlib.suppress(ProcessLookupError):
                    proc.send_signal(signal.SIGINT)
                time.sleep(0.005)
            _, err = proc.communicate(timeout=60)
        finally:
            proc.kill()
            reader.rollback()
    assert proc.returncode == 128 + signal.SIGTERM, err
    # The advice names the stream as namespace.name (once its state is gone, a bare name
    # could match more streams); it is the command run next.
    advised = f"pgbyte state reset {conn} --stream public.items --clear"
    assert f"run `{advised}` again" in err, err
    assert [s["stream"]["stream_descriptor"]["name"] for s in saved(tmp_path)] == ["other"]
    assert dest_conn.execute("SELECT count(*) FROM items").fetchone()[0] == 200
    again = subprocess.run(
        [console_script("pgbyte"), *shlex.split(advised)[1:]],
        env=pgbyte_env(pg_server.password), capture_output=True, text=True, timeout=180,
        check=False,
    )  # fmt: skip
    assert again.returncode == 0, again.stderr
    assert "cleared destination stream public.items" in again.stdout, again.stdout
    assert dest_conn.execute("SELECT count(*) FROM items").fetchone()[0] == 0
    assert sync_json(conn, pg_server.password)[0].returncode == 0
    synced = dest_conn.execute("SELECT id, val FROM items ORDER BY id").fetchall()
    assert synced == source_conn.execute("SELECT id, val FROM items ORDER BY id").fetchall()


@pytest.mark.slow
def test_show_after_a_real_sync_names_the_cursor_value(
    tmp_path, pg_server, source_conn, source_config, dest_config
) -> None:  # fmt: skip
    """After an incremental sync, `state show` prints each stream's cursor at the max id."""
    make_tables(source_conn)
    conn = two_streams(tmp_path, source_config, dest_config)
    assert sync_json(conn, pg_server.password)[0].returncode == 0
    out = pgbyte("state", "show", str(conn), password="").stdout
    lines = [line for line in out.splitlines() if "cursor id = '200'" in line]
    assert sorted(line.split()[0] for line in lines) == ["public.items", "public.other"], out


# -- stream addressing across the prefix / namespace mapping ------------------------------------
def test_forwarded_state_carries_destination_names() -> None:
    """As Airbyte's NamespacingMapper: a STREAM state reaches the destination with the mapped
    descriptor; the opaque stream_state (its own stream_name) is not touched."""
    smap = StreamMap([Route("items", "public", "p_items", "raw_public", "incremental", "append")])
    stream_state = {"state_type": "cursor_based", "stream_name": "items", "cursor": "5"}
    line = orjson.dumps({"type": "STATE", "state": {"type": "STREAM", "stream": {
        "stream_descriptor": {"name": "items", "namespace": "public"},
        "stream_state": stream_state}}})  # fmt: skip
    forwarded = orjson.loads(pump(smap).other_line(line))["state"]["stream"]
    assert forwarded == {
        "stream_descriptor": {"name": "p_items", "namespace": "raw_public"},
        "stream_state": stream_state,
    }


@pytest.mark.slow
def test_sync_says_where_each_incremental_stream_starts(
    tmp_path, pg_server, source_conn, source_config, dest_config
) -> None:  # fmt: skip
    """A sync logs, per incremental stream, the saved position it resumes from (or none)."""
    make_tables(source_conn)
    conn = two_streams(tmp_path, source_config, dest_config)
    first, _ = sync_json(conn, pg_server.password)
    second, _ = sync_json(conn, pg_server.password)
    assert "public.items has no saved state" in first.stderr, first.stderr
    assert "public.items resumes from its saved state: cursor id = '200'" in second.stderr
    assert "now writes" not in second.stderr, second.stderr
    # A copy of the connection file with another prefix keeps the name, so the state: the
    # new tables would get only what changed since, which a WARN says.
    copy = tmp_path / "copy.yaml"
    copy.write_text(conn.read_text() + f"name: {conn.stem}\nprefix: copy_\n")
    moved, _ = sync_json(copy, pg_server.password)
    assert ("public.items resumes from the state its last sync saved while writing public.items, "
            "but now writes public.copy_items") in moved.stderr, moved.stderr  # fmt: skip
    # The advice is a command to paste: the connection file named, as reset needs it.
    assert f"`pgbyte state reset {copy} --stream public.items` to read" in moved.stderr
    # The same tables, in another destination database: said too.
    (tmp_path / "other").mkdir()
    database = f"{dest_config['database']}_other"
    pg_server.create_database(database)
    streams = [{"name": t, "sync_mode": "incremental", "cursor_field": "id"}
               for t in ("items", "other")]  # fmt: skip
    elsewhere = write_connection(tmp_path / "other", source_config,
                                 {**dest_config, "database": database}, streams=streams,
                                 destination_sync_mode="append",
                                 state=str(tmp_path / ".pgbyte/state/conn.json"))  # fmt: skip
    other, _ = sync_json(elsewhere, pg_server.password)
    assert f"now writes public.items in database {database} on" in other.stderr, other.stderr
    pg_server.drop_database(database)
    # The connection's cursor changed: the saved position is of another column, and the
    # source reads the stream again (it said "resumes" before, then the source re-read).
    streams = [{"name": t, "sync_mode": "incremental", "cursor_field": "val"}
               for t in ("items", "other")]  # fmt: skip
    conn = write_connection(tmp_path, source_config, dest_config, streams=streams,
                            destination_sync_mode="append")  # fmt: skip
    third, _ = sync_json(conn, pg_server.password)
    assert ("public.items has a saved state for cursor id, not the configured val: the source "
            "reads it again from the start") in third.stderr, third.stderr  # fmt: skip


@pytest.mark.slow
def test_reset_dedup_stream_rereads_it_into_one_row_per_key(
    tmp_path, pg_server, source_conn, dest_conn, source_config, dest_config
) -> None:  # fmt: skip
    """append_dedup after `reset --stream items`: the re-read lands in the raw table again, the
    typed table still holds one row per key (as the reset says)."""
    make_tables(source_conn)
    conn = two_streams(tmp_path, source_config, dest_config, "append_dedup")
    assert sync_json(conn, pg_server.password)[0].returncode == 0
    reset = pgbyte("state", "reset", str(conn), "--stream", "public.items", password="")
    run, _ = sync_json(conn, pg_server.password)
    counts = dest_conn.execute(
        "SELECT (SELECT count(*) FROM items), (SELECT count(DISTINCT id) FROM items), "
        "(SELECT count(*) FROM _airbyte_raw_items)"
    ).fetchone()
    assert "one row per primary key" in reset.stdout
    assert (run.returncode, counts) == (0, (200, 200, 400))


@pytest.mark.parametrize(
    ("stream_state", "kind", "needle"),
    [
        ({"state_type": "cursor_based", "cursors": {"a": None}}, "other", "no value for cursor a"),
        ({"state_type": "cursor_based", "cursors": {"a": 1, "b": 2}}, "other", "malformed"),
        ({"state_type": "cursor_based", "cursors": {}}, "other", "reads the stream from the start"),
        ({"state_type": "xmin_based", "xmin": -1}, "other", "no transaction id (xmin -1)"),
        ({"state_type": "ctid_based", "ctid": "(3,1)", "relation_filenode": True,
          "cursors": {"a": 1}}, "other", "cannot resume"),
        ({"state_type": "ctid_based", "ctid": "(3,1)", "relation_filenode": 7,
          "cursors": {"a": 1}, "xmin": "x"}, "other", "no transaction id"),
        ({"state_type": "ctid_based", "ctid": "(3,1)", "relation_filenode": 7, "cursors": {}},
         "other", "a full refresh position"),
        ({"state_type": "ctid_based", "ctid": "(3,1)", "relation_filenode": 7, "xmin": 9},
         "ctid", "resumes at block 3 (saved ctid (3,1), relation filenode 7), then rows changed "
                 "from xmin 9 on"),
        ({"state_type": "cursor_based", "cursor_field": ["u"], "cursor": "5",
          "cursor_record_count": 0}, "cursor_based", "not counted); the next sync reads rows from"),
        # A first load that found no cursor value (every row NULL): read whole again next time
        ({"state_type": "cursor_based", "cursor_field": ["u"], "cursor": None,
          "cursor_record_count": 0}, "cursor_based",
         "cursor u: no value yet; the next sync reads the whole stream again"),
        # Airbyte 3.x CDC GLOBAL state's streams: no cursor; a snapshot's ctid with nothing after
        ({"stream_name": "t", "cursor_field": []}, "other", "no cursor position"),
        ({"state_type": "ctid", "ctid": "(4,0)", "relation_filenode": 7, "incremental_state": {
            "state_type": "cursor_based", "cursor_field": ["u"], "cursor": None}}, "ctid",
         "resumes at ctid (4,0) (relation filenode 7), then cursor u (no value noted yet)"),
        ({"state_type": "ctid", "ctid": "(0,3)", "relation_filenode": 7}, "other",
         "no incremental position after it"),
    ],
)  # fmt: skip
def test_show_says_what_the_source_does_with_odd_states(stream_state, kind, needle) -> None:
    """Airbyte 4.x states the source re-reads or refuses are not shown as resuming (and an
    uncounted cursor is read again from its value, as the source does)."""
    from pgbyte.state_view import describe_stream_state

    what, detail = describe_stream_state({"version": 3, **stream_state})
    assert (what, needle in detail) == (kind, True), detail


@pytest.mark.slow
def test_reset_clear_of_a_dropped_stream_says_its_tables_stay(
    tmp_path, pg_server, source_conn, dest_conn, source_config, dest_config
) -> None:  # fmt: skip
    """A connection syncing every discovered stream, one of whose tables was then dropped: the
    next sync warns that it is no longer synced; `reset --clear` empties the other stream's
    tables and says that the dropped stream's were NOT emptied (the destination needs its
    schema to name them), and they indeed hold their rows; `--stream` naming it forgets its
    state the same way instead of failing."""
    make_tables(source_conn)
    for table in ("items", "other"):  # an updated_at column: the source's default cursor
        source_conn.execute(f"ALTER TABLE {table} ADD updated_at timestamptz DEFAULT now()")
    conn = write_connection(tmp_path, source_config, dest_config, sync_mode="incremental",
                            destination_sync_mode="append")  # fmt: skip
    assert sync_json(conn, pg_server.password)[0].returncode == 0
    source_conn.execute("DROP TABLE other")
    after_drop = sync_json(conn, pg_server.password)[0]
    assert after_drop.returncode == 0
    assert "public.other has a saved state but the source no longer offers it" in (
        after_drop.stderr), after_drop.stderr  # fmt: skip
    assert f"(`pgbyte state reset {conn} --stream public.other` forgets" in after_drop.stderr
    one = pgbyte("state", "reset", str(conn), "--stream", "other", "--clear",
                 password=pg_server.password)  # fmt: skip
    assert one.returncode == 0, one.stderr
    assert "forgot the state of public.other" in one.stdout, one.stdout
    assert "its destination tables were NOT emptied" in one.stdout, one.stdout
    assert "were emptied" not in one.stdout.replace("NOT emptied", ""), one.stdout
    assert dest_conn.execute("SELECT count(*) FROM other").fetchone()[0] == 200
    everything = pgbyte("state", "reset", str(conn), "--clear", password=pg_server.password)
    assert everything.returncode == 0, everything.stderr
    assert "cleared destination stream public.items" in everything.stdout, everything.stdout
    counts = dest_conn.execute(
        "SELECT (SELECT count(*) FROM items), (SELECT count(*) FROM other)"
    ).fetchone()
    assert counts == (0, 200)
    # A stream with no state left but rows in its tables (a clear interrupted after the state
    # was forgotten) is cleared by name, as the source offers it; a name it does not offer
    # changes nothing.
    assert sync_json(conn, pg_server.password)[0].returncode == 0
    assert pgbyte("state", "reset", str(conn), "--stream", "items",
                  password=pg_server.password).returncode == 0  # fmt: skip
    unknown = pgbyte("state", "reset", str(conn), "--stream", "nosuch", "--clear",
                     password=pg_server.password)  # fmt: skip
    assert (unknown.returncode, unknown.stdout) == (2, ""), unknown.stderr
    assert "--stream nosuch: no such stream" in unknown.stderr, unknown.stderr
    assert dest_conn.execute("SELECT count(*) FROM items").fetchone()[0] == 200
    by_name = pgbyte("state", "reset", str(conn), "--stream", "public.items", "--clear",
                     password=pg_server.password)  # fmt: skip
    assert by_name.returncode == 0, by_name.stderr
    assert "cleared destination stream public.items" in by_name.stdout, by_name.stdout
    assert dest_conn.execute("SELECT count(*) FROM items").fetchone()[0] == 0


def test_reset_of_a_state_naming_no_stream_says_it_forgot_it(tmp_path) -> None:
    """A saved state that names no stream (an old client's bare object): `reset` removes it
    and says so, not that the state was already empty."""
    conn = offline_connection(tmp_path)
    (tmp_path / "state.json").write_text('{"foo": 1}')
    run = pgbyte("state", "reset", str(conn), password="")
    assert run.returncode == 0, run.stderr
    assert "forgot the saved state, which named no stream" in run.stdout, run.stdout
    assert "already empty" not in run.stdout
    assert not (tmp_path / "state.json").exists() or saved(tmp_path) in ([], {})


@pytest.mark.slow
def test_a_state_saved_without_namespace_resumes_without_a_warning(
    tmp_path, pg_server, source_conn, dest_conn, source_config, dest_config
) -> None:  # fmt: skip
    """A state file whose stream has no namespace (an older or hand-written one): the sync
    says the stream resumes from it (the source takes it for the one stream of that name), and
    does not warn that the source no longer offers a stream."""
    make_tables(source_conn)
    source_conn.execute("ALTER TABLE items ADD updated_at timestamptz DEFAULT now()")
    source_conn.execute("DROP TABLE other")
    conn = write_connection(tmp_path, source_config, dest_config, sync_mode="incremental",
                            destination_sync_mode="append")  # fmt: skip
    state = tmp_path / ".pgbyte" / "state" / "conn.json"
    state.parent.mkdir(parents=True)
    stream_state = {"version": 2, "state_type": "cursor_based", "stream_name": "items",
                    "cursor_field": ["updated_at"], "cursor": "2100-01-01T00:00:00Z",
                    "cursor_record_count": 1}  # fmt: skip
    state.write_bytes(orjson.dumps([{"type": "STREAM", "stream": {
        "stream_descriptor": {"name": "items"}, "stream_state": stream_state}}]))  # fmt: skip
    run, summary = sync_json(conn, pg_server.password)
    assert run.returncode == 0, run.stderr
    assert "no longer offers" not in run.stderr, run.stderr
    assert "public.items resumes from its saved state" in run.stderr, run.stderr
    assert [s["records_emitted"] for s in summary["streams"]] == [0]  # after 2100: nothing
