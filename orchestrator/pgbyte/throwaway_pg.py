"""A throwaway PostgreSQL server: initdb into a temp dir, start, hand out DSNs, stop, delete.

Used by the test suite, the benchmarks and `make demo`, so none of them needs an existing server.
PostgreSQL refuses to run as root, so when we are root every server command runs as the
`postgres` OS user (via runuser) and the data directory is handed to that user.
"""

from __future__ import annotations

import glob
import os
import secrets
import shutil
import socket
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
from psycopg import sql
from psycopg.conninfo import make_conninfo

SERVER_SETTINGS = {
    # Throwaway data: durability buys nothing here and costs a lot of time.
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
    # CDC tests need logical decoding.
    "wal_level": "logical",
    "max_wal_senders": "10",
    "max_replication_slots": "10",
    "max_connections": "200",
    "listen_addresses": "127.0.0.1",
}


class ThrowawayServerError(RuntimeError):
    """The throwaway server could not be set up; the message says what to install or check."""


def find_bin_dir() -> Path:
    """Return the directory holding initdb and pg_ctl (newest installed major version)."""
    candidates = [os.environ.get("PG_BIN", "")]
    candidates += sorted(
        glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: int(p.split("/")[-2]), reverse=True
    )
    initdb = shutil.which("initdb")
    if initdb:
        candidates.append(str(Path(initdb).resolve().parent))
    for candidate in candidates:
        if candidate and (Path(candidate) / "initdb").exists():
            return Path(candidate)
    raise ThrowawayServerError(
        "PostgreSQL server binaries (initdb, pg_ctl) not found: run `make postgres` "
        "(installs Debian's postgresql) or set PG_BIN to their directory"
    )


def free_port() -> int:
    """Ask the kernel for a free TCP port on the loopback address."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class ThrowawayServer:
    """One running server on 127.0.0.1; `stop()` (or the context manager) removes every trace."""

    settings: dict[str, str] = field(default_factory=dict)
    user: str = "postgres"
    password: str = field(default_factory=lambda: "pgbyte-" + secrets.token_hex(8))
    host: str = "127.0.0.1"
    port: int = 0
    root: Path | None = None

    def __enter__(self) -> ThrowawayServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def _as_postgres(self) -> list[str]:
        return ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []

    def _run(self, *args: str) -> None:
        result = subprocess.run(
            [*self._as_postgres, *args], capture_output=True, text=True, check=False
        )
        if result.returncode != 0:
            log = ""
            if self.root and (self.root / "server.log").exists():
                log = (self.root / "server.log").read_text(errors="replace")[-2000:]
            raise ThrowawayServerError(
                f"{Path(args[0]).name} failed ({result.returncode}): {result.stderr.strip()}\n{log}"
            )

    def start(self) -> None:
        bin_dir = find_bin_dir()
        self.root = Path(tempfile.mkdtemp(prefix="pgbyte-pg-"))
        pwfile = self.root / "pwfile"
        pwfile.write_text(self.password + "\n")
        if os.geteuid() == 0:
            shutil.chown(self.root, "postgres", "postgres")
            shutil.chown(pwfile, "postgres", "postgres")
        pwfile.chmod(0o600)
        data = self.root / "data"
        self._run(
            str(bin_dir / "initdb"), "-D", str(data), "-U", self.user, "-E", "UTF8",
            "--locale=C.UTF-8", "--auth-local=trust", "--auth-host=scram-sha-256",
            f"--pwfile={pwfile}",
        )  # fmt: skip
        pwfile.unlink()
        self.port = self.port or free_port()
        options = {**SERVER_SETTINGS, **self.settings, "port": str(self.port)}
        options["unix_socket_directories"] = str(self.root)
        opts = " ".join(f"-c {k}={v}" for k, v in options.items())
        self._run(
            str(bin_dir / "pg_ctl"), "-D", str(data), "-l", str(self.root / "server.log"),
            "-o", opts, "-w", "-t", "60", "start",
        )  # fmt: skip

    def stop(self) -> None:
        if self.root is None:
            return
        bin_dir = find_bin_dir()
        data = self.root / "data"
        if data.exists():
            subprocess.run(
                [*self._as_postgres, str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "immediate",
                 "-w", "stop"],
                capture_output=True, check=False,
            )  # fmt: skip
        shutil.rmtree(self.root, ignore_errors=True)
        self.root = None

    def conninfo(self, dbname: str = "postgres") -> str:
        return make_conninfo(
            host=self.host, port=self.port, user=self.user, password=self.password, dbname=dbname
        )

    def connector_config(self, dbname: str, **extra: object) -> dict[str, object]:
        """A connector config (the shape both connectors' specs accept) for one database."""
        return {
            "host": self.host,
            "port": self.port,
            "database": dbname,
            "username": self.user,
            "password": self.password,
            "ssl_mode": {"mode": "disable"},
            **extra,
        }

    def create_database(self, dbname: str, *, encoding: str | None = None) -> None:
        """A fresh database; `encoding` (e.g. SQL_ASCII) makes it from template0 with the C
        locale, which every encoding accepts."""
        create = sql.SQL("CREATE DATABASE {}").format(sql.Identifier(dbname))
        if encoding is not None:
            locale = sql.SQL("{} TEMPLATE template0 ENCODING {} LC_COLLATE 'C' LC_CTYPE 'C'")
            create = locale.format(create, sql.Literal(encoding))
        with psycopg.connect(self.conninfo(), autocommit=True) as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(dbname))
            )
            conn.execute(create)

    def drop_database(self, dbname: str) -> None:
        with psycopg.connect(self.conninfo(), autocommit=True) as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(dbname))
            )
