"""The OpenAPI document says every answer an operation gives, not only its success.

django-ninja documents what a view declares; the refusals that come from elsewhere (authentication,
body parsing and validation, the enrollment boundary's 415 and 403, the per-principal rate limit, a
missing object) are added here, by one rule per source, so that the document and the server cannot
drift apart operation by operation. `tests/server/api/test_openapi_conformance.py` checks the result
against the real server with schemathesis.
"""

from __future__ import annotations

from typing import Any

from autoenroll.protocol.messages import API_PREFIX

#: Calls that can issue, and so carry the per-principal rate limit.
RATE_LIMITED = {f"{API_PREFIX}/logon", f"{API_PREFIX}/enroll"}

_DETAIL = {
    "type": "object",
    "properties": {"detail": {"anyOf": [{"type": "string"}, {"type": "array", "items": {"type": "object"}}]}},
    "required": ["detail"],
}


def complete(document: dict[str, Any]) -> dict[str, Any]:
    document.setdefault("components", {}).setdefault("schemas", {})["Detail"] = _DETAIL
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            responses = operation.setdefault("responses", {})
            if path.startswith(API_PREFIX + "/"):
                _enrollment(path, responses)
            else:
                _administration(method, operation, responses)
            _transport(operation, responses)
    return document


def _transport(operation: dict[str, Any], responses: dict[str, Any]) -> None:
    """What Granian answers before the application sees the request, on any path: 400 for a request
    that is not valid HTTP (a bad Content-Length, say), 414 for a request line it will not read."""
    html = {"text/html": {"schema": {"type": "string"}}}
    bad = responses.setdefault(400, {"description": "The request is not valid HTTP"})
    bad["content"] = {**bad.get("content", {}), **html}
    if operation.get("parameters"):
        responses[414] = {"description": "The request line is longer than the server reads", "content": html}


def _json(description: str, schema_name: str) -> dict[str, Any]:
    schema = {"$ref": f"#/components/schemas/{schema_name}"}
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _enrollment(path: str, responses: dict[str, Any]) -> None:
    """The guide's refusals are `{"error": {code, message}}`; only the 401 is CCM's plain text."""
    responses[401] = {
        "description": "Kerberos (HTTP Negotiate) missing or refused; for logon/status, a bad status token",
        "headers": {"WWW-Authenticate": {"schema": {"type": "string"}, "description": "Negotiate"}},
        "content": {"text/plain": {"schema": {"type": "string"}}},
    }
    responses[413] = _json("The body is larger than any call's fields can be (guide error 29), unread", "ErrorOut")
    responses[415] = _json("The body is not application/json (guide error 29)", "ErrorOut")
    retry_after = {"Retry-After": {"schema": {"type": "string"}, "description": "seconds"}}
    if path in RATE_LIMITED:
        responses[429] = {
            **_json("Too many calls of this Kerberos principal (per minute, per server process)", "ErrorOut"),
            "headers": retry_after,
        }
    responses[503] = {
        **_json("AD, the CA or the database cannot serve the call now", "ErrorOut"),
        "headers": retry_after,
    }


def _administration(method: str, operation: dict[str, Any], responses: dict[str, Any]) -> None:
    """Django-ninja's refusals: `{"detail": …}`."""
    responses[401] = _json("No valid bearer token or admin session", "Detail")
    responses[403] = _json("The admin may not do this (another customer's object, a super admin's task)", "Detail")
    parameters = operation.get("parameters", [])
    if any(p.get("in") == "path" for p in parameters) or "requestBody" in operation:
        responses[404] = _json("No such object (or none that the body names), or one of another customer", "Detail")
    if "requestBody" in operation:
        responses[400] = _json("The body is not JSON (or the request not valid HTTP)", "Detail")
    if "requestBody" in operation or parameters:
        responses[422] = _json("A field or parameter of the wrong type or out of range", "Detail")
    if method in ("post", "patch", "delete"):
        responses[409] = _json("Conflicts with the stored state (a duplicate, an object still in use)", "Detail")
