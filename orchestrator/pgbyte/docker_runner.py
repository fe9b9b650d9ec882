"""Running a connector from a Docker image, through the Docker SDK (the `image:` connection entry).

`DockerRunner(image, network=..., label=...)` implements the runner interface of `pgbyte.runner`:
`run(verb, config=, catalog=, state=, stdin=)` returns a `DockerConnector` whose `stdout`,
`stderr` and `stdin` are ordinary pipe ends (real file descriptors, like a subprocess's), so the
pump and the protocol readers treat an image exactly like a local command.

How a run goes:
- config/catalog/state are copied into a private directory of ours (0700; the copies 0644 so that
  the image's own user — `airbyte`, uid 1000, in pgbyte's images — can read them, while nobody
  else on the host can reach them through the 0700 directory) and bind-mounted read-only at
  /pgbyte/config.json, /pgbyte/catalog.json, /pgbyte/state.json; the command line names those.
- the container is created (not started), its attach socket opened — stdout and stderr, plus stdin
  for `write` — and only then started, so no output is lost.
- a reader thread demultiplexes the attach stream (8-byte frame headers: stream id, size) into the
  stdout and stderr pipes; protocol lines reach `stdout` byte for byte, diagnostics `stderr`.
  Once the connector is being stopped (terminate/kill/close), what a full pipe cannot take is
  dropped: the engine holds a connector's writes, and the end of its container, until the attach
  stream is read, and a cancelled sync no longer reads it.
- for `write`, a feeder thread copies our stdin pipe into the socket and half-closes it at EOF,
  which closes the container's stdin (stdin_once), so the connector sees end of input.
- a waiter thread collects the exit code once; `poll`/`wait` read it.
- the containers have no log driver: the default json-file driver would keep a second copy of
  every record on the engine's disk and cut the attach throughput about fourfold (measured:
  200 MB of stdout in 10 s with json-file, 2.4 s without).
- `terminate` sends SIGTERM (the container runs under docker's init, so the connector gets it even
  as PID 1), `kill` SIGKILL; `close` removes the container (force) and our directory. Containers
  not closed by the caller (a crash, Ctrl-C at the wrong moment) are removed at interpreter exit.

Bind mounts need the engine on this machine (the usual case, DOCKER_HOST unset).
`network`: "bridge" (Docker's default) or "host" — a database on this machine at 127.0.0.1 is only
reachable from a container on the host network — or any network name the engine knows.
"""

from __future__ import annotations

import atexit
import contextlib
import fcntl
import os
import select
import shutil
import socket
import struct
import subprocess
import threading
from pathlib import Path
from typing import Any, BinaryIO

from pgbyte import private_dir
from pgbyte.runner import RunnerError, verb_args

INPUT_DIR = "/pgbyte"  # where the inputs appear inside the container
DEFAULT_NETWORK = "bridge"
CONTAINER_LABEL = "io.pgbyte.connector"  # every container we create carries it (for cleanup)
# host:pid of the pgbyte that made a container: one whose pgbyte is gone (SIGKILL) is removed
# by the next pgbyte on that host that runs an image, even while it still runs.
OWNER_LABEL = "io.pgbyte.owner"
OWNER = f"{socket.gethostname()}:{os.getpid()}"
CHUNK = 1 << 20
PIPE_SIZE = 1 << 20
F_SETPIPE_SZ = getattr(fcntl, "F_SETPIPE_SZ", 1031)
FRAME_HEADER = struct.Struct(">BxxxI")  # stream id (0 stdin, 1 stdout, 2 stderr), 3 pad, size

_live: set[DockerConnector] = set()
_live_lock = threading.Lock()


def _remove_leftovers() -> None:
    """At exit: remove containers whose caller never called close() (crash, interrupt)."""
    with _live_lock:
        leftovers = list(_live)
    for proc in leftovers:
        with contextlib.suppress(Exception):
            proc.close()


atexit.register(_remove_leftovers)


def docker_client() -> Any:
    """A client for the local engine; RunnerError says how to get one when none answers."""
    try:
        import docker  # imported here: `command:` connections never pay for it
    except ImportError:  # pragma: no cover - docker is a dependency of pgbyte
        raise RunnerError(
            "the docker Python package is missing: pip install docker (or `make install`)"
        ) from None
    try:
        client = docker.from_env()
        client.ping()
    except Exception as exc:
        raise RunnerError(
            "image: connectors need a Docker engine, and none answers "
            f"({type(exc).__name__}: {exc}). Start Docker (or set DOCKER_HOST), or use command: "
            "with the connector installed locally."
        ) from None
    return client


