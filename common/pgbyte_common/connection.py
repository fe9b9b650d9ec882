"""Config → libpq connection: host/port/database/credentials, SSL modes, JDBC-style extras.

Both connectors accept the configs of Airbyte's official Postgres connectors. Those configs carry
JDBC vocabulary (`jdbc_url_params`, PEM certificates inline); here they become libpq keywords and
files, because psycopg speaks libpq.
"""

from __future__ import annotations

import atexit
import os
import shutil
import ssl
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import psycopg
from psycopg.conninfo import make_conninfo

from pgbyte_common import debug, private_dirs
from pgbyte_common.errors import ConfigError, describe_connect_error
from pgbyte_common.validation import unsupported_problem

SSL_MODES = ("disable", "allow", "prefer", "require", "verify-ca", "verify-full")

# pgjdbc parameter → libpq keyword. Values pass through unchanged unless noted in _convert.
_JDBC_TO_LIBPQ = {
    "connecttimeout": "connect_timeout",
    "logintimeout": "connect_timeout",
    "applicationname": "application_name",
    "sslmode": "sslmode",
    "sslrootcert": "sslrootcert",
    "sslcert": "sslcert",
    "sslkey": "sslkey",
    "sslpassword": "sslpassword",
    "options": "options",
    "gssencmode": "gssencmode",
    "targetservertype": "target_session_attrs",
    "tcpkeepalive": "keepalives",
    "channelbinding": "channel_binding",
    "kerberosservername": "krbsrvname",
    "ssl": "ssl",  # not a libpq keyword: ConnectionSettings.from_config turns it into a mode
}
# pgjdbc-only tuning knobs with no libpq meaning. Airbyte configs often carry them (for example
# prepareThreshold=0 for pgbouncer); they change nothing here, so they are accepted and ignored.
# sslfactory (NonValidatingFactory: encrypt without verifying) only weakens what ssl_mode asks
# libpq to verify, so the ssl_mode (or ssl=true) in effect already covers it.
_JDBC_IGNORED = {name.lower() for name in (
    "prepareThreshold", "defaultRowFetchSize", "stringtype", "reWriteBatchedInserts",
    "socketTimeout", "binaryTransfer", "binaryTransferEnable", "binaryTransferDisable",
    "preferQueryMode", "loglevel", "loggerLevel", "loggerFile", "autosave", "cleanupSavepoints",
    "cancelSignalTimeout", "sslfactory", "sslfactoryarg", "sslhostnameverifier",
    "sslpasswordcallback", "sslResponseTimeout", "readOnly", "readOnlyMode",
    "assumeMinServerVersion", "tcpNoDelay", "loadBalanceHosts", "hostRecheckSeconds",
    "maxResultBuffer", "adaptiveFetch", "adaptiveFetchMinimum", "adaptiveFetchMaximum",
    "receiveBufferSize", "sendBufferSize", "preparedStatementCacheQueries",
    "preparedStatementCacheSizeMiB", "databaseMetadataCacheFields",
    "databaseMetadataCacheFieldsMiB", "unknownLength", "disableColumnSanitiser",
    "allowEncodingChanges", "quoteReturningIdentifiers", "escapeSyntaxCallMode",
    "logUnclosedConnections", "logServerErrorDetail", "groupStartupParameters",
    "jaasApplicationName", "jaasLogin", "gsslib", "sspiServiceClass", "useSpnego",
    "socketFactory", "socketFactoryArg", "xmlFactoryFactory", "localSocketAddress",
    "authenticationPluginClassName", "protocolVersion", "charSet", "sslNegotiation",
    "gssResponseTimeout", "hideUnprivilegedObjects", "replication", "maxSendBufferSize",
)}  # fmt: skip
_TARGET_SERVER_TYPES = {
    "any": "any", "primary": "primary", "master": "primary", "secondary": "standby",
    "standby": "standby", "preferSecondary".lower(): "prefer-standby",
    "preferStandby".lower(): "prefer-standby",
}  # fmt: skip


