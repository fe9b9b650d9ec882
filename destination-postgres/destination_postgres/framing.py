"""Reading the `write` input: stdin in big chunks, and canonical RECORD lines sliced, unparsed.

A canonical RECORD line — `{"type":"RECORD","record":{"stream":"S"[,"namespace":"N"],` then
either `"data":{..},"emitted_at":N}}` (the CDK's order) or `"emitted_at":N,"data":{..}}}` (our
source's order) — is routed and cut to its data object with a few bytes operations instead of a
JSON parse; Postgres validates the data when it parses it into jsonb, and a batch it refuses is
redone on the slow path. Anything else takes the slow path (orjson).
"""

from __future__ import annotations

import datetime
import fcntl
import operator
import os
import re
import select
import stat
import struct
import time
from collections.abc import Callable, Iterator
from itertools import chain, repeat

READ_CHUNK = 1 << 20  # a block of lines; batches (loading.py) are ten or more of them
NUL_ESCAPE = re.compile(rb"(?<!\\)((?:\\\\)*)\\u0000")  # \u0000 not preceded by a lone backslash
# A UTF-16 surrogate escape: a high one with its low one (an emoji from an ASCII-only encoder,
# kept), or either half alone (valid JSON, which jsonb refuses: replaced by U+FFFD).
_SURROGATE = re.compile(
    rb"(?<!\\)((?:\\\\)*)\\u[dD]([89abAB][0-9a-fA-F]{2}(?:\\u[dD][c-fC-F][0-9a-fA-F]{2})?"
    rb"|[c-fC-F][0-9a-fA-F]{2})"
)
_PREFIX = b'{"type":"RECORD","record":{"stream":"'
RECORD_PREFIX = _PREFIX[:16]  # b'{"type":"RECORD"': how every compact RECORD line starts
_NS = b'","namespace":"'
_DATA = b'","data":'
_EM = b',"emitted_at":'
_EM_FIRST = b'","emitted_at":'
_DATA_LAST = b',"data":'
_PLEN, _NLEN, _DLEN, _ELEN = len(_PREFIX), len(_NS), len(_DATA), len(_EM)
_EFLEN, _DLLEN = len(_EM_FIRST), len(_DATA_LAST)
_EPOCH = datetime.datetime(1970, 1, 1, tzinfo=datetime.UTC)
_PG_EPOCH_MS = 946_684_800_000  # 2000-01-01 UTC, PostgreSQL's timestamp origin
SECONDS_BELOW = 10**11  # an emitted_at under this is in seconds, not milliseconds


def input_waiting(fd: int) -> Callable[[], bool]:
    """Whether `fd` can be read without waiting (more input, or its end)."""
    return lambda: bool(select.select([fd], [], [], 0)[0])


def read_lines(fd: int, interrupted: Callable[[], bool] = lambda: False) -> Iterator[list[bytes]]:
    """Yield lists of complete lines read from `fd` in big chunks; a last unterminated line
    comes on its own at EOF. An empty list when a wait for input found none, or a read brought
    only part of a line: the caller may act on a pause of its input (the writer commits its
    pending STATEs then) without waiting for the rest of that line.

    The wait for input wakes up twice a second: the kernel may hand SIGTERM to one of the
    loader's threads, which leaves this read blocked, and Python runs the signal's handler in
    the main thread only when it runs again. `interrupted()` true raises KeyboardInterrupt (the
    handler's own one may have been swallowed, raised while a __del__ ran)."""
    _widen_pipe(fd)
    pending: list[bytes] = []
    first = True
    while True:
        if interrupted():
            raise KeyboardInterrupt
        if not select.select([fd], [], [], 0.5)[0]:
            yield []
            continue
        chunk = os.read(fd, READ_CHUNK)
        if not chunk:
            break
        if first:  # a file saved by a Windows editor may start with a UTF-8 byte order mark
            chunk, first = chunk.removeprefix(b"\xef\xbb\xbf"), False
        if b"\n" not in chunk:
            pending.append(chunk)
            yield []
            continue
        if pending:
            pending.append(chunk)
            chunk = b"".join(pending)
            pending = []
        lines = chunk.split(b"\n")
        tail = lines.pop()
        if tail:
            pending.append(tail)
        yield lines
    if pending:
        yield [b"".join(pending)]


def _widen_pipe(fd: int) -> None:
    """A pipe on stdin (a shell pipe, pgbyte) holds 64 KiB by default: each read then takes a
    few hundred lines and the writer wakes up that often. Ask for 1 MiB (Linux; the unprivileged
    maximum); where that is refused, the default stays."""
    try:
        if stat.S_ISFIFO(os.fstat(fd).st_mode):
            fcntl.fcntl(fd, getattr(fcntl, "F_SETPIPE_SZ", 1031), READ_CHUNK)
    except OSError:
        pass


