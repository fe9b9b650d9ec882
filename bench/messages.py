"""Files of Airbyte messages: generated in SQL when the source is not there yet, and counted.

The generated file is what a full-refresh read of firenibble sends: STREAM_STATUS STARTED, one
RECORD per row (data built by Postgres with row_to_json, so values are the table's own), then
STREAM_STATUS COMPLETE and a STREAM state with sourceStats.recordCount. Postgres streams it
through COPY straight into the file, so memory stays bounded whatever N.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
from psycopg import sql

from bench.servers import Endpoint

RECORD_PREFIX = b'{"type":"RECORD"'


def _trace(stream: str, status: str, emitted_at: int) -> bytes:
    return orjson.dumps(
        {
            "type": "TRACE",
            "trace": {
                "type": "STREAM_STATUS",
                "emitted_at": float(emitted_at),
                "stream_status": {
                    "stream_descriptor": {"name": stream, "namespace": "public"},
                    "status": status,
                },
            },
        }
    )


def generate_in_sql(source: Endpoint, table: str, path: Path) -> int:
    """Write the messages of a full-refresh read of `table` to `path`; return the record count."""
    emitted_at = int(time.time() * 1000)
    head = sql.Literal(
        f'{{"type":"RECORD","record":{{"stream":"{table}","namespace":"public",'
        f'"emitted_at":{emitted_at},"data":'
    )
    query = sql.SQL(
        "COPY (SELECT {} || row_to_json(t)::text || '}}}}' FROM {} t ORDER BY f0) TO STDOUT"
    )
    query = query.format(head, sql.Identifier(table))
    with source.connect() as conn, path.open("wb") as out:
        out.write(_trace(table, "STARTED", emitted_at) + b"\n")
        with conn.cursor() as cur, cur.copy(query) as copy:
            for chunk in copy:
                # COPY's text format escapes backslashes, tabs and newlines; firenibble's values
                # never contain them, and if they ever did the file would be wrong, so stop.
                if b"\\" in chunk:
                    raise RuntimeError(
                        "COPY escaped a value; the generated messages would be wrong"
                    )
                out.write(chunk)
        row = conn.execute(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(table)))
        count = int(row.fetchone()[0])  # type: ignore[index]
        out.write(_trace(table, "COMPLETE", emitted_at) + b"\n")
        out.write(_state(table, None, {"sourceStats": {"recordCount": float(count)}}))
    return count


def _state(stream: str, value: Any, extra: dict[str, Any] | None = None) -> bytes:
    """A STREAM STATE line of `stream` (namespace public)."""
    body = {
        "type": "STREAM",
        "stream": {
            "stream_descriptor": {"name": stream, "namespace": "public"},
            "stream_state": value,
        },
        **(extra or {}),
    }
    return orjson.dumps({"type": "STATE", "state": body}) + b"\n"


def with_states(path: Path, out: Path, every: int, stream: str) -> int:
    """Copy a messages file, adding a STREAM STATE of `stream` after every `every` RECORDs (as
    a source that checkpoints per page does); returns how many were added."""
    added = seen = 0
    with path.open("rb") as handle, out.open("wb") as sink:
        for line in handle:
            sink.write(line)
            if line.startswith(RECORD_PREFIX):
                seen += 1
                if seen % every == 0:
                    added += 1
                    sink.write(_state(stream, {"records": seen}))
    return added


@dataclass(frozen=True)
class MessageCount:
    """What a file of Airbyte messages holds."""

    records: int
    states: int
    source_record_count: float | None  # sourceStats.recordCount summed over all states
    bytes: int
    first_data: dict[str, Any] | None  # the first RECORD's data, parsed, to check its shape


def count_messages(path: Path) -> MessageCount:
    """Count RECORD and STATE lines (one pass, bounded memory)."""
    records = states = 0
    source_count: float | None = None
    first_data = None
    with path.open("rb") as handle:
        for line in handle:
            if line.startswith(RECORD_PREFIX) and records:
                records += 1
                continue
            try:
                message = orjson.loads(line)
            except orjson.JSONDecodeError:
                continue
            kind = message.get("type")
            if kind == "RECORD":
                records += 1
                first_data = first_data or message["record"].get("data")
            elif kind == "STATE":
                states += 1
                state = message.get("state") or {}
                stats = state.get("sourceStats") or {}
                # Airbyte counts the records since the previous state of the stream.
                if "recordCount" in stats:
                    source_count = (source_count or 0.0) + float(stats["recordCount"])
    return MessageCount(records, states, source_count, path.stat().st_size, first_data)
