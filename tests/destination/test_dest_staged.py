"""append/append_dedup batches staged on a second connection: same rows, states and failures.

In-process on purpose (fine grain): a tiny batch size makes every full batch of canonical lines
go through a shared stage on the second connection (stages.fill) while the first moves
the previous one into the tables. The invariants are read from a third connection.
"""

from __future__ import annotations

import io
import random
from typing import Any

import orjson
import psycopg
import pytest
from db_roles import throwaway_role
from dest_helpers import catalog_for
from destination_postgres import commits as commits_module
from destination_postgres import stages
from destination_postgres.catalog import parse_catalog
from destination_postgres.config import DestinationConfig
from destination_postgres.loading import MAX_STAGES_PER_COMMIT
from destination_postgres.writer import Writer
from pgbyte_common.messages import MessageWriter
from psycopg import sql
from test_dest_dedup import dedup_catalog, latest, rec, state

PROPS = {"id": {"type": "integer"}, "name": {"type": "string"}, "seq": {"type": "integer"}}
EM = 1732550000000


class _StateProbe(io.BytesIO):
    """Output stream that, as each STATE is written, counts the committed rows of both tables."""

    def __init__(self, conn: Any) -> None:
        super().__init__()
        self.conn, self.seen = conn, []

    def write(self, data: Any) -> int:
        for line in bytes(data).splitlines():
            if line.strip() and orjson.loads(line).get("type") == "STATE":
                raw = self.conn.execute("SELECT count(*) FROM _airbyte_raw_p").fetchone()[0]
                typed = self.conn.execute("SELECT count(*) FROM p").fetchone()[0]
                self.seen.append((raw, typed))
        return super().write(data)


def _writer(dest_config: dict[str, Any], catalog: dict[str, Any], out: Any) -> Writer:
    config = DestinationConfig.from_dict(dest_config)
    targets = parse_catalog(catalog, config)
    return Writer(
        config.settings.connect(), targets, MessageWriter(out), batch_bytes=4096,
        connect=config.settings.connect,
    )  # fmt: skip


def _chunks(lines: list[bytes], size: int = 100) -> list[list[bytes]]:
    """The lines in blocks, as reads of stdin deliver them: a block is taken in bulk, so small
    blocks make the many small batches (batch_bytes=4096) these tests are about."""
    return [lines[i : i + size] for i in range(0, len(lines), size)]


def _stages(conn: Any) -> list[str]:
    rows = conn.execute(
        "SELECT relname FROM pg_class WHERE relname LIKE '\\_pgbyte\\_stage\\_%' ORDER BY 1"
    )
    return [r[0] for r in rows]


def test_append_states_follow_commits_of_staged_batches(dest_config, dest_conn) -> None:
    """Each STATE is echoed once both tables hold every record before it (and nothing after
    it); every record lands once; no stage is left."""
    lines, n = [], 0
    for r in range(6):
        for _ in range(200):
            n += 1
            lines.append(rec("p", {"id": n, "name": f"row {n} " + "x" * 40}, compact=True))
        lines.append(state("p", {"round": r}))
    probe = _StateProbe(dest_conn)
    writer = _writer(dest_config, catalog_for([("p", PROPS)], "append"), probe)
    assert writer.run(_chunks(lines)) == 0
    assert writer._stage_seq >= 10  # most batches went through a stage
    assert probe.seen == [(200 * (r + 1), 200 * (r + 1)) for r in range(6)]
    ids = dest_conn.execute("SELECT array_agg(id ORDER BY id) FROM p").fetchone()[0]
    assert ids == list(range(1, 1201))
    raw_ids = dest_conn.execute(
        "SELECT array_agg((_airbyte_data->>'id')::int ORDER BY 1) FROM _airbyte_raw_p"
    ).fetchone()[0]
    assert sorted(raw_ids) == list(range(1, 1201))
    assert _stages(dest_conn) == []


