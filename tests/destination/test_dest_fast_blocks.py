"""The block fast path (Writer._uniform_block) buffers exactly what the line-by-line loop does.

In-process and without a database: no batch is flushed (batch_bytes is huge), so the buffered
COPY rows, lines, line numbers and counters of the two paths can be compared field by field.
"""

from __future__ import annotations

import os

import orjson
import pytest
from destination_postgres.catalog import parse_catalog
from destination_postgres.config import DestinationConfig
from destination_postgres.framing import HEAD_SIZE, binary_rows, row_head, timestamp_usec
from destination_postgres.writer import Writer
from pgbyte_common.messages import MessageWriter

PROPS = {"id": {"type": "integer"}, "s": {"type": "string"}}
UUID_AT = 6  # where a row head holds its random UUID


def _writer(line_by_line: bool) -> Writer:
    config = DestinationConfig.from_dict(
        {"host": "localhost", "port": 5432, "database": "d", "username": "u", "schema": "public"}
    )
    catalog = {
        "streams": [
            {
                "stream": {"name": name, "namespace": ns, "json_schema": {"properties": PROPS}},
                "sync_mode": "full_refresh",
                "destination_sync_mode": "append",
            }
            for name, ns in (("a", "public"), ("b", None))
        ]
    }
    writer = Writer(
        None,  # type: ignore[arg-type]  # never used: nothing is flushed
        parse_catalog(catalog, config),
        MessageWriter(open(os.devnull, "w")),  # noqa: SIM115
        batch_bytes=1 << 40,
    )
    if line_by_line:
        writer._uniform_block = lambda lines: False  # type: ignore[method-assign]
    return writer


