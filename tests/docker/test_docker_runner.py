"""pgbyte.docker_runner's plumbing, driven with a stand-in connector image (fake_image/)."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import threading
import time
from pathlib import Path

import pytest
from docker_helpers import containers_with_label
from pgbyte import docker_runner
from pgbyte.docker_runner import CONTAINER_LABEL, DockerRunner
from pgbyte.runner import RunnerError

pytestmark = pytest.mark.docker

FAKE_IMAGE = "pgbyte-test/fake-connector:latest"
FAKE_DIR = Path(__file__).resolve().parent / "fake_image"


@pytest.fixture(scope="session")
def fake_image(docker_engine: None) -> str:
    """The stand-in connector image (python:3.11-slim + one script; builds offline)."""
    subprocess.run(
        ["docker", "build", "-q", "-t", FAKE_IMAGE, str(FAKE_DIR)],
        capture_output=True, text=True, timeout=600, check=True,
    )  # fmt: skip
    return FAKE_IMAGE


@pytest.fixture
def runner(fake_image: str) -> DockerRunner:
    return DockerRunner(fake_image, label="source", pull=False)


def private_config(tmp_path: Path, payload: dict) -> Path:
    """A config as pgbyte's session writes it: 0600 in a 0700 directory, owned by the caller."""
    directory = tmp_path / "private"
    directory.mkdir(mode=0o700)
    path = directory / "config.json"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        json.dump(payload, handle)
    return path


def finish(proc) -> tuple[bytes, bytes, int]:
    """Read stdout and stderr to the end (stderr on a thread), then wait: output and exit code."""
    err: list[bytes] = []
    reader = threading.Thread(target=lambda: err.append(proc.stderr.read()))
    reader.start()
    out = proc.stdout.read()
    reader.join(60)
    code = proc.wait(60)
    return out, err[0], code


def check_status(out: bytes) -> dict:
    (line,) = out.splitlines()
    return json.loads(json.loads(line)["connectionStatus"]["message"])


def test_config_is_readable_by_the_images_own_user(runner, tmp_path: Path) -> None:
    """A 0600 config of the caller is readable by the container's non-root user."""
    proc = runner.run("check", config=private_config(tmp_path, {"key": "v"}))
    try:
        out, err, code = finish(proc)
    finally:
        proc.close()
    assert code == 0, err
    assert check_status(out)["config"] == {"key": "v"}


def test_inputs_are_mounted_read_only(runner, tmp_path: Path) -> None:
    """The connector cannot write to its mounted config."""
    proc = runner.run("check", config=private_config(tmp_path, {}))
    try:
        out, err, _ = finish(proc)
    finally:
        proc.close()
    assert check_status(out)["writable"] is False, err


def test_stdout_and_stderr_are_demultiplexed(runner, tmp_path: Path) -> None:
    """Protocol lines arrive on stdout only, diagnostics on stderr only."""
    proc = runner.run("check", config=private_config(tmp_path, {"stderr": "diagnostic line"}))
    try:
        out, err, _ = finish(proc)
    finally:
        proc.close()
    assert b"diagnostic line" not in out
    assert err == b"diagnostic line\n"
    assert json.loads(out)["type"] == "CONNECTION_STATUS"


def test_stdin_round_trips_byte_for_byte_and_ends(runner, tmp_path: Path) -> None:
    """write: 8 MB through stdin come back unchanged, and closing stdin ends the connector."""
    payload = b"".join(
        b'{"type":"RECORD","n":%d,"s":"\\u00e9 \xc3\xa9"}\n' % i for i in range(200_000)
    )
    proc = runner.run("write", config=private_config(tmp_path, {}), catalog=None, stdin=True)
    try:
        writer = threading.Thread(target=lambda: (proc.stdin.write(payload), proc.stdin.close()))
        writer.start()
        out, err, code = finish(proc)
        writer.join(60)
    finally:
        proc.close()
    assert code == 0, err
    assert out == payload
    assert err == f"bytes {len(payload)}\n".encode()


def test_exit_code_of_a_failing_container(runner, tmp_path: Path) -> None:
    """A container that exits 3 is reported with exit code 3."""
    proc = runner.run("check", config=private_config(tmp_path, {"exit": 3}))
    try:
        _, _, code = finish(proc)
    finally:
        proc.close()
    assert code == 3


def test_failed_container_is_removed_on_close(runner, tmp_path: Path) -> None:
    """After close(), the failed container no longer exists."""
    proc = runner.run("check", config=private_config(tmp_path, {"exit": 3}))
    container_id = proc.id
    finish(proc)
    proc.close()
    assert container_id not in containers_with_label(CONTAINER_LABEL)


def test_terminate_stops_a_running_container(runner, tmp_path: Path) -> None:
    """terminate() ends a long-running connector at once (SIGTERM reaches it under init)."""
    proc = runner.run("read", config=private_config(tmp_path, {"lines": 1, "sleep": 300}))
    try:
        assert proc.stdout.readline().startswith(b'{"type": "RECORD"')
        assert proc.poll() is None
        proc.terminate()
        assert proc.wait(30) == 143
    finally:
        proc.close()


