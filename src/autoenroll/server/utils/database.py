"""Which database failures pass: one decision for every enrollment call, whatever step it failed in."""

from __future__ import annotations

from django.db import DatabaseError, InterfaceError, OperationalError, connection

from autoenroll.protocol import EnrollmentError

RETRY_SECONDS = 60  # what the agent is told to wait: a failover or a restart takes about this long


def refusal(code: int, exc: DatabaseError, what: str = "") -> EnrollmentError:
    """The guide's `code` (14, 23, 30) for a change the database did not make: its transaction rolled back,
    nothing is half-done. An OperationalError passes (the connection lost in a failover or a restart, a lock
    or serialisation conflict): HTTP 503, with Retry-After. Any other is a bug: the number's usual 500."""
    passing = isinstance(exc, OperationalError)
    return EnrollmentError(code, f"{what}{type(exc).__name__}: {exc}", http_status=503 if passing else None)


def away(exc: Exception) -> bool:
    """The database did not answer and still does not (stopped, failing over, unreachable): not a missing
    table or a statement that failed, which are bugs to find in the log."""
    if not isinstance(exc, OperationalError | InterfaceError):
        return False
    try:
        connection.ensure_connection()
        return not connection.is_usable()
    except DatabaseError:
        return True