_orphans_checked = False


def remove_orphans(client: Any) -> list[str]:
    """Once per process: remove the connector containers of pgbyte processes of this host that
    are gone (killed with SIGKILL: no close() ran), a source among them maybe still reading;
    returns their ids."""
    global _orphans_checked
    if _orphans_checked:
        return []
    _orphans_checked = True
    removed = []
    host = socket.gethostname()
    with contextlib.suppress(Exception):  # a cleanup: never the reason a command fails
        for container in client.containers.list(all=True, filters={"label": OWNER_LABEL}):
            owner = (container.labels or {}).get(OWNER_LABEL, "")
            owner_host, _, pid = owner.rpartition(":")
            if owner_host != host or not pid.isdigit() or private_dir.running(int(pid)):
                continue
            with contextlib.suppress(Exception):
                container.remove(force=True)
                removed.append(container.id)
    return removed


def _pipe() -> tuple[int, int]:
    read_fd, write_fd = os.pipe()
    for fd in (read_fd, write_fd):
        with contextlib.suppress(OSError):  # not Linux, or over pipe-max-size: keep the default
            fcntl.fcntl(fd, F_SETPIPE_SZ, PIPE_SIZE)
    return read_fd, write_fd


def _write_all(fd: int, data: memoryview, stopping: threading.Event) -> None:
    """Write `data` to our non-blocking pipe end `fd`. Once the connector is being stopped,
    a pipe that stays full (its reader has stopped reading) raises BrokenPipeError."""
    while data:
        try:
            written = os.write(fd, data)
        except BlockingIOError:
            if stopping.is_set():
                raise BrokenPipeError(f"fd {fd}: full, and its connector stopping") from None
            select.select([], [fd], [], 0.2)
            continue
        data = data[written:]


class DockerRunner:
    """Runs one image's connector verbs in throwaway containers."""

    def __init__(
        self,
        image: str,
        *,
        network: str | None = None,
        label: str,
        pull: bool = True,
        client: Any = None,
    ) -> None:
        self.image = image
        self.network = network or DEFAULT_NETWORK
        self.label = label
        self.pull = pull
        self._client = client

    def describe(self) -> str:
        return f"docker image {self.image} (network {self.network})"

    @property
    def client(self) -> Any:
        if self._client is None:
            self._client = docker_client()
            remove_orphans(self._client)
        return self._client

    def ensure_image(self) -> None:
        """The image is present locally, or pulled once (as `docker run` would)."""
        import docker.errors

        try:
            self.client.images.get(self.image)
            return
        except docker.errors.ImageNotFound:
            if not self.pull:
                raise RunnerError(
                    f"{self.label}: image {self.image} is not present on this Docker engine: "
                    "build it (`make images`) or pull it"
                ) from None
        except docker.errors.APIError as exc:
            raise RunnerError(f"{self.label}: cannot inspect image {self.image}: {exc}") from None
        try:
            self.client.images.pull(self.image)
        except docker.errors.APIError as exc:
            raise RunnerError(
                f"{self.label}: image {self.image} is not present locally and could not be "
                f"pulled ({exc.explanation or exc}): build it (`make images`) or check the name"
            ) from None

    def run(
        self,
        verb: str,
        *,
        config: Path | None = None,
        catalog: Path | None = None,
        state: Path | None = None,
        stdin: bool = False,
    ) -> DockerConnector:
        self.ensure_image()
        inputs = str(private_dir.make())  # removed after a SIGKILL too (private_dir.py)
        try:
            mounts, paths = _stage_inputs(
                Path(inputs), {"config": config, "catalog": catalog, "state": state}
            )
            command = verb_args(verb, paths["config"], paths["catalog"], paths["state"])
            proc = DockerConnector(
                self.client,
                image=self.image,
                command=command,
                mounts=mounts,
                network=self.network,
                stdin=stdin,
                label=self.label,
                inputs_dir=inputs,
            )
        except BaseException:
            shutil.rmtree(inputs, ignore_errors=True)
            raise
        return proc


