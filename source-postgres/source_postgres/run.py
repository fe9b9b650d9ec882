"""Console entry point of `source-postgres`.

Every protocol verb takes a lean path (no airbyte_cdk import, which costs one to several seconds
per process, paid before every sync): `spec` is a constant printed by orjson, `check`/`discover`
run through pgbyte_common.lean, `read` through source_postgres.lean. The CDK class
SourcePostgres serves the same functions in-process; anything else (--help) goes to the CDK.
"""

from __future__ import annotations

import sys


def _verb(argv: list[str]) -> str | None:
    return next((arg for arg in argv if not arg.startswith("-")), None)


def run() -> None:
    argv = sys.argv[1:]
    if _verb(argv) == "spec":
        import orjson

        from source_postgres.spec import spec_message

        sys.stdout.buffer.write(orjson.dumps({"type": "SPEC", "spec": spec_message()}) + b"\n")
        return
    if _verb(argv) in ("check", "discover", "read"):
        # Imported here so that these verbs never pay for importing airbyte_cdk.
        from source_postgres import lean

        main = {"check": lean.main_check, "discover": lean.main_discover, "read": lean.main_read}
        sys.exit(main[_verb(argv)](argv))
    from airbyte_cdk.entrypoint import launch
    from airbyte_cdk.exception_handler import init_uncaught_exception_handler
    from airbyte_cdk.logger import init_logger

    from source_postgres.source import SourcePostgres

    init_uncaught_exception_handler(init_logger("airbyte"))
    launch(SourcePostgres(), argv)
