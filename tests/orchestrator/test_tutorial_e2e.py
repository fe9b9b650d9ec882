"""Airbyte's full-refresh tutorial through `pgbyte sync`, with the real connectors.

One scenario (module fixture) — two connections, two syncs each — and one invariant per test.
"""

from __future__ import annotations

import stat
import uuid
from pathlib import Path

import orjson
import psycopg
import pytest
from orchestrator_helpers import pgbyte, write_connection

TABLES = [
    "_airbyte_raw_append_full_refresh_demo",
    "_airbyte_raw_overwrite_full_refresh_demo",
    "append_full_refresh_demo",
    "overwrite_full_refresh_demo",
]


@pytest.fixture(scope="module")
def tutorial(pg_server, tmp_path_factory):
    """Run the tutorial once; keep every output and the tables' state after each sync."""
    src_db, dst_db = f"tut_src_{uuid.uuid4().hex[:8]}", f"tut_dst_{uuid.uuid4().hex[:8]}"
    pg_server.create_database(src_db)
    pg_server.create_database(dst_db)
    workdir = tmp_path_factory.mktemp("tutorial")
    result = {"outputs": [], "workdir": workdir, "password": pg_server.password}
    with (
        psycopg.connect(pg_server.conninfo(src_db), autocommit=True) as src,
        psycopg.connect(pg_server.conninfo(dst_db), autocommit=True) as dst,
    ):
        src.execute("CREATE TABLE full_refresh_demo(id integer PRIMARY KEY, name VARCHAR(200))")
        src.execute("INSERT INTO full_refresh_demo(id, name) VALUES(1, 'Mary X'), (2, 'John D')")
        source = pg_server.connector_config(src_db, schemas=["public"])
        dest = pg_server.connector_config(dst_db, schema="public")
        files = {
            mode: write_connection(
                workdir, source, dest, name=f"full-refresh-{mode}", prefix=f"{mode}_",
                namespace="destination", destination_sync_mode=mode,
            )
            for mode in ("overwrite", "append")
        }  # fmt: skip
        result["files"] = files
        for round_ in (1, 2):
            if round_ == 2:
                src.execute("INSERT INTO full_refresh_demo(id, name) VALUES(3, 'Jane Y')")
            for mode, path in files.items():
                run = pgbyte("sync", str(path), password=pg_server.password)
                result["outputs"].append((round_, mode, run))
            result[f"counts{round_}"] = {
                t: dst.execute(f'SELECT count(*) FROM public."{t}"').fetchone()[0] for t in TABLES
            }
        result["tables"] = [
            r[0] for r in dst.execute(
                "SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY 1"
            )
        ]  # fmt: skip
        result["columns"] = {
            t: [r[0] for r in dst.execute(
                "SELECT column_name FROM information_schema.columns WHERE table_name = %s "
                "ORDER BY ordinal_position", (t,))]
            for t in TABLES
        }  # fmt: skip
        result["names"] = dst.execute(
            "SELECT name FROM overwrite_full_refresh_demo ORDER BY id"
        ).fetchall()
        result["json_summary"] = pgbyte("history", str(files["append"]), "--json",
                                        password=pg_server.password)  # fmt: skip
        result["text_history"] = pgbyte("history", str(files["append"]),
                                        password=pg_server.password)  # fmt: skip
    pg_server.drop_database(src_db)
    pg_server.drop_database(dst_db)
    return result


def test_every_sync_succeeds(tutorial) -> None:
    """All four syncs exit 0."""
    failures = [
        (r, m, run.stdout + run.stderr) for r, m, run in tutorial["outputs"] if run.returncode
    ]
    assert failures == []


def test_destination_has_exactly_the_tutorials_tables(tutorial) -> None:
    """\\dt shows the four tables the tutorial shows, no more."""
    assert tutorial["tables"] == TABLES


def test_first_sync_emits_two_records(tutorial) -> None:
    """The first sync of each connection reports "2 records emitted"."""
    first = [run.stdout for round_, _, run in tutorial["outputs"] if round_ == 1]
    assert all("2 records emitted" in out for out in first), first


def test_second_sync_emits_three_records(tutorial) -> None:
    """After inserting Jane Y, each sync reports "3 records emitted" (and 3 committed)."""
    second = [run.stdout for round_, _, run in tutorial["outputs"] if round_ == 2]
    assert all("3 records emitted" in o and "3 records committed" in o for o in second), second


def test_row_counts_after_first_sync(tutorial) -> None:
    """After the first syncs every table holds Mary X and John D."""
    assert tutorial["counts1"] == dict.fromkeys(TABLES, 2)


def test_overwrite_has_three_rows_and_append_five(tutorial) -> None:
    """After the second syncs: overwrite replaced (3 rows), append accumulated (5 rows)."""
    assert tutorial["counts2"] == {
        "_airbyte_raw_append_full_refresh_demo": 5,
        "_airbyte_raw_overwrite_full_refresh_demo": 3,
        "append_full_refresh_demo": 5,
        "overwrite_full_refresh_demo": 3,
    }


def test_overwrite_table_holds_the_source_rows(tutorial) -> None:
    """The normalized overwrite table holds exactly Mary X, John D, Jane Y."""
    assert tutorial["names"] == [("Mary X",), ("John D",), ("Jane Y",)]


def test_columns_are_the_tutorials(tutorial) -> None:
    """Raw tables have the three _airbyte columns; normalized ones the data plus metadata."""
    columns = tutorial["columns"]
    assert columns["_airbyte_raw_append_full_refresh_demo"] == [
        "_airbyte_ab_id", "_airbyte_data", "_airbyte_emitted_at",
    ]  # fmt: skip
    assert set(columns["overwrite_full_refresh_demo"]) == {
        "id", "name", "_airbyte_ab_id", "_airbyte_emitted_at", "_airbyte_normalized_at",
        "_airbyte_overwrite_full_refresh_demo_hashid",
    }  # fmt: skip


def test_history_records_each_sync(tutorial) -> None:
    """`pgbyte history --json` lists both syncs of a connection with their per-stream counts."""
    entries = orjson.loads(tutorial["json_summary"].stdout)
    counts = [(e["status"], e["streams"][0]["records_emitted"]) for e in entries]
    assert counts == [("succeeded", 2), ("succeeded", 3)]
    # The text form names each stream as the summary does, source namespace included.
    lines = tutorial["text_history"].stdout.splitlines()
    line = "    public.full_refresh_demo → append_full_refresh_demo: 3 emitted, 3 committed"
    assert line in lines, lines


def test_state_file_is_owner_only(tutorial) -> None:
    """The saved state exists beside the connection file and only its owner can read it."""
    state = Path(tutorial["workdir"]) / ".pgbyte" / "state" / "full-refresh-append.json"
    assert stat.S_IMODE(state.stat().st_mode) == 0o600


def test_password_never_printed(tutorial) -> None:
    """The password appears in no output and in no file pgbyte wrote."""
    texts = [run.stdout + run.stderr for _, _, run in tutorial["outputs"]]
    texts += [p.read_text() for p in (Path(tutorial["workdir"]) / ".pgbyte").rglob("*.*")]
    assert not [t for t in texts if tutorial["password"] in t]