def test_terminate_ends_a_container_whose_output_nobody_reads(runner, tmp_path: Path) -> None:
    """A connector stopped while its output is no longer read (a cancelled sync: the pump
    stopped reading): the attach stream is drained from then on, so the connector's last
    writes, its exit and the engine's end of the container do not wait on a full pipe (a
    cancelled `pgbyte sync` of images took up to 330 s to end)."""
    config = {"lines": 5_000_000, "exit_on_sigterm": True}
    proc = runner.run("read", config=private_config(tmp_path, config))
    try:
        assert proc.stdout.readline().startswith(b'{"type": "RECORD"')
        time.sleep(2)  # the pipes and the engine's buffers fill: nobody reads on
        started = time.monotonic()
        proc.terminate()
        assert proc.wait(60) == 143
        assert time.monotonic() - started < 15
    finally:
        proc.close()


def test_close_removes_a_running_container(runner, tmp_path: Path) -> None:
    """close() on a still-running container removes it (the Ctrl-C path)."""
    proc = runner.run("read", config=private_config(tmp_path, {"lines": 1, "sleep": 300}))
    container_id = proc.id
    proc.stdout.readline()
    proc.close()
    assert container_id not in containers_with_label(CONTAINER_LABEL)


def test_container_keeps_no_log(runner, tmp_path: Path) -> None:
    """Containers run without a log driver, so no copy of the records lands on the engine's disk."""
    proc = runner.run("read", config=private_config(tmp_path, {"lines": 1, "sleep": 300}))
    try:
        proc.stdout.readline()
        proc.container.reload()
        assert proc.container.attrs["HostConfig"]["LogConfig"]["Type"] == "none"
    finally:
        proc.close()


def test_inputs_directory_is_removed_on_close(runner, tmp_path: Path) -> None:
    """The private copies of config/catalog/state are deleted when the run is closed."""
    proc = runner.run("check", config=private_config(tmp_path, {}))
    inputs = Path(proc._inputs_dir)
    assert inputs.is_dir() and (inputs.stat().st_mode & 0o077) == 0
    finish(proc)
    proc.close()
    assert not inputs.exists()


def test_wait_times_out_like_subprocess(runner, tmp_path: Path) -> None:
    """wait(timeout) on a running container raises subprocess.TimeoutExpired."""
    proc = runner.run("read", config=private_config(tmp_path, {"sleep": 300}))
    try:
        with pytest.raises(subprocess.TimeoutExpired):
            proc.wait(0.5)
    finally:
        proc.kill()
        proc.close()


def test_missing_image_is_a_clear_error(docker_engine: None) -> None:
    """An image that is not present (and may not be pulled) names itself and `make images`."""
    runner = DockerRunner("pgbyte-test/no-such-image:never", label="source", pull=False)
    with pytest.raises(RunnerError, match=r"no-such-image:never.*make images"):
        runner.run("spec")


def test_no_engine_is_a_clear_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """With no engine answering, run() says that image: connectors need a Docker engine."""
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/no-engine.sock")
    runner = DockerRunner(FAKE_IMAGE, label="destination")
    with pytest.raises(RunnerError, match="need a Docker engine"):
        runner.run("spec")


def test_describe_names_image_and_network() -> None:
    """describe() names the image and the network (bridge unless configured)."""
    assert DockerRunner("img:1", label="source").describe() == "docker image img:1 (network bridge)"
    assert "network host" in DockerRunner("img:1", label="source", network="host").describe()


def test_writing_to_a_container_that_exited_fails_at_once(runner, tmp_path: Path) -> None:
    """A container with stdin that exits without reading it (a destination that failed):
    writing more to its stdin fails within seconds (a broken pipe), not after the engine's
    minutes-long wait — pgbyte's pump would otherwise hang with it."""
    proc = runner.run("check", config=private_config(tmp_path, {"exit": 1}), stdin=True)
    failed: list[BaseException] = []

    def write_forever() -> None:
        block = b"x" * (1 << 20)
        try:
            while True:
                proc.stdin.write(block)
        except OSError as exc:
            failed.append(exc)

    try:
        assert proc.wait(60) == 1
        writer = threading.Thread(target=write_forever, daemon=True)
        started = time.monotonic()
        writer.start()
        writer.join(30)
        assert failed, "still writing 30 s after the container exited"
        assert isinstance(failed[0], BrokenPipeError), failed
        assert time.monotonic() - started < 30
    finally:
        proc.close()


def test_containers_of_a_killed_pgbyte_are_removed_by_the_next(runner, tmp_path: Path) -> None:
    """A pgbyte killed with SIGKILL closes none of its containers (a source may go on reading
    for the length of the table): the next pgbyte on this host that runs an image removes
    those whose pgbyte is gone, and never a live one's."""
    dead = subprocess.Popen(["true"])
    dead.wait()
    client = runner.client
    made = {}
    for name, owner in (("dead", f"{socket.gethostname()}:{dead.pid}"),
                        ("live", docker_runner.OWNER)):  # fmt: skip
        made[name] = client.containers.run(
            FAKE_IMAGE, ["300"], entrypoint=["sleep"],
            labels={CONTAINER_LABEL: "source", docker_runner.OWNER_LABEL: owner}, detach=True,
        )  # fmt: skip
    try:
        docker_runner._orphans_checked = False  # as in a new process
        removed = docker_runner.remove_orphans(client)
        assert removed == [made["dead"].id]
        left = {c.id for c in client.containers.list(all=True)}
        assert made["dead"].id not in left and made["live"].id in left
    finally:
        for container in made.values():
            with contextlib.suppress(Exception):
                container.remove(force=True)
