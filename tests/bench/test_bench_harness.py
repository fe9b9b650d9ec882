"""The benchmark harness (`python -m bench`) at a tiny N: what it reports, never how fast.

Fake connectors (tests/bench/fakes) let every scenario run whatever state the real connectors are
in; a stub that exits 2 stands for a connector not implemented yet; one run uses the real ones.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from bench_helpers import PYTHON, REPO_ROOT, fake

ROWS = 2000
SCENARIO_STEPS = [
    "source", "destination", "dest_states", "pipe", "sync", "inc_full", "inc_first", "inc_update",
]  # fmt: skip
BASELINES = ["copy_text", "copy_from", "copy_pipe", "layout_floor"]

pytestmark = pytest.mark.slow


def run_bench(tmp: Path, *args: str) -> tuple[subprocess.CompletedProcess[str], dict[str, Any]]:
    out = tmp / "report.json"
    result = subprocess.run(
        [PYTHON, "-m", "bench", "--rows", str(ROWS), "--json", str(out), *args],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    report = json.loads(out.read_text()) if out.exists() else {}
    return result, report


@pytest.fixture(scope="module")
def fake_run(tmp_path_factory) -> tuple[subprocess.CompletedProcess[str], dict[str, Any]]:
    """One full run on throwaway servers with the fake programs, each step twice."""
    tmp = tmp_path_factory.mktemp("bench-fake")
    return run_bench(
        tmp, "--repeat", "2",
        "--source-cmd", fake("fake_source.py"),
        "--dest-cmd", fake("fake_destination.py"),
        "--pgbyte-cmd", fake("fake_pgbyte.py"),
    )  # fmt: skip


@pytest.fixture(scope="module")
def stub_run(
    tmp_path_factory, pg_server
) -> Iterator[tuple[subprocess.CompletedProcess[str], dict[str, Any]]]:
    """A run on given DSNs (the test server) where all three programs are stubs that exit 2."""
    tmp = tmp_path_factory.mktemp("bench-stub")
    names = [f"bench_stub_{side}_{os.getpid()}" for side in ("src", "dst")]
    for name in names:
        pg_server.create_database(name)
    stub = fake("stub.py")
    try:
        yield run_bench(
            tmp, "--repeat", "1", "--source-cmd", stub, "--dest-cmd", stub, "--pgbyte-cmd", stub,
            "--source-dsn", pg_server.conninfo(names[0]),
            "--dest-dsn", pg_server.conninfo(names[1]),
        )  # fmt: skip
    finally:
        for name in names:
            pg_server.drop_database(name)


def test_fake_run_exits_zero_and_prints_the_table(fake_run):
    """A run where every step works exits 0 and prints the step table and the goals."""
    result, _ = fake_run
    assert result.returncode == 0, result.stderr[-3000:]
    assert "COPY|COPY binary" in result.stdout
    assert "goals:" in result.stdout


def test_report_describes_the_run(fake_run):
    """The JSON names N, the repeat count, the date, the machine and the table's size."""
    _, report = fake_run
    assert report["rows"] == ROWS
    assert report["repeat"] == 2
    assert report["date"].endswith("UTC")
    assert report["machine"]["nproc"] >= 1 and report["machine"]["memory_gb"] > 0
    assert report["table"]["heap_bytes"] > 0


def test_every_step_ran_twice_and_verified(fake_run):
    """Each baseline and scenario step is ok with two times whose best is the minimum."""
    _, report = fake_run
    for key in BASELINES + SCENARIO_STEPS:
        step = report["steps"][key]
        assert step["status"] == "ok", (key, step["reason"])
        assert len(step["times_s"]) == 2
        assert step["best_s"] == min(step["times_s"]) > 0
        assert step["median_s"] >= step["best_s"]


def test_destination_rows_are_verified(fake_run):
    """The destination step counted N rows in both tables and an echoed STATE."""
    _, report = fake_run
    verified = report["steps"]["destination"]["verified"]
    assert verified["normalized_rows"] == verified["raw_rows"] == ROWS
    assert verified["states_echoed"] >= 1


