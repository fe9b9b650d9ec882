"""`pgbyte state reset --clear`: empty the destination tables of streams whose state is reset.

This is Airbyte's "Clear data": the platform runs the destination's `write` with those streams
configured as full refresh | overwrite (generation_id = minimum_generation_id, so older
generations are dropped) and no records, only each stream's STARTED and COMPLETE status; the
destination then replaces the stream's tables with empty ones. pgbyte does the same with the
connection's own destination, so it works for any destination connector, not only ours.

The state is forgotten between the two halves: `clear_streams` discovers and builds the
catalog (a failure there changes nothing), then the caller forgets the state, then
`Clearing.empty` runs the write. Emptied tables under a remembered cursor would lose rows for
good (every later sync reads only what is newer); a forgotten state over tables not yet emptied
at worst reads every row again, and running the same command again empties them.

Without --clear a reset only forgets the state: an append stream then gets every row appended
again, an append_dedup stream keeps one row per key (rows deleted at the source stay).
"""

from __future__ import annotations

import dataclasses
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import orjson

from pgbyte.catalog import build_catalogs
from pgbyte.connection import Connection, StreamChoice
from pgbyte.protocol import ConnectorError, call
from pgbyte.session import Cancelled, Session
from pgbyte.state import read_history, stream_label
from pgbyte.state_cli import Key


def _status(descriptor: dict[str, Any], status: str) -> bytes:
    message = {
        "type": "TRACE",
        "trace": {
            "type": "STREAM_STATUS",
            "emitted_at": int(time.time() * 1000),
            "stream_status": {"stream_descriptor": descriptor, "status": status},
        },
    }
    return orjson.dumps(message) + b"\n"


@dataclasses.dataclass
class Clearing:
    """A prepared "Clear data": `labels` maps each source stream it will empty to its
    destination label; `empty()` runs the destination's write (Ctrl-C or SIGTERM stops it)."""

    session: Session
    labels: dict[Key, str]
    catalog: Path | None = None
    messages: bytes = b""

    def empty(self) -> None:
        """Run the destination's write of empty streams; ConnectorError if it fails,
        Cancelled (the connector stopped) on Ctrl-C or SIGTERM."""
        if self.catalog is None:
            return
        session = self.session
        _, dest_config = session.configs()
        with ThreadPoolExecutor(1) as pool:
            future = pool.submit(
                call, session.destination, "write", session.masker, config=dest_config,
                catalog=self.catalog, stdin=self.messages, log=session.log, track=session.track,
            )  # fmt: skip
            [result] = session.wait_all([future])
        if result.exit_code != 0 or result.errors:
            raise ConnectorError(
                "clearing the destination tables failed: " + result.failure(session.masker)
            )


def _offered(key: Key, offered: list[Key]) -> list[Key]:
    """The discovered stream a (name, namespace) key names (a name may be namespace.name);
    a bare name that several namespaces offer is refused rather than clearing them all."""
    name, namespace = key
    found = [
        (n, ns) for n, ns in offered
        if namespace in (None, ns) and (name == n or (ns is not None and name == f"{ns}.{n}"))
    ]  # fmt: skip
    if len(found) > 1:
        names = ", ".join(stream_label(n, ns) for n, ns in found)
        raise ConnectorError(
            f"--stream {name} names several streams the source offers ({names}); give it as "
            "namespace.name. Nothing was changed."
        )
    return found


def clear_streams(session: Session, conn: Connection, streams: list[Key] | None) -> Clearing:
    """Prepare to replace the destination tables of `streams` (source names; None: every stream
    the connection syncs) with empty ones. A stream the source no longer offers (its table
    dropped) is left out: the destination needs its schema to name its tables."""
    discovered, dest_spec = session.discover()
    if streams is None:
        choices = list(conn.streams) if conn.streams is not None else None
    else:
        offered = [(s.get("name"), s.get("namespace")) for s in discovered.get("streams") or []]
        found = [k for key in streams for k in _offered(key, offered)]
        choices = [StreamChoice(name=n, namespace=ns) for n, ns in dict.fromkeys(found)]
        if not choices:
            return Clearing(session, {})
    if choices is not None:
        # A cleared stream is synced as full refresh | overwrite whatever its usual modes.
        choices = [
            dataclasses.replace(c, sync_mode=None, destination_sync_mode=None, cursor_field=None,
                                primary_key=None)
            for c in choices
        ]  # fmt: skip
    clearing = dataclasses.replace(
        conn, streams=None if choices is None else tuple(choices),
        sync_mode="full_refresh", destination_sync_mode="overwrite",
    )  # fmt: skip
    sync_id = len(read_history(conn.history_path)) + 1
    _, dest_catalog, smap = build_catalogs(clearing, discovered, dest_spec, sync_id=sync_id)
    catalog_path = session.private_file("clear-catalog.json", dest_catalog)
    messages = []
    for route in smap.routes:
        descriptor: dict[str, Any] = {"name": route.dest_name}
        if route.dest_namespace is not None:
            descriptor["namespace"] = route.dest_namespace
        messages += [_status(descriptor, "STARTED"), _status(descriptor, "COMPLETE")]
    labels = {(route.name, route.namespace): route.dest_label for route in smap.routes}
    # The destination is checked, where the clear writes, before the state is forgotten: a
    # clear that cannot reach it (a wrong password) would leave the state gone, tables full.
    # Where the clear writes: a stream namespace, given to a destination that has a `schema`
    # setting (destination-postgres; another destination is checked with its own config).
    schemas = sorted({route.dest_namespace for route in smap.routes if route.dest_namespace})
    settings = (dest_spec.get("connectionSpecification") or {}).get("properties") or {}
    session.check_destination(schemas if "schema" in settings else ())
    if session.cancel.is_set():  # stopped just after the discover: nothing changed yet
        raise Cancelled(session.cancel_signal)
    return Clearing(session, labels, catalog_path, b"".join(messages))
