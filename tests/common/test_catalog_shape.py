"""`read` and `write` handed what `discover` printed, instead of a configured catalog: the error
says which it is and how to make a configured one (it said only 'must be a JSON object with a
"streams" list', or 'lacks stream.name')."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest


def console_script(name: str) -> str:
    return str(Path(sys.executable).parent / name)  # the venv's, as the other tests here run


@pytest.mark.parametrize("script", ["source-postgres", "destination-postgres"])
def test_discover_output_as_the_catalog_is_named(
    script, tmp_path, source_conn, source_config, dest_config
) -> None:
    source_conn.execute("CREATE TABLE shapes (id int PRIMARY KEY)")
    config = tmp_path / "source.json"
    config.write_text(json.dumps(source_config))
    found = subprocess.run(
        [console_script("source-postgres"), "discover", "--config", str(config)],
        capture_output=True, text=True, timeout=120, check=True,
    )  # fmt: skip
    message = json.loads(found.stdout.splitlines()[-1])
    verb, config_for = ("read", source_config) if script == "source-postgres" else (
        "write", dest_config)  # fmt: skip
    (tmp_path / "config.json").write_text(json.dumps(config_for))
    for shape, said in [
        (message, "is discover's CATALOG message, not a configured catalog"),
        (message["catalog"], "is a discovered catalog (its streams are not configured)"),
    ]:
        (tmp_path / "catalog.json").write_text(json.dumps(shape))
        run = subprocess.run(
            [console_script(script), verb, "--config", str(tmp_path / "config.json"),
             "--catalog", str(tmp_path / "catalog.json")],
            input="", capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        errors = [json.loads(line)["trace"]["error"] for line in run.stdout.splitlines()
                  if '"ERROR"' in line]  # fmt: skip
        assert run.returncode == 1 and len(errors) == 1, run.stdout + run.stderr
        assert errors[0]["failure_type"] == "config_error"
        assert said in errors[0]["message"], errors[0]["message"]
        assert "--catalog takes a configured catalog" in errors[0]["message"]
