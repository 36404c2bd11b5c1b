"""One decision for a database failure inside an enrollment call: a passing one (the connection lost, a lock
or serialisation conflict) asks the agent to come back (503); any other is a bug (the number's 500)."""

from __future__ import annotations

import pytest
from django.db import DatabaseError, DataError, IntegrityError, OperationalError, ProgrammingError

from autoenroll.protocol.messages import http_status
from autoenroll.server.utils import database


@pytest.mark.parametrize("code", [14, 23, 30])
def test_a_lost_connection_or_a_conflict_passes(code):
    refusal = database.refusal(code, OperationalError("terminating connection due to administrator command"))
    assert (refusal.code, refusal.http_status) == (code, 503)
    assert "OperationalError: terminating connection" in refusal.detail


@pytest.mark.parametrize(
    "exc", [IntegrityError("duplicate key"), DataError("NUL"), ProgrammingError("no table"), DatabaseError("?")]
)
def test_any_other_failure_is_a_bug(exc):
    refusal = database.refusal(30, exc, "cannot store: ")
    assert refusal.http_status is None and http_status(refusal.code) == 500
    assert refusal.detail.startswith(f"cannot store: {type(exc).__name__}: ")


@pytest.mark.django_db
def test_a_failure_while_the_database_answers_is_not_away(caplog):
    """A missing table or a failed statement while the database answers is a bug, for the caller's traceback."""
    from django.db import connection, transaction

    with pytest.raises(DatabaseError) as failed, transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SELECT * FROM no_such_table")
    assert not database.away(failed.value, "POST /api/enroll/logon")
    assert not database.away(OperationalError("database is locked"), "POST /api/enroll/logon")
    assert not database.away(ValueError("not a database error"), "POST /api/enroll/logon")
    assert "cannot be used" not in caplog.text
