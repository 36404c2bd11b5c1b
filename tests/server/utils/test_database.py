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