def test_destination_with_a_state_every_100_records_echoes_them_all(fake_run):
    """The per-page-checkpoint step: N rows in both tables, every added STATE echoed, and its
    time set against the destination step's (a ratio, not a goal)."""
    _, report = fake_run
    verified = report["steps"]["dest_states"]["verified"]
    assert verified["normalized_rows"] == verified["raw_rows"] == ROWS
    assert verified["states_echoed"] >= ROWS // 100
    steps = report["steps"]
    expected = steps["dest_states"]["best_s"] / steps["destination"]["best_s"]
    ratio = report["ratios"]["destination, a STATE every 100 / destination"]
    assert ratio == pytest.approx(expected, rel=0.01)


def test_source_records_are_verified(fake_run):
    """The source step counted N RECORD lines in its output."""
    _, report = fake_run
    assert report["steps"]["source"]["verified"]["records"] == ROWS


def test_incremental_update_merged_the_changed_rows(fake_run):
    """After 1% changed, the dedup sync keeps N rows and sums equal to the source's."""
    _, report = fake_run
    verified = report["steps"]["inc_update"]["verified"]
    assert verified["changed_rows"] == ROWS // 100
    assert verified["normalized_rows"] == ROWS
    assert verified["dest_sum_f1"] == verified["source_sum_f1"] != "None"


def test_ratios_divide_best_times(fake_run):
    """Each ratio is the best time of the scenario over the best time of its baseline."""
    _, report = fake_run
    steps = report["steps"]
    expected = steps["sync"]["best_s"] / steps["copy_pipe"]["best_s"]
    assert report["ratios"]["pgbyte sync / COPY|COPY"] == pytest.approx(expected, rel=0.01)


def test_layout_floor_loads_both_tables_and_is_compared(fake_run):
    """The layout's floor ran its two psql sessions and is set against COPY FROM, COPY|COPY
    and the destination (ratios, not goals)."""
    _, report = fake_run
    floor = report["steps"]["layout_floor"]
    assert floor["verified"] == {"raw_rows": ROWS, "normalized_rows": ROWS}
    assert set(floor["peak_rss_mb"]) == {"psql-0", "psql-1"}
    steps, ratios = report["steps"], report["ratios"]
    for name, top, bottom in (
        ("layout floor / COPY FROM binary", "layout_floor", "copy_from"),
        ("destination / layout floor", "destination", "layout_floor"),
        ("layout floor / COPY|COPY", "layout_floor", "copy_pipe"),
    ):
        expected = steps[top]["best_s"] / steps[bottom]["best_s"]
        assert ratios[name] == pytest.approx(expected, rel=0.01), name
    assert not any("floor" in goal["name"] for goal in report["goals"])


def test_goals_of_each_issue_are_judged(fake_run):
    """Issues 2, 3, 4 and 6 each have goals with a measured value and a met/missed verdict."""
    _, report = fake_run
    assert {goal["issue"] for goal in report["goals"]} == {2, 3, 4, 6}
    for goal in report["goals"]:
        assert goal["value"] is not None and goal["met"] in (True, False), goal


def test_peak_memory_is_reported_per_process(fake_run):
    """Every process of a step has a peak RSS above zero."""
    _, report = fake_run
    rss = report["steps"]["pipe"]["peak_rss_mb"]
    assert set(rss) == {"source", "destination"}
    assert all(mb > 0 for mb in rss.values())


def test_stub_programs_are_reported_unavailable(stub_run):
    """Programs that exit 2 make their scenarios 'unavailable' with the reason, exit 0."""
    result, report = stub_run
    assert result.returncode == 0, result.stderr[-3000:]
    for key in SCENARIO_STEPS:
        assert report["steps"][key]["status"] == "unavailable"
    assert "not implemented yet" in report["programs"]["source"]
    assert report["servers"] == "given DSNs"


def test_baselines_still_run_when_programs_are_stubs(stub_run):
    """The COPY baselines are measured even when no connector works."""
    _, report = stub_run
    for key in BASELINES:
        assert report["steps"][key]["status"] == "ok"


