"""Connection files: YAML naming a source, a destination, and how streams map between them.

```yaml
name: full-refresh-overwrite        # optional; defaults to the file's stem
source:      {command: source-postgres, config: {...}}     # or image: <docker image> (+ network)
destination: {command: destination-postgres, config: {...}}
prefix: overwrite_                  # prepended to every destination stream name
namespace: destination              # source | destination | a format "raw_${SOURCE_NAMESPACE}"
sync_mode: full_refresh             # default for every stream (extension)
destination_sync_mode: overwrite    # default for every stream (extension)
streams: [...]                      # omitted: every discovered stream
state: .pgbyte/state/<name>.json    # relative paths are relative to the connection file's directory
```

`${VAR}` anywhere in a string value is replaced by the environment variable VAR; a missing
variable is an error naming it (and the file), never an empty string. `$${VAR}` stays literal, and
so does `${SOURCE_NAMESPACE}` in the top-level `namespace:` (the custom format), where it is the
platform's own placeholder; anywhere else (`prefix:`, a stream's `namespace:`, a config value) it
is an environment variable like any other.

Mistakes visible in the file alone are refused here, before any connector starts: besides
unknown keys and values, `incremental` with `overwrite` and a stream listed twice. Those that
need the discovered catalog (an unknown or ambiguous stream, a mode the stream cannot sync) are
refused by pgbyte.catalog with the same ConnectionFileError, before any `read` or `write`.
"""

from __future__ import annotations

import datetime
import os
import re
import shlex
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from pgbyte.state import stream_label

SYNC_MODES = ("full_refresh", "incremental")
DESTINATION_SYNC_MODES = ("overwrite", "append", "append_dedup")
SOURCE_NAMESPACE_PLACEHOLDER = "${SOURCE_NAMESPACE}"
_VAR = re.compile(r"\$(\$?)\{([A-Za-z_][A-Za-z0-9_]*)\}")
_TOP_KEYS = {
    "name", "source", "destination", "prefix", "namespace", "streams", "state",
    "sync_mode", "destination_sync_mode",
}  # fmt: skip
_STREAM_KEYS = {
    "name", "namespace", "sync_mode", "destination_sync_mode", "cursor_field", "primary_key",
}  # fmt: skip


class ConnectionFileError(ValueError):
    """The connection file is unreadable or wrong; the message names the file and the key.

    Raised while loading the file, or once the discovered catalog shows that the file asks for
    something the source's streams do not have; either way no data moved (pgbyte exits 2)."""


@dataclass(frozen=True)
class ConnectorRef:
    """Where a connector comes from (a command or a Docker image) and the config it gets."""

    role: str  # "source" or "destination"
    config: dict[str, Any] = field(repr=False)
    command: tuple[str, ...] | None = None
    image: str | None = None
    network: str | None = None

    def describe(self) -> str:
        return self.image if self.image else " ".join(self.command or ())


@dataclass(frozen=True)
class StreamChoice:
    """One stream the connection file selects, with the modes it asks for."""

    name: str
    namespace: str | None = None
    sync_mode: str | None = None
    destination_sync_mode: str | None = None
    cursor_field: tuple[str, ...] | None = None
    primary_key: tuple[tuple[str, ...], ...] | None = None


@dataclass(frozen=True)
class Connection:
    """A parsed connection file."""

    name: str
    path: Path
    source: ConnectorRef
    destination: ConnectorRef
    prefix: str = ""
    namespace: str = "source"
    namespace_given: bool = False  # the file says namespace: (else the default, source)
    streams: tuple[StreamChoice, ...] | None = None
    sync_mode: str = "full_refresh"
    destination_sync_mode: str | None = None
    state_path: Path = Path(".pgbyte/state/connection.json")

    @property
    def history_path(self) -> Path:
        """The history file lives beside the state file: `<name>.history.jsonl`."""
        return self.state_path.with_name(self.state_path.stem + ".history.jsonl")


