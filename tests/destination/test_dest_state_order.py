"""STATE echo: only after the records before it are committed, in order, one per STATE."""

from __future__ import annotations

import hashlib
import json
import os
import select
import time

from dest_helpers import catalog_for, live_write, record, state, status, table_names
from destination_postgres.framing import read_lines

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
    committed together (commits.COMMIT_SECONDS), yet each is echoed, in order, with the count
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


KEYED = {"k": {"type": "string"}, "v": {"type": "integer"}}


def _keyed(k: str, v: int) -> bytes:
    return record("bk", {"k": k, "v": v})


def test_a_key_too_long_for_the_key_index_is_named_and_earlier_states_kept(
    run_write, dest_conn
) -> None:
    """append_dedup: a primary key value over PostgreSQL's btree limit (~2.7 kB) is refused
    when its batch is typed, where no line number is known. The write fails naming the
    batch's lines and what to do, and the STATEs pending before it are still committed and
    echoed (the latest one whose records load), the records after them not."""
    catalog = catalog_for([("bk", KEYED)], "append_dedup")
    catalog["streams"][0].update(sync_mode="incremental", primary_key=[["k"]])
    long_key = "https://example.com/?q=" + "".join(f"{i:x}" for i in range(1200))
    lines = [_keyed("a", 1), _keyed("b", 2), state("bk", {"n": 1})]
    lines += [_keyed("c", 3), state("bk", {"n": 2})]
    lines += [_keyed("d", 4), _keyed(long_key, 5), _keyed("e", 6), state("bk", {"n": 3})]
    result = run_write(catalog, b"\n".join(lines) + b"\n")
    assert result.returncode == 1
    (error,) = result.errors
    assert "on input lines 1-8" in error["message"], error
    assert "primary key value too long" in error["message"], error
    assert [m["state"]["stream"]["stream_state"]["n"] for m in result.states] == [1, 2]
    assert dest_conn.execute("SELECT string_agg(k, ',' ORDER BY k) FROM bk").fetchone() == (
        "a,b,c",)  # fmt: skip
    assert dest_conn.execute("SELECT count(*) FROM _airbyte_raw_bk").fetchone()[0] == 3


def test_a_refused_key_among_a_thousand_states_keeps_the_ones_before_it(
    run_write, dest_conn
) -> None:
    """A source checkpointing every 5 records: a key refused when the batch is typed sits
    after the 100th of 200 pending STATEs; the 100 before it are committed and echoed (found by
    bisection, not by reloading the batch once per STATE), nothing after."""
    catalog = catalog_for([("bk", KEYED)], "append_dedup")
    catalog["streams"][0].update(sync_mode="incremental", primary_key=[["k"]])
    long_key = "".join(hashlib.sha256(str(i).encode()).hexdigest() for i in range(100))
    lines = []
    for n in range(200):
        lines += [_keyed(f"k{n * 5 + i}", n) for i in range(5)]
        if n == 100:
            lines.append(_keyed(long_key, n))
        lines.append(state("bk", {"n": n}))
    result = run_write(catalog, b"\n".join(lines) + b"\n")
    assert result.returncode == 1
    assert [m["state"]["stream"]["stream_state"]["n"] for m in result.states] == list(range(100))
    assert dest_conn.execute("SELECT count(*) FROM bk").fetchone()[0] == 500
    assert dest_conn.execute("SELECT count(*) FROM _airbyte_raw_bk").fetchone()[0] == 500


def test_a_value_a_users_column_refuses_is_named_and_earlier_states_kept(
    run_write, dest_conn
) -> None:
    """A user's NOT NULL on a typed column refuses a record without that value when the batch
    is typed: one TRACE ERROR naming the stream and the batch's lines, the STATE before it
    committed and echoed."""
    catalog = catalog_for([("s", NAMED)], "append")
    assert run_write(catalog, record("s", {"id": 1, "name": "a"}) + b"\n").returncode == 0
    dest_conn.execute("ALTER TABLE s ALTER name SET NOT NULL")
    lines = [record("s", {"id": 2, "name": "b"}), state("s", {"n": 1})]
    lines += [record("s", {"id": 3}), state("s", {"n": 2})]
    result = run_write(catalog, b"\n".join(lines) + b"\n")
    assert result.returncode == 1
    (error,) = result.errors
    assert "stream s on input lines 1-3 was refused by PostgreSQL" in error["message"], error
    assert "not-null" in error["message"], error
    assert [m["state"]["stream"]["stream_state"]["n"] for m in result.states] == [1]
    assert dest_conn.execute("SELECT array_agg(id ORDER BY id) FROM s").fetchone() == ([1, 2],)


