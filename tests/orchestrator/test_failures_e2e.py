"""Failed syncs with the real connectors: killed source, failing destination, Ctrl-C, bad input.

Whatever ends a sync early, pgbyte must exit non-zero with a reason, leave no connector running,
keep the previous overwrite tables, and save no state beyond what the destination echoed.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess

import pytest
from orchestrator_helpers import (
    PASSWORD_VAR,
    RunningSync,
    alive,
    console_script,
    pgbyte,
    sync_json,
    wait_gone,
    write_connection,
)

pytestmark = pytest.mark.slow
BIG_ROWS = 300_000


@pytest.fixture
def big_setup(tmp_path, pg_server, source_conn, source_config, dest_config, dest_conn):
    """A table synced once with 3 rows (the 'previous tables'), then grown to BIG_ROWS rows."""
    source_conn.execute("CREATE TABLE big(id integer PRIMARY KEY, payload text)")
    source_conn.execute("INSERT INTO big SELECT i, 'row ' || i FROM generate_series(1, 3) i")
    conn = write_connection(tmp_path, source_config, dest_config, prefix="ow_",
                            namespace="destination")  # fmt: skip
    run, _ = sync_json(conn, pg_server.password)
    assert run.returncode == 0, run.stderr
    source_conn.execute(
        "INSERT INTO big SELECT i, repeat(md5(i::text), 4) FROM generate_series(4, %s) i",
        (BIG_ROWS,),
    )
    state_path = tmp_path / ".pgbyte" / "state" / "conn.json"
    return conn, state_path, state_path.read_bytes()


def dest_counts(dest_conn) -> tuple[int, int]:
    return (
        dest_conn.execute('SELECT count(*) FROM public."ow_big"').fetchone()[0],
        dest_conn.execute('SELECT count(*) FROM public."_airbyte_raw_ow_big"').fetchone()[0],
    )


def start_and_wait_for_records(conn, password, running_syncs) -> tuple[RunningSync, int, int]:
    """A background sync once records flow: (run, reader pid, writer pid), the pids found
    before the wait so that the test acts the moment the first progress line comes."""
    run = RunningSync(conn, password)
    running_syncs.append(run)
    reader, writer = run.connector("read"), run.connector("write")
    run.wait_for_line(" records, ")  # a progress line: records are flowing
    return run, reader, writer


def test_source_killed_mid_sync_keeps_previous_tables(big_setup, pg_server, dest_conn,
                                                      running_syncs) -> None:  # fmt: skip
    """A source killed mid-stream: sync failed, overwrite tables as before, state unchanged."""
    conn, state_path, state_before = big_setup
    run, reader, writer = start_and_wait_for_records(conn, pg_server.password, running_syncs)
    # A paused destination fills the pipes, so the source cannot finish before it is killed.
    os.kill(writer, signal.SIGSTOP)
    os.kill(reader, signal.SIGKILL)
    os.kill(writer, signal.SIGCONT)
    code, summary, _ = run.finish()
    assert (code, summary["status"]) == (1, "failed")
    assert "source" in summary["reason"] and "killed by SIGKILL" in summary["reason"], summary
    assert dest_counts(dest_conn) == (3, 3)
    assert state_path.read_bytes() == state_before


def test_destination_killed_mid_sync_stops_the_source(big_setup, pg_server, dest_conn,
                                                      running_syncs) -> None:  # fmt: skip
    """A destination killed mid-stream: sync failed, source stopped, no new state saved."""
    conn, state_path, state_before = big_setup
    run, reader, writer = start_and_wait_for_records(conn, pg_server.password, running_syncs)
    os.kill(reader, signal.SIGSTOP)  # the source cannot finish before the destination dies
    os.kill(writer, signal.SIGKILL)
    os.kill(reader, signal.SIGCONT)
    code, summary, _ = run.finish()
    assert (code, summary["status"], "destination" in summary["reason"]) == (1, "failed", True)
    assert not alive(reader)
    assert dest_counts(dest_conn) == (3, 3)
    assert state_path.read_bytes() == state_before


def test_ctrl_c_cancels_and_stops_both_connectors(big_setup, pg_server, dest_conn,
                                                  running_syncs) -> None:  # fmt: skip
    """SIGINT to pgbyte: exit 130, both connectors gone, previous tables and state kept."""
    conn, state_path, state_before = big_setup
    run, reader, writer = start_and_wait_for_records(conn, pg_server.password, running_syncs)
    os.kill(writer, signal.SIGSTOP)  # the pipes fill up: the source cannot finish first
    run.proc.send_signal(signal.SIGINT)
    wait_gone(reader)  # pgbyte stopped the source; let the destination see its SIGTERM
    os.kill(writer, signal.SIGCONT)
    code, summary, _ = run.finish()
    assert (code, summary["status"]) == (130, "cancelled")
    assert [s["status"] for s in summary["streams"]] == ["cancelled"], summary["streams"]
    assert not alive(reader) and not alive(writer)
    assert dest_counts(dest_conn) == (3, 3)
    assert state_path.read_bytes() == state_before


def test_failing_destination_reports_its_message(tmp_path, pg_server, source_conn,
                                                 source_config, dest_config) -> None:  # fmt: skip
    """A destination that cannot connect: exit 1, its own message as reason, no state saved."""
    source_conn.execute("CREATE TABLE t(id integer PRIMARY KEY)")
    bad = {**dest_config, "database": "no_such_database_here"}
    conn = write_connection(tmp_path, source_config, bad)
    run, summary = sync_json(conn, pg_server.password)
    assert (run.returncode, summary["status"]) == (1, "failed")
    assert "no_such_database_here" in summary["reason"]
    assert not (tmp_path / ".pgbyte" / "state" / "conn.json").exists()


def test_wrong_password_is_never_echoed(tmp_path, pg_server, source_conn, source_config,
                                        dest_config) -> None:  # fmt: skip
    """A wrong destination password fails the sync; the wrong password is in no output."""
    source_conn.execute("CREATE TABLE t(id integer PRIMARY KEY)")
    wrong = "Wr0ng-" + pg_server.password[::-1]
    conn = write_connection(tmp_path, source_config, dest_config, dest_password=wrong)
    run = pgbyte("sync", str(conn), password=pg_server.password)
    history = (tmp_path / ".pgbyte" / "state" / "conn.history.jsonl").read_text()
    assert run.returncode == 1
    assert wrong not in run.stdout + run.stderr + history


def test_missing_environment_variable_is_named(tmp_path, source_config, dest_config) -> None:
    """A connection file using an unset ${VAR}: exit 2 and the message names the variable."""
    conn = write_connection(tmp_path, source_config, dest_config)
    env = {k: v for k, v in os.environ.items() if k != PASSWORD_VAR}
    run = subprocess.run([console_script("pgbyte"), "sync", str(conn)], env=env,
                         capture_output=True, text=True, timeout=60, check=False)  # fmt: skip
    assert run.returncode == 2 and PASSWORD_VAR in run.stderr
    # --json: a script still gets one JSON object on stdout saying so.
    run = subprocess.run([console_script("pgbyte"), "check", str(conn), "--json"], env=env,
                         capture_output=True, text=True, timeout=60, check=False)  # fmt: skip
    failure = json.loads(run.stdout)
    assert (run.returncode, failure["status"], failure["exit_code"]) == (2, "failed", 2)
    assert PASSWORD_VAR in failure["error"]


@pytest.mark.parametrize(
    "args", [["sync", "--json"], ["sync", "c.yaml", "--json", "--progress-every", "abc"]],
    ids=["no-file", "bad-option"],
)  # fmt: skip
def test_wrong_arguments_with_json_still_print_one_json_object(args) -> None:
    """Arguments argparse refuses: exit 2, its usage and error on stderr and, with --json, one
    JSON object on stdout saying so."""
    run = subprocess.run([console_script("pgbyte"), *args], capture_output=True, text=True,
                         timeout=60, check=False)  # fmt: skip
    failure = json.loads(run.stdout)
    assert (run.returncode, failure["status"], failure["exit_code"]) == (2, "failed", 2)
    assert "error:" in failure["error"] and "usage:" in run.stderr


def test_config_not_matching_spec_is_refused(tmp_path, pg_server, source_config,
                                             dest_config) -> None:  # fmt: skip
    """A config the connector's spec rejects fails before any data moves, naming the field:
    the connection file's mistake (exit 2, as every other), not a failed sync."""
    conn = write_connection(tmp_path, {**source_config, "port": "not-a-port"}, dest_config)
    run, failure = sync_json(conn, pg_server.password)
    assert (run.returncode, failure["status"], failure["exit_code"]) == (2, "failed", 2)
    assert "port" in failure["error"]


