"""Postgres column types → Airbyte JSON schemas, and the SQL rendering values as Airbyte expects.

One table drives both `discover` (the JSON schema of a column) and `read` (the SQL expression
Postgres evaluates so that the JSON text it builds holds the value Airbyte expects). Following
Airbyte's source-postgres (DESIGN.md §4), with deliberate differences where they lose less:

- numeric/float NaN and ±Infinity have no JSON number: the value becomes null and the record's
  `meta.changes` says so (Airbyte nulls them silently).
- timestamps keep BC years (`... BC`, as Airbyte) and `infinity`/`-infinity` pass through as those
  strings instead of becoming null or an invented far date: a Postgres destination stores them
  back exactly; typed destinations null them with their own `meta.changes` entry.
- bytea is base64 (the brief's choice; Airbyte's 3.x emits `\\x` hex) with contentEncoding set.
- arrays whose elements need converting are rebuilt element by element; such multi-dimensional
  arrays come out flattened.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from psycopg import sql

# Kinds: how a base type is rendered. `passthrough` kinds need no conversion before JSON.
INTEGER_TYPES = {"int2", "int4", "int8"}
PASSTHROUGH_STRING_TYPES = {"text", "varchar", "bpchar", "name", "char", "uuid", "date"}


@dataclass(frozen=True)
class PgType:
    """One pg_type row, enough to resolve domains and arrays."""

    oid: int
    name: str
    typtype: str  # b base, c composite, d domain, e enum, p pseudo, r range, m multirange
    category: str  # typcategory: A array, N numeric, S string, ...
    elem: int  # element type of an array type, else 0
    base: int  # base type of a domain, else 0
    typmod: int  # the domain's typmod, -1 otherwise


@dataclass(frozen=True)
class ColumnMapping:
    """How one column is discovered and read."""

    kind: str
    schema: dict[str, Any]
    elem_kind: str | None = None  # for kind == "array"
    extras: dict[str, Any] = field(default_factory=dict)

    @property
    def may_be_special(self) -> bool:
        """Whether a value can be NaN/±Infinity (nulled and reported in meta.changes)."""
        return self.kind in ("float", "numeric", "numeric_int") or (
            self.kind == "array" and self.elem_kind in ("float", "numeric", "numeric_int")
        )


_SCHEMAS: dict[str, dict[str, Any]] = {
    "integer": {"type": "integer"},
    "numeric_int": {"type": "integer"},
    "numeric": {"type": "number"},
    "float": {"type": "number"},
    "money": {"type": "number"},
    "boolean": {"type": "boolean"},
    "date": {"type": "string", "format": "date"},
    "timestamp": {
        "type": "string",
        "format": "date-time",
        "airbyte_type": "timestamp_without_timezone",
    },
    "timestamptz": {
        "type": "string",
        "format": "date-time",
        "airbyte_type": "timestamp_with_timezone",
    },
    "time": {"type": "string", "format": "time", "airbyte_type": "time_without_timezone"},
    "timetz": {"type": "string", "format": "time", "airbyte_type": "time_with_timezone"},
    "bytea": {"type": "string", "contentEncoding": "base64"},
    "json": {"type": "string"},
    "text": {"type": "string"},
    "string": {"type": "string"},
    "hstore": {"type": "string"},
    "inet": {"type": "string"},
    "composite": {"type": "string"},
}

_BY_NAME = {
    "int2": "integer", "int4": "integer", "int8": "integer", "oid": "oid",
    "float4": "float", "float8": "float", "money": "money", "bool": "boolean",
    "date": "date", "timestamp": "timestamp", "timestamptz": "timestamptz",
    "time": "time", "timetz": "timetz", "bytea": "bytea", "json": "json", "jsonb": "json",
    "text": "text", "varchar": "text", "bpchar": "text", "name": "text", "char": "text",
    "uuid": "text",
}  # fmt: skip


class TypeCatalog:
    """The database's pg_type rows by oid; resolves domains to their base types."""

    def __init__(self, types: list[PgType]) -> None:
        self.by_oid = {t.oid: t for t in types}

    def resolve(self, oid: int, typmod: int) -> tuple[PgType | None, int]:
        """Follow domains down to the base type; a domain's own typmod wins if set."""
        seen = 0
        pg_type = self.by_oid.get(oid)
        while pg_type is not None and pg_type.typtype == "d" and seen < 32:
            if typmod < 0:
                typmod = pg_type.typmod
            pg_type = self.by_oid.get(pg_type.base)
            seen += 1
        return pg_type, typmod

    def mapping(self, oid: int, typmod: int) -> ColumnMapping:
        pg_type, typmod = self.resolve(oid, typmod)
        if pg_type is None:
            return ColumnMapping("string", dict(_SCHEMAS["string"]))
        if pg_type.category == "A" and pg_type.elem:
            elem_type, elem_mod = self.resolve(pg_type.elem, typmod)
            elem_kind = _scalar_kind(elem_type, elem_mod)
            items = _nullable(_SCHEMAS[_schema_kind(elem_kind)])
            return ColumnMapping("array", {"type": "array", "items": items}, elem_kind=elem_kind)
        kind = _scalar_kind(pg_type, typmod)
        return ColumnMapping(kind, dict(_SCHEMAS[_schema_kind(kind)]))


