"""The `pgbyte` console script: Ctrl-C while the program is still importing, then the CLI.

Python's default SIGINT handler raises KeyboardInterrupt wherever the main thread is. During
the first tenth of a second that is inside module imports, where it prints a traceback (and
no JSON object for --json), or inside a C extension's initialisation, which is not written to
be interrupted (orjson's crashed the process with a segfault about one try in three). Here the
signal is only noted until the imports are done; then the command is cancelled as one
cancelled later is: exit 130, with --json its one JSON object.
"""

from __future__ import annotations

import signal
import sys
from typing import Any


def main() -> None:
    noted: list[int] = []

    def note(signum: int, _frame: Any) -> None:
        noted.append(signum)

    previous = signal.signal(signal.SIGINT, note)
    from pgbyte import cli  # the imports: everything the commands need

    signal.signal(signal.SIGINT, previous)
    if noted:
        sys.exit(cli.cancelled_early(sys.argv[1:], noted[0]))
    cli.main()
