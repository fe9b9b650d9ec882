"""Incremental syncs through `pgbyte sync` with the real connectors: interrupted and resumed,
and insert → sync → update + insert → sync, each checked against an SQL oracle on the source.

The source table has an indexed bigint cursor (`updated_at`, drawn from a sequence, so every
change moves a row past the saved cursor); PGBYTE_CURSOR_CHUNK_ROWS makes the source checkpoint
every CHUNK rows, both in a first load (ctid chunks) and in the cursor reads after it.
Interruptions: the source killed, the destination killed, SIGINT or SIGHUP to pgbyte, or
pgbyte itself killed (-9), each when a given share of the rows has been forwarded. Then a plain
re-run must leave:
- append: every source row at least once in the raw and the typed table;
- append_dedup: the typed table equal to the source table, row for row.
"""

from __future__ import annotations

import contextlib
import os
import pty
import re
import select
import signal
import subprocess
import threading
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson
import pytest
from hangups import hangups_end_it
from orchestrator_helpers import (
    RunningSync,
    alive,
    connector_pid,
    console_script,
    pgbyte_env,
    signal_pid,
    sync_json,
    wait_gone,
    write_connection,
)

pytestmark = pytest.mark.slow

ROWS = 60_000
CHUNK = 500
COLUMNS = "id, updated_at, val, amount"
_PROGRESS = re.compile(r": ([\d,]+) records, ")
STEP_S = 0.01  # how long the reader runs per progress line while the test waits (interrupt)


DEDUP = "append_dedup"


@pytest.fixture
def chunked(monkeypatch) -> None:
    """Small source chunks: a STATE every CHUNK rows, so interruptions fall between many."""
    monkeypatch.setenv("PGBYTE_CURSOR_CHUNK_ROWS", str(CHUNK))


def make_items(source_conn, rows: int = ROWS) -> None:
    source_conn.execute("CREATE SEQUENCE items_version")
    source_conn.execute(
        "CREATE TABLE items(id bigint PRIMARY KEY, updated_at bigint NOT NULL "
        "DEFAULT nextval('items_version'), val text, amount numeric(12,2))"
    )
    source_conn.execute("CREATE INDEX items_updated_at ON items(updated_at)")
    insert_items(source_conn, 1, rows)


def insert_items(source_conn, first: int, last: int) -> None:
    source_conn.execute(
        "INSERT INTO items(id, val, amount) SELECT i, 'item ' || i || repeat('x', (i %% 50)::int), "
        "CASE WHEN i %% 7 = 0 THEN NULL ELSE (i %% 1000) / 4.0 END "
        "FROM generate_series(%s::bigint, %s::bigint) i",
        (first, last),
    )


def update_items(source_conn, every: int, tag: str) -> int:
    """Change every `every`-th row (new value, new cursor); returns how many changed."""
    cur = source_conn.execute(
        "UPDATE items SET val = val || %s, amount = coalesce(amount, 0) + 1, "
        "updated_at = nextval('items_version') WHERE id %% %s = 0",
        (tag, every),
    )
    return cur.rowcount


def items_connection(tmp_path, source_config, dest_config, mode: str, **extra: Any) -> Path:
    stream = {"name": "items", "sync_mode": "incremental", "cursor_field": "updated_at",
              "destination_sync_mode": mode}  # fmt: skip
    return write_connection(tmp_path, source_config, dest_config, streams=[stream], **extra)


Row = tuple[int, int, str | None, Decimal | None]


def source_rows(source_conn, where: str = "true") -> list[Row]:
    return sorted(source_conn.execute(f"SELECT {COLUMNS} FROM items WHERE {where}").fetchall())


def typed_rows(dest_conn, table: str = "public.items") -> list[Row]:
    return sorted(dest_conn.execute(f"SELECT {COLUMNS} FROM {table}").fetchall())


def raw_rows(dest_conn, table: str = "public._airbyte_raw_items") -> list[Row]:
    """The raw table's records as the same tuples (amount compared as a number)."""
    rows = dest_conn.execute(
        "SELECT (_airbyte_data->>'id')::bigint, (_airbyte_data->>'updated_at')::bigint, "
        f"_airbyte_data->>'val', (_airbyte_data->>'amount')::numeric FROM {table}"
    ).fetchall()
    return sorted(rows)


