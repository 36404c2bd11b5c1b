"""One decision for a database failure, whatever entry point met it: a passing one (the connection lost, a
lock or serialisation conflict) asks the client to come back (503); any other is a bug (the number's 500)."""

from __future__ import annotations

import logging
import sqlite3

import pytest
from django.db import DatabaseError, DataError, IntegrityError, OperationalError, ProgrammingError, transaction

from autoenroll.protocol.messages import http_status
from autoenroll.server.utils import database


def _from_driver(driver_error: Exception) -> OperationalError:
    """As Django raises it: its own class, the driver's exception as the cause."""
    try:
        raise OperationalError(str(driver_error)) from driver_error
    except OperationalError as exc:
        return exc


def _sqlite_error(kind: str) -> sqlite3.Error:
    """A real error of SQLite's, with its result code: a write while another connection holds the lock, a
    write past the file's size limit (what a full disk answers), a statement naming what is not there."""
    import tempfile

    with tempfile.TemporaryDirectory() as work:
        path = f"{work}/db.sqlite3"
        first = sqlite3.connect(path, timeout=0, isolation_level=None)
        second = sqlite3.connect(path, timeout=0, isolation_level=None)
        try:
            first.execute("CREATE TABLE t (v TEXT)")
            statement = {
                "locked": "INSERT INTO t VALUES ('x')",
                "full": "INSERT INTO t VALUES (zeroblob(100000))",
                "no table": "SELECT * FROM certificates_certificate",
                "no column": "SELECT c.crl_partition FROM t c",
            }[kind]
            if kind == "locked":
                first.execute("BEGIN IMMEDIATE")
            if kind == "full":
                second.execute("PRAGMA max_page_count = 2")
            try:
                second.execute(statement)
            except sqlite3.Error as exc:
                return exc
            raise AssertionError(f"{statement} did not fail")
        finally:
            first.close()
            second.close()


class _PostgreSQLError(Exception):
    def __init__(self, sqlstate: str) -> None:
        super().__init__(sqlstate)
        self.sqlstate = sqlstate


@pytest.mark.parametrize("code", [14, 23, 30])
def test_a_lost_connection_or_a_conflict_passes(code):
    refusal = database.refusal(code, OperationalError("terminating connection due to administrator command"))
    assert (refusal.code, refusal.http_status) == (code, 503)
    assert "OperationalError: terminating connection" in refusal.detail


@pytest.mark.parametrize(
    ("exc", "passes"),
    [
        (_from_driver(_PostgreSQLError("57P01")), True),  # admin_shutdown: a failover, pg_terminate_backend
        (_from_driver(_PostgreSQLError("40001")), True),  # serialization_failure
        (_from_driver(_PostgreSQLError("40P01")), True),  # deadlock_detected
        (_from_driver(_PostgreSQLError("55P03")), True),  # lock_not_available
        (_from_driver(_PostgreSQLError("08006")), True),  # connection_failure
        (_from_driver(_PostgreSQLError("42P01")), False),  # undefined_table: a migration not run
        (_from_driver(_sqlite_error("locked")), True),
        (_from_driver(_sqlite_error("full")), True),  # an admin frees space: PostgreSQL's 53100 likewise
        (_from_driver(_sqlite_error("no table")), False),
        (_from_driver(_sqlite_error("no column")), False),
        (IntegrityError("duplicate key"), False),
        (DataError("NUL"), False),
        (ProgrammingError("no table"), False),
        (DatabaseError("?"), False),
    ],
)
def test_what_passes_and_what_is_a_bug(exc, passes):
    refusal = database.refusal(30, exc, "cannot store: ")
    assert database.passing(exc) is passes
    assert (refusal.http_status or http_status(refusal.code)) == (503 if passes else 500)
    assert refusal.detail.startswith(f"cannot store: {type(exc).__name__}: ")


@pytest.mark.django_db
def test_a_failed_statement_is_a_bug_and_not_the_database_away(caplog):
    """A missing table while the database answers: no retry helps, and the caller logs its traceback."""
    from django.db import connection

    with pytest.raises(DatabaseError) as failed, transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SELECT * FROM no_such_table")
    assert not database.passing(failed.value)
    assert not database.away(failed.value, "POST /api/enroll/logon")
    assert not database.away(OperationalError("database is locked"), "POST /api/enroll/logon")
    assert not database.away(ValueError("not a database error"), "POST /api/enroll/logon")
    assert "cannot be used" not in caplog.text


def test_while_the_database_is_away_each_kind_of_call_logs_one_line_a_minute(caplog, monkeypatch):
    now = [1000.0]
    monkeypatch.setattr(database.time, "monotonic", lambda: now[0])
    quiet = database._Quiet()
    with caplog.at_level(logging.WARNING, logger="autoenroll.database"):
        for _ in range(500):
            quiet.warn("OCSP", "OCSP request to issuing: tryLater", "connection failed")
        quiet.warn("enrollment", "POST /api/enroll/logon: error 30", "connection failed")
        now[0] += database.RETRY_SECONDS
        quiet.warn("OCSP", "OCSP request to issuing: tryLater", "connection failed")
    assert caplog.messages == [
        "OCSP request to issuing: tryLater: the database cannot be used: connection failed",
        "POST /api/enroll/logon: error 30: the database cannot be used: connection failed",
        "OCSP request to issuing: tryLater: the database cannot be used: connection failed"
        " (499 more OCSP calls since the last line)",
    ]
