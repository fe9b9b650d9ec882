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
    `<namespace>_raw__stream_<stream>`), so same-named streams of two schemas stay apart.

    The `__` splits the pair in one place only when neither name brings underscores of its
    own to it (a `__` inside, a schema ending or a stream starting with `_`): `sales__eu` +
    `orders` and `sales` + `eu__orders` would both give `sales__eu__orders`, and one stream's
    overwrite would replace the other's raw table. Such pairs end with a hash of the pair
    instead (their names carry a run of 2+ underscores the plain ones lack, so the two forms
    never meet); the common names keep the plain form."""
    if schema is None:
        return fit(stream, prefix="_airbyte_raw_")
    return fit(_joined(schema, stream), prefix="_airbyte_raw_")


def _joined(schema: str, stream: str) -> str:
    plain = f"{schema}__{stream}"
    joins_alone = not (schema.endswith("_") or stream.startswith("_"))
    if joins_alone and "__" not in schema and "__" not in stream:
        return plain
    pair = hashlib.sha256(f"{len(schema)}:{schema}{stream}".encode()).hexdigest()[:_HASH_CHARS]
    return f"{plain}_{pair}"


def ambiguous_raw_table(stream: str, schema: str) -> str | None:
    """The name a raw_data_schema raw table had before _joined told ambiguous pairs apart
    (the plain `_airbyte_raw_<schema>__<stream>`), where it differs from today's; else None."""
    old = fit(f"{schema}__{stream}", prefix="_airbyte_raw_")
    return None if old == raw_table(stream, schema) else old


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
