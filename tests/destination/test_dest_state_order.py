"""STATE echo: only after the records before it are committed, in order, one per STATE."""

from __future__ import annotations

import json
import queue
import subprocess
import threading

from dest_helpers import SCRIPT, catalog_for, record, state

PROPS = {"id": {"type": "integer"}}


def test_each_state_echoed_after_its_records_are_committed(tmp_path, dest_config, dest_conn):
    """Feeding stdin piece by piece: when a STATE is read back, exactly the records before it
    are in both tables (read from another connection, i.e. committed)."""
    config = tmp_path / "config.json"
    config.write_text(json.dumps(dest_config))
    catalog = tmp_path / "catalog.json"
    catalog.write_text(json.dumps(catalog_for([("s", PROPS)], "append")))
    proc = subprocess.Popen(
        [SCRIPT, "write", "--config", str(config), "--catalog", str(catalog)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    lines: queue.Queue[bytes] = queue.Queue()
    threading.Thread(target=lambda: [lines.put(x) for x in proc.stdout], daemon=True).start()
    assert proc.stdin is not None
    sent = 0
    seen = []
    try:
        for round_no, batch in enumerate([3, 1, 5]):
            for _ in range(batch):
                sent += 1
                proc.stdin.write(record("s", {"id": sent}) + b"\n")
            proc.stdin.write(state("s", {"round": round_no}) + b"\n")
            proc.stdin.flush()
            while True:
                msg = json.loads(lines.get(timeout=60))
                if msg["type"] == "STATE":
                    break
            raw = dest_conn.execute("SELECT count(*) FROM _airbyte_raw_s").fetchone()[0]
            norm = dest_conn.execute("SELECT count(*), max(id) FROM s").fetchone()
            seen.append((msg["state"]["stream"]["stream_state"]["round"],
                         msg["state"]["destinationStats"]["recordCount"], raw, *norm))  # fmt: skip
        proc.stdin.close()
        assert proc.wait(timeout=60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
    assert seen == [(0, 3.0, 3, 3, 3), (1, 1.0, 4, 4, 4), (2, 5.0, 9, 9, 9)]


def test_records_after_last_state_are_committed_at_clean_end(run_write, dest_conn) -> None:
    """A clean end of input commits the records that came after the last STATE too."""
    lines = [record("s", {"id": 1}), state("s", {}), record("s", {"id": 2})]
    result = run_write(catalog_for([("s", PROPS)], "append"), b"\n".join(lines) + b"\n")
    assert result.returncode == 0
    assert dest_conn.execute("SELECT count(*) FROM s").fetchone()[0] == 2
    assert [m["state"]["destinationStats"]["recordCount"] for m in result.states] == [1.0]
