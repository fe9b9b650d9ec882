"""Which values of a config are secrets: the one rule the connectors and pgbyte mask by.

Secrets are the values under keys a connector's spec marks `airbyte_secret`, plus well-known
secret key names wherever they appear (so a config is masked even before its spec is known,
e.g. when `spec` itself fails), plus passwords inside `jdbc_url_params`.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

# Names that are secret wherever they appear (Airbyte's Postgres specs mark these airbyte_secret).
SECRET_KEYS = frozenset(
    {
        "password", "client_key", "client_key_password", "tunnel_user_password", "ssh_key",
        "ca_certificate", "client_certificate", "private_key", "api_key", "access_token",
        "refresh_token", "client_secret", "secret", "token", "credentials_json",
        "service_account_key", "sslpassword",
    }
)  # fmt: skip


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
    """Every secret value in a config (nested objects included), longest first for masking:
    every leaf under a secret key, and passwords in jdbc_url_params."""
    secret_keys = SECRET_KEYS | set(keys)
    found: set[str] = set()

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                if key in secret_keys and value not in (None, "", [], {}):
                    found.update(_leaves(value))
                elif key == "jdbc_url_params" and isinstance(value, str):
                    for part in value.split("&"):
                        name, _, val = part.partition("=")
                        if "password" in name.lower() and val:
                            found.add(val)
                else:
                    walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk(config)
    return sorted(found, key=len, reverse=True)


def _leaves(value: Any) -> list[str]:
    if isinstance(value, dict):
        return [leaf for v in value.values() for leaf in _leaves(v)]
    if isinstance(value, list):
        return [leaf for v in value for leaf in _leaves(v)]
    return [str(value)] if value not in (None, "") else []
