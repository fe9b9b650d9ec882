"""`source-postgres check` through the console script: success and each failure mode."""

from __future__ import annotations

import os
import subprocess
import uuid

import pytest
from db_roles import drop_role, throwaway_role
from pgbyte.throwaway_pg import free_port
from psycopg import sql
from source_helpers import REPO_ROOT, Run, configured_catalog, run_source

SECRET = "s3cret-Pa55word-42"


@pytest.fixture
def make_role(source_conn, source_db):
    """Factory: a LOGIN role with a known password, dropped after the test."""
    made: list[str] = []

    def make(*grants: str) -> str:
        name = f"reader_{uuid.uuid4().hex[:8]}"
        source_conn.execute(
            sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(
                sql.Identifier(name), sql.Literal(SECRET)
            )
        )
        made.append(name)
        for grant in grants:
            source_conn.execute(grant.format(role=name))
        return name

    yield make
    for name in made:
        drop_role(source_conn, name)


def check(write_json, config: dict):
    result = run_source("check", "--config", write_json("config.json", config))
    assert result.returncode == 0, result.stderr
    return result


def test_check_succeeds_on_readable_database(source_conn, source_config, write_json) -> None:
    """A valid config with a readable table reports SUCCEEDED."""
    source_conn.execute("CREATE TABLE t (id int)")
    status = check(write_json, source_config).connection_status
    assert status["status"] == "SUCCEEDED", status


def test_wrong_password_fails_without_leaking_it(source_config, write_json) -> None:
    """A wrong password gives FAILED naming authentication, and the password appears nowhere."""
    result = check(write_json, {**source_config, "password": SECRET})
    status = result.connection_status
    assert status["status"] == "FAILED"
    assert "password" in status["message"].lower()
    assert SECRET not in result.stdout + result.stderr


@pytest.mark.parametrize(
    "params",
    ["sslmode=require;password=HunterSecret42", "connectTimeout=10;password=%48unterSecret42",
     "targetServerType=primary;password=HunterSecret42;x=\"y\""],
)  # fmt: skip
def test_a_jdbc_password_run_into_another_value_is_never_shown(
    source_config, write_json, params
) -> None:
    """jdbc_url_params with JDBC's `;` between pairs (the connection splits at `&` only): the
    value it refuses, which holds the password (lower-cased, decoded or quoted), is masked
    in the answer, with and without --debug."""
    config = {**source_config, "jdbc_url_params": params}
    for debug in ((), ("--debug",)):
        result = run_source("check", "--config", write_json("config.json", config), *debug)
        assert result.connection_status["status"] == "FAILED"
        text = (result.stdout + result.stderr).lower()
        assert "huntersecret42" not in text and "****" in text, text


def test_unknown_host_fails_with_host_named(source_config, write_json) -> None:
    """An unknown host gives FAILED naming the host."""
    status = check(write_json, {**source_config, "host": "no-such-host.invalid"}).connection_status
    assert status["status"] == "FAILED"
    assert "no-such-host.invalid" in status["message"]


@pytest.mark.parametrize("in_image", [False, True])
def test_a_closed_port_on_localhost_names_the_container_case(
    source_config, write_json, in_image
) -> None:
    """Nothing listening at localhost:PORT: FAILED naming host and port. In our image
    (AIRBYTE_ENTRYPOINT set, as there) localhost is the container itself on docker's default
    network: the message says so and how to reach the host; outside it says nothing of it."""
    config = {**source_config, "host": "localhost", "port": free_port()}
    path = write_json("config.json", config)
    env = {**os.environ, **({"AIRBYTE_ENTRYPOINT": "source-postgres"} if in_image else {})}
    proc = subprocess.run([str(REPO_ROOT / ".venv" / "bin" / "source-postgres"), "check",
                           "--config", path], capture_output=True, text=True, env=env,
                          timeout=60)  # fmt: skip
    status = Run(proc.returncode, proc.stdout, proc.stderr).connection_status
    assert status["status"] == "FAILED"
    assert f"Nothing accepts connections at localhost:{config['port']}" in status["message"]
    assert ("--network host" in status["message"]) is in_image, status["message"]


