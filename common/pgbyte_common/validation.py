"""A config checked against a connector's connectionSpecification (JSON Schema draft 7).

Problems quote a value only when it is a short scalar of a field that is not secret: any other
value may be a secret, or an object holding one (a tunnel_method with its private key), which
no masker can be trusted to find in a repr (a PEM key's newlines become two characters there).
jsonschema is imported only here and only when a config is validated (≈0.2 s).
"""

from __future__ import annotations

from typing import Any

from pgbyte_common.secrets import SECRET_KEYS, secret_keys_from_spec


def config_problem(config: Any, specification: dict[str, Any]) -> str | None:
    """The first way `config` breaks the spec (jsonschema's best match, as the CDK reports
    one), worded like the CDK's "Config validation error"; None when it fits."""
    import jsonschema

    if not isinstance(config, dict):
        return "Config validation error: the config must be a JSON object."
    unsupported = unsupported_problem(config)
    if unsupported:
        return f"Config validation error: {unsupported}"
    error = jsonschema.exceptions.best_match(
        jsonschema.Draft7Validator(specification).iter_errors(config)
    )
    if error is None:
        return None
    secret_keys = SECRET_KEYS | secret_keys_from_spec(specification)
    return f"Config validation error: {_describe(error, secret_keys)}"


def config_problems(config: Any, specification: dict[str, Any]) -> list[str]:
    """Every way `config` breaks the spec, in the order of their places in it."""
    import jsonschema

    unsupported = unsupported_problem(config)
    if unsupported:
        return [unsupported]
    validator = jsonschema.Draft7Validator(specification)
    secret_keys = SECRET_KEYS | secret_keys_from_spec(specification)
    errors = sorted(validator.iter_errors(config), key=lambda e: list(e.absolute_path))
    return [_describe(error, secret_keys) for error in errors]


def _describe(error: Any, secret_keys: set[str]) -> str:
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
        if not meant:  # the discriminator (a const) matched, another field's enum did not
            meant = [errs for errs in by_option.values()
                     if not any(e.validator == "const" for e in errs)]  # fmt: skip
        if len(meant) == 1:
            return _describe(jsonschema.exceptions.best_match(meant[0]), secret_keys)
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


# The tunnel_method values of Airbyte's Postgres connector specs.
_TUNNEL_METHODS = ("NO_TUNNEL", "SSH_KEY_AUTH", "SSH_PASSWORD_AUTH")


def unsupported_problem(config: Any) -> str | None:
    """What an Airbyte config asks for that pgbyte cannot do (an SSH tunnel, Entra ID sign-in),
    worded as the fix; None when nothing. Checked before the config's other fields, whose
    problems would not matter."""
    if not isinstance(config, dict):
        return None
    tunnel = config.get("tunnel_method")
    method = tunnel.get("tunnel_method", "NO_TUNNEL") if isinstance(tunnel, dict) else tunnel
    if tunnel and method not in _TUNNEL_METHODS:
        return (
            f"tunnel_method {method!r} is not a tunnel method: use NO_TUNNEL (or one of "
            "Airbyte's SSH_KEY_AUTH, SSH_PASSWORD_AUTH, which pgbyte does not open yet)."
        )
    if tunnel and method != "NO_TUNNEL":
        return (
            f"tunnel_method {method} is not supported by pgbyte yet: open the SSH tunnel "
            "yourself (ssh -L) and point host/port at its local end, or use NO_TUNNEL."
        )
    if config.get("entra_service_principal_auth") is True:
        return (
            "entra_service_principal_auth (Microsoft Entra ID sign-in) is not supported by "
            "pgbyte: connect as a PostgreSQL role with a password."
        )
    return None