def test_a_states_partial_batch_is_staged_once_a_second_connection_is_open(
    dest_config, dest_conn, monkeypatch
) -> None:  # fmt: skip
    """Once full batches have opened the second connection, the few rows a STATE flushes are
    staged there too (parsed while the first connection moves the batch before them), and each
    STATE is still echoed once both tables hold every record before it. (Each STATE is
    committed on its own here: no COMMIT_SECONDS wait.)"""
    monkeypatch.setattr(commits_module, "COMMIT_SECONDS", 0.0)
    staged: list[int] = []  # the record count of each staged batch
    fill = stages.fill

    def counting_fill(conn: Any, batch: Any, stage: stages.Stage) -> Any:
        staged.append(batch.count)
        return fill(conn, batch, stage)

    monkeypatch.setattr(stages, "fill", counting_fill)
    lines: list[bytes] = []
    for n in range(1, 431):  # 400 rows (about 40 KB, full batches), then 5 rounds of 6
        lines.append(rec("p", {"id": n, "name": f"row {n} " + "x" * 40}, compact=True))
        if n >= 400 and n % 6 == 4:
            lines.append(state("p", {"after": n}))
    probe = _StateProbe(dest_conn)
    writer = _writer(dest_config, catalog_for([("p", PROPS)], "append"), probe)
    assert writer.run(_chunks(lines)) == 0
    assert probe.seen == [(n, n) for n in (400, 406, 412, 418, 424, 430)]
    assert staged.count(6) == 5, staged
    assert _stages(dest_conn) == []


def test_dedup_across_staged_batches_keeps_the_latest_per_key(dest_config, dest_conn) -> None:
    """Keys repeated within and across staged batches, into an empty table then into a full
    one: one row per key, the latest by cursor, then emitted_at, then input order."""
    rng = random.Random(7)
    catalog = dedup_catalog("p", PROPS, [["id"]], ["seq"])
    sent: list[tuple[dict[str, Any], int]] = []
    for round_ in range(2):
        lines = []
        for i in range(1500):
            data = {"id": rng.randrange(300), "name": f"r{round_}-{i} " + "y" * 30,
                    "seq": rng.randrange(4)}  # fmt: skip
            em = EM + rng.randrange(2)
            sent.append((data, em))
            lines.append(rec("p", data, em, compact=True))
        lines.append(state("p", round_))
        writer = _writer(dest_config, catalog, io.BytesIO())
        assert writer.run(_chunks(lines)) == 0
        assert writer._stage_seq >= 5
        expected = latest(sent, ["id"], "seq")
        rows = dest_conn.execute("SELECT id, name, seq FROM p").fetchall()
        assert len(rows) == len(expected)
        assert {(r[0],): {"id": r[0], "name": r[1], "seq": r[2]} for r in rows} == expected
        raw = dest_conn.execute("SELECT count(*) FROM _airbyte_raw_p").fetchone()[0]
        assert raw == len(sent)
    assert _stages(dest_conn) == []


def _hashid_mismatches(conn: Any) -> int:
    """Typed rows of p whose hashid is not the hash of their raw record's data."""
    return conn.execute(
        "SELECT count(*) FROM p JOIN _airbyte_raw_p r USING (_airbyte_ab_id) "
        "WHERE p._airbyte_p_hashid IS DISTINCT FROM "
        "lpad(to_hex(jsonb_hash_extended(r._airbyte_data, 0)), 16, '0')"
    ).fetchone()[0]


@pytest.mark.parametrize("mode", ["append", "append_dedup"])
def test_staged_batches_carry_the_hashid_of_their_data(dest_config, dest_conn, mode) -> None:
    """A stage computes its rows' hashids as the second connection fills it: every typed row,
    of an append, of a first dedup load (plain INSERTs) and of a dedup merge (second write),
    holds the hash of its raw record's data, as a row loaded without a stage does."""
    catalog = (
        dedup_catalog("p", PROPS, [["id"]], ["seq"])
        if mode == "append_dedup"
        else catalog_for([("p", PROPS)], "append")
    )
    for round_ in range(2):
        lines = [
            rec("p", {"id": i, "name": f"r{round_}-{i} " + "z" * 30, "seq": round_}, compact=True)
            for i in range(800)
        ]
        lines.append(state("p", round_))
        writer = _writer(dest_config, catalog, io.BytesIO())
        assert writer.run(_chunks(lines)) == 0
        assert writer._stage_seq >= 5
        typed = dest_conn.execute("SELECT count(*) FROM p").fetchone()[0]
        assert typed == (800 if mode == "append_dedup" else 800 * (round_ + 1))
        assert _hashid_mismatches(dest_conn) == 0
    assert _stages(dest_conn) == []


