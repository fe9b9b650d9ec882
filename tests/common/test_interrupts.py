"""pgbyte_common.interrupts: the first signal ends a connector once; deferred() holds it back
over a stretch that must run whole (a commit and the STATE echo that reports it)."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from pgbyte_common.interrupts import SIGNALS, Interrupts, deferred, note_early

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "destination"
BIN = Path(sys.executable).parent  # the venv's: the connectors' console scripts are beside it


@pytest.fixture
def interrupts() -> Iterator[Interrupts]:
    """Interrupts installed in this (main) thread; the previous handlers put back after."""
    before = {signum: signal.getsignal(signum) for signum in SIGNALS}
    try:
        yield Interrupts().install()
    finally:
        for signum, handler in before.items():
            signal.signal(signum, handler)


def test_a_signal_during_deferred_is_raised_when_the_block_ends(interrupts) -> None:
    """SIGTERM inside deferred(): the block runs to its end, then KeyboardInterrupt."""
    done = []
    with pytest.raises(KeyboardInterrupt), deferred():
        os.kill(os.getpid(), signal.SIGTERM)
        done.append("after the signal")
    assert done == ["after the signal"]
    assert interrupts.exit_code == 143


def test_a_signal_outside_deferred_interrupts_at_once(interrupts) -> None:
    """SIGTERM outside any deferred() block raises KeyboardInterrupt where it lands."""
    done = []
    with pytest.raises(KeyboardInterrupt):
        os.kill(os.getpid(), signal.SIGTERM)
        done.append("after the signal")
    assert done == []


def test_a_block_without_a_signal_raises_nothing(interrupts) -> None:
    """deferred() with no signal is a plain block; nested blocks hold until the outermost."""
    done = []
    with pytest.raises(KeyboardInterrupt), deferred():
        with deferred():
            os.kill(os.getpid(), signal.SIGINT)
            done.append("inner")
        done.append("outer")
    assert done == ["inner", "outer"]
    with deferred():
        done.append("quiet")
    assert done[-1] == "quiet"


def test_a_signal_noted_before_install_is_raised_by_install() -> None:
    """note_early(): a SIGTERM during the imports is only noted; install() raises it at once."""
    before = {signum: signal.getsignal(signum) for signum in SIGNALS}
    try:
        note_early()
        os.kill(os.getpid(), signal.SIGTERM)
        later = Interrupts()
        with pytest.raises(KeyboardInterrupt):
            later.install()
        assert later.exit_code == 143
    finally:
        for signum, handler in before.items():
            signal.signal(signum, handler)


@pytest.fixture
def silent_server() -> Iterator[tuple[int, list[socket.socket]]]:
    """A TCP port that accepts connections and never answers (a host behind a stalled
    network, say): libpq then waits for its connect_timeout."""
    listener = socket.create_server(("127.0.0.1", 0))
    accepted: list[socket.socket] = []

    def accept() -> None:
        with contextlib.suppress(OSError):
            while True:
                accepted.append(listener.accept()[0])

    threading.Thread(target=accept, daemon=True).start()
    try:
        yield listener.getsockname()[1], accepted
    finally:
        with contextlib.suppress(OSError):
            listener.shutdown(socket.SHUT_RDWR)  # wakes the accept() (close alone does not)
        listener.close()
        for sock in accepted:
            sock.close()


def _terminate_repeatedly(proc: subprocess.Popen[bytes]) -> tuple[bytes, bytes]:
    """SIGTERM every 2 ms until the process exits (10 s at most); its remaining output."""
    deadline = time.monotonic() + 10
    while proc.poll() is None and time.monotonic() < deadline:
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGTERM)
        time.sleep(0.002)
    return proc.communicate(timeout=20)


SOURCE_CATALOG = {"streams": [{
    "stream": {"name": "t", "namespace": "public", "supported_sync_modes": ["full_refresh"],
               "json_schema": {"type": "object", "properties": {"id": {"type": "integer"}}}},
    "sync_mode": "full_refresh", "destination_sync_mode": "overwrite",
}]}  # fmt: skip


@pytest.mark.parametrize(
    ("program", "verb"),
    [("source-postgres", "check"), ("source-postgres", "discover"),
     ("source-postgres", "read"), ("destination-postgres", "check"),
     ("destination-postgres", "write")],
)  # fmt: skip
def test_sigterm_while_connecting_ends_the_verb_with_a_trace(
    program, verb, silent_server, tmp_path
) -> None:  # fmt: skip
    """SIGTERM (repeated) while the connector waits on a host that does not answer (up to its
    30 s connect_timeout): exit 143 within seconds with a transient TRACE ERROR, as a SIGTERM
    later in a read or write ends it — not Python's silent default death (which a
    container's PID 1 does not even get: `docker stop` then waits its whole grace time)."""
    port, accepted = silent_server
    config = {"host": "127.0.0.1", "port": port, "database": "db", "username": "u",
              "password": "never-printed-pw", "ssl_mode": {"mode": "disable"}}  # fmt: skip
    config |= {"schemas": ["public"]} if program == "source-postgres" else {"schema": "public"}
    (tmp_path / "config.json").write_text(json.dumps(config))
    args = [verb, "--config", str(tmp_path / "config.json")]
    if verb in ("read", "write"):
        catalog = SOURCE_CATALOG if verb == "read" else json.loads(
            (FIXTURES / "tutorial_catalog_overwrite.json").read_text())  # fmt: skip
        (tmp_path / "catalog.json").write_text(json.dumps(catalog))
        args += ["--catalog", str(tmp_path / "catalog.json")]
    proc = subprocess.Popen([str(BIN / program), *args], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)  # fmt: skip
    try:
        deadline = time.monotonic() + 20
        while not accepted:  # the connector is connecting, past its imports
            assert proc.poll() is None, proc.communicate(timeout=20)
            assert time.monotonic() < deadline, "the connector never connected"
            time.sleep(0.02)
        started = time.monotonic()
        # More SIGTERMs after the first (a stopping caller may repeat itself) change nothing,
        # also during Python's shutdown (which puts the default action back: "killed by
        # SIGTERM", -15, with the old sys.exit).
        out, err = _terminate_repeatedly(proc)
    finally:
        proc.kill()
    assert time.monotonic() - started < 10
    assert proc.returncode == 143, (proc.returncode, out, err)
    messages = [json.loads(line) for line in out.splitlines()]
    errors = [m["trace"]["error"] for m in messages if m["type"] == "TRACE"]
    assert [e["failure_type"] for e in errors] == ["transient_error"], out
    assert "interrupted" in errors[0]["message"], errors
    assert b"never-printed-pw" not in out + err


