"""What is wrong with a `--catalog` file that is no configured catalog, said so a person can fix it.

The usual mistake is handing `read` or `write` what `discover` printed: its CATALOG message, or
the catalog inside it, whose streams are not wrapped as {"stream": ..., "sync_mode": ...}.
"""

from __future__ import annotations

from typing import Any

_HOW = (
    ' --catalog takes a configured catalog: {"streams": [{"stream": <a discovered stream>, '
    '"sync_mode": "full_refresh", "destination_sync_mode": "overwrite"}, ...]} (the README\'s '
    "jq line makes one from discover's output)."
)


def catalog_shape_problem(raw: Any, what: str) -> str | None:
    """The error for a catalog that is not shaped as a configured one, or None if it is.
    `what`: how the message names it ("The catalog", "The configured catalog")."""
    if isinstance(raw, dict) and raw.get("type") == "CATALOG" and "catalog" in raw:
        return f"{what} is discover's CATALOG message, not a configured catalog.{_HOW}"
    if not isinstance(raw, dict) or not isinstance(raw.get("streams"), list):
        return f'{what} must be a JSON object with a "streams" list.{_HOW}'
    entries = raw["streams"]
    if entries and all(isinstance(e, dict) and "stream" not in e and "name" in e for e in entries):
        return f"{what} is a discovered catalog (its streams are not configured).{_HOW}"
    return None
