"""Secret masking for everything pgbyte prints, logs or stores.

Which values are secrets is pgbyte-common's rule (pgbyte_common.secrets, the connectors' too).
Each secret is masked raw, JSON-escaped (as it would appear inside a protocol message) and, for
multi-line values such as PEM keys, line by line.
"""

from __future__ import annotations

from collections.abc import Iterable

import orjson
from pgbyte_common.secrets import collect_secrets, secret_keys_from_spec  # noqa: F401 (re-export)

MASK = "****"
_MIN_LINE = 8  # shorter lines of a multi-line secret are too common to mask ("-----" etc.)


class Masker:
    """Replaces every known secret in a text with ****; longest secrets first."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self._variants: list[str] = []
        self.add(secrets)

    def add(self, secrets: Iterable[str]) -> None:
        variants = set(self._variants)
        for secret in secrets:
            if not secret:
                continue
            variants.add(secret)
            variants.add(orjson.dumps(secret).decode()[1:-1])
            for line in secret.splitlines():
                if len(line.strip()) >= _MIN_LINE:
                    variants.add(line.strip())
        self._variants = sorted(variants, key=len, reverse=True)

    def mask(self, text: str) -> str:
        for variant in self._variants:
            if variant in text:
                text = text.replace(variant, MASK)
        return text

    def mask_bytes(self, data: bytes) -> bytes:
        return self.mask(data.decode("utf-8", "replace")).encode()