def test_config_error_does_not_wait_for_discover(tmp_path, pg_server, source_config,
                                                 dest_config) -> None:  # fmt: skip
    """A destination config its spec rejects is reported as soon as the specs are in, even
    when the source's discover would take ten minutes; that discover is stopped."""
    marker = f"{600 + os.getpid() % 1000}.5"  # a `sleep` argument no other process has
    source = tmp_path / "slow-discover-source"
    source.write_text(
        "#!/bin/sh\n"
        f'if [ "$1" = discover ]; then exec sleep {marker}; fi\n'
        f'exec {console_script("source-postgres")} "$@"\n'
    )
    source.chmod(0o755)
    conn = write_connection(tmp_path, source_config, {**dest_config, "port": "not-a-port"})
    body = conn.read_text().replace(console_script("source-postgres"), str(source))
    conn.write_text(body)
    run, failure = sync_json(conn, pg_server.password)  # times out (180 s) if it waits
    assert (run.returncode, failure["status"]) == (2, "failed")
    assert "port" in failure["error"]
    sleeping = [pid for pid in os.listdir("/proc") if pid.isdigit()
                and marker.encode() in _cmdline(pid)]  # fmt: skip
    assert sleeping == []


def _cmdline(pid: str) -> bytes:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as handle:
            return handle.read()
    except OSError:
        return b""


