"""The configured catalog → one StreamTarget per stream: where its tables go and their columns."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pgbyte_common.catalog_shape import catalog_shape_problem
from pgbyte_common.errors import ConfigError

from destination_postgres import naming
from destination_postgres.config import DestinationConfig
from destination_postgres.typemap import (
    MAX_TUPLE_BYTES,
    Column,
    columns_for,
    nul_merged_keys,
    worst_row_bytes,
)

META_COLUMNS = ("_airbyte_ab_id", "_airbyte_emitted_at", "_airbyte_normalized_at")
# Every PostgreSQL table has these system columns: a property of that name (GIS extents have
# xmin/xmax) gets a suffixed column, as a meta column's namesake does.
SYSTEM_COLUMNS = ("tableoid", "xmin", "cmin", "xmax", "cmax", "ctid")
# The columns append_dedup's typed stage adds: each row's place in its batch (loader.py).
STAGE_POSITION = ("_airbyte_stage_pos", "_airbyte_stage_tid")
MODES = ("overwrite", "append", "append_dedup")
MAX_COLUMNS = 1600  # PostgreSQL's MaxHeapAttributeNumber


@dataclass
class StreamTarget:
    """One stream's destination: the plan (names, columns) and the counters of this write."""

    name: str
    namespace: str | None
    mode: str
    schema: str
    raw_schema: str
    raw_table: str
    norm_table: str | None  # None when disable_type_dedupe
    hashid: str
    columns: list[Column]
    primary_key: list[list[str]] = field(default_factory=list)
    # append_dedup (dedup.py): the typed columns of the key and of the cursor (None: order by
    # _airbyte_emitted_at only; cursor_note says why a configured cursor is not used).
    key_names: list[str] = field(default_factory=list)
    cursor_name: str | None = None
    cursor_kind: str | None = None  # the cursor's kind as the stream declares it
    cursor_note: str | None = None
    soft_delete: bool = False
    dedup_plan: Any = None  # dedup.DedupPlan, set by dedup.prepare at the start of write
    skipped_keys: int = 0  # records with a NULL (or uncastable) key: raw only
    hard_deletes: int = 0  # dedup winners with _ab_cdc_deleted_at set: their keys deleted
    typed_note: str | None = None  # why a stream has no typed table (logged when decided)
    # Columns of an existing typed table this write added or retyped (ddl.prepare): typed again
    # from the rows' raw records (refill.py).
    refill: list[Column] = field(default_factory=list)
    merged_note: str | None = None  # properties NUL removal makes one key (logged at the start)
    # Runtime state of the current write.
    fast_rows: list[bytes] = field(default_factory=list)  # binary COPY rows: head, data (framing)
    fast_lines: list[bytes] = field(default_factory=list)  # their input lines (for a redo)
    fast_linenos: list[int] = field(default_factory=list)
    slow_lines: list[bytes] = field(default_factory=list)  # whole messages
    slow_linenos: list[int] = field(default_factory=list)
    nbytes: int = 0
    row_bytes: int = 0  # the largest average input line of a batch so far (loader)
    since_state: int = 0
    committed: int = 0
    stated: int = 0  # records before its latest STATE received (its own, or a GLOBAL one)
    echoed: int = 0  # records before its latest STATE echoed (commits._echo_ready)
    received: int = 0
    nul_stripped: int = 0
    surrogates_replaced: int = 0
    uncastable: dict[str, int] = field(default_factory=dict)
    source_changes: dict[str, int] = field(default_factory=dict)  # meta.changes, by field
    status: str | None = None  # last STREAM_STATUS seen: STARTED/RUNNING/COMPLETE/INCOMPLETE
    state_named: bool = False  # a STREAM STATE of its own arrived
    keys_checked: bool = False  # the first batch's first record was compared with the schema
    swap_logged: bool = False  # overwrite: the swap's INFO line was written
    swapped: bool = False
    rebuild_typed: bool = False  # ddl.prepare made the typed table beside a raw one with rows
    behind_warn: str | None = None  # raw only beside an existing typed table (ddl._behind)
    typed_created: bool = False  # ddl.prepare made the typed table (append, append_dedup)
    # rawonly.py: PostgreSQL refused the typed rows as too big during this write. The typed
    # table given up (norm_table is None from then on), and the WARN the main thread logs.
    refused_table: str | None = None
    refused_warn: str | None = None
    cascaded: list[str] = field(default_factory=list)  # what drop_cascade dropped at the swap

    @property
    def label(self) -> str:
        return f"{self.namespace}.{self.name}" if self.namespace else self.name

    @property
    def overwrite(self) -> bool:
        return self.mode == "overwrite"

    @property
    def dedup(self) -> bool:
        """One typed row per primary key (dedup.py merges each batch)."""
        return self.mode == "append_dedup" and self.norm_table is not None

    @property
    def load_raw(self) -> tuple[str, str]:
        """(schema, table) the raw rows go to during this write."""
        table = naming.temporary(self.raw_table) if self.overwrite else self.raw_table
        return self.raw_schema, table

    @property
    def load_norm(self) -> tuple[str, str] | None:
        if self.norm_table is None:
            return None
        table = naming.temporary(self.norm_table) if self.overwrite else self.norm_table
        return self.schema, table