def _schema_kind(kind: str) -> str:
    return "integer" if kind == "oid" else kind


def _scalar_kind(pg_type: PgType | None, typmod: int) -> str:
    if pg_type is None:
        return "string"
    if pg_type.typtype == "b" and pg_type.name == "numeric":  # not an enum named "numeric"
        # numeric(p,0) holds integers only (Airbyte maps it to integer); typmod encodes
        # ((precision << 16) | scale) + 4, and -1 means unconstrained.
        if typmod >= 4 and ((typmod - 4) & 0xFFFF) == 0:
            return "numeric_int"
        return "numeric"
    if pg_type.typtype in ("b",) and pg_type.name in _BY_NAME:
        return _BY_NAME[pg_type.name]
    if pg_type.typtype == "b" and pg_type.name == "hstore":
        return "hstore"
    if pg_type.typtype == "b" and pg_type.name == "inet":
        return "inet"
    if pg_type.typtype == "c":
        return "composite"  # its text output, as "string"; arrays of it need their own SQL
    # enums, ranges, composites, geometric, network, xml, bit, interval, hstore, ...: their
    # text output. Composites and extension types with a cast to json (hstore) would otherwise
    # be nested as JSON objects by to_json.
    return "string"


def _nullable(schema: dict[str, Any]) -> dict[str, Any]:
    out = dict(schema)
    out["type"] = ["null", schema["type"]]
    return out


def column_schema(mapping: ColumnMapping, *, nullable: bool, dims: int = 0) -> dict[str, Any]:
    """The JSON schema of a column; nullable columns get ["null", T]. An array column declared
    with several dimensions (int[][]) reads as nested arrays: each level's items may be arrays
    as well as elements (PostgreSQL does not enforce the declared count, and a view or a
    partition of such a column declares none: those keep element items)."""
    schema = _nullable(mapping.schema) if nullable else dict(mapping.schema)
    element = schema.get("items")
    if mapping.kind == "array" and isinstance(element, dict) and dims > 1:
        types = element.get("type", [])
        either = [*(types if isinstance(types, list) else [types]), "array"]
        level = element
        for _ in range(dims - 1):
            level = {**element, "type": either, "items": level}
        schema["items"] = level
    return schema


# --- read side: SQL expressions ------------------------------------------------------------

_TS_FORMAT = sql.Literal('YYYY-MM-DD"T"HH24:MI:SS.US')
_TIME_FORMAT = sql.Literal("HH24:MI:SS.US")


def _finite_check(ref: sql.Composable) -> sql.Composable:
    # x - x is 0 for every finite number and NaN for NaN/±Infinity (NaN = 0 is false in PG).
    return sql.SQL("({0} - {0} = 0)").format(ref)


def special_flag(ref: sql.Composable, mapping: ColumnMapping) -> sql.Composable:
    """A boolean SQL expression: true when the value is NaN/±Infinity (never null)."""
    if mapping.kind == "array":
        return sql.SQL(
            "EXISTS (SELECT 1 FROM unnest({0}) AS _pgbyte_u(_pgbyte_e) WHERE {1} IS FALSE)"
        ).format(ref, _finite_check(sql.Identifier("_pgbyte_e")))
    return sql.SQL("{0} IS FALSE").format(_finite_check(ref))