def test_a_bad_line_after_staged_batches_keeps_the_last_state(dest_config, dest_conn) -> None:
    """A canonical-looking line whose data is not JSON, in a staged batch after a STATE: the
    write fails naming that line, the tables hold exactly what the STATE covered, and every
    stage is gone."""
    lines = [rec("p", {"id": i, "name": "z" * 50}, compact=True) for i in range(300)]
    lines.append(state("p", 1))
    lines += [rec("p", {"id": i, "name": "z" * 50}, compact=True) for i in range(300, 600)]
    bad_at = len(lines) + 1
    lines.append(b'{"type":"RECORD","record":{"stream":"p","data":{"id":1,"name":"x"x},'
                 b'"emitted_at":1732550000000}}')  # fmt: skip
    lines += [rec("p", {"id": i, "name": "z" * 50}, compact=True) for i in range(600, 900)]
    out = io.BytesIO()
    writer = _writer(dest_config, catalog_for([("p", PROPS)], "append"), out)
    assert writer.run(_chunks(lines)) == 1
    assert writer._stage_seq >= 3
    errors = [m for m in map(orjson.loads, out.getvalue().splitlines()) if m["type"] == "TRACE"]
    assert f"Input line {bad_at} " in errors[-1]["trace"]["error"]["message"]
    for table in ("p", "_airbyte_raw_p"):
        assert dest_conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0] == 300
    assert _stages(dest_conn) == []


def test_orphan_stages_of_a_killed_write_are_dropped(dest_config, dest_conn) -> None:
    """A stage whose write is gone (nobody holds its token's advisory lock) is dropped at the
    next write's start; a live write's stage and a user's table of a similar name are left."""
    dest_conn.execute("SELECT pg_advisory_lock(%s, 4242)", (stages.LOCK_CLASS,))  # "live"
    for name in ("_pgbyte_stage_99999999_1", "_pgbyte_stage_4242_1"):
        dest_conn.execute(f"CREATE UNLOGGED TABLE {name} (a int)")
        dest_conn.execute(
            sql.SQL("COMMENT ON TABLE {} IS {}").format(
                sql.Identifier(name), sql.Literal(stages.COMMENT)
            )
        )
    dest_conn.execute("CREATE UNLOGGED TABLE _pgbyte_stage_99999999_2 (a int)")  # no comment
    out = io.BytesIO()
    lines = [rec("p", {"id": 1, "name": "a"}, compact=True)]
    assert _writer(dest_config, catalog_for([("p", PROPS)], "append"), out).run([lines]) == 0
    assert _stages(dest_conn) == ["_pgbyte_stage_4242_1", "_pgbyte_stage_99999999_2"]
    assert b"Dropped 1 stage table(s)" in out.getvalue()


def test_a_locked_stage_is_dropped_later_not_waited_for(dest_config, dest_conn) -> None:
    """Another session reading a stage (a pg_dump, a SELECT left open) does not stall the
    write: the DROP gives up after a short wait, and a later one drops it."""
    config = DestinationConfig.from_dict(dest_config)
    dest_conn.execute("CREATE UNLOGGED TABLE public._pgbyte_stage_7_1 (a int)")
    dest_conn.execute("CREATE UNLOGGED TABLE public._pgbyte_stage_7_2 (a int)")
    with config.settings.connect() as reader, config.settings.connect() as writer:
        reader.execute("SELECT * FROM public._pgbyte_stage_7_1")  # holds its lock: open txn
        left = stages.drop(
            writer, [("public", "_pgbyte_stage_7_1"), ("public", "_pgbyte_stage_7_2")]
        )
        assert left == [("public", "_pgbyte_stage_7_1")]
        assert _stages(dest_conn) == ["_pgbyte_stage_7_1"]
        reader.rollback()
        assert stages.drop(writer, left) == []
    assert _stages(dest_conn) == []


def test_no_second_connection_loads_on_one(dest_config, dest_conn) -> None:
    """When the server refuses a second connection (a role's connection limit), the write
    says so in a WARN and loads everything on the first."""
    config = DestinationConfig.from_dict(dest_config)
    targets = parse_catalog(catalog_for([("p", PROPS)], "append"), config)

    def refuse() -> Any:
        raise psycopg.OperationalError('FATAL:  too many connections for role "loader"')

    lines = [rec("p", {"id": i, "name": "v" * 60}, compact=True) for i in range(1000)]
    out = io.BytesIO()
    writer = Writer(config.settings.connect(), targets, MessageWriter(out), batch_bytes=4096,
                    connect=refuse)  # fmt: skip
    assert writer.run([lines[i : i + 40] for i in range(0, len(lines), 40)]) == 0
    assert b"A second connection could not be opened" in out.getvalue()
    assert b"too many connections" in out.getvalue()
    assert dest_conn.execute("SELECT count(*), count(DISTINCT id) FROM p").fetchone() == (
        1000,
        1000,
    )
    assert _stages(dest_conn) == []


