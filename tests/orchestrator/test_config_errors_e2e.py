"""Mistakes in a connection file's streams and modes, through the real `pgbyte sync`.

Some are seen in the file alone (incremental | overwrite, an entry listed twice), others only
once the source's streams are discovered (an unknown or ambiguous stream, one stream named by
two entries, no cursor, no primary key, a cursor or key that is not a column). Either way they
are connection-file errors, like a missing variable: exit 2 with a message saying what to fix,
no `read` or `write` started, and nothing written to the history (which lists syncs; none ran).
Both connectors run behind a wrapper that logs the verb each was started with.
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import orjson
import psycopg
import pytest
import yaml
from orchestrator_helpers import console_script, pgbyte, throwaway_databases, write_connection

SETUP = """
CREATE SCHEMA sales;
CREATE TABLE public.items(id bigint PRIMARY KEY, val text);
CREATE TABLE public.users(id bigint PRIMARY KEY);
CREATE TABLE sales.users(id bigint PRIMARY KEY);
CREATE TABLE public.nopk(id bigint, updated_at timestamp);
CREATE TABLE public.nocursor(id bigint PRIMARY KEY, val text);
INSERT INTO public.items VALUES (1, 'a'), (2, 'b');
"""

# case: (streams:, what the error says)
MISTAKES: dict[str, tuple[list[Any], str]] = {
    "unknown": (["nosuch_table"], "stream 'nosuch_table' is not among the discovered streams"),
    "twice": (["items", "items"], "stream items is listed twice (streams[0] and streams[1])"),
    "twice_by_namespace": (["items", "public.items"], "stream public.items is listed twice"),
    "incremental_overwrite": (
        [
            {
                "name": "items",
                "sync_mode": "incremental",
                "cursor_field": "id",
                "destination_sync_mode": "overwrite",
            }
        ],
        "streams[0] (items): incremental | overwrite would replace the tables",
    ),
    "ambiguous": (["users"], "stream 'users' exists in several namespaces (public, sales)"),
    "dedup_without_key": (
        [
            {
                "name": "nopk",
                "sync_mode": "incremental",
                "cursor_field": "updated_at",
                "destination_sync_mode": "append_dedup",
            }
        ],
        "stream public.nopk: append_dedup needs a primary key",
    ),
    "unknown_cursor": (
        [{"name": "items", "sync_mode": "incremental", "cursor_field": "updated"}],
        "stream public.items: cursor_field 'updated' is not a column of the stream",
    ),
    "composite_cursor": (
        [{"name": "items", "sync_mode": "incremental", "cursor_field": ["id", "name"]}],
        "stream public.items: cursor_field ['id', 'name'] is a path into 'id', which is not an "
        "object; a cursor is one column",
    ),
    "unknown_key": (
        [{"name": "items", "destination_sync_mode": "append_dedup", "primary_key": [["idd"]]}],
        "stream public.items: primary_key 'idd' is not a column of the stream",
    ),
    "incremental_without_cursor": (
        [{"name": "nocursor", "sync_mode": "incremental"}],
        "stream public.nocursor: incremental needs a cursor",
    ),
}
NEEDS_NO_DISCOVERY = ["twice", "incremental_overwrite"]

WRAPPER = """#!/bin/sh
# Log which connector was started with which verb, then become the real connector.
echo "$(basename "$1") $2" >> "$(dirname "$0")/verbs.log"
exec "$@"
"""


def run_mistake(workdir: Path, pg_server: Any, src_db: str, dst_db: str, streams: list) -> dict:
    """`pgbyte sync --json` of a connection whose streams: is `streams`: what it left behind."""
    wrapper = workdir / "log-verb"
    wrapper.write_text(WRAPPER)
    wrapper.chmod(0o755)
    conn = write_connection(
        workdir,
        pg_server.connector_config(src_db, schemas=["public", "sales"]),
        pg_server.connector_config(dst_db, schema="public"),
        streams=streams,
    )
    body = yaml.safe_load(conn.read_text())
    for role, script in (("source", "source-postgres"), ("destination", "destination-postgres")):
        body[role]["command"] = [str(wrapper), console_script(script)]
    conn.write_text(yaml.safe_dump(body, sort_keys=False))
    run: subprocess.CompletedProcess[str] = pgbyte(
        "sync", str(conn), "--json", password=pg_server.password
    )
    verbs = workdir / "verbs.log"
    state_dir = workdir / ".pgbyte" / "state"
    return {
        "run": run,
        "verbs": sorted(verbs.read_text().split("\n")[:-1]) if verbs.exists() else [],
        "history": (state_dir / "conn.history.jsonl").exists(),
    }


@pytest.fixture(scope="module")
def mistakes(pg_server, tmp_path_factory) -> dict[str, dict]:
    """Each mistake synced once against one source database (and an empty destination)."""
    with throwaway_databases(pg_server, "cfg_src", "cfg_dst") as (src_db, dst_db):
        with psycopg.connect(pg_server.conninfo(src_db), autocommit=True) as src:
            src.execute(SETUP)
        return {
            case: run_mistake(tmp_path_factory.mktemp(case), pg_server, src_db, dst_db, streams)
            for case, (streams, _) in MISTAKES.items()
        }


@pytest.mark.parametrize("case", MISTAKES)
def test_mistake_exits_2_saying_what_to_fix(mistakes, case) -> None:
    """The sync exits 2 and its --json failure object carries the mistake's message."""
    run = mistakes[case]["run"]
    failure = orjson.loads(run.stdout)
    assert (run.returncode, failure["status"], failure["exit_code"]) == (2, "failed", 2), run
    assert MISTAKES[case][1] in failure["error"], failure["error"]


@pytest.mark.parametrize("case", MISTAKES)
def test_mistake_starts_no_read_or_write(mistakes, case) -> None:
    """No connector is started with `read` or `write`: at most both specs and the discover."""
    assert set(mistakes[case]["verbs"]) <= {
        "source-postgres spec", "source-postgres discover", "destination-postgres spec",
    }, mistakes[case]["verbs"]  # fmt: skip


@pytest.mark.parametrize("case", NEEDS_NO_DISCOVERY)
def test_mistake_seen_in_the_file_starts_no_connector(mistakes, case) -> None:
    """A mistake the file alone shows is refused before any connector starts."""
    assert mistakes[case]["verbs"] == []


@pytest.mark.parametrize("case", MISTAKES)
def test_mistake_is_not_in_the_history(mistakes, case) -> None:
    """No sync ran, so none is written to the history (as for every connection-file error)."""
    assert mistakes[case]["history"] is False


def test_a_config_the_connectors_spec_refuses_exits_2(pg_server, tmp_path) -> None:
    """A config value the connector's spec refuses (a port given as a string, as a ${VAR}
    reference always gives) is the connection file's mistake: exit 2, the file and the key
    named with a hint, no connector started beyond the specs, no sync in the history."""
    source = {**pg_server.connector_config("postgres", schemas=["public"]),
              "port": str(pg_server.port)}  # fmt: skip
    conn = write_connection(tmp_path, source, pg_server.connector_config("postgres"))
    run = pgbyte("sync", str(conn), "--json", password=pg_server.password)
    failure = orjson.loads(run.stdout)
    assert (run.returncode, failure["exit_code"]) == (2, 2), run
    for part in (str(conn), "the source config does not match the connector's spec",
                 "port", "a ${VAR} reference always gives a string"):  # fmt: skip
        assert part in failure["error"], failure["error"]
    assert not (tmp_path / ".pgbyte" / "state" / "conn.history.jsonl").exists()