@pytest.mark.parametrize(
    ("program", "verb"),
    [("source-postgres", "check"), ("source-postgres", "discover"),
     ("destination-postgres", "check")],
)  # fmt: skip
def test_signals_after_the_answer_change_nothing(
    program, verb, source_config, dest_config, tmp_path
) -> None:  # fmt: skip
    """SIGTERMs from the moment check or discover printed its answer: the answer stands and
    the exit status is 0 — not "killed" (-15) because Python's shutdown had put the default
    action back, nor a traceback from a KeyboardInterrupt raised while it flushed."""
    config = source_config if program == "source-postgres" else dest_config
    (tmp_path / "config.json").write_text(json.dumps(config))
    proc = subprocess.Popen([str(BIN / program), verb, "--config", str(tmp_path / "config.json")],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)  # fmt: skip
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline()  # check and discover end within their connect_timeout
        rest, err = _terminate_repeatedly(proc)
    finally:
        proc.kill()
    assert (proc.returncode, rest, b"Traceback" in err) == (0, b"", False), (first, rest, err)
    answer = json.loads(first)
    if verb == "check":
        assert answer["connectionStatus"]["status"] == "SUCCEEDED", answer
    else:
        assert answer["type"] == "CATALOG", answer


def test_a_signal_while_the_answer_waits_on_a_full_pipe_ends_it_soon(
    source_conn, source_config, tmp_path
) -> None:  # fmt: skip
    """discover's catalog is larger than a pipe holds and nobody reads it: a SIGTERM while it
    waits no longer cuts the answer short at once (settle), but does not leave the connector
    waiting for SIGKILL either: it exits 143 a few seconds later. Under PYTHONUNBUFFERED too,
    where stdout's raw file returned from the interrupted write having written part of the
    catalog, and the connector exited 0 with the rest lost."""
    source_conn.execute(
        "DO $$ BEGIN FOR i IN 1..300 LOOP EXECUTE format('CREATE TABLE wide_%s (' || "
        "(SELECT string_agg('column_number_' || c || ' text', ', ') "
        "FROM generate_series(1, 20) c) || ')', i); END LOOP; END $$"
    )
    (tmp_path / "config.json").write_text(json.dumps(source_config))
    proc = subprocess.Popen(
        [str(BIN / "source-postgres"), "discover", "--config", str(tmp_path / "config.json")],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        wchan = Path(f"/proc/{proc.pid}/wchan")
        while "pipe" not in wchan.read_text():  # blocked writing the catalog into the pipe
            assert proc.poll() is None and time.monotonic() < deadline, "never blocked"
            time.sleep(0.05)
        started = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=20)
        elapsed = time.monotonic() - started
    finally:
        proc.kill()
        proc.communicate(timeout=20)
    assert code == 143
    assert 1.0 < elapsed < 10, elapsed
