"""Namespace/prefix rules, the state file (merge, atomic replace, mode) and secret masking."""

from __future__ import annotations

import os
import stat
import time

import orjson
import pytest
from pgbyte.catalog import build_catalogs, map_namespace
from pgbyte.connection import Connection, ConnectionFileError, ConnectorRef, StreamChoice
from pgbyte.secrets import Masker, collect_secrets, secret_keys_from_spec
from pgbyte.state import StateStore, atomic_write


@pytest.mark.parametrize(
    "mode,source_ns,expected",
    [
        ("source", "sales", "sales"),
        ("source", None, None),
        ("destination", "sales", None),
        ("raw_${SOURCE_NAMESPACE}", "sales", "raw_sales"),
        ("raw_${SOURCE_NAMESPACE}", None, "raw_"),
        ("${SOURCE_NAMESPACE}", None, None),
        ("fixed", "sales", "fixed"),
    ],
)
def test_namespace_rules_follow_the_platform(mode, source_ns, expected) -> None:
    """source / destination / custom format map namespaces as Airbyte's NamespacingMapper."""
    assert map_namespace(mode, source_ns) == expected


def connection(**kw) -> Connection:
    ref = ConnectorRef("source", {}, command=("x",))
    return Connection(name="c", path=__import__("pathlib").Path("c.yaml"), source=ref,
                      destination=ref, **kw)  # fmt: skip


CATALOG = {"streams": [
    {"name": "users", "namespace": "public", "json_schema": {}, "supported_sync_modes":
     ["full_refresh", "incremental"], "source_defined_primary_key": [["id"]]},
    {"name": "users", "namespace": "sales", "json_schema": {}, "supported_sync_modes":
     ["full_refresh"]},
]}  # fmt: skip


def test_destination_catalog_has_prefix_and_namespace() -> None:
    """The destination's configured catalog carries the mapped names; the source's does not."""
    source, dest, _ = build_catalogs(
        connection(prefix="p_", namespace="raw_${SOURCE_NAMESPACE}"), CATALOG, {}
    )
    assert [(s["stream"]["name"], s["stream"]["namespace"]) for s in source["streams"]] == [
        ("users", "public"), ("users", "sales"),
    ]  # fmt: skip
    assert [(s["stream"]["name"], s["stream"]["namespace"]) for s in dest["streams"]] == [
        ("p_users", "raw_public"), ("p_users", "raw_sales"),
    ]  # fmt: skip


def test_two_streams_landing_in_one_table_is_refused() -> None:
    """namespace: destination with same-named streams from two schemas is a clear error."""
    with pytest.raises(ConnectionFileError, match="would both land"):
        build_catalogs(connection(namespace="destination"), CATALOG, {})


def test_one_stream_named_by_two_entries_is_listed_twice() -> None:
    """`users` in public and `public.users` are one stream: "listed twice", no namespace advice."""
    conn = connection(streams=(StreamChoice(name="users", namespace="public"),
                               StreamChoice(name="public.users")))  # fmt: skip
    with pytest.raises(ConnectionFileError) as caught:
        build_catalogs(conn, CATALOG, {})
    message = str(caught.value)
    assert "stream public.users is listed twice" in message, message
    assert "remove one entry" in message and "would both land" not in message


def test_unsupported_destination_mode_is_refused() -> None:
    """A destination_sync_mode the destination's spec does not list is refused before a sync."""
    spec = {"supported_destination_sync_modes": ["overwrite", "append"]}
    with pytest.raises(ConnectionFileError, match="append_dedup"):
        build_catalogs(connection(destination_sync_mode="append_dedup"), CATALOG, spec)


def test_incremental_overwrite_is_refused() -> None:
    """incremental | overwrite (no such Airbyte mode: each sync would keep only the changes) is
    refused before a sync, whether set per stream or as the connection's default."""
    conn = connection(destination_sync_mode="overwrite", streams=(
        StreamChoice(name="users", namespace="public", sync_mode="incremental",
                     cursor_field=("id",)),))  # fmt: skip
    with pytest.raises(ConnectionFileError, match=r"incremental \| overwrite"):
        build_catalogs(conn, CATALOG, {})


