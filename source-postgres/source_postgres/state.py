"""Stream states: the full-refresh marker, and the cursor state of incremental streams.

Xmin streams keep Airbyte's XminStatus ({"version": 2, "state_type": "xmin",
"num_wraparound": .., "xmin_xid_value": .., "xmin_raw_value": ..}); a ctid state's
incremental_state holds either kind.

Cursor state has the shape of Airbyte source-postgres's cursor-based state, so a state saved by
Airbyte's connector resumes here and the other way round:

    {"version": 2, "state_type": "cursor_based", "stream_name": "t", "stream_namespace": "public",
     "cursor_field": ["updated_at"], "cursor": "<value as text>", "cursor_record_count": 3,
     "cursor_type": "timestamp without time zone"}

`cursor_type`, pgbyte's own (Airbyte's source does not write it), is the type the
cursor was compared as: a column ALTERed to another type since (integer to text: '1000' sorts
below '999') makes the next read start again from the whole stream, with a WARN.
`pgbyte_relation_oid`, pgbyte's own too, is the oid of the table read: a table dropped and
created again under its name since (a new oid) gets a WARN that its rows at or below the saved
cursor are not read (it is not re-read: a table rebuilt with the same rows would come twice).

Airbyte's newer source-postgres (4.x, on the Bulk CDK) saves version 3 states instead: a
cursor as `{"state_type": "cursor_based", "cursors": {"updated_at": <JSON value>}}`, a first
load as `"ctid_based"` with `ctid` (the last row read), `relation_filenode` and the cursor or
xmin noted at its start, an xmin position as `"xmin_based"` with `xmin` (a 64-bit
txid_current()). They resume here: a cursor re-reads the rows at its value (the state does not
count them, and that source's checkpoints may split them), a first load restarts at its block
and then re-reads the rows at the maximum it noted.
A missing position (an xmin of null; a ctid_based state of a full refresh) is `Unusable`: the
stream is read again from the start with a LOG WARN.

`parse_input_state` accepts what `read --state` may hold: a list of per-stream STATE messages
(the protocol's STREAM state), a GLOBAL state's stream_states, or Airbyte's legacy dict
({"cdc": false, "streams": [...]}, bare or under {"type": "LEGACY", "data": ...}). Anything else
is a ConfigError: silently ignoring a state would re-read or skip data without a word. The
states of Airbyte's CDC reads (GLOBAL, or legacy with "cdc": true) keep no position in their
streams' entries (no cursor; a snapshot's ctid with no incremental_state): `Unusable`, so each
stream is read again with a WARN.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from pgbyte_common.errors import ConfigError

NO_CURSOR_STATE_KEY = "__ab_no_cursor_state_message"
CURSOR_STATE_TYPE = "cursor_based"
CTID_STATE_TYPE = "ctid"
XMIN_STATE_TYPE = "xmin"
# Airbyte source-postgres 4.x (version 3 states): see the module docstring.
V3_CTID_STATE_TYPE = "ctid_based"
V3_XMIN_STATE_TYPE = "xmin_based"
XID_MASK = (1 << 32) - 1

Descriptor = tuple[str, str | None]


def full_refresh_state() -> dict[str, Any]:
    return {NO_CURSOR_STATE_KEY: True}


@dataclass(frozen=True)
class CursorState:
    """Where an incremental stream stopped: every row with cursor <= `cursor` was emitted."""

    cursor_field: tuple[str, ...]
    cursor: str | None
    cursor_record_count: int  # rows at `cursor` read; 0: not counted (they are read again)
    cursor_type: str | None = None  # the type the cursor was compared as (None: not saved)
    relation: int | None = None  # the oid of the table it was read from (None: not saved)
    # Saved by Airbyte's 4.x source, which writes some types' values its own way (bytea as
    # base64).
    airbyte_v3: bool = False


@dataclass(frozen=True)
class XminState:
    """Where an Xmin stream stopped: every row version written by a transaction older than
    `raw` (a 64-bit xid: epoch in the high 32 bits, as txid_current() counts) was read."""

    raw: int

    @property
    def num_wraparound(self) -> int:
        return self.raw >> 32

    @property
    def xid(self) -> int:
        return self.raw & XID_MASK


@dataclass(frozen=True)
class CtidState:
    """Where a ctid-chunked first load stopped: blocks before `block` were read; then by cursor
    (Standard) or by xmin (Xmin), from the position in `incremental`."""

    block: int
    filenode: int
    incremental: CursorState | XminState
    # A cursor load's snapshot xmin (LOAD_XMIN_KEY): rows written since then into the blocks
    # before `block` are read again when the load resumes (incremental.py). None: not noted
    # (Airbyte's states, pgbyte's before it noted one, Xmin loads, which read changes anyway).
    load_xmin: int | None = None


@dataclass(frozen=True)
class Unusable:
    """A saved state of a known kind that cannot be resumed here: the stream is read again from
    the start, with `reason` in a LOG WARN."""

    reason: str


def xmin_state(raw: int) -> dict[str, Any]:
    """The stream_state of an Xmin stream, in Airbyte source-postgres's XminStatus shape."""
    return {
        "version": 2,
        "state_type": XMIN_STATE_TYPE,
        "num_wraparound": raw >> 32,
        "xmin_xid_value": raw & XID_MASK,
        "xmin_raw_value": raw,
    }