def _one_row_synced_then_more(tmp_path, pg_server, source_conn, source_config, dest_config):
    """An append connection whose first sync loaded one row (a first load reads ctid chunks),
    then ROWS-1 rows more in the source: the next sync reads by cursor. (conn, state file)."""
    make_items(source_conn, rows=1)
    conn = items_connection(tmp_path, source_config, dest_config, "append")
    first, _ = sync_json(conn, pg_server.password)
    assert first.returncode == 0, first.stderr[-3000:]
    insert_items(source_conn, 2, ROWS)
    return conn, tmp_path / ".pgbyte" / "state" / "conn.json"


def saved_cursor(state_file: Path) -> int | None:
    if not state_file.exists():
        return None
    for state in orjson.loads(state_file.read_bytes()):
        stream_state = state["stream"]["stream_state"]
        stream_state = stream_state.get("incremental_state", stream_state)
        if stream_state.get("cursor") is not None:
            return int(stream_state["cursor"])
    return None


@contextlib.contextmanager
def paced(reader: int, run_s: float = 0.01, pause_s: float = 0.03):
    """Slow the read about fourfold (the reader stopped `pause_s` of every `run_s + pause_s`)
    and leave the reader stopped at the end."""
    done = threading.Event()

    def pace() -> None:
        while not done.is_set():
            signal_pid(reader, signal.SIGCONT)
            time.sleep(run_s)
            signal_pid(reader, signal.SIGSTOP)
            time.sleep(pause_s)

    pacer = threading.Thread(target=pace, daemon=True)
    pacer.start()
    try:
        yield
    finally:
        done.set()
        pacer.join()  # its last act stopped the reader


def _progress(run: RunningSync, reader: int, deadline: float) -> int | None:
    """The record count of pgbyte's next progress line; None once it says the read is
    complete (no progress line follows)."""
    while True:
        line = run.next_line(deadline)
        if not line:
            signal_pid(reader, signal.SIGCONT)
            pytest.fail("pgbyte ended before the interruption:\n" + "".join(run.stderr))
        found = _PROGRESS.search(line)
        if found:
            return int(found.group(1).replace(",", ""))
        if line.rstrip().endswith(": read complete"):
            return None


def interrupt(run: RunningSync, victim: str, after_records: int) -> None:
    """Once `after_records` records were forwarded, stop the sync the way `victim` says.

    pgbyte prints a progress line about every 0.2 s, and a fast machine forwards tens of
    thousands of records in that time: unchecked, a whole read may fall between two lines and
    the sync end before the test acts. So the read is slowed (`paced`) until the first
    progress line; then the reader stays stopped, let run for STEP_S after each progress line,
    so that each line counts at most a step more. Once the count is reached the reader stays
    stopped, and the destination is stopped too where the blow is not for it, so that neither
    connector can finish before the blow lands; each is resumed right after. Should the read
    still complete first (a step bigger than the rows left), the blow lands at once: the
    destination, stopped, has not finished."""
    # Found now, while both surely run: by the time enough records went by, a source whose
    # last rows fit in the pipes may have ended (pgbyte-killed only checks that both are gone).
    reader, writer = run.connector("read"), run.connector("write")
    deadline = time.monotonic() + 180
    with paced(reader):
        count = _progress(run, reader, deadline)
    while count is not None and count < after_records:
        signal_pid(reader, signal.SIGCONT)
        time.sleep(STEP_S)
        signal_pid(reader, signal.SIGSTOP)
        count = _progress(run, reader, deadline)
    if count is None and victim == "source":
        signal_pid(reader, signal.SIGCONT)
        pytest.fail(f"the read completed before {after_records} records were forwarded")
    if victim == "source":
        signal_pid(writer, signal.SIGSTOP)
        signal_pid(reader, signal.SIGKILL)
        signal_pid(writer, signal.SIGCONT)
    elif victim == "destination":
        signal_pid(writer, signal.SIGKILL)
        signal_pid(reader, signal.SIGCONT)
    elif victim == "pgbyte":
        # pgbyte itself dies (kill -9, OOM): its connectors see a broken pipe / end of input
        # and end on their own; the re-run must not start before they are gone.
        signal_pid(writer, signal.SIGSTOP)
        run.proc.kill()
        run.proc.wait()
        signal_pid(reader, signal.SIGCONT)
        signal_pid(writer, signal.SIGCONT)
        wait_gone(reader, writer)
        assert not alive(reader) and not alive(writer), "connectors outlived pgbyte"
    else:  # Ctrl-C, or SIGHUP (the terminal or SSH session closed): stopped the same way
        signal_pgbyte(run.proc, signal.SIGHUP if victim == "sighup" else signal.SIGINT,
                      reader, writer)  # fmt: skip


