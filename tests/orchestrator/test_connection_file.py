"""Connection files: keys, ${VAR} from the environment, defaults, and clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest
from pgbyte.connection import ConnectionFileError, load_connection
from pgbyte.runner import SubprocessRunner, make_runner

BASE = """
source:
  command: source-postgres
  config: {host: localhost, password: "${SRC_PW}"}
destination:
  command: [destination-postgres, --flag]
  config: {host: localhost, password: "${DST_PW}"}
"""


def write(tmp_path: Path, text: str, name: str = "full-refresh-overwrite.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_variables_come_from_the_environment(tmp_path) -> None:
    """${VAR} in a config value is replaced by the environment variable's value."""
    conn = load_connection(write(tmp_path, BASE), env={"SRC_PW": "s3cret", "DST_PW": "d"})
    assert (conn.source.config["password"], conn.destination.config["password"]) == ("s3cret", "d")


def test_missing_variable_is_an_error_naming_it(tmp_path) -> None:
    """A variable missing from the environment fails loading and the message names it."""
    with pytest.raises(ConnectionFileError, match=r"DST_PW.*destination\.config\.password"):
        load_connection(write(tmp_path, BASE), env={"SRC_PW": "x"})


def test_name_defaults_to_the_file_stem(tmp_path) -> None:
    """Without name:, the connection is named after its file."""
    conn = load_connection(write(tmp_path, BASE), env={"SRC_PW": "", "DST_PW": ""})
    assert conn.name == "full-refresh-overwrite"


def test_state_defaults_beside_the_connection_file(tmp_path, monkeypatch) -> None:
    """The default state path is .pgbyte/state/<name>.json in the file's directory, any cwd."""
    monkeypatch.chdir("/")
    conn = load_connection(write(tmp_path, BASE), env={"SRC_PW": "", "DST_PW": ""})
    expected = tmp_path.resolve() / ".pgbyte/state/full-refresh-overwrite.json"
    assert (conn.state_path, conn.history_path.parent) == (expected, expected.parent)


def test_a_state_path_under_home_is_expanded(tmp_path, monkeypatch) -> None:
    """`state: ~/...` is under the home directory, not a directory named `~` beside the file."""
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    conn = load_connection(write(tmp_path, BASE + "state: ~/pgb/x.json\n"),
                           env={"SRC_PW": "", "DST_PW": ""})  # fmt: skip
    assert conn.state_path == tmp_path / "home" / "pgb" / "x.json"


def test_source_namespace_placeholder_is_kept(tmp_path) -> None:
    """namespace: raw_${SOURCE_NAMESPACE} is the platform's placeholder, not an env variable."""
    text = BASE + 'namespace: "raw_${SOURCE_NAMESPACE}"\nprefix: p_\n'
    conn = load_connection(write(tmp_path, text), env={"SRC_PW": "", "DST_PW": ""})
    assert (conn.namespace, conn.prefix) == ("raw_${SOURCE_NAMESPACE}", "p_")


def test_source_namespace_elsewhere_comes_from_the_environment(tmp_path) -> None:
    """${SOURCE_NAMESPACE} in prefix: is an environment variable, not left in the table name."""
    text = BASE + 'prefix: "p_${SOURCE_NAMESPACE}_"\n'
    env = {"SRC_PW": "", "DST_PW": "", "SOURCE_NAMESPACE": "eu"}
    assert load_connection(write(tmp_path, text), env=env).prefix == "p_eu_"


def test_source_namespace_unset_outside_namespace_is_an_error(tmp_path) -> None:
    """An unset ${SOURCE_NAMESPACE} in prefix: is a missing variable, with where it does work."""
    text = BASE + 'prefix: "p_${SOURCE_NAMESPACE}_"\n'
    with pytest.raises(ConnectionFileError) as caught:
        load_connection(write(tmp_path, text), env={"SRC_PW": "", "DST_PW": ""})
    message = str(caught.value)
    assert "SOURCE_NAMESPACE is not set (used at full-refresh-overwrite.yaml.prefix)" in message
    assert "only in the top-level namespace: format" in message