def test_unknown_database_fails_with_database_named(source_config, write_json) -> None:
    """An unknown database gives FAILED naming the database."""
    status = check(write_json, {**source_config, "database": "nope_db"}).connection_status
    assert status["status"] == "FAILED"
    assert "nope_db" in status["message"] and "does not exist" in status["message"]


def test_missing_schema_fails_with_schema_named(source_conn, source_config, write_json) -> None:
    """A configured schema that does not exist gives FAILED naming it."""
    source_conn.execute("CREATE TABLE t (id int)")
    config = {**source_config, "schemas": ["public", "Missing_Schema"]}
    status = check(write_json, config).connection_status
    assert status["status"] == "FAILED"
    assert "Missing_Schema" in status["message"]


def test_schema_without_usage_fails_with_grant_hint(
    source_conn, source_config, make_role, write_json
) -> None:
    """A role lacking USAGE on a configured schema gets FAILED with the GRANT to run."""
    source_conn.execute("CREATE SCHEMA hidden; CREATE TABLE hidden.t (id int)")
    role = make_role()
    config = {**source_config, "username": role, "password": SECRET, "schemas": ["hidden"]}
    result = check(write_json, config)
    assert result.connection_status["status"] == "FAILED"
    assert "USAGE" in result.connection_status["message"]
    assert "GRANT USAGE ON SCHEMA hidden" in result.connection_status["message"]
    assert SECRET not in result.stdout + result.stderr
    # beside a schema that does not exist: both said (the missing one hid the other)
    result = check(write_json, {**config, "schemas": ["hidden", "My Nope"]})
    message = result.connection_status["message"]
    assert "Schema(s) 'My Nope' do not exist" in message, message
    assert "GRANT USAGE ON SCHEMA hidden" in message, message


def test_no_selectable_table_fails(source_conn, source_config, make_role, write_json) -> None:
    """A role with USAGE but SELECT on no table gets FAILED saying so."""
    source_conn.execute("CREATE TABLE t (id int)")
    role = make_role()
    config = {**source_config, "username": role, "password": SECRET}
    status = check(write_json, config).connection_status
    assert status["status"] == "FAILED"
    assert "SELECT" in status["message"]
    # With the schemas configured, the GRANT names them (it said <schema>).
    status = check(write_json, {**config, "schemas": ["public"]}).connection_status
    assert status["status"] == "FAILED"
    assert f"GRANT SELECT ON ALL TABLES IN SCHEMA public TO {role};" in status["message"], status


def test_column_privilege_is_enough(source_conn, source_config, make_role, write_json) -> None:
    """SELECT on one column of one table is enough to pass check."""
    source_conn.execute("CREATE TABLE t (id int, secret text)")
    role = make_role("GRANT SELECT (id) ON t TO {role}")
    config = {**source_config, "username": role, "password": SECRET}
    status = check(write_json, config).connection_status
    assert status["status"] == "SUCCEEDED", status


def test_unsupported_replication_method_fails_clearly(
    source_conn, source_config, write_json
) -> None:
    """CDC is accepted by the spec but check says it is not supported yet."""
    source_conn.execute("CREATE TABLE t (id int)")
    config = {
        **source_config,
        "replication_method": {"method": "CDC", "replication_slot": "s", "publication": "p"},
    }
    status = check(write_json, config).connection_status
    assert status["status"] == "FAILED"
    assert "not supported" in status["message"]


def test_bad_jdbc_param_fails_with_its_name(source_config, write_json) -> None:
    """An unknown jdbc_url_params key gives FAILED naming it."""
    config = {**source_config, "jdbc_url_params": "bogusParam=1"}
    status = check(write_json, config).connection_status
    assert status["status"] == "FAILED"
    assert "bogusParam" in status["message"]


def test_schemas_without_tables_yet_pass(source_conn, source_config, write_json) -> None:
    """A reachable schema with no table yet passes check (a source set up before its tables)."""
    source_conn.execute("CREATE SCHEMA empty_yet")
    status = check(write_json, {**source_config, "schemas": ["empty_yet"]}).connection_status
    assert status["status"] == "SUCCEEDED", status
    assert "no table or view in empty_yet yet" in status["message"]


