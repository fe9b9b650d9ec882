"""The hot path's byte-level stream renaming, against a parse-everything reference."""

from __future__ import annotations

import copy
import json
import os
import threading
from types import SimpleNamespace
from typing import Any

import orjson
import pytest
from orchestrator_helpers import FIXTURES
from pgbyte import protocol
from pgbyte.catalog import Route, StreamMap, map_namespace
from pgbyte.pump import SourcePump, StreamProgress, SyncProgress
from pgbyte.rewrite import RecordRewriter
from pgbyte.secrets import Masker

TRICKY = (FIXTURES / "tricky_source_output.jsonl").read_bytes()
STREAMS = [("users", "public"), ('Ünïcødé "quoted" name', "public"), ("orders", "sales")]
MODES = [("p_", "destination"), ("", "raw_${SOURCE_NAMESPACE}"), ("x_", "source")]


def stream_map(prefix: str, namespace: str) -> StreamMap:
    routes = [
        Route(name, ns, prefix + name, map_namespace(namespace, ns), "full_refresh", "overwrite")
        for name, ns in STREAMS
    ]
    return StreamMap(routes)


def pump(smap: StreamMap) -> SourcePump:
    """A SourcePump whose `process` can be driven in-process (no processes behind it)."""
    instance = SourcePump.__new__(SourcePump)
    instance.rewriter = RecordRewriter(smap)
    instance.progress = SyncProgress(streams=[StreamProgress() for _ in smap.routes])
    instance.masker = Masker()
    instance.log = lambda level, text: None
    return instance


def reference(data: bytes, smap: StreamMap) -> list[dict[str, Any]]:
    """What the destination must receive: every forwarded message parsed and mapped."""
    out = []
    for line in data.splitlines():
        try:
            message = json.loads(line)
        except ValueError:
            continue  # not a protocol message: logged, not forwarded
        kind = message.get("type")
        if kind == "RECORD":
            record = message["record"]
            route = smap.by_source(record["stream"], record.get("namespace"))
            record["stream"] = route.dest_name
            record.pop("namespace", None)
            if route.dest_namespace is not None:
                record["namespace"] = route.dest_namespace
        elif kind == "STATE":
            state = message["state"]
            descriptors = (
                [state["stream"]["stream_descriptor"]] if state["type"] == "STREAM"
                else [s["stream_descriptor"] for s in state["global"]["stream_states"]]
            )  # fmt: skip
            for d in descriptors:
                map_descriptor(d, smap)
        elif kind == "TRACE" and message["trace"]["type"] == "STREAM_STATUS":
            map_descriptor(message["trace"]["stream_status"]["stream_descriptor"], smap)
        else:
            continue  # LOG, ESTIMATE: consumed by pgbyte
        out.append(message)
    return out


def map_descriptor(descriptor: dict[str, Any], smap: StreamMap) -> None:
    route = smap.by_source(descriptor["name"], descriptor.get("namespace"))
    descriptor["name"] = route.dest_name
    descriptor.pop("namespace", None)
    if route.dest_namespace is not None:
        descriptor["namespace"] = route.dest_namespace


def run_blocks(p: SourcePump, data: bytes, lines_per_block: int) -> bytes:
    lines = data.splitlines(keepends=True)
    out = []
    for i in range(0, len(lines), lines_per_block):
        out.append(bytes(p.process(b"\n" + b"".join(lines[i : i + lines_per_block]))))
    return b"".join(out)


@pytest.mark.parametrize("prefix,namespace", MODES)
@pytest.mark.parametrize("lines_per_block", [1, 2, 3, 7, 1000])
def test_tricky_output_is_mapped_like_parsing_would(prefix, namespace, lines_per_block) -> None:
    """Byte-level rewriting equals parse-and-map on data that imitates the envelope."""
    smap = stream_map(prefix, namespace)
    out = run_blocks(pump(smap), TRICKY, lines_per_block)
    assert [json.loads(line) for line in out.splitlines()] == reference(TRICKY, smap)


@pytest.mark.parametrize("prefix,namespace", MODES)
def test_record_data_bytes_are_untouched(prefix, namespace) -> None:
    """Only the envelope changes: each record's data object is forwarded byte for byte."""
    smap = stream_map(prefix, namespace)
    out = run_blocks(pump(smap), TRICKY, 1000)

    def datas(data: bytes) -> list[bytes]:
        found = []
        for line in data.splitlines():
            if line.startswith(b'{"type":"RECORD"'):
                start = line.index(b'"data":') + len(b'"data":')
                value = json.loads(line)["record"]["data"]
                found.append(json.dumps(value, ensure_ascii=False, separators=(",", ":")))
                assert line[start:].startswith(found[-1].encode()[:20])
        return found

    assert datas(out) == datas(TRICKY)


def test_known_layouts_take_the_fast_path() -> None:
    """Only the line whose envelope starts with "record" is parsed; the rest are bytes."""
    p = pump(stream_map("p_", "destination"))
    run_blocks(p, TRICKY, 1000)
    assert p.rewriter.slow_lines == 1


