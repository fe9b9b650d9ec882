"""STATE echo: only after the records before it are committed, in order, one per STATE."""

from __future__ import annotations

from dest_helpers import catalog_for, live_write, record, state

PROPS = {"id": {"type": "integer"}}


def test_each_state_echoed_after_its_records_are_committed(tmp_path, dest_config, dest_conn):
    """Feeding stdin piece by piece: when a STATE is read back, exactly the records before it
    are in both tables (read from another connection, i.e. committed)."""
    sent = 0
    seen = []
    with live_write(tmp_path, dest_config, catalog_for([("s", PROPS)], "append")) as write:
        for round_no, batch in enumerate([3, 1, 5]):
            records = [record("s", {"id": sent + i + 1}) for i in range(batch)]
            sent += batch
            msg = write.send_until_state(b"\n".join([*records, state("s", {"round": round_no})])
                                         + b"\n")  # fmt: skip
            raw = dest_conn.execute("SELECT count(*) FROM _airbyte_raw_s").fetchone()[0]
            norm = dest_conn.execute("SELECT count(*), max(id) FROM s").fetchone()
            seen.append((msg["state"]["stream"]["stream_state"]["round"],
                         msg["state"]["destinationStats"]["recordCount"], raw, *norm))  # fmt: skip
        assert write.finish() == 0
    assert seen == [(0, 3.0, 3, 3, 3), (1, 1.0, 4, 4, 4), (2, 5.0, 9, 9, 9)]


def test_records_after_last_state_are_committed_at_clean_end(run_write, dest_conn) -> None:
    """A clean end of input commits the records that came after the last STATE too."""
    lines = [record("s", {"id": 1}), state("s", {}), record("s", {"id": 2})]
    result = run_write(catalog_for([("s", PROPS)], "append"), b"\n".join(lines) + b"\n")
    assert result.returncode == 0
    assert dest_conn.execute("SELECT count(*) FROM s").fetchone()[0] == 2
    assert [m["state"]["destinationStats"]["recordCount"] for m in result.states] == [1.0]