# pgbyte's own key in a ctid state (Airbyte's source reads the others and ignores it).
LOAD_XMIN_KEY = "pgbyte_load_xmin"
# pgbyte's own key in a cursor state: the oid of the table read (module docstring).
RELATION_KEY = "pgbyte_relation_oid"


def ctid_state(
    block: int, filenode: int, incremental: dict[str, Any], load_xmin: int | None = None
) -> dict[str, Any]:
    """The stream_state during a first load in ctid chunks (Airbyte's ctid state shape)."""
    state = {
        "version": 2,
        "state_type": CTID_STATE_TYPE,
        "ctid": f"({block},0)",
        "relation_filenode": filenode,
        "incremental_state": incremental,
    }
    if load_xmin is not None:
        state[LOAD_XMIN_KEY] = load_xmin
    return state


def cursor_state(
    name: str,
    namespace: str | None,
    cursor_field: tuple[str, ...],
    cursor: str | None,
    count: int,
    cursor_type: str | None = None,
    relation: int | None = None,
) -> dict[str, Any]:
    """The stream_state of an incremental stream, in Airbyte source-postgres's shape (and
    `cursor_type` and RELATION_KEY, see the module docstring)."""
    state: dict[str, Any] = {
        "version": 2,
        "state_type": CURSOR_STATE_TYPE,
        "stream_name": name,
        "stream_namespace": namespace,
        "cursor_field": list(cursor_field),
        "cursor": cursor,
        "cursor_record_count": count,
    }
    if cursor_type is not None:
        state["cursor_type"] = cursor_type
    if relation is not None:
        state[RELATION_KEY] = relation
    return state


def parse_input_state(raw: Any) -> dict[Descriptor, dict[str, Any]]:
    """The saved stream_state per stream descriptor (empty for no state)."""
    if raw is None or raw == [] or raw == {}:
        return {}
    if isinstance(raw, dict):
        if raw.get("type") == "LEGACY" or "streams" in raw:
            return _legacy(raw.get("data", raw) if raw.get("type") == "LEGACY" else raw)
        raw = [raw]  # a single state message
    if not isinstance(raw, list):
        raise _unknown("it is neither a list of state messages nor an object")
    states: dict[Descriptor, dict[str, Any]] = {}
    for message in raw:
        if not isinstance(message, dict):
            raise _unknown("an entry of the list is not an object")
        if message.get("type") == "STATE" and isinstance(message.get("state"), dict):
            message = message["state"]  # a whole protocol message, as printed by read
        kind = message.get("type", "LEGACY" if "data" in message else None)
        if kind == "STREAM":
            entries = [message.get("stream")]
        elif kind == "GLOBAL":
            entries = (message.get("global") or {}).get("stream_states") or []
        elif kind == "LEGACY":
            states.update(_legacy(message.get("data")))
            continue
        else:
            raise _unknown(f"state type {kind!r} (expected STREAM, GLOBAL or LEGACY)")
        for entry in entries:
            descriptor = entry.get("stream_descriptor") if isinstance(entry, dict) else None
            if not isinstance(descriptor, dict) or not isinstance(descriptor.get("name"), str):
                raise _unknown("a stream state lacks stream_descriptor.name")
            stream_state = entry.get("stream_state") or {}
            if not isinstance(stream_state, dict):
                raise _unknown(f"the stream_state of {descriptor['name']!r} is not an object")
            states[(descriptor["name"], descriptor.get("namespace"))] = stream_state
    return states


