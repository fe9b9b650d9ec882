"""describe_connect_error on libpq's SSL texts: the config field is named, not the temp file."""

from __future__ import annotations

from pathlib import Path

import psycopg
import pytest
from db_roles import throwaway_role
from pgbyte_common.errors import ConfigError, classify_error, describe_connect_error


@pytest.mark.parametrize(
    "libpq_text,field",
    [
        ('could not read root certificate file "/tmp/pgbyte-ssl-ab12/sslrootcert.pem": too long',
         "ssl_mode.ca_certificate"),
        ('could not load private key file "/tmp/pgbyte-ssl-ab12/sslkey.pem": bad decrypt',
         "ssl_mode.client_key_password"),
        ('could not load certificate file "/tmp/pgbyte-ssl-ab12/sslcert.pem": no start line',
         "ssl_mode.client_certificate"),
        ("server does not support SSL, but SSL was required", "`ssl: true`, or an sslmode in"),
    ],
)  # fmt: skip
def test_ssl_failures_name_the_config_field(libpq_text: str, field: str) -> None:
    exc = psycopg.OperationalError(f'connection to server at "db" (10.0.0.1), port 5432 '
                                   f"failed: {libpq_text}")  # fmt: skip
    error = describe_connect_error(exc, host="db", port=5432, database="d", username="u")
    assert isinstance(error, ConfigError)
    assert field in error.message and "pgbyte-ssl" not in error.message, error.message


@pytest.mark.parametrize(
    "error,setting,failure_type",
    [
        (psycopg.errors.QueryCanceled("canceling statement due to statement timeout"),
         "statement_timeout", "config_error"),
        (psycopg.errors.LockNotAvailable("canceling statement due to lock timeout"),
         "lock_timeout", "transient_error"),
        (psycopg.errors.ConfigurationLimitExceeded(
            "temporary file size exceeds temp_file_limit (100kB)"),
         "temp_file_limit", "config_error"),
    ],
)  # fmt: skip
def test_limits_of_the_role_name_their_setting(error, setting, failure_type) -> None:
    """A statement ended by a limit the role, server or config's jdbc_url_params sets names
    the setting and both places to change it."""
    classified = classify_error(error, context="Writing to the destination failed")
    assert setting in classified.message and "ALTER ROLE" in classified.message
    assert "jdbc_url_params" in classified.message
    assert classified.failure_type == failure_type


def test_refusals_at_connect_say_why_and_what_to_change(dest_config, dest_conn) -> None:
    """The real server refusing a connection: a role over its CONNECTION LIMIT (transient,
    naming the limit), a bad setting in jdbc_url_params' options (config_error, naming it) —
    not "the connection to the server was lost"."""
    from pgbyte_common.connection import ConnectionSettings
    from pgbyte_common.errors import PgbyteError, TransientError

    with throwaway_role(dest_conn, "pgbyte_nolimit", "nl-pw-12345", "LOGIN CONNECTION LIMIT 0"):
        config = {**dest_config, "username": "pgbyte_nolimit", "password": "nl-pw-12345"}
        with pytest.raises(PgbyteError) as limited:
            ConnectionSettings.from_config(config, application_name="t").connect()
        assert isinstance(limited.value, TransientError)
        assert "too many connections" in limited.value.message
        assert "CONNECTION LIMIT" in limited.value.message and "lost" not in limited.value.message
    bad = {**dest_config, "jdbc_url_params": "options=-c statement_timeout=bad"}
    with pytest.raises(PgbyteError) as refused:
        ConnectionSettings.from_config(bad, application_name="t").connect()
    assert isinstance(refused.value, ConfigError)
    assert "statement_timeout" in refused.value.message and "lost" not in refused.value.message


def test_no_writable_temporary_directory_for_inline_certificates_says_tmpfs(monkeypatch) -> None:
    """`docker run --read-only` without `--tmpfs /tmp`: the inline certificates cannot be
    written for libpq. A config_error naming the fix, not an unexpected system_error."""
    import errno
    import tempfile

    from pgbyte_common import connection

    def read_only(*_args, **_kwargs):
        raise OSError(errno.EROFS, "Read-only file system")

    monkeypatch.setattr(tempfile, "mkdtemp", read_only)
    monkeypatch.setattr(connection, "_ssl_dir", None)
    with pytest.raises(ConfigError) as caught:
        connection._materialize_ssl_files({"ca_certificate": "-----BEGIN CERTIFICATE-----"})
    assert "--tmpfs /tmp" in caught.value.message and "Read-only" in caught.value.message


def test_certificates_a_killed_connector_left_are_removed_by_the_next(tmp_path, monkeypatch):
    """The inline PEMs are written to a private directory named after the process; one left by
    a connector killed with SIGKILL (a private key in it) goes when the next connector writes
    its own. Another user's, a running process's, or a look-alike name stay."""
    import os
    import subprocess
    import tempfile

    from pgbyte_common import connection

    gone = subprocess.Popen(["true"])
    gone.wait()
    stale = tmp_path / f"pgbyte-ssl-{gone.pid}-abcd1234"
    stale.mkdir(mode=0o700)
    (stale / "sslkey.pem").write_text("-----BEGIN PRIVATE KEY-----\n")
    alive = tmp_path / f"pgbyte-ssl-{os.getppid()}-efgh5678"
    alive.mkdir(mode=0o700)
    other = tmp_path / f"pgbyte-{gone.pid}-ijkl9012"  # pgbyte's own kind: not this one's
    other.mkdir(mode=0o700)
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    monkeypatch.setattr(connection, "_ssl_dir", None)
    written = connection._materialize_ssl_files({"client_key": "-----BEGIN PRIVATE KEY-----"})
    made = os.path.dirname(written["sslkey"])
    assert os.path.basename(made).startswith(f"pgbyte-ssl-{os.getpid()}-")
    assert oct(os.stat(made).st_mode & 0o777) == "0o700"
    assert not stale.exists() and alive.is_dir() and other.is_dir()


def test_a_directory_whose_lock_a_live_process_holds_is_kept_whatever_its_pid(tmp_path):
    """Across pid namespaces (containers sharing a temp folder) a pid says nothing: another
    live process's certificate directory, named with a pid not running here, is kept while it
    holds its lock, and removed once that process is gone."""
    import subprocess
    import sys

    from pgbyte_common import private_dirs

    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, pathlib; from pgbyte_common import private_dirs; "
         "print(private_dirs.make('pgbyte-ssl-', pathlib.Path(sys.argv[1])), flush=True); "
         "sys.stdin.read()", str(tmp_path)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    made = Path(holder.stdout.readline().strip())
    gone = subprocess.Popen(["true"])
    gone.wait()
    elsewhere = made.with_name(f"pgbyte-ssl-{gone.pid}-{made.name.split('-')[-1]}")
    made.rename(elsewhere)  # as another namespace's pid would read here
    assert private_dirs.remove_stale("pgbyte-ssl-", tmp_path) == [] and elsewhere.is_dir()
    holder.stdin.close()
    holder.wait(timeout=30)
    assert private_dirs.remove_stale("pgbyte-ssl-", tmp_path) == [elsewhere]
