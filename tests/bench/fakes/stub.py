"""Behaves like a connector that is not implemented yet: says so on stderr and exits 2."""

import sys

print("not implemented yet", file=sys.stderr)
sys.exit(2)
