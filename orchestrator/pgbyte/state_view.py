"""`pgbyte state show`: a connection's saved state, one readable line per stream.

The saved state is opaque to the protocol (each source defines its stream_state), so this module
knows the shapes Airbyte's source-postgres and ours write — cursor_based, ctid (a resumable first
load), xmin, the full-refresh marker — and prints anything else as compact JSON rather than
guessing. Per stream it adds what the history knows: when the newest sync of it started and how
many records that sync committed, 0 included (the saved state itself carries no counts: stats
are stripped).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

from pgbyte.state import stream_label

MAX_VALUE = 80  # cursor values longer than this are cut (the --json output has them whole)


@dataclass(frozen=True)
class StreamView:
    """One stream's saved position, in words."""

    label: str
    kind: str  # cursor_based | ctid | xmin | full_refresh | other
    detail: str
    last_sync: str = ""
    cursor_field: tuple[str, ...] | None = None  # the cursor the saved position is of


def _cut(text: str, limit: int = MAX_VALUE) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _value(value: Any) -> str:
    """A cursor value as SQL would show it: strings quoted, numbers bare, NULL."""
    if value is None:
        return "NULL"
    if isinstance(value, str):
        return repr(_cut(value))
    return _cut(orjson.dumps(value).decode())


def _field(field: Any) -> str:
    if isinstance(field, list):
        return ".".join(str(f) for f in field) or "?"
    return str(field) if field else "?"


def describe_stream_state(stream_state: Any) -> tuple[str, str]:
    """(kind, detail) of one stream_state."""
    if not isinstance(stream_state, dict) or not stream_state:
        return "other", "empty state"
    if stream_state.get("__ab_no_cursor_state_message") or stream_state.get(
        "__ab_full_refresh_sync_complete"
    ):
        return "full_refresh", "full refresh (no cursor kept; every sync reads the whole table)"
    cursorish = "cursor" in stream_state or "cursor_field" in stream_state  # as the source reads
    kind = stream_state.get("state_type") or ("cursor_based" if cursorish else "")
    if kind in ("cursor_based", "ctid_based", "xmin_based") and "cursor_field" not in stream_state:
        v3 = _describe_v3(kind, stream_state)
        if v3 is not None:
            return v3
    reread = "the next sync reads the stream from the start"
    if kind == "cursor_based" and not stream_state.get("cursor_field"):
        return "other", f"no cursor position (the stream state of a CDC read?): {reread}"
    if kind == "ctid" and not stream_state.get("incremental_state"):
        return "other", f"a first-load position with no incremental position after it: {reread}"
    if kind == "cursor_based" and stream_state.get("cursor") is None:
        # The source's first loads note no maximum when no row has a cursor value yet.
        return kind, (
            f"cursor {_field(stream_state.get('cursor_field'))}: no value yet; "
            "the next sync reads the whole stream again"
        )
    if kind == "cursor_based":
        detail = (
            f"cursor {_field(stream_state.get('cursor_field'))} = "
            f"{_value(stream_state.get('cursor'))}"
        )
        count = _count(stream_state)
        if count > 0:
            detail += f" ({count} row{'s' if count != 1 else ''} at that value)"
        elif stream_state.get("cursor") is not None:  # uncounted: the source reads them again
            return kind, detail + " (its rows not counted); the next sync reads rows from it on"
        return kind, detail + "; the next sync reads rows after it"
    if kind == "ctid":
        inner = stream_state.get("incremental_state") or {}
        detail = (
            f"first load in progress: resumes at ctid {stream_state.get('ctid')} "
            f"(relation filenode {stream_state.get('relation_filenode')})"
        )
        inner_kind = inner.get("state_type") if isinstance(inner, dict) else None
        if inner_kind == "xmin":
            detail += f", then rows changed after xmin {inner.get('xmin_xid_value')}"
        elif isinstance(inner, dict) and inner and inner.get("cursor") is None:
            detail += f", then cursor {_field(inner.get('cursor_field'))} (no value noted yet)"
        elif isinstance(inner, dict) and inner:
            after = "after {}" if _count(inner) > 0 else "from {} on"
            detail += f", then cursor {_field(inner.get('cursor_field'))} " + after.format(
                _value(inner.get("cursor"))
            )
        return kind, detail
    if kind == "xmin":
        detail = f"xmin {stream_state.get('xmin_xid_value')}"
        extra = [
            f"{label} {stream_state[key]}"
            for key, label in (("xmin_raw_value", "raw"), ("num_wraparound", "wraparounds"))
            if key in stream_state
        ]
        if extra:
            detail += f" ({', '.join(extra)})"
        return kind, detail + "; the next sync reads rows changed after it"
    return "other", _cut(orjson.dumps(stream_state).decode(), 200)


