"""libpq's environment variables, which the connectors' console scripts ignore.

libpq takes from the environment whatever a connection string leaves unset: a password
(PGPASSWORD), session settings (PGOPTIONS: a statement_timeout of 1 ms), a service file,
certificates, a required authentication method, SSL negotiation, protocol versions... Only the
config decides how a connector connects, as with Airbyte's JDBC connectors. The settings every
connection string gives (host, port, database, user, sslmode) are listed too: no surprise
either way. The console scripts remove them from their own process at start (a connector's
process: nothing else in it connects by the environment); a program using the connector
classes in-process keeps its environment.
"""

from __future__ import annotations

import os

LIBPQ_ENVIRONMENT = (
    "PGHOST", "PGHOSTADDR", "PGPORT", "PGDATABASE", "PGUSER", "PGPASSWORD", "PGPASSFILE",
    "PGSERVICE", "PGSERVICEFILE", "PGSYSCONFDIR", "PGOPTIONS", "PGAPPNAME", "PGSSLMODE",
    "PGREQUIRESSL", "PGSSLNEGOTIATION", "PGSSLCOMPRESSION", "PGSSLCERT", "PGSSLKEY",
    "PGSSLCERTMODE", "PGSSLROOTCERT", "PGSSLCRL", "PGSSLCRLDIR", "PGSSLSNI", "PGREQUIREPEER",
    "PGSSLMINPROTOCOLVERSION", "PGSSLMAXPROTOCOLVERSION", "PGMINPROTOCOLVERSION",
    "PGMAXPROTOCOLVERSION", "PGGSSENCMODE", "PGKRBSRVNAME", "PGGSSLIB", "PGGSSDELEGATION",
    "PGCHANNELBINDING", "PGREQUIREAUTH", "PGCONNECT_TIMEOUT", "PGCLIENTENCODING",
    "PGTARGETSESSIONATTRS", "PGLOADBALANCEHOSTS", "PGDATESTYLE", "PGTZ", "PGGEQO",
)  # fmt: skip


def forget_libpq_environment() -> None:
    """Remove LIBPQ_ENVIRONMENT from this process's environment."""
    for name in LIBPQ_ENVIRONMENT:
        os.environ.pop(name, None)
