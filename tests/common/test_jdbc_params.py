"""jdbc_url_params as the session sees them: currentSchema and options together, in either
order, and a quoted schema name with a space (libpq splits options at spaces)."""

from __future__ import annotations

import pytest
from pgbyte_common.connection import ConnectionSettings, parse_jdbc_url_params
from pgbyte_common.errors import ConfigError


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


@pytest.mark.parametrize(
    ("params", "sslmode"),
    [("requiressl=1", "require"), ("requiressl=0", "prefer"),
     ("sslmode=verify-full&requiressl=0", "verify-full"),
     ("requiressl=0&sslmode=verify-full", "verify-full"), ("SSLMODE=Require", "require")],
)  # fmt: skip
def test_requiressl_is_an_sslmode_that_an_sslmode_beside_it_overrides(
    params: str, sslmode: str
) -> None:
    """libpq's old requiressl reads as sslmode require/prefer, in either order beside an sslmode
    that wins (as in pgjdbc); any case of sslmode is lowered for libpq."""
    assert parse_jdbc_url_params(params)["sslmode"] == sslmode


def test_pgjdbc_tuning_parameters_are_taken_and_unknown_ones_named() -> None:
    """pgjdbc's own knobs that Airbyte configs carry (prepareThreshold=0 for pgbouncer,
    charSet, sslNegotiation, ...) mean nothing to libpq: taken and left out, never refused; a
    key neither pgjdbc nor libpq knows is refused by name."""
    taken = ("prepareThreshold=0&charSet=UTF8&sslNegotiation=postgres&socketTimeout=30"
             "&hideUnprivilegedObjects=true&ApplicationName=etl")  # fmt: skip
    assert parse_jdbc_url_params(taken) == {"application_name": "etl"}
    with pytest.raises(ConfigError, match=r"unsupported parameter\(s\) fooBar\."):
        parse_jdbc_url_params("fooBar=1&prepareThreshold=0")