def _legacy(data: Any) -> dict[Descriptor, dict[str, Any]]:
    """Airbyte source-postgres's legacy state: {"cdc": false, "streams": [cursor states]}.
    With "cdc": true its streams hold no cursor (the position is the CDC part, which pgbyte does
    not read): each is then read again with a WARN, as the stream states of a CDC GLOBAL."""
    if data == {} or data is None:  # an empty legacy state (as `{}` alone): nothing saved
        return {}
    if not isinstance(data, dict) or not isinstance(data.get("streams"), list):
        raise _unknown('a legacy state must be an object with a "streams" list')
    states: dict[Descriptor, dict[str, Any]] = {}
    for entry in data["streams"]:
        if not isinstance(entry, dict) or not isinstance(entry.get("stream_name"), str):
            raise _unknown("a legacy stream state lacks stream_name")
        states[(entry["stream_name"], entry.get("stream_namespace"))] = {
            "state_type": CURSOR_STATE_TYPE, **entry,
        }  # fmt: skip
    return states


def stream_cursor_state(
    label: str, stream_state: dict[str, Any] | None
) -> CursorState | CtidState | XminState | Unusable | None:
    """The position of a saved stream_state; None when the stream has none yet."""
    if not stream_state or stream_state.get(NO_CURSOR_STATE_KEY):
        return None  # never synced, or synced as full refresh until now
    # No state_type: Airbyte's DbStreamState (legacy entries; the stream_states of its CDC
    # GLOBAL state, with an empty cursor_field) is a cursor state.
    cursorish = "cursor" in stream_state or (
        "cursor_field" in stream_state and "xmin_xid_value" not in stream_state
    )
    kind = stream_state.get("state_type", CURSOR_STATE_TYPE if cursorish else None)
    if kind in (V3_CTID_STATE_TYPE, V3_XMIN_STATE_TYPE) or (
        kind == CURSOR_STATE_TYPE and "cursors" in stream_state
        and "cursor_field" not in stream_state
    ):  # fmt: skip
        return _airbyte_v3(label, kind, stream_state)
    if kind == CTID_STATE_TYPE:
        block = _block_of(str(stream_state.get("ctid", "")))
        filenode = stream_state.get("relation_filenode")
        if block is None or not isinstance(filenode, int):
            raise ConfigError(
                f"Stream {label}: the saved ctid state is malformed ({stream_state})."
            )
        if not stream_state.get("incremental_state"):  # Airbyte's CDC snapshot keeps none
            return Unusable("the saved state is a first-load position with no incremental "
                            "position after it (a CDC snapshot's?)")  # fmt: skip
        inner = stream_cursor_state(label, stream_state.get("incremental_state"))
        if inner is None:
            raise ConfigError(
                f"Stream {label}: the saved ctid state is malformed ({stream_state})."
            )
        if isinstance(inner, CtidState):
            raise ConfigError(f"Stream {label}: the saved ctid state nests another ctid state.")
        if isinstance(inner, Unusable):
            return inner
        load_xmin = stream_state.get(LOAD_XMIN_KEY)
        load_xmin = load_xmin if _is_int(load_xmin) and load_xmin >= 0 else None
        return CtidState(block=block, filenode=filenode, incremental=inner, load_xmin=load_xmin)
    if kind is None and "xmin_xid_value" in stream_state:
        kind = XMIN_STATE_TYPE
    if kind == XMIN_STATE_TYPE:
        return _xmin(label, stream_state)
    if kind != CURSOR_STATE_TYPE:
        raise ConfigError(
            f"Stream {label}: the saved state has state_type {kind!r}; pgbyte resumes "
            f"{CURSOR_STATE_TYPE!r}, {XMIN_STATE_TYPE!r} and {CTID_STATE_TYPE!r} states. "
            "Reset this stream's state to re-read it."
        )
    field = stream_state.get("cursor_field") or []
    if isinstance(field, str):
        field = [field]
    cursor = stream_state.get("cursor")
    count = stream_state.get("cursor_record_count") or 0
    # (Decimal: a JSON number of more digits than a float holds, read exactly: argv.py)
    if not isinstance(field, list) or not (
        cursor is None or isinstance(cursor, str | int | float | Decimal)
    ):
        raise ConfigError(f"Stream {label}: the saved cursor state is malformed ({stream_state}).")
    if not field and cursor is None:  # the stream states of Airbyte's CDC states hold none
        return Unusable("the saved state holds no cursor position (the stream state of "
                        "Airbyte's CDC GLOBAL or legacy state?)")  # fmt: skip
    cursor_type = stream_state.get("cursor_type")
    relation = stream_state.get(RELATION_KEY)
    return CursorState(
        cursor_field=tuple(str(f) for f in field),
        cursor=None if cursor is None else str(cursor),
        cursor_record_count=_count(count),
        cursor_type=cursor_type if isinstance(cursor_type, str) else None,
        relation=relation if _is_int(relation) else None,
    )


