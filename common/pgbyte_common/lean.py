"""`check` and `discover` without airbyte_cdk: the same protocol output, a fraction of the start-up.

Importing airbyte_cdk costs one to several seconds per process, and `pgbyte sync` (like
Airbyte's platform) runs `spec` and `discover` before every sync. The connectors' CDK classes
still serve these verbs in-process (the CDK standard suites drive them); both envelopes call the
same check/discover functions, and the configs are validated against the same spec first, as
the CDK's entrypoint does.

These are console entry points: they take over SIGTERM/SIGINT/SIGHUP (pgbyte_common.interrupts)
for the rest of the process; in-process callers call check/discover themselves.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any

from pgbyte_common import debug
from pgbyte_common.argv import build_parser, load_json_file
from pgbyte_common.errors import ConfigError, PgbyteError
from pgbyte_common.interrupts import Interrupts, settle
from pgbyte_common.messages import MessageWriter
from pgbyte_common.secrets import collect_secrets
from pgbyte_common.validation import config_problem


def _load_config(args: Any, writer: MessageWriter, specification: dict[str, Any]) -> Any:
    config = load_json_file(args.config, "config")
    writer.masker.add(collect_secrets(config))
    problem = config_problem(config, specification)
    if problem:
        raise ConfigError(problem)
    return config


def lean_check(
    argv: list[str],
    *,
    prog: str,
    verbs: tuple[str, ...],
    specification: dict[str, Any],
    check: Callable[[dict[str, Any]], tuple[bool, str | None]],
) -> int:
    """Print one CONNECTION_STATUS; exit 0 whatever the status (as the CDK does)."""
    args = build_parser(prog, verbs).parse_args(argv)
    writer = MessageWriter()
    if args.debug:
        debug.enable(writer)
    interrupts = Interrupts()
    try:
        interrupts.install()
        config = _load_config(args, writer, specification)
        ok, message = check(config)
        settle()  # the check is done: its answer goes out whole, whatever signal comes now
        writer.connection_status(ok, message)
    except KeyboardInterrupt:  # stopped (SIGTERM, Ctrl-C): no status, the check did not finish
        writer.stopped("The check was interrupted before it finished.")
        return interrupts.exit_code
    except PgbyteError as exc:
        writer.connection_status(False, exc.message)
    except Exception as exc:  # a bug: say so as a trace, and still answer the check
        writer.exception(exc)
        writer.connection_status(False, f"Unexpected error during check: {exc}")
    finally:
        debug.disable()
        settle()  # the answer (or the error) is written: a signal now would only cut it off
        with contextlib.suppress(BrokenPipeError):
            writer.flush()
    return 0


def lean_discover(
    argv: list[str],
    *,
    prog: str,
    verbs: tuple[str, ...],
    specification: dict[str, Any],
    discover: Callable[[dict[str, Any], Callable[[str, str], None]], dict[str, Any]],
) -> int:
    """Print one CATALOG, or one TRACE ERROR and exit 1."""
    args = build_parser(prog, verbs).parse_args(argv)
    writer = MessageWriter()
    if args.debug:
        debug.enable(writer)
    interrupts = Interrupts()
    try:
        interrupts.install()
        config = _load_config(args, writer, specification)
        catalog = discover(config, writer.log)
        settle()
        writer.message({"type": "CATALOG", "catalog": catalog})
    except KeyboardInterrupt:
        writer.stopped("The discover was interrupted before it finished.")
        return interrupts.exit_code
    except Exception as exc:  # PgbyteError keeps its failure_type; others are system_error
        writer.exception(exc)
        return 1
    finally:
        debug.disable()
        settle()  # the answer (or the error) is written: a signal now would only cut it off
        with contextlib.suppress(BrokenPipeError):
            writer.flush()
    return 0
