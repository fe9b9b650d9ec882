"""pgbyte's private directories: stale ones (their command gone) are removed, nothing else."""

from __future__ import annotations

import os
import subprocess

from pgbyte import private_dir


def _dead_pid() -> int:
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


def test_only_directories_of_gone_commands_are_removed(tmp_path) -> None:
    dead = _dead_pid()
    stale = tmp_path / f"pgbyte-{dead}-abc123"
    stale.mkdir()
    (stale / "destination-config.json").write_text('{"password": "x"}')
    running = tmp_path / f"pgbyte-{os.getpid()}-def456"
    running.mkdir()
    other = tmp_path / f"pgbyte-demo-{dead}"  # not a command's private directory
    other.mkdir()
    target = tmp_path / "elsewhere"
    target.mkdir()
    link = tmp_path / f"pgbyte-{dead}-link00"  # a link is never followed
    link.symlink_to(target)

    assert private_dir.remove_stale(tmp_path) == [stale]
    assert not stale.exists()
    assert running.is_dir() and other.is_dir() and target.is_dir() and link.is_symlink()


def test_a_new_directory_is_private_and_named_after_its_process(tmp_path) -> None:
    made = private_dir.make(tmp_path)
    assert made.name.startswith(f"pgbyte-{os.getpid()}-")
    assert made.stat().st_mode & 0o777 == 0o700
