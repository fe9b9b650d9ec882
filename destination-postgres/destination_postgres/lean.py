"""`write` without the CDK: argv → config/catalog → Writer over stdin."""

from __future__ import annotations

import signal
import sys
from typing import Any

from pgbyte_common.argv import build_parser, load_json_file
from pgbyte_common.errors import PgbyteError
from pgbyte_common.messages import MessageWriter
from pgbyte_common.secrets import Masker, collect_secrets

from destination_postgres.catalog import parse_catalog
from destination_postgres.config import DestinationConfig
from destination_postgres.writer import Writer, read_lines


def _interrupt(signum: int, frame: Any) -> None:
    """The first SIGTERM or SIGINT ends the write (Writer.run rolls back and drops the overwrite
    temporaries); later ones are ignored, so a second signal (Ctrl-C reaches the whole process
    group, then the orchestrator terminates us) cannot interrupt that clean-up half way."""
    # A no-op handler, not SIG_IGN: a signal already pending would find SIG_IGN and make Python
    # raise "Signal ignored due to race condition" in the middle of the clean-up.
    signal.signal(signal.SIGTERM, _ignore)
    signal.signal(signal.SIGINT, _ignore)
    raise KeyboardInterrupt


def _ignore(signum: int, frame: Any) -> None:
    """Signals after the first: the write is already ending."""


def main(argv: list[str]) -> int:
    out = MessageWriter()
    args = build_parser("destination-postgres", ("spec", "check", "write")).parse_args(argv)
    try:
        raw_config = load_json_file(args.config, "config")
        out.masker.add(collect_secrets(raw_config))
        config = DestinationConfig.from_dict(raw_config)
        targets = parse_catalog(load_json_file(args.catalog, "catalog"), config)
        conn = config.settings.connect()
    except PgbyteError as exc:
        out.exception(exc)
        return 1
    signal.signal(signal.SIGTERM, _interrupt)
    signal.signal(signal.SIGINT, _interrupt)
    with conn:
        return Writer(
            conn, targets, out, drop_cascade=config.drop_cascade, connect=config.settings.connect
        ).run(read_lines(sys.stdin.fileno()))


def write_lines(config_dict: dict[str, Any], catalog: dict[str, Any], lines, out_stream) -> int:
    """In-process entry used by the CDK class: the same Writer over an iterable of lines."""
    out = MessageWriter(out_stream, Masker(collect_secrets(config_dict)))
    config = DestinationConfig.from_dict(config_dict)
    targets = parse_catalog(catalog, config)
    with config.settings.connect() as conn:
        return Writer(
            conn, targets, out, drop_cascade=config.drop_cascade, connect=config.settings.connect
        ).run(lines)