def test_json_nested_too_deep_for_postgres_is_named_by_line(run_write, dest_conn) -> None:
    """Valid JSON nested deeper than PostgreSQL's stack takes: the write fails naming its
    line (not a bare server error), and the STATE before it is committed and echoed."""
    deep = b'{"type":"RECORD","record":{"stream":"s","data":{"id":3,"name":' + b"[" * 60000
    deep += b"1" + b"]" * 60000 + b'},"emitted_at":1732550000000}}'
    lines = [_canonical("s", 1), state("s", {"n": 1}), deep, state("s", {"n": 2})]
    result = run_write(catalog_for([("s", NAMED)], "append"), b"\n".join(lines) + b"\n")
    assert result.returncode == 1
    (error,) = result.errors
    assert "Input line 3" in error["message"], error
    assert "stream s whose data is nested too deeply" in error["message"], error
    assert "not valid JSON" not in error["message"], error
    assert [m["state"]["stream"]["stream_state"]["n"] for m in result.states] == [1]
    assert dest_conn.execute("SELECT array_agg(id) FROM s").fetchone() == ([1],)


def test_a_global_state_held_for_a_swap_says_what_was_committed(run_write, dest_conn) -> None:
    """A GLOBAL STATE waits for an overwrite stream's swap, which never comes (the input ends
    first): the append stream's records before it are committed, and the error says so instead
    of claiming nothing after the last echoed STATE was; the overwrite's count is not called
    committed."""
    catalog = catalog_for([("ow", PROPS)], "overwrite")
    catalog["streams"] += catalog_for([("st", PROPS)], "append")["streams"]
    global_state = (b'{"type":"STATE","state":{"type":"GLOBAL","global":{"shared_state":'
                    b'{"lsn":1},"stream_states":[]}}}')  # fmt: skip
    lines = [status("ow", "STARTED"), record("ow", {"id": 90}), record("st", {"id": 90}),
             global_state, record("st", {"id": 91}), global_state]  # fmt: skip
    result = run_write(catalog, b"\n".join(lines) + b"\n")
    assert result.returncode == 1
    assert result.states == []
    (error,) = result.errors
    assert "Records of stream(s) st after their last echoed STATE were committed" in (
        error["message"]), error  # fmt: skip
    assert "Nothing after the last echoed STATE was committed" not in error["message"]
    assert dest_conn.execute("SELECT count(*) FROM st").fetchone()[0] == 2
    (report,) = [m for m in result.logs if m.startswith("Stream ow:")]
    assert "1 record(s) received, not swapped in" in report, report


def test_a_bad_line_after_a_held_global_state_says_what_its_salvage_committed(
    run_write, dest_conn
) -> None:
    """As above, but a bad line ends the write: the salvage commits the append stream's
    records before the held GLOBAL STATE, and the error (composed after that commit) says so
    instead of claiming nothing after the last echoed STATE was committed."""
    catalog = catalog_for([("ow", PROPS)], "overwrite")
    catalog["streams"] += catalog_for([("st", PROPS)], "append")["streams"]
    global_state = (b'{"type":"STATE","state":{"type":"GLOBAL","global":{"shared_state":'
                    b'{"lsn":1},"stream_states":[]}}}')  # fmt: skip
    lines = [status("ow", "STARTED"), record("ow", {"id": 90}), record("st", {"id": 90}),
             global_state, b"this is no JSON"]  # fmt: skip
    result = run_write(catalog, b"\n".join(lines) + b"\n")
    assert result.returncode == 1
    assert result.states == []
    (error,) = result.errors
    assert "Input line 5" in error["message"], error
    assert "Records of stream(s) st after their last echoed STATE were committed" in (
        error["message"]), error  # fmt: skip
    assert "Nothing after the last echoed STATE was committed" not in error["message"]
    assert dest_conn.execute("SELECT count(*) FROM st").fetchone()[0] == 1


def test_a_global_state_before_any_overwrite_record_waits_for_no_swap(run_write, dest_conn) -> None:
    """A LEGACY state after an append stream's records and before any record of an overwrite
    stream, the source failing after: the state is echoed (it was held for the overwrite's
    swap, so the next sync sent the append records again and the append table got them
    twice); the overwrite's records after it are not swapped in."""
    catalog = catalog_for([("ap", PROPS)], "append")
    catalog["streams"] += catalog_for([("ow", PROPS)], "overwrite")["streams"]
    legacy = b'{"type":"STATE","state":{"type":"LEGACY","data":{"n":1}}}'
    error = (b'{"type":"TRACE","trace":{"type":"ERROR","emitted_at":1,'
             b'"error":{"message":"boom","failure_type":"system_error"}}}')  # fmt: skip
    lines = [status("ap", "STARTED"), record("ap", {"id": 10}), legacy,
             status("ap", "COMPLETE"), status("ow", "STARTED"), record("ow", {"id": 1}),
             error]  # fmt: skip
    result = run_write(catalog, b"\n".join(lines) + b"\n")
    assert result.returncode == 1
    assert [m["state"]["data"] for m in result.states] == [{"n": 1}]
    assert dest_conn.execute("SELECT array_agg(id) FROM ap").fetchone() == ([10],)
    assert "ow" not in table_names(dest_conn)


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