def test_other_variables_in_the_namespace_format_are_substituted(tmp_path) -> None:
    """In namespace:, only the placeholder is kept; another ${VAR} comes from the environment."""
    text = BASE + 'namespace: "${ENV_NAME}_${SOURCE_NAMESPACE}"\n'
    env = {"SRC_PW": "", "DST_PW": "", "ENV_NAME": "prod", "SOURCE_NAMESPACE": "ignored"}
    assert load_connection(write(tmp_path, text), env=env).namespace == "prod_${SOURCE_NAMESPACE}"


def test_command_string_and_list(tmp_path) -> None:
    """command: accepts a shell-like string or a list; both become an argv."""
    conn = load_connection(write(tmp_path, BASE), env={"SRC_PW": "", "DST_PW": ""})
    assert conn.source.command == ("source-postgres",)
    assert conn.destination.command == ("destination-postgres", "--flag")
    assert isinstance(make_runner(conn.source), SubprocessRunner)


def test_a_relative_command_path_is_beside_the_connection_file(tmp_path, monkeypatch) -> None:
    """command: ./bin/x is the program beside the connection file, wherever pgbyte runs from;
    a bare name stays a PATH lookup and an absolute path stays as given."""
    text = BASE.replace("command: source-postgres", "command: ./bin/src --x").replace(
        "[destination-postgres, --flag]", "[/opt/dst]"
    )
    path = write(tmp_path, text)
    monkeypatch.chdir("/")
    conn = load_connection(path, env={"SRC_PW": "", "DST_PW": ""})
    assert conn.source.command == (str(tmp_path.resolve() / "bin" / "src"), "--x")
    assert conn.destination.command == ("/opt/dst",)


def test_a_state_path_naming_a_directory_is_refused(tmp_path) -> None:
    """state: naming an existing directory is a connection-file error that says so (not an
    unreadable state file that `state reset` then cannot remove)."""
    (tmp_path / "sdir").mkdir()
    with pytest.raises(ConnectionFileError, match=r"state: sdir is a directory.*sdir/"):
        load_connection(write(tmp_path, BASE + "state: sdir\n"), env={"SRC_PW": "", "DST_PW": ""})


def test_streams_shorthand_and_keys(tmp_path) -> None:
    """Streams take a bare name or the full form; primary_key accepts Airbyte's [[id]]."""
    text = (
        BASE
        + """streams:
  - users
  - {name: orders, namespace: sales, sync_mode: incremental, cursor_field: updated_at,
     destination_sync_mode: append_dedup, primary_key: [[id]]}
"""
    )
    conn = load_connection(write(tmp_path, text), env={"SRC_PW": "", "DST_PW": ""})
    users, orders = conn.streams
    assert users.name == "users" and users.sync_mode is None
    assert (orders.namespace, orders.cursor_field, orders.primary_key) == (
        "sales", ("updated_at",), (("id",),),
    )  # fmt: skip


def test_json_escaped_emoji_names_the_stream(tmp_path) -> None:
    """A name written with JSON's surrogate-pair escape ("\\ud83d\\ude00", which YAML reads as
    two lone surrogates) is the emoji, as in the source's catalog."""
    text = BASE + 'streams:\n  - "emoji\\ud83d\\ude00"\n'
    conn = load_connection(write(tmp_path, text), env={"SRC_PW": "", "DST_PW": ""})
    assert [s.name for s in conn.streams] == ["emoji\N{GRINNING FACE}"]


@pytest.mark.parametrize(
    "extra,needle",
    [
        ("bogus: 1\n", "unknown key"),
        ("streams:\n  - {name: a, sync_mode: sometimes}\n", "sync_mode must be one of"),
        ("destination_sync_mode: replace\n", "destination_sync_mode must be one of"),
    ],
)
def test_bad_keys_are_named(tmp_path, extra, needle) -> None:
    """An unknown key or mode is rejected with a message naming it."""
    with pytest.raises(ConnectionFileError, match=needle):
        load_connection(write(tmp_path, BASE + extra), env={"SRC_PW": "", "DST_PW": ""})


