"""What a write holds on its way to Postgres: a stream's batch, places in a stream's buffers
(a STATE's place in the input, which lets a pending commit cover exactly the records before it),
and the count of what a record's source changed (meta.changes).
"""

from __future__ import annotations

import threading
from bisect import bisect_right
from dataclasses import dataclass, field
from itertools import islice
from typing import Any

from destination_postgres.catalog import StreamTarget


@dataclass
class Batch:
    """One stream's buffered lines on their way to Postgres (what loader's COPYs read)."""

    target: StreamTarget
    count: int
    fast_rows: list[bytes]
    fast_lines: list[bytes]
    fast_linenos: list[int]
    slow_lines: list[bytes]
    slow_linenos: list[int]
    error: BaseException | None = None
    # Staged on the second connection (stages.fill): set once that connection is free.
    parsed: threading.Event | None = None
    refused: bool = False  # Postgres refused the batch's binary COPY there: go the slow way
    # meta.changes of its records (field → how many), found when its lines were parsed.
    changes: dict[str, int] = field(default_factory=dict)

    @property
    def overwrite(self) -> bool:
        return self.target.overwrite

    @property
    def load_raw(self) -> tuple[str, str]:
        return self.target.load_raw


@dataclass(frozen=True)
class Cut:
    """A place in a stream's buffers: the lengths of fast_rows, fast_lines, slow_lines and
    nbytes (fast_linenos and slow_linenos go with their lines)."""

    rows: int
    lines: int
    slow: int
    nbytes: int

    @classmethod
    def at(cls, held: StreamTarget | Buffers, lineno: int) -> Cut:
        """Where input line `lineno` falls in `held`'s buffers (a StreamTarget's, or set
        aside): after every line up to it. Found from the lines' numbers, which ascend, when
        a commit needs it: not noted at each STATE for every stream (interleaved streams with
        a STATE every few records made that streams x STATEs)."""
        lines = bisect_right(held.fast_linenos, lineno)
        slow = bisect_right(held.slow_linenos, lineno)
        nbytes = sum(map(len, islice(held.fast_lines, lines)))
        nbytes += sum(map(len, islice(held.slow_lines, slow)))
        return cls(2 * lines, lines, slow, nbytes)  # a fast line is two rows: head, data


@dataclass
class Buffers:
    """A stream's buffered records, set aside."""

    fast_rows: list[bytes]
    fast_lines: list[bytes]
    fast_linenos: list[int]
    slow_lines: list[bytes]
    slow_linenos: list[int]
    nbytes: int

    @classmethod
    def of(cls, t: StreamTarget) -> Buffers:
        return cls(t.fast_rows, t.fast_lines, t.fast_linenos, t.slow_lines, t.slow_linenos,
                   t.nbytes)  # fmt: skip

    @classmethod
    def split(cls, t: StreamTarget, at: Cut) -> Buffers | None:
        """Detach what `t` buffered after `at`; None when nothing."""
        if t.nbytes == at.nbytes:
            return None
        rest = cls(t.fast_rows[at.rows :], t.fast_lines[at.lines :], t.fast_linenos[at.lines :],
                   t.slow_lines[at.slow :], t.slow_linenos[at.slow :],
                   t.nbytes - at.nbytes)  # fmt: skip
        del t.fast_rows[at.rows :], t.fast_lines[at.lines :], t.fast_linenos[at.lines :]
        del t.slow_lines[at.slow :], t.slow_linenos[at.slow :]
        t.nbytes = at.nbytes
        return rest

    def restore(self, t: StreamTarget, upto: Cut | None = None) -> None:
        """Make these `t`'s buffers again (only their part before `upto`)."""
        upto = upto or Cut(len(self.fast_rows), len(self.fast_lines), len(self.slow_lines),
                            self.nbytes)  # fmt: skip
        t.fast_rows, t.fast_lines = self.fast_rows[: upto.rows], self.fast_lines[: upto.lines]
        t.fast_linenos = self.fast_linenos[: upto.lines]
        t.slow_lines, t.slow_linenos = self.slow_lines[: upto.slow], self.slow_linenos[: upto.slow]
        t.nbytes = upto.nbytes


def plan_shape(t: StreamTarget) -> tuple[Any, ...]:
    """What a rolled-back load may have changed in a stream's plan (widened columns, the typed
    table given up, a first dedup load turned into merges)."""
    return (t.norm_table, [(c.name, c.kind) for c in t.columns], t.dedup_plan)


def count_changes(counts: dict[str, int], rec: dict[str, Any]) -> None:
    """Add a record's meta.changes (what its source changed or left out: a NaN sent as null,
    a value too big) to `counts`, by field."""
    meta = rec.get("meta")
    changes = meta.get("changes") if type(meta) is dict else None
    if type(changes) is not list:
        return
    for change in changes:
        name = change.get("field") if type(change) is dict else None
        key = name if isinstance(name, str) else "?"
        counts[key] = counts.get(key, 0) + 1
