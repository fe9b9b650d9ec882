"""STATE echo: only after the records before it are committed, in order, one per STATE."""

from __future__ import annotations

from dest_helpers import catalog_for, live_write, record, state

PROPS = {"id": {"type": "integer"}}


def test_each_state_echoed_after_its_records_are_committed(tmp_path, dest_config, dest_conn):
    """Feeding stdin piece by piece: when a STATE is read back, exactly the records before it
    are in both tables (read from another connection, i.e. committed)."""
    sent = 0
    seen = []
    with live_write(tmp_path, dest_config, catalog_for([("s", PROPS)], "append")) as write:
        for round_no, batch in enumerate([3, 1, 5]):
            records = [record("s", {"id": sent + i + 1}) for i in range(batch)]
            sent += batch
            msg = write.send_until_state(b"\n".join([*records, state("s", {"round": round_no})])
                                         + b"\n")  # fmt: skip
            raw = dest_conn.execute("SELECT count(*) FROM _airbyte_raw_s").fetchone()[0]
            norm = dest_conn.execute("SELECT count(*), max(id) FROM s").fetchone()
            seen.append((msg["state"]["stream"]["stream_state"]["round"],
                         msg["state"]["destinationStats"]["recordCount"], raw, *norm))  # fmt: skip
        assert write.finish() == 0
    assert seen == [(0, 3.0, 3, 3, 3), (1, 1.0, 4, 4, 4), (2, 5.0, 9, 9, 9)]


def test_records_after_last_state_are_committed_at_clean_end(run_write, dest_conn) -> None:
    """A clean end of input commits the records that came after the last STATE too."""
    lines = [record("s", {"id": 1}), state("s", {}), record("s", {"id": 2})]
    result = run_write(catalog_for([("s", PROPS)], "append"), b"\n".join(lines) + b"\n")
    assert result.returncode == 0
    assert dest_conn.execute("SELECT count(*) FROM s").fetchone()[0] == 2
    assert [m["state"]["destinationStats"]["recordCount"] for m in result.states] == [1.0]


def _canonical(stream: str, i: int, name: str = "x") -> bytes:
    """A RECORD as the CDK prints it (compact): the writer's fast path takes it unparsed."""
    return (f'{{"type":"RECORD","record":{{"stream":"{stream}","data":{{"id":{i},'
            f'"name":"{name}"}},"emitted_at":1732550000000}}}}').encode()  # fmt: skip


NAMED = {"id": {"type": "integer"}, "name": {"type": "string"}}


def test_a_state_every_few_records_is_each_echoed_in_order(run_write, dest_conn) -> None:
    """A source that checkpoints every 10 records: the STATEs that come in a burst are
    committed together (writer.COMMIT_SECONDS), yet each is echoed, in order, with the count
    of its own records, and every record is in both tables."""
    lines = []
    for n in range(300):
        lines += [_canonical("s", n * 10 + i) for i in range(10)]
        lines.append(state("s", {"n": n}))
    result = run_write(catalog_for([("s", NAMED)], "append"), b"\n".join(lines) + b"\n")
    assert result.returncode == 0, result.stderr
    assert [m["state"]["stream"]["stream_state"]["n"] for m in result.states] == list(range(300))
    assert {m["state"]["destinationStats"]["recordCount"] for m in result.states} == {10.0}
    assert dest_conn.execute("SELECT count(*), count(DISTINCT id) FROM s").fetchone() == (
        3000, 3000)  # fmt: skip
    assert dest_conn.execute("SELECT count(*) FROM _airbyte_raw_s").fetchone()[0] == 3000


def test_a_refused_record_keeps_the_states_committed_together_before_it(
    run_write, dest_conn
) -> None:
    """STATEs pending together, then a record Postgres refuses (invalid UTF-8 inside a line
    the fast path takes unparsed): the write fails naming its line, and what came before the
    last STATE ahead of it is committed and echoed, as with a commit at every STATE."""
    bad = _canonical("s", 999, "J_ne").replace(b"_", b"\xff")
    lines = [_canonical("s", i) for i in range(50)] + [state("s", {"n": 1})]
    lines += [_canonical("s", 50 + i) for i in range(50)] + [state("s", {"n": 2})]
    lines += [_canonical("s", 100 + i) for i in range(5)] + [bad]  # line 108
    lines += [_canonical("s", 200 + i) for i in range(10)] + [state("s", {"n": 3})]
    result = run_write(catalog_for([("s", NAMED)], "append"), b"\n".join(lines) + b"\n")
    assert result.returncode == 1
    assert len(result.errors) == 1 and "line 108" in result.errors[0]["message"]
    assert [m["state"]["stream"]["stream_state"]["n"] for m in result.states] == [1, 2]
    assert dest_conn.execute("SELECT count(*), max(id) FROM s").fetchone() == (100, 99)
    assert dest_conn.execute("SELECT count(*) FROM _airbyte_raw_s").fetchone()[0] == 100


def test_a_failed_source_keeps_the_states_pending_before_its_error(run_write, dest_conn) -> None:
    """The source's TRACE ERROR after STATEs still pending: they are committed and echoed,
    the records after the last of them are not."""
    error = (b'{"type":"TRACE","trace":{"type":"ERROR","emitted_at":1,'
             b'"error":{"message":"boom","failure_type":"system_error"}}}')  # fmt: skip
    lines = [_canonical("s", i) for i in range(20)] + [state("s", {"n": 1})]
    lines += [_canonical("s", 20 + i) for i in range(20)] + [state("s", {"n": 2})]
    lines += [_canonical("s", 40 + i) for i in range(7)] + [error]
    result = run_write(catalog_for([("s", NAMED)], "append"), b"\n".join(lines) + b"\n")
    assert result.returncode == 1
    assert "boom" in result.errors[0]["message"]
    assert [m["state"]["stream"]["stream_state"]["n"] for m in result.states] == [1, 2]
    assert dest_conn.execute("SELECT count(*), max(id) FROM s").fetchone() == (40, 39)
