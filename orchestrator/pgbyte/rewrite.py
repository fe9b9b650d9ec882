"""Renaming streams on the hot path without parsing RECORD lines.

RECORD lines are rewritten a block at a time with `bytes.count`/`bytes.replace` on the envelope
bytes that precede the record's data, anchored at the start of a line: a block always starts with
a `\\n`, and JSON lines hold no raw newline, so `\\n{"type":"RECORD","record":{"stream":"S",...`
can only be a line's own envelope — never text inside a value (a quote inside a JSON string is
escaped) nor a nested object (those are not at a line start).

Envelope layouts handled at that speed (everything else falls back to parsing each line):
  H   {"type":"RECORD","record":{"stream":S,"namespace":N,...          (pgbyte's source)
  HB  {"type":"RECORD","record":{"namespace":N,"stream":S,...
  T   {"type":"RECORD","record":{"stream":S,"data":{...},...,"namespace":N}}   (the CDK's order)
  T0  {"type":"RECORD","record":{"stream":S,"data":...                  (no namespace)
A block is rewritten fast only when the rules' match counts add up to its number of RECORD
lines (and, for T, the namespace tails to the T records); otherwise that block is parsed line by
line — correct for any key order, only slower.

Non-RECORD messages (STATE, TRACE) are small and rare: they are parsed and mapped as objects.
"""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass, replace
from typing import Any

import orjson
from pgbyte_common import json_lines

from pgbyte.catalog import Route, StreamMap
from pgbyte.state import stream_entries

REC = b'{"type":"RECORD","record":{'
NL_REC = b"\n" + REC


def _json_forms(value: str) -> list[bytes]:
    """The ways a JSON writer may spell a string: raw UTF-8 (orjson) and ASCII-escaped (json)."""
    forms = [orjson.dumps(value)]
    ascii_form = json.dumps(value).encode()
    if ascii_form not in forms:
        forms.append(ascii_form)
    return forms


@dataclass(frozen=True)
class Rule:
    old: bytes
    new: bytes
    route: int  # index into StreamMap.routes
    tail_namespace: str | None = None  # T layout: the record's namespace is in its tail
    # The same bytes begin records of two routes (same-named streams of two namespaces, T
    # layout): which route a record is of only its tail says, so such blocks are parsed.
    shared: bool = False


