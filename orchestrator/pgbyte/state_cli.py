"""`pgbyte state show | reset`: read, print and forget a connection's saved state.

`reset --stream S` (S = name or namespace.name, repeatable) forgets just those streams; without
--stream everything. The file is rewritten atomically under the connection's lock, so a reset
never races a running sync (it refuses while one holds the state). What the destination tables
hold afterwards depends on the stream's destination_sync_mode — printed with each reset — unless
`--clear` empties them too (Airbyte's "Clear data"; see pgbyte.clear): the streams are
discovered first, the state is forgotten next, the tables are emptied last — so an interrupted
clear never leaves emptied tables under a remembered cursor.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import Protocol

import orjson

from pgbyte.connection import Connection
from pgbyte.protocol import ConnectorError
from pgbyte.state import (
    StateFileError,
    StateStore,
    read_history,
    reset_command,
    state_lock,
    stream_label,
)
from pgbyte.state_view import format_states, state_views

Key = tuple[str | None, str | None]


class StreamSelectionError(ValueError):
    """A --stream names no stream of the saved state or the connection, or several."""


def _matches(selector: str, name: str | None, namespace: str | None) -> bool:
    return selector == name or (namespace is not None and selector == f"{namespace}.{name}")


def resolve_streams(
    selectors: list[str], saved: list[Key], conn: Connection, *, clearing: bool = False
) -> tuple[list[Key], list[str]]:
    """(saved streams to forget, selectors naming a configured stream that has no state).

    `clearing` (--clear, where the discovered catalog then decides): a stream listed by bare
    name is also named as namespace.name, and with no `streams:` list any selector is taken."""
    chosen: list[Key] = []
    stateless: list[str] = []
    for selector in selectors:
        exact = [k for k in saved if k[1] is not None and selector == f"{k[1]}.{k[0]}"]
        found = exact or [k for k in saved if _matches(selector, *k)]
        found = list(dict.fromkeys(found))
        if len(found) > 1:
            names = ", ".join(stream_label(*k) for k in found)
            raise StreamSelectionError(
                f"--stream {selector} matches several streams with saved state ({names}); "
                "give it as namespace.name"
            )
        if found:
            chosen += [k for k in found if k not in chosen]
        elif (clearing and conn.streams is None) or _listed_key(selector, conn, clearing):
            stateless.append(selector)
        else:
            known = ", ".join(stream_label(*k) for k in saved) or "none"
            raise StreamSelectionError(
                f"--stream {selector}: no such stream in the saved state of {conn.name} "
                f"(streams with saved state: {known}; a stream that never synced, or whose "
                "state was reset, has none, and is named here only when the connection file's "
                "streams: lists it; `state reset --clear` without --stream clears every stream)"
            )
    return chosen, stateless


def destination_mode(conn: Connection, name: str | None, namespace: str | None) -> str:
    """The destination_sync_mode a stream syncs with, as the connection file says."""
    choices = conn.streams or ()
    choice = next(
        (c for c in choices if c.name == name
         and (c.namespace is None or c.namespace == namespace)),
        None,
    ) or next(  # `streams: [public.users]`, the dotted shorthand sync accepts (catalog._find)
        (c for c in choices if c.namespace is None and namespace is not None
         and c.name == f"{namespace}.{name}"),
        None,
    )  # fmt: skip
    if choice is not None and choice.destination_sync_mode:
        return choice.destination_sync_mode
    if conn.destination_sync_mode:
        return conn.destination_sync_mode
    sync_mode = (choice.sync_mode if choice is not None else None) or conn.sync_mode
    return "append" if sync_mode == "incremental" else "overwrite"


def consequence(mode: str, cleared: bool, kind: str = "") -> str:
    """What the next sync does to a reset stream's destination tables."""
    if cleared:
        return "its destination tables were emptied; the next sync loads every row again"
    if kind == "full_refresh":
        return "it synced as full refresh (no cursor): its next sync reads everything anyway"
    if mode == "append":
        return (
            "WARNING append mode: the next sync appends EVERY row again — rows already in its "
            "raw and typed tables will be there twice (use --clear to empty them first)"
        )
    if mode == "append_dedup":
        return (
            "append_dedup: the next sync re-reads every row; the typed table keeps one row per "
            "primary key (rows deleted at the source since stay), the raw table gets every "
            "record again (use --clear to empty both first)"
        )
    return "overwrite: the next sync replaces its tables, as every overwrite sync does"


def cmd_state_show(conn: Connection, args: argparse.Namespace) -> int:
    store = StateStore(conn.state_path, conn.path)
    states = store.states()
    if args.json:
        sys.stdout.write(orjson.dumps(states, option=orjson.OPT_INDENT_2).decode() + "\n")
        if not states:
            print(f"no saved state ({conn.state_path})", file=sys.stderr)
        return 0
    history = read_history(conn.history_path)
    print(format_states(conn.name, str(conn.state_path), states, history))
    return 0


class ClearPlan(Protocol):
    """What a ClearFn prepared (pgbyte.clear.Clearing): the source streams it will empty, by
    destination label, and the call that empties them."""

    labels: dict[Key, str]

    def empty(self) -> None: ...


ClearFn = Callable[[list[Key] | None], ClearPlan]


