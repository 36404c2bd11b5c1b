"""The OpenAPI document against what the real server answers (schemathesis, issue 14).

Every operation of /api/openapi.json, with cases generated from the document (valid and invalid), is
sent to a real `autoenroll-server serve`; each answer must be a status, content type, headers and body
that the document lists for the operation, never a 5xx, and an invalid request must be refused.
Enrollment calls carry a fresh Kerberos token each (a real ticket of user1 from the Samba DC), admin
calls a bearer token of a super admin. `AUTOENROLL_HYPOTHESIS_EXAMPLES` sets the examples per
operation (200 by default).

Left out: `DELETE /api/tokens/{pk}` (it would delete the run's own credentials).
Runs in both phases of scripts/test, the server on a database of its own: SQLite in its data directory,
then PostgreSQL, which refuses what SQLite stores (a NUL in a filter was a 500 only there).
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
from databases import own_databases

pytestmark = pytest.mark.samba

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
    with (
        own_databases("conformance") as (database,),
        start_server(work, samba_ad, customer="acme", env={**env, **database}, workers=2) as server,
    ):
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
    # the credentials are the test's own (a fresh Kerberos token, the bearer token), never generated: a
    # case "made invalid" through its Authorization header would be sent with a valid one
    schema.config.generation.update(with_security_parameters=False)
    # Granian refuses a request line it will not read (414), the enrollment API a body larger than any call's
    # (413): rejections too
    schema.config.checks.negative_data_rejection.expected_statuses.extend(["414", "413"])
    return schema


def _cases() -> list[tuple[GenerationMode, str, str]]:
    """(mode, method, path) for every operation, from the document this code builds (the test finds
    each in the one the live server serves). Invalid requests only where there is something to make
    invalid: parameters or a body (the credentials are not generated)."""
    from autoenroll.server.api.root import api

    cases = []
    for path, methods in api.get_openapi_schema()["paths"].items():
        for method, operation in methods.items():
            if (method, path) == ("delete", "/api/tokens/{pk}"):
                continue
            cases.append((GenerationMode.POSITIVE, method.upper(), path))
            if operation.get("parameters") or operation.get("requestBody"):
                cases.append((GenerationMode.NEGATIVE, method.upper(), path))
    return cases


CASES = _cases()


@pytest.mark.parametrize(("mode", "method", "path"), CASES, ids=[f"{m.value}-{v} {p}" for m, v, p in CASES])
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

    try:
        answers_as_documented()
    except hypothesis.errors.Unsatisfiable:
        if mode is not GenerationMode.NEGATIVE:
            raise
        pytest.skip("no invalid request of this operation can be generated (its only parameter is a free string)")


def _kerberos_token(creds: gssapi.Credentials) -> str:
    """A fresh AP-REQ for HTTP/ccm.test.com (the server refuses a replayed one)."""
    context = gssapi.SecurityContext(
        name=gssapi.Name(f"HTTP@{SERVER_HOST}", gssapi.NameType.hostbased_service),
        creds=creds,
        usage="initiate",
        mech=SPNEGO,
    )
    return base64.b64encode(context.step()).decode()
