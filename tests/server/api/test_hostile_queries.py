"""Query strings the admin API refuses cleanly (a NUL was a 500 on PostgreSQL)."""

import pytest

from autoenroll.server.api.root import api

pytestmark = pytest.mark.django_db


def _query_parameters() -> list[tuple[str, str]]:
    """Every (GET path, query parameter) of the OpenAPI document."""
    document = api.get_openapi_schema()
    return [
        (path, parameter["name"])
        for path, operations in document["paths"].items()
        if "{" not in path and "get" in operations
        for parameter in operations["get"].get("parameters", [])
        if parameter["in"] == "query"
    ]


@pytest.mark.parametrize("query", ["mail=%00", "principal=%00", "serial=%00", "state=%00"])
def test_a_nul_in_a_search_is_a_422_not_a_500(super_api, query):
    assert super_api.get(f"/api/certificates?{query}").status_code == 422


@pytest.mark.parametrize(("path", "name"), _query_parameters())
def test_a_nul_in_any_query_parameter_is_a_422_not_a_500(super_api, path, name):
    """/api/events?principal=%00 was a 500 on PostgreSQL; the parser now refuses it for every operation."""
    answer = super_api.get(f"{path}?{name}=a%00b")
    assert answer.status_code == 422
    assert answer.json()["detail"] == [
        {"loc": ["query", name], "msg": "NUL or a lone surrogate", "type": "value_error"}
    ]


def test_broken_utf8_in_a_search_is_read_as_replacement_characters(super_api):
    answer = super_api.get("/api/certificates?mail=%ED%A0%80")  # an encoded lone surrogate
    assert answer.status_code == 200 and answer.json() == []