def test_unknown_user_is_a_config_error(source_config, write_json) -> None:
    """A role that does not exist is a config_error naming the user, not a lost connection
    (with password authentication the server says only that authentication failed)."""
    config = write_json("config.json", {**source_config, "username": "no_such_user_x"})
    result = run_source("discover", "--config", config)
    assert result.returncode == 1
    (error,) = result.errors()
    assert error["failure_type"] == "config_error", error
    assert "'no_such_user_x'" in error["message"] and "lost" not in error["message"]


def test_role_without_login_is_a_config_error(source_conn, source_config, write_json) -> None:
    """A NOLOGIN role gets FAILED saying it may not log in (config_error from discover too)."""
    role = f"nologin_{uuid.uuid4().hex[:8]}"
    with throwaway_role(source_conn, role, SECRET, "NOLOGIN"):
        config = {**source_config, "username": role, "password": SECRET}
        status = check(write_json, config).connection_status
        assert status["status"] == "FAILED"
        assert "may not log in" in status["message"] and "LOGIN" in status["message"]
        result = run_source("discover", "--config", write_json("config.json", config))
        assert result.returncode == 1
        assert result.errors()[0]["failure_type"] == "config_error"


def test_a_password_inside_names_leaves_the_protocol_intact(
    source_conn, source_config, write_json
) -> None:
    """Secrets are masked in free text only: a password that is part of a table and a column
    name changes neither the CATALOG, nor the STATE, nor the numbers of ESTIMATE and STATE."""
    password = "nibble1"  # also a substring of the names below, and "1" of every count
    role = f"nib_{uuid.uuid4().hex[:8]}"
    with throwaway_role(source_conn, role, password):
        source_conn.execute("CREATE TABLE firenibble1 (id int primary key, nibble1_col text)")
        source_conn.execute("INSERT INTO firenibble1 VALUES (1, 'x')")
        source_conn.execute(sql.SQL("GRANT SELECT ON firenibble1 TO {}").format(
            sql.Identifier(role)))  # fmt: skip
        config = write_json("config.json", {**source_config, "username": role,
                                            "password": password})  # fmt: skip
        discovered = run_source("discover", "--config", config)
        (stream,) = discovered.catalog["streams"]
        assert stream["name"] == "firenibble1"
        assert "nibble1_col" in stream["json_schema"]["properties"]
        catalog = write_json("catalog.json", configured_catalog([stream]))
        result = run_source("read", "--config", config, "--catalog", catalog)
        assert result.returncode == 0, result.stdout + result.stderr
        messages = result.messages  # every line parses as JSON
        names = {m["state"]["stream"]["stream_descriptor"]["name"] for m in messages
                 if m["type"] == "STATE"}  # fmt: skip
        assert names == {"firenibble1"}
        assert result.data("firenibble1") == [{"id": 1, "nibble1_col": "x"}]


def test_airbyte_jdbc_params_are_accepted(source_conn, source_config, write_json) -> None:
    """pgjdbc parameters Airbyte configs carry (tuning knobs with no libpq meaning, pgjdbc names
    with a libpq twin) pass check; `ssl=true` asks for encryption, which this server (no SSL)
    refuses, with ssl_mode named as what to change."""
    source_conn.execute("CREATE TABLE t (id int)")
    params = (
        "sslfactory=org.postgresql.ssl.NonValidatingFactory&readOnly=true&"
        "assumeMinServerVersion=12&tcpNoDelay=true&channelBinding=prefer&ssl=false"
    )
    status = check(write_json, {**source_config, "jdbc_url_params": params}).connection_status
    assert status["status"] == "SUCCEEDED", status
    config = {**source_config, "jdbc_url_params": "ssl=true"}
    status = check(write_json, config).connection_status
    assert status["status"] == "FAILED" and "ssl_mode" in status["message"], status


