"""Drive pgbyte's connectors through PyAirbyte, as a user would; run by .venv-pyairbyte's Python.

    .venv-pyairbyte/bin/python tests/pyairbyte/driver.py REQUEST.json RESULT.json
    .venv-pyairbyte/bin/python tests/pyairbyte/driver.py --serve

PyAirbyte pins its own airbyte-cdk and pydantic, so it lives in its own venv and the tests
(tests/pyairbyte/, in the project venv) run this script as a subprocess. A request names one
action and the connectors (a local executable or a Docker image); the result is JSON: what
PyAirbyte returned, or the exception it raised (type, message, and the connector log file
PyAirbyte pointed at), so that the tests can check both outcomes.

Importing PyAirbyte costs 10-30 s here, so the tests keep one `--serve` process per session: it
reads one request per stdin line (JSON with a "result_path"), writes the result to that file and
then prints SENTINEL on its own line (PyAirbyte's own progress output shares stdout).

Only PyAirbyte's public API is used (get_source, get_destination, check, discovered_catalog,
select_streams, read, get_records, get_default_cache, Destination.write), plus SQL on the DuckDB
cache to see exactly what landed there.
"""

from __future__ import annotations

import datetime as dt
import decimal
import json
import sys
import traceback
import uuid
from pathlib import Path
from typing import Any

import airbyte as ab
from airbyte.caches.base import CacheBase
from airbyte.caches.duckdb import DuckDBCache


def jsonable(value: Any) -> Any:
    """A JSON-safe rendering of a value read back from the cache (types tests compare)."""
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, decimal.Decimal):
        return str(value)
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    return value


def connector_kwargs(spec: dict[str, Any]) -> dict[str, Any]:
    """get_source/get_destination keyword arguments for a local executable or a Docker image."""
    if spec.get("docker_image"):
        return {"docker_image": spec["docker_image"], "use_host_network": True}
    return {"local_executable": spec["executable"]}


def get_source(request: dict[str, Any], *, select: bool = False) -> Any:
    """The source; with select, its streams selected (which runs discover, so check does not)."""
    spec = request["source"]
    source = ab.get_source(spec["name"], config=spec["config"], **connector_kwargs(spec))
    if request.get("cursor_keys"):
        source.set_cursor_keys(**request["cursor_keys"])
    if select and request.get("streams"):
        source.select_streams(request["streams"])
    elif select:
        source.select_all_streams()
    return source


def get_destination(request: dict[str, Any]) -> Any:
    spec = request["destination"]
    return ab.get_destination(spec["name"], config=spec["config"], **connector_kwargs(spec))


def get_cache(request: dict[str, Any]) -> DuckDBCache:
    """The test's own DuckDB cache, made exactly as get_default_cache() makes the default one
    (which lives under the project dir, one per session), or the default cache itself."""
    if not request.get("cache_dir"):
        return ab.get_default_cache()
    cache_dir = Path(request["cache_dir"])
    return DuckDBCache(db_path=cache_dir / "default_cache.duckdb", cache_dir=cache_dir)


def cache_rows(cache: CacheBase, stream: str) -> list[dict[str, Any]]:
    """Every row of a stream's table in the cache, ordered by the first column."""
    table = cache.processor.get_sql_table_name(stream)
    query = f'SELECT * FROM "{cache.schema_name}"."{table}" ORDER BY 1'
    return [jsonable(row) for row in cache.run_sql_query(query)]


def cache_state(cache: CacheBase, source_name: str) -> dict[str, Any]:
    """The per-stream state PyAirbyte stored in the cache after a read (what it passes next)."""
    provider = cache.get_state_provider(source_name=source_name, refresh=True)
    states = {}
    for message in provider.state_message_artifacts:
        stream = message.stream
        if stream is not None:
            states[stream.stream_descriptor.name] = message.model_dump(mode="json")
    return states


def do_check(request: dict[str, Any]) -> dict[str, Any]:
    get_source(request).check()
    return {}


def do_spec(request: dict[str, Any]) -> dict[str, Any]:
    source = get_source(request)
    source.validate_config()  # PyAirbyte validates the config against our spec's JSON schema
    return {"spec": source.config_spec}


