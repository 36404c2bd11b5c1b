"""Database failures: which pass, and which database is away. One decision for every entry point (the
agent's API, MS-XCEP/WSTEP, OCSP, CRL and CA downloads), whatever step failed."""

from __future__ import annotations

import logging
import sqlite3
import threading
import time

from django.db import DatabaseError, InterfaceError, OperationalError, connection

from autoenroll.protocol import EnrollmentError

log = logging.getLogger("autoenroll.database")
RETRY_SECONDS = 60  # what a client is told to wait: a failover or a restart takes about this long
#: PostgreSQL's SQLSTATE classes of a failure that passes: connection, transaction rollback (serialisation,
#: deadlock), insufficient resources, lock not available, operator intervention (shutdown), system error.
_PASSING_CLASSES = frozenset({"08", "40", "53", "55", "57", "58"})
#: SQLite's primary result codes of the same: busy, locked and the WAL's lock protocol (locks), out of
#: memory and disk full (resources), I/O error (system).
_PASSING_SQLITE = frozenset(
    {
        sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED, sqlite3.SQLITE_PROTOCOL,
        sqlite3.SQLITE_NOMEM, sqlite3.SQLITE_FULL, sqlite3.SQLITE_IOERR,
    }
)  # fmt: skip


def passing(exc: DatabaseError) -> bool:
    """Whether the same call later can succeed: the connection lost, a lock or serialisation conflict, the
    database busy. Not a missing table or column, a constraint or bad data: bugs, which a retry repeats."""
    if not isinstance(exc, OperationalError | InterfaceError):
        return False
    cause = exc.__cause__
    sqlstate = getattr(cause, "sqlstate", None)
    if sqlstate:
        return sqlstate[:2] in _PASSING_CLASSES
    if isinstance(cause, sqlite3.Error):
        return (getattr(cause, "sqlite_errorcode", None) or 0) & 0xFF in _PASSING_SQLITE
    return True  # the driver's own (no SQLSTATE): the connection failed or was lost


def refusal(code: int, exc: DatabaseError, what: str = "") -> EnrollmentError:
    """The guide's `code` (14, 23, 30) for a change the database did not confirm: rolled back, or (the
    connection lost at commit) made without its answer, which the same call again converges to. A failure
    that passes: HTTP 503, with Retry-After. Any other is a bug: the number's usual 500."""
    status = 503 if passing(exc) else None
    return EnrollmentError(code, f"{what}{type(exc).__name__}: {exc}", http_status=status)


class _Quiet:
    """One line per kind of call every RETRY_SECONDS while the database is away, with how many were not
    logged: a failover under a few thousand OCSP requests a second must not fill the disk."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._last: dict[str, tuple[float, int]] = {}

    def warn(self, kind: str, where: str, reason: str) -> None:
        now = time.monotonic()
        with self._lock:
            last, unlogged = self._last.get(kind, (float("-inf"), 0))
            if now - last < RETRY_SECONDS:
                self._last[kind] = (last, unlogged + 1)
                return
            self._last[kind] = (now, 0)
        more = f" ({unlogged} more {kind} calls since the last line)" if unlogged else ""
        log.warning("%s: the database cannot be used: %s%s", where, reason, more)


_quiet = _Quiet()


def away(exc: Exception, where: str, kind: str = "") -> bool:
    """The database did not answer and still does not (stopped, failing over, unreachable): then a line in
    the log for the call `where`, at most one per `kind` of call every RETRY_SECONDS (not a traceback per
    call). Not a missing table or a statement that failed, which are bugs whose traceback the caller logs."""
    if not isinstance(exc, OperationalError | InterfaceError):
        return False
    if connection.connection is not None:  # (else connecting failed: no second attempt to find that out)
        try:
            connection.ensure_connection()
            if connection.is_usable():
                return False
        except DatabaseError:
            pass
    _quiet.warn(kind or where, where, (str(exc).splitlines() or [type(exc).__name__])[0])
    return True
