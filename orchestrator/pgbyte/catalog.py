"""Configured catalogs: which streams sync how, and their names on the destination side.

The destination's catalog gets the connection's prefix and namespace mapping applied exactly as
Airbyte's platform does it (NamespacingMapper): the stream name becomes `prefix + name`; the
namespace is the source's (`source`), none so the destination uses its default schema
(`destination`), or the custom format with `${SOURCE_NAMESPACE}` replaced by the source's
namespace (`""` when it has none) — a blank result meaning none.

What the connection file asks for that the discovered streams cannot do (an unknown, ambiguous or
twice-listed stream, a mode a stream or the destination does not support, a missing cursor or
primary key, two streams onto one table) is a ConnectionFileError naming the file: a mistake in
the file, found before any `read` or `write` starts, not a failed sync.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass, replace
from typing import Any

from pgbyte_common.validation import config_problems

from pgbyte.connection import (
    SOURCE_NAMESPACE_PLACEHOLDER,
    Connection,
    ConnectionFileError,
    StreamChoice,
    incremental_overwrite_problem,
)
from pgbyte.protocol import ConnectorError
from pgbyte.secrets import Masker
from pgbyte.state import stream_label


def validate_config(
    spec: dict[str, Any], config: dict[str, Any], label: str, masker: Masker, path: Any
) -> None:
    """Check a config against the connector's connectionSpecification (JSON Schema draft 7):
    a mismatch is the connection file's mistake (ConnectionFileError: exit 2, no sync ran)."""
    # Worded without the values (one may be a secret); masked all the same.
    problems = config_problems(config, spec.get("connectionSpecification") or {})
    if problems:
        text = f"the {label} config does not match the connector's spec: " + "; ".join(problems)
        if any("is not of type 'integer'" in p or "is not of type 'number'" in p
               or "is not of type 'boolean'" in p for p in problems):  # fmt: skip
            text += " (a ${VAR} reference always gives a string: write a number or boolean as is)"
        raise ConnectionFileError(masker.mask(f"{path}: {text}"))


_PLACEHOLDER = re.compile(r"\$(\$?)" + re.escape(SOURCE_NAMESPACE_PLACEHOLDER[1:]))


def map_namespace(mode: str, source_namespace: str | None) -> str | None:
    """The destination namespace for a source namespace under `namespace:` (platform rules)."""
    if mode == "source":
        return source_namespace
    if mode == "destination":
        return None
    # `$${SOURCE_NAMESPACE}` is the placeholder's text itself (the file's escape of ${VAR}).
    result = _PLACEHOLDER.sub(
        lambda m: SOURCE_NAMESPACE_PLACEHOLDER if m.group(1) else (source_namespace or ""), mode
    )
    return result if result.strip() else None


@dataclass(frozen=True)
class Route:
    """One configured stream: its source-side and destination-side names."""

    name: str
    namespace: str | None
    dest_name: str
    dest_namespace: str | None
    sync_mode: str
    destination_sync_mode: str

    @property
    def label(self) -> str:
        return f"{self.namespace}.{self.name}" if self.namespace else self.name

    @property
    def dest_label(self) -> str:
        return f"{self.dest_namespace}.{self.dest_name}" if self.dest_namespace else self.dest_name


class StreamMap:
    """Source ⇄ destination stream names for one sync."""

    def __init__(self, routes: list[Route]) -> None:
        self.routes = routes
        self._to_dest = {(r.name, r.namespace): r for r in routes}
        self._to_source = {(r.dest_name, r.dest_namespace): r for r in routes}

    def by_source(self, name: str, namespace: str | None) -> Route | None:
        return self._to_dest.get((name, namespace))

    def by_dest(self, name: str, namespace: str | None) -> Route | None:
        return self._to_source.get((name, namespace))

    @property
    def is_identity(self) -> bool:
        return all(r.name == r.dest_name and r.namespace == r.dest_namespace for r in self.routes)


def _find(streams: list[dict[str, Any]], choice: StreamChoice, conn: Connection) -> dict[str, Any]:
    matches = [
        s for s in streams
        if s["name"] == choice.name
        and (choice.namespace is None or s.get("namespace") == choice.namespace)
    ]  # fmt: skip
    if choice.namespace is None:
        # `streams: [public.users]`: the shorthand written as discover and pgbyte print streams.
        dotted = [s for s in streams if _label(s) == choice.name and s not in matches]
        if matches and dotted:  # a table named "s2.users" beside s2's users
            other = dotted[0]
            raise ConnectionFileError(
                f"{conn.path}: stream {choice.name!r} may be the stream of that name (in "
                f"{_spaces(matches)}) or stream {other['name']!r} in namespace "
                f"{other.get('namespace')!r}: write it as {{name: ..., namespace: ...}}"
            )
        matches = matches or dotted
    if len(matches) == 1:
        return matches[0]
    if not matches:
        raise ConnectionFileError(
            f"{conn.path}: stream {choice.name!r}"
            + (f" in namespace {choice.namespace!r}" if choice.namespace else "")
            + f" is not among the discovered streams ({_known(streams, choice.name)}): was its "
            "table renamed or dropped, or its privileges revoked? Fix or remove it in the "
            "connection file's streams:"
        )
    raise ConnectionFileError(
        f"{conn.path}: stream {choice.name!r} exists in several namespaces "
        f"({_spaces(matches)}): add namespace: to it"
    )


