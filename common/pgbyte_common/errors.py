"""One exception hierarchy for both connectors, each class carrying its Airbyte failure_type.

Messages are written for a person: what went wrong and what to change. They never contain a
secret; `describe_connect_error` builds them from the settings (never the password) rather than
from the server's text alone.
"""

from __future__ import annotations

import os
import re
from typing import TYPE_CHECKING

from pgbyte_common.sql_names import quoted

if TYPE_CHECKING:
    import psycopg


class PgbyteError(Exception):
    """Base class. `failure_type` is the Airbyte TRACE ERROR failure_type for this error."""

    failure_type = "system_error"

    def __init__(self, message: str, *, internal: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.internal = internal


class ConfigError(PgbyteError):
    """The user's config (or catalog/state) is wrong: credentials, host, database, options."""

    failure_type = "config_error"


class TransientError(PgbyteError):
    """Worth retrying as is: a lost connection, a server shutting down, a serialization failure."""

    failure_type = "transient_error"


class LockTableFull(ConfigError):
    """The server's lock table is full (max_locks_per_transaction): whatever the transaction
    touches next fails the same, so a read stops at it."""


class SystemError_(PgbyteError):
    """A bug or an unexpected state: neither the user's config nor a passing fault."""

    failure_type = "system_error"


# SQLSTATE classes that mean "try again later" rather than "fix your config".
_TRANSIENT_SQLSTATE_PREFIXES = ("08", "57P", "40001", "40P01", "53")


def _where(host: str, port: int, database: str) -> str:
    return f"{host}:{port}/{database}"


def describe_connect_error(
    exc: psycopg.Error, *, host: str, port: int, database: str, username: str
) -> PgbyteError:
    """Turn a psycopg connection error into an actionable PgbyteError, never quoting a secret."""
    from psycopg import errors as pg_errors  # imported here: see _classify

    where = _where(host, port, database)
    text = str(exc).strip()
    lowered = text.lower()
    if "no password supplied" in lowered:
        return ConfigError(
            f"The server at {where} requires a password for user {username!r}: set `password`."
        )
    if isinstance(exc, pg_errors.InvalidPassword) or "password authentication failed" in lowered:
        return ConfigError(
            f"Authentication failed for user {username!r} at {where}: "
            "check the username and password."
        )
    # At connect time libpq gives psycopg no SQLSTATE: the server's text is all there is.
    if "role" in lowered and "does not exist" in lowered:
        return ConfigError(
            f"User {username!r} does not exist on the server at {host}:{port}: check the username."
        )
    if "not permitted to log in" in lowered:
        return ConfigError(
            f"User {username!r} may not log in at {where} (its role lacks LOGIN): use a login "
            f"role, or ALTER ROLE {quoted(username)} LOGIN."
        )
    if isinstance(exc, pg_errors.InvalidAuthorizationSpecification) or "no pg_hba.conf" in lowered:
        return ConfigError(
            f"The server at {where} refused user {username!r} (pg_hba.conf or role): "
            "check the username, the role's LOGIN right and the server's pg_hba.conf."
        )
    if isinstance(exc, pg_errors.InvalidCatalogName) or (
        "database" in lowered and "does not exist" in lowered
    ):
        return ConfigError(
            f"Database {database!r} does not exist on {host}:{port}: check the database name."
        )
    if "could not translate host name" in lowered or "name or service not known" in lowered:
        return ConfigError(f"Unknown host {host!r}: check the host name.")
    if "connection refused" in lowered:
        hint = ""
        if os.environ.get("AIRBYTE_ENTRYPOINT") and str(host).lower() in _LOOPBACK:
            # In our image: docker's default (bridge) network gives the container its own
            # localhost, where no server runs.
            hint = (
                f" In a container {host} is the container itself: run it with --network host, "
                "or give the host's address (on Linux the bridge gateway, e.g. 172.17.0.1, or "
                "host.docker.internal with --add-host host.docker.internal:host-gateway)."
            )
        return ConfigError(
            f"Nothing accepts connections at {host}:{port}: check the host and port, and that "
            f"the server is running and listening there.{hint}"
        )
    if "timeout expired" in lowered or "timed out" in lowered:
        return TransientError(
            f"Connecting to {host}:{port} timed out: check the host, port and firewall."
        )
    if "ssl" in lowered or "certificate" in lowered:
        return ConfigError(f"SSL negotiation with {host}:{port} failed: {_ssl_reason(text)}")
    if isinstance(exc, pg_errors.InsufficientPrivilege):
        return ConfigError(f"User {username!r} lacks a privilege on {where}: {_first_line(text)}")
    if (
        "too many connections" in lowered
        or "too many clients" in lowered
        or ("connection slots are reserved" in lowered)
    ):
        return TransientError(
            f"The server at {where} refused a connection: {_fatal_reason(text)}. Close other "
            f"sessions of user {username!r}, or raise the role's CONNECTION LIMIT (ALTER ROLE) "
            "or the server's max_connections."
        )
    if "invalid value for parameter" in lowered or "unrecognized configuration parameter" in (
        lowered
    ):
        return ConfigError(
            f"The server at {where} refused a setting given at connect time (jdbc_url_params "
            f"options?): {_fatal_reason(text)}."
        )
    return classify_error(exc, context=f"Connecting to {where} failed")


def _fatal_reason(text: str) -> str:
    """The server's own reason from libpq's `connection to server at … failed: FATAL: …`."""
    line = _first_line(text)
    marker = "FATAL:"
    reason = line[line.index(marker) + len(marker) :] if marker in line else line
    return reason.strip().rstrip(".")


# SQLSTATE → (words of the server's message, the setting that caused it, the error class): a
# limit the role, database or server sets. A retry meets the same statement timeout or file
# limit again (config_error); another session's lock may be gone by then (transient).
_LIMIT_SETTINGS: dict[str, tuple[str, str, type[PgbyteError]]] = {
    "57014": ("statement timeout", "statement_timeout", ConfigError),
    "55P03": ("lock timeout", "lock_timeout", TransientError),
    "53400": ("temporary file size exceeds", "temp_file_limit", ConfigError),
}


def classify_error(exc: BaseException, *, context: str) -> PgbyteError:
    """Map any exception raised while working with the database to a PgbyteError, whose cause
    is `exc` (so that a TRACE ERROR's stack_trace shows where it was raised)."""
    if isinstance(exc, PgbyteError):
        return exc
    error = _classify(exc, context=context)
    error.__cause__ = exc
    return error


def _classify(exc: BaseException, *, context: str) -> PgbyteError:
    text = _first_line(str(exc)) or type(exc).__name__
    # psycopg is imported here, not with the module: pgbyte imports this module but talks to no
    # database, and psycopg's import is a tenth of a second of every sync's start.
    import psycopg
    from psycopg import errors as pg_errors

    if isinstance(exc, psycopg.Error):
        sqlstate = getattr(exc, "sqlstate", None) or ""
        if isinstance(exc, psycopg.OperationalError) and not sqlstate:
            return TransientError(f"{context}: the connection to the server was lost ({text}).")
        limit = _LIMIT_SETTINGS.get(sqlstate)
        if limit and limit[0] in text.lower():
            _, setting, kind = limit
            return kind(
                f"{context}: {text} ({setting} is set for this role, database or server, or "
                f"by the config's jdbc_url_params options: raise it or turn it off for this "
                f"user, e.g. ALTER ROLE ... SET {setting} = 0)"
            )
        hint = exc.diag.message_hint or ""
        if isinstance(exc, pg_errors.OutOfMemory) and "max_locks_per_transaction" in hint:
            # The server's lock table is full: a retry meets the same (class 53 is otherwise
            # taken for transient).
            return LockTableFull(
                f"{context}: {text} (the server's lock table is full: a transaction holds a "
                "lock on each table it touches, and on their indexes, until it ends — a read on "
                "every table it reads; raise max_locks_per_transaction (a server restart), or "
                "sync fewer streams per connection)"
            )
        if sqlstate.startswith(_TRANSIENT_SQLSTATE_PREFIXES):
            return TransientError(f"{context}: {text}")
        if isinstance(exc, pg_errors.ReadOnlySqlTransaction):
            return ConfigError(
                f"{context}: {text} (the session is read-only: default_transaction_read_only "
                "is on for this role or database — ALTER ROLE ... SET "
                "default_transaction_read_only = off — or the server is a standby: connect to "
                "the primary)"
            )
        if isinstance(exc, pg_errors.InsufficientPrivilege):
            schema = re.search(r"permission denied for schema (.+)$", text)
            if schema:
                name = quoted(schema.group(1))
                return ConfigError(
                    f"{context}: {text} (the connector's user needs USAGE on schema {name}, "
                    f"and CREATE to write there: GRANT USAGE, CREATE ON SCHEMA {name} TO it)"
                )
            database = re.search(r"permission denied for database (.+)$", text)
            if database:  # CREATE SCHEMA of a schema that does not exist yet
                name = quoted(database.group(1))
                return ConfigError(
                    f"{context}: {text} (the schema to write into does not exist, and creating "
                    f"it needs CREATE on the database: GRANT CREATE ON DATABASE {name} TO the "
                    "connector's user, or create the schema and GRANT USAGE, CREATE on it)"
                )
            return ConfigError(f"{context}: {text} (grant the privilege or remove the stream)")
    return SystemError_(f"{context}: {text}", internal=repr(exc))


# The files connection.py writes the inline PEMs of ssl_mode to, and the config field of each.
_SSL_FILE_FIELDS = {
    "sslrootcert.pem": "ssl_mode.ca_certificate",
    "sslcert.pem": "ssl_mode.client_certificate",
    "sslkey.pem": "ssl_mode.client_key",
}


def _ssl_reason(text: str) -> str:
    """libpq's reason, with the config field named instead of the temporary file it wrote
    (the path means nothing to the user), and what to change."""
    line = _first_line(text)
    for name, field in _SSL_FILE_FIELDS.items():
        if name in line:
            line = re.sub(r'"?[^\s"]*' + re.escape(name) + '"?', field, line)
            if field == "ssl_mode.client_key" and "decrypt" in line:
                # The key is encrypted: its passphrase is missing or wrong.
                field = "ssl_mode.client_key_password (the key's passphrase)"
            return f"{line}: check {field}."
    lowered = line.lower()
    if any(word in lowered for word in ("does not support ssl", "ssl was required", "no encrypt")):
        return (f"{line}: the server and the config's SSL settings disagree (ssl_mode, "
                "`ssl: true`, or an sslmode in jdbc_url_params); change them, or the server's "
                "SSL.")  # fmt: skip
    return f"{line}: check ssl_mode and its certificates."


_LOOPBACK = frozenset({"localhost", "127.0.0.1", "::1", "localhost.localdomain"})


def _first_line(text: str) -> str:
    return text.strip().splitlines()[0] if text.strip() else ""
