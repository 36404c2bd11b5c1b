"""PostgreSQL: parameters bound by the server and a logon's statements prepared once per connection
(settings), unless the database URL says otherwise."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from django.db import connections, transaction

from autoenroll.server.certificates.models import Certificate
from autoenroll.server.directory.models import Person
from autoenroll.server.enrollment import lifecycle, pipeline
from autoenroll.server.utils import rows

pytestmark = pytest.mark.django_db

OPTIONS = "from autoenroll.server import settings; print(settings.DATABASES['default'].get('OPTIONS'))"


def _options(url: str, tmp_path) -> str:
    environ = dict(os.environ, AUTOENROLL_DATABASE_URL=url, AUTOENROLL_DATA_DIR=str(tmp_path))
    return subprocess.run(
        [sys.executable, "-c", OPTIONS], env=environ, capture_output=True, text=True, check=True
    ).stdout


def test_server_side_binding_and_prepared_statements_unless_the_url_says_otherwise(tmp_path):
    url = "postgresql://autoenroll@db.example.com/autoenroll"
    assert _options(url, tmp_path).strip() == "{'server_side_binding': True, 'prepare_threshold': 5}"
    assert "'server_side_binding': False" in _options(url + "?server_side_binding=false", tmp_path)


def test_a_statement_run_often_is_prepared_on_the_server():
    connection = connections["default"]
    if connection.vendor != "postgresql":
        pytest.skip("PostgreSQL only")
    assert connection.features.uses_server_side_binding
    with connection.cursor() as cursor:
        for n in range(6):
            cursor.execute("SELECT %s::int + 1", [n])
            assert cursor.fetchone() == (n + 1,)
        cursor.execute("SELECT count(*) FROM pg_prepared_statements WHERE statement LIKE %s", ["SELECT $1::int + 1%"])
        assert cursor.fetchone() == (1,)


@pytest.mark.django_db(transaction=True)
def test_the_hot_paths_prepared_statements_survive_a_column_added_by_a_migration(acme):
    """A migration adds a column while servers run: their prepared statements must go on answering."""
    if connections["default"].vendor != "postgresql":
        pytest.skip("PostgreSQL only")
    assert connections["default"].features.uses_server_side_binding
    person = Person.objects.create(customer=acme, principal="user1@TEST.COM", mail="user1@test.com")

    def logon_and_report_reads():
        assert [p.pk for p in rows.select(Person, pipeline._PERSON_BY_ID, [person.pk])] == [person.pk]
        assert rows.select(Certificate, pipeline._REPORTED, [person.pk, "01", "02"]) == []
        with transaction.atomic():
            assert lifecycle.locked_person(acme.pk, person.principal, "0" * 64).pk == person.pk

    for _ in range(6):  # prepared on this connection at the sixth run
        logon_and_report_reads()
    with connections["default"].cursor() as cursor:
        cursor.execute("SELECT statement FROM pg_prepared_statements")
        prepared = [statement for (statement,) in cursor.fetchall()]
    assert sum(Person._meta.db_table in statement for statement in prepared) >= 2, prepared
    tables = (Person._meta.db_table, Certificate._meta.db_table)
    migration = connections.create_connection("default")
    try:
        with migration.cursor() as cursor:
            for table in tables:
                cursor.execute(f"ALTER TABLE {table} ADD COLUMN added_later timestamptz DEFAULT now()")
        logon_and_report_reads()
    finally:
        with migration.cursor() as cursor:
            for table in tables:
                cursor.execute(f"ALTER TABLE {table} DROP COLUMN IF EXISTS added_later")
        migration.close()