def _merged_note(json_schema: Any) -> str | None:
    groups = nul_merged_keys(json_schema)
    if not groups:
        return None
    return (
        f"properties {'; '.join(groups)} are one key once NUL characters are removed "
        "(PostgreSQL cannot store them): the raw table and the typed column keep the value "
        "of whichever comes later in each record"
    )


def parse_catalog(catalog: Any, config: DestinationConfig) -> list[StreamTarget]:
    problem = catalog_shape_problem(catalog, "The configured catalog")
    if problem:
        raise ConfigError(problem)
    targets: list[StreamTarget] = []
    seen: dict[tuple[str, str], tuple[str, str]] = {}  # (schema, relation) → (stream, role)
    problems: list[str] = []
    for index, entry in enumerate(catalog["streams"]):
        stream = entry.get("stream") if isinstance(entry, dict) else None
        if not isinstance(stream, dict) or not isinstance(stream.get("name"), str):
            raise ConfigError(f"Catalog stream #{index} has no stream.name.")
        name = stream["name"]
        if not name or "\x00" in name:
            raise ConfigError(f"Catalog stream #{index} has an empty or invalid name {name!r}.")
        namespace = stream.get("namespace") or None
        mode = entry.get("destination_sync_mode") or "append"
        if mode not in MODES:
            raise ConfigError(
                f"Stream {name}: destination_sync_mode {mode!r} is not supported; "
                f"use one of {', '.join(MODES)}."
            )
        schema = naming.schema(namespace) if namespace else config.schema
        raw_schema = config.raw_data_schema or schema
        reserved = {*META_COLUMNS, naming.hashid_column(name)}
        if mode == "append_dedup":
            reserved.update(STAGE_POSITION)
        columns = columns_for(stream.get("json_schema"), reserved | set(SYSTEM_COLUMNS))
        typed = not config.disable_type_dedupe
        typed_note = None
        if typed and len(columns) + len(reserved) > MAX_COLUMNS:
            # PostgreSQL's hard limit: the typed table cannot exist; the records still can.
            typed = False
            stage = (
                f", and {len(STAGE_POSITION)} more in its dedup stage"
                if mode == "append_dedup"
                else ""
            )
            typed_note = (
                f"{len(columns)} properties plus the {len(META_COLUMNS) + 1} _airbyte_ columns"
                f"{stage} exceed PostgreSQL's limit of {MAX_COLUMNS} columns per table, so its "
                "records are kept in the raw table only (no typed table)"
            )
        elif (
            typed
            and (width := worst_row_bytes(columns, 16 if mode == "append_dedup" else 0))
            > MAX_TUPLE_BYTES
        ):
            # Fixed-width values (bigint, timestamps...) cannot be TOASTed: a full row of this
            # many would be refused ("row is too big") and fail the whole write.
            typed = False
            typed_note = (
                f"a typed row of its {len(columns)} properties could need "
                f"{width} bytes, more than the {MAX_TUPLE_BYTES} a "
                "PostgreSQL row can hold, so its records are kept in the raw table only "
                "(no typed table)"
            )
        target = StreamTarget(
            name=name,
            namespace=namespace,
            mode=mode,
            schema=schema,
            raw_schema=raw_schema,
            raw_table=naming.raw_table(name, schema if config.raw_data_schema else None),
            norm_table=naming.normalized_table(name) if typed else None,
            hashid=naming.hashid_column(name),
            columns=columns,
            typed_note=typed_note,
            merged_note=_merged_note(stream.get("json_schema")),
            primary_key=entry.get("primary_key") or stream.get("source_defined_primary_key") or [],
            soft_delete=config.soft_delete,
        )
        if target.dedup:  # raw tables only (disable_type_dedupe): nothing to key, no key needed
            problem = _resolve_dedup(target, entry, stream)
            if problem:
                problems.append(f"{target.label}: {problem}")
        for sch, name, role in _relations(target):
            owner = seen.get((sch, name))
            if owner is not None:
                shared = config.raw_data_schema and name == target.raw_table
                fix = ("the raw tables of every namespace share raw_data_schema "
                       f"{config.raw_data_schema!r}: give the streams a prefix, or leave "
                       "raw_data_schema unset" if shared
                       else "give them different namespaces or a prefix")  # fmt: skip
                what = (f"table {sch}.{name}" if (owner[1], role) == ("table", "table")
                        else f"the name {sch}.{name} (the {owner[1]} of {owner[0]!r}, the "
                             f"{role} of {target.label!r})")  # fmt: skip
                raise ConfigError(
                    f"Streams {owner[0]!r} and {target.label!r} would both write {what}: {fix}."
                )
            seen[(sch, name)] = (target.label, role)
        targets.append(target)
    if problems:
        raise ConfigError(
            "append_dedup needs a primary key of top-level properties (primary_key in the "
            "configured catalog, or the stream's source_defined_primary_key); nothing was "
            "written. "
            + " ".join(f"Stream {p}" for p in problems)
            + " Set a primary key for it, or use destination_sync_mode append."
        )
    return targets