def test_overwrite_not_swapped_reports_nothing_committed(tmp_path, pg_server, source_conn,
                                                         source_config, dest_config,
                                                         dest_conn) -> None:  # fmt: skip
    """A source that fails after its STATE was echoed but before its stream's COMPLETE: the
    destination keeps the previous overwrite tables, so the summary (and the history that
    `state show` reads) says 0 records committed, not what reached the dropped temporaries."""
    source_conn.execute("CREATE TABLE t(id integer PRIMARY KEY)")
    source_conn.execute("INSERT INTO t VALUES (1)")
    conn = write_connection(tmp_path, source_config, dest_config, prefix="ow_",
                            namespace="destination")  # fmt: skip
    first = sync_json(conn, pg_server.password)[0]
    assert first.returncode == 0
    assert "t → ow_t: read complete" in first.stderr  # the source's status, named as such
    source_conn.execute("INSERT INTO t VALUES (2), (3)")
    source = tmp_path / "no-complete-source"
    source.write_text(
        "#!/bin/sh\n"
        f'if [ "$1" != read ]; then exec {console_script("source-postgres")} "$@"; fi\n'
        f'{console_script("source-postgres")} "$@" | grep -v \'"status":"COMPLETE"\'\n'
        "exit 1\n"
    )
    source.chmod(0o755)
    conn.write_text(conn.read_text().replace(console_script("source-postgres"), str(source)))
    run, summary = sync_json(conn, pg_server.password)
    assert (run.returncode, summary["status"]) == (1, "failed")
    # The destination holds an overwrite stream's states until the swap, which never came.
    assert summary["states_committed"] == 0
    (stream,) = summary["streams"]
    assert (stream["records_emitted"], stream["records_committed"]) == (3, 0)
    assert dest_conn.execute('SELECT count(*) FROM public."ow_t"').fetchone()[0] == 1


