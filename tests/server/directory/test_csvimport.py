"""The AD Server CSV (guide figure 2.13) against any cell an admin's spreadsheet could hold: each row is
saved or refused with its reasons, never a server error (a NUL was PostgreSQL's DataError: the file is
refused)."""

from __future__ import annotations

import csv
import io
import os

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from autoenroll.server.directory import csvimport
from autoenroll.server.directory.models import ADServer

pytestmark = pytest.mark.django_db

EXAMPLES = int(os.environ.get("AUTOENROLL_HYPOTHESIS_EXAMPLES", "200"))
GOOD = {
    "Domain": "test.com",
    "AD Server Address": "10.0.0.1",
    "AD Server Port": "0",
    "Set as Default": "yes",
    "Users Base DN": "CN=Users,DC=test,DC=com",
    "Login User DN": "CN=ccm,CN=Users,DC=test,DC=com",
    "Login Password": "Secret-1",
    "Use SSL": "yes",
}


def _csv(row: dict[str, str]) -> str:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(csvimport.COLUMNS)
    writer.writerow([row.get(column, "") for column in csvimport.COLUMNS])
    return out.getvalue()


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.sampled_from(csvimport.COLUMNS), st.text(st.characters(blacklist_categories=("Cs",))))  # as UTF-8 holds
@example("Login Password", "Sec\x00ret")  # found by Hypothesis: PostgreSQL's DataError at save
@example("TLS Server Name", "\x00")
def test_any_cell_is_saved_or_refused_with_its_column(acme, column, value):
    data = _csv({**GOOD, column: value}).encode()
    if "\x00" in value:
        with pytest.raises(csvimport.CSVError, match=r"line \d+ holds a NUL character"):
            csvimport.decode(data)
        return
    (row,) = csvimport.parse(csvimport.decode(data), acme)
    try:
        assert csvimport.save([row], skip_invalid=True) == (1 if row.valid else 0)
        assert ADServer.objects.count() == (1 if row.valid else 0)
    finally:
        ADServer.objects.all().delete()
