"""Code both pgbyte connectors share: config → libpq connection, SSL, errors, lean protocol output.

Kept free of airbyte_cdk imports on purpose: importing the CDK costs about a second per process,
and the connectors' `read`/`write` hot paths do not need it (DESIGN.md §5).
"""
