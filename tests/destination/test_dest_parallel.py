"""overwrite batches loaded on two connections: states, swap and failures keep their guarantees.

In-process on purpose (fine grain): a tiny batch size forces many batches, so the second
connection really carries some of them; the invariants are read from a third connection.
"""

from __future__ import annotations

import io
from typing import Any

import orjson
from dest_helpers import catalog_for, record, state
from destination_postgres.catalog import parse_catalog
from destination_postgres.config import DestinationConfig
from destination_postgres.writer import Writer
from pgbyte_common.messages import MessageWriter

PROPS = {"id": {"type": "integer"}, "name": {"type": "string"}}


class _StateProbe(io.BytesIO):
    """Output stream that, as each STATE is written, counts the committed loaded rows."""

    def __init__(self, conn: Any, table: tuple[str, str]) -> None:
        super().__init__()
        self.conn, self.table, self.seen = conn, table, []

    def write(self, data: Any) -> int:
        for line in bytes(data).splitlines():
            if line.strip() and orjson.loads(line).get("type") == "STATE":
                n = self.conn.execute(f'SELECT count(*) FROM "{self.table[0]}"."{self.table[1]}"')
                self.seen.append(n.fetchone()[0])
        return super().write(data)


def _writer(dest_config: dict[str, Any], out: Any, opened: list[Any]) -> Writer:
    config = DestinationConfig.from_dict(dest_config)
    targets = parse_catalog(catalog_for([("p", PROPS)], "overwrite"), config)

    def connect() -> Any:
        opened.append(config.settings.connect())
        return opened[-1]

    return Writer(config.settings.connect(), targets, out, batch_bytes=4096, connect=connect)


def _lines(rounds: int, per_round: int) -> list[bytes]:
    out, n = [], 0
    for r in range(rounds):
        for _ in range(per_round):
            n += 1
            out.append(record("p", {"id": n, "name": f"row {n} " + "x" * 40}))
        out.append(state("p", {"round": r}))
    return out


def test_states_follow_commits_of_both_connections(dest_config, dest_conn) -> None:
    """An overwrite stream's STATEs are echoed only once it is swapped in, with every record
    committed whichever connection loaded it (all six see the whole swapped raw table); all
    rows land in both swapped tables."""
    opened: list[Any] = []
    probe = _StateProbe(dest_conn, ("public", "_airbyte_raw_p"))
    writer = _writer(dest_config, MessageWriter(probe), opened)
    assert writer.run([_lines(6, 200)]) == 0
    assert len(opened) == 1 and opened[0].closed  # the second connection was used, then closed
    assert probe.seen == [1200] * 6
    for table in ("p", "_airbyte_raw_p"):
        assert dest_conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0] == 1200
    ids = dest_conn.execute("SELECT array_agg(id ORDER BY id) FROM p").fetchone()[0]
    assert ids == list(range(1, 1201))


def test_failure_after_parallel_batches_keeps_previous_tables(dest_config, dest_conn) -> None:
    """A bad line after batches on both connections: no swap, previous rows kept, and the
    temporaries are gone."""
    opened: list[Any] = []
    assert _writer(dest_config, MessageWriter(io.BytesIO()), opened).run([_lines(1, 3)]) == 0
    assert opened == []  # one small batch: no second connection
    before = set(r[0] for r in dest_conn.execute(
        "SELECT tablename FROM pg_tables WHERE schemaname = 'public'"))  # fmt: skip
    writer = _writer(dest_config, MessageWriter(io.BytesIO()), opened)
    assert writer.run([[*_lines(3, 300), b"{not json"]]) == 1
    assert len(opened) == 1 and opened[0].closed
    assert dest_conn.execute("SELECT count(*) FROM p").fetchone()[0] == 3
    assert dest_conn.execute("SELECT count(*) FROM _airbyte_raw_p").fetchone()[0] == 3
    after = set(r[0] for r in dest_conn.execute(
        "SELECT tablename FROM pg_tables WHERE schemaname = 'public'"))  # fmt: skip
    assert after == before


def test_bad_values_with_parallel_batches_take_the_guarded_way(dest_config, dest_conn) -> None:
    """With the typed table built by two connections, a value that does not cast is still NULL
    and counted, and an integer beyond 64 bits still widens the column (no row lost)."""
    lines = _lines(3, 300)
    lines[10] = record("p", {"id": "abc", "name": "bad"})
    lines[500] = record("p", {"id": 123456789012345678901234567890, "name": "big"})
    out = io.BytesIO()
    opened: list[Any] = []
    assert _writer(dest_config, MessageWriter(out), opened).run([lines]) == 0
    assert len(opened) == 1
    assert dest_conn.execute("SELECT count(*), count(id) FROM p").fetchone() == (900, 899)
    big = dest_conn.execute("SELECT id FROM p WHERE name = 'big'").fetchone()[0]
    assert big == 123456789012345678901234567890
    assert b"could not be cast" in out.getvalue()


def test_no_state_before_completion_loses_no_row(dest_config, dest_conn) -> None:
    """Batches of both connections never committed by a STATE still all reach the typed
    table built at completion."""
    lines = [line for line in _lines(3, 300) if b'"STATE"' not in line]
    opened: list[Any] = []
    assert _writer(dest_config, MessageWriter(io.BytesIO()), opened).run([lines]) == 0
    assert len(opened) == 1
    for table in ("p", "_airbyte_raw_p"):
        assert dest_conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0] == 900