def test_real_connectors_never_crash_the_harness(tmp_path):
    """With the installed connectors, whatever their state, the report is written and each
    step is ok, failed with a reason, or unavailable."""
    result, report = run_bench(tmp_path, "--repeat", "1", "--only", "source,destination")
    assert result.returncode in (0, 1), result.stderr[-3000:]
    for key, step in report["steps"].items():
        assert step["status"] in ("ok", "failed", "unavailable"), key
        assert step["status"] == "ok" or step["reason"]


def test_ctrl_c_ends_children_and_removes_temp_files(tmp_path):
    """SIGINT mid-run exits 130, ends the running connector and removes the work directory."""
    pidfile, workdir = tmp_path / "pid", tmp_path / "work"
    workdir.mkdir()
    env = {**os.environ, "SLOW_SOURCE_PIDFILE": str(pidfile)}
    harness = subprocess.Popen(
        [PYTHON, "-m", "bench", "--rows", "200", "--only", "source", "--workdir", str(workdir),
         "--source-cmd", fake("slow_source.py"), "--json", str(tmp_path / "r.json")],
        cwd=REPO_ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    deadline = time.monotonic() + 120
    while not pidfile.exists() and time.monotonic() < deadline and harness.poll() is None:
        time.sleep(0.2)
    assert pidfile.exists(), "the slow source never started"
    time.sleep(0.3)
    harness.send_signal(signal.SIGINT)
    assert harness.wait(timeout=60) == 130
    child = int(pidfile.read_text())
    assert not Path(f"/proc/{child}").exists() or "Z" in Path(f"/proc/{child}/stat").read_text()
    assert list(workdir.iterdir()) == []


def test_destination_without_source_loads_sql_generated_messages(tmp_path):
    """With the source a stub, the destination benchmark still runs on messages generated in
    SQL, loads N rows, and the report says where its input came from. (Its --workdir does not
    exist yet: the harness makes it, and leaves it empty.)"""
    workdir = tmp_path / "not" / "yet"
    result, report = run_bench(
        tmp_path, "--repeat", "1", "--only", "destination", "--workdir", str(workdir),
        "--source-cmd", fake("stub.py"), "--dest-cmd", fake("fake_destination.py"),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    assert list(workdir.iterdir()) == []
    assert report["steps"]["destination"]["verified"]["raw_rows"] == ROWS
    assert any("generated in SQL" in note for note in report["notes"])


def test_markdown_renders_the_saved_report(fake_run, tmp_path):
    """`python -m bench.markdown` prints every step and goal of a saved report as a table."""
    _, report = fake_run
    path = tmp_path / "saved.json"
    path.write_text(json.dumps(report))
    result = subprocess.run(
        [PYTHON, "-m", "bench.markdown", str(path)],
        cwd=REPO_ROOT, capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert "| COPY\\|COPY binary (source → destination) |" in result.stdout
    assert result.stdout.count("| met |") + result.stdout.count("| missed |") == len(
        report["goals"]
    )
    assert "| layout floor / COPY FROM binary |" in result.stdout


def test_same_database_for_both_sides_is_refused(pg_server, make_database, tmp_path):
    """The same database as source and destination is refused before anything is written."""
    dsn = pg_server.conninfo(make_database("same"))
    result, report = run_bench(tmp_path, "--source-dsn", dsn, "--dest-dsn", dsn)
    assert result.returncode == 2
    assert "same database" in result.stderr
    assert pg_server.password not in result.stderr
    assert report == {}


def test_server_cpu_is_reported_for_throwaway_servers(fake_run):
    """Each run of a step records the CPU seconds both throwaway servers used during it."""
    _, report = fake_run
    per_run = report["steps"]["copy_pipe"]["server_cpu_s"]
    assert len(per_run) == 2
    assert all(set(run) == {"source", "destination"} for run in per_run)
    assert all(seconds >= 0 for run in per_run for seconds in run.values())
