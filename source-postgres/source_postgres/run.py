"""Console entry point of `source-postgres`.

Every protocol verb takes a lean path (no airbyte_cdk import, which costs one to several seconds
per process, paid before every sync): `spec` is a constant printed by orjson, `check`/`discover`
run through pgbyte_common.lean, `read` through source_postgres.lean. The CDK class
SourcePostgres serves the same functions in-process; anything else (--help, no verb) gets
argparse's usage.
"""

from __future__ import annotations

import sys


def _verb(argv: list[str]) -> str | None:
    return next((arg for arg in argv if not arg.startswith("-")), None)


def run() -> None:
    from pgbyte_common.libpq_env import forget_libpq_environment

    forget_libpq_environment()  # only the config decides how to connect
    from pgbyte_common.argv import asks_help

    argv = sys.argv[1:]
    if _verb(argv) == "spec" and not asks_help(argv):
        import orjson

        from source_postgres.spec import spec_message

        sys.stdout.buffer.write(orjson.dumps({"type": "SPEC", "spec": spec_message()}) + b"\n")
        return
    if _verb(argv) in ("check", "discover", "read"):
        from pgbyte_common.interrupts import exit_now, note_early

        note_early()  # a SIGTERM during the imports below ends the verb cleanly, not silently
        from pgbyte_common.messages import buffer_stdout

        buffer_stdout()
        # Imported here so that these verbs never pay for importing airbyte_cdk.
        from source_postgres import lean

        main = {"check": lean.main_check, "discover": lean.main_discover, "read": lean.main_read}
        exit_now(main[_verb(argv)](argv))  # not sys.exit: see pgbyte_common.interrupts
    # No verb, --help or an unknown verb: argparse's usage (exit 0 for --help, 2 otherwise),
    # as the CDK's entrypoint answers but without its traceback or log lines on stdout.
    from pgbyte_common.argv import build_parser

    from source_postgres.lean import VERBS

    build_parser("source-postgres", VERBS).parse_args(argv)