def scalar_expr(ref: sql.Composable, kind: str) -> sql.Composable:
    """SQL rendering one value of `kind` (before its JSON encoding)."""
    if kind in ("float", "numeric", "numeric_int"):
        return sql.SQL("CASE WHEN {0} THEN {1} END").format(_finite_check(ref), ref)
    if kind == "money":
        return sql.SQL("{0}::numeric").format(ref)
    if kind == "hstore":
        # As Airbyte: the JSON object text, via the extension's hstore → json cast.
        return sql.SQL("{0}::json::text").format(ref)
    if kind == "oid":
        return sql.SQL("{0}::int8").format(ref)
    if kind == "inet":
        # inet's own output ('10.0.0.1', '10.0.0.0/8'): ::text is text(inet), which always
        # adds the mask ('10.0.0.1/32'). abbrev(inet) prints exactly what inet_out does.
        return sql.SQL("abbrev({0}::inet)").format(ref)
    if kind in ("integer", "boolean", "text", "date"):
        return ref
    if kind == "timestamp":
        return _timestamp(sql.SQL("{0}::timestamp").format(ref), suffix="")
    if kind == "timestamptz":
        # Rendered in UTC with a Z, as Airbyte does.
        return _timestamp(sql.SQL("({0}::timestamptz AT TIME ZONE 'UTC')").format(ref), suffix="Z")
    if kind == "time":
        return _time_of_day(ref)
    if kind == "timetz":
        # The offset as +HH:MM, or +HH:MM:SS when it has seconds (as timetz's output).
        offset = sql.SQL("extract(timezone FROM {0}::timetz)").format(ref)
        return sql.SQL(
            "{0} || CASE WHEN {1} = 0 THEN 'Z' ELSE "
            "(CASE WHEN {1} < 0 THEN '-' ELSE '+' END) || "
            "to_char(make_interval(secs => abs({1})::float8), "
            "CASE WHEN mod(abs({1})::int, 60) <> 0 THEN 'HH24:MI:SS' ELSE 'HH24:MI' END) END"
        ).format(_time_of_day(sql.SQL("{0}::timetz").format(ref)), offset)
    if kind == "bytea":
        # encode() wraps base64 every 76 characters; the newlines are not part of the value.
        return sql.SQL("translate(encode({0}::bytea, 'base64'), E'\\n', '')").format(ref)
    return sql.SQL("{0}::text").format(ref)


def _time_of_day(ref: sql.Composable) -> sql.Composable:
    # HH:MM:SS, plus .ffffff only when there is a fraction: Airbyte's usual shape, and the one
    # the CDK's record validator accepts for format "time" (it checks %H:%M:%S).
    return sql.SQL("regexp_replace(to_char({0}::time, {1}), '\\.000000$', '')").format(
        ref, _TIME_FORMAT
    )


def _timestamp(ref: sql.Composable, *, suffix: str) -> sql.Composable:
    # to_char gives NULL for ±infinity: fall back to the text 'infinity'/'-infinity'.
    return sql.SQL(
        "COALESCE(to_char({0}, {1}) || {2} || "
        "CASE WHEN {0} < '0001-01-01'::timestamp THEN ' BC' ELSE '' END, {0}::text)"
    ).format(ref, _TS_FORMAT, sql.Literal(suffix))


ARRAY_PASSTHROUGH = {"integer", "boolean", "text", "date"}


def value_expr(ref: sql.Composable, mapping: ColumnMapping) -> sql.Composable:
    """SQL rendering a column's value (before its JSON encoding)."""
    if mapping.kind != "array":
        return scalar_expr(ref, mapping.kind)
    elem_kind = mapping.elem_kind or "string"
    if elem_kind in ARRAY_PASSTHROUGH:
        return ref
    if elem_kind == "composite":
        # unnest() would expand each composite element into its fields; the array cast
        # renders each element's text output instead (and keeps NULLs and dimensions).
        return sql.SQL("{0}::text[]").format(ref)
    elem = scalar_expr(sql.Identifier("_pgbyte_e"), elem_kind)
    flat = sql.SQL(
        "ARRAY(SELECT {1} FROM unnest({0}) WITH ORDINALITY "
        "AS _pgbyte_u(_pgbyte_e, _pgbyte_i) ORDER BY _pgbyte_i)"
    ).format(ref, elem)
    nested = [
        sql.SQL("WHEN array_ndims({}) = {} THEN {} ").format(
            ref, sql.Literal(n), _nested(ref, elem_kind, n)
        )
        for n in range(2, NESTED_ARRAY_DIMS + 1)
    ]
    return sql.SQL("CASE WHEN {0} IS NULL THEN NULL {1}ELSE {2} END").format(
        ref, sql.SQL("").join(nested), flat
    )


# Arrays of converted elements keep up to this many dimensions; deeper ones come out flat.
NESTED_ARRAY_DIMS = 3