def parse_jdbc_url_params(raw: str | None) -> dict[str, str]:
    """Parse `k=v&k=v` into libpq keywords; unknown keys are a ConfigError naming them."""
    params: dict[str, str] = {}
    if not raw or not raw.strip():
        return params
    unknown: list[str] = []
    search_path: str | None = None
    requiressl: str | None = None
    for part in raw.strip().lstrip("?").split("&"):
        if not part.strip():
            continue
        key, sep, value = part.partition("=")
        key, value = unquote(key.strip()), unquote(value.strip())
        if not sep or not key:
            raise ConfigError(
                f"jdbc_url_params: {part!r} is not of the form key=value (use k1=v1&k2=v2)."
            )
        lowered = key.lower()
        if lowered in _JDBC_IGNORED:
            continue
        if lowered == "currentschema":  # joined to whatever options say, wherever it comes
            search_path = value
            continue
        if lowered == "requiressl":  # libpq's old spelling of sslmode require/prefer
            requiressl = "require" if value.lower() in ("1", "true", "yes") else "prefer"
            continue
        libpq_key = _JDBC_TO_LIBPQ.get(lowered)
        if libpq_key is None and _is_libpq_keyword(key):
            libpq_key = key
        if libpq_key is None:
            unknown.append(key)
            continue
        if lowered == "sslmode":  # pgjdbc takes any case; libpq only lower case
            value = value.lower()
        elif lowered in ("tcpkeepalive", "ssl"):
            value = "1" if value.lower() in ("true", "1", "yes") else "0"
        elif lowered == "targetservertype":
            value = _TARGET_SERVER_TYPES.get(value.lower(), value)
        params[libpq_key] = value
    if requiressl is not None:  # an sslmode given too wins, as in pgjdbc
        params.setdefault("sslmode", requiressl)
    if search_path is not None:
        # libpq splits options at spaces; a backslash keeps one in the value
        escaped = search_path.replace("\\", "\\\\").replace(" ", "\\ ")
        params["options"] = f"{params.get('options', '')} -c search_path={escaped}".strip()
    if unknown:
        raise ConfigError(
            f"jdbc_url_params: unsupported parameter(s) {', '.join(sorted(unknown))}. "
            "Supported: libpq keywords (connect_timeout, application_name, options, sslmode, "
            "keepalives, target_session_attrs, ...) and their JDBC names (connectTimeout, "
            "ApplicationName, currentSchema, sslmode, tcpKeepAlive, targetServerType)."
        )
    return params


# libpq keywords jdbc_url_params may not set: they would silently connect somewhere else than
# the config names (and a check would report the config's target). pgjdbc takes none of them
# from URL parameters either.
_TARGET_KEYWORDS = {"host": "host", "hostaddr": "host", "port": "port", "dbname": "database",
                    "user": "username", "service": "host, port and database",
                    "servicefile": "host, port and database"}  # fmt: skip
# The config's ssl_mode fields each of these would replace.
_SSL_FILE_KEYWORDS = {"sslrootcert": "ca_certificate", "sslcert": "client_certificate",
                      "sslkey": "client_key", "sslpassword": "client_key_password"}  # fmt: skip


def _refuse_overrides(
    params: dict[str, str], config: dict[str, Any], ssl_mode: str, ssl: dict[str, str]
) -> None:
    """A ConfigError when jdbc_url_params would override what the config itself sets: the
    server, database or user; the password; an ssl_mode certificate; or the ssl_mode itself
    with a weaker sslmode (encryption turned off behind a verify-full config). Airbyte's JDBC
    connectors refuse any such override ("Cannot overwrite default JDBC parameter")."""
    for keyword, field_name in _TARGET_KEYWORDS.items():
        if keyword in params:
            raise ConfigError(
                f"jdbc_url_params: {keyword} would override the config's {field_name}; set "
                f"{field_name} in the config instead and remove {keyword} from jdbc_url_params."
            )
    if "password" in params and config.get("password"):
        raise ConfigError(
            "jdbc_url_params: password would override the config's password; keep one of them."
        )
    for keyword, field_name in _SSL_FILE_KEYWORDS.items():
        if keyword in params and field_name in ssl:
            raise ConfigError(
                f"jdbc_url_params: {keyword} would override ssl_mode.{field_name}; keep one "
                "of them."
            )
    wanted = params.get("sslmode")
    if wanted is None:
        return
    if wanted not in SSL_MODES:
        raise ConfigError(
            f"jdbc_url_params: sslmode must be one of {', '.join(SSL_MODES)}; got {wanted!r}."
        )
    configured = config.get("ssl_mode") is not None or config.get("ssl") is True
    if configured and SSL_MODES.index(wanted) < SSL_MODES.index(ssl_mode):
        raise ConfigError(
            f"jdbc_url_params: sslmode={wanted} would weaken the config's ssl_mode "
            f"{ssl_mode}; set ssl_mode instead and remove sslmode from jdbc_url_params."
        )