def _spaces(streams: list[dict[str, Any]]) -> str:
    return ", ".join(sorted(str(s.get("namespace")) for s in streams))


_KNOWN_SHOWN = 20  # the discovered streams an error lists (a database may have thousands)


def _known(streams: list[dict[str, Any]], wanted: str) -> str:
    """The discovered streams for an error: those whose names are close to `wanted` first
    (difflib's matches, in name order), at most _KNOWN_SHOWN in all, and how many more."""
    labels = sorted(_label(s) for s in streams)
    if not labels:
        return "none"
    names = [s["name"] for s in streams]
    close = set(difflib.get_close_matches(wanted, names + labels, n=5, cutoff=0.6))
    first = sorted(_label(s) for s in streams if s["name"] in close or _label(s) in close)
    ordered = first + [label for label in labels if label not in first]
    shown = ordered[:_KNOWN_SHOWN]
    more = len(ordered) - len(shown)
    return ", ".join(shown) + (f", and {more} more" if more else "")


def _entry(choice: StreamChoice) -> str:
    """A streams: entry as written: `name` or `{name, namespace}`."""
    if choice.namespace is None:
        return repr(choice.name)
    return f"{choice.name!r} in namespace {choice.namespace!r}"


def _label(stream: dict[str, Any]) -> str:
    return stream_label(stream["name"], stream.get("namespace"))


def _configure(
    stream: dict[str, Any], choice: StreamChoice, conn: Connection, dest_modes: list[str]
) -> dict[str, Any]:
    label = f"{conn.path}: stream {_label(stream)}"
    sync_mode = choice.sync_mode or conn.sync_mode
    supported = stream.get("supported_sync_modes") or ["full_refresh"]
    if sync_mode not in supported:
        raise ConnectionFileError(
            f"{label}: the source does not support sync_mode {sync_mode} "
            f"(supported: {', '.join(supported)})"
        )
    default_dest = "append" if sync_mode == "incremental" else "overwrite"
    dest_mode = choice.destination_sync_mode or conn.destination_sync_mode or default_dest
    if sync_mode == "incremental" and dest_mode == "overwrite":
        # load_connection refuses this already; a Connection built in code is checked here.
        raise ConnectionFileError(incremental_overwrite_problem(label))
    if dest_modes and dest_mode not in dest_modes:
        raise ConnectionFileError(
            f"{label}: the destination does not support destination_sync_mode "
            f"{dest_mode} (supported: {', '.join(dest_modes)})"
        )
    configured: dict[str, Any] = {
        "stream": stream,
        "sync_mode": sync_mode,
        "destination_sync_mode": dest_mode,
    }
    if sync_mode == "full_refresh" and dest_mode != "append_dedup":
        # A cursor orders nothing here (a full read, no dedup): the file's cursor_field, if
        # any, is not used, so it is neither checked nor passed on.
        choice = replace(choice, cursor_field=None)
    _check_columns(stream, choice, label)
    cursor = list(choice.cursor_field or ()) or stream.get("default_cursor_field") or []
    if sync_mode == "incremental" and not cursor and not stream.get("source_defined_cursor"):
        raise ConnectionFileError(
            f"{label}: incremental needs a cursor; add cursor_field: [column] to it"
        )
    if cursor:
        configured["cursor_field"] = list(cursor)
    key = [list(p) for p in choice.primary_key] if choice.primary_key else None
    key = key or stream.get("source_defined_primary_key") or []
    if dest_mode == "append_dedup" and not key:
        raise ConnectionFileError(
            f"{label}: append_dedup needs a primary key; add primary_key: [[column]]"
        )
    if key:
        configured["primary_key"] = key
    return configured


def _check_columns(stream: dict[str, Any], choice: StreamChoice, label: str) -> None:
    """A cursor_field or primary_key the file names must be a column of the stream (its first
    path element a top-level property): a typo is the file's mistake, found before any read."""
    props = (stream.get("json_schema") or {}).get("properties")
    if not isinstance(props, dict):
        return
    named = [("cursor_field", list(choice.cursor_field or ()))]
    named += [("primary_key", list(part)) for part in choice.primary_key or ()]
    for key, path in named:
        if path and path[0] not in props:
            known = ", ".join(sorted(props)[:20]) + (", …" if len(props) > 20 else "")
            raise ConnectionFileError(
                f"{label}: {key} {path[0]!r} is not a column of the stream (columns: {known})"
            )
        if key == "cursor_field" and len(path) > 1 and not _may_hold_fields(props[path[0]]):
            # A path into a column that holds no object: meant as a composite cursor, which
            # the protocol does not have (a cursor is one field).
            raise ConnectionFileError(
                f"{label}: cursor_field {path} is a path into {path[0]!r}, which is not an "
                f"object; a cursor is one column (cursor_field: [{path[0]}])"
            )


