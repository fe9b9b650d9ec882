"""`--debug`: DEBUG LOG messages of what a connector does on its servers.

With the flag, a connector says which server it connects to (host, port, database, user and
the server's version; never a password) and logs every SQL statement and COPY it runs, as the
CDK's `--debug` shows an HTTP source's requests. Without it nothing is logged and nothing costs:
connections keep psycopg's own cursor class.

The messages go out as LOG messages of the connector's MessageWriter, masked like every LOG,
from whichever thread runs the statement (the destination loads on worker threads): each
message is one write() of a whole line, and the buffered stdout takes a write whole, under its
own lock, so lines never interleave.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any

import psycopg
from psycopg import sql

if TYPE_CHECKING:
    from pgbyte_common.messages import MessageWriter

# A statement's text and parameters are cut to these lengths: a batch's VALUES or a long
# IN list would otherwise fill the log.
STATEMENT_CHARS = 2000
PARAMS_CHARS = 300

_writer: MessageWriter | None = None


def enable(writer: MessageWriter) -> None:
    """Log DEBUG messages through `writer` from now on (the connector's --debug)."""
    global _writer
    _writer = writer


def disable() -> None:
    global _writer
    _writer = None


def log(text: str) -> None:
    """One DEBUG message (nothing when --debug is off)."""
    writer = _writer  # once: another thread may disable() meanwhile
    if writer is None:
        return
    try:
        writer.log("DEBUG", text)
    except (OSError, ValueError):  # the reader is gone (or stdout closed): the statement this
        disable()  # line was about still runs, and the protocol's own output reports the pipe


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else f"{text[:limit]}… ({len(text)} characters)"


def _statement(conn: psycopg.Connection[Any], query: Any, params: Any) -> str:
    """The statement (and its parameters) masked, then cut: cut first, a secret at the cut
    would show in part."""
    writer = _writer  # once: another thread may disable() meanwhile
    mask = writer.masker.mask if writer is not None else str
    if isinstance(query, sql.Composable):
        text = query.as_string(conn)
    elif isinstance(query, bytes):
        text = query.decode("utf-8", "replace")
    else:
        text = str(query)
    text = _cut(" ".join(mask(text).split()), STATEMENT_CHARS)
    if params:
        text += f" -- parameters: {_cut(mask(repr(params)), PARAMS_CHARS)}"
    return text


def statement(conn: psycopg.Connection[Any], query: Any, params: Any = None) -> None:
    """Log one statement run outside a cursor (the source's COPY on the bare libpq connection)."""
    if _writer is not None:
        log(f"SQL: {_statement(conn, query, params)}")


class DebugCursor(psycopg.Cursor[Any]):
    """psycopg's cursor, logging each statement before it runs."""

    def execute(self, query: Any, params: Any = None, **kwargs: Any) -> DebugCursor:
        log(f"SQL: {_statement(self.connection, query, params)}")
        return super().execute(query, params, **kwargs)

    def executemany(self, query: Any, params_seq: Any, **kwargs: Any) -> None:
        log(f"SQL (executemany): {_statement(self.connection, query, None)}")
        super().executemany(query, params_seq, **kwargs)

    def copy(
        self, statement: Any, params: Any = None, **kwargs: Any
    ) -> AbstractContextManager[Iterator[Any]]:
        log(f"SQL: {_statement(self.connection, statement, params)}")
        return super().copy(statement, params, **kwargs)  # type: ignore[return-value]


def connecting(host: str, port: int, database: str, username: str, how: str) -> None:
    log(f"Connecting to {host}:{port}, database {database!r}, user {username!r}, sslmode {how}.")


def connected(conn: psycopg.Connection[Any]) -> None:
    """Log the server's version, and have the connection's statements logged."""
    if _writer is None:
        return
    version = conn.info.parameter_status("server_version") or "?"
    log(f"Connected: PostgreSQL {version} (backend pid {conn.info.backend_pid}).")
    conn.cursor_factory = DebugCursor