def test_records_are_counted_per_stream() -> None:
    """Emitted-record counts per stream include fast and slow paths."""
    p = pump(stream_map("p_", "raw_${SOURCE_NAMESPACE}"))
    run_blocks(p, TRICKY, 4)
    assert p.rewriter.records == [6, 2, 5]


def test_single_identity_stream_forwards_the_same_bytes() -> None:
    """No prefix and namespace=source: RECORD lines leave exactly as they came."""
    smap = StreamMap([Route("users", "public", "users", "public", "full_refresh", "append")])
    records = b"".join(
        line + b"\n" for line in TRICKY.splitlines()
        if line.startswith(b'{"type":"RECORD","record":{"stream":"users"')
    )  # fmt: skip
    assert bytes(pump(smap).process(b"\n" + records)) == records


def test_echoed_state_is_mapped_back_to_source_names() -> None:
    """A state echoed with destination names is saved under the source's names."""
    smap = stream_map("p_", "raw_${SOURCE_NAMESPACE}")
    rewriter = RecordRewriter(smap)
    descriptor = {"name": "p_orders", "namespace": "raw_sales"}
    original = copy.deepcopy(descriptor)
    rewriter.descriptor_to_source(descriptor)
    assert (original, descriptor) == (original, {"name": "orders", "namespace": "sales"})


def test_broken_record_line_is_withheld_and_reported() -> None:
    """A RECORD-looking line that needs parsing but is not JSON is not forwarded and fails the
    sync as a source error; the good lines around it still go through."""
    p = pump(stream_map("p_", "source"))
    good = TRICKY.splitlines(keepends=True)[0]
    broken = b'{"type":"RECORD","record":{"stream":"ghost","data":{"id":\n'
    out = bytes(p.process(b"\n" + good + broken + good))
    p._bad_lines()
    assert (len(out.splitlines()), len(p.progress.source_errors)) == (2, 1)


def test_broken_spaced_record_line_is_withheld_and_reported() -> None:
    """The same with the spacing of Python's json.dumps (the lines pgbyte parses anyway):
    before, such a line was logged as noise and dropped, the sync succeeded, and the saved
    state went past a record never loaded."""
    p = pump(stream_map("p_", "source"))
    good = TRICKY.splitlines(keepends=True)[0]
    broken = b'{"type": "RECORD", "record": {"stream": "users", "data": {"id": 50, "oops": }}}\n'
    noise = b"a plain line the source printed\n"
    out = bytes(p.process(b"\n" + good + broken + noise + good))
    p._bad_lines()
    assert (len(out.splitlines()), len(p.progress.source_errors)) == (2, 1)
    assert '"oops"' in p.progress.source_errors[0]["message"]


def _state_with_cursor(number: str) -> str:
    """A STATE line of public.users whose cursor is `number`, as written."""
    return ('{"type":"STATE","state":{"type":"STREAM","stream":{"stream_descriptor":'
            '{"name":"users","namespace":"public"},"stream_state":{"cursor":'
            + number + "}}}}\n")  # fmt: skip


def test_numbers_beyond_64_bits_pass_through_exactly() -> None:
    """A RECORD pgbyte must parse to rename (a non-canonical envelope) and a STATE, each with
    an integer of 5,000 digits and 1e400: forwarded with those numbers exactly as they came
    (before: the RECORD was "not valid JSON", a source error, and the STATE dropped as noise)."""
    huge = "9" * 5000
    record = ('{"type":"RECORD","record":{"namespace":"public","stream":"users","data":'
              '{"id":' + huge + ',"f":1e400},"emitted_at":1}}\n')  # fmt: skip
    state = _state_with_cursor(huge)
    p = pump(stream_map("p_", "source"))
    out = bytes(p.process(b"\n" + (record + state).encode()))
    p._bad_lines()
    assert p.progress.source_errors == []
    forwarded = out.decode().splitlines()
    assert len(forwarded) == 2
    assert '"data":{"id":' + huge + ',"f":1e400}' in forwarded[0]
    assert '"stream":"p_users"' in forwarded[0]
    assert '"stream_state":{"cursor":' + huge + "}" in forwarded[1]


@pytest.mark.parametrize(
    "number", ["123456789012345678901234567890", "0.1000000000000000000000001",
               "-9223372036854775809", "1234567.123456789012", "12345678901234567e5"],
)  # fmt: skip
def test_numbers_orjson_would_round_pass_through_exactly(number: str) -> None:
    """orjson 3.13 reads these rounded without an error (an integer past 64 bits as a float):
    a RECORD pgbyte renames on its slow path and a STATE it saves kept the rounded value."""
    record = ('{"type": "RECORD", "record": {"stream": "users", "namespace": "public", '
              '"data": {"n": ' + number + '}, "emitted_at": 1}}\n')  # fmt: skip
    state = _state_with_cursor(number)
    p = pump(stream_map("p_", "source"))
    out = bytes(p.process(b"\n" + (record + state).encode()))
    forwarded = out.decode().splitlines()
    assert '"data":{"n":' + number + "}" in forwarded[0], forwarded[0]
    assert '"stream_state":{"cursor":' + number + "}" in forwarded[1], forwarded[1]
    message = protocol.parse_line(state.encode())
    assert orjson.dumps(message).decode() in state


