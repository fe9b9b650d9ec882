"""The connector command line (spec/check/discover/read/write), parsed without importing the CDK.

Same verbs and flags as the CDK's AirbyteEntrypoint, so Airbyte's platform and PyAirbyte drive
either path identically.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

import orjson

from pgbyte_common.errors import ConfigError
from pgbyte_common.json_lines import decimal_loads, may_round


def build_parser(prog: str, verbs: tuple[str, ...]) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog, description=f"{prog}: an Airbyte connector")
    sub = parser.add_subparsers(dest="command", required=True, metavar="{" + ",".join(verbs) + "}")
    for verb in verbs:
        cmd = sub.add_parser(verb)
        if verb != "spec":
            cmd.add_argument("--config", required=True, help="path to the config JSON")
        if verb in ("read", "write"):
            cmd.add_argument("--catalog", required=True, help="path to the configured catalog")
        if verb == "read":
            cmd.add_argument("--state", help="path to the state JSON")
        cmd.add_argument("--debug", action="store_true", help="log at DEBUG level")
    return parser


def asks_help(argv: list[str]) -> bool:
    """`-h`/`--help` anywhere: argparse's usage, not the verb (`spec --help` printed the spec)."""
    return any(arg in ("-h", "--help") for arg in argv)


def load_json_file(path: str | Path, what: str) -> Any:
    """Read a JSON file named on the command line; errors name the file and the problem."""
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        hint = ""
        if os.environ.get("AIRBYTE_ENTRYPOINT"):  # in our image: the file comes from a mount
            hint = (
                " In a container the file must be mounted (docker run -v "
                f"HOSTDIR:{Path(path).parent}:ro) and readable by uid {os.getuid()} (chown or "
                "chmod it on the host)."
            )
        raise ConfigError(f"Cannot read the {what} file {path}: {exc.strerror}.{hint}") from None
    try:
        if what == "state" and may_round(data):
            # A cursor past 64 bits, or of more digits than a double holds, exactly: orjson
            # would read it rounded and the read resume past rows (json_lines.py).
            return decimal_loads(data)
        return orjson.loads(data) if data.strip() else None
    except ValueError as exc:  # orjson.JSONDecodeError is one
        raise ConfigError(f"The {what} file {path} is not valid JSON: {exc}.") from None
