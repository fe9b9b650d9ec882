"""jdbc_url_params as the session sees them: currentSchema and options together, in either
order, and a quoted schema name with a space (libpq splits options at spaces)."""

from __future__ import annotations

import pytest
from pgbyte_common.connection import ConnectionSettings


@pytest.mark.parametrize(
    "params",
    [
        "currentSchema=%22My%20Schema%22,public&options=-c%20work_mem%3D8MB",
        "options=-c%20work_mem%3D8MB&currentSchema=%22My%20Schema%22,public",
    ],
)
def test_current_schema_and_options_both_apply(source_conn, source_config, params: str) -> None:
    source_conn.execute('CREATE SCHEMA "My Schema"')
    settings = ConnectionSettings.from_config(
        {**source_config, "jdbc_url_params": params}, application_name="test"
    )
    with settings.connect() as conn:
        assert conn.execute("SHOW work_mem").fetchone() == ("8MB",)
        assert conn.execute("SELECT current_schemas(false)").fetchone() == (
            ["My Schema", "public"],
        )
