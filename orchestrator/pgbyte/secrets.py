"""Secret masking for everything pgbyte prints, logs or stores.

Which values are secrets, and how they are masked, is pgbyte-common's rule (pgbyte_common.secrets),
the connectors' too: one Masker for all three programs.
"""

from __future__ import annotations

from pgbyte_common.secrets import (  # noqa: F401 (re-exports)
    Masker,
    collect_secrets,
    secret_keys_from_spec,
)