def _pump_through_pipes(smap: StreamMap, pieces: list[bytes]) -> tuple[SourcePump, bytes]:
    """SourcePump.run between two real pipes: `pieces` written to its input one write each (a
    line may span several reads); returns the pump and everything it forwarded."""
    src_r, src_w = os.pipe()
    dst_r, dst_w = os.pipe()
    source = SimpleNamespace(stdout=os.fdopen(src_r, "rb"))
    dest = SimpleNamespace(stdin=os.fdopen(dst_w, "wb"))
    progress = SyncProgress(streams=[StreamProgress() for _ in smap.routes])
    p = SourcePump(source, dest, RecordRewriter(smap), progress, Masker(), lambda *_: None)  # type: ignore[arg-type]
    forwarded: list[bytes] = []

    def feed() -> None:
        with os.fdopen(src_w, "wb") as sink:
            for piece in pieces:
                sink.write(piece)
                sink.flush()

    def drain() -> None:
        with os.fdopen(dst_r, "rb") as tap:
            forwarded.append(tap.read())

    threads = [threading.Thread(target=feed), threading.Thread(target=drain)]
    for thread in threads:
        thread.start()
    p.run()
    dest.stdin.close()
    for thread in threads:
        thread.join(60)
    source.stdout.close()
    return p, forwarded[0]


@pytest.mark.parametrize("prefix,namespace", [("", "source"), ("p_", "destination")])
def test_the_pump_forwards_lines_across_reads_long_lines_and_a_cut_tail(prefix, namespace) -> None:
    """Through real pipes, lines cut between reads, a 9 MB RECORD (several reads long) and a
    STATE among them arrive whole and mapped; an unterminated last line is kept as the tail,
    not forwarded; each record is counted once."""
    routes = [Route("users", "public", prefix + "users",
                    map_namespace(namespace, "public"), "full_refresh", "append")]  # fmt: skip
    smap = StreamMap(routes)

    def record(i: int, text: str) -> bytes:
        return json.dumps({"type": "RECORD", "record": {"stream": "users", "namespace": "public",
                           "data": {"id": i, "s": text}, "emitted_at": 1}},
                          separators=(",", ":")).encode() + b"\n"  # fmt: skip

    state = json.dumps({"type": "STATE", "state": {"type": "STREAM", "stream": {
        "stream_descriptor": {"name": "users", "namespace": "public"},
        "stream_state": {"cursor": 7}}}}, separators=(",", ":")).encode() + b"\n"  # fmt: skip
    lines = [record(i, "x" * (i % 97)) for i in range(20_000)]
    lines.insert(7_000, record(-1, "L" * (9 << 20)))
    lines.insert(12_000, state)
    data = b"".join(lines)
    tail = b'{"type":"RECORD","record":{"stream":"users","namespace":"public","data":{"id":'
    sizes = [1, 700_000, 3, (1 << 20) + 5, 2_000_000, 17]
    pieces, pos, k = [], 0, 0
    while pos < len(data):
        pieces.append(data[pos : pos + sizes[k % len(sizes)]])
        pos += sizes[k % len(sizes)]
        k += 1
    p, out = _pump_through_pipes(smap, [*pieces, tail])
    assert [json.loads(line) for line in out.splitlines()] == reference(data, smap)
    if not prefix:
        assert out == data  # the same bytes
    assert (p.partial_tail, p.rewriter.records) == (tail, [20_001])


@pytest.mark.parametrize("prefix", ["", "q_"])
def test_same_named_streams_in_cdk_order_are_counted_per_stream(prefix: str) -> None:
    """`items` in two namespaces, RECORDs in the Python CDK's key order (the namespace after
    the data), names kept or prefixed: every record was counted under the first stream (1,300
    and 0 emitted for 1,000 and 300), since both streams' heads are the same bytes."""
    smap = StreamMap([Route("items", ns, prefix + "items", ns, "full_refresh", "overwrite")
                      for ns in ("public", "other")])  # fmt: skip
    lines = [b'{"type":"RECORD","record":{"stream":"items","data":{"id":%d},"emitted_at":1,'
             b'"namespace":"%s"}}\n' % (i, ns.encode()) for ns, n in (("public", 5), ("other", 3))
             for i in range(n)]  # fmt: skip
    rewriter = RecordRewriter(smap)
    out = bytes(rewriter.records_block(b"\n" + b"".join(lines), len(lines)))
    assert rewriter.records == [5, 3]
    assert out.count(f'"stream":"{prefix}items"'.encode()) == 8
    assert out.count(b'"namespace":"other"') == 3