def _em_first(
    i: int,
    em: bytes | None = None,
    stream: bytes = b'"a","namespace":"public"',
    data: bytes | None = None,
) -> bytes:
    em = em if em is not None else str(1732550000000 + i // 3).encode()
    data = data if data is not None else orjson.dumps({"id": i, "s": f"row {i} \\ \u00e9"})
    return (
        b'{"type":"RECORD","record":{"stream":'
        + stream
        + b',"emitted_at":'
        + em
        + (b',"data":' + data + b"}}")
    )


def _data_first(i: int, em: bytes | None = None) -> bytes:
    data = orjson.dumps({"id": i, "s": f"row {i}", "nested": {"emitted_at": 1}})
    em = em if em is not None else str(1732550000000 + i // 3).encode()
    return (
        b'{"type":"RECORD","record":{"stream":"b","data":' + data + b',"emitted_at":' + (em + b"}}")
    )


# Data whose bytes hold pieces of an envelope: nested "data"/"emitted_at" keys, braces in strings.
LOOKALIKE = [
    orjson.dumps({"id": i, "data": {"data": {}, "emitted_at": 1}, "t": "}}}", "u": '"data":{'})
    for i in range(3)
]


def _buffered(writer: Writer) -> list[tuple]:
    """Everything a flush would load, per stream; the random UUIDs (in the heads) left out."""
    out = []
    for t in writer.targets:
        rows = [
            piece if n % 2 else piece[:UUID_AT] + piece[UUID_AT + 16 :]
            for n, piece in enumerate(t.fast_rows)
        ]
        out.append(
            (t.name, rows, t.fast_lines, t.fast_linenos, t.slow_lines, t.slow_linenos,
             t.since_state, t.nbytes, t.nul_stripped, t.surrogates_replaced)
        )  # fmt: skip
    return [*out, (writer.lineno, writer.buffered)]


ONE_EM = b"1732550000123"
_LOG = b'{"type":"LOG","log":{"level":"INFO","message":"a page"}}'
BLOCKS = {
    "emitted_at first, with namespace": [_em_first(i) for i in range(40)],
    "data first (the CDK's order)": [_data_first(i) for i in range(40)],
    "one emitted_at, emitted_at first": [_em_first(i, em=ONE_EM) for i in range(40)],
    "one emitted_at, data first": [_data_first(i, em=ONE_EM) for i in range(40)],
    "one emitted_at, data that looks like an envelope": [
        _em_first(i, em=ONE_EM, data=data) for i, data in enumerate(LOOKALIKE)
    ],
    "data first, data that looks like an envelope": [
        _data_first(0, em=ONE_EM),
        _data_first(1, em=ONE_EM).replace(b'"nested"', b'"x":"}},\\"emitted_at\\":1}}","nested"'),
    ],
    "one emitted_at, then another": [_em_first(i, em=ONE_EM) for i in range(5)]
    + [_em_first(i, em=ONE_EM[:-1] + b"4") for i in range(5, 9)],
    "a line of another stream": [_em_first(i) for i in range(5)]
    + [_data_first(5)]
    + [_em_first(i) for i in range(6, 9)],
    "a timestamp that is not an integer": [_em_first(i) for i in range(5)]
    + [_em_first(5, em=b"1732550000000.5")]
    + [_em_first(i) for i in range(6, 9)],
    "a NUL character": [_em_first(i) for i in range(3)]
    + [_em_first(3).replace(b"row 3", b"row\\u00003")],
    "a lone surrogate": [_em_first(i) for i in range(3)]
    + [_em_first(3).replace(b"row 3", b"row\\ud83d 3")],
    "a surrogate pair": [_em_first(i) for i in range(3)]
    + [_em_first(3).replace(b"row 3", b"row\\ud83d\\ude00 3")],
    "a line with meta after data": [_em_first(i) for i in range(3)]
    + [_em_first(3)[:-2] + b',"meta":{"changes":[]}}}'],
    "one line": [_em_first(0)],
    "other messages among the records": [
        line for i in range(40) for line in ([_em_first(i)] if i % 10 else [_LOG, _em_first(i)])
    ],
}


@pytest.mark.parametrize("name", BLOCKS)
def test_block_path_buffers_what_the_line_loop_does(name: str) -> None:
    """Rows (data bytes, timestamps), lines, line numbers and counters are identical."""
    block, line_by_line = _writer(False), _writer(True)
    for writer in (block, line_by_line):
        writer.handle_lines(list(BLOCKS[name]))
        writer.handle_lines(list(BLOCKS[name]))  # a second block continues the numbering
    assert _buffered(block) == _buffered(line_by_line)
    assert block.lineno == 2 * len(BLOCKS[name])


def test_uniform_block_takes_the_block_path() -> None:
    """A block of one stream's canonical lines is taken whole by the block path."""
    writer = _writer(False)
    assert writer._uniform_block([_em_first(i) for i in range(10)]) is True
    assert writer._uniform_block([_data_first(i) for i in range(10)]) is True
    assert writer.targets[0].fast_lines == [_em_first(i) for i in range(10)]
    assert writer.targets[0].fast_rows[1] == orjson.dumps({"id": 0, "s": "row 0 \\ \u00e9"})


def test_runs_of_records_between_other_messages_take_the_block_path() -> None:
    """A block with other messages among its records (a source that checkpoints, or logs,
    every page): each run of records between them is taken whole by the block path."""
    writer = _writer(False)
    taken: list[int] = []
    uniform = writer._uniform_block

    def counting(lines: list[bytes]) -> bool:
        ok = uniform(lines)
        taken.append(len(lines) if ok else 0)
        return ok

    writer._uniform_block = counting  # type: ignore[method-assign]
    lines = [_em_first(i, em=ONE_EM) for i in range(30)]
    writer.handle_lines([*lines[:10], _LOG, *lines[10:25], _LOG, *lines[25:]])
    assert taken == [0, 10, 15, 5]  # the whole block first (refused), then each run
    assert writer.targets[0].fast_lines == lines


def test_one_emitted_at_takes_the_bulk_split(monkeypatch: pytest.MonkeyPatch) -> None:
    """A block whose lines share the envelope is cut by one split (binary_rows), in order."""
    import destination_postgres.intake as intake_module

    calls: list[int] = []

    def counting(datas: list[bytes], usec: int, uuids: bytes) -> list[bytes]:
        calls.append(len(datas))
        return binary_rows(datas, usec, uuids)

    monkeypatch.setattr(intake_module, "binary_rows", counting)
    writer = _writer(False)
    lines = [_em_first(i, em=ONE_EM) for i in range(10)]
    assert writer._uniform_block(lines) is True
    data = [orjson.dumps({"id": i, "s": f"row {i} \\ \u00e9"}) for i in range(10)]
    lookalike = [_em_first(i, em=ONE_EM, data=d) for i, d in enumerate(LOOKALIKE)]
    assert writer._uniform_block(lookalike) is True
    assert calls == [10, 3]
    assert writer.targets[0].fast_rows[1::2] == data + LOOKALIKE


def test_every_row_gets_its_own_uuid() -> None:
    """Rows from the bulk split, the varying-timestamp loop and the line loop, across refills
    of the UUID buffer, all get distinct version-4 UUIDs."""
    writer = _writer(False)
    for k in range(12):
        writer.handle_lines([_em_first(4000 * k + i, em=ONE_EM) for i in range(4000)])
        writer.handle_lines([_em_first(i) for i in range(500)])  # the timestamp varies
        writer.handle_lines([_em_first(0), _data_first(1)])  # two streams: the line loop
    rows = [piece for t in writer.targets for piece in t.fast_rows[0::2]]
    uuids = {head[UUID_AT : UUID_AT + 16] for head in rows}
    assert len(rows) == 12 * 4502 > 1 << 15  # more than one buffer of UUIDs
    assert len(uuids) == len(rows)
    assert all(u[6] >> 4 == 4 and u[8] >> 6 == 2 for u in uuids)


def test_emitted_at_in_seconds_is_read_as_seconds() -> None:
    """An emitted_at under 10^11 is seconds (PyAirbyte's replayed reads send those)."""
    assert timestamp_usec(1_732_550_000) == timestamp_usec(1_732_550_000_000)
    assert timestamp_usec(0) != timestamp_usec(1_000)


def test_bulk_rows_equal_rows_built_one_by_one() -> None:
    """binary_rows builds, for any data lengths, the heads row_head builds one at a time."""
    datas = [b"{}", b'{"a":1}', b"{" + b"x" * 70000 + b"}", rb'{"b":"\u00e9"}']
    uuids = os.urandom(16 * len(datas))
    usec = timestamp_usec(1_732_550_000_123)
    expected = []
    for i, data in enumerate(datas):
        expected += [row_head(uuids[16 * i : 16 * i + 16], usec, len(data)), data]
    assert binary_rows(datas, usec, uuids) == expected
    assert all(len(piece) == HEAD_SIZE for piece in expected[::2])