def _nested(ref: sql.Composable, elem_kind: str, ndims: int) -> sql.Composable:
    """An `ndims`-dimensional array converted element by element, keeping its shape, in one
    pass over its elements: unnest them (in storage order, numbered from 0), then group runs of
    the last dimension's length into arrays, and those into arrays of the next length up, with
    array_agg (which stacks equal-length arrays into one more dimension). Subscripting each
    element instead would re-read the whole array per element."""
    elem = scalar_expr(sql.Identifier("_pgbyte_e"), elem_kind)
    query: sql.Composable = sql.SQL(
        "SELECT _pgbyte_k - 1 AS _pgbyte_g, {} AS _pgbyte_a "
        "FROM unnest({}) WITH ORDINALITY AS _pgbyte_x(_pgbyte_e, _pgbyte_k)"
    ).format(elem, ref)
    for dim in range(ndims, 1, -1):
        query = sql.SQL(
            "SELECT s._pgbyte_g / array_length({}, {}) AS _pgbyte_g, "
            "array_agg(s._pgbyte_a ORDER BY s._pgbyte_g) AS _pgbyte_a FROM ({}) s GROUP BY 1"
        ).format(ref, sql.Literal(dim), query)
    return sql.SQL("(SELECT array_agg(s._pgbyte_a ORDER BY s._pgbyte_g) FROM ({}) s)").format(query)


def is_passthrough(mapping: ColumnMapping) -> bool:
    """Whether a finite value of this column needs no conversion before its JSON encoding."""
    if mapping.kind == "array":
        return (mapping.elem_kind or "string") in ARRAY_PASSTHROUGH | SPECIAL_KINDS
    return mapping.kind in ARRAY_PASSTHROUGH | SPECIAL_KINDS


SPECIAL_KINDS = {"float", "numeric", "numeric_int"}


def fast_value_expr(ref: sql.Composable, mapping: ColumnMapping) -> sql.Composable:
    """SQL rendering a value known to be finite (no NaN/±Infinity nulling needed)."""
    return ref if is_passthrough(mapping) else value_expr(ref, mapping)


def finite_condition(refs: list[tuple[sql.Composable, ColumnMapping]]) -> sql.Composable:
    """True when no value among these columns is NaN/±Infinity (never null).

    Floats share one test: c * 0 is 0 for finite c, NaN for NaN/±Infinity, and never
    overflows (a plain sum could raise "value out of range").
    """
    parts: list[sql.Composable] = []
    floats = [ref for ref, m in refs if m.kind == "float"]
    if floats:
        parts.append(
            sql.SQL("({} = 0)").format(
                sql.SQL(" + ").join(sql.SQL("coalesce({} * 0, 0)").format(r) for r in floats)
            )
        )
    for ref, mapping in refs:
        if mapping.kind != "float":
            parts.append(sql.SQL("NOT ({})").format(special_flag(ref, mapping)))
    return sql.SQL(" AND ").join(parts)


# --- JSON text of a value (the read path concatenates these) -------------------------------

# Kinds whose text output is a valid JSON number or literal as is (finite values).
_JSON_AS_IS = {"integer", "oid", "numeric", "numeric_int", "float", "boolean"}
# Kinds rendered as strings made of characters JSON never escapes: wrap in quotes.
_JSON_SAFE_STRING = {"date", "timestamp", "timestamptz", "time", "timetz", "bytea", "inet"}


def _json_of(rendered: sql.Composable, kind: str) -> sql.Composable:
    if kind in _JSON_AS_IS:
        # bool::text is 'true'/'false'; numeric and float output never uses NaN here.
        return sql.SQL("{}::text").format(rendered)
    if kind == "money":
        return sql.SQL("{}::text").format(rendered)  # rendered is already ::numeric
    if kind in _JSON_SAFE_STRING:
        return sql.SQL("'\"' || {} || '\"'").format(rendered)
    # text-like kinds: to_json escapes quotes, backslashes and control characters (and keeps
    # char(n) padding, which a ::text cast would strip).
    return sql.SQL("to_json({})::text").format(rendered)


def _null_to_json(expr: sql.Composable) -> sql.Composable:
    return sql.SQL("coalesce({}, 'null')").format(expr)


def json_expr(ref: sql.Composable, mapping: ColumnMapping) -> sql.Composable:
    """JSON text of a column's value (NaN/±Infinity nulled), 'null' for NULL."""
    if mapping.kind == "array":
        return _null_to_json(sql.SQL("to_json({})::text").format(value_expr(ref, mapping)))
    return _null_to_json(_json_of(scalar_expr(ref, mapping.kind), mapping.kind))


def fast_json_expr(ref: sql.Composable, mapping: ColumnMapping) -> sql.Composable:
    """JSON text of a value known to be finite (no NaN/±Infinity nulling)."""
    if mapping.kind == "array":
        return _null_to_json(sql.SQL("to_json({})::text").format(fast_value_expr(ref, mapping)))
    if mapping.kind in SPECIAL_KINDS:
        return _null_to_json(sql.SQL("{}::text").format(ref))
    return json_expr(ref, mapping)
