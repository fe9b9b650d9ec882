"""The lean `read` path: no airbyte_cdk import, no object per record (DESIGN.md §5).

Parses the command line like the CDK's entrypoint, runs reader.read_messages and writes its
bytes to stdout. Exit status 0 when every stream completed, 1 otherwise (each failure has
already been reported as a TRACE ERROR).
"""

from __future__ import annotations

import contextlib
import sys
from typing import BinaryIO

from pgbyte_common.argv import build_parser, load_json_file
from pgbyte_common.connection import collect_secrets
from pgbyte_common.errors import PgbyteError
from pgbyte_common.messages import MessageWriter

from source_postgres.catalog import parse_catalog
from source_postgres.reader import ReadOutcome, read_messages

VERBS = ("spec", "check", "discover", "read")


def main_read(argv: list[str], out: BinaryIO | None = None) -> int:
    args = build_parser("source-postgres", VERBS).parse_args(argv)
    writer = MessageWriter(out if out is not None else sys.stdout.buffer)
    outcome = ReadOutcome()
    try:
        config = load_json_file(args.config, "config")
        writer.masker.add(collect_secrets(config))
        streams = parse_catalog(load_json_file(args.catalog, "catalog"))
        raw = writer.raw
        for blob in read_messages(config, streams, outcome):
            raw(blob)
    except PgbyteError as exc:
        writer.exception(exc)
        return 1
    except BrokenPipeError:
        return 1  # the reader of our stdout went away: nobody is left to tell
    except Exception as exc:  # anything else is a bug: report it as a system_error trace
        writer.exception(exc)
        return 1
    finally:
        with contextlib.suppress(BrokenPipeError):
            writer.flush()
    return 1 if outcome.failed else 0
