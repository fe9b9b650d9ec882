"""pgbyte_common.interrupts: the first signal ends a connector once; deferred() holds it back
over a stretch that must run whole (a commit and the STATE echo that reports it)."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator

import pytest
from pgbyte_common.interrupts import SIGNALS, Interrupts, deferred


@pytest.fixture
def interrupts() -> Iterator[Interrupts]:
    """Interrupts installed in this (main) thread; the previous handlers put back after."""
    before = {signum: signal.getsignal(signum) for signum in SIGNALS}
    try:
        yield Interrupts().install()
    finally:
        for signum, handler in before.items():
            signal.signal(signum, handler)


def test_a_signal_during_deferred_is_raised_when_the_block_ends(interrupts) -> None:
    """SIGTERM inside deferred(): the block runs to its end, then KeyboardInterrupt."""
    done = []
    with pytest.raises(KeyboardInterrupt), deferred():
        os.kill(os.getpid(), signal.SIGTERM)
        done.append("after the signal")
    assert done == ["after the signal"]
    assert interrupts.exit_code == 143


def test_a_signal_outside_deferred_interrupts_at_once(interrupts) -> None:
    """SIGTERM outside any deferred() block raises KeyboardInterrupt where it lands."""
    done = []
    with pytest.raises(KeyboardInterrupt):
        os.kill(os.getpid(), signal.SIGTERM)
        done.append("after the signal")
    assert done == []


def test_a_block_without_a_signal_raises_nothing(interrupts) -> None:
    """deferred() with no signal is a plain block; nested blocks hold until the outermost."""
    done = []
    with pytest.raises(KeyboardInterrupt), deferred():
        with deferred():
            os.kill(os.getpid(), signal.SIGINT)
            done.append("inner")
        done.append("outer")
    assert done == ["inner", "outer"]
    with deferred():
        done.append("quiet")
    assert done[-1] == "quiet"
