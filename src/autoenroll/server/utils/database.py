"""Which database failures pass: one decision for every enrollment call, whatever step it failed in."""

from __future__ import annotations

import logging

from django.db import DatabaseError, InterfaceError, OperationalError, connection

from autoenroll.protocol import EnrollmentError

log = logging.getLogger("autoenroll.database")
RETRY_SECONDS = 60  # what the agent is told to wait: a failover or a restart takes about this long


def refusal(code: int, exc: DatabaseError, what: str = "") -> EnrollmentError:
    """The guide's `code` (14, 23, 30) for a change the database did not make: its transaction rolled back,
    nothing is half-done. An OperationalError passes (the connection lost in a failover or a restart, a lock
    or serialisation conflict): HTTP 503, with Retry-After. Any other is a bug: the number's usual 500."""
    passing = isinstance(exc, OperationalError)
    return EnrollmentError(code, f"{what}{type(exc).__name__}: {exc}", http_status=503 if passing else None)


def away(exc: Exception, where: str) -> bool:
    """The database did not answer and still does not (stopped, failing over, unreachable): then one line
    in the log for the call `where` (not a traceback per call while it is away). Not a missing table or a
    statement that failed, which are bugs whose traceback the caller logs."""
    if not isinstance(exc, OperationalError | InterfaceError):
        return False
    try:
        connection.ensure_connection()
        if connection.is_usable():
            return False
    except DatabaseError:
        pass
    reason = (str(exc).splitlines() or [type(exc).__name__])[0]
    log.warning("%s: error 30, the database cannot be used: %s", where, reason)
    return True
