"""PostgreSQL: parameters bound by the server and a logon's statements prepared once per connection
(settings), unless the database URL says otherwise."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from django.db import connections

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
