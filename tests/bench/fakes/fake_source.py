"""A tiny stand-in for source-postgres, used only to exercise the benchmark harness in its tests.

It speaks just enough of the protocol (spec, discover, read with full_refresh or a cursor) for
every scenario of the harness to run end to end whatever state the real connectors are in.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import orjson
import psycopg
from psycopg import sql
from psycopg.conninfo import make_conninfo

TYPES = {
    "bigint": {"type": "integer"},
    "integer": {"type": "integer"},
    "double precision": {"type": "number"},
    "date": {"type": "string", "format": "date"},
    "timestamp with time zone": {"type": "string", "format": "date-time"},
}


def connect(config: dict[str, Any]) -> psycopg.Connection:
    conninfo = make_conninfo(
        host=config["host"], port=config["port"], dbname=config["database"],
        user=config["username"], password=config["password"],
    )  # fmt: skip
    return psycopg.connect(conninfo, autocommit=True)


def emit(message: dict[str, Any]) -> None:
    sys.stdout.buffer.write(orjson.dumps(message) + b"\n")


def discover(config: dict[str, Any]) -> None:
    streams: dict[str, dict[str, Any]] = {}
    with connect(config) as conn:
        rows = conn.execute(
            "SELECT table_name, column_name, data_type FROM information_schema.columns "
            "WHERE table_schema = 'public' ORDER BY table_name, ordinal_position"
        ).fetchall()
    for table, column, data_type in rows:
        stream = streams.setdefault(
            table,
            {"name": table, "namespace": "public", "json_schema": {"type": "object",
             "properties": {}}, "supported_sync_modes": ["full_refresh", "incremental"],
             "source_defined_primary_key": [["f0"]]},
        )  # fmt: skip
        stream["json_schema"]["properties"][column] = TYPES.get(data_type, {"type": "string"})
    emit({"type": "CATALOG", "catalog": {"streams": list(streams.values())}})


def read(config: dict[str, Any], catalog: dict[str, Any], state: list[dict[str, Any]]) -> None:
    saved = {s["stream"]["stream_descriptor"]["name"]: s["stream"]["stream_state"] for s in state}
    with connect(config) as conn:
        for configured in catalog["streams"]:
            stream = configured["stream"]
            name = stream["name"]
            columns = sql.SQL(", ").join(map(sql.Identifier, stream["json_schema"]["properties"]))
            where = sql.SQL("")
            cursor = None
            if configured["sync_mode"] == "incremental":
                cursor = configured["cursor_field"][0]
                last = (saved.get(name) or {}).get("cursor")
                if last is not None:
                    where = sql.SQL("WHERE {} > {}").format(
                        sql.Identifier(cursor), sql.Literal(last)
                    )
            head = (
                f'{{"type":"RECORD","record":{{"stream":"{name}","namespace":"public",'
                '"emitted_at":0,"data":'
            )
            query = sql.SQL(
                "COPY (SELECT {} || row_to_json(t)::text || '}}}}' "
                "FROM (SELECT {} FROM {} {}) t) TO STDOUT"
            ).format(sql.Literal(head), columns, sql.Identifier(name), where)
            count = 0
            with conn.cursor() as cur, cur.copy(query) as copy:
                for chunk in copy:
                    count += bytes(chunk).count(b"\n")
                    sys.stdout.buffer.write(chunk)
            stream_state = None
            if cursor:
                top = conn.execute(
                    sql.SQL("SELECT max({})::text FROM {}").format(
                        sql.Identifier(cursor), sql.Identifier(name)
                    )
                ).fetchone()
                stream_state = {"cursor": top[0] if top else None}
            descriptor = {"name": name, "namespace": "public"}
            state = {
                "type": "STREAM",
                "stream": {"stream_descriptor": descriptor, "stream_state": stream_state},
                "sourceStats": {"recordCount": float(count)},
            }
            emit({"type": "STATE", "state": state})


def main(argv: list[str]) -> int:
    verb, options = argv[0], dict(zip(argv[1::2], argv[2::2], strict=False))
    if verb == "spec":
        emit({"type": "SPEC", "spec": {"connectionSpecification": {"type": "object"}}})
        return 0
    config = orjson.loads(Path(options["--config"]).read_bytes())
    if verb == "discover":
        discover(config)
        return 0
    catalog = orjson.loads(Path(options["--catalog"]).read_bytes())
    state = orjson.loads(Path(options["--state"]).read_bytes()) if "--state" in options else []
    read(config, catalog, state)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
