"""Schema, table and column names: exactly the stream/property names when they fit, else shortened.

PostgreSQL truncates identifiers to 63 bytes (NAMEDATALEN - 1), so two long names sharing a
prefix would silently land in one table. Names that do not fit keep as much of the original as
fits and end with a hash of the full name, so the result is stable across runs and distinct.
"""

from __future__ import annotations

import hashlib

MAX_IDENTIFIER_BYTES = 63
_HASH_CHARS = 8


def fit(name: str, *, prefix: str = "", suffix: str = "") -> str:
    """`prefix + name + suffix`, shortened with a hash of the whole when over 63 bytes."""
    full = f"{prefix}{name}{suffix}"
    if len(full.encode()) <= MAX_IDENTIFIER_BYTES:
        return full
    digest = hashlib.sha256(full.encode()).hexdigest()[:_HASH_CHARS]
    budget = MAX_IDENTIFIER_BYTES - len(prefix.encode()) - len(suffix.encode()) - 1 - _HASH_CHARS
    # Cut on a character boundary so a multi-byte character is never split.
    cut = name.encode()[: max(budget, 0)].decode("utf-8", "ignore")
    return f"{prefix}{cut}_{digest}{suffix}"


def schema(name: str) -> str:
    """A schema name (a stream's namespace, the config's schema or raw_data_schema)."""
    return fit(name)


def raw_table(stream: str, schema: str | None = None) -> str:
    """`_airbyte_raw_<stream>` beside the typed table; in a raw_data_schema, which the raw
    tables of every schema share, `_airbyte_raw_<schema>__<stream>` (as Airbyte's
    `<namespace>_raw__stream_<stream>`), so same-named streams of two schemas stay apart."""
    return fit(stream if schema is None else f"{schema}__{stream}", prefix="_airbyte_raw_")


def normalized_table(stream: str) -> str:
    return fit(stream)


def hashid_column(stream: str) -> str:
    return fit(stream, prefix="_airbyte_", suffix="_hashid")


def temporary(table: str) -> str:
    """The table an overwrite sync loads into before swapping it in (stable per target)."""
    return fit(table, prefix="_airbyte_tmp_")


def key_index(table: str) -> str:
    """The unique index on an append_dedup table's primary key (stable per table)."""
    return fit(table, prefix="_airbyte_pk_")


def column(name: str) -> str:
    return fit(name)