class RecordRewriter:
    """Maps RECORD lines to destination names and counts records/bytes per route."""

    def __init__(self, smap: StreamMap) -> None:
        self.smap = smap
        self.records = [0] * len(smap.routes)
        self.bytes = [0] * len(smap.routes)
        self.slow_lines = 0  # lines that needed parsing (for diagnostics and tests)
        self.bad_lines: list[bytes] = []  # RECORD-looking lines that are not JSON
        self._index = {id(route): i for i, route in enumerate(smap.routes)}
        rules: dict[bytes, Rule] = {}
        shared: set[bytes] = set()
        self._tails: dict[str, tuple[bytes, bytes]] = {}
        for index, route in enumerate(smap.routes):
            for rule in self._route_rules(index, route):
                if rules.setdefault(rule.old, rule).route != rule.route:
                    shared.add(rule.old)  # the first one's rewrite, and blocks parsed
        self._rules = [replace(r, shared=True) if r.old in shared else r for r in rules.values()]
        # With only a prefix to add, one short pattern renames every stream-first envelope at
        # once (bytes.replace costs grow with the pattern's length).
        prefix = _common_prefix(smap)
        head = NL_REC + b'"stream":"'
        self._uniform = (head, head + orjson.dumps(prefix)[1:-1]) if prefix else None
        self._uniform_rules = {
            id(rule) for rule in self._rules
            if self._uniform and rule.new == rule.old.replace(head, self._uniform[1], 1)
        }  # fmt: skip
        self._recent: list[Rule] = []
        self._single_identity = len(smap.routes) == 1 and smap.is_identity

    @property
    def identity(self) -> bool:
        """One stream whose names stay: records_block only counts (it takes a memoryview)."""
        return self._single_identity

    def _route_rules(self, index: int, route: Route) -> list[Rule]:
        dst = orjson.dumps(route.dest_name)
        dns = None if route.dest_namespace is None else orjson.dumps(route.dest_namespace)
        rules = []
        for s in _json_forms(route.name):
            if route.namespace is None:
                extra = b',"namespace":' + dns if dns is not None else b""
                rules.append(
                    Rule(NL_REC + b'"stream":' + s + b',"data":',
                         NL_REC + b'"stream":' + dst + extra + b',"data":', index)
                )  # fmt: skip
                continue
            new_ns = b'"namespace":' + dns + b"," if dns is not None else b""
            for n in _json_forms(route.namespace):
                rules.append(
                    Rule(NL_REC + b'"stream":' + s + b',"namespace":' + n + b",",
                         NL_REC + b'"stream":' + dst + b"," + new_ns, index)
                )  # fmt: skip
                rules.append(
                    Rule(NL_REC + b'"namespace":' + n + b',"stream":' + s + b",",
                         NL_REC + new_ns + b'"stream":' + dst + b",", index)
                )  # fmt: skip
            rules.append(
                Rule(NL_REC + b'"stream":' + s + b',"data":',
                     NL_REC + b'"stream":' + dst + b',"data":', index,
                     tail_namespace=route.namespace)
            )  # fmt: skip
            if route.namespace != route.dest_namespace:
                tail_new = b"" if dns is None else b',"namespace":' + dns
                self._tails[route.namespace] = (
                    b',"namespace":' + orjson.dumps(route.namespace) + b"}}\n",
                    tail_new + b"}}\n",
                )
        return rules

    # -- RECORD blocks ---------------------------------------------------------------------
    def records_block(self, seg: bytes | memoryview, expected: int) -> bytes | memoryview:
        """Rewrite `\\n` + `expected` RECORD lines (each ending in `\\n`); returns the lines
        without the leading `\\n`. `seg` is bytes, or a memoryview when `identity`."""
        if self._single_identity:
            # One stream, names unchanged: nothing to rewrite and nobody else to count for.
            self.records[0] += expected
            self.bytes[0] += len(seg) - 1
            return memoryview(seg)[1:]
        assert isinstance(seg, bytes)
        hits: list[tuple[Rule, int]] = []
        total = 0
        for rule in self._candidates():
            count = seg.count(rule.old)
            if count:
                hits.append((rule, count))
                total += count
                if total >= expected:
                    break
        if total != expected or any(rule.shared for rule, _ in hits):
            return self._slow_block(seg)
        tails: dict[str, int] = defaultdict(int)
        for rule, count in hits:
            if rule.tail_namespace is not None and rule.tail_namespace in self._tails:
                tails[rule.tail_namespace] += count
        for namespace, count in tails.items():
            if seg.count(self._tails[namespace][0]) != count:
                return self._slow_block(seg)
        if self._uniform is not None and all(id(r) in self._uniform_rules for r, _ in hits):
            seg = seg.replace(*self._uniform)
        else:
            for rule, _ in hits:
                if rule.old != rule.new:
                    seg = seg.replace(rule.old, rule.new)
        for namespace in tails:
            old, new = self._tails[namespace]
            seg = seg.replace(old, new)
        self._recent = [rule for rule, _ in hits]
        size = len(seg) - 1
        out = memoryview(seg)[1:]
        if len(hits) == 1:
            route = hits[0][0].route
            self.records[route] += expected
            self.bytes[route] += size
        else:
            for rule, count in hits:
                self.records[rule.route] += count
                self.bytes[rule.route] += size * count // expected
        return out

    def _candidates(self) -> list[Rule]:
        recent = self._recent
        return recent + [r for r in self._rules if r not in recent] if recent else self._rules

    def _slow_block(self, seg: bytes) -> bytes:
        out = []
        for line in seg[1:].split(b"\n")[:-1]:
            try:
                message = json_lines.loads(line)  # numbers beyond 64 bits too
            except (ValueError, RecursionError):
                self.bad_lines.append(line[:300])  # reported as a source error, not forwarded
                continue
            out.append(self.record_line(message, len(line) + 1))
        return b"".join(out)

    def record_line(self, message: dict[str, Any], size: int) -> bytes:
        """Map one parsed RECORD message; returns its line (the slow path)."""
        self.slow_lines += 1
        record = message.get("record") or {}
        route = self.smap.by_source(record.get("stream"), record.get("namespace"))
        if route is not None:
            index = self._index[id(route)]
            self.records[index] += 1
            self.bytes[index] += size
            record["stream"] = route.dest_name
            if route.dest_namespace is None:
                record.pop("namespace", None)
            else:
                record["namespace"] = route.dest_namespace
        return orjson.dumps(message) + b"\n"

    # -- descriptors in STATE / TRACE ------------------------------------------------------
    def descriptor_to_dest(self, descriptor: dict[str, Any]) -> None:
        route = self.smap.by_source(descriptor.get("name"), descriptor.get("namespace"))
        if route is not None:
            _set_descriptor(descriptor, route.dest_name, route.dest_namespace)

    def descriptor_to_source(self, descriptor: dict[str, Any]) -> None:
        route = self.smap.by_dest(descriptor.get("name"), descriptor.get("namespace"))
        if route is not None:
            _set_descriptor(descriptor, route.name, route.namespace)

    def route_index(self, descriptor: dict[str, Any], *, dest: bool = False) -> int | None:
        name, namespace = descriptor.get("name"), descriptor.get("namespace")
        route = self.smap.by_dest(name, namespace) if dest else self.smap.by_source(name, namespace)
        return None if route is None else self._index[id(route)]


def _common_prefix(smap: StreamMap) -> str:
    """The prefix every route adds to its stream name ("" when they differ or add none)."""
    prefixes = {
        r.dest_name[: len(r.dest_name) - len(r.name)] if r.dest_name.endswith(r.name) else None
        for r in smap.routes
    }
    prefix = prefixes.pop() if len(prefixes) == 1 else None
    return prefix or ""


def _set_descriptor(descriptor: dict[str, Any], name: str, namespace: str | None) -> None:
    descriptor["name"] = name
    if namespace is None:
        descriptor.pop("namespace", None)
    else:
        descriptor["namespace"] = namespace


def state_descriptors(state: dict[str, Any]) -> list[dict[str, Any]]:
    """The stream descriptors inside a STATE message's `state` (STREAM and GLOBAL; a legacy
    state carries stream names only in its data, which are not renamed)."""
    if state.get("type") not in ("STREAM", "GLOBAL"):
        return []
    return [descriptor for descriptor, _ in stream_entries(state)]
