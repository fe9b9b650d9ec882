"""Which values of a config are secrets: the one rule the connectors and pgbyte mask by.

Secrets are the values under keys a connector's spec marks `airbyte_secret`, plus well-known
secret key names wherever they appear (so a config is masked even before its spec is known,
e.g. when `spec` itself fails), plus passwords inside `jdbc_url_params`; and how they are
masked in free text (Masker).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any
from urllib.parse import unquote

import orjson

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
                    found.update(_jdbc_passwords(value))
                else:
                    walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk(config)
    return sorted(found, key=len, reverse=True)


# `;key=value` in jdbc_url_params (JDBC's other separator, which users write and the connection
# does not split at): each one, overlapping, the value up to the next `&`.
_SEMI_PAIR = re.compile(r"(?=;([^&;=]*)=([^&]*))")
_MIN_FRAGMENT = 4  # a shorter piece of a `;`-cut password is too common a word to mask


def _jdbc_passwords(params: str) -> set[str]:
    """Passwords in jdbc_url_params in every form an error may quote them: as the connection
    reads them (pairs split at `&`, key and value %XX-decoded, spaces stripped), and, after a
    `;` the connection does not split at, as run into the previous key's value (lower-cased
    when that key is sslmode) or cut at the next `;`."""
    found: set[str] = set()
    for part in params.strip().lstrip("?").split("&"):
        key, sep, value = part.partition("=")
        if sep and "password" in unquote(key).lower():
            # and cut at a `;`, as whoever wrote `password=a;sslpassword=b` meant it
            first = value.split(";")[0]
            forms = (value, unquote(value).strip(), value.strip(), first, unquote(first).strip())
            found.update(f for f in forms if f)
    for match in _SEMI_PAIR.finditer(params):
        if "password" not in unquote(match.group(1)).lower():
            continue
        whole = match.group(2)
        for form in (whole, unquote(whole), whole.split(";")[0], unquote(whole.split(";")[0])):
            form = form.strip()
            if len(form) >= _MIN_FRAGMENT:
                found.update((form, form.lower()))
            elif form:
                found.add(form)
    return found


def _leaves(value: Any) -> list[str]:
    if isinstance(value, dict):
        return [leaf for v in value.values() for leaf in _leaves(v)]
    if isinstance(value, list):
        return [leaf for v in value for leaf in _leaves(v)]
    return [str(value)] if value not in (None, "") else []


MASK = "****"
_MIN_LINE = 8  # shorter lines of a multi-line secret are too common to mask ("-----" etc.)
# A secret this short is masked only where it stands apart from letters and digits (as a
# config value appears: "password=x&", "\"x\"", ":x@"): inside words it is no secret, and
# masking it there made every message unreadable ("une****pected", "inde****").
_SHORT = 4


def _percent_pattern(secret: str) -> re.Pattern[str]:
    """The secret percent-encoded as a URI may write it: each character as itself or as its
    UTF-8 bytes' %XX (either case: `p%40ss`, `p%40ss%21`, `p%40Ss%2f`), a space also as `+`.
    Any character may be encoded (Java's URLEncoder writes `~` as %7E). Matches without a %XX
    are left to the plain forms (_encoded_mask)."""
    parts = []
    for ch in secret:
        hexes = "".join(
            f"%[{h[0]}{h[0].lower()}][{h[1]}{h[1].lower()}]"
            for h in (f"{b:02X}" for b in ch.encode())
        )
        alts = [re.escape(ch), hexes] + (["\\+"] if ch == " " else [])
        parts.append("(?:" + "|".join(alts) + ")")
    return re.compile("".join(parts))


def _encoded_mask(match: re.Match[str]) -> str:
    return MASK if _PERCENT_XX.search(match.group(0)) else match.group(0)


_PERCENT_XX = re.compile(r"%[0-9A-Fa-f]{2}")


def _quoted_repr(text: str) -> str:
    """`text` as a Python repr of a longer string holding both quote kinds writes it (`'` as
    `\\'`): an error message quoting a value that contains the secret and a `"`."""
    return repr(text + "'\"")[1:-4]


class Masker:
    """Replaces every known secret in a text with ****, longest first.

    Only free text is masked (log lines, error messages, stderr), never a message's structure: a
    short password must not rewrite a stream name, a key or a number in a CATALOG or a STATE
    (the CDK masks the same way). Each secret is masked as it is, as it appears escaped inside
    JSON and inside a Python repr (error messages quote values either way: a PEM key's newlines
    become two characters there), percent-encoded as in a URI and, for multi-line values such
    as PEM keys, line by line.
    """

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self._variants: list[str] = []
        self._encoded: dict[str, re.Pattern[str]] = {}
        self.add(secrets)

    def add(self, secrets: Iterable[str]) -> None:
        variants = set(self._variants)
        encoded = self._encoded
        for secret in secrets:
            if not secret:
                continue
            forms = {secret, orjson.dumps(secret).decode()[1:-1], repr(secret)[1:-1]}
            forms.add(_quoted_repr(secret))
            # quoted twice: a repr of a message holding a repr (a TRACE's internal_message)
            variants.update(forms, (_quoted_repr(form) for form in forms))
            for line in secret.splitlines():
                if len(line.strip()) >= _MIN_LINE:
                    variants.add(line.strip())
            # (not a short one: its %XX forms are as common as it is, `@x` in `%40xample`)
            if len(secret) >= _SHORT and secret not in encoded:
                encoded[secret] = _percent_pattern(secret)
        self._variants = sorted(variants, key=len, reverse=True)
        self._short = {
            v: re.compile(rf"(?<![A-Za-z0-9_]){re.escape(v)}(?![A-Za-z0-9_])")
            for v in self._variants
            if len(v) < _SHORT
        }

    def mask(self, text: str) -> str:
        for variant in self._variants:
            if variant in text:
                short = self._short.get(variant)
                text = short.sub(MASK, text) if short else text.replace(variant, MASK)
        if "%" in text:
            for pattern in self._encoded.values():
                text = pattern.sub(_encoded_mask, text)
        return text

    def mask_bytes(self, data: bytes) -> bytes:
        return self.mask(data.decode("utf-8", "replace")).encode()
