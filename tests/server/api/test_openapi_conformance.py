"""The OpenAPI document against what the real server answers (schemathesis, issue 14).

Every operation of /api/openapi.json, with cases generated from the document (valid and invalid), is
sent to a real `autoenroll-server serve`; each answer must be a status, content type, headers and body
that the document lists for the operation, never a 5xx, and an invalid request must be refused.
Enrollment calls carry a fresh Kerberos token each (a real ticket of user1 from the Samba DC), admin
calls a bearer token of a super admin. `AUTOENROLL_HYPOTHESIS_EXAMPLES` sets the examples per
operation (200 by default).

Left out: `DELETE /api/tokens/{pk}` (it would delete the run's own credentials).
Runs once, in the SQLite phase: the real server it starts keeps its own SQLite database.
"""

from __future__ import annotations

import base64
import os

import gssapi
import hypothesis
import pytest
import requests
import schemathesis
from requests.adapters import HTTPAdapter
from schemathesis import GenerationMode
from schemathesis.specs.openapi import checks as openapi_checks

from autoenroll.testbed.server import SERVER_HOST, start_server

pytestmark = [
    pytest.mark.samba,
    pytest.mark.skipif(
        os.environ.get("AUTOENROLL_DATABASE_URL", "").startswith("postgresql"),
        reason="runs against a real server with its own database, once (SQLite phase)",
    ),
]

EXAMPLES = int(os.environ.get("AUTOENROLL_HYPOTHESIS_EXAMPLES", "200"))
SPNEGO = gssapi.OID.from_int_seq("1.3.6.1.5.5.2")
CHECKS = [
    schemathesis.checks.not_a_server_error,
    openapi_checks.status_code_conformance,
    openapi_checks.content_type_conformance,
    openapi_checks.response_headers_conformance,
    openapi_checks.response_schema_conformance,
    openapi_checks.negative_data_rejection,
]


class _ServerName(HTTPAdapter):
    """Connect to 127.0.0.1 but speak TLS to (and verify) the server's name, as the agent does."""

    def init_poolmanager(self, *args, **kwargs):
        kwargs.update(server_hostname=SERVER_HOST, assert_hostname=SERVER_HOST)
        super().init_poolmanager(*args, **kwargs)


@pytest.fixture(scope="module")
def live(samba_ad, kerberos_env, tmp_path_factory):
    work = tmp_path_factory.mktemp("conformance")
    env = {"HOME": str(work), "AUTOENROLL_ENROLL_RATE_PER_MINUTE": "0"}  # the 429 would hide everything else
    with start_server(work, samba_ad, customer="acme", env=env, workers=2) as server:
        server.cli("admins", "add", "fuzz", "--super", "--password-file", "-", input_text="Fuzz-Passw0rd-1\n")
        token = server.cli("tokens", "create", "--user", "fuzz", "--name", "schemathesis").strip()
        session = requests.Session()
        session.mount(f"https://127.0.0.1:{server.port}", _ServerName())
        session.verify = str(server.root_ca)
        session.trust_env = False  # REQUESTS_CA_BUNDLE would replace the test bed's root
        session.headers["Host"] = f"{SERVER_HOST}:{server.port}"
        creds = gssapi.Credentials(usage="initiate", store={"ccache": samba_ad.kinit("user1")})
        yield server, session, token, creds


@pytest.fixture(scope="module")
def api_schema(live):
    """The document as the live server serves it."""
    server, session, _, _ = live
    document = session.get(f"https://127.0.0.1:{server.port}/api/openapi.json", timeout=30).json()
    schema = schemathesis.openapi.from_dict(document)
    schema.config.update(base_url=f"https://127.0.0.1:{server.port}", tls_verify=str(server.root_ca))
    # gunicorn refuses a request line it will not read (414): a rejection too
    schema.config.checks.negative_data_rejection.expected_statuses.append("414")
    return schema


def _operations() -> list[tuple[str, str]]:
    """(method, path) of every operation, from the document this code builds (the test compares it
    with the one the live server serves)."""
    from autoenroll.server.api.root import api

    paths = api.get_openapi_schema()["paths"]
    every = [(method.upper(), path) for path, methods in paths.items() for method in methods]
    return [op for op in every if op != ("DELETE", "/api/tokens/{pk}")]


OPERATIONS = _operations()


@pytest.mark.parametrize(("method", "path"), OPERATIONS, ids=[f"{m} {p}" for m, p in OPERATIONS])
@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE], ids=lambda m: m.value)
def test_every_answer_is_one_the_document_lists(live, api_schema, method, path, mode):
    _, session, token, creds = live
    headers = {"Authorization": f"Bearer {token}"}
    if path.startswith("/api/enroll/"):
        headers = {} if path == "/api/enroll/logon/status" else {"Authorization": "Negotiate"}
    operation = api_schema[path][method]

    @hypothesis.given(case=operation.as_strategy(generation_mode=mode))
    @hypothesis.settings(
        max_examples=EXAMPLES,
        deadline=None,
        suppress_health_check=list(hypothesis.HealthCheck),
        derandomize=bool(os.environ.get("CI")),
        database=None,
    )
    def answers_as_documented(case):
        sent = dict(headers)
        if sent.get("Authorization") == "Negotiate":
            sent["Authorization"] = f"Negotiate {_kerberos_token(creds)}"  # fresh: replays are refused
        case.call_and_validate(session=session, headers=sent, checks=CHECKS, timeout=60)

    answers_as_documented()


def _kerberos_token(creds: gssapi.Credentials) -> str:
    """A fresh AP-REQ for HTTP/ccm.test.com (the server refuses a replayed one)."""
    context = gssapi.SecurityContext(
        name=gssapi.Name(f"HTTP@{SERVER_HOST}", gssapi.NameType.hostbased_service),
        creds=creds,
        usage="initiate",
        mech=SPNEGO,
    )
    return base64.b64encode(context.step()).decode()
