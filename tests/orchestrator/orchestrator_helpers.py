"""Helpers for the orchestrator tests: connection files and `pgbyte` run as a subprocess.

Connection files reference the server's password as ${PGBYTE_TEST_PASSWORD}; `pgbyte()` puts
it in the child's environment, so a password that shows up in any output was leaked by pgbyte
or a connector, never by the test itself.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml
from hangups import hangups_end_it

REPO_ROOT = Path(__file__).resolve().parents[2]

PASSWORD_VAR = "PGBYTE_TEST_PASSWORD"
FIXTURES = REPO_ROOT / "tests" / "fixtures" / "orchestrator"


def console_script(name: str) -> str:
    """The installed console script in .venv/bin (the real program, as a user runs it)."""
    return str(REPO_ROOT / ".venv" / "bin" / name)


def write_connection(
    directory: Path,
    source_config: dict[str, Any],
    dest_config: dict[str, Any],
    *,
    name: str = "conn",
    dest_password: str | None = None,
    **extra: Any,
) -> Path:
    """A connection file with the passwords replaced by ${PGBYTE_TEST_PASSWORD} (or, for the
    destination, `dest_password` written literally)."""
    source = {**source_config, "password": "${" + PASSWORD_VAR + "}"}
    dest = {**dest_config, "password": dest_password or "${" + PASSWORD_VAR + "}"}
    body = {
        "source": {"command": console_script("source-postgres"), "config": source},
        "destination": {"command": console_script("destination-postgres"), "config": dest},
        **extra,
    }
    path = directory / f"{name}.yaml"
    path.write_text(yaml.safe_dump(body, sort_keys=False))
    return path


@contextlib.contextmanager
def throwaway_databases(pg_server: Any, *prefixes: str) -> Iterator[tuple[str, ...]]:
    """Fresh databases named `<prefix>_<random>` on the test server, dropped afterwards."""
    names = tuple(f"{prefix}_{uuid.uuid4().hex[:8]}" for prefix in prefixes)
    for name in names:
        pg_server.create_database(name)
    try:
        yield names
    finally:
        for name in names:
            pg_server.drop_database(name)


def pgbyte_env(password: str) -> dict[str, str]:
    return {**os.environ, PASSWORD_VAR: password}


def pgbyte(
    *args: str, password: str, timeout: float = 180, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    """Run the real `pgbyte` console script to the end."""
    return subprocess.run(
        [console_script("pgbyte"), *args],
        env=pgbyte_env(password), capture_output=True, text=True, timeout=timeout, cwd=cwd,
        check=False,
    )  # fmt: skip


def sync_json(conn: Path, password: str) -> tuple[subprocess.CompletedProcess[str], dict]:
    """`pgbyte sync --json`: the process and its parsed summary."""
    result = pgbyte("sync", str(conn), "--json", password=password)
    try:
        summary = orjson.loads(result.stdout)
    except orjson.JSONDecodeError:
        pytest.fail(f"no JSON summary ({result.returncode}):\n{result.stdout}\n{result.stderr}")
    return result, summary


def children(pid: int) -> list[int]:
    """Direct child pids of a process (Linux /proc)."""
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        with contextlib.suppress(OSError):
            found += [int(p) for p in (task / "children").read_text().split()]
    return found


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0]
    except OSError:
        return False
    return state != "Z"


def signal_pid(pid: int, signum: int) -> None:
    """Send a signal to a process that may already be gone."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signum)


def wait_gone(*pids: int, timeout: float = 60) -> None:
    """Wait (at most `timeout` s) until none of these processes runs."""
    deadline = time.monotonic() + timeout
    while any(alive(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.05)


def connector_pid(pgbyte_pid: int, verb: str, timeout: float = 60) -> int:
    """Pid of pgbyte's connector child running `verb` (read / write), once it runs."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for pid in children(pgbyte_pid):
            if f" {verb} " in cmdline(pid) + " ":
                return pid
        time.sleep(0.05)
    pytest.fail(f"no connector running {verb}")


class RunningSync:
    """`pgbyte sync` started in the background, with its stderr lines collected."""

    def __init__(self, conn: Path, password: str) -> None:
        self.proc = subprocess.Popen(
            [console_script("pgbyte"), "sync", str(conn), "--json", "--progress-every", "0.1"],
            env=pgbyte_env(password), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            preexec_fn=hangups_end_it,  # the resume tests send SIGHUP
        )  # fmt: skip
        self.stderr: list[str] = []
        self._partial = b""  # the start of a stderr line not ended yet

    def next_line(self, deadline: float) -> str:
        """pgbyte's next stderr line, also kept in self.stderr; "" once pgbyte closed stderr.
        Read from the raw pipe with a deadline, so that a silent pgbyte fails the test instead
        of hanging it (the rest is read by `finish`)."""
        assert self.proc.stderr is not None
        fd = self.proc.stderr.fileno()
        while b"\n" not in self._partial:
            ready, _, _ = select.select([fd], [], [], max(0.0, deadline - time.monotonic()))
            if not ready:
                pytest.fail("pgbyte printed nothing for too long:\n" + "".join(self.stderr))
            chunk = os.read(fd, 65536)
            if not chunk:
                return ""
            self._partial += chunk
        line, _, self._partial = self._partial.partition(b"\n")
        text = line.decode(errors="replace") + "\n"
        self.stderr.append(text)
        return text

    def wait_for_line(self, needle: str, timeout: float = 120) -> str:
        """Block until pgbyte prints a stderr line containing `needle`."""
        deadline = time.monotonic() + timeout
        while line := self.next_line(deadline):
            if needle in line:
                return line
        pytest.fail(f"pgbyte never printed {needle!r}:\n{''.join(self.stderr)}")

    def connector(self, verb: str, timeout: float = 60) -> int:
        """Pid of the connector child running `verb` (read / write)."""
        return connector_pid(self.proc.pid, verb, timeout)

    def finish(self, timeout: float = 180) -> tuple[int, dict, str]:
        out, err = self.proc.communicate(timeout=timeout)
        stderr = "".join(self.stderr) + self._partial.decode(errors="replace") + err
        return self.proc.returncode, orjson.loads(out), stderr

    def kill(self) -> None:
        """pgbyte and its connectors, whatever state a failed test left them in (stopped)."""
        if self.proc.poll() is None:
            connectors = children(self.proc.pid)
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()
            for pid in connectors:
                signal_pid(pid, signal.SIGCONT)
                signal_pid(pid, signal.SIGKILL)