def test_reading_yields_at_a_pause_and_at_part_of_a_line() -> None:
    """read_lines hands back an empty list when a wait found no input and when a read brought
    only part of a line (the writer commits its pending STATEs then), and the line whole once
    its end comes."""
    r, w = os.pipe()
    try:
        lines = read_lines(r)
        os.write(w, b'{"a":1}\n{"b":')
        assert next(lines) == [b'{"a":1}']
        started = time.monotonic()
        assert next(lines) == []  # nothing came within half a second
        assert time.monotonic() - started < 5
        os.write(w, b"2")
        assert next(lines) == []  # more of the line, not its end
        os.write(w, b"}\n")
        assert next(lines) == [b'{"b":2}']
        os.close(w)
        w = -1
        assert list(lines) == []
    finally:
        os.close(r)
        if w >= 0:
            os.close(w)


def test_a_pending_state_is_echoed_while_the_source_pauses_mid_line(
    tmp_path, dest_config, dest_conn
) -> None:
    """STATEs close together (pending), then the source writes part of its next line and
    pauses: the STATEs are committed and echoed during the pause, not when the line ends."""
    with live_write(tmp_path, dest_config, catalog_for([("s", NAMED)], "append")) as write:
        assert write.proc.stdin is not None and write.proc.stdout is not None
        first = [_canonical("s", i) for i in range(20)] + [state("s", {"n": 1})]
        first += [_canonical("s", 20 + i) for i in range(20)] + [state("s", {"n": 2})]
        write.proc.stdin.write(b"\n".join(first) + b"\n")
        write.proc.stdin.flush()
        time.sleep(0.05)
        write.proc.stdin.write(_canonical("s", 40)[:25])  # part of the next line
        write.proc.stdin.flush()
        echoed, deadline = [], time.monotonic() + 5
        while len(echoed) < 2 and time.monotonic() < deadline:
            if select.select([write.proc.stdout], [], [], 0.2)[0]:
                msg = json.loads(write.proc.stdout.readline())
                if msg["type"] == "STATE":
                    echoed.append(msg["state"]["stream"]["stream_state"]["n"])
        assert echoed == [1, 2]
        assert dest_conn.execute("SELECT count(*) FROM s").fetchone()[0] == 40
        assert write.finish(_canonical("s", 40)[25:] + b"\n") == 0
    assert dest_conn.execute("SELECT count(*) FROM s").fetchone()[0] == 41


def test_an_overwrite_complete_commits_no_other_streams_records_after_their_state(
    run_write, dest_conn
) -> None:
    """The swap at an overwrite stream's COMPLETE commits that stream: an append stream's
    records after its last STATE stay out of that commit, so a failure after it keeps nothing
    after the last echoed STATE (before, they were committed with the swap)."""
    streams = catalog_for([("a", NAMED)], "append")["streams"]
    streams += catalog_for([("o", NAMED)], "overwrite")["streams"]
    lines = [_canonical("a", i) for i in range(1, 11)] + [state("a", {"n": 1})]
    lines += [_canonical("a", i) for i in range(11, 16)] + [_canonical("o", 1)]
    lines += [status("o", "COMPLETE"), b"{bad json"]
    result = run_write({"streams": streams}, b"\n".join(lines) + b"\n")
    assert result.returncode == 1 and len(result.errors) == 1
    assert [m["state"]["stream"]["stream_state"]["n"] for m in result.states] == [1]
    assert dest_conn.execute("SELECT count(*), max(id) FROM a").fetchone() == (10, 10)
    assert dest_conn.execute("SELECT count(*) FROM _airbyte_raw_a").fetchone()[0] == 10
    assert dest_conn.execute("SELECT count(*) FROM o").fetchone()[0] == 1


def test_an_echoed_state_keeps_its_numbers_and_escapes_line_separators(run_write) -> None:
    """A STATE (spaced, as older CDK sources print it) whose numbers orjson reads rounded
    without an error — an integer past 64 bits, a decimal of 25 digits — is echoed with them
    exactly as they came (a client saves it, and the next read resumes from it); a U+2028 in
    it is escaped, as in every line the connectors print."""
    value = ('{"big": 123456789012345678901234567890, "lsn": -9223372036854775809, '
             '"d": 0.1000000000000000000000001, "s": "a\\u2028b"}')  # fmt: skip
    line = ('{"type": "STATE", "state": {"type": "STREAM", "stream": {"stream_descriptor": '
            '{"name": "s"}, "stream_state": ' + value + "}}}")  # fmt: skip
    catalog = catalog_for([("s", {"id": {"type": "integer"}})], "append")
    result = run_write(catalog, record("s", {"id": 1}) + b"\n" + line.encode() + b"\n")
    assert result.returncode == 0, result.errors
    (echoed,) = [x for x in result.stdout.splitlines() if b'"STATE"' in x]
    for text in (b'"big":123456789012345678901234567890', b'"lsn":-9223372036854775809',
                 b'"d":0.1000000000000000000000001', b'"s":"a\\u2028b"'):  # fmt: skip
        assert text in echoed, echoed
