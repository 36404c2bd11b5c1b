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
