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
    stale = tmp_path / f"pgbyte-{dead}-abc123_x"
    stale.mkdir(mode=0o700)
    (stale / "destination-config.json").write_text('{"password": "x"}')
    running = tmp_path / f"pgbyte-{os.getpid()}-def456_y"
    running.mkdir(mode=0o700)
    kept = [
        tmp_path / f"pgbyte-demo-{dead}",  # not a command's private directory
        tmp_path / f"pgbyte-{dead}-backup",  # a user's own (not mkdtemp's 8 characters)
        tmp_path / f"pgbyte-{dead}-open0000",  # not 0700: not made by mkdtemp
    ]
    for path in kept:
        path.mkdir(mode=0o700)
    kept[-1].chmod(0o755)
    target = tmp_path / "elsewhere"
    target.mkdir()
    link = tmp_path / f"pgbyte-{dead}-link0000"  # a link is never followed
    link.symlink_to(target)

    assert private_dir.remove_stale(tmp_path) == [stale]
    assert not stale.exists()
    assert running.is_dir() and all(p.is_dir() for p in kept)
    assert target.is_dir() and link.is_symlink()


def test_a_new_directory_is_private_and_named_after_its_process(tmp_path) -> None:
    made = private_dir.make(tmp_path)
    assert made.name.startswith(f"pgbyte-{os.getpid()}-")
    assert made.stat().st_mode & 0o777 == 0o700
