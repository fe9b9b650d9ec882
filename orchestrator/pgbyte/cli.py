"""The `pgbyte` command line."""

from __future__ import annotations

import sys


def main() -> None:
    print("pgbyte: not implemented yet", file=sys.stderr)
    sys.exit(2)
