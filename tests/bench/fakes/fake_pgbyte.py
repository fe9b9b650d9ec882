"""A tiny stand-in for `pgbyte sync`, used only to exercise the benchmark harness in its tests.

It reads the connection file (issue 4's YAML, ${VAR} from the environment), discovers, builds the
configured catalog, runs `source read | destination write` and saves the last echoed state.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import orjson
import yaml


def expand(value: Any) -> Any:
    if isinstance(value, str):
        return re.sub(r"\$\{(\w+)\}", lambda m: os.environ[m.group(1)], value)
    if isinstance(value, dict):
        return {k: expand(v) for k, v in value.items()}
    return [expand(v) for v in value] if isinstance(value, list) else value


def sync(conn_path: Path) -> int:
    conn = expand(yaml.safe_load(conn_path.read_text()))
    state_path = Path(conn["state"])
    with tempfile.TemporaryDirectory() as tmp:
        src_config, dst_config = Path(tmp, "src.json"), Path(tmp, "dst.json")
        src_config.write_bytes(orjson.dumps(conn["source"]["config"]))
        dst_config.write_bytes(orjson.dumps(conn["destination"]["config"]))
        src, dst = conn["source"]["command"], conn["destination"]["command"]
        found = subprocess.run([*src, "discover", "--config", str(src_config)],
                               capture_output=True, check=True).stdout  # fmt: skip
        streams = {s["name"]: s for s in orjson.loads(found.splitlines()[0])["catalog"]["streams"]}
        configured = []
        for entry in conn["streams"]:
            item = {"stream": streams[entry["name"]], "sync_mode": entry["sync_mode"],
                    "destination_sync_mode": entry["destination_sync_mode"],
                    "primary_key": entry.get("primary_key", [])}  # fmt: skip
            if "cursor_field" in entry:
                item["cursor_field"] = entry["cursor_field"]
            configured.append(item)
        catalog = Path(tmp, "catalog.json")
        catalog.write_bytes(orjson.dumps({"streams": configured}))
        read = [*src, "read", "--config", str(src_config), "--catalog", str(catalog)]
        if state_path.exists():
            read += ["--state", str(state_path)]
        source = subprocess.Popen(read, stdout=subprocess.PIPE)
        write = [*dst, "write", "--config", str(dst_config), "--catalog", str(catalog)]
        dest = subprocess.Popen(write, stdin=source.stdout, stdout=subprocess.PIPE)
        source.stdout.close()
        echoed = [orjson.loads(line)["state"] for line in dest.stdout]
        if source.wait() or dest.wait():
            return 1
    if echoed:
        state_path.parent.mkdir(parents=True, exist_ok=True)
        state_path.write_bytes(orjson.dumps(echoed[-1:]))
    return 0


def main(argv: list[str]) -> int:
    if argv[:1] == ["--help"]:
        print("usage: fake_pgbyte sync CONN")
        return 0
    return sync(Path(argv[1]))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
