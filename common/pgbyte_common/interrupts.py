"""Ending a connector on SIGTERM, SIGINT or SIGHUP: once, cleanly, with the conventional exit
code (SIGHUP: the terminal or SSH session that started it closed).

The first signal raises KeyboardInterrupt in the main thread, where the connector rolls back and
cleans up; later ones are ignored, so a second signal (Ctrl-C reaches the whole process group,
then an orchestrator terminates the connector) cannot interrupt that clean-up half way. In a
container the connector is PID 1, which the kernel sends no SIGTERM it has no handler for:
without one, `docker stop` waits and then kills it.

`note_early()`, the first thing a console script does for a verb that connects, covers the
start: until `install()`, a signal is only noted. Python's default would end the process
silently mid-import (no TRACE ERROR: the caller cannot tell a stop from a crash), and a
container's PID 1 does not even get the signal; `install()` then acts on a noted one at once.

At the end come `settle()` (the verb's answer is computed: a signal no longer cuts it short,
for a few seconds at most) and `exit_now()`: Python's own shutdown puts each handled signal's
default action back first, so a SIGTERM in its last milliseconds (a caller stopping a
connector that has just answered) would turn the exit status into "killed", or a Ctrl-C
print a traceback from atexit.

`deferred()` holds that KeyboardInterrupt back over a short stretch that must not stop half way:
a destination's commit and the STATE echo that reports it (a signal between the two would leave
committed records, or a swapped overwrite, that nobody is told of).
"""

from __future__ import annotations

import atexit
import contextlib
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from typing import Any, NoReturn

# The signals that end a connector (SIGHUP does not exist on Windows).
SIGNALS = tuple(
    s for s in (signal.SIGTERM, signal.SIGINT, getattr(signal, "SIGHUP", None)) if s is not None
)


_deferring = 0  # nesting depth of deferred() blocks (main thread)
_held: list[int] = []  # the signal that came during one, raised at its end
_early: list[int] = []  # signals noted before install(), while the program was importing
_finishing: threading.Timer | None = None  # after settle(): the deadline a signal started


class Interrupts:
    """The signal handlers of one connector process (install from the main thread)."""

    def __init__(self) -> None:
        self.signum: int | None = None

    def install(self) -> Interrupts:
        """Handle the signals from now on; one noted since note_early() raises KeyboardInterrupt
        here (call it inside the try that handles KeyboardInterrupt)."""
        handle(self._first)
        if _early:
            signum = _early[0]
            _early.clear()
            self._first(signum, None)
        return self

    def _first(self, signum: int, frame: Any) -> None:
        self.signum = signum
        # A no-op handler, not SIG_IGN: a signal already pending would find SIG_IGN and make
        # Python raise "Signal ignored due to race condition" in the middle of the clean-up.
        handle(_ignore)
        if _deferring:
            _held.append(signum)
            return
        raise KeyboardInterrupt

    @property
    def exit_code(self) -> int:
        """128 + the signal: 143 for SIGTERM, 130 for SIGINT (Ctrl-C), 129 for SIGHUP."""
        return 128 + (self.signum or signal.SIGINT)


def handle(handler: Callable[[int, Any], None]) -> None:
    """`handler` for every signal of SIGNALS not ignored (main thread only). An ignored signal
    stays ignored: `nohup` (SIGHUP) means "keep running"."""
    for signum in SIGNALS:
        if signal.getsignal(signum) is not signal.SIG_IGN:
            signal.signal(signum, handler)


# After settle(), how long a signal lets the answer finish going out before the process ends
# anyway (a reader that stopped reading would otherwise hold it until SIGKILL).
FINISH_SECONDS = 2.0


def settle() -> None:
    """The verb's answer is computed: a signal from now on no longer stops it from going out
    whole, nor changes the exit status — unless writing it takes longer than FINISH_SECONDS
    more, when the process ends with 128 + the signal (main thread)."""
    handle(_finish_soon)


def _finish_soon(signum: int, frame: Any) -> None:
    global _finishing
    if _finishing is None:
        _finishing = threading.Timer(FINISH_SECONDS, os._exit, (128 + signum,))
        _finishing.daemon = True
        _finishing.start()


def exit_now(code: int) -> NoReturn:
    """End the process with `code`: exit functions run, stdout and stderr flushed, without
    Python's shutdown (see the module's docstring). For the console scripts only, once
    nothing else is to run: what other streams buffer is lost, other threads are not waited
    for (the connectors write their messages to sys.stdout and run daemon threads only)."""
    settle()
    # The exit functions still run (the inline SSL certificates' temporary files go), with no
    # signal able to cut them short any more.
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    os._exit(code)


def note_early() -> None:
    """Note the signals that come before Interrupts.install() (main thread)."""
    handle(_note)


def _note(signum: int, frame: Any) -> None:
    _early.append(signum)


def _ignore(signum: int, frame: Any) -> None:
    """Signals after the first: the connector is already ending."""


@contextlib.contextmanager
def deferred() -> Iterator[None]:
    """Run the block whole: a first signal during it raises KeyboardInterrupt only once it ends
    (main thread; keep the block short, `docker stop` waits for it)."""
    global _deferring
    _deferring += 1
    try:
        yield
    finally:
        _deferring -= 1
    if not _deferring and _held:
        _held.clear()
        raise KeyboardInterrupt
