"""Timed child processes: one command or a pipeline joined by an OS pipe, with peak RSS per process.

Peak memory is the kernel's high-water mark of each child's resident set (`VmHWM` in
/proc/PID/status), sampled every 20 ms while it runs, the largest over the child and its own
descendants (so `pgbyte sync` reports its largest process). `ru_maxrss` from wait4 would be
wrong here: a child forked from the harness inherits the harness's peak, whatever it execs.
CPU time comes from `os.wait4` (user + system of the child and the descendants it waited for).
Children start in their own session so that `kill_all()` can end a child together with anything
it spawned, on Ctrl-C or after a timeout, by process-group id.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# Every child still running, so that cleanup can end it whatever happens to the harness.
_LIVE: dict[int, subprocess.Popen[bytes]] = {}
_LIVE_LOCK = threading.Lock()

DEVNULL = Path(os.devnull)


@dataclass(frozen=True)
class Outcome:
    """What one timed run of a command or pipeline did."""

    seconds: float
    returncodes: tuple[int, ...]
    peak_rss_mb: tuple[float, ...]
    cpu_seconds: float
    stderr_tails: tuple[str, ...]
    timed_out: bool = False

    @property
    def ok(self) -> bool:
        return not self.timed_out and all(code == 0 for code in self.returncodes)

    def failure(self, names: Sequence[str]) -> str:
        """One readable reason naming each process that failed and the end of its stderr."""
        if self.timed_out:
            return "timed out"
        parts = []
        for name, code, tail in zip(names, self.returncodes, self.stderr_tails, strict=True):
            if code != 0:
                parts.append(f"{name} exited {code}" + (f": {tail}" if tail else ""))
        return "; ".join(parts) or "ok"


@dataclass
class Masker:
    """Replaces known secrets in any text the harness prints."""

    secrets: set[str] = field(default_factory=set)

    def add(self, *values: object) -> None:
        self.secrets.update(str(v) for v in values if v and len(str(v)) >= 4)

    def __call__(self, text: str) -> str:
        for secret in self.secrets:
            text = text.replace(secret, "****")
        return text


MASK = Masker()


class RssSampler(threading.Thread):
    """Polls VmHWM of a few process trees until stopped; `peaks` maps root pid → MB."""

    def __init__(self, pids: list[int], interval: float = 0.02) -> None:
        super().__init__(daemon=True)
        self.pids = pids
        self.interval = interval
        self.peaks = {pid: 0.0 for pid in pids}
        self._stop_event = threading.Event()

    def run(self) -> None:
        while not self._stop_event.is_set():
            self.sample()
            self._stop_event.wait(self.interval)

    def sample(self) -> None:
        for root in self.pids:
            for pid in _tree(root):
                self.peaks[root] = max(self.peaks[root], _hwm_mb(pid))

    def stop(self) -> None:
        self._stop_event.set()
        self.join()


def _hwm_mb(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    except (OSError, ValueError, IndexError):
        pass
    return 0.0


def _tree(root: int) -> list[int]:
    """root and its descendants, from /proc/PID/task/TID/children."""
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        found.append(pid)
        try:
            for task in Path(f"/proc/{pid}/task").iterdir():
                todo += [int(c) for c in (task / "children").read_text().split()]
        except (OSError, ValueError):
            continue
    return found


def _tail(path: Path, limit: int = 600) -> str:
    """The last lines of a stderr file, squeezed onto one line and masked."""
    try:
        with path.open("rb") as handle:
            handle.seek(max(0, path.stat().st_size - 4000))
            text = handle.read().decode("utf-8", "replace")
    except OSError:
        return ""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    squeezed = " | ".join(lines[-4:])
    return MASK(squeezed[-limit:])


def run_pipeline(
    commands: Sequence[Sequence[str]],
    *,
    workdir: Path,
    stdin: Path | None = None,
    stdout: Path = DEVNULL,
    env: Mapping[str, str] | Sequence[Mapping[str, str]] | None = None,
    timeout: float = 3600.0,
) -> Outcome:
    """Run `commands` joined stdout→stdin by OS pipes (like a shell's `|`) and time the whole.

    The clock runs from the first spawn until the last process is reaped. Nothing passes through
    the harness: the pipes join the children directly. `env` is one environment for all or one
    per command.
    """
    envs = list(env) if isinstance(env, Sequence) else [env] * len(commands)
    stderr_paths = _stderr_paths(workdir, len(commands))
    procs: list[subprocess.Popen[bytes]] = []
    handles: list[Any] = []
    try:
        in_handle = stdin.open("rb") if stdin else subprocess.DEVNULL
        if stdin:
            handles.append(in_handle)
        out_handle = stdout.open("wb")
        handles.append(out_handle)
        start = time.perf_counter()
        previous = in_handle
        for index, (command, err_path) in enumerate(zip(commands, stderr_paths, strict=True)):
            last = index == len(commands) - 1
            proc = _spawn(
                command, procs, handles, stdin=previous,
                stdout=out_handle if last else subprocess.PIPE, stderr=err_path,
                env=envs[index], workdir=workdir,
            )  # fmt: skip
            if index > 0:
                # The parent's copy of the read end must go, or the writer never sees EPIPE.
                previous.close()
            previous = proc.stdout
        return _reap(procs, start, timeout, stderr_paths)
    finally:
        _close(procs, handles)


def run_parallel(
    commands: Sequence[Sequence[str]],
    *,
    workdir: Path,
    stdins: Sequence[Path],
    env: Mapping[str, str] | None = None,
    timeout: float = 3600.0,
) -> Outcome:
    """Run `commands` side by side, each reading its own file, and time them all together
    (from the first spawn until the last is reaped); their output goes to /dev/null."""
    stderr_paths = _stderr_paths(workdir, len(commands))
    procs: list[subprocess.Popen[bytes]] = []
    handles: list[Any] = []
    try:
        in_handles = [path.open("rb") for path in stdins]
        handles += in_handles
        start = time.perf_counter()
        for command, in_handle, err_path in zip(commands, in_handles, stderr_paths, strict=True):
            _spawn(
                command, procs, handles, stdin=in_handle, stdout=subprocess.DEVNULL,
                stderr=err_path, env=env, workdir=workdir,
            )  # fmt: skip
        return _reap(procs, start, timeout, stderr_paths)
    finally:
        _close(procs, handles)


def _stderr_paths(workdir: Path, count: int) -> list[Path]:
    return [workdir / f"stderr-{time.monotonic_ns()}-{i}.log" for i in range(count)]


def _spawn(
    command: Sequence[str],
    procs: list[subprocess.Popen[bytes]],
    handles: list[Any],
    *,
    stdin: Any,
    stdout: Any,
    stderr: Path,
    env: Mapping[str, str] | None,
    workdir: Path,
) -> subprocess.Popen[bytes]:
    """Start one child in its own session, known to kill_all(); appended to `procs`."""
    err_handle = stderr.open("wb")
    handles.append(err_handle)
    try:
        proc = subprocess.Popen(
            list(command),
            stdin=stdin,
            stdout=stdout,
            stderr=err_handle,
            env=dict(env) if env is not None else None,
            cwd=workdir,
            start_new_session=True,
        )
    except OSError:  # not executable, missing: the ones already started must not linger
        for started in procs:
            _end(started)
        raise
    with _LIVE_LOCK:
        _LIVE[proc.pid] = proc
    procs.append(proc)
    return proc


def _reap(
    procs: list[subprocess.Popen[bytes]], start: float, timeout: float, stderr_paths: list[Path]
) -> Outcome:
    """Wait for every child (killing them all after `timeout`), sampling their peak RSS."""
    timed_out = threading.Event()
    watchdog = threading.Timer(timeout, lambda: (timed_out.set(), kill_all()))
    watchdog.daemon = True
    watchdog.start()
    sampler = RssSampler([proc.pid for proc in procs])
    sampler.start()
    codes: list[int] = []
    cpu = 0.0
    try:
        for proc in procs:
            _, status, usage = os.wait4(proc.pid, 0)
            proc.returncode = os.waitstatus_to_exitcode(status)
            with _LIVE_LOCK:
                _LIVE.pop(proc.pid, None)
            codes.append(proc.returncode)
            cpu += usage.ru_utime + usage.ru_stime
        seconds = time.perf_counter() - start
    finally:
        watchdog.cancel()
        sampler.stop()
    tails = tuple(_tail(path) for path in stderr_paths)
    for path in stderr_paths:
        path.unlink(missing_ok=True)
    return Outcome(
        seconds=seconds,
        returncodes=tuple(codes),
        peak_rss_mb=tuple(sampler.peaks[proc.pid] for proc in procs),
        cpu_seconds=cpu,
        stderr_tails=tails,
        timed_out=timed_out.is_set(),
    )


def _close(procs: list[subprocess.Popen[bytes]], handles: list[Any]) -> None:
    for proc in procs:
        if proc.stdout is not None:
            proc.stdout.close()
    for handle in handles:
        if hasattr(handle, "close"):
            handle.close()


def run_quick(
    command: Sequence[str],
    *,
    workdir: Path,
    env: Mapping[str, str] | None = None,
    timeout: float = 300.0,
    stdout: Path | None = None,
) -> tuple[int, bytes, str]:
    """Run a short untimed command; return (exit code, stdout unless redirected, stderr tail)."""
    err_path = workdir / f"stderr-quick-{time.monotonic_ns()}.log"
    with err_path.open("wb") as err:
        out = stdout.open("wb") if stdout else subprocess.PIPE
        try:
            proc = subprocess.Popen(
                list(command),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
                env=dict(env) if env is not None else None,
                cwd=workdir,
                start_new_session=True,
            )
            with _LIVE_LOCK:
                _LIVE[proc.pid] = proc
            try:
                data, _ = proc.communicate(timeout=timeout)
            except subprocess.TimeoutExpired:
                _end(proc)
                data = b""
            finally:
                with _LIVE_LOCK:
                    _LIVE.pop(proc.pid, None)
        except OSError as exc:  # not executable, missing interpreter, ...
            err_path.unlink(missing_ok=True)
            return 127, b"", MASK(str(exc))
        finally:
            if stdout:
                out.close()
    tail = _tail(err_path)
    err_path.unlink(missing_ok=True)
    return proc.returncode if proc.returncode is not None else -9, data or b"", tail


def _alive(pid: int) -> bool:
    """True while the process runs (a zombie waiting to be reaped counts as ended)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")


def _end(proc: subprocess.Popen[bytes], grace: float = 5.0) -> None:
    """Terminate a child's process group, give it `grace` seconds, then kill what is left.

    It does not reap: whoever waits for the child (wait4, communicate) still gets its status.
    """
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(proc.pid, sig)
        except (ProcessLookupError, PermissionError):
            return
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline and _alive(proc.pid):
            time.sleep(0.05)
        if not _alive(proc.pid):
            return


def kill_all(*, reap: bool = False) -> None:
    """End every child the harness started that is still running (Ctrl-C, timeout, exit)."""
    with _LIVE_LOCK:
        procs: Iterable[subprocess.Popen[bytes]] = list(_LIVE.values())
    for proc in procs:
        _end(proc)
        if reap:
            with contextlib.suppress(ChildProcessError):
                os.waitpid(proc.pid, os.WNOHANG)
            with _LIVE_LOCK:
                _LIVE.pop(proc.pid, None)