@pytest.mark.parametrize("dest_mode", ["overwrite", "append", "append_dedup"])
def test_a_cursor_field_is_checked_and_passed_only_where_it_orders_something(dest_mode) -> None:
    """A full_refresh stream's cursor_field orders nothing in overwrite or append (the README's
    example names one on such a stream): it is neither checked nor passed on. append_dedup
    orders by it, so there a column the stream lacks is still the file's mistake."""
    conn = connection(streams=(StreamChoice(
        name="users", namespace="public", sync_mode="full_refresh", destination_sync_mode=dest_mode,
        cursor_field=("updated_at",), primary_key=(("id",),)),))  # fmt: skip
    catalog = {"streams": [{**CATALOG["streams"][0], "json_schema": {
        "type": "object", "properties": {"id": {}, "name": {}}}}]}  # fmt: skip
    if dest_mode == "append_dedup":
        with pytest.raises(ConnectionFileError, match="cursor_field 'updated_at' is not a column"):
            build_catalogs(conn, catalog, {})
        return
    source, dest, _ = build_catalogs(conn, catalog, {})
    assert "cursor_field" not in source["streams"][0]
    assert "cursor_field" not in dest["streams"][0]


def test_streams_may_be_named_namespace_dot_name() -> None:
    """`streams: [public.users]` picks that stream, as discover and pgbyte print its name."""
    conn = connection(streams=(StreamChoice(name="sales.users"),))
    source, _, _ = build_catalogs(conn, CATALOG, {})
    assert [s["stream"]["namespace"] for s in source["streams"]] == ["sales"]


@pytest.mark.parametrize(
    ("namespace", "given", "schema", "warned"),
    [
        ("source", False, "analytics", "the destination's schema: analytics is not used"),
        ("source", True, "analytics", None),  # namespace: source written: meant
        ("source", False, "public", None),  # the source's schema is the configured one
        ("source", False, None, None),  # no schema: configured
        ("destination", True, "analytics", None),
        ("Destination", True, "analytics", "If you meant the keyword, write namespace: "
                                           "destination"),
        ("sorce", True, None, "If you meant the keyword, write namespace: source"),
        ("sources", True, None, None),  # names built on a keyword are schema names
        ("resource", True, None, None),
        ("destinations", True, None, None),
        ("raw_${SOURCE_NAMESPACE}", True, None, None),
        ("staging", True, None, None),
    ],
)  # fmt: skip
def test_a_namespace_likely_not_meant_is_warned(namespace, given, schema, warned) -> None:
    """A sync without namespace: keeps the source's schemas, leaving a configured destination
    schema: unused (Airbyte's platform now defaults to the destination's): a WARN says so, as
    it does for a keyword mistyped into a custom format."""
    from pgbyte.catalog import namespace_notes

    config = {"host": "h"} if schema is None else {"host": "h", "schema": schema}
    conn = Connection(
        name="c", path=__import__("pathlib").Path("c.yaml"),
        source=ConnectorRef("source", {}, command=("x",)),
        destination=ConnectorRef("destination", config, command=("x",)),
        namespace=namespace, namespace_given=given,
        streams=(StreamChoice(name="users", namespace="public"),),
    )  # fmt: skip
    _, dest, _ = build_catalogs(conn, CATALOG, {})
    notes = namespace_notes(conn, dest)
    if warned is None:
        assert notes == []
    else:
        assert len(notes) == 1 and warned in notes[0], notes


def test_a_dotted_entry_that_is_also_a_table_name_is_refused() -> None:
    """`streams: [sales.users]` beside a table named "sales.users" in public is ambiguous: it
    was taken as that table, and sales.users was never synced; the braced form picks either."""
    dotted = {**CATALOG["streams"][0], "name": "sales.users"}
    catalog = {"streams": [*CATALOG["streams"], dotted]}
    with pytest.raises(ConnectionFileError, match=r"stream 'sales.users' may be the stream of "
                       r"that name \(in public\) or stream 'users' in namespace 'sales': write "
                       r"it as \{name"):  # fmt: skip
        build_catalogs(connection(streams=(StreamChoice(name="sales.users"),)), catalog, {})
    for choice, namespace, name in [
        (StreamChoice(name="users", namespace="sales"), "sales", "users"),
        (StreamChoice(name="sales.users", namespace="public"), "public", "sales.users"),
    ]:
        source, _, _ = build_catalogs(connection(streams=(choice,)), catalog, {})
        picked = [(s["stream"]["namespace"], s["stream"]["name"]) for s in source["streams"]]
        assert picked == [(namespace, name)]


