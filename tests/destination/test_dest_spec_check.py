"""spec (Airbyte-compatible, lint-clean) and check (probe table; actionable failures)."""

from __future__ import annotations

import json
import os
import subprocess

import jsonschema
from airbyte_cdk.test.standard_tests._spec_lint import find_secret_marking_errors
from db_roles import throwaway_role
from dest_helpers import FIXTURES, SCRIPT, table_names


def _run(*args: str) -> tuple[int, list[dict]]:
    proc = subprocess.run([SCRIPT, *args], capture_output=True, timeout=60, check=False)
    return proc.returncode, [json.loads(x) for x in proc.stdout.splitlines() if x.startswith(b"{")]


def _spec() -> dict:
    rc, messages = _run("spec")
    assert rc == 0
    (spec,) = [m["spec"] for m in messages if m["type"] == "SPEC"]
    return spec


def test_spec_sync_modes() -> None:
    """spec offers overwrite, append and append_dedup."""
    assert _spec()["supported_destination_sync_modes"] == ["overwrite", "append", "append_dedup"]


def test_spec_passes_the_cdk_secret_lint() -> None:
    """Every secret-looking property is marked airbyte_secret, nothing else is."""
    assert find_secret_marking_errors(_spec()["connectionSpecification"]) == []


def test_airbyte_config_validates_unchanged() -> None:
    """A config written for Airbyte's destination-postgres (PyAirbyte's shape) validates."""
    config = json.loads((FIXTURES / "airbyte_destination_config.json").read_text())
    jsonschema.validate(config, _spec()["connectionSpecification"])


def _check(tmp_path, config: dict) -> tuple[dict, str]:
    path = tmp_path / "config.json"
    path.write_text(json.dumps(config))
    proc = subprocess.run(
        [SCRIPT, "check", "--config", str(path)], capture_output=True, timeout=60, check=False
    )
    out = proc.stdout.decode() + proc.stderr.decode()
    (status,) = [
        json.loads(x)["connectionStatus"]
        for x in proc.stdout.splitlines()
        if b"CONNECTION_STATUS" in x
    ]
    return status, out


def test_check_succeeds_and_creates_schema(tmp_path, dest_config, dest_conn) -> None:
    """check passes, creates the missing target schema, and leaves no probe table behind."""
    status, _ = _check(tmp_path, {**dest_config, "schema": "fresh_schema"})
    assert status["status"] == "SUCCEEDED"
    assert table_names(dest_conn, "fresh_schema") == []
    assert dest_conn.execute("SELECT 1 FROM pg_namespace WHERE nspname='fresh_schema'").fetchone()


def test_check_takes_a_config_without_schema_as_write_does(tmp_path, dest_config) -> None:
    """A config without `schema` (and so without its default filled in) passes check, as
    write takes it: the default schema "public" applies to both."""
    config = {k: v for k, v in dest_config.items() if k != "schema"}
    status, out = _check(tmp_path, config)
    assert status["status"] == "SUCCEEDED", out


def test_check_wrong_password_is_failed_without_secret(tmp_path, dest_config) -> None:
    """A wrong password is FAILED, says to check the credentials, and never shows the password."""
    status, out = _check(tmp_path, {**dest_config, "password": "Wr0ng-Passw0rd-123"})
    assert status["status"] == "FAILED"
    assert "password" in status["message"].lower()
    assert "Wr0ng-Passw0rd-123" not in out
    assert dest_config["password"] not in out


def test_check_unknown_database(tmp_path, dest_config) -> None:
    """An unknown database is FAILED naming the database."""
    status, _ = _check(tmp_path, {**dest_config, "database": "no_such_db_xyz"})
    assert status["status"] == "FAILED"
    assert "no_such_db_xyz" in status["message"]


def test_check_without_create_privilege(tmp_path, dest_config, dest_conn) -> None:
    """A user that may not create tables gets FAILED with the GRANT to run."""
    with throwaway_role(dest_conn, "pgbyte_reader", "reader-pw-12345"):
        dest_conn.execute("CREATE SCHEMA locked")
        config = {**dest_config, "username": "pgbyte_reader", "password": "reader-pw-12345",
                  "schema": "locked"}  # fmt: skip
        status, _ = _check(tmp_path, config)
        assert status["status"] == "FAILED"
        assert "GRANT USAGE, CREATE ON SCHEMA locked TO pgbyte_reader" in status["message"]
        # A schema that does not exist: the GRANT on it could not run (it was suggested).
        status, _ = _check(tmp_path, {**config, "schema": "not_yet"})
        database = dest_config["database"]
        assert status["status"] == "FAILED"
        assert (
            f"User 'pgbyte_reader' may not create schema 'not_yet' in database '{database}': "
            "create it for the user (CREATE SCHEMA not_yet AUTHORIZATION pgbyte_reader), "
            "or let it create schemas (GRANT CREATE ON DATABASE "
        ) in status["message"], status
        assert "TO pgbyte_reader), or choose an existing schema." in status["message"]


def test_check_read_only_role_names_the_setting(tmp_path, dest_config, dest_conn) -> None:
    """default_transaction_read_only on a primary: FAILED naming the setting and the ALTER ROLE
    to run (it said "a standby?", which this server is not)."""
    with throwaway_role(dest_conn, "pgbyte_ro", "ro-pw-12345", "LOGIN SUPERUSER"):
        dest_conn.execute("ALTER ROLE pgbyte_ro SET default_transaction_read_only = on")
        config = {**dest_config, "username": "pgbyte_ro", "password": "ro-pw-12345"}
        status, _ = _check(tmp_path, config)
        assert status["status"] == "FAILED"
        assert "default_transaction_read_only" in status["message"], status
        assert "standby" not in status["message"]


def test_jdbc_params_may_not_move_the_write_elsewhere(tmp_path, dest_config) -> None:
    """jdbc_url_params naming another database is refused: the write went to that database
    while the config named another."""
    status, out = _check(tmp_path, {**dest_config, "jdbc_url_params": "dbname=postgres"})
    assert status["status"] == "FAILED", out
    assert "dbname would override the config's database" in status["message"], out


def test_libpq_environment_variables_do_not_change_the_connection(tmp_path, dest_config) -> None:
    """Only the config decides how the connector connects, as with Airbyte's JDBC connectors:
    PGOPTIONS (here a read-only session) and a PGSERVICE naming a missing service file, set
    where the connector runs, change nothing (check failed on both before)."""
    path = tmp_path / "config.json"
    path.write_text(json.dumps(dest_config))
    env = {**os.environ, "PGOPTIONS": "-c default_transaction_read_only=on",
           "PGSERVICEFILE": str(tmp_path / "missing.conf"), "PGSERVICE": "nowhere"}  # fmt: skip
    proc = subprocess.run([SCRIPT, "check", "--config", str(path)], capture_output=True,
                          timeout=60, check=False, env=env)  # fmt: skip
    (status,) = [json.loads(x)["connectionStatus"] for x in proc.stdout.splitlines()
                 if b"CONNECTION_STATUS" in x]  # fmt: skip
    assert status["status"] == "SUCCEEDED", status
