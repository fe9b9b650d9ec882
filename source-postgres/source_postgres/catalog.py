"""The configured catalog of a `read`: which streams, which columns, which sync mode.

Parsed from the raw JSON (no CDK models: `read` must stay lean). A malformed catalog is a
ConfigError naming the problem; a stream asking for what is not supported yet is reported on
that stream only.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pgbyte_common.catalog_shape import catalog_shape_problem
from pgbyte_common.errors import ConfigError

SYNC_MODES = ("full_refresh", "incremental")


@dataclass(frozen=True)
class ConfiguredStream:
    name: str
    namespace: str | None
    sync_mode: str
    # Property names of the configured json_schema, in catalog order; None = every column.
    columns: tuple[str, ...] | None
    cursor_field: tuple[str, ...] = ()
    # The configured primary_key, else the stream's source_defined_primary_key.
    has_primary_key: bool = False
    # destination_sync_mode overwrite: the client replaces the stream's rows with this read's.
    replaced: bool = False

    @property
    def descriptor(self) -> tuple[str, str | None]:
        return (self.name, self.namespace)


def parse_catalog(raw: Any) -> list[ConfiguredStream]:
    problem = catalog_shape_problem(raw, "The catalog")
    if problem:
        raise ConfigError(problem)
    streams: list[ConfiguredStream] = []
    seen: set[tuple[str, str | None]] = set()
    for index, entry in enumerate(raw["streams"]):
        stream = entry.get("stream") if isinstance(entry, dict) else None
        if not isinstance(stream, dict) or not isinstance(stream.get("name"), str):
            raise ConfigError(f"Catalog stream #{index} lacks stream.name.")
        name = stream["name"]
        namespace = stream.get("namespace")
        sync_mode = entry.get("sync_mode", "full_refresh")
        if sync_mode not in SYNC_MODES:
            raise ConfigError(
                f"Catalog stream {name!r} has sync_mode {sync_mode!r}; expected one of "
                f"{', '.join(SYNC_MODES)}."
            )
        schema = stream.get("json_schema")
        properties = schema.get("properties") if isinstance(schema, dict) else None
        columns = tuple(properties) if isinstance(properties, dict) and properties else None
        key = (name, namespace)
        if key in seen:
            continue  # a stream listed twice is read once
        seen.add(key)
        cursor = entry.get("cursor_field") or []
        streams.append(
            ConfiguredStream(
                name=name,
                namespace=namespace if isinstance(namespace, str) else None,
                sync_mode=sync_mode,
                columns=columns,
                cursor_field=tuple(str(c) for c in cursor),
                has_primary_key=bool(
                    entry.get("primary_key") or stream.get("source_defined_primary_key")
                ),
                replaced=entry.get("destination_sync_mode") == "overwrite",
            )
        )
    return streams