def substitute_env(
    node: Any, env: Mapping[str, str], where: str, *, keep: set[str], strict: bool = True
) -> Any:
    """Replace ${VAR} in every string of a YAML tree; a missing variable raises naming it
    (or, not strict — for commands that never start a connector — becomes empty)."""
    if isinstance(node, dict):
        return {
            k: substitute_env(v, env, f"{where}.{k}", keep=keep, strict=strict)
            for k, v in node.items()
        }
    if isinstance(node, list):
        return [
            substitute_env(v, env, f"{where}[{i}]", keep=keep, strict=strict)
            for i, v in enumerate(node)
        ]
    if not isinstance(node, str):
        return node

    def repl(match: re.Match[str]) -> str:
        escaped, var = match.group(1), match.group(2)
        if var in keep:  # escaped or not: the mapping step tells them apart (map_namespace)
            return match.group(0)
        if escaped:
            return "${" + var + "}"
        if var not in env:
            if not strict:
                return ""
            hint = ""
            if "${" + var + "}" == SOURCE_NAMESPACE_PLACEHOLDER:
                # Someone expecting the platform's placeholder here gets told where it works.
                hint = (
                    f" ({SOURCE_NAMESPACE_PLACEHOLDER} is the source's namespace only in the "
                    "top-level namespace: format)"
                )
            raise ConnectionFileError(
                f"environment variable {var} is not set (used at {where}){hint}; export it or "
                f"write the value into the connection file"
            )
        return env[var]

    return _VAR.sub(repl, node)