def test_failed_source_commits_nothing_past_the_last_state(tmp_path, pg_server, source_conn,
                                                           source_config, dest_config,
                                                           dest_conn) -> None:  # fmt: skip
    """A source that sends records, then fails before its next STATE: pgbyte hands the failure
    to the destination (as a shell pipe does), which commits none of those records — an append
    stream keeps its rows (before, they were committed while the summary said 0)."""
    source_conn.execute("CREATE TABLE t(id integer PRIMARY KEY)")
    source_conn.execute("INSERT INTO t SELECT generate_series(1, 14)")
    streams = [{"name": "t", "sync_mode": "full_refresh", "destination_sync_mode": "append"}]
    conn = write_connection(tmp_path, source_config, dest_config, prefix="ap_", streams=streams)
    assert sync_json(conn, pg_server.password)[0].returncode == 0
    source = tmp_path / "failing-source"
    source.write_text(
        "#!/bin/sh\n"
        f'if [ "$1" != read ]; then exec {console_script("source-postgres")} "$@"; fi\n'
        f'{console_script("source-postgres")} "$@" | sed \'/"type":"STATE"/,$d\'\n'
        'echo \'{"type":"TRACE","trace":{"type":"ERROR","emitted_at":1,"error":'
        '{"message":"simulated: connection lost","failure_type":"transient_error"}}}\'\n'
        "exit 1\n"
    )
    source.chmod(0o755)
    conn.write_text(conn.read_text().replace(console_script("source-postgres"), str(source)))
    run, summary = sync_json(conn, pg_server.password)
    assert (run.returncode, summary["status"]) == (1, "failed")
    assert "simulated: connection lost" in summary["reason"]
    (stream,) = summary["streams"]
    assert (stream["records_emitted"], stream["records_committed"]) == (14, 0)
    assert dest_conn.execute('SELECT count(*) FROM public."ap_t"').fetchone()[0] == 14


def test_failed_swap_reports_nothing_committed(tmp_path, pg_server, source_conn, source_config,
                                               dest_config, dest_conn) -> None:  # fmt: skip
    """The source completes but the destination cannot swap (a view depends on the table):
    the summary says 0 committed for that stream and no state is saved from it."""
    source_conn.execute("CREATE TABLE t(id integer PRIMARY KEY)")
    source_conn.execute("INSERT INTO t VALUES (1)")
    conn = write_connection(tmp_path, source_config, dest_config, prefix="sw_",
                            namespace="destination")  # fmt: skip
    assert sync_json(conn, pg_server.password)[0].returncode == 0
    dest_conn.execute('CREATE VIEW sw_v AS SELECT * FROM public."sw_t"')
    source_conn.execute("INSERT INTO t VALUES (2)")
    run, summary = sync_json(conn, pg_server.password)
    assert (run.returncode, summary["status"]) == (1, "failed")
    assert "drop_cascade" in summary["reason"]
    (stream,) = summary["streams"]
    assert (stream["records_emitted"], stream["records_committed"]) == (2, 0)
    assert summary["states_committed"] == 0
    assert dest_conn.execute('SELECT count(*) FROM public."sw_t"').fetchone()[0] == 1


def test_broken_record_as_the_unterminated_last_line_fails_the_sync(
    tmp_path, pg_server, source_conn, source_config, dest_config
) -> None:  # fmt: skip
    """A source that exits 0 after a last line with no newline that is a broken RECORD: the
    sync fails as a source error naming it (before, that line was dropped without a word)."""
    source_conn.execute("CREATE TABLE small(id integer PRIMARY KEY)")
    source_conn.execute("INSERT INTO small VALUES (1), (2)")
    real = console_script("source-postgres")
    source = tmp_path / "tail-source"
    source.write_text(
        "#!/bin/sh\n"
        f'if [ "$1" != read ]; then exec {real} "$@"; fi\n'
        f'{real} "$@" || exit $?\n'
        """printf '%s' '{"type": "RECORD", "record": {"stream": "small", "data": {"id": '\n"""
    )
    source.chmod(0o755)
    conn = write_connection(tmp_path, source_config, dest_config)
    conn.write_text(conn.read_text().replace(real, str(source)))
    run, summary = sync_json(conn, pg_server.password)
    assert (run.returncode, summary["status"]) == (1, "failed"), run.stderr[-3000:]
    assert "not valid JSON" in summary["reason"], summary["reason"]


