"""Console entry point of `destination-postgres`.

`write` takes the lean path (no airbyte_cdk import: it costs about a second and its
per-message parsing is what we avoid); `spec` and `check` go through the CDK's Destination.
"""

from __future__ import annotations

import sys


def run() -> None:
    argv = sys.argv[1:]
    if argv and argv[0] == "write":
        from destination_postgres.lean import main

        sys.exit(main(argv))
    from destination_postgres.destination import DestinationPostgres

    DestinationPostgres().run(argv)
