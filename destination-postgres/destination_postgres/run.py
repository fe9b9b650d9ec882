"""Console entry point of `destination-postgres`.

`write` takes the lean path (no airbyte_cdk import: it costs about a second and its
per-message parsing is what we avoid); so do `spec`, a constant printed by orjson, and `check`
(pgbyte_common.lean, the same run_check DestinationPostgres uses in-process). Anything else
(--help, no verb) gets argparse's usage.
"""

from __future__ import annotations

import sys

VERBS = ("spec", "check", "write")


def run() -> None:
    from pgbyte_common.argv import asks_help
    from pgbyte_common.interrupts import exit_now, note_early
    from pgbyte_common.libpq_env import forget_libpq_environment

    forget_libpq_environment()  # only the config decides how to connect
    argv = sys.argv[1:]
    if argv and argv[0] in ("check", "write"):
        note_early()  # a SIGTERM during the imports below ends the verb cleanly, not silently
        from pgbyte_common.messages import buffer_stdout

        buffer_stdout()
    if argv and argv[0] == "spec" and not asks_help(argv):
        import orjson

        from destination_postgres.spec import spec_message_body

        sys.stdout.buffer.write(orjson.dumps({"type": "SPEC", "spec": spec_message_body()}) + b"\n")
        return
    if argv and argv[0] == "check":
        from pgbyte_common.lean import lean_check

        from destination_postgres.check import run_check
        from destination_postgres.spec import connection_specification

        spec = connection_specification()
        exit_now(lean_check(argv, prog="destination-postgres", verbs=VERBS, specification=spec,
                            check=run_check))  # fmt: skip
    if argv and argv[0] == "write":
        from destination_postgres.lean import main

        exit_now(main(argv))  # not sys.exit: see pgbyte_common.interrupts
    # No verb, --help or an unknown verb: argparse's usage (exit 0 for --help, 2 otherwise),
    # as the CDK's entrypoint answers but without its traceback on stdout.
    from pgbyte_common.argv import build_parser

    build_parser("destination-postgres", VERBS).parse_args(argv)
