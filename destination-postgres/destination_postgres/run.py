"""Console entry point of `destination-postgres`."""

from __future__ import annotations

import sys


def run() -> None:
    print("destination-postgres: not implemented yet", file=sys.stderr)
    sys.exit(2)