def _relations(target: StreamTarget) -> list[tuple[str, str, str]]:
    """(schema, relation name, role) of every relation the stream's write creates: its tables,
    an overwrite's temporaries, an append_dedup's key index (indexes share tables' names)."""
    tables = [(target.raw_schema, target.raw_table)]
    if target.norm_table is not None:
        tables.append((target.schema, target.norm_table))
    relations = [(schema, table, "table") for schema, table in tables]
    if target.overwrite:
        relations += [(schema, naming.temporary(t), "overwrite temporary") for schema, t in tables]
    if target.dedup and target.norm_table is not None:
        relations.append((target.schema, naming.key_index(target.norm_table), "key index"))
    return relations


def _resolve_dedup(target: StreamTarget, entry: dict[str, Any], stream: dict[str, Any]) -> str:
    """Map the primary key and cursor of an append_dedup stream to typed columns; returns what
    is wrong with the key ("" when usable). A cursor that maps to no column is not an error:
    the latest record by _airbyte_emitted_at wins (cursor_note tells the user)."""
    by_key = {c.key: c.name for c in target.columns}
    pk = target.primary_key
    if not isinstance(pk, list) or not pk:
        return "no primary key is set."
    names: list[str] = []
    for path in pk:
        if isinstance(path, str):  # tolerate ["id"] for [["id"]]
            path = [path]
        if not isinstance(path, list) or not path or not all(isinstance(p, str) for p in path):
            return f"primary key path {path!r} is not a list of property names."
        if len(path) > 1:
            return (f"primary key path {path!r} is nested; only top-level properties can be "
                    "key columns.")  # fmt: skip
        if path[0] not in by_key:
            return f"primary key field {path[0]!r} is not a property of the stream's JSON schema."
        if by_key[path[0]] not in names:
            names.append(by_key[path[0]])
    target.key_names = names
    cursor = entry.get("cursor_field") or (
        stream.get("default_cursor_field") if stream.get("source_defined_cursor") else None
    )
    if isinstance(cursor, str):
        cursor = [cursor]
    if cursor:
        if isinstance(cursor, list) and len(cursor) == 1 and cursor[0] in by_key:
            target.cursor_name = by_key[cursor[0]]
            target.cursor_kind = next(c.kind for c in target.columns if c.key == cursor[0])
        else:
            target.cursor_note = (f"cursor field {cursor!r} is not a top-level property of the "
                                  "stream's JSON schema")  # fmt: skip
    return ""
