"""Query strings the admin API refuses cleanly (a NUL was a 500 on PostgreSQL)."""

import pytest

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize("query", ["mail=%00", "principal=%00", "serial=%00", "state=%00"])
def test_a_nul_in_a_search_is_a_422_not_a_500(super_api, query):
    assert super_api.get(f"/api/certificates?{query}").status_code == 422


def test_broken_utf8_in_a_search_is_read_as_replacement_characters(super_api):
    answer = super_api.get("/api/certificates?mail=%ED%A0%80")  # an encoded lone surrogate
    assert answer.status_code == 200 and answer.json() == []