def _may_hold_fields(schema: Any) -> bool:
    """Whether a property's JSON schema allows an object (a nested cursor path's first step)."""
    if not isinstance(schema, dict) or "type" not in schema:
        return True  # untyped: anything
    types = schema["type"] if isinstance(schema["type"], list) else [schema["type"]]
    return "object" in types


def namespace_notes(conn: Connection, dest_catalog: dict[str, Any]) -> list[str]:
    """WARNs for a namespace choice that is likely not what the file's author meant: a keyword
    mistyped into a custom format (a schema of that name), or the destination's `schema:` left
    unused because no `namespace:` was written (the default mirrors the source's schemas,
    where Airbyte's platform now defaults to the destination's)."""
    notes = []
    written = conn.namespace
    keywords = ("source", "destination")
    if written not in keywords and "${" not in written:
        # A keyword in other case, or one letter off; not a name built on one (sources,
        # resource, destinations), which is a schema's name as likely as not.
        close = difflib.get_close_matches(written.lower(), keywords, n=1, cutoff=0.8)
        if close and (written.lower() == close[0] or close[0] not in written.lower()):
            notes.append(
                f"namespace: {written} is taken as a custom format: the streams go to a schema "
                f"named {written!r}. If you meant the keyword, write namespace: {close[0]}"
            )
    config = conn.destination.config
    schema = config.get("schema") if isinstance(config, dict) else None
    if not conn.namespace_given and isinstance(schema, str) and schema:
        used = {entry["stream"].get("namespace") for entry in dest_catalog.get("streams") or []}
        if used and None not in used and schema not in used:
            spaces = ", ".join(sorted(str(ns) for ns in used))
            notes.append(
                f"the destination's schema: {schema} is not used: with no namespace: in the "
                f"connection file the streams keep their source schema ({spaces}), as namespace: "
                f"source does. Add namespace: destination to write them to {schema} (or "
                "namespace: source to keep them where they are, which silences this WARN)"
            )
    return notes


def build_catalogs(
    conn: Connection,
    discovered: dict[str, Any],
    dest_spec: dict[str, Any],
    *,
    sync_id: int = 0,
) -> tuple[dict[str, Any], dict[str, Any], StreamMap]:
    """(source configured catalog, destination configured catalog, stream map)."""
    streams = list(discovered.get("streams") or [])
    if conn.streams is None:
        choices = [StreamChoice(name=s["name"], namespace=s.get("namespace")) for s in streams]
    else:
        choices = list(conn.streams)
    if not choices:
        raise ConnectorError(
            "the source discovered no streams to sync", failure_type="config_error"
        )
    dest_modes = list(dest_spec.get("supported_destination_sync_modes") or [])
    source_streams, dest_streams, routes = [], [], []
    chosen: dict[tuple[str, str | None], int] = {}  # discovered stream → its streams: index
    for index, choice in enumerate(choices):
        stream = _find(streams, choice, conn)
        first = chosen.setdefault((stream["name"], stream.get("namespace")), index)
        if first != index:
            # Two entries naming one stream (`users` and `public.users`): not a mapping clash,
            # so the namespace advice below would be wrong.
            raise ConnectionFileError(
                f"{conn.path}: stream {_label(stream)} is listed twice (streams[{first}] "
                f"{_entry(choices[first])} and streams[{index}] {_entry(choice)}); remove one "
                "entry"
            )
        configured = _configure(stream, choice, conn, dest_modes)
        # Airbyte's refresh fields: overwrite truncates older generations, append keeps them.
        configured["generation_id"] = sync_id
        configured["minimum_generation_id"] = (
            sync_id if configured["destination_sync_mode"] == "overwrite" else 0
        )
        configured["sync_id"] = sync_id
        stream = configured["stream"]
        name, namespace = stream["name"], stream.get("namespace")
        dest_stream = {**stream, "name": conn.prefix + name}
        dest_namespace = map_namespace(conn.namespace, namespace)
        if dest_namespace is None:
            dest_stream.pop("namespace", None)
        else:
            dest_stream["namespace"] = dest_namespace
        source_streams.append(configured)
        dest_streams.append({**configured, "stream": dest_stream})
        routes.append(
            Route(
                name, namespace, dest_stream["name"], dest_namespace,
                configured["sync_mode"], configured["destination_sync_mode"],
            )
        )  # fmt: skip
    seen: dict[tuple[str, str | None], Route] = {}
    for route in routes:
        other = seen.setdefault((route.dest_name, route.dest_namespace), route)
        if other is not route:
            raise ConnectionFileError(
                f"{conn.path}: streams {other.label} and {route.label} would both land in "
                f"destination stream {route.dest_label}; use namespace: source or a custom format"
            )
    return {"streams": source_streams}, {"streams": dest_streams}, StreamMap(routes)
