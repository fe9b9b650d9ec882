"""The `pgbyte` console script: Ctrl-C while the program is still importing, then the CLI.

Python's default SIGINT handler raises KeyboardInterrupt wherever the main thread is. During
the first tenth of a second that is inside module imports, where it prints a traceback (and
no JSON object for --json), or inside a C extension's initialisation, which is not written to
be interrupted (orjson's crashed the process with a segfault about one try in three). Here
SIGINT and SIGTERM are only noted until the imports are done; then the command is cancelled as
one cancelled later is: exit 130 or 143, with --json its one JSON object. From then on, until
a command puts its own handler in, either one cancels at once (Cancelled is raised where the
program is: reading the connection file, say); with the default action SIGTERM ended pgbyte
in that gap, with no answer. A signal the parent made us ignore (SIG_IGN: a background job's
Ctrl-C) stays ignored.
"""

from __future__ import annotations

import os
import signal
import sys
from typing import Any


def _reopen_closed_standard_streams() -> None:
    """A standard stream the caller closed (`pgbyte sync C 2>&-`): /dev/null in its place.
    Python leaves sys.stderr None then (the sync never ran: exit 1, nothing said; a closed
    stdout was a traceback), and the next file opened would take the free descriptor, so a
    connector inheriting it as its stderr would write into that file."""
    for fd, name, mode in ((0, "stdin", "r"), (1, "stdout", "w"), (2, "stderr", "w")):
        try:
            os.fstat(fd)
        except OSError:
            os.open(os.devnull, os.O_RDWR)  # the lowest free descriptor: this one
            setattr(sys, name, open(fd, mode, encoding="utf-8", closefd=False))  # noqa: SIM115


def main() -> None:
    _reopen_closed_standard_streams()
    noted: list[int] = []

    def note(signum: int, _frame: Any) -> None:
        noted.append(signum)

    previous = {}
    for signum in (signal.SIGINT, signal.SIGTERM):
        if signal.getsignal(signum) is not signal.SIG_IGN:
            previous[signum] = signal.signal(signum, note)
    from pgbyte import cli  # the imports: everything the commands need

    def cancel(signum: int, _frame: Any) -> None:
        for other in previous:  # once: a second signal must not cut the cancel's answer short
            signal.signal(other, note)
        raise cli.Cancelled(signum)

    for signum in previous:
        signal.signal(signum, cancel)
    if noted:
        sys.exit(cli.cancelled_early(sys.argv[1:], noted[0]))
    cli.main()
