"""A tiny stand-in for destination-postgres, used only to exercise the benchmark harness's tests.

`write` stages every RECORD, then builds the raw and normalized tables in SQL (overwrite or
append_dedup by primary key and cursor) and echoes the STATE messages after the commit.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import orjson
import psycopg
from psycopg import sql
from psycopg.conninfo import make_conninfo


def column_type(schema: dict[str, Any]) -> str:
    kinds = schema.get("type")
    kinds = [kinds] if isinstance(kinds, str) else [k for k in kinds or [] if k != "null"]
    kind = kinds[0] if kinds else "string"
    if kind == "integer":
        return "numeric"
    if kind == "number":
        return "double precision"
    return {"date": "date", "date-time": "timestamptz"}.get(schema.get("format", ""), "text")


def ident(*names: str) -> sql.Composable:
    return sql.SQL(".").join(map(sql.Identifier, names))


def load(conn: psycopg.Connection, configured: dict[str, Any]) -> None:
    stream = configured["stream"]
    name = stream["name"]
    props = stream["json_schema"]["properties"]
    defs = sql.SQL(", ").join(
        sql.SQL("{} {}").format(sql.Identifier(c), sql.SQL(column_type(s)))
        for c, s in props.items()
    )
    raw, norm = ident("public", f"_airbyte_raw_{name}"), ident("public", name)
    staged = sql.SQL(
        "SELECT gen_random_uuid() AS _airbyte_ab_id, data AS _airbyte_data, "
        "now() AS _airbyte_emitted_at FROM stage WHERE stream = {}"
    ).format(sql.Literal(name))
    typed = sql.SQL(
        "SELECT r.*, s._airbyte_emitted_at FROM ({}) s, jsonb_to_record(s._airbyte_data) AS r({})"
    )
    typed = typed.format(staged, defs)
    if configured["destination_sync_mode"] == "overwrite":
        conn.execute(sql.SQL("DROP TABLE IF EXISTS {}, {}").format(raw, norm))
        conn.execute(sql.SQL("CREATE TABLE {} AS {}").format(raw, staged))
        conn.execute(sql.SQL("CREATE TABLE {} AS {}").format(norm, typed))
        return
    key = sql.Identifier(configured["primary_key"][0][0])
    cursor = sql.Identifier(configured["cursor_field"][0])
    conn.execute(sql.SQL("CREATE TABLE IF NOT EXISTS {} AS {} WITH NO DATA").format(raw, staged))
    conn.execute(sql.SQL("CREATE TABLE IF NOT EXISTS {} AS {} WITH NO DATA").format(norm, typed))
    conn.execute(sql.SQL("INSERT INTO {} {}").format(raw, staged))
    conn.execute(sql.SQL("CREATE TEMP TABLE latest AS SELECT DISTINCT ON ({k}) * FROM ({t}) x "
                         "ORDER BY {k}, {c} DESC").format(k=key, c=cursor, t=typed))  # fmt: skip
    conn.execute(
        sql.SQL("DELETE FROM {n} WHERE {k} IN (SELECT {k} FROM latest)").format(n=norm, k=key)
    )
    conn.execute(sql.SQL("INSERT INTO {} SELECT * FROM latest").format(norm))
    conn.execute("DROP TABLE latest")


def write(config: dict[str, Any], catalog: dict[str, Any]) -> None:
    conninfo = make_conninfo(
        host=config["host"], port=config["port"], dbname=config["database"],
        user=config["username"], password=config["password"],
    )  # fmt: skip
    states: list[bytes] = []
    with psycopg.connect(conninfo) as conn:
        conn.execute("CREATE TEMP TABLE stage (stream text, data jsonb)")
        with conn.cursor() as cur, cur.copy("COPY stage FROM STDIN") as copy:
            for line in sys.stdin.buffer:
                message = orjson.loads(line)
                if message["type"] == "RECORD":
                    record = message["record"]
                    copy.write_row((record["stream"], orjson.dumps(record["data"]).decode()))
                elif message["type"] == "STATE":
                    states.append(line)
        for configured in catalog["streams"]:
            load(conn, configured)
        conn.commit()
    for line in states:
        sys.stdout.buffer.write(line)


def main(argv: list[str]) -> int:
    verb, options = argv[0], dict(zip(argv[1::2], argv[2::2], strict=False))
    if verb == "spec":
        sys.stdout.buffer.write(b'{"type":"SPEC","spec":{"connectionSpecification":{}}}\n')
        return 0
    config = orjson.loads(Path(options["--config"]).read_bytes())
    write(config, orjson.loads(Path(options["--catalog"]).read_bytes()))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