def test_a_stream_listed_twice_is_refused_as_such(tmp_path) -> None:
    """The same streams: entry twice is refused on loading as "listed twice; remove one"."""
    text = BASE + "streams: [full_refresh_demo, full_refresh_demo]\n"
    with pytest.raises(ConnectionFileError) as caught:
        load_connection(write(tmp_path, text), env={"SRC_PW": "", "DST_PW": ""})
    assert (
        "stream full_refresh_demo is listed twice (streams[0] and streams[1]); remove one "
        "entry" in str(caught.value)
    )


@pytest.mark.parametrize(
    "extra",
    [
        "sync_mode: incremental\ndestination_sync_mode: overwrite\n",
        "destination_sync_mode: overwrite\nstreams:\n  - {name: a, sync_mode: incremental}\n",
        "sync_mode: incremental\nstreams:\n  - {name: a, destination_sync_mode: overwrite}\n",
    ],
)
def test_incremental_overwrite_is_refused_on_loading(tmp_path, extra) -> None:
    """incremental | overwrite, as defaults or per stream, is refused when the file is read."""
    with pytest.raises(ConnectionFileError, match=r"incremental \| overwrite would replace"):
        load_connection(write(tmp_path, BASE + extra), env={"SRC_PW": "", "DST_PW": ""})


def test_incremental_overwrite_defaults_no_stream_uses_are_accepted(tmp_path) -> None:
    """incremental | overwrite defaults that every listed stream overrides harm nothing."""
    extra = (
        "sync_mode: incremental\ndestination_sync_mode: overwrite\n"
        "streams:\n  - {name: a, sync_mode: full_refresh}\n"
    )
    conn = load_connection(write(tmp_path, BASE + extra), env={"SRC_PW": "", "DST_PW": ""})
    assert [s.sync_mode for s in conn.streams] == ["full_refresh"]


def test_image_entries_are_accepted(tmp_path) -> None:
    """image: (+ network:) is a valid connector entry, dispatched to the Docker runner."""
    image = "image: pgbyte/source-postgres:dev\n  network: host"
    text = BASE.replace("command: source-postgres", image)
    conn = load_connection(write(tmp_path, text), env={"SRC_PW": "", "DST_PW": ""})
    assert (conn.source.image, conn.source.network, conn.source.command) == (
        "pgbyte/source-postgres:dev", "host", None,
    )  # fmt: skip


@pytest.mark.parametrize(
    "text",
    [
        "source:\n  command: [a]\n  config: {password: MyLiteralS3cret: x}\n",
        'source:\n  config:\n    password: "MyLiteralS3cret\n',
    ],
)
def test_a_yaml_error_says_where_without_quoting_the_line(tmp_path, text) -> None:
    """A YAML syntax error names the line and column and what is wrong, never the line's
    text: it may hold a password written in the file."""
    path = tmp_path / "conn.yaml"
    path.write_text(text)
    with pytest.raises(ConnectionFileError) as caught:
        load_connection(path)
    message = str(caught.value)
    assert "not valid YAML (line " in message and "column" in message, message
    assert "MyLiteralS3cret" not in message