def cmd_state_reset(
    conn: Connection, args: argparse.Namespace, clear: ClearFn | None = None
) -> int:
    """Forget (part of) the state. With `clear`: `clear(keys)` prepares the emptying of the
    destination tables (discover: a failure there changes nothing), the state is forgotten,
    then the plan empties them."""
    selectors: list[str] = args.stream or []
    with state_lock(conn.state_path, "reset the state"):
        try:
            store = StateStore(conn.state_path, conn.path)
        except StateFileError:
            if selectors or clear is not None:
                raise  # per-stream surgery needs a readable file; the message says what to do
            # The way out an unreadable file's message points to: remove it whole.
            conn.state_path.unlink(missing_ok=True)
            print(f"removed the unreadable state file {conn.state_path}; the next sync reads "
                  "every stream from the start")  # fmt: skip
            return 0
        saved = store.stream_keys()
        had_state = bool(store.states())
        kinds = {view.label: view.kind for view in state_views(store.states(), [])}
        if selectors:
            try:
                keys, stateless = resolve_streams(selectors, saved, conn, clearing=bool(clear))
            except StreamSelectionError as exc:
                print(f"pgbyte: {exc}", file=sys.stderr)
                return 2
        else:
            keys, stateless = list(dict.fromkeys(saved)), []
        cleared: dict[Key, str] = {}
        plan: ClearPlan | None = None
        if clear is not None:
            targets = keys + [_key_of(s, conn) for s in stateless] if selectors else None
            plan = clear(targets)  # discovers; raises before anything changed
            cleared = plan.labels
            unknown = [s for s in stateless if not any(_matches(s, *k) for k in cleared)]
            if unknown:
                print(f"pgbyte: --stream {unknown[0]}: no such stream in the saved state of "
                      f"{conn.name} nor among the streams the source offers to it; nothing "
                      "was changed", file=sys.stderr)  # fmt: skip
                return 2
        # The state goes before the tables are emptied: emptied tables under a remembered
        # cursor would lose rows for good, the reverse at worst reads them again.
        if selectors:
            forgotten = store.forget(set(keys))
        else:
            forgotten = [stream_label(*k) for k in keys]
            store.reset()
        if plan is not None:
            try:
                plan.empty()
            except ConnectorError as exc:  # the destination's write failed
                raise ConnectorError(f"{exc}\n{_rerun_hint(args, plan, bool(selectors))}") from exc
            except BaseException:  # Ctrl-C, SIGTERM
                print(f"pgbyte: {_rerun_hint(args, plan, bool(selectors))}", file=sys.stderr)
                raise
    for label in cleared.values():
        print(f"cleared destination stream {label} (its tables are now empty)")
    if not forgotten and not stateless:
        if had_state and not selectors:  # a state naming no stream (a legacy one, say)
            print(f"forgot the saved state, which named no stream: {conn.state_path}")
        else:
            print(f"state was already empty: {conn.state_path}")
    for key in keys:
        label = stream_label(*key)
        print(f"forgot the state of {label}; the next sync reads it from the start")
        # A state saved without a namespace is that of the stream of its name.
        was_cleared = key in cleared or (key[1] is None and any(k[0] == key[0] for k in cleared))
        if clear is not None and not was_cleared:
            print("  its destination tables were NOT emptied: the connection no longer syncs this "
                  "stream (its table dropped or renamed, or not among its streams:), and the "
                  "destination needs its schema to name them; drop or empty them by hand if they "
                  "should go")  # fmt: skip
            continue
        mode = destination_mode(conn, *key)
        print(f"  {consequence(mode, was_cleared, kinds.get(label, ''))}")
    for selector in stateless:
        print(f"{selector} had no saved state: the next sync reads it from the start anyway")
    return 0


def _rerun_hint(args: argparse.Namespace, plan: ClearPlan, selected: bool) -> str:
    """What to do after a clear that did not finish: the state is reset already. The rerun
    names the streams as namespace.name (a bare name could match more streams once their
    state is gone)."""
    options = []
    if selected:
        for name, namespace in plan.labels:
            options += ["--stream", stream_label(name, namespace)]
    rerun = reset_command(args.connection, *options, "--clear")
    return ("the state was reset, but the destination tables may not have been emptied: run "
            f"`{rerun}` again before the next sync (an append stream would otherwise get its "
            "rows a second time)")  # fmt: skip


def _listed_key(selector: str, conn: Connection, qualified: bool = False) -> Key | None:
    """The (name, namespace) a selector names among the connection file's `streams:`.
    `qualified`: a stream listed without a namespace (that name in whichever schema) is named
    by `ns.name` too — for --clear only, where the discovered catalog then says whether such a
    stream exists (a plain reset would take a mistyped namespace for a stream)."""
    for choice in conn.streams or ():
        if _matches(selector, choice.name, choice.namespace):
            return choice.name, choice.namespace
        if qualified and choice.namespace is None and selector.endswith(f".{choice.name}"):
            return choice.name, selector[: -len(choice.name) - 1]
    return None


def _key_of(selector: str, conn: Connection) -> Key:
    """The (name, namespace) to clear for a stateless selector (resolved with --clear)."""
    return _listed_key(selector, conn, qualified=True) or (selector, None)
