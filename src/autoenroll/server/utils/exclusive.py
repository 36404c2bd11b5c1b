"""One holder at a time for scheduled work (CRL builds, the directory sweep), across every server.

Servers that share a PostgreSQL database may run on several hosts, so the lock is the database's: a
session advisory lock, held by this connection outside any transaction and released by PostgreSQL if
the process dies. SQLite means one host, where a file lock in the data directory is enough (and the
kernel releases it with the process too).
"""

from __future__ import annotations

import contextlib
import zlib
from collections.abc import Iterator
from pathlib import Path

from django.db import connection

try:
    import fcntl
except ImportError:  # pragma: no cover - not on Windows
    fcntl = None


@contextlib.contextmanager
def one_at_a_time(data_dir: Path, job: str, key: int = 0, *, wait: bool = True) -> Iterator[bool]:
    """Hold the lock of (`job`, `key`) while the block runs. With `wait=False` the block runs at once
    and is told (False) that another server holds it, so a periodic job can skip its round."""
    if connection.vendor == "postgresql":
        lock_class = zlib.crc32(job.encode()) & 0x7FFFFFFF
        with connection.cursor() as cursor:
            cursor.execute(f"SELECT pg_{'' if wait else 'try_'}advisory_lock(%s, %s)", [lock_class, key])
            held = True if wait else cursor.fetchone()[0]
        try:
            yield held
        finally:
            if held:
                with connection.cursor() as cursor:
                    cursor.execute("SELECT pg_advisory_unlock(%s, %s)", [lock_class, key])
        return
    with host_lock(data_dir / "locks" / f"{job}-{key}", wait=wait) as held:
        yield held


@contextlib.contextmanager
def host_lock(directory: Path, *, wait: bool = True) -> Iterator[bool]:
    """One process of this host at a time (`serve` has several workers, `serve` a CRL watcher): for
    what each host keeps to itself, like its OCSP responder's key."""
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    with open(directory / ".lock", "a+b") as fh:
        held = True
        if fcntl is not None:
            try:
                fcntl.flock(fh.fileno(), fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
            except BlockingIOError:
                held = False
        try:
            yield held
        finally:
            if held and fcntl is not None:
                fcntl.flock(fh.fileno(), fcntl.LOCK_UN)
