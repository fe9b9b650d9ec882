"""`make demo`: Airbyte's full-refresh tutorial, replayed on a throwaway PostgreSQL.

Nothing needs to run beforehand and nothing is left behind: the demo starts its own server
(initdb in a temp dir), creates a source and a destination database, writes two connection files
(`full-refresh-overwrite` with prefix `overwrite_`, `full-refresh-append` with prefix `append_`),
creates and syncs each connection in the tutorial's order with `pgbyte sync` as a user would,
shows the destination with the server's own psql (`\\dt`, then the tables' rows) after each,
inserts Jane Y, syncs both again, and checks the tutorial's numbers: 3 records emitted, 3 rows
in overwrite_full_refresh_demo, 5 in append_full_refresh_demo.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import psycopg
import yaml
from psycopg import sql

from pgbyte.throwaway_pg import ThrowawayServer, ThrowawayServerError, find_bin_dir

TABLE = "full_refresh_demo"
CONNECTIONS = (("full-refresh-overwrite", "overwrite_", "overwrite"),
               ("full-refresh-append", "append_", "append"))  # fmt: skip
PASSWORD_VAR = "PGBYTE_DEMO_PASSWORD"


def psql(server: ThrowawayServer, dbname: str, command: str) -> None:
    """Show `command` and its output exactly as the tutorial's psql shell prints them: the
    server's own psql, not an imitation of its layout."""
    say(f"\n{dbname}=# {command}")  # psql's prompt names the database
    result = subprocess.run(
        [str(find_bin_dir() / "psql"), "-X", "-h", server.host, "-p", str(server.port),
         "-U", server.user, "-d", dbname, "-v", "ON_ERROR_STOP=1", "-c", command],
        env={**os.environ, "PGPASSWORD": server.password, "PGTZ": "UTC"},
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    if result.returncode != 0:
        raise DemoError(f"psql {command!r} failed: {result.stderr.strip()}")
    say(result.stdout.rstrip())


def say(text: str = "") -> None:
    print(text, flush=True)


def step(text: str) -> None:
    say()
    say(f"==> {text}")


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
    """The tutorial, step by step: each connection is created and synced in its order."""
    step("Starting a throwaway PostgreSQL server (initdb in a temp dir; no Docker needed)")
    with ThrowawayServer() as server:
        say(f"PostgreSQL listening on {server.host}:{server.port}")
        source_db, dest_db = "airbyte_source", "airbyte_destination"
        server.create_database(source_db)
        server.create_database(dest_db)
        env = {**os.environ, PASSWORD_VAR: server.password}
        with psycopg.connect(server.conninfo(dest_db), autocommit=True) as dst:
            step(f"Source database {source_db}: the tutorial's table")
            for command in (
                f"CREATE TABLE {TABLE}(id integer PRIMARY KEY, name VARCHAR(200));",
                f"INSERT INTO {TABLE}(id, name) VALUES(1, 'Mary X');",
                f"INSERT INTO {TABLE}(id, name) VALUES(2, 'John D');",
                f"SELECT * FROM {TABLE};",
            ):
                psql(server, source_db, command)

            files = [
                write_connection(workdir, server, name, prefix, mode, source_db, dest_db)
                for name, prefix, mode in CONNECTIONS
            ]
            for path, (_, prefix, mode) in zip(files, CONNECTIONS, strict=True):
                step(f"Connection full refresh | {mode}, prefix {prefix} "
                     f"(password taken from ${PASSWORD_VAR}), then Sync Now")  # fmt: skip
                say(f"--- {path.name}")
                say(path.read_text().replace(server.password, "****").rstrip())
                sync(path, env)
                step(f"Destination database {dest_db}")
                psql(server, dest_db, "\\dt")
                psql(server, dest_db, f"SELECT * FROM _airbyte_raw_{prefix}{TABLE};")
                psql(server, dest_db, f"SELECT * FROM {prefix}{TABLE};")

            step("Insert a new record on the source")
            psql(server, source_db, f"INSERT INTO {TABLE}(id, name) VALUES(3, 'Jane Y');")
            psql(server, source_db, f"SELECT * FROM {TABLE};")

            step("Sync Now, again, on both connections")
            outputs = [sync(path, env) for path in files]
            for _, prefix, _ in CONNECTIONS:
                psql(server, dest_db, f"SELECT * FROM {prefix}{TABLE};")
            check_numbers(outputs, dst)


def check_numbers(outputs: list[str], dst: psycopg.Connection[Any]) -> None:
    """The numbers to expect, checked: a demo that shows something else fails loudly. The
    tutorial shows 3 records emitted by the second syncs; the row counts follow from this
    demo's order (both connections made, then Jane Y inserted): overwrite keeps the last 3,
    append adds them to the first 2."""
    expected = {
        "overwrite_full_refresh_demo": 3, "_airbyte_raw_overwrite_full_refresh_demo": 3,
        "append_full_refresh_demo": 5, "_airbyte_raw_append_full_refresh_demo": 5,
    }  # fmt: skip
    step("What you should see (the tutorial's 3 records emitted; the rows this order gives)")
    problems = []
    for output in outputs:
        ok = "3 records emitted" in output
        say(f"  {'✓' if ok else '✗'} 3 records emitted ({output.splitlines()[0]})")
        if not ok:
            problems.append("the second sync did not emit 3 records")
    for name, rows in expected.items():
        actual = count(dst, name)
        say(f"  {'✓' if actual == rows else '✗'} {name}: {actual} rows (expected: {rows})")
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
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
    if args.keep:
        say(f"\nDemo complete: the throwaway server is gone; the work dir is kept: {workdir}")
    else:
        say("\nDemo complete: the throwaway server and every file it used are gone.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
