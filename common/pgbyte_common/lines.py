"""Protocol lines that survive consumers splitting on more than `\\n`.

JSON allows U+2028, U+2029 and U+0085 raw inside strings, and orjson (like Postgres) leaves them
so; but Python's `str.splitlines()` breaks lines there, cutting a message in two for any
consumer that reads our output that way. Every line the connectors print has them escaped
(`\\u2028` is the same JSON string): messages through `MessageWriter.message`, and the RECORD
lines Postgres builds through the source's `record_sql.unescape_copy_text`.
"""

from __future__ import annotations


def escape_line_separators(data: bytes) -> bytes:
    """UTF-8 JSON text with U+2028, U+2029 and U+0085 written as `\\uXXXX` escapes.

    In valid UTF-8 these byte sequences encode only those characters, and in JSON they can
    only occur inside strings, where the escape means the same character.
    """
    # Single-byte membership tests are memchr-fast; the multi-byte searches and the replace
    # are not, so they run only on data that can need them (RECORD chunks are megabytes).
    if b"\xe2" in data:
        data = data.replace(b"\xe2\x80\xa8", b"\\u2028").replace(b"\xe2\x80\xa9", b"\\u2029")
    if b"\xc2" in data:
        data = data.replace(b"\xc2\x85", b"\\u0085")
    return data
