"""The lean console paths: no airbyte_cdk import, no object per record (DESIGN.md §5).

`check` and `discover` run the same functions as SourcePostgres through pgbyte_common.lean.

Parses the command line like the CDK's entrypoint, runs reader.read_messages and writes its
bytes to stdout. Exit status 0 when every stream completed, 1 otherwise (each failure has
already been reported as a TRACE ERROR).
"""

from __future__ import annotations

import contextlib
import os
import select
import stat
import sys
import time
from collections.abc import Callable
from typing import Any, BinaryIO

import psycopg
from pgbyte_common import debug
from pgbyte_common.argv import build_parser, load_json_file
from pgbyte_common.errors import PgbyteError, classify_error
from pgbyte_common.interrupts import Interrupts, settle
from pgbyte_common.lean import lean_check, lean_discover
from pgbyte_common.messages import MessageWriter, to_devnull
from pgbyte_common.secrets import collect_secrets

from source_postgres.catalog import parse_catalog
from source_postgres.check import check, schemas_problem
from source_postgres.config import SourceConfig, require_supported_method
from source_postgres.discovery import catalog_dict, discover_tables
from source_postgres.reader import ReadOutcome, read_messages
from source_postgres.spec import connection_specification

VERBS = ("spec", "check", "discover", "read")


def discover_catalog(raw_config: Any, log: Callable[[str, str], None]) -> dict[str, Any]:
    """The AirbyteCatalog dict for a raw config (PgbyteError on failure). Configured schemas
    that do not exist or are not usable are WARNed about: their tables are simply absent."""
    settings = SourceConfig.from_config(raw_config)
    # As check and read do: a CDC config can read nothing, and a catalog would only lead a
    # client (pgbyte asks for cursors) elsewhere than the reason.
    require_supported_method(settings)
    with settings.connection.connect(autocommit=True) as conn:
        problem = schemas_problem(conn, settings)
        if problem is not None:
            log("WARN", f"{problem} The catalog lists no table of them.")
        return catalog_dict(discover_tables(conn, settings.schemas), settings.replication_method)


def main_check(argv: list[str]) -> int:
    return lean_check(
        argv, prog="source-postgres", verbs=VERBS,
        specification=connection_specification(), check=check,
    )  # fmt: skip


def main_discover(argv: list[str]) -> int:
    return lean_discover(
        argv, prog="source-postgres", verbs=VERBS,
        specification=connection_specification(), discover=discover_catalog,
    )  # fmt: skip


def main_read(argv: list[str], out: BinaryIO | None = None) -> int:
    args = build_parser("source-postgres", VERBS).parse_args(argv)
    writer = MessageWriter(out if out is not None else sys.stdout.buffer)
    if args.debug:
        debug.enable(writer)
    outcome = ReadOutcome()
    writing = False  # a blob is being written (an interrupt may cut its line short)
    interrupts = Interrupts() if out is None else None
    try:
        if interrupts is not None:
            interrupts.install()  # a signal noted during the imports ends the read here
        config = load_json_file(args.config, "config")
        writer.masker.add(collect_secrets(config))
        streams = parse_catalog(load_json_file(args.catalog, "catalog"))
        state = load_json_file(args.state, "state") if args.state else None
        raw, flush = writer.raw, writer.flush
        for blob in read_messages(config, streams, outcome, state):
            # Only a record blob (~1 MiB) bypasses the buffer, where a signal can cut its write
            # short; the small ones are written whole by the flush or not at all.
            writing = True
            raw(blob)
            writing = False
            # Flushing the small ones (states, statuses) hands a finished stream on now, not
            # when a later slow one produces.
            flush()
    except KeyboardInterrupt:
        # Stopped, maybe while blocked writing to a reader that no longer reads (pgbyte
        # stopping the read after a failed destination, a stalled pipe): the last message
        # goes out only if the pipe has room, and the read ends either way.
        unblocked = _stop_blocking(writer.out)
        stuck = False
        try:
            try:
                if writing:  # a line may have been cut short: the error goes on its own line
                    writer.raw(b"\n")
                writer.error(
                    "The read was interrupted; the records and states already printed stand.",
                    failure_type="transient_error",
                )
            except BlockingIOError:  # the buffer filled: what it took is flushed below
                pass
            stuck = not _flush_within(writer, unblocked, INTERRUPTED_FLUSH_SECONDS)
        except BrokenPipeError:
            pass
        if unblocked is not None:  # the pipe's other users get it back as it was
            with contextlib.suppress(OSError):
                os.set_blocking(unblocked, True)
                if stuck:
                    # What did not fit stays buffered, and the interpreter's exit would block
                    # flushing it into the full pipe: let that flush go nowhere instead.
                    to_devnull(unblocked)
        return interrupts.exit_code if interrupts is not None else 130
    except PgbyteError as exc:
        writer.exception(exc)
        return 1
    except psycopg.Error as exc:  # between streams (a server restarted): classified, not a bug
        writer.exception(classify_error(exc, context="Reading from the source failed"))
        return 1
    except BrokenPipeError:
        return 1  # the reader of our stdout went away: nobody is left to tell
    except Exception as exc:  # anything else is a bug: report it as a system_error trace
        writer.exception(exc)
        return 1
    finally:
        debug.disable()  # an in-process caller's later connections log nothing here
        if interrupts is not None:
            settle()  # the read is over: a signal now would only cut its last lines off
        with contextlib.suppress(BrokenPipeError, BlockingIOError):
            writer.flush()
    return 1 if outcome.failed else 0


# How long an interrupted read waits for a slow reader to take its last message.
INTERRUPTED_FLUSH_SECONDS = 1.0


def _flush_within(writer: MessageWriter, fd: int | None, seconds: float) -> bool:
    """Flush a non-blocking pipe (`fd`) while its reader takes the data, for up to `seconds`;
    whether everything went out (a blocking stream flushes at once)."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            writer.flush()
            return True
        except BlockingIOError:
            left = deadline - time.monotonic()
            if fd is None or left <= 0:
                return False
            select.select([], [fd], [], left)


def _stop_blocking(stream: BinaryIO) -> int | None:
    """Make a pipe on `stream` non-blocking; returns its descriptor, or None (not a pipe: a
    terminal or a file, whose flag other programs share, is left alone)."""
    try:
        fd = stream.fileno()
        if not stat.S_ISFIFO(os.fstat(fd).st_mode) or not os.get_blocking(fd):
            return None
        os.set_blocking(fd, False)
    except (OSError, ValueError, AttributeError):  # no real descriptor
        return None
    return fd
