"""Children that a hangup (SIGHUP) ends, as programs started from a terminal are.

A test run started under `nohup` (or by a CI runner that ignores SIGHUP) hands SIG_IGN down to
every child, and the connectors and pgbyte rightly keep an ignored SIGHUP ignored. The tests
that send a hangup start their child with `preexec_fn=hangups_end_it` so that they test the
terminal case whatever the runner ignores."""

from __future__ import annotations

import signal


def hangups_end_it() -> None:
    """preexec_fn: SIGHUP back to its default action in the child."""
    signal.signal(signal.SIGHUP, signal.SIG_DFL)
