"""Stream JSON schema → typed columns, and the SQL that casts `_airbyte_data` values into them.

Mapping (DESIGN.md §4): integer → bigint (widened to numeric when a value does not fit),
number → numeric (unconstrained: Airbyte's numeric(38,9) rounds and overflows), boolean,
date, time/timetz, timestamp/timestamptz by format and airbyte_type, string → text, and
object/array/unions/anything else → jsonb.

Two cast flavours: the fast one is a plain `::type` per value, used for a whole batch; when it
raises a data exception the batch is redone with the guarded one, where a value that cannot be
cast becomes NULL (counted). PostgreSQL 15 has no pg_input_is_valid, so the guard is a cheap
regex for the common shapes and a plpgsql try-function (an exception block, i.e. a
subtransaction) only for the rest.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from psycopg import sql

# kind → PostgreSQL type
PG_TYPES = {
    "bigint": "bigint",
    "numeric": "numeric",
    "boolean": "boolean",
    "date": "date",
    "time": "time without time zone",
    "timetz": "time with time zone",
    "timestamp": "timestamp without time zone",
    "timestamptz": "timestamp with time zone",
    "text": "text",
    "jsonb": "jsonb",
}
# format_type() spelling of an existing column → kind (columns we did not create keep theirs).
_EXISTING = {v: k for k, v in PG_TYPES.items()} | {"integer": "bigint", "smallint": "bigint"}
# (bytes, alignment) of a value of each fixed-width kind. The others are varlena, counted at
# their smallest (a byte): TOAST shrinks long ones to 18-byte pointers, and a table whose
# values are mostly short or NULL would be refused a typed table for nothing.
_FIXED_WIDTH = {"bigint": (8, 8), "boolean": (1, 1), "date": (4, 4), "time": (8, 8),
                "timetz": (12, 8), "timestamp": (8, 8), "timestamptz": (8, 8)}  # fmt: skip
MAX_TUPLE_BYTES = 8160  # MaxHeapTupleSize of an 8 kB page: a row must fit, after TOAST


def worst_row_bytes(columns: list[Column], extra_fixed: int = 0) -> int:
    """The width of a typed row of these columns that no TOAST can shrink: every fixed-width
    value present, each varlena a byte, plus the meta columns (uuid, two timestamps, the
    hashid). A table whose rows may exceed MAX_TUPLE_BYTES refuses them ("row is too big")."""
    offset = 24  # the tuple header; no null bitmap when every value is present

    def add(size: int, align: int) -> None:
        nonlocal offset
        offset = -(-offset // align) * align + size

    for col in columns:
        add(*_FIXED_WIDTH.get(col.kind, (1, 1)))
    for size, align in ((16, 1), (8, 8), (8, 8), (17, 1)):
        add(size, align)
    return offset + extra_fixed


TYPED_KINDS = ("bigint", "numeric", "boolean", "date", "time", "timetz", "timestamp",
               "timestamptz")  # fmt: skip

_WELL_KNOWN = {
    "Integer": "bigint", "Number": "numeric", "Boolean": "boolean", "String": "text",
    "BinaryData": "text", "Date": "date", "TimestampWithTimezone": "timestamptz",
    "TimestampWithoutTimezone": "timestamp", "TimeWithTimezone": "timetz",
    "TimeWithoutTimezone": "time",
}  # fmt: skip


def kind_of(schema: Any) -> str:
    """The column kind for one property's JSON schema."""
    if not isinstance(schema, dict):
        return "jsonb"
    ref = schema.get("$ref")
    if isinstance(ref, str):
        return _WELL_KNOWN.get(ref.rsplit("/", 1)[-1], "jsonb")
    raw = schema.get("type")
    types = [raw] if isinstance(raw, str) else list(raw) if isinstance(raw, list) else []
    types = [t for t in types if t != "null"]
    if len(types) != 1:
        return "jsonb"  # no type, or a union: keep the JSON value as is
    airbyte_type = schema.get("airbyte_type")
    kind = types[0]
    if kind == "integer" or (kind == "number" and airbyte_type == "integer"):
        return "bigint"
    if kind == "number":
        return "numeric"
    if kind == "boolean":
        return "boolean"
    if kind == "string":
        fmt = schema.get("format")
        if fmt == "date":
            return "date"
        if fmt == "date-time":
            return "timestamp" if airbyte_type == "timestamp_without_timezone" else "timestamptz"
        if fmt == "time":
            return "timetz" if airbyte_type == "time_with_timezone" else "time"
        return "text"
    return "jsonb"