def _join_surrogates(value: Any) -> Any:
    """YAML reads "\ud83d\ude00" (JSON's escape of 😀) as two lone surrogates; join every such
    pair into its character, as JSON does, so the name matches the source's stream."""
    if isinstance(value, str):
        if any("\ud800" <= ch <= "\udfff" for ch in value):
            return value.encode("utf-16", "surrogatepass").decode("utf-16", "surrogatepass")
        return value
    if isinstance(value, dict):
        return {_join_surrogates(k): _join_surrogates(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_join_surrogates(v) for v in value]
    return value


class _StrictLoader(yaml.SafeLoader):
    """safe_load that refuses a key written twice in one mapping: YAML says keys are unique,
    and PyYAML's last-one-wins would silently drop the first value (a second `prefix:`)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[tuple[str, str]] = set()
        for key_node, _ in node.value:
            # Keys written here, not those a `<<: *anchor` merge brings (which they override).
            if not isinstance(key_node, yaml.ScalarNode) or key_node.tag.endswith(":merge"):
                continue
            key = (key_node.tag, key_node.value)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"key {key_node.value!r} appears twice in one mapping",
                    key_node.start_mark,
                )  # fmt: skip
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def _yaml_problem(exc: yaml.YAMLError) -> str:
    """What is wrong and where (line, column) — never the line itself: it may hold a password
    written in the file."""
    if isinstance(exc, yaml.MarkedYAMLError):
        mark = exc.problem_mark or exc.context_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        parts = [p for p in (exc.context, exc.problem) if p]
        return where + ("; ".join(parts) or type(exc).__name__)
    return type(exc).__name__


def load_connection(
    path: str | Path, *, env: Mapping[str, str] | None = None, strict: bool = True
) -> Connection:
    """Read and check a connection file; every problem is a ConnectionFileError naming it.

    `strict=False` lets missing environment variables in the connectors' configs pass as empty
    strings: for commands that only read the state or history and never hand a config to a
    connector."""
    path = Path(path)
    try:
        raw = yaml.load(path.read_text(), Loader=_StrictLoader)  # a SafeLoader: no objects
    except FileNotFoundError:
        raise ConnectionFileError(f"{path}: no such connection file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConnectionFileError(f"{path}: cannot read it ({exc})") from None
    except yaml.YAMLError as exc:
        raise ConnectionFileError(f"{path}: not valid YAML ({_yaml_problem(exc)})") from None
    if not isinstance(raw, dict):
        raise ConnectionFileError(f"{path}: expected a mapping with source: and destination:")
    raw = _join_surrogates(raw)
    # `x-...` keys are the file's own (Docker Compose's convention): a place for the anchors
    # its merge keys use (`x-pg: &pg {host: ...}`, then `config: {<<: *pg, ...}`).
    raw = {k: v for k, v in raw.items() if not (isinstance(k, str) and k.startswith("x-"))}
    unknown = sorted(set(raw) - _TOP_KEYS)
    if unknown:
        raise ConnectionFileError(
            f"{path}: unknown key(s) {', '.join(unknown)}; known: {', '.join(sorted(_TOP_KEYS))}"
        )
    environ = os.environ if env is None else env
    # Only the namespace format keeps the platform's ${SOURCE_NAMESPACE} for the mapping step:
    # elsewhere it means nothing to pgbyte, and kept literally it would silently end up in a
    # table name (`prefix: p_${SOURCE_NAMESPACE}_`).
    # Not strict spares only the connectors' configs (their secrets): name:, state: and the
    # streams still decide which state file a command reads or resets, and what it says.
    data = {
        key: substitute_env(value, environ, f"{path.name}.{key}", keep=_keep(key),
                            strict=strict or key not in ("source", "destination"))
        for key, value in raw.items()
    }  # fmt: skip
    name = str(data.get("name") or path.stem)
    if "/" in name or "\\" in name or name in (".", ".."):
        # The name makes the default state file's name: it must stay in .pgbyte/state.
        raise ConnectionFileError(
            f"{path}: name must be usable as a file name: no / or \\, not . or .. (got {name!r})"
        )
    base = path.resolve().parent
    state = Path(str(data.get("state") or f".pgbyte/state/{name}.json")).expanduser()
    sync_mode = _choice(data.get("sync_mode", "full_refresh"), SYNC_MODES, path, "sync_mode")
    dest_mode = data.get("destination_sync_mode")
    if dest_mode is not None:
        dest_mode = _choice(dest_mode, DESTINATION_SYNC_MODES, path, "destination_sync_mode")
    namespace = data.get("namespace", "source")
    if not isinstance(namespace, str) or not namespace.strip():
        raise ConnectionFileError(
            f"{path}: namespace must be source, destination or a format such as "
            f'"raw_${{SOURCE_NAMESPACE}}"'
        )
    prefix = data.get("prefix") or ""
    if not isinstance(prefix, str):
        raise ConnectionFileError(f"{path}: prefix must be a string, got {prefix!r}")
    state_path = state if state.is_absolute() else base / state
    if state_path.is_dir():
        raise ConnectionFileError(
            f"{path}: state: {state} is a directory; name a file in it, e.g. "
            f"{Path(state) / (name + '.json')}"
        )
    streams = _streams(data.get("streams"), path)
    _refuse_incremental_overwrite(path, sync_mode, dest_mode, streams)
    return Connection(
        name=name,
        path=path,
        source=_connector(data.get("source"), "source", path),
        destination=_connector(data.get("destination"), "destination", path),
        prefix=prefix,
        namespace=namespace.strip(),
        namespace_given="namespace" in data,
        streams=streams,
        sync_mode=sync_mode,
        destination_sync_mode=dest_mode,
        state_path=state_path,
    )


def _keep(key: str) -> set[str]:
    """The variables a top-level key leaves in place: the placeholder, in namespace: only."""
    return {"SOURCE_NAMESPACE"} if key == "namespace" else set()


def incremental_overwrite_problem(what: str) -> str:
    """Why `what` (a stream, or the connection's defaults) cannot sync incremental | overwrite."""
    # Airbyte offers no such mode: each sync would replace the tables with only the rows
    # changed since the last one.
    return (
        f"{what}: incremental | overwrite would replace the tables with only the rows changed "
        "since the last sync; use incremental with destination_sync_mode append or "
        "append_dedup, or full_refresh with overwrite"
    )


def _refuse_incremental_overwrite(
    path: Path,
    sync_mode: str,
    dest_mode: str | None,
    streams: tuple[StreamChoice, ...] | None,
) -> None:
    """incremental | overwrite needs no discovery to be seen wrong: refuse it before any
    connector starts. The defaults only matter where some stream uses them."""
    if streams is None:
        if sync_mode == "incremental" and dest_mode == "overwrite":
            raise ConnectionFileError(
                incremental_overwrite_problem(f"{path}: sync_mode and destination_sync_mode")
            )
        return
    for i, choice in enumerate(streams):
        stream_sync = choice.sync_mode or sync_mode
        stream_dest = choice.destination_sync_mode or dest_mode
        if stream_sync == "incremental" and stream_dest == "overwrite":
            label = stream_label(choice.name, choice.namespace)
            problem = incremental_overwrite_problem(f"{path}: streams[{i}] ({label})")
            raise ConnectionFileError(problem)


def _choice(value: Any, allowed: tuple[str, ...], path: Path, key: str) -> str:
    if value not in allowed:
        raise ConnectionFileError(
            f"{path}: {key} must be one of {', '.join(allowed)}; got {value!r}"
        )
    return str(value)


def _connector(node: Any, role: str, path: Path) -> ConnectorRef:
    if not isinstance(node, dict):
        raise ConnectionFileError(f"{path}: {role}: must be a mapping with command: or image:")
    unknown = sorted(set(node) - {"command", "image", "network", "config"})
    if unknown:
        raise ConnectionFileError(f"{path}: {role}: unknown key(s) {', '.join(unknown)}")
    config = node.get("config", {})
    if not isinstance(config, dict):
        raise ConnectionFileError(f"{path}: {role}.config must be a mapping")
    problem = _not_json(config, f"{role}.config")
    if problem:
        raise ConnectionFileError(f"{path}: {problem}")
    command, image = node.get("command"), node.get("image")
    if (command is None) == (image is None):
        raise ConnectionFileError(f"{path}: {role}: give exactly one of command: or image:")
    if image is not None:
        if not isinstance(image, str) or not image.strip():
            raise ConnectionFileError(f"{path}: {role}.image must be an image name")
        network = node.get("network")
        return ConnectorRef(role, config, image=image.strip(), network=network and str(network))
    if node.get("network") is not None:
        raise ConnectionFileError(f"{path}: {role}.network only applies to image:")
    if isinstance(command, str):
        argv = tuple(shlex.split(command))
    elif isinstance(command, list) and all(isinstance(c, str | int | float) for c in command):
        argv = tuple(str(c) for c in command)
    else:
        raise ConnectionFileError(f"{path}: {role}.command must be a string or a list of strings")
    if not argv:
        raise ConnectionFileError(f"{path}: {role}.command is empty")
    if "/" in argv[0]:
        # `./bin/source-postgres` lies beside the connection file, like state:, wherever
        # pgbyte runs from; `~/bin/…` in the home folder (a bare name is looked up on PATH).
        program = Path(argv[0]).expanduser()
        argv = (str(program if program.is_absolute() else path.resolve().parent / program),
                *argv[1:])  # fmt: skip
    return ConnectorRef(role, config, command=argv)


_JSON_INTS = (-(2**63), 2**64 - 1)  # what orjson writes; the config goes to the connector as JSON


def _not_json(node: Any, where: str) -> str | None:
    """Why a config value cannot be handed to a connector as JSON (a YAML key read as a
    boolean, an integer past 64 bits, a !!binary or !!set value), naming where; else None.
    Found here, it was a Python traceback when the config file was written."""
    if isinstance(node, dict):
        for key, value in node.items():
            if not isinstance(key, str):
                return (f"{where}: the key {key!r} is not a string (YAML reads on, off, yes, no "
                        "and bare numbers as values): quote it")  # fmt: skip
            problem = _not_json(value, f"{where}.{key}")
            if problem:
                return problem
        return None
    if isinstance(node, list):
        return next((p for i, v in enumerate(node) if (p := _not_json(v, f"{where}[{i}]"))), None)
    if isinstance(node, bool) or node is None or isinstance(node, str | float):
        return None
    if isinstance(node, int):
        if _JSON_INTS[0] <= node <= _JSON_INTS[1]:
            return None
        # (the value unsaid: it may be a password)
        return f"{where}: an integer out of JSON's 64-bit range; quote it"
    if isinstance(node, datetime.date):  # a bare YAML date: written as its ISO text
        return None
    return f"{where}: a {type(node).__name__} value cannot be passed to the connector as JSON"


def _streams(node: Any, path: Path) -> tuple[StreamChoice, ...] | None:
    if node is None:
        return None
    if not isinstance(node, list) or not node:
        raise ConnectionFileError(f"{path}: streams must be a non-empty list (or omitted)")
    streams: list[StreamChoice] = []
    seen: dict[tuple[str, str | None], int] = {}
    for i, item in enumerate(node):
        where = f"{path}: streams[{i}]"
        if isinstance(item, str):
            item = {"name": item}
        if not isinstance(item, dict) or not item.get("name"):
            raise ConnectionFileError(f"{where} needs a name")
        unknown = sorted(set(item) - _STREAM_KEYS)
        if unknown:
            raise ConnectionFileError(f"{where}: unknown key(s) {', '.join(unknown)}")
        sync_mode = item.get("sync_mode")
        if sync_mode is not None:
            _choice(sync_mode, SYNC_MODES, path, f"streams[{i}].sync_mode")
        dest_mode = item.get("destination_sync_mode")
        if dest_mode is not None:
            _choice(dest_mode, DESTINATION_SYNC_MODES, path, f"streams[{i}].destination_sync_mode")
        choice = StreamChoice(
            name=str(item["name"]),
            namespace=None if item.get("namespace") is None else str(item["namespace"]),
            sync_mode=sync_mode,
            destination_sync_mode=dest_mode,
            cursor_field=_path(item.get("cursor_field"), f"{where}.cursor_field"),
            primary_key=_key(item.get("primary_key"), f"{where}.primary_key"),
        )
        # The same entry twice needs no discovery to be seen; `users` and `public.users` naming
        # one stream is found once the catalog is known (pgbyte.catalog).
        first = seen.setdefault((choice.name, choice.namespace), i)
        if first != i:
            label = stream_label(choice.name, choice.namespace)
            raise ConnectionFileError(
                f"{path}: stream {label} is listed twice (streams[{first}] and streams[{i}]); "
                "remove one entry"
            )
        streams.append(choice)
    return tuple(streams)


def _path(value: Any, where: str) -> tuple[str, ...] | None:
    """cursor_field: `updated_at` or `[updated_at]` or a nested path `[a, b]`."""
    if value is None:
        return None
    if isinstance(value, str):
        return (value,)
    if isinstance(value, list) and value and all(isinstance(v, str) for v in value):
        return tuple(value)
    raise ConnectionFileError(f"{where} must be a field name or a list of names")


def _key(value: Any, where: str) -> tuple[tuple[str, ...], ...] | None:
    """primary_key: `id`, `[id, other]` or Airbyte's own `[[id], [other]]`."""
    if value is None:
        return None
    if isinstance(value, str):
        return ((value,),)
    if isinstance(value, list) and value:
        parts = []
        for part in value:
            if isinstance(part, str):
                parts.append((part,))
            elif isinstance(part, list) and part and all(isinstance(p, str) for p in part):
                parts.append(tuple(part))
            else:
                raise ConnectionFileError(f"{where}: {part!r} is not a field name or path")
        return tuple(parts)
    raise ConnectionFileError(f"{where} must be a field name or a list such as [[id]]")
