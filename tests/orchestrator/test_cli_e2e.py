"""`pgbyte check | discover | state | history` with the real connectors, and `make demo`."""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import orjson
import pytest
import yaml
from orchestrator_helpers import (
    REPO_ROOT,
    console_script,
    pgbyte,
    pgbyte_env,
    sync_json,
    write_connection,
)


def test_check_succeeds_for_good_configs(
    tmp_path, pg_server, source_conn, source_config, dest_config
) -> None:
    """`pgbyte check` reports both connectors succeeded and exits 0."""
    source_conn.execute("CREATE TABLE t(id integer PRIMARY KEY)")
    conn = write_connection(tmp_path, source_config, dest_config)
    run = pgbyte("check", str(conn), "--json", password=pg_server.password)
    assert (run.returncode, [c["ok"] for c in orjson.loads(run.stdout)]) == (0, [True, True])


@pytest.mark.parametrize("where", ["before", "after"])
def test_verbose_goes_before_or_after_the_command(
    tmp_path, pg_server, source_conn, source_config, dest_config, where
) -> None:
    """`pgbyte -v check CONN` is taken as `pgbyte check -v CONN` is (it was refused)."""
    conn = write_connection(tmp_path, source_config, dest_config)
    args = ["-v", "check", str(conn)] if where == "before" else ["check", "-v", str(conn)]
    run = pgbyte(*args, "--json", password=pg_server.password)
    assert (run.returncode, [c["ok"] for c in orjson.loads(run.stdout)]) == (0, [True, True])


def test_check_fails_for_a_wrong_database(tmp_path, pg_server, source_config, dest_config):
    """`pgbyte check` exits 1 when a connector cannot connect, naming which one."""
    conn = write_connection(tmp_path, {**source_config, "database": "nope_db"}, dest_config)
    run = pgbyte("check", str(conn), password=pg_server.password)
    assert run.returncode == 1 and "source: FAILED" in run.stdout


def test_discover_lists_streams_with_keys_and_columns(
    tmp_path, pg_server, source_conn, source_config, dest_config
) -> None:
    """`pgbyte discover` prints each stream with its primary key and column count."""
    source_conn.execute("CREATE TABLE full_refresh_demo(id integer PRIMARY KEY, name text)")
    conn = write_connection(tmp_path, source_config, dest_config)
    run = pgbyte("discover", str(conn), password=pg_server.password)
    line = next(x for x in run.stdout.splitlines() if "public.full_refresh_demo" in x)
    assert line.split()[-2:] == ["id", "2"]


def test_state_reset_forgets_the_state(tmp_path, pg_server, source_conn, source_config,
                                       dest_config) -> None:  # fmt: skip
    """`state show --json` prints the saved state; `state reset` removes it."""
    source_conn.execute("CREATE TABLE t(id integer PRIMARY KEY)")
    conn = write_connection(tmp_path, source_config, dest_config)
    sync_json(conn, pg_server.password)
    shown = orjson.loads(pgbyte("state", "show", str(conn), "--json", password="").stdout)
    pgbyte("state", "reset", str(conn), password="")
    after = orjson.loads(pgbyte("state", "show", str(conn), "--json", password="").stdout)
    assert (len(shown) >= 1, after) == (True, [])


@pytest.mark.slow
def test_make_demo_replays_the_tutorial() -> None:
    """`python -m pgbyte.demo` (what `make demo` runs) succeeds and shows the tutorial's results."""
    run = subprocess.run(
        [sys.executable, "-m", "pgbyte.demo"], cwd=REPO_ROOT, capture_output=True, text=True,
        timeout=600, check=False,
    )  # fmt: skip
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    for needle in (
        "_airbyte_raw_append_full_refresh_demo", "overwrite_full_refresh_demo",
        "(4 rows)", "3 records emitted", "overwrite_full_refresh_demo: 3 rows",
        "append_full_refresh_demo: 5 rows",
    ):  # fmt: skip
        assert needle in run.stdout