def test_a_missing_stream_lists_the_closest_names_first_and_not_all() -> None:
    """A stream the source no longer has (renamed table): the error says what may have
    happened and lists the nearest names first, at most 20 of a large database's streams."""
    streams = [{"name": f"table_{i:03d}", "namespace": "public",
                "json_schema": {"type": "object", "properties": {}},
                "supported_sync_modes": ["full_refresh"]} for i in range(200)]  # fmt: skip
    streams.append({**streams[0], "name": "orders_v2"})
    conn = connection(streams=(StreamChoice(name="orders"),))
    with pytest.raises(ConnectionFileError) as caught:
        build_catalogs(conn, {"streams": streams}, {})
    message = str(caught.value)
    assert "'orders' is not among the discovered streams (public.orders_v2, " in message, message
    assert "and 181 more" in message and "renamed or dropped" in message
    assert message.count("public.table_") == 19


def stream_state(name: str, value: int) -> dict:
    descriptor = {"name": name, "namespace": "p"}
    return {
        "type": "STREAM",
        "stream": {"stream_descriptor": descriptor, "stream_state": {"cursor": value}},
        "destinationStats": {"recordCount": 1.0},
    }


def test_state_keeps_the_latest_per_stream_without_stats(tmp_path) -> None:
    """Merging keeps one state per stream, the newest, with source/destination stats stripped."""
    store = StateStore(tmp_path / "s.json")
    for name, value in (("a", 1), ("b", 1), ("a", 2)):
        store.merge(stream_state(name, value))
    store.save()
    saved = orjson.loads((tmp_path / "s.json").read_bytes())
    found = [
        (s["stream"]["stream_descriptor"]["name"], s["stream"]["stream_state"]["cursor"],
         "destinationStats" in s)
        for s in saved
    ]  # fmt: skip
    assert found == [("a", 2, False), ("b", 1, False)]


def test_stream_state_replaces_its_entry_in_a_global_state(tmp_path) -> None:
    """A GLOBAL state kept from before (Airbyte's CDC read, say) and a STREAM state of one of
    its streams: the stream's entry leaves the GLOBAL one, so each stream has one position."""
    store = StateStore(tmp_path / "s.json")
    entries = [{"stream_descriptor": {"name": n, "namespace": "p"}, "stream_state": {}}
               for n in ("a", "b")]  # fmt: skip
    store.merge({"type": "GLOBAL", "global": {"shared_state": {"lsn": 1},
                                              "stream_states": entries}})  # fmt: skip
    store.merge(stream_state("a", 5))
    (glob, stream) = store.states()
    assert [e["stream_descriptor"]["name"] for e in glob["global"]["stream_states"]] == ["b"]
    assert glob["global"]["shared_state"] == {"lsn": 1}
    assert stream["stream"]["stream_state"] == {"cursor": 5}


def test_a_saved_cursor_past_64_bits_is_kept_exactly(tmp_path) -> None:
    """A state file whose cursor orjson reads rounded without an error (an integer past 64
    bits): loaded and saved again, with another stream's state merged, it keeps every digit
    (the source resumes from it)."""
    path = tmp_path / "s.json"
    number = "123456789012345678901234567890"
    path.write_text('[{"type": "STREAM", "stream": {"stream_descriptor": {"name": "a"}, '
                    '"stream_state": {"cursor": ' + number + "}}}]")  # fmt: skip
    store = StateStore(path)
    store.merge(stream_state("b", 1))
    store.save()
    assert f'"cursor": {number}' in path.read_text()


def test_state_file_is_replaced_not_rewritten(tmp_path) -> None:
    """Each save renames a new file over the old one (new inode), owner-only, no temp left."""
    path = tmp_path / "state" / "c.json"
    store = StateStore(path)
    store.merge(stream_state("a", 1))
    store.save()
    first = path.stat().st_ino
    store.merge(stream_state("a", 2))
    store.save()
    assert path.stat().st_ino != first
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert os.listdir(path.parent) == ["c.json"]


