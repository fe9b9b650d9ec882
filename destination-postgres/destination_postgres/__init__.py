"""pgbyte's Airbyte destination connector for PostgreSQL.

`DestinationPostgres` (the CDK class) is imported lazily so that the lean `write` path, which
imports this package, never pays for importing airbyte_cdk.
"""

from __future__ import annotations

from typing import Any

__all__ = ["DestinationPostgres"]


def __getattr__(name: str) -> Any:
    if name == "DestinationPostgres":
        from destination_postgres.destination import DestinationPostgres

        return DestinationPostgres
    raise AttributeError(f"module 'destination_postgres' has no attribute {name!r}")
