"""The SQLite backend (utils.sqlite): Django's, with each statement's placeholders converted once."""

from __future__ import annotations

import sqlite3

import pytest
from django.db import connections
from django.db.backends.sqlite3.base import SQLiteCursorWrapper as DjangoCursor

from autoenroll.server.utils.sqlite import base

pytestmark = pytest.mark.django_db

STATEMENTS = [
    "SELECT %s, '100%%', '%%s'",
    "SELECT 1",
    "SELECT %s WHERE %s = %s",
    "SELECT '" + "x" * (base._LONGEST_KEPT + 10) + "', %s",  # too long to keep: converted each time
]


@pytest.mark.parametrize("sql", STATEMENTS)
def test_a_statement_is_converted_as_django_converts_it(sql):
    database = sqlite3.connect(":memory:")
    ours, django = database.cursor(factory=base.SQLiteCursorWrapper), database.cursor(factory=DjangoCursor)
    assert ours.convert_query(sql) == django.convert_query(sql)
    hits = base._qmark.cache_info().hits
    assert ours.convert_query(sql) == django.convert_query(sql)
    kept = len(sql) <= base._LONGEST_KEPT
    assert base._qmark.cache_info().hits == hits + kept  # the second time from the cache, unless too long
    database.close()


def test_the_server_runs_on_it_and_reads_both_placeholder_styles():
    connection = connections["default"]
    if connection.vendor != "sqlite":
        pytest.skip("SQLite only")
    assert type(connection).__module__ == "autoenroll.server.utils.sqlite.base"
    with connection.cursor() as cursor:
        cursor.execute("SELECT %s || '%%', %s", ["50", 2])
        assert cursor.fetchone() == ("50%", 2)
        cursor.execute("SELECT %(a)s + %(b)s", {"a": 1, "b": 2})
        assert cursor.fetchone() == (3,)