def _is_libpq_keyword(key: str) -> bool:
    try:
        psycopg.conninfo.conninfo_to_dict(make_conninfo(**{key: "x"}))
    except psycopg.ProgrammingError:
        return False
    return True


@dataclass(frozen=True)
class ConnectionSettings:
    """Where and how to connect. `password` is kept out of repr so it never reaches a log."""

    host: str
    port: int
    database: str
    username: str
    password: str | None = field(default=None, repr=False)
    ssl_mode: str = "prefer"
    ssl: dict[str, str] = field(default_factory=dict, repr=False)
    params: dict[str, str] = field(default_factory=dict)
    application_name: str = "pgbyte"

    @classmethod
    def from_config(
        cls, config: dict[str, Any], *, application_name: str, default_ssl_mode: str = "prefer"
    ) -> ConnectionSettings:
        missing = [k for k in ("host", "database", "username") if not config.get(k)]
        if missing:
            raise ConfigError(f"The config lacks required field(s): {', '.join(missing)}.")
        try:
            port = int(config.get("port", 5432))
        except (TypeError, ValueError):
            raise ConfigError(f"port must be a number, got {config.get('port')!r}.") from None
        if not 0 < port < 65536:
            raise ConfigError(f"port must be between 1 and 65535, got {port}.")
        problem = unsupported_problem(config)
        if problem:
            raise ConfigError(problem)
        ssl_mode, ssl = _ssl_settings(config, default_ssl_mode)
        params = parse_jdbc_url_params(config.get("jdbc_url_params"))
        _refuse_overrides(params, config, ssl_mode, ssl)
        if "sslmode" in params:  # stronger than ssl_mode (_refuse_overrides): it rules
            ssl_mode = params.pop("sslmode")
        # pgjdbc's ssl=true: encrypt (at least require; a verify mode of ssl_mode stays).
        if params.pop("ssl", "0") == "1" and ssl_mode in ("disable", "allow", "prefer"):
            ssl_mode = "require"
        return cls(
            host=str(config["host"]).strip(),
            port=port,
            database=str(config["database"]),
            username=str(config["username"]),
            password=config.get("password") or None,
            ssl_mode=ssl_mode,
            ssl=ssl,
            params=params,
            application_name=application_name,
        )

    def conninfo(self, **overrides: Any) -> str:
        """The libpq connection string (holds the password: never log it)."""
        kwargs: dict[str, Any] = {
            "host": self.host,
            "port": self.port,
            "dbname": self.database,
            "user": self.username,
            "sslmode": self.ssl_mode,
            "connect_timeout": 30,
            "application_name": self.application_name,
            # Protocol output is UTF-8. A SQL_ASCII database would otherwise hand psycopg bytes
            # instead of str; jdbc_url_params may still choose another encoding.
            "client_encoding": "UTF8",
        }
        if self.password:
            kwargs["password"] = self.password
        if self.ssl_mode == "verify-full" and "ca_certificate" not in self.ssl:
            kwargs["sslrootcert"] = _system_ca_bundle()
        kwargs.update(_materialize_ssl_files(self.ssl))
        kwargs.update(self.params)
        kwargs.update(overrides)
        return make_conninfo(**kwargs)

    def connect(self, **kwargs: Any) -> psycopg.Connection[Any]:
        """Open a connection; failures become actionable ConfigError/TransientError."""
        extras = f", with {', '.join(sorted(self.params))}" if self.params else ""
        debug.connecting(self.host, self.port, self.database, self.username,
                         f"{self.ssl_mode}{extras}")  # fmt: skip
        try:
            conn = psycopg.connect(self.conninfo(), **kwargs)
        except psycopg.Error as exc:
            raise describe_connect_error(
                exc,
                host=self.host,
                port=self.port,
                database=self.database,
                username=self.username,
            ) from None
        debug.connected(conn)
        return conn