def _is_int(value: Any) -> bool:
    """A JSON integer (bool is an int subclass in Python, not one in JSON)."""
    return isinstance(value, int) and not isinstance(value, bool)


def _count(stream_state: dict[str, Any]) -> int:
    """cursor_record_count as the source reads it (0: not counted)."""
    count = stream_state.get("cursor_record_count")
    return int(count) if _is_int(count) or isinstance(count, float) else 0


def _describe_v3(kind: str, stream_state: dict[str, Any]) -> tuple[str, str] | None:
    """A version 3 state (Airbyte source-postgres 4.x, `cursors` instead of cursor_field), as
    the source reads it (source_postgres.state._airbyte_v3); None when it is not one."""
    if "cursors" not in stream_state and kind == "cursor_based":
        return None
    origin = "Airbyte source-postgres 4.x state"
    from_start = "the next sync reads the stream from the start"
    raw = _cut(orjson.dumps(stream_state).decode(), 200)
    malformed = f"{origin}, malformed (the source refuses it): {raw}"
    cursors = stream_state.get("cursors")
    cursors = {} if cursors is None else cursors
    if not isinstance(cursors, dict) or len(cursors) > 1:
        return "other", malformed
    cursor = next(iter(cursors.items()), None)
    if cursor is not None and cursor[1] is None:
        return "other", f"{origin} holding no value for cursor {cursor[0]}: {from_start}"
    if cursor is not None and (
        # (a Fragment: a number past a double's digits, kept as its text: json_lines.py)
        not isinstance(cursor[1], str | int | float | orjson.Fragment)
        or isinstance(cursor[1], bool)
    ):
        return "other", malformed
    if kind == "cursor_based":
        if cursor is None:
            return "other", f"{origin} without a cursor value: {from_start}"
        return kind, (
            f"{origin}: cursor {cursor[0]} = {_value(cursor[1])}; the next sync reads rows "
            "from that value on"
        )
    xmin = stream_state.get("xmin")
    if kind == "xmin_based" or xmin is not None:
        if not (_is_int(xmin) and 0 <= xmin < 1 << 63):
            return (
                "other",
                f"{origin} holding no transaction id (xmin {_value(xmin)}): {from_start}",
            )
        if kind == "xmin_based":
            return "xmin", f"{origin}: xmin {xmin}; the next sync reads rows changed from it on"
        then = f"rows changed from xmin {xmin} on"
    elif cursor is not None:
        then = f"cursor {cursor[0]} from {_value(cursor[1])} on"
    else:
        return "other", f"{origin}, a full refresh position: {from_start}"
    ctid, node = stream_state.get("ctid"), stream_state.get("relation_filenode")
    block = ctid.strip("()").split(",")[0] if isinstance(ctid, str) else ""
    if not (block.isascii() and block.isdigit() and _is_int(node)):
        return "other", (
            f"{origin}: a first-load position the next sync cannot resume (ctid {ctid!r}, "
            f"relation filenode {node!r}): {from_start}"
        )
    return "ctid", (
        f"{origin}: first load in progress: resumes at block {block} (saved ctid {ctid}, "
        f"relation filenode {node}), then {then}"
    )


def _last_syncs(history: list[dict[str, Any]]) -> dict[tuple[str, str | None], str]:
    """Per source stream: when the newest sync that synced it started, and what it committed.

    The newest sync, whatever it committed: the line is read as "when did this stream last
    sync", and an incremental sync that found no change (0 records) did sync it — its state
    moved on. Showing an older sync that happened to commit records made a healthy connection
    look stale. A sync that did not succeed says so: its count may be partial."""
    last: dict[tuple[str, str | None], str] = {}
    for entry in history:  # oldest first: a later sync replaces an earlier one
        when = str(entry.get("started_at") or "?")[:19].replace("T", " ")
        status = entry.get("status")
        outcome = "" if status == "succeeded" else f" ({status or 'status unknown'})"
        for stream in entry.get("streams") or []:
            committed = stream.get("records_committed") or 0
            key = (stream.get("stream"), stream.get("namespace"))
            last[key] = f"last sync {when} UTC{outcome} committed {committed:,} record(s)"
    return last


