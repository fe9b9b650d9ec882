"""Console entry point of `source-postgres`."""

from __future__ import annotations

import sys


def run() -> None:
    print("source-postgres: not implemented yet", file=sys.stderr)
    sys.exit(2)