def signal_pgbyte(proc: subprocess.Popen, signum: int, reader: int, writer: int) -> None:
    """Signal pgbyte with the (stopped) reader resumed and the destination held until pgbyte
    has stopped the source: the destination cannot finish before the blow lands."""
    signal_pid(writer, signal.SIGSTOP)
    signal_pid(reader, signal.SIGCONT)
    proc.send_signal(signum)
    wait_gone(reader)
    signal_pid(writer, signal.SIGCONT)


def drain(run: RunningSync) -> tuple[int, dict]:
    """Finish a background sync, keeping its stderr readable in failure messages."""
    try:
        code, summary, _ = run.finish(timeout=300)
    except subprocess.TimeoutExpired:
        run.kill()
        pytest.fail("an interrupted sync did not end")
    return code, summary


def interrupted_then_rerun(conn: Path, password: str, running_syncs, victim: str,
                           after_records: int) -> tuple[dict, dict]:  # fmt: skip
    """(summary of the interrupted sync, summary of the plain re-run)."""
    run = RunningSync(conn, password)
    running_syncs.append(run)
    interrupt(run, victim, after_records)
    if victim == "pgbyte":
        first: dict = {}  # killed: no summary
    else:
        code, first = drain(run)
        assert first["status"] in ("failed", "cancelled"), f"not interrupted ({code}): {first}"
    rerun, second = sync_json(conn, password)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    return first, second


KILLS = [
    pytest.param("source", 0.05, id="source-early"),
    pytest.param("source", 0.6, id="source-late"),
    pytest.param("destination", 0.3, id="destination"),
    pytest.param("sigint", 0.5, id="ctrl-c"),
    pytest.param("sighup", 0.5, id="terminal-closed"),
    pytest.param("pgbyte", 0.4, id="pgbyte-killed"),
]


@pytest.mark.parametrize(("victim", "share"), KILLS)
def test_append_rerun_after_interruption_has_every_row(
    victim, share, tmp_path, pg_server, source_conn, dest_conn, source_config, dest_config,
    chunked, running_syncs,
) -> None:  # fmt: skip
    """append: after an interrupted sync and a re-run, each source row is in raw and typed."""
    make_items(source_conn)
    conn = items_connection(tmp_path, source_config, dest_config, "append")
    interrupted_then_rerun(conn, pg_server.password, running_syncs, victim, int(ROWS * share))
    expected = set(source_rows(source_conn))
    raw, typed = raw_rows(dest_conn), typed_rows(dest_conn)
    assert (expected - set(raw), expected - set(typed)) == (set(), set())
    assert set(raw) == set(typed) == expected  # nothing invented either


@pytest.mark.parametrize(("victim", "share"), KILLS[1:5])
def test_rerun_resumes_from_the_committed_state(
    victim, share, tmp_path, pg_server, source_conn, dest_conn, source_config, dest_config,
    chunked, running_syncs,
) -> None:  # fmt: skip
    """A re-run after a late interruption reads only the rows after the saved cursor."""
    # A first load reads ctid chunks: one row loaded first, so the rows added next are read
    # by cursor, the read this test interrupts.
    conn, state_file = _one_row_synced_then_more(tmp_path, pg_server, source_conn, source_config,
                                                 dest_config)  # fmt: skip
    run = RunningSync(conn, pg_server.password)
    running_syncs.append(run)
    interrupt(run, victim, int(ROWS * share))
    drain(run)
    cursor = saved_cursor(state_file)
    assert cursor is not None, "no state committed before the interruption"
    rerun, second = sync_json(conn, pg_server.password)
    after = source_conn.execute(
        "SELECT count(*) FROM items WHERE updated_at > %s", (cursor,)
    ).fetchone()[0]
    assert (rerun.returncode, second["total"]["records_emitted"]) == (0, after)


@pytest.mark.parametrize(
    ("victim", "share"),
    [pytest.param(v, s, id=i) for v, s, i in
     (("source", 0.5, "source"), ("destination", 0.4, "destination"), ("sigint", 0.2, "ctrl-c"),
      ("pgbyte", 0.6, "pgbyte-killed"))],
)  # fmt: skip
def test_dedup_rerun_after_interruption_equals_the_source(
    victim, share, tmp_path, pg_server, source_conn, dest_conn, source_config, dest_config,
    chunked, running_syncs,
) -> None:  # fmt: skip
    """append_dedup: a sync of updates and inserts interrupted, then re-run: the typed table
    equals the source table."""
    make_items(source_conn)
    conn = items_connection(tmp_path, source_config, dest_config, "append_dedup")
    run, _ = sync_json(conn, pg_server.password)
    assert run.returncode == 0, run.stderr[-3000:]
    delta = update_items(source_conn, 3, " (v2)") + 25_000
    insert_items(source_conn, ROWS + 1, ROWS + 25_000)
    interrupted_then_rerun(conn, pg_server.password, running_syncs, victim, int(delta * share))
    assert typed_rows(dest_conn) == source_rows(source_conn)