def test_a_key_written_twice_is_refused_and_merge_keys_still_work(tmp_path) -> None:
    """A key twice in one mapping (a second prefix:) is an error naming it and its line, not
    last-one-wins; a key overriding what a `<<: *anchor` merge brings is not a duplicate."""
    env = {"SRC_PW": "s", "DST_PW": "d"}
    with pytest.raises(ConnectionFileError, match=r"line 9, column 1: key 'prefix' appears twice"):
        load_connection(write(tmp_path, BASE + "prefix: a_\nprefix: b_\n"), env=env)
    merged = """
source:
  command: source-postgres
  config: &cfg {host: db.example, password: "${SRC_PW}"}
destination:
  command: destination-postgres
  config:
    <<: *cfg
    password: "${DST_PW}"
"""
    conn = load_connection(write(tmp_path, merged), env=env)
    assert conn.destination.config == {"host": "db.example", "password": "d"}
    # Anchors may sit under a top-level x- key (as in Docker Compose files); others stay refused.
    shared = """
x-pg: &pg {host: db.example, port: 5432}
source:
  command: source-postgres
  config: {<<: *pg, password: "${SRC_PW}"}
destination:
  command: destination-postgres
  config: {<<: *pg, password: "${DST_PW}"}
"""
    conn = load_connection(write(tmp_path, shared), env=env)
    assert conn.source.config == {"host": "db.example", "port": 5432, "password": "s"}
    with pytest.raises(ConnectionFileError, match=r"unknown key\(s\) pg;"):
        load_connection(write(tmp_path, shared.replace("x-pg:", "pg:")), env=env)


@pytest.mark.parametrize("name", ["../../elsewhere", "a/b", ".."])
def test_a_name_that_would_leave_the_state_folder_is_refused(tmp_path, name: str) -> None:
    """name: makes the default state file's name, so it cannot hold a path separator."""
    with pytest.raises(ConnectionFileError, match="name must be usable as a file name"):
        text = BASE + f'name: "{name}"\n'
        load_connection(write(tmp_path, text), env={"SRC_PW": "", "DST_PW": ""})


@pytest.mark.parametrize("key", ["name", "state"])
def test_state_commands_still_refuse_a_missing_variable_outside_the_configs(tmp_path, key) -> None:
    """Not strict (state show/reset, history) spares only the connectors' configs: a missing
    variable in name: or state: made them read or reset another connection's state file
    (`name: orders${SUFFIX}` became `orders`)."""
    text = BASE + f'{key}: "orders${{SUFFIX}}"\n'
    conn = load_connection(write(tmp_path, text), env={"SUFFIX": "-x"}, strict=False)
    assert (conn.name if key == "name" else conn.state_path.name) == "orders-x"
    with pytest.raises(ConnectionFileError, match=rf"SUFFIX is not set .*\.{key}\)"):
        load_connection(write(tmp_path, text), env={}, strict=False)
    assert load_connection(write(tmp_path, BASE), env={}, strict=False).name  # configs: spared


def test_an_escaped_placeholder_in_the_namespace_format_is_literal(tmp_path) -> None:
    """`$${SOURCE_NAMESPACE}` is the text ${SOURCE_NAMESPACE}, as `$${VAR}` is elsewhere; it
    was replaced by the source's namespace like the placeholder."""
    from pgbyte.catalog import map_namespace

    text = BASE + 'namespace: "$${SOURCE_NAMESPACE}_${SOURCE_NAMESPACE}"\n'
    conn = load_connection(write(tmp_path, text), env={"SRC_PW": "", "DST_PW": ""})
    assert map_namespace(conn.namespace, "public") == "${SOURCE_NAMESPACE}_public"


@pytest.mark.parametrize(
    ("config", "needle"),
    [("{ssl_mode: {mode: require, on: 1}}", "source.config.ssl_mode: the key True"),
     ("{password: 123456789012345678901234567890}", "source.config.password: an integer"),
     ("{password: !!binary aGVsbG8=}", "source.config.password: a bytes value"),
     ("{tunnel: !!set {a, b}}", "source.config.tunnel: a set value")],
)  # fmt: skip
def test_a_config_value_json_cannot_hold_is_named(tmp_path, config, needle) -> None:
    """A key YAML reads as a boolean, a 65-bit integer, a !!binary or !!set value: a
    connection-file error naming where (and never the value, which may be a password), not
    a traceback when the config was written for the connector."""
    text = f"source: {{command: source-postgres, config: {config}}}\n" + BASE.split("\n", 4)[4]
    with pytest.raises(ConnectionFileError) as caught:
        load_connection(write(tmp_path, text), env={"DST_PW": ""})
    assert needle in str(caught.value) and "1234567890" not in str(caught.value)