@pytest.mark.parametrize(
    "extra,expected",
    [
        ({"replication_method": {"method": "CDC", "plugin": "wal2json", "replication_slot": "s",
                                 "publication": "p"}}, "not supported"),
        ({"entra_service_principal_auth": True, "entra_tenant_id": "t", "entra_client_id": "c"},
         "entra_service_principal_auth"),
        # Refused as unsupported before its missing fields are listed one by one.
        ({"tunnel_method": {"tunnel_method": "SSH_KEY_AUTH", "tunnel_host": "bastion"}},
         "tunnel_method SSH_KEY_AUTH is not supported"),
        ({"tunnel_method": {"tunnel_method": "SSH_PASSWORD_AUTHX", "tunnel_host": "bastion"}},
         "tunnel_method 'SSH_PASSWORD_AUTHX' is not a tunnel method: use NO_TUNNEL"),
        ({"ssl_mode": {"mode": "verify-ca"}}, "ca_certificate"),
        ({"ssl_mode": {"mode": "require", "client_certificate": "PEM"}},
         "client_certificate needs ssl_mode.client_key"),
    ],
)  # fmt: skip
def test_airbyte_options_pgbyte_lacks_fail_clearly(
    source_conn, source_config, write_json, extra, expected
) -> None:
    """Options of Airbyte's source pgbyte cannot honour get FAILED saying so (not a misleading
    validation error, not a silent fallback)."""
    source_conn.execute("CREATE TABLE t (id int)")
    status = check(write_json, {**source_config, **extra}).connection_status
    assert status["status"] == "FAILED" and expected in status["message"], status


def test_verify_full_without_ca_uses_the_system_cas(source_config, write_json) -> None:
    """verify-full without ca_certificate is valid (the system's trusted CAs): this server has
    no SSL, so the connection fails on SSL, not on the config."""
    config = {**source_config, "ssl_mode": {"mode": "verify-full"}}
    status = check(write_json, config).connection_status
    assert status["status"] == "FAILED"
    assert "Config validation" not in status["message"] and "SSL" in status["message"], status


def test_missing_password_names_the_field(source_config, write_json) -> None:
    """A server asking for a password the config lacks: FAILED naming `password`, not a lost
    connection."""
    config = {k: v for k, v in source_config.items() if k != "password"}
    status = check(write_json, config).connection_status
    assert status["status"] == "FAILED"
    assert "requires a password" in status["message"] and "lost" not in status["message"]


@pytest.mark.parametrize(
    "params,says",
    [
        ("dbname=postgres", "dbname would override the config's database"),
        ("user=postgres&password=x", "user would override the config's username"),
        ("host=localhost", "host would override the config's host"),
        ("port=5433", "port would override the config's port"),
        ("password=other", "password would override the config's password"),
        ("sslmode=disable", "sslmode=disable would weaken the config's ssl_mode verify-full"),
        ("requiressl=0", "sslmode=prefer would weaken the config's ssl_mode verify-full"),
        ("SSLMode=Allow", "sslmode=allow would weaken the config's ssl_mode verify-full"),
        ("sslrootcert=/etc/ssl/certs/ca-certificates.crt",
         "sslrootcert would override ssl_mode.ca_certificate"),
    ],
)  # fmt: skip
def test_jdbc_params_may_not_override_the_config(
    source_conn, source_config, write_json, params: str, says: str
) -> None:
    """jdbc_url_params naming another database, user, server or a weaker sslmode than ssl_mode
    (encryption turned off behind a verify-full config) is refused before connecting, as
    Airbyte's connectors refuse to overwrite their own JDBC parameters; the check reported the
    config's database while connected to another."""
    config = {**source_config, "jdbc_url_params": params}
    if "ssl" in params.lower():
        pem = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"
        config["ssl_mode"] = {"mode": "verify-full", "ca_certificate": pem}
    status = check(write_json, config).connection_status
    assert status["status"] == "FAILED", status
    assert says in status["message"], status
    assert "other" not in status["message"] and "password=x" not in status["message"]


def test_jdbc_sslmode_may_strengthen_ssl_mode(source_conn, source_config, write_json) -> None:
    """sslmode=require in jdbc_url_params beside ssl_mode disable asks for more, as the user
    meant: this server (no SSL) then refuses, naming ssl_mode."""
    config = {**source_config, "jdbc_url_params": "sslmode=require"}
    status = check(write_json, config).connection_status
    assert status["status"] == "FAILED" and "ssl_mode" in status["message"], status
    config = {**source_config, "jdbc_url_params": "sslmode=prefer"}
    assert check(write_json, config).connection_status["status"] == "SUCCEEDED"
