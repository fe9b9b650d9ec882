"""Helpers for the PyAirbyte tests: the driver process, connector specs, failure reports.

PyAirbyte lives in its own venv (`make pyairbyte-venv`: .venv-pyairbyte, pinned by
tests/pyairbyte/requirements.txt) because it pins its own airbyte-cdk and pydantic. The tests
are skipped only when that venv is absent. PyAirbyte runs offline (AIRBYTE_OFFLINE_MODE=1: no
connector registry, no telemetry) with its project dir, logs and default cache in a session
temp dir, so nothing lands in the repository or in /tmp/airbyte.
"""

from __future__ import annotations

import json
import os
import queue
import subprocess
import threading
import uuid
from pathlib import Path
from typing import Any

import psycopg

HERE = Path(__file__).resolve().parent
REPO_ROOT = HERE.parents[1]
PYAIRBYTE_PYTHON = REPO_ROOT / ".venv-pyairbyte" / "bin" / "python"
DRIVER = HERE / "driver.py"
SENTINEL = "@@pgbyte-pyairbyte-driver-done@@"
# A read of a few rows takes seconds; Docker images or a cold PyAirbyte import take longer.
REQUEST_TIMEOUT = 600


class PyAirbyteDriver:
    """A running `driver.py --serve`: send a request, get PyAirbyte's result (or its error)."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.logs = workdir / "logs"
        env = {
            **os.environ,
            "AIRBYTE_OFFLINE_MODE": "1",  # no registry lookup (no internet here), no telemetry
            "DO_NOT_TRACK": "1",
            "AIRBYTE_PROJECT_DIR": str(workdir),
            "AIRBYTE_LOGGING_ROOT": str(self.logs),
            "AIRBYTE_TEMP_DIR": str(workdir / "tmp"),
            "NO_LIVE_PROGRESS": "1",
        }
        env.pop("VIRTUAL_ENV", None)
        (workdir / "tmp").mkdir(exist_ok=True)
        self.proc = subprocess.Popen(
            [str(PYAIRBYTE_PYTHON), str(DRIVER), "--serve"],
            cwd=workdir,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            encoding="utf-8",
            errors="replace",
        )
        self.lines: queue.Queue[str | None] = queue.Queue()
        # PyAirbyte's progress output shares stdout: pump it on a thread so it can never block.
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line)
        self.lines.put(None)

    def call(self, action: str, **request: Any) -> dict[str, Any]:
        """Run one PyAirbyte action; the result has "ok" and, for the tests, "output"."""
        result_path = self.workdir / f"result-{uuid.uuid4().hex}.json"
        payload = {"action": action, "result_path": str(result_path), **request}
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(payload) + "\n")
        self.proc.stdin.flush()
        output: list[str] = []
        while True:
            try:
                line = self.lines.get(timeout=REQUEST_TIMEOUT)
            except queue.Empty:
                self.proc.kill()
                self.proc.wait()
                raise TimeoutError(
                    f"PyAirbyte {action} gave no answer:\n{''.join(output)}"
                ) from None
            if line is None:
                raise RuntimeError(f"the PyAirbyte driver exited:\n{''.join(output)[-6000:]}")
            if line.strip() == SENTINEL:
                break
            output.append(line)
        result = json.loads(result_path.read_text(encoding="utf-8"))
        result["output"] = "".join(output)
        return result

    def close(self) -> None:
        if self.proc.poll() is None:
            assert self.proc.stdin is not None
            self.proc.stdin.close()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def local_connector(name: str, config: dict[str, Any]) -> dict[str, Any]:
    """A driver connector spec: the project's console script, as `local_executable`."""
    return {"name": name, "config": config, "executable": str(REPO_ROOT / ".venv" / "bin" / name)}


def image_connector(name: str, image: str, config: dict[str, Any]) -> dict[str, Any]:
    """A driver connector spec: a Docker image, as `docker_image` (on the host network)."""
    return {"name": name, "config": config, "docker_image": image}


def failure(result: dict[str, Any]) -> str:
    """Everything a failed PyAirbyte call showed, for assertion messages."""
    keys = ("error_type", "error", "log_text", "traceback", "output")
    return "\n".join(f"--- {k}:\n{str(result.get(k, ''))[-4000:]}" for k in keys)


def ok(result: dict[str, Any]) -> dict[str, Any]:
    """The result of a PyAirbyte call that must have succeeded."""
    assert result["ok"], failure(result)
    return result


def id_names(result: dict[str, Any], stream: str) -> list[tuple[Any, Any]]:
    """(id, name) of each row a read put in the cache for `stream`, in the driver's order."""
    return [(row["id"], row["name"]) for row in result["rows"][stream]]


def tutorial_table(conn: psycopg.Connection) -> None:
    """The tutorial's table: full_refresh_demo(id integer PRIMARY KEY, name varchar(200))."""
    conn.execute("CREATE TABLE full_refresh_demo(id integer PRIMARY KEY, name VARCHAR(200))")
    conn.execute("INSERT INTO full_refresh_demo VALUES (1, 'Mary X'), (2, 'John D')")


def events_table(conn: psycopg.Connection) -> None:
    """A table with an obvious cursor (updated_at) that discover offers as default cursor."""
    conn.execute("CREATE TABLE events(id integer PRIMARY KEY, name text, updated_at timestamp)")
    conn.execute(
        "INSERT INTO events VALUES (1, 'a', '2024-01-01 00:00:00'), "
        "(2, 'b', '2024-01-02 00:00:00'), (3, 'c', '2024-01-03 00:00:00')"
    )


def keyless_table(conn: psycopg.Connection) -> None:
    """A table with neither a primary key nor a cursor column (a log, a staging table...)."""
    conn.execute("CREATE TABLE notes(a integer, b text)")
    conn.execute("INSERT INTO notes VALUES (1, 'one'), (2, 'two')")


# PyAirbyte's WriteStrategy.AUTO replaces (cache: REPLACE; destination: destination_sync_mode
# overwrite) a stream with neither primary key nor cursor, while still asking for incremental
# and passing the saved state. source-postgres's cursorless fallback then reads such a table by
# xmin, i.e. only the rows changed since the last read, and the replace keeps only those.
