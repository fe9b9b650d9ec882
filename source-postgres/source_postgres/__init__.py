"""pgbyte's Airbyte source connector for PostgreSQL.

`SourcePostgres` (the CDK class) is imported lazily so that the lean `read` path, which imports
this package, never pays for importing airbyte_cdk.
"""

from __future__ import annotations

from typing import Any

__all__ = ["SourcePostgres"]


def __getattr__(name: str) -> Any:
    if name == "SourcePostgres":
        from source_postgres.source import SourcePostgres

        return SourcePostgres
    raise AttributeError(f"module 'source_postgres' has no attribute {name!r}")