@pytest.mark.parametrize("mode", ["append", DEDUP])
def test_insert_sync_update_insert_sync_matches_the_oracle(
    mode, tmp_path, pg_server, source_conn, dest_conn, source_config, dest_config, chunked,
) -> None:  # fmt: skip
    """Two syncs around updates and inserts: raw = first rows + changed rows; typed = raw
    (append) or the source table (append_dedup), row for row."""
    rows = 5_000
    make_items(source_conn, rows)
    conn = items_connection(tmp_path, source_config, dest_config, mode)
    first_run, _ = sync_json(conn, pg_server.password)
    assert first_run.returncode == 0, first_run.stderr[-3000:]
    first_rows = source_rows(source_conn)
    high = max(r[1] for r in first_rows)
    changed = update_items(source_conn, 10, " (v2)")
    insert_items(source_conn, rows + 1, rows + 700)
    second_run, second = sync_json(conn, pg_server.password)
    assert second_run.returncode == 0, second_run.stderr[-3000:]
    delta = source_rows(source_conn, f"updated_at > {high}")
    assert (len(delta), second["total"]["records_emitted"]) == (changed + 700, changed + 700)
    assert raw_rows(dest_conn) == sorted(first_rows + delta)
    if mode == "append":
        assert typed_rows(dest_conn) == sorted(first_rows + delta)
    else:
        assert typed_rows(dest_conn) == source_rows(source_conn)


def test_state_keeps_source_names_across_prefix_and_namespace(
    tmp_path, pg_server, source_conn, dest_conn, source_config, dest_config, chunked,
) -> None:  # fmt: skip
    """With a prefix and a custom namespace the saved state names the source stream, and the
    next sync reads only the new rows into the mapped table."""
    make_items(source_conn, 3_000)
    conn = items_connection(tmp_path, source_config, dest_config, "append", prefix="p_",
                            namespace="raw_${SOURCE_NAMESPACE}")  # fmt: skip
    run, _ = sync_json(conn, pg_server.password)
    assert run.returncode == 0, run.stderr[-3000:]
    state_file = tmp_path / ".pgbyte" / "state" / "conn.json"
    descriptors = [s["stream"]["stream_descriptor"] for s in orjson.loads(state_file.read_bytes())]
    insert_items(source_conn, 3_001, 3_010)
    run, summary = sync_json(conn, pg_server.password)
    assert run.returncode == 0, run.stderr[-3000:]
    assert descriptors == [{"name": "items", "namespace": "public"}]
    assert summary["total"]["records_emitted"] == 10
    assert typed_rows(dest_conn, "raw_public.p_items") == source_rows(source_conn)