def do_discover(request: dict[str, Any]) -> dict[str, Any]:
    source = get_source(request)
    return {
        "streams": source.get_available_streams(),
        "schemas": {s: source.get_stream_json_schema(s) for s in source.get_available_streams()},
        "catalog": source.discovered_catalog.model_dump(mode="json", exclude_none=True),
        "configured": source.get_configured_catalog().model_dump(mode="json", exclude_none=True),
    }


def do_read(request: dict[str, Any]) -> dict[str, Any]:
    source = get_source(request, select=True)
    cache = get_cache(request)
    result = source.read(cache=cache, force_full_refresh=bool(request.get("force_full_refresh")))
    streams = list(result.streams)
    return {
        "processed_records": result.processed_records,
        "streams": streams,
        "rows": {s: cache_rows(cache, s) for s in streams},
        "state": cache_state(cache, source.name),
    }


def do_get_records(request: dict[str, Any]) -> dict[str, Any]:
    source = get_source(request)
    # Hold the dataset while iterating: a LazyDataset that is garbage-collected sets its stop
    # event, so `list(source.get_records(s))` on the temporary yields nothing (PyAirbyte 0.71.3).
    dataset = source.get_records(request["stream"])
    return {"records": [jsonable(dict(r)) for r in dataset]}


def do_check_destination(request: dict[str, Any]) -> dict[str, Any]:
    get_destination(request).check()
    return {}


def do_write(request: dict[str, Any]) -> dict[str, Any]:
    """Source → PyAirbyte → destination: from a read into the cache ("via": "read_result"), or
    straight from the source without a cache, keeping the destination's state in the test's
    cache when one is named (so that a second write is incremental)."""
    source = get_source(request, select=True)
    destination = get_destination(request)
    force = bool(request.get("force_full_refresh"))
    if request.get("via") == "read_result":
        read_result = source.read(cache=get_cache(request), force_full_refresh=force)
        write_result = destination.write(read_result)
        return {"processed_records": write_result.processed_records}
    state_cache = get_cache(request) if request.get("cache_dir") else False
    write_result = destination.write(
        source, cache=False, state_cache=state_cache, force_full_refresh=force
    )
    states = {}
    if state_cache:
        provider = state_cache.get_state_provider(
            source_name=source.name, destination_name=destination.name, refresh=True
        )
        for message in provider.state_message_artifacts:
            if message.stream is not None:
                name = message.stream.stream_descriptor.name
                states[name] = message.model_dump(mode="json")
    return {"processed_records": write_result.processed_records, "destination_state": states}


ACTIONS = {
    "check": do_check,
    "spec": do_spec,
    "discover": do_discover,
    "read": do_read,
    "get_records": do_get_records,
    "check_destination": do_check_destination,
    "write": do_write,
}


def describe_error(exc: BaseException) -> dict[str, Any]:
    """What a PyAirbyte user sees of an exception, plus the connector log PyAirbyte kept."""
    log_file = getattr(exc, "log_file", None)
    original = getattr(exc, "original_exception", None)
    if log_file is None and original is not None:
        log_file = getattr(original, "log_file", None)
    log_text = ""
    if log_file and Path(str(log_file)).exists():
        log_text = Path(str(log_file)).read_text(encoding="utf-8", errors="replace")
    return {
        "ok": False,
        "error_type": type(exc).__name__,
        "error": str(exc),
        "log_text": log_text,
        "traceback": traceback.format_exc(),
    }


SENTINEL = "@@pgbyte-pyairbyte-driver-done@@"


def run(request: dict[str, Any], result_path: Path) -> None:
    """Run one request and write its result (never raises: failures are results too)."""
    try:
        result = {"ok": True, **ACTIONS[request["action"]](request)}
    except Exception as exc:
        result = describe_error(exc)
    result_path.write_text(json.dumps(result, default=str), encoding="utf-8")


def serve() -> int:
    for line in sys.stdin:
        if not line.strip():
            continue
        request = json.loads(line)
        run(request, Path(request["result_path"]))
        sys.stdout.write(f"\n{SENTINEL}\n")
        sys.stdout.flush()
    return 0


def main(argv: list[str]) -> int:
    if argv[1:] == ["--serve"]:
        return serve()
    run(json.loads(Path(argv[1]).read_text(encoding="utf-8")), Path(argv[2]))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
