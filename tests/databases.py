"""Databases of their own for tests that start real servers: in the PostgreSQL phase of scripts/test
(AUTOENROLL_DATABASE_URL names the throwaway cluster), a fresh database per server, dropped afterwards;
in the SQLite phase none, and each server keeps its SQLite file in its data directory."""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Iterator
from urllib.parse import urlsplit, urlunsplit

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
