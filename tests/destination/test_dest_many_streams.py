"""A write of many streams on a server whose lock table is small: each stream's tables are made
ready in a transaction of its own, so the locks of every stream's tables are never held at once
(one transaction over 2,000 streams overflowed a server with the default
max_locks_per_transaction)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from dest_helpers import catalog_for, record, state, status
from pgbyte.throwaway_pg import ThrowawayServer

STREAMS = 150


@pytest.fixture(scope="module")
def small_lock_table() -> Iterator[ThrowawayServer]:
    with ThrowawayServer(
        settings={"max_locks_per_transaction": "10", "max_connections": "20"}
    ) as server:
        yield server


@pytest.mark.parametrize("mode", ["overwrite", "append"])
def test_many_streams_fit_a_small_lock_table(run_write, small_lock_table, mode) -> None:
    db = f"many_{uuid.uuid4().hex[:8]}"
    small_lock_table.create_database(db)
    names = [f"s{i:03d}" for i in range(STREAMS)]
    catalog = catalog_for([(name, {"id": {"type": "integer"}}) for name in names], mode)
    lines = []
    for name in names:  # as a source sends them: one stream after the other
        lines += [status(name, "STARTED"), record(name, {"id": 1}), state(name, {"n": 1}),
                  status(name, "COMPLETE")]  # fmt: skip
    config = small_lock_table.connector_config(db, schema="public")
    result = run_write(catalog, b"\n".join(lines) + b"\n", config=config)
    assert result.returncode == 0, result.errors
    assert len(result.states) == STREAMS