def _stage_inputs(
    directory: Path, files: dict[str, Path | None]
) -> tuple[list[Any], dict[str, str | None]]:
    """Copy the given inputs into `directory`; return read-only mounts and in-container paths."""
    from docker.types import Mount

    mounts: list[Any] = []
    paths: dict[str, str | None] = {}
    for name, source in files.items():
        if source is None:
            paths[name] = None
            continue
        copy = directory / f"{name}.json"
        try:
            data = Path(source).read_bytes()
        except OSError as exc:
            raise RunnerError(f"cannot read the {name} file {source}: {exc.strerror}") from None
        fd = os.open(copy, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        with os.fdopen(fd, "wb") as out:
            out.write(data)
        os.chmod(copy, 0o644)  # whatever the umask: the container's user is not ours
        target = f"{INPUT_DIR}/{name}.json"
        mounts.append(Mount(target=target, source=str(copy), type="bind", read_only=True))
        paths[name] = target
    return mounts, paths


class DockerConnector:
    """One connector container with its stdio mapped onto local pipes."""

    def __init__(
        self,
        client: Any,
        *,
        image: str,
        command: list[str],
        mounts: list[Any],
        network: str,
        stdin: bool,
        label: str,
        inputs_dir: str | None = None,
    ) -> None:
        import docker.errors
        from docker.types import LogConfig

        self.client = client
        self.label = label
        self._inputs_dir = inputs_dir
        self._closed = False
        self._exit_code: int | None = None
        self._exited = threading.Event()
        # Set by terminate/kill/close: from then on output nobody reads is dropped (_demux).
        self._stopping = threading.Event()
        self._fds: set[int] = set()  # pipe ends our threads own (closed once, under the lock)
        self._fd_lock = threading.Lock()
        self._sock: socket.socket | None = None
        self._socket_io: Any = None
        self._reader: threading.Thread | None = None
        self.stdout: BinaryIO | None = None
        self.stderr: BinaryIO | None = None
        self.stdin: BinaryIO | None = None
        self.container: Any = None
        try:
            # The low-level API with detach=False: stdin_open then also sets StdinOnce, which is
            # what turns the half-close of our attach socket into end-of-input for the connector.
            api = client.api
            host_config = api.create_host_config(
                mounts=mounts,
                network_mode=network,
                init=True,
                # No container log: we capture stdout/stderr ourselves, and the default json-file
                # driver would copy every record to disk and cut the attach throughput ~4x.
                log_config=LogConfig(type=LogConfig.types.NONE),
            )
            created = api.create_container(
                image,
                command=command,
                detach=False,
                stdin_open=stdin,
                tty=False,
                host_config=host_config,
                labels={CONTAINER_LABEL: label, OWNER_LABEL: OWNER},
            )
            self.container = client.containers.get(created["Id"])
        except docker.errors.APIError as exc:
            raise RunnerError(
                f"cannot create the {label} container from {image}: {exc.explanation or exc}"
            ) from None
        with _live_lock:
            _live.add(self)
        try:
            self._start(stdin)
        except BaseException:
            self.close()
            raise

    # -- setup -----------------------------------------------------------------------------------
    def _start(self, stdin: bool) -> None:
        import docker.errors

        params = {"stdout": 1, "stderr": 1, "stream": 1, "stdin": 1 if stdin else 0}
        attached = self.container.attach_socket(params=params)
        self._socket_io = attached
        self._sock = getattr(attached, "_sock", attached)

        out_r, out_w = _pipe()
        self._fds.add(out_w)
        self.stdout = os.fdopen(out_r, "rb", buffering=0)
        err_r, err_w = _pipe()
        self._fds.add(err_w)
        self.stderr = os.fdopen(err_r, "rb", buffering=0)
        for fd in (out_w, err_w):  # the demux thread's ends: it must see a full pipe (_write_all)
            os.set_blocking(fd, False)
        in_r = -1
        if stdin:
            in_r, in_w = _pipe()
            self._fds.add(in_r)
            self.stdin = os.fdopen(in_w, "wb", buffering=0)

        try:
            self.container.start()
        except docker.errors.APIError as exc:
            raise RunnerError(
                f"cannot start the {self.label} container: {exc.explanation or exc}"
            ) from None
        self._reader = threading.Thread(
            target=self._demux, args=(out_w, err_w), name=f"{self.label}-docker-out", daemon=True
        )
        self._reader.start()
        self._feeder: threading.Thread | None = None
        if stdin:
            self._feeder = threading.Thread(
                target=self._feed, args=(in_r,), name=f"{self.label}-docker-in", daemon=True
            )
            self._feeder.start()
        self._waiter = threading.Thread(
            target=self._wait_for_exit, name=f"{self.label}-docker-wait", daemon=True
        )
        self._waiter.start()

    # -- threads ---------------------------------------------------------------------------------
    def _demux(self, out_fd: int, err_fd: int) -> None:
        """Attach stream → stdout/stderr pipes; closes both pipes at the end of the stream."""
        targets = {1: out_fd, 2: err_fd}
        broken: set[int] = set()  # a pipe whose reader went away: drop its bytes, keep draining
        buf = bytearray()
        try:
            while True:
                try:
                    chunk = self._sock.recv(CHUNK)
                except OSError:
                    break
                if not chunk:
                    break
                buf += chunk
                pos, end = 0, len(buf)
                with memoryview(buf) as view:
                    while end - pos >= FRAME_HEADER.size:
                        kind, size = FRAME_HEADER.unpack_from(view, pos)
                        start = pos + FRAME_HEADER.size
                        if end - start < size:
                            break
                        fd = targets.get(kind, err_fd)
                        if fd not in broken:
                            try:
                                _write_all(fd, view[start : start + size], self._stopping)
                            except OSError:
                                # Its reader is gone, or stopped reading a connector being
                                # stopped (a cancelled sync): the engine would hold the
                                # connector's writes, and its exit, until we read on.
                                broken.add(fd)
                        pos = start + size
                del buf[:pos]
        finally:
            for fd in (out_fd, err_fd):
                self._close_fd(fd)

    def _feed(self, in_fd: int) -> None:
        """Our stdin pipe → the attach socket; half-close at EOF so the container sees it."""
        try:
            while True:
                data = os.read(in_fd, CHUNK)
                if not data:
                    break
                self._sock.sendall(data)
        except OSError:
            pass  # the container is gone; closing in_fd makes the writer see a broken pipe
        finally:
            with contextlib.suppress(OSError):
                self._sock.shutdown(socket.SHUT_WR)
            self._close_fd(in_fd)

    def _wait_for_exit(self) -> None:
        try:
            result = self.container.wait()
            self._exit_code = int(result.get("StatusCode", -1))
        except Exception:
            self._exit_code = self._inspect_exit_code()
        finally:
            self._exited.set()
            if self._feeder is not None and self._sock is not None:
                # Nobody reads the attach stream's input any more, but the engine keeps the
                # connection open for minutes: the feeder would block in sendall that long,
                # and pgbyte's pump behind it. Shutting the write side fails that send now,
                # and the feeder's close of our stdin pipe shows the writer a broken pipe.
                with contextlib.suppress(OSError):
                    self._sock.shutdown(socket.SHUT_WR)

    def _inspect_exit_code(self) -> int:
        with contextlib.suppress(Exception):
            self.container.reload()
            state = self.container.attrs.get("State", {})
            if not state.get("Running"):
                return int(state.get("ExitCode", -1))
        return -1

    def _close_fd(self, fd: int) -> None:
        # Under the lock and only once: a second close could hit a reused descriptor number.
        with self._fd_lock:
            if fd not in self._fds:
                return
            self._fds.discard(fd)
        with contextlib.suppress(OSError):
            os.close(fd)

    # -- the ConnectorProcess interface ----------------------------------------------------------
    @property
    def id(self) -> str:
        return self.container.id if self.container is not None else ""

    def poll(self) -> int | None:
        return self._exit_code if self._exited.is_set() else None

    def wait(self, timeout: float | None = None) -> int:
        if not self._exited.wait(timeout):
            raise subprocess.TimeoutExpired(f"{self.label} container", timeout or 0)
        return self._exit_code if self._exit_code is not None else -1

    def _signal(self, signal: str) -> None:
        self._stopping.set()
        if self.container is None or self._exited.is_set():
            return
        with contextlib.suppress(Exception):  # already stopped, or removed: nothing to signal
            self.container.kill(signal=signal)

    def terminate(self) -> None:
        self._signal("SIGTERM")

    def kill(self) -> None:
        self._signal("SIGKILL")

    def close(self) -> None:
        """Release everything: pipes, socket, the container (even if running) and our inputs."""
        if self._closed:
            return
        self._closed = True
        self._stopping.set()
        with _live_lock:
            _live.discard(self)
        if self.container is not None:
            with contextlib.suppress(Exception):
                self.container.remove(force=True)
        if self._sock is not None:
            with contextlib.suppress(OSError):
                self._sock.shutdown(socket.SHUT_RDWR)  # wakes the reader blocked in recv
        if self._reader is not None:
            self._reader.join(5)
        for stream in (self.stdin, self.stdout, self.stderr):
            if stream is not None:
                with contextlib.suppress(OSError):
                    stream.close()
        for fd in list(self._fds):  # ends whose thread never ran (start failed)
            self._close_fd(fd)
        if self._sock is not None:
            with contextlib.suppress(OSError):
                self._sock.close()
        if self._socket_io is not None:
            with contextlib.suppress(Exception):
                self._socket_io.close()
        if self._inputs_dir:
            shutil.rmtree(self._inputs_dir, ignore_errors=True)