# The kind of an existing column whose type pgbyte does not create (the user retyped it, say to
# numeric(10,2)): its values are cast to that type itself (Column.user_type).
USER_KIND = "user"


def kind_of_existing(pg_type: str) -> str:
    # json takes jsonb's values (an assignment cast); char(n)/varchar(n) text's, which their
    # own assignment cast checks (an explicit cast would cut a long value silently).
    if pg_type == "json":
        return "jsonb"
    if "char" in pg_type:
        return "text"
    return _EXISTING.get(pg_type, USER_KIND)


def is_our_type(pg_type: str) -> bool:
    """Whether an existing column has a type pgbyte creates (others are the user's: kept)."""
    return pg_type in _EXISTING


_TEMPORAL = {("date", "timestamp"): "timestamp", ("date", "timestamptz"): "timestamptz",
             ("timestamp", "timestamptz"): "timestamptz", ("time", "timetz"): "timetz"}  # fmt: skip


def common_kind(old: str, new: str) -> str:
    """The kind a typed column takes when a later sync declares a different kind for it: one
    that holds the old rows and the new values alike — the wider number or time type, else
    jsonb if either is, else text (every value has a text form)."""
    if old == new:
        return old
    pair = {old, new}
    if pair == {"bigint", "numeric"}:
        return "numeric"
    for (a, b), kind in _TEMPORAL.items():
        if pair == {a, b}:
            return kind
    return "jsonb" if "jsonb" in pair else "text"


