"""The two PostgreSQL endpoints a benchmark runs against: throwaway servers or given DSNs.

By default the source and the destination are two ThrowawayServers (initdb in a temp dir, fsync
off), as DESIGN.md §5 measured them, so a run needs nothing set up beforehand. `--source-dsn` and
`--dest-dsn` point at existing databases instead (their user must be able to create tables).
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
from pgbyte.throwaway_pg import ThrowawayServer, find_bin_dir
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from bench.process import MASK

BENCH_DATABASES = {"source": "bench_source", "destination": "bench_dest"}


@dataclass(frozen=True)
class Endpoint:
    """One database: how the harness, psql and a connector config reach it."""

    role: str
    host: str
    port: int
    user: str
    password: str
    dbname: str

    def conninfo(self) -> str:
        return make_conninfo(
            host=self.host, port=self.port, user=self.user, password=self.password,
            dbname=self.dbname,
        )  # fmt: skip

    def connect(self) -> psycopg.Connection:
        return psycopg.connect(self.conninfo(), autocommit=True)

    def connector_config(self, **extra: object) -> dict[str, object]:
        """A config in the shape of Airbyte's Postgres connector specs (both sides accept it)."""
        return {
            "host": self.host,
            "port": self.port,
            "database": self.dbname,
            "username": self.user,
            "password": self.password,
            "ssl_mode": {"mode": "disable"},
            **extra,
        }

    def psql(self, command: str) -> list[str]:
        """argv of psql running one SQL command; the password travels in the environment."""
        conninfo = make_conninfo(host=self.host, port=self.port, user=self.user, dbname=self.dbname)
        return [
            str(find_bin_dir() / "psql"), "-X", "-q", "-v", "ON_ERROR_STOP=1",
            "-d", conninfo, "-c", command,
        ]  # fmt: skip

    def psql_env(self) -> dict[str, str]:
        return {**os.environ, "PGPASSWORD": self.password, "PGSSLMODE": "disable"}

    @classmethod
    def from_dsn(cls, role: str, dsn: str) -> Endpoint:
        params = conninfo_to_dict(dsn)
        password = str(params.get("password") or os.environ.get("PGPASSWORD", ""))
        MASK.add(password)
        return cls(
            role=role,
            host=str(params.get("host") or "127.0.0.1"),
            port=int(params.get("port") or 5432),
            user=str(params.get("user") or os.environ.get("USER", "postgres")),
            password=password,
            dbname=str(params.get("dbname") or "postgres"),
        )


@dataclass
class Servers:
    """Starts what is needed and stops only what it started."""

    source_dsn: str | None = None
    dest_dsn: str | None = None
    started: list[ThrowawayServer] = field(default_factory=list)
    by_role: dict[str, ThrowawayServer] = field(default_factory=dict)

    def endpoints(self) -> tuple[Endpoint, Endpoint]:
        """Both endpoints; two throwaway servers start side by side (initdb takes seconds)."""
        with ThreadPoolExecutor(max_workers=2) as pool:
            source = pool.submit(self._endpoint, "source", self.source_dsn)
            dest = pool.submit(self._endpoint, "destination", self.dest_dsn)
            return source.result(), dest.result()

    def _endpoint(self, role: str, dsn: str | None) -> Endpoint:
        if dsn:
            return Endpoint.from_dsn(role, dsn)
        server = ThrowawayServer()
        self.started.append(server)  # before start(): a half-started server is cleaned up too
        self.by_role[role] = server
        server.start()
        MASK.add(server.password)
        dbname = BENCH_DATABASES[role]
        server.create_database(dbname)
        return Endpoint(
            role=role, host=server.host, port=server.port, user=server.user,
            password=server.password, dbname=dbname,
        )  # fmt: skip

    def stop(self) -> None:
        self.by_role.clear()
        while self.started:
            self.started.pop().stop()

    def cpu_seconds(self) -> dict[str, float]:
        """CPU time used so far by each throwaway server (empty for servers given by DSN)."""
        totals = {}
        for role, server in self.by_role.items():
            if server.root is not None:
                seconds = _server_cpu(server.root / "data" / "postmaster.pid")
                if seconds is not None:
                    totals[role] = seconds
        return totals


_TICKS = os.sysconf("SC_CLK_TCK")


def _stat_fields(pid: int) -> list[str]:
    """Fields of /proc/PID/stat after the command name (which may hold spaces)."""
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()


def _server_cpu(pidfile: Path) -> float | None:
    """Postmaster's own and reaped children's CPU plus its live children's, in seconds.

    A backend that ends between two readings moves from the live sum into the postmaster's
    cutime/cstime with its whole lifetime, so the difference of two readings stays right.
    """
    try:
        postmaster = int(pidfile.read_text().split()[0])
        # After the name: state(0) ppid(1) ... utime(11) stime(12) cutime(13) cstime(14).
        fields = _stat_fields(postmaster)
        ticks = sum(int(fields[i]) for i in (11, 12, 13, 14))
        children = (Path(f"/proc/{postmaster}/task/{postmaster}/children")).read_text().split()
    except (OSError, ValueError, IndexError):
        return None
    for child in children:
        try:
            fields = _stat_fields(int(child))
            ticks += int(fields[11]) + int(fields[12])
        except (OSError, ValueError, IndexError):
            continue  # ended meanwhile: its time is in the postmaster's cutime next reading
    return ticks / _TICKS


def server_version(endpoint: Endpoint) -> str:
    with endpoint.connect() as conn:
        row = conn.execute("SHOW server_version").fetchone()
    return str(row[0]) if row else "?"
