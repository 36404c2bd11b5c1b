"""Databases of their own for tests that start real servers: in the PostgreSQL phase of scripts/test
(AUTOENROLL_DATABASE_URL names the throwaway cluster), a fresh database per server, dropped afterwards;
in the SQLite phase none, and each server keeps its SQLite file in its data directory."""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from autoenroll.testbed.server import free_port

BASE_URL = os.environ.get("AUTOENROLL_DATABASE_URL", "")
ON_POSTGRESQL = BASE_URL.startswith("postgresql")


@contextlib.contextmanager
def own_databases(prefix: str, count: int = 1) -> Iterator[list[dict[str, str]]]:
    """`count` environments for servers, each naming a new PostgreSQL database; empty ones on SQLite."""
    if not ON_POSTGRESQL:
        yield [{} for _ in range(count)]
        return
    import psycopg

    names = [f"{prefix}_{uuid.uuid4().hex[:8]}" for _ in range(count)]
    with psycopg.connect(BASE_URL, autocommit=True) as conn:
        for name in names:
            conn.execute(f"CREATE DATABASE {name}")
    try:
        parts = urlsplit(BASE_URL)
        yield [{"AUTOENROLL_DATABASE_URL": urlunsplit(parts._replace(path=f"/{name}"))} for name in names]
    finally:
        with psycopg.connect(BASE_URL, autocommit=True) as conn:
            for name in names:
                conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


class Cluster:
    """A PostgreSQL cluster of a test's own (Debian's binaries, as scripts/with-postgres makes one), for a
    test that stops and starts PostgreSQL: stopping the phase's cluster would stop every other test."""

    def __init__(self) -> None:
        bindirs = sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=lambda d: int(d.split("/")[-2]))
        if not bindirs:
            raise RuntimeError("PostgreSQL's binaries are not installed (Debian: postgresql)")
        self.bin = Path(bindirs[-1])
        self.dir = Path(tempfile.mkdtemp(prefix="autoenroll-pg-outage-"))  # the postgres user must reach it
        self.port = free_port()
        self.as_postgres = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        if self.as_postgres:
            shutil.chown(self.dir, "postgres")
        self._run("initdb", "-D", str(self.dir / "data"), "-U", "autoenroll", "--auth=trust", "-E", "UTF8")
        self.url = f"postgresql://autoenroll@127.0.0.1:{self.port}/postgres"

    def _run(self, tool: str, *args: str) -> None:
        subprocess.run([*self.as_postgres, str(self.bin / tool), *args], check=True, capture_output=True, timeout=120)

    def start(self) -> None:
        options = (
            f"-c listen_addresses=127.0.0.1 -c port={self.port} -c unix_socket_directories={self.dir} -c fsync=off"
        )
        self._run(
            "pg_ctl",
            "-D",
            str(self.dir / "data"),
            "-l",
            str(self.dir / "log"),
            "-w",
            "-t",
            "30",
            "-o",
            options,
            "start",
        )

    def stop(self) -> None:
        self._run("pg_ctl", "-D", str(self.dir / "data"), "-m", "fast", "-w", "stop")

    def remove(self) -> None:
        with contextlib.suppress(subprocess.CalledProcessError):
            self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)
