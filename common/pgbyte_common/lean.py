"""`check` and `discover` without airbyte_cdk: the same protocol output, a fraction of the start-up.

Importing airbyte_cdk costs one to several seconds per process, and `pgbyte sync` (like
Airbyte's platform) runs `spec` and `discover` before every sync. The connectors' CDK classes
still serve these verbs in-process (the CDK standard suites drive them); both envelopes call the
same check/discover functions, and the configs are validated against the same spec first, as
the CDK's entrypoint does.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any

from pgbyte_common.argv import build_parser, load_json_file
from pgbyte_common.errors import ConfigError, PgbyteError
from pgbyte_common.messages import MessageWriter
from pgbyte_common.secrets import SECRET_KEYS, collect_secrets, secret_keys_from_spec


def config_problem(config: Any, specification: dict[str, Any]) -> str | None:
    """The first way `config` breaks the connectionSpecification, worded like the CDK's but
    never quoting a value the config holds: it may be a secret, or an object holding one (a
    tunnel_method with its private key), which no masker can be trusted to find in a repr."""
    import jsonschema  # only here: validation is the one user of it

    if not isinstance(config, dict):
        return "Config validation error: the config must be a JSON object."
    error = jsonschema.exceptions.best_match(
        jsonschema.Draft7Validator(specification).iter_errors(config)
    )
    if error is None:
        return None
    secret_keys = SECRET_KEYS | secret_keys_from_spec(specification)
    return f"Config validation error: {describe_validation_error(error, secret_keys)}"


def describe_validation_error(error: Any, secret_keys: set[str]) -> str:
    """`where: what is wrong` for one jsonschema error; a oneOf/anyOf names the alternative the
    config meant (the one whose discriminator matches) and what is wrong inside it."""
    import jsonschema

    where = ".".join(str(p) for p in error.absolute_path) or "config"
    if error.validator in ("oneOf", "anyOf") and error.context:
        by_option: dict[Any, list[Any]] = {}
        for sub in error.context:
            by_option.setdefault(sub.relative_schema_path[0], []).append(sub)
        meant = [errs for errs in by_option.values()
                 if not any(e.validator in ("const", "enum") for e in errs)]  # fmt: skip
        if len(meant) == 1:
            return describe_validation_error(
                jsonschema.exceptions.best_match(meant[0]), secret_keys
            )
        allowed = [e.validator_value for errs in by_option.values() for e in errs
                   if e.validator == "const"]  # fmt: skip
        keys = {".".join(str(p) for p in e.absolute_path) for errs in by_option.values()
                for e in errs if e.validator == "const"}  # fmt: skip
        if allowed and len(keys) == 1:
            return f"{keys.pop()} must be one of {', '.join(map(str, allowed))}"
        return f"{where} matches none of the forms the spec allows"
    text = str(error.message)
    shown = repr(error.instance)
    secret = any(p in secret_keys for p in error.absolute_path)
    scalar = isinstance(error.instance, (int, float, bool, type(None))) or (
        isinstance(error.instance, str) and len(error.instance) <= 64
    )
    if text.startswith(shown) and (secret or not scalar):
        text = "the value" + text[len(shown) :]  # "<value> is not of type ..." without the value
    return f"{where}: {text}"


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
    try:
        config = _load_config(args, writer, specification)
        ok, message = check(config)
        writer.connection_status(ok, message)
    except PgbyteError as exc:
        writer.connection_status(False, exc.message)
    except Exception as exc:  # a bug: say so as a trace, and still answer the check
        writer.exception(exc)
        writer.connection_status(False, f"Unexpected error during check: {exc}")
    finally:
        with contextlib.suppress(BrokenPipeError):
            writer.flush()
    return 0


def lean_discover(
    argv: list[str],
    *,
    prog: str,
    verbs: tuple[str, ...],
    specification: dict[str, Any],
    discover: Callable[[dict[str, Any]], dict[str, Any]],
) -> int:
    """Print one CATALOG, or one TRACE ERROR and exit 1."""
    args = build_parser(prog, verbs).parse_args(argv)
    writer = MessageWriter()
    try:
        config = _load_config(args, writer, specification)
        writer.message({"type": "CATALOG", "catalog": discover(config)})
    except Exception as exc:  # PgbyteError keeps its failure_type; others are system_error
        writer.exception(exc)
        return 1
    finally:
        with contextlib.suppress(BrokenPipeError):
            writer.flush()
    return 0