def _cursor_field(stream_state: Any) -> tuple[str, ...] | None:
    """The cursor field of a cursor position (also inside a first load's ctid state)."""
    if not isinstance(stream_state, dict):
        return None
    cursors = stream_state.get("cursors") if "cursor_field" not in stream_state else None
    if isinstance(cursors, dict) and len(cursors) == 1:  # Airbyte 4.x (see _describe_v3)
        return (str(next(iter(cursors))),)
    inner = stream_state.get("incremental_state")
    field = (inner if isinstance(inner, dict) else stream_state).get("cursor_field")
    if isinstance(field, str):
        field = [field]
    if isinstance(field, list) and field and all(isinstance(f, str) for f in field):
        return tuple(field)
    return None


def state_views(states: list[dict[str, Any]], history: list[dict[str, Any]]) -> list[StreamView]:
    """One StreamView per stream found in the saved states (STREAM, GLOBAL, legacy)."""
    last = _last_syncs(history)
    views: list[StreamView] = []
    for state in states:
        kind = state.get("type") or "LEGACY"
        if kind == "STREAM":
            stream = state.get("stream") or {}
            entries = [(stream.get("stream_descriptor") or {}, stream.get("stream_state"))]
        elif kind == "GLOBAL":
            entries = [
                (s.get("stream_descriptor") or {}, s.get("stream_state"))
                for s in (state.get("global") or {}).get("stream_states") or []
                if isinstance(s, dict)
            ]
        else:
            data = state.get("data")
            streams = data.get("streams") if isinstance(data, dict) else None
            entries = [
                ({"name": s.get("stream_name"), "namespace": s.get("stream_namespace")}, s)
                for s in streams or []
                if isinstance(s, dict)
            ]
        for descriptor, stream_state in entries:
            name, namespace = descriptor.get("name"), descriptor.get("namespace")
            what, detail = describe_stream_state(stream_state)
            if kind == "LEGACY" and what == "other":
                what, detail = describe_stream_state({"state_type": "cursor_based",
                                                      **stream_state})  # fmt: skip
            label = stream_label(name, namespace)
            views.append(StreamView(label, what, detail, last.get((name, namespace), ""),
                                    _cursor_field(stream_state)))  # fmt: skip
    return views


def format_states(
    conn_name: str, path: str, states: list[dict[str, Any]], history: list[dict[str, Any]]
) -> str:
    """The text `pgbyte state show` prints."""
    if not states:
        return (
            f"connection {conn_name}: no saved state ({path})\n"
            "the next sync reads every stream from the start"
        )
    lines = [f"connection {conn_name}: saved state in {path}"]
    for state in states:
        kind = state.get("type") or "LEGACY"
        if kind == "GLOBAL":
            shared = (state.get("global") or {}).get("shared_state")
            lines.append(f"GLOBAL state (shared by its streams): {_cut(_compact(shared), 200)}")
        elif kind == "LEGACY":
            data = state.get("data")
            cdc = isinstance(data, dict) and data.get("cdc")
            lines.append("LEGACY state (Airbyte's older whole-connection format)"
                         + (" — CDC" if cdc else ""))  # fmt: skip
            if not (isinstance(data, dict) and isinstance(data.get("streams"), list)):
                lines.append(f"  {_cut(_compact(data), 200)}")
    views = state_views(states, history)
    width = max((len(v.label) for v in views), default=0)
    for view in views:
        lines.append(f"  {view.label.ljust(width)}  {view.kind:12}  {view.detail}")
        if view.last_sync:
            lines.append(f"  {' ' * width}  {'':12}  {view.last_sync}")
    count = len(views)
    lines.append(f"({count} stream{'s' if count != 1 else ''} with saved state)")
    return "\n".join(lines)


def _compact(value: Any) -> str:
    return orjson.dumps(value).decode() if value is not None else "none"
