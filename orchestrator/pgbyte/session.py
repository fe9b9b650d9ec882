"""One command's working context: runners, secret masking, private files, short calls.

Config, catalog and state files handed to connectors live in a private directory (0700, files
0600, created with O_EXCL) that is removed when the session ends, whatever happens (after a
SIGKILL: by the next pgbyte command, private_dir.py).
"""

from __future__ import annotations

import os
import shutil
import threading
from collections.abc import Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from pathlib import Path
from typing import Any

import orjson

from pgbyte import private_dir
from pgbyte.catalog import validate_config
from pgbyte.connection import Connection
from pgbyte.protocol import CallResult, ConnectorError, LogFn, call, stop_process
from pgbyte.runner import ConnectorProcess, ConnectorRunner, make_runner
from pgbyte.secrets import Masker, collect_secrets, secret_keys_from_spec


class Cancelled(Exception):
    """Ctrl-C (SIGINT) or SIGTERM arrived; `signum` says which."""

    def __init__(self, signum: int) -> None:
        super().__init__(f"cancelled by signal {signum}")
        self.signum = signum


# A config host that means "this machine" to a local process but "the container" to an image.
LOOPBACK_HOSTS = frozenset({"localhost", "127.0.0.1", "::1"})


class Session:
    """Runners, masker and private files for one pgbyte command on one connection."""

    def __init__(self, conn: Connection, log: LogFn, cancel: threading.Event | None = None) -> None:
        self.conn = conn
        self.log = log
        self.cancel = cancel or threading.Event()
        self.cancel_signal = 2
        self.masker = Masker(collect_secrets(conn.source.config))
        self.masker.add(collect_secrets(conn.destination.config))
        self.source: ConnectorRunner = make_runner(conn.source)
        self.destination: ConnectorRunner = make_runner(conn.destination)
        for ref in (conn.source, conn.destination):
            host = ref.config.get("host") if isinstance(ref.config, dict) else None
            if ref.image and ref.network != "host" and host in LOOPBACK_HOSTS:
                log("WARN", f"pgbyte: the {ref.role} runs as image {ref.image} on Docker's "
                            f"default network, where host {host} is the container itself, not "
                            f"this machine: add `network: host` to the {ref.role} (or use an "
                            "address the container can reach).")  # fmt: skip
        self.dir = private_dir.make()  # mode 0700; a killed command's is removed next time
        self.live: set[ConnectorProcess] = set()
        self._lock = threading.Lock()
        self._configs: tuple[Path, Path] | None = None

    def __enter__(self) -> Session:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._stop_live()
        shutil.rmtree(self.dir, ignore_errors=True)

    def private_file(self, name: str, payload: Any) -> Path:
        """Write JSON readable by the owner only (0600 from creation, never wider)."""
        path = self.dir / name
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(orjson.dumps(payload))
        return path

    def track(self, proc: ConnectorProcess) -> None:
        with self._lock:
            self.live.add(proc)
        if self.cancel.is_set() and proc.poll() is None:
            # Started by a thread while the cancel stopped the live ones (it missed this one):
            # asked to stop, so its caller's read of the output ends instead of waiting on it
            # (the usual stop paths do the waiting).
            proc.terminate()

    def call(self, runner: ConnectorRunner, verb: str, config: Path | None) -> CallResult:
        return call(runner, verb, self.masker, config=config, log=self._quiet_log, track=self.track)

    def _quiet_log(self, level: str, text: str) -> None:
        """spec/check/discover chatter is DEBUG; their warnings and errors still show."""
        self.log("DEBUG" if level in ("INFO", "DEBUG", "TRACE") else level, text)

    def wait_all(self, futures: list[Future[Any]]) -> list[Any]:
        """Results of parallel calls; a cancel stops every connector still running."""
        pending = set(futures)
        while True:
            # Checked after the last call ends too: the signal that set it stops the
            # connectors, and the calls it ended would otherwise pass for failures of their own.
            if self.cancel.is_set():
                self._stop_live()
                raise Cancelled(self.cancel_signal)
            if not pending:
                return [f.result() for f in futures]
            _, pending = wait(pending, timeout=0.2, return_when=FIRST_COMPLETED)

    def _stop_live(self) -> None:
        with self._lock:
            live = list(self.live)
        for proc in live:
            stop_process(proc, grace=5)

    # -- the short verbs -------------------------------------------------------------------------
    def spec(self, result: CallResult, runner: ConnectorRunner) -> dict[str, Any]:
        message = result.first("SPEC")
        if result.exit_code != 0 or message is None:
            raise ConnectorError(
                result.failure(self.masker) if result.exit_code != 0 or result.errors
                else f"The {runner.label} ({runner.describe()}) printed no SPEC message",
            )  # fmt: skip
        spec = message.get("spec") or {}
        self.masker.add(
            collect_secrets(
                self.conn.source.config if runner is self.source else self.conn.destination.config,
                secret_keys_from_spec(spec.get("connectionSpecification") or {}),
            )
        )
        return spec

    def configs(self) -> tuple[Path, Path]:
        """The two config files (written once per session)."""
        if self._configs is None:
            self._configs = (
                self.private_file("source-config.json", self.conn.source.config),
                self.private_file("destination-config.json", self.conn.destination.config),
            )
        return self._configs

    def validated_specs(
        self, pool: ThreadPoolExecutor, source_config: Path, dest_config: Path, *extra: Any
    ) -> tuple[dict[str, Any], dict[str, Any], list[Any]]:
        """Both specs (fetched in parallel with `extra` calls), configs validated against them.

        The specs come back first (a spec is quick): the configs are validated while the
        `extra` calls (discover, check) still run, not after them."""
        specs = [
            pool.submit(self.call, self.source, "spec", None),
            pool.submit(self.call, self.destination, "spec", None),
        ]
        extras = [pool.submit(self.call, runner, verb, path) for runner, verb, path in extra]
        try:
            results = self.wait_all(specs)
            source_spec = self.spec(results[0], self.source)
            dest_spec = self.spec(results[1], self.destination)
            path = self.conn.path
            validate_config(source_spec, self.conn.source.config, "source", self.masker, path)
            validate_config(dest_spec, self.conn.destination.config, "destination", self.masker,
                            path)  # fmt: skip
        except BaseException:
            self._stop_live()  # the extra calls' answers are not needed any more
            raise
        return source_spec, dest_spec, self.wait_all(extras)

    def discovered(self, result: CallResult) -> dict[str, Any]:
        message = result.first("CATALOG")
        if result.exit_code != 0 or result.errors or message is None:
            raise ConnectorError(result.failure(self.masker))
        return message.get("catalog") or {"streams": []}

    def check(self) -> list[tuple[str, bool, str]]:
        """(role, ok, message) for the source and the destination."""
        source_config, dest_config = self.configs()
        with ThreadPoolExecutor(4) as pool:
            _, _, results = self.validated_specs(
                pool, source_config, dest_config,
                (self.source, "check", source_config), (self.destination, "check", dest_config),
            )  # fmt: skip
        runners = (self.source, self.destination)
        return [(r.label, *self._checked(res)) for r, res in zip(runners, results, strict=True)]

    def _checked(self, result: CallResult) -> tuple[bool, str]:
        """Whether a `check` call succeeded, and its message (masked)."""
        status = (result.first("CONNECTION_STATUS") or {}).get("connectionStatus") or {}
        ok = status.get("status") == "SUCCEEDED" and result.exit_code == 0
        text = str(status.get("message") or "") if status else result.failure(self.masker)
        return ok, self.masker.mask(text)

    def discover(self) -> tuple[dict[str, Any], dict[str, Any]]:
        """(discovered catalog, destination spec) — specs checked, configs validated."""
        source_config, dest_config = self.configs()
        with ThreadPoolExecutor(3) as pool:
            _, dest_spec, results = self.validated_specs(
                pool, source_config, dest_config, (self.source, "discover", source_config)
            )
        return self.discovered(results[0]), dest_spec

    def check_destination(self, schemas: Sequence[str] = ()) -> None:
        """The destination's check; ConnectorError when it fails. `schemas`: the schemas a
        command writes to, each probed (in parallel) instead of the config's `schema:`, which
        it may not use."""
        config = self.conn.destination.config
        if schemas and isinstance(config, dict):
            paths = [
                self.private_file(f"check-config-{i}.json", {**config, "schema": schema})
                for i, schema in enumerate(schemas)
            ]
        else:
            paths = [self.configs()[1]]
        with ThreadPoolExecutor(min(len(paths), 4)) as pool:
            calls = [pool.submit(self.call, self.destination, "check", path) for path in paths]
            results = self.wait_all(calls)
        for result in results:
            ok, text = self._checked(result)
            if not ok:
                raise ConnectorError(f"the destination's check failed: {text}")
