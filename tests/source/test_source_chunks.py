"""copy_out's chunks: about CHUNK_BYTES each whatever the row size (4,096 rows of 1 MB once
made 4 GB chunks), and the row count it returns exact however the chunks were cut."""

from __future__ import annotations

import psycopg
from psycopg import sql
from source_postgres.reader import CHUNK_BYTES, ROWS_PER_CHUNK, copy_out

MB = 1 << 20


def _chunks(source_conn: psycopg.Connection, query: str) -> tuple[list[bytes], int]:
    with psycopg.connect(source_conn.info.dsn, password=source_conn.info.password) as conn:
        chunks: list[bytes] = []
        reader = copy_out(conn, sql.SQL(query))
        while True:
            try:
                chunks.append(next(reader))
            except StopIteration as done:
                return chunks, done.value


def test_big_rows_come_in_chunks_of_about_chunk_bytes(source_conn) -> None:
    source_conn.execute("CREATE TABLE big (id int, t text)")
    # 1 MB of incompressible text per row (md5 hex of random numbers), 40 rows.
    source_conn.execute(
        "INSERT INTO big SELECT i, (SELECT string_agg(md5(random()::text), '') "
        "FROM generate_series(1, 32768) WHERE i > 0) FROM generate_series(1, 40) i"
    )
    chunks, count = _chunks(source_conn, "COPY (SELECT id, t FROM big) TO STDOUT")
    assert count == 40 == sum(chunk.count(b"\n") for chunk in chunks)
    assert len(chunks) >= 20
    assert max(len(chunk) for chunk in chunks) <= CHUNK_BYTES + MB + 100


def test_small_rows_fill_chunks_and_are_counted(source_conn) -> None:
    rows = 3 * ROWS_PER_CHUNK + 5
    chunks, count = _chunks(
        source_conn, f"COPY (SELECT i, 'x' FROM generate_series(1, {rows}) i) TO STDOUT"
    )
    assert count == rows == sum(chunk.count(b"\n") for chunk in chunks)
    assert max(chunk.count(b"\n") for chunk in chunks) == ROWS_PER_CHUNK
    empty, none = _chunks(source_conn, "COPY (SELECT 1 WHERE false) TO STDOUT")
    assert (empty, none) == ([], 0)