def _airbyte_v3(
    label: str, kind: str, stream_state: dict[str, Any]
) -> CursorState | CtidState | XminState | Unusable | None:
    """A version 3 state of Airbyte's 4.x source-postgres (module docstring)."""
    cursors = stream_state.get("cursors")
    cursors = {} if cursors is None else cursors
    if (
        not isinstance(cursors, dict)
        or len(cursors) > 1
        or any(
            v is not None
            and (not isinstance(v, str | int | float | Decimal) or isinstance(v, bool))
            for v in cursors.values()
        )
    ):
        raise ConfigError(
            f"Stream {label}: the saved cursor state is malformed ({stream_state}): expected "
            '"cursors" to map one cursor column to its value. Reset this stream\'s state to '
            "re-read it."
        )
    position: CursorState | XminState | None = None
    if cursors:
        ((name, value),) = cursors.items()
        if value is None:  # the column held only NULLs when that source noted its maximum
            return Unusable(f"the saved state of Airbyte's source-postgres 4.x holds no value "
                            f"for cursor {name!r}")  # fmt: skip
        if isinstance(value, float):
            # Read as a double (in-process, by the CDK): a long decimal (a numeric cursor) may
            # have been rounded up, past rows not read yet. The next double down is below the
            # saved value. (The console script reads such a number exactly: a Decimal.)
            value = math.nextafter(value, -math.inf)
        position = CursorState((str(name),), str(value), 0, airbyte_v3=True)
    if kind == CURSOR_STATE_TYPE:
        return position  # no cursor value yet: a cold start, as Airbyte's 4.x source does
    xmin = stream_state.get("xmin")
    if kind == V3_XMIN_STATE_TYPE or xmin is not None:
        # A 64-bit txid_current() (epoch included; that source refuses to run once the epoch
        # is above 0), from which it would read on (xmin >= it): an XminState's raw value.
        # Unlike pgbyte's own (the read's snapshot xmin), it may be above the xid of a
        # transaction still open during that read, whose rows neither source then sees.
        if not _is_int(xmin) or not 0 <= xmin < 1 << 63:
            return Unusable(f"the saved xmin position of Airbyte's source-postgres 4.x holds "
                            f"no transaction id (xmin {xmin!r})")  # fmt: skip
        position = XminState(raw=xmin)
        if kind == V3_XMIN_STATE_TYPE:
            return position
    if position is None:
        return Unusable("the saved state is a full refresh position (ctid_based, no cursor) of "
                        "Airbyte's source-postgres 4.x")  # fmt: skip
    ctid = stream_state.get("ctid")
    block = _block_of(ctid)
    filenode = stream_state.get("relation_filenode")
    if block is None or not _is_int(filenode):
        return Unusable(f"the saved first-load position of Airbyte's source-postgres 4.x "
                        f"(ctid {ctid!r}, relation_filenode {filenode!r}) is not one pgbyte "
                        "can resume")  # fmt: skip
    # The load restarts at the saved block's first row: the rows of that block read before
    # the interruption come again (at least once).
    return CtidState(block=block, filenode=filenode, incremental=position)


