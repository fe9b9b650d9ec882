"""Secret masking for everything pgbyte prints, logs or stores.

Secrets are the values of fields a connector's spec marks `airbyte_secret`, plus well-known secret
key names (so a config is masked even before its spec is known, e.g. when `spec` itself fails).
Each secret is masked raw, JSON-escaped (as it would appear inside a protocol message) and, for
multi-line values such as PEM keys, line by line.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import orjson

MASK = "****"
# Names that are secret wherever they appear (Airbyte's Postgres specs mark these airbyte_secret).
KNOWN_SECRET_KEYS = frozenset(
    {
        "password", "client_key", "client_key_password", "tunnel_user_password", "ssh_key",
        "private_key", "api_key", "access_token", "refresh_token", "client_secret", "secret",
        "token", "credentials_json", "service_account_key", "sslpassword",
    }
)  # fmt: skip
_MIN_LINE = 8  # shorter lines of a multi-line secret are too common to mask ("-----" etc.)


def secret_keys_from_spec(spec: Any) -> set[str]:
    """The property names a connectionSpecification marks airbyte_secret, at any depth."""
    keys: set[str] = set()

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            props = node.get("properties")
            if isinstance(props, dict):
                for name, sub in props.items():
                    if isinstance(sub, dict) and sub.get("airbyte_secret"):
                        keys.add(name)
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk(spec)
    return keys


def collect_secrets(config: Any, keys: Iterable[str] = ()) -> list[str]:
    """Every secret value in a config: values under secret keys, and passwords in jdbc params."""
    secret_keys = KNOWN_SECRET_KEYS | set(keys)
    found: list[str] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                if key in secret_keys and value not in (None, "", [], {}):
                    found.extend(_leaves(value))
                elif key == "jdbc_url_params" and isinstance(value, str):
                    for part in value.split("&"):
                        name, _, val = part.partition("=")
                        if "password" in name.lower() and val:
                            found.append(val)
                else:
                    walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk(config)
    return found


def _leaves(value: Any) -> list[str]:
    if isinstance(value, dict):
        return [leaf for v in value.values() for leaf in _leaves(v)]
    if isinstance(value, list):
        return [leaf for v in value for leaf in _leaves(v)]
    return [str(value)] if value not in (None, "") else []


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