def slice_record(line: bytes) -> tuple[bytes, bytes | None, int, int, bytes] | None:
    """(stream, namespace, data start, data end, emitted_at digits) of a canonical RECORD line,
    or None when the line is anything else."""
    if not line.startswith(_PREFIX):
        return None
    q = line.find(b'"', _PLEN)
    name = line[_PLEN:q]
    ns = None
    if line.startswith(_NS, q):
        q2 = line.find(b'"', q + _NLEN)
        ns = line[q + _NLEN : q2]
        q = q2
    if not line.endswith(b"}}") or b"\\" in name:
        return None
    if line.startswith(_DATA, q):
        ds = q + _DLEN
        de = line.rfind(_EM)
        em = line[de + _ELEN : -2]
    elif line.startswith(_EM_FIRST, q):
        k = q + _EFLEN
        e = line.find(_DATA_LAST, k)
        em = line[k:e]
        ds, de = e + _DLLEN, len(line) - 2
    else:
        return None
    if not (em.isdigit() and de > ds > 0 and line[ds] == 123):  # 123: "{", data is an object
        return None
    return name, ns, ds, de, em


def random_uuids(count: int = 1 << 15) -> bytes:
    """`count` random (version 4) UUIDs, 16 bytes each. Made in bulk here because
    gen_random_uuid() per row costs the busy Postgres backend a few microseconds each."""
    raw = bytearray(os.urandom(16 * count))
    raw[6::16] = raw[6::16].translate(_UUID_VERSION)
    raw[8::16] = raw[8::16].translate(_UUID_VARIANT)
    return bytes(raw)


# Byte maps setting a UUID's version (4) and variant (RFC 4122) bits, applied with translate.
_UUID_VERSION = bytes((b & 0x0F) | 0x40 for b in range(256))
_UUID_VARIANT = bytes((b & 0x3F) | 0x80 for b in range(256))


def timestamp_usec(ms: int) -> int:
    """emitted_at (epoch milliseconds) as a binary timestamptz: microseconds since 2000-01-01
    UTC; out of the datetime range: the current time. A value below 10^11 is taken as seconds:
    as milliseconds it would be before March 1973, and a known client (PyAirbyte's write of a
    cached read result) sends seconds."""
    if 0 < ms < SECONDS_BELOW:
        ms *= 1000
    try:
        _EPOCH + datetime.timedelta(milliseconds=ms)
    except OverflowError:
        ms = int(time.time() * 1000)
    return (ms - _PG_EPOCH_MS) * 1000


BINARY_HEADER = b"PGCOPY\n\xff\r\n\x00" + bytes(8)  # signature, flags, no header extension
BINARY_TRAILER = b"\xff\xff"
# The columns of a binary-COPY row, in order; every row is a 39-byte head, then the data.
BINARY_COLUMNS = ("_airbyte_ab_id", "_airbyte_emitted_at", "_airbyte_data")
# The head: 3 fields; the uuid (length 16, its bytes); the timestamptz (length 8, microseconds);
# the jsonb data's length and jsonb's binary version byte (1), its JSON text follows.
_ROW_HEAD = struct.Struct("!hi16siqib")
HEAD_SIZE = _ROW_HEAD.size
_UUID_AT = 6  # where the uuid's bytes sit in a head


def row_head(uuid: bytes, usec: int, data_len: int) -> bytes:
    """The head of one binary-COPY row whose data is `data_len` bytes of JSON text."""
    return _ROW_HEAD.pack(3, 16, uuid, 8, usec, data_len + 1, 1)


def binary_rows(datas: list[bytes], usec: int, uuids: bytes) -> list[bytes]:
    """[head, data, head, data, ...] for rows sharing one timestamp; `uuids` holds 16 bytes
    per row. The heads are built by strided slice assignments over one buffer and the pieces
    interleaved by C-level iterators: no Python bytecode runs per row."""
    n = len(datas)
    size = HEAD_SIZE
    lengths = struct.pack(f"!{n}i", *map(operator.add, map(len, datas), repeat(1)))
    heads = bytearray(_ROW_HEAD.pack(3, 16, bytes(16), 8, usec, 0, 1) * n)
    for i in range(16):
        heads[_UUID_AT + i :: size] = uuids[i::16]
    for i in range(4):  # the jsonb length, just before the version byte
        heads[size - 5 + i :: size] = lengths[i::4]
    whole = bytes(heads)
    cuts = map(slice, range(0, size * n, size), range(size, size * (n + 1), size))
    return list(chain.from_iterable(zip(map(whole.__getitem__, cuts), datas, strict=True)))


def may_hold_surrogates(data: bytes) -> bool:
    """A cheap pre-check (two substring searches) before the regex of replace_lone_surrogates."""
    return b"\\ud" in data or b"\\uD" in data


def _is_pair(match: re.Match[bytes]) -> bool:
    """A high surrogate followed by its low one (an emoji from an ASCII-only encoder)."""
    return len(match.group(2)) == 9


def has_lone_surrogate(data: bytes) -> bool:
    """Whether `data` holds a lone surrogate escape (found, not replaced)."""
    return any(not _is_pair(match) for match in _SURROGATE.finditer(data))


def replace_lone_surrogates(line: bytes) -> tuple[bytes, int]:
    """(line with each lone surrogate escape replaced by \\ufffd, how many were replaced)."""
    replaced = 0

    def one(match: re.Match[bytes]) -> bytes:
        nonlocal replaced
        if _is_pair(match):
            return match.group(0)
        replaced += 1
        return match.group(1) + b"\\ufffd"

    return _SURROGATE.sub(one, line), replaced
