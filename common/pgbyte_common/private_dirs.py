"""Private temporary directories holding secrets, and the ones killed processes left behind.

pgbyte hands connectors their config (passwords included), catalog and state as files
(`pgbyte-<pid>-…`); a connector writes the PEM certificates and keys given inline in ssl_mode
for libpq (`pgbyte-ssl-<pid>-…`). Each lives in a directory made by mkdtemp (0700), removed when
its process ends. A process killed with SIGKILL (or a crash of the machine's Python) cannot
remove it, so its name carries the pid, and the next process making one of the same kind
removes those of pids no longer running. A pid says nothing across pid namespaces (containers
sharing a temp folder), so each directory also holds LOCK, locked (flock) for as long as its
process lives: a directory whose lock another process holds is never removed.
"""

from __future__ import annotations

import fcntl
import os
import re
import shutil
import stat
import tempfile
from pathlib import Path

LOCK = ".lock"
_held: list[int] = []  # the lock files' descriptors, open (and locked) until the process ends


def make(prefix: str, parent: Path | None = None) -> Path:
    """A new private directory `<prefix><pid>-…` (stale ones of that prefix removed first),
    holding its LOCK for as long as this process lives."""
    remove_stale(prefix, parent)
    made = Path(tempfile.mkdtemp(prefix=f"{prefix}{os.getpid()}-", dir=parent))
    fd = os.open(made / LOCK, os.O_CREAT | os.O_RDWR, 0o600)
    fcntl.flock(fd, fcntl.LOCK_EX)
    _held.append(fd)
    return made


def _locked_by_another(directory: Path) -> bool:
    """Whether a live process holds the directory's LOCK (none there: made before it was)."""
    try:
        fd = os.open(directory / LOCK, os.O_RDWR | os.O_NOFOLLOW)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return True
    finally:
        os.close(fd)  # releases the lock taken, if it was
    return False


def remove_stale(prefix: str, parent: Path | None = None) -> list[Path]:
    """Remove this user's `<prefix><pid>-…` directories whose process is gone; returns them."""
    # <prefix><pid>- and mkdtemp's 8 random characters, nothing else: not a user's
    # pgbyte-2024-old.
    name = re.compile(rf"^{re.escape(prefix)}([0-9]+)-[a-z0-9_]{{8}}$")
    removed = []
    folder = parent or Path(tempfile.gettempdir())
    try:
        entries = list(folder.iterdir())
    except OSError:
        return removed
    for entry in entries:
        match = name.match(entry.name)
        if match is None or running(int(match.group(1))) or _locked_by_another(entry):
            continue
        try:
            info = entry.lstat()
        except OSError:
            continue
        # Only real directories of ours as mkdtemp makes them (0700): never follow a link,
        # never touch another user's.
        if (
            stat.S_ISDIR(info.st_mode)
            and info.st_uid == os.getuid()
            and stat.S_IMODE(info.st_mode) == 0o700
        ):
            shutil.rmtree(entry, ignore_errors=True)
            removed.append(entry)
    return removed


def running(pid: int) -> bool:
    """Whether a process of that pid exists (ours, or another user's)."""
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError):
        return True  # another user's process (or no such pid format): leave it
    return True
