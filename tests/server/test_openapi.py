import pytest


@pytest.mark.django_db
def test_openapi_document_describes_the_enrollment_service(client):
    doc = client.get("/api/openapi.json", secure=True).json()
    for path in ("/api/enroll/sync", "/api/enroll/enroll", "/api/enroll/status", "/api/enroll/requests/{request_id}"):
        assert path in doc["paths"], path
    schemes = doc["components"]["securitySchemes"]
    assert {"type": "http", "scheme": "negotiate"} in schemes.values()
    assert doc["paths"]["/api/enroll/sync"]["post"]["responses"]["403"]


@pytest.mark.django_db
def test_openapi_is_browsable(client):
    assert client.get("/api/docs", secure=True).status_code == 200


@pytest.mark.django_db
def test_the_document_lists_the_refusals_and_what_a_client_must_send(client):
    """What schemathesis checks against the real server (tests/server/api/test_openapi_conformance.py),
    in brief: required fields without null, the status enum, every refusal with its content type."""
    doc = client.get("/api/openapi.json", secure=True).json()
    schemas = doc["components"]["schemas"]
    assert schemas["LogonIn"]["required"] == ["csr", "customeruri"]
    assert schemas["LogonIn"]["properties"]["csr"]["type"] == "string"  # not nullable
    assert schemas["StatusIn"]["properties"]["status"]["enum"] == ["failed", "installed"]
    logon = doc["paths"]["/api/enroll/logon"]["post"]["responses"]
    assert {"400", "401", "403", "404", "415", "429", "500", "503"} <= set(logon)
    assert list(logon["401"]["content"]) == ["text/plain"] and "WWW-Authenticate" in logon["401"]["headers"]
    assert "Retry-After" in logon["429"]["headers"]
    patch = doc["paths"]["/api/customers/{pk}"]["patch"]["responses"]
    assert {"200", "400", "401", "403", "404", "409", "422"} <= set(patch)