def test_failed_state_write_leaves_the_old_file(tmp_path, monkeypatch) -> None:
    """A crash between writing the temp file and renaming it keeps the previous state intact."""
    path = tmp_path / "c.json"
    atomic_write(path, b"[1]")

    def broken_replace(src, dst):
        raise OSError("disk gone")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(OSError):
        atomic_write(path, b"[2]")
    assert (path.read_bytes(), os.listdir(tmp_path)) == (b"[1]", ["c.json"])


def test_secrets_from_spec_and_known_keys_are_masked() -> None:
    """airbyte_secret fields (any depth), password-like keys and jdbc passwords are masked."""
    spec = {"properties": {"tunnel": {"oneOf": [{"properties": {"ssh_key": {
        "airbyte_secret": True}, "my_token": {"airbyte_secret": True}}}]}}}  # fmt: skip
    config = {"password": "pw-1", "tunnel": {"my_token": "tok-2"},
              "jdbc_url_params": "a=b&password=pw-3;sslpassword=pw-4"}  # fmt: skip
    masker = Masker(collect_secrets(config, secret_keys_from_spec(spec)))
    text = masker.mask('login with pw-1, token tok-2, jdbc pw-3, pw-4 and {"p": "pw-1"}')
    assert "pw-" not in text and "tok-2" not in text


def test_files_for_connectors_are_private_and_removed(tmp_path) -> None:
    """Config/catalog/state files: 0600 in a 0700 directory that is gone after the session."""
    from pgbyte.session import Session

    ref = ConnectorRef("source", {"password": "pw"}, command=("true",))
    conn = Connection(name="c", path=tmp_path / "c.yaml", source=ref, destination=ref)
    session = Session(conn, lambda level, text: None)
    config, _ = session.configs()
    state = session.private_file("state.json", [])
    modes = {stat.S_IMODE(p.stat().st_mode) for p in (config, state)}
    directory = (stat.S_IMODE(session.dir.stat().st_mode), session.dir)
    session.close()
    assert (modes, directory[0], directory[1].exists()) == ({0o600}, 0o700, False)


def test_a_cancel_that_ended_the_last_call_is_a_cancel(tmp_path) -> None:
    """The signal that cancels stops the connectors, so the call it ended finishes as a
    failure; waiting sees the cancel even then (a Ctrl-C during `state reset --clear` exited 1,
    "the destination write ended killed by SIGTERM", now and then, instead of 130)."""
    from concurrent.futures import ThreadPoolExecutor

    from pgbyte.session import Cancelled, Session

    ref = ConnectorRef("source", {}, command=("true",))
    conn = Connection(name="c", path=tmp_path / "c.yaml", source=ref, destination=ref)
    with Session(conn, lambda level, text: None) as session, ThreadPoolExecutor(1) as pool:

        def ended_by_the_signal() -> str:
            time.sleep(0.3)  # the wait has looked at the cancel once and waits for the call
            session.cancel_signal = 15
            session.cancel.set()  # as the handler does, before the stopped call returns
            return "killed by SIGTERM"

        future = pool.submit(ended_by_the_signal)
        with pytest.raises(Cancelled) as caught:
            session.wait_all([future])
        assert caught.value.signum == 15
        session.cancel.clear()
        assert session.wait_all([future]) == ["killed by SIGTERM"]


def test_image_on_the_default_network_with_a_loopback_host_is_warned() -> None:
    """An image connector whose config host is localhost, on Docker's default network (where
    that is the container itself), gets a WARN suggesting `network: host`; with it, none."""
    from pgbyte.session import Session

    bridged = ConnectorRef("source", {"host": "localhost"}, image="pgbyte/source-postgres:dev")
    hosted = ConnectorRef("destination", {"host": "127.0.0.1"},
                          image="pgbyte/destination-postgres:dev", network="host")  # fmt: skip
    logs: list[tuple[str, str]] = []
    conn = Connection(name="c", path=__import__("pathlib").Path("c.yaml"), source=bridged,
                      destination=hosted)  # fmt: skip
    with Session(conn, lambda level, text: logs.append((level, text))):
        pass
    assert [level for level, _ in logs] == ["WARN"]
    assert "the source" in logs[0][1] and "network: host" in logs[0][1]