def test_ctrl_c_before_the_sync_starts_exits_130_without_a_traceback(tmp_path) -> None:
    """Ctrl-C while pgbyte still reads its connection file (before its own handler is
    installed): exit 130 with one line saying so, no traceback."""
    fifo = tmp_path / "conn.yaml"
    os.mkfifo(fifo)  # reading it blocks until we write: a slow file system, in effect
    proc = subprocess.Popen([console_script("pgbyte"), "sync", str(fifo)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)  # fmt: skip
    writer = None
    deadline = time.monotonic() + 30
    while writer is None and time.monotonic() < deadline:
        try:  # succeeds once pgbyte has the file open for reading
            writer = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
        except OSError as exc:
            assert exc.errno == errno.ENXIO
            time.sleep(0.02)
    assert writer is not None, "pgbyte never opened its connection file"
    try:
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=30)
    finally:
        os.close(writer)
    assert proc.returncode == 130, err
    assert b"Traceback" not in err, err
    assert b"pgbyte: cancelled by signal 2" in err


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_while_pgbyte_is_still_importing_is_a_clean_cancel(tmp_path, signum) -> None:
    """Ctrl-C or SIGTERM during the imports (the first tenth of a second): exit 130 or 143, one
    line on stderr, with --json the one JSON object saying "cancelled"; no traceback, no crash
    inside a C
    extension's initialisation (orjson's segfaulted when interrupted). The signal is sent from
    inside the import of orjson, so it lands there every time."""
    driver = (
        "import builtins, os, signal, sys\n"
        "real = builtins.__import__\n"
        "def hook(name, *args, **kwargs):\n"
        "    if name == 'orjson' and 'orjson' not in sys.modules:\n"
        f"        os.kill(os.getpid(), {int(signum)})\n"
        "    return real(name, *args, **kwargs)\n"
        "builtins.__import__ = hook\n"
        "sys.argv = ['pgbyte', 'sync', sys.argv[1], '--json']\n"
        "from pgbyte.entry import main\n"
        "main()\n"
    )
    python = Path(console_script("pgbyte")).parent / "python"
    proc = subprocess.run([str(python), "-c", driver, str(tmp_path / "conn.yaml")],
                          capture_output=True, timeout=60)  # fmt: skip
    code = 128 + int(signum)
    assert proc.returncode == code, proc.stderr
    assert b"Traceback" not in proc.stderr, proc.stderr
    text = f"cancelled by signal {int(signum)}"
    assert proc.stderr.strip().endswith(f"pgbyte: {text}".encode()), proc.stderr
    assert json.loads(proc.stdout) == {"status": "cancelled", "error": text, "exit_code": code}


def test_ctrl_c_while_the_arguments_are_parsed_is_a_clean_cancel(tmp_path) -> None:
    """Ctrl-C right after the imports, while the arguments are parsed (the version is read from
    the package's metadata then): exit 130 with --json's one JSON object, no traceback."""
    driver = (
        "import os, signal, sys\n"
        "sys.argv = ['pgbyte', 'sync', sys.argv[1], '--json']\n"
        "import pgbyte.cli as cli\n"
        "real = cli._parser\n"
        "def parser():\n"
        "    os.kill(os.getpid(), signal.SIGINT)\n"
        "    return real()\n"
        "cli._parser = parser\n"
        "from pgbyte.entry import main\n"
        "main()\n"
    )
    python = Path(console_script("pgbyte")).parent / "python"
    proc = subprocess.run([str(python), "-c", driver, str(tmp_path / "conn.yaml")],
                          capture_output=True, timeout=60)  # fmt: skip
    assert proc.returncode == 130, proc.stderr
    assert b"Traceback" not in proc.stderr, proc.stderr
    assert json.loads(proc.stdout)["status"] == "cancelled"


@pytest.mark.parametrize("command", ["sync", "state-show"])
def test_a_sigterm_while_the_connection_file_is_read_is_a_clean_cancel(tmp_path, command) -> None:
    """SIGTERM after the imports, before a sync's own handler is in (while the connection file
    is read): exit 143 with --json's one JSON object; it ended pgbyte by the default action
    (exit -15, nothing printed). A command without a session (state show) too."""
    (tmp_path / "conn.yaml").write_text(
        "source: {command: source-postgres, config: {}}\n"
        "destination: {command: destination-postgres, config: {}}\n"
    )
    argv = ["sync", str(tmp_path / "conn.yaml"), "--json"]
    if command == "state-show":
        argv = ["state", "show", str(tmp_path / "conn.yaml"), "--json"]
    driver = (
        "import os, signal, sys\n"
        f"sys.argv = ['pgbyte', *{argv!r}]\n"
        "import pgbyte.cli as cli\n"
        "real = cli.load_connection\n"
        "def load(*args, **kwargs):\n"
        "    os.kill(os.getpid(), signal.SIGTERM)\n"
        "    return real(*args, **kwargs)\n"
        "cli.load_connection = load\n"
        "from pgbyte.entry import main\n"
        "main()\n"
    )
    python = Path(console_script("pgbyte")).parent / "python"
    proc = subprocess.run([str(python), "-c", driver], capture_output=True, timeout=60)
    assert proc.returncode == 143, proc.stderr
    assert b"Traceback" not in proc.stderr, proc.stderr
    assert json.loads(proc.stdout)["status"] == "cancelled"