def _block_of(ctid: Any) -> int | None:
    """The block of a saved ctid text `(block,offset)`; None when it is not one (ASCII digits:
    str.isdigit takes '²' too)."""
    block = ctid.strip("()").split(",")[0] if isinstance(ctid, str) else ""
    if not (block.isascii() and block.isdigit()) or int(block) >= 2**32:
        return None  # a block number is 32 bits: (4294967296,0) is no tid PostgreSQL takes
    return int(block)


def _count(value: Any) -> int:
    """A saved cursor_record_count as a number of rows; 0 (re-read them) for anything else. A
    Decimal (argv.py's exact read) of 19 digits or more is 0 too: int() of 1e9999999 never
    returns."""
    if _is_int(value) or isinstance(value, float):
        return int(value) if math.isfinite(value) else 0
    if isinstance(value, Decimal) and value.is_finite() and value.adjusted() < 18:
        return int(value)
    return 0


def _is_int(value: Any) -> bool:
    """A JSON integer (bool is an int subclass in Python, not one in JSON)."""
    return isinstance(value, int) and not isinstance(value, bool)


def _xmin(label: str, stream_state: dict[str, Any]) -> XminState:
    """Airbyte's XminStatus: num_wraparound (epoch) and xmin_xid_value (32-bit xid) are what
    it compares with; xmin_raw_value (their 64-bit combination) must agree when present."""
    wraps = stream_state.get("num_wraparound")
    xid = stream_state.get("xmin_xid_value")
    raw = stream_state.get("xmin_raw_value")
    valid = (
        isinstance(wraps, int) and not isinstance(wraps, bool) and wraps >= 0
        and isinstance(xid, int) and not isinstance(xid, bool) and 0 <= xid <= XID_MASK
    )  # fmt: skip
    if not valid or (raw is not None and raw != (wraps << 32) + xid):  # type: ignore[operator]
        raise ConfigError(
            f"Stream {label}: the saved xmin state is malformed ({stream_state}): expected "
            "integers num_wraparound >= 0 and 0 <= xmin_xid_value < 2^32 (and xmin_raw_value = "
            "num_wraparound * 2^32 + xmin_xid_value). Reset this stream's state to re-read it."
        )
    return XminState(raw=(wraps << 32) + xid)  # type: ignore[operator]


def describe(saved: CursorState | CtidState | XminState) -> str:
    """What kind of position a saved state holds, for warnings."""
    inner = saved.incremental if isinstance(saved, CtidState) else saved
    kind = "an Xmin" if isinstance(inner, XminState) else "a cursor (Standard)"
    return kind + (" first-load (ctid)" if isinstance(saved, CtidState) else "") + " state"


def _unknown(why: str) -> ConfigError:
    return ConfigError(
        f"The input state is in an unknown format: {why}. Pass the STATE messages a previous "
        "read printed (a JSON list of their 'state' objects), or no state to sync from scratch."
    )
