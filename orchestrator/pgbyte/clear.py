"""`pgbyte state reset --clear`: empty the destination tables of streams whose state is reset.

This is Airbyte's "Clear data": the platform runs the destination's `write` with those streams
configured as full refresh | overwrite (generation_id = minimum_generation_id, so older
generations are dropped) and no records, only each stream's STARTED and COMPLETE status; the
destination then replaces the stream's tables with empty ones. pgbyte does the same with the
connection's own destination, so it works for any destination connector, not only ours.

Without --clear a reset only forgets the state: an append stream then gets every row appended
again, an append_dedup stream keeps one row per key (rows deleted at the source stay).
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any

import orjson

from pgbyte.catalog import build_catalogs
from pgbyte.connection import Connection, StreamChoice
from pgbyte.protocol import ConnectorError, call
from pgbyte.session import Session
from pgbyte.state import read_history
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


def clear_streams(session: Session, conn: Connection, streams: list[Key] | None) -> dict[Key, str]:
    """Replace the destination tables of `streams` (source names; None: every stream the
    connection syncs) with empty ones; returns the destination label of each source stream
    cleared. A stream the source no longer offers (its table dropped) is left out: the
    destination needs its schema to name its tables."""
    discovered, dest_spec = session.discover()
    if streams is None:
        choices = list(conn.streams) if conn.streams is not None else None
    else:
        offered = [(s.get("name"), s.get("namespace")) for s in discovered.get("streams") or []]
        choices = [
            StreamChoice(name=name, namespace=namespace)
            for name, namespace in streams
            if any(name == n and namespace in (None, ns) for n, ns in offered)
        ]
        if not choices:
            return {}
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
    _, dest_config = session.configs()
    catalog_path = session.private_file("clear-catalog.json", dest_catalog)
    messages = []
    for route in smap.routes:
        descriptor: dict[str, Any] = {"name": route.dest_name}
        if route.dest_namespace is not None:
            descriptor["namespace"] = route.dest_namespace
        messages += [_status(descriptor, "STARTED"), _status(descriptor, "COMPLETE")]
    result = call(
        session.destination, "write", session.masker, config=dest_config, catalog=catalog_path,
        stdin=b"".join(messages), log=session.log, track=session.track,
    )  # fmt: skip
    if result.exit_code != 0 or result.errors:
        raise ConnectorError(
            "clearing the destination tables failed; the state was NOT reset: "
            + result.failure(session.masker)
        )
    return {(route.name, route.namespace): route.dest_label for route in smap.routes}
