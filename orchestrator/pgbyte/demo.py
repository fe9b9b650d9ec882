"""`make demo`: Airbyte's full-refresh tutorial, replayed on a throwaway PostgreSQL.

Nothing needs to run beforehand and nothing is left behind: the demo starts its own server
(initdb in a temp dir), creates a source and a destination database, writes two connection files
(`full-refresh-overwrite` with prefix `overwrite_`, `full-refresh-append` with prefix `append_`),
runs `pgbyte sync` on each as a user would, shows the destination's tables like psql's `\\dt` and
their rows, inserts Jane Y, syncs both again, and checks the tutorial's numbers: 3 records
emitted, 3 rows in overwrite_full_refresh_demo, 5 in append_full_refresh_demo.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import psycopg
import yaml
from psycopg import sql

from pgbyte.throwaway_pg import ThrowawayServer, ThrowawayServerError

TABLE = "full_refresh_demo"
CONNECTIONS = (("full-refresh-overwrite", "overwrite_", "overwrite"),
               ("full-refresh-append", "append_", "append"))  # fmt: skip
PASSWORD_VAR = "PGBYTE_DEMO_PASSWORD"


def psql_table(headers: Sequence[str], rows: Iterable[Sequence[Any]], title: str = "") -> str:
    """Format rows the way psql prints them (aligned columns, `(N rows)` footer)."""
    rows = list(rows)
    cells = [[_cell(v) for v in row] for row in rows]
    widths = [max([len(h), *(len(r[i]) for r in cells)]) for i, h in enumerate(headers)]
    lines = []
    if title:
        lines.append(title.center(sum(widths) + 3 * len(widths) - 1).rstrip())
    lines.append(" " + " | ".join(h.center(w) for h, w in zip(headers, widths, strict=True)))
    lines.append("-" + "-+-".join("-" * w for w in widths) + "-")
    for row in cells:
        lines.append(" " + " | ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)))
    lines.append(f"({len(rows)} row{'' if len(rows) == 1 else 's'})")
    return "\n".join(lines)


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, dict | list):  # jsonb: print it as JSON, the way psql does
        return json.dumps(value, ensure_ascii=False)
    return str(value)


def say(text: str = "") -> None:
    print(text, flush=True)


def step(text: str) -> None:
    say()
    say(f"==> {text}")


def list_tables(conn: psycopg.Connection[Any]) -> list[tuple[Any, ...]]:
    """`\\dt` of the public schema: Schema | Name | Type | Owner."""
    return conn.execute(
        """SELECT n.nspname, c.relname, 'table', pg_get_userbyid(c.relowner)
             FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
            WHERE c.relkind IN ('r', 'p') AND n.nspname = 'public'
            ORDER BY 1, 2"""
    ).fetchall()


def show_table(conn: psycopg.Connection[Any], name: str) -> int:
    cur = conn.execute(sql.SQL("SELECT * FROM {} ORDER BY _airbyte_emitted_at").format(
        sql.Identifier(name)))  # fmt: skip
    rows = cur.fetchall()
    headers = [d.name for d in cur.description or []]
    say(f"\npostgres=# SELECT * FROM {name};")
    say(psql_table(headers, rows))
    return len(rows)


def count(conn: psycopg.Connection[Any], name: str) -> int:
    query = sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(name))
    return conn.execute(query).fetchone()[0]


def write_connection(workdir: Path, server: ThrowawayServer, name: str, prefix: str, mode: str,
                     source_db: str, dest_db: str) -> Path:  # fmt: skip
    source = server.connector_config(source_db, schemas=["public"])
    dest = server.connector_config(dest_db, schema="public")
    for config in (source, dest):
        config["password"] = "${" + PASSWORD_VAR + "}"  # from the environment, not the file
    connection = {
        "name": name,
        "source": {"command": "source-postgres", "config": source},
        "destination": {"command": "destination-postgres", "config": dest},
        "prefix": prefix,
        "namespace": "destination",
        "streams": [{"name": TABLE, "namespace": "public", "sync_mode": "full_refresh",
                     "destination_sync_mode": mode}],
    }  # fmt: skip
    path = workdir / f"{name}.yaml"
    path.write_text(yaml.safe_dump(connection, sort_keys=False))
    path.chmod(0o600)
    return path


def sync(path: Path, env: dict[str, str]) -> str:
    """Run `pgbyte sync` as a user would; its progress shows live, its summary is returned."""
    say(f"$ pgbyte sync {path.name}")
    result = subprocess.run(
        [sys.executable, "-m", "pgbyte.cli", "sync", str(path)],
        env=env, cwd=path.parent, stdout=subprocess.PIPE, text=True, check=False,
    )  # fmt: skip
    say(result.stdout.rstrip())
    if result.returncode != 0:
        raise DemoError(f"pgbyte sync {path.name} failed (exit {result.returncode})")
    return result.stdout


class DemoError(RuntimeError):
    """The demo could not show what the tutorial shows; the message says what went wrong."""


def run(workdir: Path) -> None:
    step("Starting a throwaway PostgreSQL server (initdb in a temp dir; no Docker needed)")
    with ThrowawayServer() as server:
        say(f"PostgreSQL listening on {server.host}:{server.port}")
        source_db, dest_db = "airbyte_source", "airbyte_destination"
        server.create_database(source_db)
        server.create_database(dest_db)
        env = {**os.environ, PASSWORD_VAR: server.password}
        with psycopg.connect(server.conninfo(source_db), autocommit=True) as src, \
                psycopg.connect(server.conninfo(dest_db), autocommit=True) as dst:  # fmt: skip
            step(f"Source database {source_db}: the tutorial's table")
            src.execute(f"CREATE TABLE {TABLE}(id integer PRIMARY KEY, name VARCHAR(200))")
            src.execute(f"INSERT INTO {TABLE}(id, name) VALUES(1, 'Mary X')")
            src.execute(f"INSERT INTO {TABLE}(id, name) VALUES(2, 'John D')")
            say(f"postgres=# SELECT * FROM {TABLE};")
            say(psql_table(["id", "name"], src.execute(f"SELECT * FROM {TABLE} ORDER BY id")))

            files = [
                write_connection(workdir, server, name, prefix, mode, source_db, dest_db)
                for name, prefix, mode in CONNECTIONS
            ]
            step("Connections (password taken from $" + PASSWORD_VAR + ")")
            for path in files:
                say(f"--- {path.name}")
                say(path.read_text().replace(server.password, "****").rstrip())

            step("First sync of both connections (Sync Now)")
            for path in files:
                sync(path, env)
            step(f"Destination database {dest_db}")
            say("postgres=# \\dt")
            say(psql_table(["Schema", "Name", "Type", "Owner"], list_tables(dst),
                           title="List of relations"))  # fmt: skip
            for name in ("overwrite_full_refresh_demo", "append_full_refresh_demo"):
                show_table(dst, name)
            show_table(dst, "_airbyte_raw_append_full_refresh_demo")

            step("Insert a new record on the source")
            src.execute(f"INSERT INTO {TABLE}(id, name) VALUES(3, 'Jane Y')")
            say(psql_table(["id", "name"], src.execute(f"SELECT * FROM {TABLE} ORDER BY id")))

            step("Sync Now, again, on both connections")
            outputs = [sync(path, env) for path in files]
            for name in ("overwrite_full_refresh_demo", "append_full_refresh_demo"):
                show_table(dst, name)
            check_numbers(outputs, dst)


def check_numbers(outputs: list[str], dst: psycopg.Connection[Any]) -> None:
    """The tutorial's numbers, checked: a demo that shows something else fails loudly."""
    expected = {
        "overwrite_full_refresh_demo": 3, "_airbyte_raw_overwrite_full_refresh_demo": 3,
        "append_full_refresh_demo": 5, "_airbyte_raw_append_full_refresh_demo": 5,
    }  # fmt: skip
    step("What the tutorial says you should see")
    problems = []
    for output in outputs:
        ok = "3 records emitted" in output
        say(f"  {'✓' if ok else '✗'} 3 records emitted ({output.splitlines()[0]})")
        if not ok:
            problems.append("the second sync did not emit 3 records")
    for name, rows in expected.items():
        actual = count(dst, name)
        say(f"  {'✓' if actual == rows else '✗'} {name}: {actual} rows (tutorial: {rows})")
        if actual != rows:
            problems.append(f"{name} has {actual} rows, expected {rows}")
    if problems:
        raise DemoError("; ".join(problems))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m pgbyte.demo", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--keep", action="store_true", help="keep the work dir (connection files)")
    args = parser.parse_args(argv)
    workdir = Path(tempfile.mkdtemp(prefix="pgbyte-demo-"))
    try:
        run(workdir)
    except (DemoError, ThrowawayServerError, psycopg.Error) as exc:
        print(f"\ndemo failed: {exc}", file=sys.stderr)
        return 1
    finally:
        if args.keep:
            say(f"\n(work dir kept: {workdir})")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    say("\nDemo complete: the throwaway server and every file it used are gone.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
