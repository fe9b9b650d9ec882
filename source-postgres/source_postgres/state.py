"""Stream state of a full-refresh read.

A full refresh has no cursor; like the CDK's FinalStateCursor it ends each stream with a state
that says so, which the platform stores and sends back unchanged.
"""

from __future__ import annotations

from typing import Any

NO_CURSOR_STATE_KEY = "__ab_no_cursor_state_message"


def full_refresh_state() -> dict[str, Any]:
    return {NO_CURSOR_STATE_KEY: True}
