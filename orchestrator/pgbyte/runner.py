"""Launching connectors: one small interface, a subprocess implementation, a Docker hook.

The interface (what `pgbyte.sync` and `pgbyte.protocol` rely on)::

    class ConnectorRunner:
        label: str                              # "source" / "destination", used in messages
        def describe(self) -> str               # what runs: a command line or an image name
        def run(self, verb, *, config=None, catalog=None, state=None, stdin=False)
                -> ConnectorProcess

    class ConnectorProcess:
        stdout: BinaryIO                        # the connector's protocol output (raw, unbuffered)
        stderr: BinaryIO                        # its free-form diagnostics
        stdin: BinaryIO | None                  # set when run(..., stdin=True) (the `write` verb)
        def poll(self) -> int | None
        def wait(self, timeout: float | None = None) -> int   # raises subprocess.TimeoutExpired
        def terminate(self) -> None             # polite stop (SIGTERM or the engine's equivalent)
        def kill(self) -> None                  # forced stop
        def close(self) -> None                 # release pipes/containers once it has exited

`verb` is spec | check | discover | read | write. `config`, `catalog` and `state` are paths of
files in one private directory (mode 0700, files 0600) that the caller removes afterwards; a
runner that isolates the connector (Docker) mounts that directory read-only and rewrites the
paths. The caller passes them as `--config F --catalog F --state F` in that order.

A connection file's `image:` entries are served by `pgbyte.docker_runner.DockerRunner(image, *,
network=None, label=...)`, which must implement the interface above; until that module exists
they are refused with a clear error.
"""

from __future__ import annotations

import contextlib
import fcntl
import importlib
import importlib.util
import os
import select
import shutil
import subprocess
import sys
from pathlib import Path
from typing import BinaryIO, Protocol

from pgbyte.connection import ConnectionFileError, ConnectorRef

# A bigger pipe (Linux default 64 KiB) means fewer wake-ups per megabyte on the hot path.
PIPE_SIZE = 1 << 20
F_SETPIPE_SZ = getattr(fcntl, "F_SETPIPE_SZ", 1031)


class RunnerError(RuntimeError):
    """A connector could not be started; the message says what to install or change."""


class ConnectorProcess(Protocol):
    stdout: BinaryIO
    stderr: BinaryIO
    stdin: BinaryIO | None

    def poll(self) -> int | None: ...
    def wait(self, timeout: float | None = None) -> int: ...
    def terminate(self) -> None: ...
    def kill(self) -> None: ...
    def close(self) -> None: ...


class ConnectorRunner(Protocol):
    label: str

    def describe(self) -> str: ...

    def run(
        self,
        verb: str,
        *,
        config: Path | None = None,
        catalog: Path | None = None,
        state: Path | None = None,
        stdin: bool = False,
    ) -> ConnectorProcess: ...


def verb_args(
    verb: str, config: Path | str | None, catalog: Path | str | None, state: Path | str | None
) -> list[str]:
    """The Airbyte command line after the executable: `read --config F --catalog F --state F`."""
    args = [verb]
    for flag, value in (("--config", config), ("--catalog", catalog), ("--state", state)):
        if value is not None:
            args += [flag, str(value)]
    return args


def _grow_pipe(stream: BinaryIO | None) -> None:
    if stream is not None:
        with contextlib.suppress(OSError):  # not Linux, or over pipe-max-size: keep the default
            fcntl.fcntl(stream.fileno(), F_SETPIPE_SZ, PIPE_SIZE)


class SubprocessConnector:
    """A running connector process (subprocess.Popen with unbuffered binary pipes)."""

    def __init__(self, popen: subprocess.Popen[bytes]) -> None:
        self.popen = popen
        self.pid = popen.pid
        self.stdout: BinaryIO = popen.stdout  # type: ignore[assignment]
        self.stderr: BinaryIO = popen.stderr  # type: ignore[assignment]
        self.stdin: BinaryIO | None = popen.stdin  # type: ignore[assignment]
        _grow_pipe(self.stdout)
        _grow_pipe(self.stdin)
        self._exited = _exit_watch(popen.pid)

    def poll(self) -> int | None:
        return self.popen.poll()

    def wait(self, timeout: float | None = None) -> int:
        if timeout is None or self._exited is None or self.popen.returncode is not None:
            return self.popen.wait(timeout)
        # Popen.wait(timeout) polls, sleeping up to 50 ms between looks; the pidfd wakes us
        # the moment the process exits (a sync waits like this for both of its connectors).
        watch = select.poll()
        watch.register(self._exited, select.POLLIN)
        ready = watch.poll(max(timeout, 0.0) * 1000)
        return self.popen.wait(None if ready else 0)

    def terminate(self) -> None:
        if self.popen.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.popen.terminate()

    def kill(self) -> None:
        if self.popen.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.popen.kill()

    def close(self) -> None:
        for stream in (self.stdin, self.stdout, self.stderr):
            if stream is not None:
                with contextlib.suppress(OSError):
                    stream.close()
        if self._exited is not None:
            with contextlib.suppress(OSError):
                os.close(self._exited)
            self._exited = None


def _exit_watch(pid: int) -> int | None:
    """A pidfd of the child (readable once it exits), or None where Linux or Python lack it."""
    try:
        return os.pidfd_open(pid)
    except (AttributeError, OSError):
        return None


class SubprocessRunner:
    """Runs `command:` connectors as child processes in their own session.

    Their own session, so a Ctrl-C in the terminal reaches only pgbyte, which then stops the
    connectors in order (source first) instead of both dying at an arbitrary point.
    """

    def __init__(self, command: tuple[str, ...], *, label: str) -> None:
        self.command = command
        self.label = label

    def describe(self) -> str:
        return " ".join(self.command)

    def executable(self) -> str:
        """The command's program; a bare name missing from PATH is looked up beside python."""
        program = self.command[0]
        if os.sep in program or shutil.which(program):
            return program
        beside = Path(sys.executable).parent / program
        if beside.exists():
            return str(beside)
        # The connection file's mistake (or an install missing): exit 2, as other such errors.
        raise ConnectionFileError(
            f"{self.label} command {program!r} not found on PATH nor in {beside.parent}: "
            "install it (`make install`) or give its full path in the connection file"
        )

    def run(
        self,
        verb: str,
        *,
        config: Path | None = None,
        catalog: Path | None = None,
        state: Path | None = None,
        stdin: bool = False,
    ) -> SubprocessConnector:
        argv = [self.executable(), *self.command[1:], *verb_args(verb, config, catalog, state)]
        try:
            popen = subprocess.Popen(
                argv,
                stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                bufsize=0,
                start_new_session=True,
            )
        except (FileNotFoundError, PermissionError) as exc:  # the file's command: is wrong
            raise ConnectionFileError(
                f"cannot start the {self.label} ({argv[0]}): {exc.strerror}: check its "
                "command: in the connection file"
            ) from None
        except OSError as exc:
            raise RunnerError(f"cannot start the {self.label} ({argv[0]}): {exc}") from None
        return SubprocessConnector(popen)


def make_runner(ref: ConnectorRef) -> ConnectorRunner:
    """The runner for a connection file's source: or destination: entry."""
    if ref.command is not None:
        return SubprocessRunner(ref.command, label=ref.role)
    if importlib.util.find_spec("pgbyte.docker_runner") is None:
        raise RunnerError(
            f"{ref.role}: Docker images not supported yet (image: {ref.image}); use command: "
            "with the connector installed locally"
        )
    module = importlib.import_module("pgbyte.docker_runner")
    return module.DockerRunner(ref.image, network=ref.network, label=ref.role)