@pytest.mark.parametrize("mode", ["append", DEDUP])
def test_interrupted_ctid_first_load_resumes_from_its_checkpoint(
    mode, tmp_path, pg_server, source_conn, dest_conn, source_config, dest_config, chunked,
    running_syncs,
) -> None:  # fmt: skip
    """An unindexed cursor's first load (ctid chunks) killed midway saves a ctid state; the
    re-run goes on from it (fewer records than the table) and every row arrives."""
    make_items(source_conn)
    source_conn.execute("DROP INDEX items_updated_at")
    source_conn.execute("ANALYZE items")
    conn = items_connection(tmp_path, source_config, dest_config, mode)
    state_file = tmp_path / ".pgbyte" / "state" / "conn.json"
    run = RunningSync(conn, pg_server.password)
    running_syncs.append(run)
    interrupt(run, "source", ROWS // 2)
    drain(run)
    kinds = [s["stream"]["stream_state"].get("state_type") for s in
             orjson.loads(state_file.read_bytes())]  # fmt: skip
    rerun, second = sync_json(conn, pg_server.password)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert (kinds, 0 < second["total"]["records_emitted"] < ROWS) == (["ctid"], True)
    expected = source_rows(source_conn)
    if mode == "append":
        assert set(typed_rows(dest_conn)) == set(raw_rows(dest_conn)) == set(expected)
    else:
        assert typed_rows(dest_conn) == expected


def test_a_closed_terminal_still_ends_the_sync_cleanly(
    tmp_path, pg_server, source_conn, dest_conn, source_config, dest_config, chunked
) -> None:
    """pgbyte's terminal goes away mid-sync (its output a pty whose other side closes, then
    SIGHUP, as when an SSH session drops): every write to it now fails (EIO), and still the
    sync stops its connectors, saves the state the destination committed and writes its
    history entry (exit 129); the re-run then reads only what follows that state."""
    conn, state_file = _one_row_synced_then_more(tmp_path, pg_server, source_conn, source_config,
                                                 dest_config)  # fmt: skip
    history = state_file.with_name("conn.history.jsonl")
    before = saved_cursor(state_file)
    master, slave = pty.openpty()
    proc = subprocess.Popen(
        [console_script("pgbyte"), "sync", str(conn)], stdin=subprocess.DEVNULL, stdout=slave,
        stderr=slave, env=pgbyte_env(pg_server.password), preexec_fn=hangups_end_it,
    )  # fmt: skip
    os.close(slave)
    connectors: list[int] = []
    try:
        reader, writer = connector_pid(proc.pid, "read"), connector_pid(proc.pid, "write")
        connectors += [reader, writer]
        deadline = time.monotonic() + 120
        with paced(reader):  # so that the sync cannot end before the state is seen
            while saved_cursor(state_file) == before:  # a state of this sync is committed
                assert proc.poll() is None, "the sync ended before it was interrupted"
                assert time.monotonic() < deadline, "no state committed in 120 s"
                with contextlib.suppress(OSError):
                    if select.select([master], [], [], 0.05)[0]:
                        os.read(master, 65536)  # a terminal reads what it is shown
        os.close(master)
        master = -1
        signal_pgbyte(proc, signal.SIGHUP, reader, writer)
        assert proc.wait(timeout=60) == 129
    finally:
        if master >= 0:
            os.close(master)
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for pid in connectors:  # a failed test may have left one stopped
            signal_pid(pid, signal.SIGCONT)
    last = orjson.loads(history.read_bytes().splitlines()[-1])
    assert last["status"] == "cancelled", last
    cursor = saved_cursor(state_file)
    assert cursor is not None and cursor != before
    rerun, second = sync_json(conn, pg_server.password)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    after = source_conn.execute("SELECT count(*) FROM items WHERE updated_at > %s",
                                (cursor,)).fetchone()[0]  # fmt: skip
    assert second["total"]["records_emitted"] == after


def test_states_echoed_before_the_source_goes_quiet_are_saved_soon(
    tmp_path, pg_server, source_conn, source_config, dest_config, chunked, running_syncs,
) -> None:  # fmt: skip
    """A source that checkpoints a few times a second, then hangs before its end: the last
    state the destination echoed is saved within seconds, while the sync still runs (before,
    states were saved only as a later one came back, at most once a second, or at the end)."""
    make_items(source_conn, rows=1)
    conn = items_connection(tmp_path, source_config, dest_config, "append")
    first, _ = sync_json(conn, pg_server.password)
    assert first.returncode == 0, first.stderr[-3000:]
    insert_items(source_conn, 2, 6 * CHUNK)
    source = console_script("source-postgres")
    quiet = tmp_path / "quiet-source"
    quiet.write_text(
        "#!/bin/sh\n"
        f'if [ "$1" != read ]; then exec {source} "$@"; fi\n'
        f'{source} "$@" | while IFS= read -r line; do\n'
        '  printf "%s\\n" "$line"\n'
        '  case "$line" in *\'"type":"STATE"\'*) sleep 0.3;; esac\n'
        "done\n"
        "exec sleep 300\n"  # the read is over, the source says nothing more and does not exit
    )
    quiet.chmod(0o755)
    conn.write_text(conn.read_text().replace(source, str(quiet)))
    state_file = tmp_path / ".pgbyte" / "state" / "conn.json"
    last = source_conn.execute("SELECT max(updated_at) FROM items").fetchone()[0]
    run = RunningSync(conn, pg_server.password)
    running_syncs.append(run)
    deadline = time.monotonic() + 60
    while saved_cursor(state_file) != last and time.monotonic() < deadline:
        assert run.proc.poll() is None, "the sync ended"
        time.sleep(0.1)
    assert saved_cursor(state_file) == last
    assert run.proc.poll() is None  # saved while the source still hangs
