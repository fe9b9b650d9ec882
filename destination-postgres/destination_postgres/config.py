"""Parsed destination config: connection settings plus where and how tables are written."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pgbyte_common.connection import ConnectionSettings
from pgbyte_common.errors import ConfigError

from destination_postgres import naming

APPLICATION_NAME = "pgbyte-destination-postgres"
DELETION_MODES = ("Hard delete", "Soft delete")  # Airbyte's cdc_deletion_mode values


@dataclass(frozen=True)
class DestinationConfig:
    settings: ConnectionSettings
    schema: str = "public"
    raw_data_schema: str | None = None
    disable_type_dedupe: bool = False
    drop_cascade: bool = False
    soft_delete: bool = False  # cdc_deletion_mode "Soft delete": keep deleted rows (append_dedup)

    @classmethod
    def from_dict(cls, config: Any) -> DestinationConfig:
        if not isinstance(config, dict):
            raise ConfigError("The config must be a JSON object.")
        schema = config.get("schema") or "public"
        raw_schema = config.get("raw_data_schema") or None
        for key, value in (("schema", schema), ("raw_data_schema", raw_schema)):
            if value is not None and (not isinstance(value, str) or not value.strip()):
                raise ConfigError(f"{key} must be a non-empty string, got {value!r}.")
        deletion = config.get("cdc_deletion_mode") or "Hard delete"
        if deletion not in DELETION_MODES:
            raise ConfigError(
                f"cdc_deletion_mode must be one of {', '.join(DELETION_MODES)}, got {deletion!r}."
            )
        return cls(
            settings=ConnectionSettings.from_config(config, application_name=APPLICATION_NAME),
            schema=naming.schema(schema),  # over 63 bytes: shortened with a hash, not truncated
            raw_data_schema=naming.schema(raw_schema) if raw_schema else None,
            disable_type_dedupe=_raw_only(config),
            drop_cascade=_flag(config, "drop_cascade"),
            soft_delete=deletion == "Soft delete",
        )


def _raw_only(config: dict[str, Any]) -> bool:
    """disable_type_dedupe; absent, the legacy `basic_normalization: false` of Airbyte's early
    destination configs (raw tables only, as that option asked) says the same."""
    if config.get("disable_type_dedupe") is None and "basic_normalization" in config:
        return not _flag(config, "basic_normalization")
    return _flag(config, "disable_type_dedupe")


def _flag(config: dict[str, Any], key: str) -> bool:
    value = config.get(key, False)
    if value is None:
        return False
    if not isinstance(value, bool):
        raise ConfigError(f"{key} must be true or false, got {value!r}.")
    return value