@dataclass(frozen=True)
class Column:
    key: str  # the property name in _airbyte_data
    name: str  # the column name (shortened when over 63 bytes)
    kind: str
    user_type: str | None = None  # USER_KIND: the column's type, as format_type() spells it
    # A user's narrower type for a bigint or text column (smallint, integer, varchar(n),
    # char(n)), whose assignment refuses values of the kind: the guarded INSERT NULLs them.
    narrow: str | None = None
    # An integer property in a numeric column (widened for a value beyond bigint, or made
    # numeric by an earlier number declaration): a value that is not whole is still NULL and
    # counted, as the bigint column refused it before the widening.
    integral: bool = False

    @property
    def pg_type(self) -> sql.Composable:
        if self.kind == USER_KIND:
            return sql.SQL(str(self.user_type))
        return sql.SQL(PG_TYPES[self.kind])

    def text_value(self, data: sql.Composable) -> sql.Composable:
        return sql.SQL("({} ->> {})").format(data, sql.Literal(self.key))

    def fast_expr(self, data: sql.Composable) -> sql.Composable:
        if self.integral:
            # A value that is not whole fails the cast (into the guarded INSERT, which counts).
            return sql.SQL(
                "(SELECT CASE WHEN n - trunc(n) = 0 THEN n ELSE (n::text || ' is not whole')"
                "::numeric END FROM (SELECT {}::numeric AS n) w)"
            ).format(self.text_value(data))
        if self.kind == "jsonb":
            # JSON null becomes SQL NULL, as Airbyte's normalization does.
            return sql.SQL("NULLIF({} -> {}, 'null'::jsonb)").format(data, sql.Literal(self.key))
        if self.kind == "text":
            return self.text_value(data)
        return sql.SQL("{}::{}").format(self.text_value(data), self.pg_type)

    def safe_expr(self, data: sql.Composable) -> sql.Composable:
        expr = self._safe_expr(data)
        if self.integral:
            # n - trunc(n) = 0: whole and finite (NaN and ±Infinity give NaN, not 0).
            return sql.SQL("(SELECT CASE WHEN n - trunc(n) = 0 THEN n END FROM (SELECT {} AS n) w)"
                           ).format(expr)  # fmt: skip
        if self.narrow in _INT_BOUNDS:
            low, high = _INT_BOUNDS[self.narrow]
            return sql.SQL("CASE WHEN {e} BETWEEN {lo} AND {hi} THEN {e} END").format(
                e=expr, lo=sql.Literal(low), hi=sql.Literal(high)
            )
        length = _char_length(self.narrow)
        if length is not None:  # char(n), varchar(n) take longer values whose excess is spaces
            return sql.SQL("CASE WHEN char_length(rtrim({e}, ' ')) <= {n} THEN {e} END").format(
                n=sql.Literal(length), e=expr
            )
        return expr

    def _safe_expr(self, data: sql.Composable) -> sql.Composable:
        if self.kind == USER_KIND:  # any type: the cast tried in a sub-block, NULL if it fails
            return sql.SQL("pg_temp.pgbyte_try_cast({}, NULL::{}, {})").format(
                self.text_value(data), self.pg_type, sql.Literal(self.user_type)
            )
        if self.kind not in TYPED_KINDS:
            return self.fast_expr(data)
        value = self.text_value(data)
        guard = _GUARDS.get(self.kind)
        fn = sql.Identifier("pg_temp", f"pgbyte_try_{self.kind}")
        if guard is None:
            return sql.SQL("{}({})").format(fn, value)
        return sql.SQL("CASE WHEN {v} ~ {g} THEN {v}::{t} ELSE {fn}({v}) END").format(
            v=value, g=sql.Literal(guard), t=self.pg_type, fn=fn
        )

    def failed_expr(self, data: sql.Composable) -> sql.Composable:
        """True when the value is present but cannot be cast (it will be NULL)."""
        return sql.SQL("({v} IS NOT NULL AND {s} IS NULL)").format(
            v=self.text_value(data), s=self.safe_expr(data)
        )

    def overflow_expr(self, data: sql.Composable) -> sql.Composable:
        """True when an integer value does not fit in bigint (the column must widen; a user's
        narrower integer column is not widened: such values are NULL there, as any too big)."""
        if self.narrow is not None:
            return sql.SQL("false")
        return sql.SQL("({v} ~ '^\\s*[-+]?[0-9]{{19,}}(\\.0*)?\\s*$' AND {s} IS NULL)").format(
            v=self.text_value(data), s=self.safe_expr(data)
        )


_INT_BOUNDS = {"smallint": (-(2**15), 2**15 - 1), "integer": (-(2**31), 2**31 - 1)}
_CHAR_LENGTH = re.compile(r"^character(?: varying)?\((\d+)\)$")


def _char_length(pg_type: str | None) -> int | None:
    """n of a varchar(n)/char(n) type as format_type() spells it, else None."""
    match = _CHAR_LENGTH.match(pg_type or "")
    return int(match.group(1)) if match else None


def narrow_type(pg_type: str) -> str | None:
    """An existing column's type when it is a narrower one of a kind (see Column.narrow)."""
    return pg_type if pg_type in _INT_BOUNDS or _char_length(pg_type) is not None else None


# Regexes whose match guarantees the plain cast succeeds (so no exception block is entered).
_GUARDS = {
    "bigint": r"^\s*[-+]?[0-9]{1,18}\s*$",
    "numeric": r"^\s*[-+]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][-+]?[0-9]{1,3})?\s*$",
    "boolean": r"^(true|false)$",
    "date": r"^(19|20)[0-9]{2}-(0[1-9]|1[0-2])-(0[1-9]|1[0-9]|2[0-8])$",
}

