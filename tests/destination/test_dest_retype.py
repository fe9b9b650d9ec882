"""The column type a later sync gets when a stream's declared type changes (typemap.common_kind).

End to end (real syncs across such changes): tests/orchestrator/test_roundtrip_shapes_e2e.py.
"""

from __future__ import annotations

import pytest
from destination_postgres.typemap import common_kind, is_our_type

CASES = [
    ("bigint", "numeric", "numeric"),
    ("numeric", "bigint", "numeric"),
    ("date", "timestamptz", "timestamptz"),
    ("timestamp", "date", "timestamp"),
    ("timestamp", "timestamptz", "timestamptz"),
    ("time", "timetz", "timetz"),
    ("bigint", "text", "text"),
    ("boolean", "bigint", "text"),
    ("date", "time", "text"),
    ("text", "jsonb", "jsonb"),
    ("numeric", "jsonb", "jsonb"),
    ("jsonb", "bigint", "jsonb"),
    ("text", "text", "text"),
]


@pytest.mark.parametrize(("old", "new", "expected"), CASES)
def test_common_kind_holds_old_and_new_values(old: str, new: str, expected: str) -> None:
    """The wider number/time type, else jsonb if either is, else text."""
    assert common_kind(old, new) == expected


def test_user_made_types_are_not_ours() -> None:
    """Only the types pgbyte creates are retyped; a user's varchar(20) or int4range is kept."""
    assert is_our_type("bigint") and is_our_type("timestamp with time zone")
    assert not is_our_type("character varying(20)") and not is_our_type("int4range")
