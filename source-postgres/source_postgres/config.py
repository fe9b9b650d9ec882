"""Config parsing: an Airbyte source-postgres config → a frozen SourceConfig.

Validation here is about meaning (which replication method, which schemas); the JSON shape is the
spec's job. Errors are ConfigErrors a person can act on and never quote a secret.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pgbyte_common.connection import ConnectionSettings
from pgbyte_common.errors import ConfigError

APPLICATION_NAME = "pgbyte-source-postgres"
REPLICATION_METHODS = ("Standard", "Xmin", "CDC")


@dataclass(frozen=True)
class SourceConfig:
    """What a source-postgres run needs from its config."""

    connection: ConnectionSettings
    # Empty tuple: every schema the user can read (Airbyte's 4.x meaning of an empty list).
    schemas: tuple[str, ...]
    replication_method: str = "Standard"

    @classmethod
    def from_config(cls, config: Any) -> SourceConfig:
        if not isinstance(config, dict):
            raise ConfigError("The config must be a JSON object (see `source-postgres spec`).")
        connection = ConnectionSettings.from_config(config, application_name=APPLICATION_NAME)
        return cls(
            connection=connection,
            schemas=_schemas(config.get("schemas")),
            replication_method=_replication_method(config.get("replication_method")),
        )


def _schemas(raw: Any) -> tuple[str, ...]:
    if raw is None:
        return ("public",)  # the spec's default, for configs written without the UI
    if isinstance(raw, str):
        raw = [raw]
    if not isinstance(raw, list) or not all(isinstance(s, str) and s for s in raw):
        raise ConfigError('schemas must be a list of schema names, e.g. ["public"].')
    return tuple(dict.fromkeys(raw))


def _replication_method(raw: Any) -> str:
    if raw is None:
        return "Standard"
    method = raw.get("method") if isinstance(raw, dict) else raw
    if method not in REPLICATION_METHODS:
        raise ConfigError(
            f"replication_method.method must be one of {', '.join(REPLICATION_METHODS)}; "
            f"got {method!r}."
        )
    return str(method)


def require_supported_method(config: SourceConfig) -> None:
    """CDC is accepted by the spec but not implemented yet: say so before reading."""
    if config.replication_method not in ("Standard", "Xmin"):
        raise ConfigError(
            f"replication_method {config.replication_method} is not supported by pgbyte yet: "
            'use {"method": "Standard"} (full refresh, or incremental by a cursor column) or '
            '{"method": "Xmin"} (incremental by the xmin system column).'
        )