def _system_ca_bundle() -> str:
    """The system's trusted CAs as one file. Not libpq's `sslrootcert=system`: psycopg-binary's
    bundled OpenSSL looks for them in a directory of its own that does not exist."""
    candidates = [os.environ.get("SSL_CERT_FILE"), ssl.get_default_verify_paths().cafile,
                  "/etc/ssl/certs/ca-certificates.crt", "/etc/pki/tls/certs/ca-bundle.crt",
                  "/etc/ssl/cert.pem"]  # fmt: skip
    for path in candidates:
        if path and os.path.isfile(path):
            return path
    raise ConfigError(
        "ssl_mode verify-full without ca_certificate verifies against the system's trusted "
        "CAs, and no CA bundle was found here: give ca_certificate (the CA's PEM text)."
    )


def _ssl_settings(config: dict[str, Any], default: str) -> tuple[str, dict[str, str]]:
    raw = config.get("ssl_mode")
    if raw is None:
        # Airbyte's destination has a plain `ssl` flag beside (or instead of) ssl_mode.
        return ("require" if config.get("ssl") is True else default), {}
    mode = raw.get("mode") if isinstance(raw, dict) else raw
    if mode not in SSL_MODES:
        raise ConfigError(f"ssl_mode.mode must be one of {', '.join(SSL_MODES)}; got {mode!r}.")
    files: dict[str, str] = {}
    if isinstance(raw, dict):
        for key in ("ca_certificate", "client_certificate", "client_key", "client_key_password"):
            if raw.get(key):
                files[key] = str(raw[key])
    if mode == "verify-ca" and "ca_certificate" not in files:
        # libpq takes the system's CAs only with verify-full (the host name checked too).
        raise ConfigError(
            "ssl_mode verify-ca needs ca_certificate (the CA's PEM text); or choose verify-full "
            "to verify the server against the system's trusted CAs."
        )
    if "client_certificate" in files and "client_key" not in files:
        # libpq would look for ~/.postgresql/postgresql.key, which no config user set up.
        raise ConfigError("ssl_mode.client_certificate needs ssl_mode.client_key (its PEM text).")
    if _encrypted_pem(files.get("client_key", "")) and "client_key_password" not in files:
        # OpenSSL would ask for the passphrase on the terminal, or read it from stdin (the
        # destination's messages): say what is missing instead.
        raise ConfigError(
            "ssl_mode.client_key is encrypted: set ssl_mode.client_key_password to its passphrase."
        )
    return mode, files


def _encrypted_pem(pem: str) -> bool:
    """A PEM private key protected by a passphrase (PKCS#8 or OpenSSL's traditional form)."""
    return "BEGIN ENCRYPTED PRIVATE KEY" in pem or "Proc-Type: 4,ENCRYPTED" in pem


_ssl_dir: Path | None = None
SSL_DIR_PREFIX = "pgbyte-ssl-"


def _materialize_ssl_files(ssl: dict[str, str]) -> dict[str, str]:
    """libpq reads certificates from files: write the inline PEMs to a private temp dir."""
    global _ssl_dir
    if not ssl:
        return {}
    if _ssl_dir is None:
        try:
            # Named after this process: one a SIGKILL left (a private key in it) is removed
            # by the next connector that writes certificates.
            _ssl_dir = private_dirs.make(SSL_DIR_PREFIX)
        except OSError as exc:  # no writable temporary directory: a read-only filesystem
            raise ConfigError(
                f"The certificates given inline in ssl_mode must be written to a temporary "
                f"file for libpq, and no temporary directory is writable ({exc.strerror}): in a "
                "container run with --read-only, add --tmpfs /tmp (or set TMPDIR to a "
                "writable directory)."
            ) from None
        atexit.register(shutil.rmtree, _ssl_dir, True)
    out: dict[str, str] = {}
    names = {
        "ca_certificate": "sslrootcert",
        "client_certificate": "sslcert",
        "client_key": "sslkey",
    }
    for key, keyword in names.items():
        if key in ssl:
            path = _ssl_dir / f"{keyword}.pem"
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as fh:
                fh.write(ssl[key] if ssl[key].endswith("\n") else ssl[key] + "\n")
            out[keyword] = str(path)
    if "client_key_password" in ssl:
        out["sslpassword"] = ssl["client_key_password"]
    elif "client_key" in ssl:
        # Any non-empty sslpassword stops OpenSSL from prompting for a passphrase (on the
        # terminal, or from stdin) should the key be encrypted in a form not recognized above.
        out["sslpassword"] = "-"
    return out