TRY_FUNCTIONS_SQL = "\n".join(
    f"CREATE OR REPLACE FUNCTION pg_temp.pgbyte_try_{kind}(v text) RETURNS {PG_TYPES[kind]} "
    "LANGUAGE plpgsql STABLE AS $$ BEGIN RETURN v::" + PG_TYPES[kind] + "; "
    "EXCEPTION WHEN others THEN RETURN NULL; END $$;"
    for kind in TYPED_KINDS
    if kind != "bigint"
) + (
    # An integer written as 12.0 is still an integer; 12.5 is not (no silent rounding).
    "\nCREATE OR REPLACE FUNCTION pg_temp.pgbyte_try_bigint(v text) RETURNS bigint "
    "LANGUAGE plpgsql STABLE AS $$ DECLARE n numeric; BEGIN n := v::numeric; "
    "IF n <> trunc(n) THEN RETURN NULL; END IF; RETURN n::bigint; "
    "EXCEPTION WHEN others THEN RETURN NULL; END $$;"
    # A column of the user's own type: `typ` spelled with its modifiers (numeric(10,2)).
    "\nCREATE OR REPLACE FUNCTION pg_temp.pgbyte_try_cast(v text, sample anyelement, typ text) "
    "RETURNS anyelement LANGUAGE plpgsql STABLE AS $$ BEGIN "
    "EXECUTE format('SELECT %L::%s', v, typ) INTO sample; RETURN sample; "
    "EXCEPTION WHEN others THEN RETURN NULL; END $$;"
)


def stored_key(raw_key: str) -> str:
    """A property name as the stored data has it: without NULs, which PostgreSQL cannot store
    (the writer strips them from the data's keys too)."""
    return raw_key.replace("\x00", "")


def columns_for(json_schema: Any, reserved: set[str]) -> list[Column]:
    """One Column per property, names made unique against each other and the meta columns.

    A property keeps its column whatever the order of the schema's properties (a later sync's
    schema may list them in another order, and the typed table is matched by column name): every
    property whose own name is free claims it first; then the ones that cannot have theirs
    ("" is no identifier, so its column is `_`; a meta or system column's namesake, like `xmin`)
    take that name if still free, else the first free `_1`, `_2`…, in property-name order. So
    `xmin` beside a property `xmin_1` is always `xmin_2`."""
    props = json_schema.get("properties") if isinstance(json_schema, dict) else None
    if not isinstance(props, dict):
        return []
    from destination_postgres.naming import fit

    kinds: dict[str, str] = {}
    for raw_key, schema in props.items():
        key = stored_key(raw_key)
        # "a\u0000b" beside "ab": one key of the stored data once NULs go, holding whichever
        # comes later in each record; one column for it (nul_merged_keys warns).
        kinds.setdefault(key, kind_of(schema))
    taken = set(reserved)
    names: dict[str, str] = {}
    for key in kinds:
        name = fit(key)
        if key and name not in taken:
            names[key] = name
            taken.add(name)
    for key in sorted(k for k in kinds if k not in names):
        base = key or "_"
        name, n = fit(base), 0
        while name in taken:  # e.g. a property called _airbyte_ab_id
            n += 1
            name = fit(base, suffix=f"_{n}")
        names[key] = name
        taken.add(name)
    return [Column(key=key, name=names[key], kind=kind) for key, kind in kinds.items()]


def nul_merged_keys(json_schema: Any) -> list[str]:
    """Properties that become one key once NULs are removed ("a\u0000b" and "ab"), as
    readable groups: PostgreSQL keeps one value of each group per record."""
    props = json_schema.get("properties") if isinstance(json_schema, dict) else None
    if not isinstance(props, dict):
        return []
    groups: dict[str, list[str]] = {}
    for raw_key in props:
        groups.setdefault(stored_key(raw_key), []).append(raw_key)
    return [" and ".join(map(repr, names)) for names in groups.values() if len(names) > 1]