def test_a_state_that_cannot_be_saved_fails_the_sync(tmp_path, pg_server, source_conn,
                                                     source_config, dest_config,
                                                     dest_conn) -> None:  # fmt: skip
    """The state directory's disk is full: the destination committed the records, but the
    saved state is the old one, so the next sync sends them again. The sync fails (exit 1) and
    says so, rather than succeed and leave append to double the rows unnoticed."""
    full = tmp_path / "full"
    full.mkdir()
    mount = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(full)],
                           capture_output=True, check=False)  # fmt: skip
    if mount.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mount.stderr!r}")
    try:
        source_conn.execute("CREATE TABLE inc(id integer PRIMARY KEY)")
        source_conn.execute("INSERT INTO inc SELECT generate_series(1, 100)")
        streams = [{"name": "inc", "sync_mode": "incremental", "cursor_field": ["id"],
                    "destination_sync_mode": "append"}]  # fmt: skip
        conn = write_connection(tmp_path, source_config, dest_config, prefix="full_",
                                streams=streams, state=str(full / "state.json"))  # fmt: skip
        assert sync_json(conn, pg_server.password)[0].returncode == 0
        saved = (full / "state.json").read_bytes()
        with contextlib.suppress(OSError), open(full / "filler", "wb", buffering=0) as filler:
            while True:  # until the disk is full
                filler.write(b"\0" * 1024)
        source_conn.execute("INSERT INTO inc SELECT generate_series(101, 150)")
        run, summary = sync_json(conn, pg_server.password)
        assert (run.returncode, summary["status"]) == (1, "failed"), (run.stdout, run.stderr)
        assert "could not save the state" in summary["reason"]
        assert "sends those after it again" in summary["reason"]
        assert (full / "state.json").read_bytes() == saved
        assert dest_conn.execute('SELECT count(*) FROM public."full_inc"').fetchone()[0] == 150
    finally:
        subprocess.run(["umount", "-l", str(full)], check=False)


def test_a_cancel_as_the_connectors_start_is_reported_as_cancelled(
    tmp_path, pg_server, source_conn, source_config, dest_config
) -> None:  # fmt: skip
    """SIGTERM to pgbyte as the connectors start (here sent by the destination as it starts):
    the source, stopped before its handlers are in place, dies killed by SIGTERM. The sync is
    cancelled (exit 143, status "cancelled"), not failed with the reason "The source read
    ended killed by SIGTERM": the cancel stopped it. No state is saved."""
    source_conn.execute("CREATE TABLE t(id integer PRIMARY KEY)")
    dest = tmp_path / "signalling-destination"
    dest.write_text(
        "#!/bin/sh\n"
        f'if [ "$1" != write ]; then exec {console_script("destination-postgres")} "$@"; fi\n'
        'kill -TERM "$PPID"\n'  # pgbyte, its parent
        f'exec {console_script("destination-postgres")} "$@"\n'
    )
    dest.chmod(0o755)
    conn = write_connection(tmp_path, source_config, dest_config)
    conn.write_text(conn.read_text().replace(console_script("destination-postgres"), str(dest)))
    for _ in range(5):  # each run has its own timing: every one must say "cancelled"
        run, summary = sync_json(conn, pg_server.password)
        assert (run.returncode, summary["status"]) == (143, "cancelled"), summary
    assert not (tmp_path / ".pgbyte" / "state" / "conn.json").exists()
