"""`write` without the CDK: argv → config/catalog → Writer over stdin."""

from __future__ import annotations

import sys
from typing import Any

from pgbyte_common import debug
from pgbyte_common.argv import build_parser, load_json_file
from pgbyte_common.errors import PgbyteError
from pgbyte_common.interrupts import Interrupts, settle
from pgbyte_common.messages import MessageWriter
from pgbyte_common.secrets import Masker, collect_secrets

from destination_postgres.catalog import parse_catalog
from destination_postgres.config import DestinationConfig
from destination_postgres.framing import input_waiting
from destination_postgres.run import VERBS
from destination_postgres.writer import Writer, read_lines


def main(argv: list[str]) -> int:
    out = MessageWriter()
    args = build_parser("destination-postgres", VERBS).parse_args(argv)
    if args.debug:
        debug.enable(out)
    interrupts = Interrupts()
    try:
        # From here a signal ends the write cleanly, also one noted during the imports or one
        # that comes while connecting (as long as connect_timeout, to a silent host).
        interrupts.install()
        raw_config = load_json_file(args.config, "config")
        out.masker.add(collect_secrets(raw_config))
        config = DestinationConfig.from_dict(raw_config)
        targets = parse_catalog(load_json_file(args.catalog, "catalog"), config)
        conn = config.settings.connect()
    except PgbyteError as exc:
        out.exception(exc)
        return 1
    except KeyboardInterrupt:
        return _stopped_before_writing(out, interrupts)
    try:
        fd = sys.stdin.fileno()
        with conn:
            code = Writer(
                conn, targets, out, drop_cascade=config.drop_cascade,
                connect=config.settings.connect, input_waiting=input_waiting(fd),
            ).run(read_lines(fd, lambda: interrupts.signum is not None))  # fmt: skip
            settle()  # the write is over: what it reported stands
            if code == 130:
                # Interrupted, maybe mid-statement: leaving the block must not commit (nor try
                # to, on a connection still busy with it); the server rolls back on close.
                conn.close()
    except KeyboardInterrupt:  # before the Writer took over (it handles its own)
        return _stopped_before_writing(out, interrupts)
    return interrupts.exit_code if code == 130 else code


def _stopped_before_writing(out: MessageWriter, interrupts: Interrupts) -> int:
    out.stopped("The write was interrupted before it read any message; nothing was written.")
    return interrupts.exit_code


def write_lines(config_dict: dict[str, Any], catalog: dict[str, Any], lines, out_stream) -> int:
    """In-process entry used by the CDK class: the same Writer over an iterable of lines."""
    out = MessageWriter(out_stream, Masker(collect_secrets(config_dict)))
    config = DestinationConfig.from_dict(config_dict)
    targets = parse_catalog(catalog, config)
    with config.settings.connect() as conn:
        return Writer(
            conn, targets, out, drop_cascade=config.drop_cascade, connect=config.settings.connect
        ).run(lines)
