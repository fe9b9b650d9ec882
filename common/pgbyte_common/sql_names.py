"""Names inside the SQL our messages suggest (`GRANT SELECT ON … TO …`), quoted as needed.

A message that tells the user what to run must be SQL they can paste: `"Sales Data"."Orders"`,
not `Sales Data.Orders`. A name is left bare when PostgreSQL would read it back unchanged.
"""

from __future__ import annotations

import re

# Lower-case letters, digits, underscores and $, not starting with a digit or $: what an
# unquoted name folds to unchanged. (A reserved word would still need quotes; names like
# `user` or `order` get them below.)
_BARE = re.compile(r"^[a-z_][a-z0-9_$]*$")
# PostgreSQL's reserved key words (as an identifier, only quoted).
_RESERVED = frozenset(
    {
        "all",
        "analyse",
        "analyze",
        "and",
        "any",
        "array",
        "as",
        "asc",
        "asymmetric",
        "authorization",
        "binary",
        "both",
        "case",
        "cast",
        "check",
        "collate",
        "column",
        "concurrently",
        "constraint",
        "create",
        "cross",
        "current_catalog",
        "current_date",
        "current_role",
        "current_schema",
        "current_time",
        "current_timestamp",
        "current_user",
        "default",
        "deferrable",
        "desc",
        "distinct",
        "do",
        "else",
        "end",
        "except",
        "false",
        "fetch",
        "for",
        "foreign",
        "freeze",
        "from",
        "full",
        "grant",
        "group",
        "having",
        "ilike",
        "in",
        "initially",
        "inner",
        "intersect",
        "into",
        "is",
        "isnull",
        "join",
        "lateral",
        "leading",
        "left",
        "like",
        "limit",
        "localtime",
        "localtimestamp",
        "natural",
        "not",
        "notnull",
        "null",
        "offset",
        "on",
        "only",
        "or",
        "order",
        "outer",
        "overlaps",
        "placing",
        "primary",
        "references",
        "returning",
        "right",
        "select",
        "session_user",
        "similar",
        "some",
        "symmetric",
        "table",
        "tablesample",
        "then",
        "to",
        "trailing",
        "true",
        "union",
        "unique",
        "user",
        "using",
        "variadic",
        "verbose",
        "when",
        "where",
        "window",
        "with",
    }
)


def quoted(name: str) -> str:
    """One identifier as SQL: bare when that reads back the same, else double-quoted."""
    if _BARE.match(name) and name not in _RESERVED:
        return name
    return '"' + name.replace('"', '""') + '"'


def qualified(*parts: str) -> str:
    """schema.table (or any dotted name) with each part quoted as needed."""
    return ".".join(quoted(part) for part in parts)
