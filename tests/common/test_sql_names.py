"""Names in the SQL our messages suggest: pasteable as they are printed."""

from __future__ import annotations

import pytest
from pgbyte_common.sql_names import qualified, quoted


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("loader_1", "loader_1"),
        ("Loader", '"Loader"'),
        ("user", '"user"'),
        ("two words", '"two words"'),
        ('quo"te', '"quo""te"'),
        ("1st", '"1st"'),
        ("naïve", '"naïve"'),
    ],
)
def test_a_name_is_quoted_only_when_it_must_be(name: str, expected: str) -> None:
    assert quoted(name) == expected


def test_printed_names_read_back_as_the_same_relation(dest_conn) -> None:
    """What qualified() prints, PostgreSQL resolves to the relation it names."""
    for schema, table in (("Sales Data", "Orders"), ("public", "user"), ("public", "plain")):
        dest_conn.execute(f"CREATE SCHEMA IF NOT EXISTS {quoted(schema)}")
        dest_conn.execute(f"CREATE TABLE {qualified(schema, table)} (id int)")
        found = dest_conn.execute(
            f"SELECT n.nspname, c.relname FROM pg_class c JOIN pg_namespace n "
            f"ON n.oid = c.relnamespace WHERE c.oid = '{qualified(schema, table)}'::regclass"
        ).fetchone()
        assert found == (schema, table)
        dest_conn.execute(f"DROP TABLE {qualified(schema, table)}")
    dest_conn.execute('DROP SCHEMA "Sales Data"')