def test_stages_per_commit_are_bounded(dest_config, dest_conn) -> None:
    """Without a STATE nothing commits, so dropped stages keep their locks and disk space:
    after MAX_STAGES_PER_COMMIT of them the batches load without a stage, and every record
    still lands once."""
    lines = [rec("p", {"id": i, "name": "w" * 60}, compact=True) for i in range(6000)]
    writer = _writer(dest_config, catalog_for([("p", PROPS)], "append"), io.BytesIO())
    # Blocks of 40 lines, as stdin would bring them (one block of canonical lines is one batch).
    assert writer.run([lines[i : i + 40] for i in range(0, len(lines), 40)]) == 0
    assert writer._stage_seq == MAX_STAGES_PER_COMMIT < 6000 // 40
    ids = dest_conn.execute("SELECT array_agg(id ORDER BY id) FROM p").fetchone()[0]
    assert ids == list(range(6000))
    assert dest_conn.execute("SELECT count(*) FROM _airbyte_raw_p").fetchone()[0] == 6000
    assert _stages(dest_conn) == []


def test_a_running_write_keeps_its_stages_from_another_write(dest_config, dest_conn) -> None:
    """Write A has started (its token claimed) and holds a stage; write B starting in the same
    schema leaves it alone."""
    a = _writer(dest_config, catalog_for([("p", PROPS)], "append"), io.BytesIO())
    a.start()
    name = stages.name(a._token, 1)
    dest_conn.execute(f"CREATE UNLOGGED TABLE {name} (a int)")
    dest_conn.execute(
        sql.SQL("COMMENT ON TABLE {} IS {}").format(
            sql.Identifier(name), sql.Literal(stages.COMMENT)
        )
    )
    lines = [rec("p", {"id": 1, "name": "b"}, compact=True)]
    assert (
        _writer(dest_config, catalog_for([("p", PROPS)], "append"), io.BytesIO()).run([lines]) == 0
    )
    assert _stages(dest_conn) == [name]
    a.conn.close()  # A is gone: the next write drops its stage
    assert (
        _writer(dest_config, catalog_for([("p", PROPS)], "append"), io.BytesIO()).run([lines]) == 0
    )
    assert _stages(dest_conn) == []


def test_a_small_write_opens_no_second_connection(dest_config, dest_conn) -> None:
    """A write that never fills its buffers opens no second connection: the batches its STATE
    and the end of input flush load on the first."""
    config = DestinationConfig.from_dict(dest_config)
    targets = parse_catalog(catalog_for([("p", PROPS)], "append"), config)
    opened: list[Any] = []

    def connect() -> Any:
        opened.append(config.settings.connect())
        return opened[-1]

    lines = [rec("p", {"id": i, "name": "s"}, compact=True) for i in range(30)]
    lines.insert(15, state("p", 1))
    writer = Writer(config.settings.connect(), targets, MessageWriter(io.BytesIO()),
                    batch_bytes=4096, connect=connect)  # fmt: skip
    assert writer.run(_chunks(lines)) == 0
    assert opened == [] and writer._stage_seq == 0
    assert dest_conn.execute("SELECT count(*) FROM p").fetchone()[0] == 30


@pytest.mark.parametrize("mode", ["overwrite", "append"])
def test_a_role_limited_to_one_connection_loads_on_it(
    run_write, dest_config, dest_conn, dest_db, mode: str
) -> None:
    """A real role with CONNECTION LIMIT 1 and input for several batches: the second
    connection is refused by the server, the write says so in a WARN and loads everything on
    the first (before, connect()'s own error class slipped past the fallback and the write
    failed as "connection lost")."""
    role = f"one_{mode}"
    with throwaway_role(dest_conn, role, "one-pw-12345", "LOGIN CONNECTION LIMIT 1"):
        dest_conn.execute(f"CREATE SCHEMA {role} AUTHORIZATION {role}")
        config = {**dest_config, "username": role, "password": "one-pw-12345", "schema": role}
        rows = 20_000  # about 20 MB: more than two batches
        lines = b"\n".join(rec("p", {"id": i, "name": "v" * 1000}, compact=True)
                           for i in range(rows)) + b"\n"  # fmt: skip
        result = run_write(catalog_for([("p", PROPS)], mode), lines, config=config)
        assert result.returncode == 0, result.errors
        assert any("A second connection could not be opened" in m and "too many connections"
                   in m for m in result.logs), result.logs  # fmt: skip
        assert dest_conn.execute(f"SELECT count(*), count(DISTINCT id) FROM {role}.p").fetchone() \
            == (rows, rows)  # fmt: skip
