"""SubprocessConnector: waiting on a connector process (real child processes, no connector)."""

from __future__ import annotations

import subprocess

import pytest
from pgbyte.runner import SubprocessRunner


def test_wait_times_out_while_running_then_returns_the_exit_code() -> None:
    """wait(timeout) raises TimeoutExpired while the child runs and gives its code once it
    exited, as often as asked; close() may be called twice."""
    proc = SubprocessRunner(("sh", "-c", "read line; exit 3"), label="source").run(
        "spec", stdin=True
    )
    try:
        with pytest.raises(subprocess.TimeoutExpired):
            proc.wait(0.05)
        assert proc.poll() is None
        assert proc.stdin is not None
        proc.stdin.write(b"go\n")
        proc.stdin.flush()
        assert proc.wait(60) == 3
        assert (proc.wait(0), proc.wait(), proc.poll()) == (3, 3, 3)
    finally:
        proc.kill()
        proc.close()
        proc.close()


def test_wait_on_a_process_that_already_exited() -> None:
    """A child that exited before anyone waited: wait(timeout) returns its code at once."""
    proc = SubprocessRunner(("sh", "-c", "exit 7"), label="destination").run("spec")
    try:
        assert proc.stdout.read() == b""  # EOF: the child is gone
        assert proc.wait(60) == 7
    finally:
        proc.close()