def test_a_killed_commands_private_files_go_with_the_next_command(
    tmp_path, pg_server, source_config, dest_config
) -> None:
    """pgbyte killed with SIGKILL cannot remove its private directory (configs with passwords):
    the next pgbyte command removes it; a directory whose command still runs stays."""
    hung = _hung_connection(tmp_path)
    proc = subprocess.Popen([console_script("pgbyte"), "check", str(hung)], start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    tmp = Path(tempfile.gettempdir())
    try:
        deadline = time.monotonic() + 30
        while not list(tmp.glob(f"pgbyte-{proc.pid}-*")) and time.monotonic() < deadline:
            time.sleep(0.05)
        (left,) = tmp.glob(f"pgbyte-{proc.pid}-*")  # the killed command's directory
        live = Path(tempfile.mkdtemp(prefix=f"pgbyte-{os.getpid()}-"))  # a running command's
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # pgbyte and its connectors
        proc.wait()
    try:
        assert left.is_dir()
        conn = write_connection(tmp_path, source_config, dest_config)
        run = pgbyte("check", str(conn), password=pg_server.password)
        assert run.returncode == 0, run.stderr
        assert not left.exists()
        assert live.is_dir()
    finally:
        shutil.rmtree(live, ignore_errors=True)


def test_nohup_keeps_pgbyte_running_through_a_hangup(tmp_path) -> None:
    """Started with SIGHUP ignored (`nohup pgbyte …`), pgbyte keeps it ignored: a hangup does
    not cancel the command (SIGTERM still does)."""
    conn = _hung_connection(tmp_path)

    def ignore_hangups() -> None:
        signal.signal(signal.SIGHUP, signal.SIG_IGN)

    proc = subprocess.Popen([console_script("pgbyte"), "check", str(conn)], start_new_session=True,
                            preexec_fn=ignore_hangups, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        while not list(Path(tempfile.gettempdir()).glob(f"pgbyte-{proc.pid}-*")):
            assert time.monotonic() < deadline, "pgbyte never started its session"
            time.sleep(0.05)
        proc.send_signal(signal.SIGHUP)
        time.sleep(1)
        assert proc.poll() is None, f"a hangup ended pgbyte under nohup ({proc.returncode})"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 143
    finally:
        with contextlib.suppress(ProcessLookupError):  # pgbyte stopped its connectors itself
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def _hung_connection(tmp_path: Path) -> Path:
    """A connection whose connectors never answer (each sleeps a minute): pgbyte stays in its
    first calls for as long as a test needs it running."""
    slow = tmp_path / "slow-connector"
    slow.write_text("#!/bin/sh\nexec sleep 60\n")
    slow.chmod(0o755)
    conn = tmp_path / "hung.yaml"
    conn.write_text(
        orjson.dumps({"source": {"command": str(slow), "config": {}},
                      "destination": {"command": str(slow), "config": {}}}).decode()
    )  # fmt: skip
    return conn


@pytest.mark.parametrize("command", ["nonexistent-prog", "./bin/missing-source"])
@pytest.mark.parametrize("verb", ["sync", "check"])
def test_a_connector_program_that_does_not_exist_is_a_connection_file_error(
    tmp_path, command, verb
) -> None:
    """A source command: naming no program (a typo, an install missing) is the connection
    file's mistake: exit 2 with the command named and how to fix it, and no sync in the history
    (as every other connection-file error), not a failed sync (exit 1)."""
    body = {
        "source": {"command": command, "config": {}},
        "destination": {"command": console_script("destination-postgres"), "config": {}},
    }
    conn = tmp_path / "conn.yaml"
    conn.write_text(yaml.safe_dump(body))
    run = pgbyte(verb, str(conn), password="")
    assert run.returncode == 2, run.stderr
    assert command.split("/")[-1] in run.stderr and "connection file" in run.stderr, run.stderr
    assert "Traceback" not in run.stderr
    assert not list(tmp_path.rglob("*.history.jsonl"))


def test_version_and_a_negative_history_limit() -> None:
    """`pgbyte --version` names the installed version; `history --limit -1` is a usage error
    (it showed every sync)."""
    version = pgbyte("--version", password="")
    assert version.returncode == 0 and version.stdout.startswith("pgbyte 0."), version
    limit = pgbyte("history", "conn.yaml", "--limit", "-1", password="")
    assert limit.returncode == 2
    assert "--limit: a whole number of 0 or more is needed, not '-1'" in limit.stderr


def test_a_negative_progress_interval_is_a_usage_error() -> None:
    """`sync --progress-every -5` is refused as `--limit -1` is (it was taken silently)."""
    run = pgbyte("sync", "conn.yaml", "--progress-every", "-5", password="")
    assert run.returncode == 2
    assert "--progress-every: a number of seconds, 0 or more, is needed, not '-5'" in run.stderr


def test_a_closed_stdout_keeps_the_syncs_exit_status(
    tmp_path, pg_server, source_conn, source_config, dest_config
) -> None:
    """`pgbyte sync c.yaml | true`: the reader left before the summary; the sync succeeded
    all the same (state and history saved), so it exits 0 and says on stderr what was lost.
    `state show | true`, whose output is the point, exits 1, saying the same."""
    source_conn.execute("CREATE TABLE t(id integer PRIMARY KEY)")
    source_conn.execute("INSERT INTO t VALUES (1), (2)")
    conn = write_connection(tmp_path, source_config, dest_config)
    script = '"$0" "$@" | true; echo "exit ${PIPESTATUS[0]}"'
    for args, status in ((["sync", str(conn)], 0), (["sync", str(conn), "--json"], 0),
                         (["state", "show", str(conn)], 1)):  # fmt: skip
        run = subprocess.run(
            ["bash", "-c", script, console_script("pgbyte"), *args],
            env=pgbyte_env(pg_server.password), capture_output=True, text=True, timeout=180,
            check=False,
        )  # fmt: skip
        assert run.stdout == f"exit {status}\n", (args, run.stdout, run.stderr)
        assert "standard output was closed by its reader" in run.stderr, (args, run.stderr)
        assert "Traceback" not in run.stderr
    history = pgbyte("history", str(conn), "--json", password="")
    assert [e["status"] for e in orjson.loads(history.stdout)] == ["succeeded", "succeeded"]


@pytest.mark.parametrize("closed", ["2>&-", ">&-", "<&-"])
def test_a_closed_standard_stream_is_not_a_failure(
    tmp_path, pg_server, source_conn, source_config, dest_config, closed
) -> None:
    """`pgbyte sync c.yaml 2>&-` exited 1 without syncing or a word (sys.stderr was None),
    `>&-` was a traceback: the closed stream is /dev/null now, and the sync runs."""
    source_conn.execute("CREATE TABLE t(id integer PRIMARY KEY)")
    source_conn.execute("INSERT INTO t VALUES (1), (2)")
    conn = write_connection(tmp_path, source_config, dest_config)
    run = subprocess.run(
        ["bash", "-c", f'"$0" "$@" {closed}', console_script("pgbyte"), "sync", str(conn)],
        env=pgbyte_env(pg_server.password), capture_output=True, text=True, timeout=180,
        check=False,
    )  # fmt: skip
    assert run.returncode == 0, (run.stdout, run.stderr)
    history = pgbyte("history", str(conn), "--json", password="")
    assert [e["status"] for e in orjson.loads(history.stdout)] == ["succeeded"]


def test_pgbyte_does_not_import_psycopg_to_start() -> None:
    """pgbyte talks to no database itself: its start, on the way to every sync's first
    connector, does not pay psycopg's import (a tenth of a second), which the shared error
    module imports only to classify a database error."""
    driver = (
        "import sys\n"
        "import pgbyte.cli, pgbyte.sync, pgbyte.clear, pgbyte_common.errors\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0].startswith('psycopg')))\n"
    )
    python = Path(console_script("pgbyte")).parent / "python"
    proc = subprocess.run([str(python), "-c", driver], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"
