"""The server's work for one logon and its status report, for `bench/instructions.py` (not collected by
`pytest`: the benchmark names this file). A renewal logon, then its installation report with the logon's
token, LOGONS times, each as `serve` runs it in a worker's thread: the RSGI adapter's environ, Django's
WSGI handler with the server's middleware and end-of-request work, committed transactions. Only Granian
(HTTP, TLS) and the event loop's hand-off are left out. The keys, CSRs and Kerberos tokens of MADE logons
are made first whatever LOGONS is, so that two runs differ only in the server's work."""

from __future__ import annotations

import json
import os
from types import SimpleNamespace

import pytest

from autoenroll.protocol.messages import API_PREFIX
from autoenroll.server import rsgi, wsgi
from enroll_helpers import make_csr

pytestmark = pytest.mark.django_db(transaction=True)  # each request commits, as in the server
MADE = int(os.environ.get("AUTOENROLL_BENCH_MADE", "111"))


@pytest.fixture
def ready(ca, realm, organization):
    return organization


def _request(path: str, body: dict, **headers: str):
    """What Granian hands the adapter for an agent's POST."""
    content = json.dumps(body).encode()
    headers = {"host": "ccm.test.com:8443", "content-type": "application/json", "user-agent": "autoenroll", **headers}
    headers["content-length"] = str(len(content))
    scope = SimpleNamespace(
        method="POST",
        path=path,
        query_string="",
        server="127.0.0.1:8443",
        client="127.0.0.1:50000",
        http_version="1.1",
        scheme="https",
        headers=headers,
        authority=None,
    )
    return scope, content


def test_logons(user1, ready):
    logons = int(os.environ.get("AUTOENROLL_BENCH_LOGONS", "10"))
    assert logons < MADE
    app = rsgi.Application(wsgi.get_application(), 1, body_seconds=10, max_body=1 << 20, refused_by_app="")
    logon = [
        _request(
            f"{API_PREFIX}/logon",
            {"customeruri": "acme", "csr": make_csr("user1")[1]},
            authorization=f"Negotiate {user1.token()}",
        )
        for _ in range(MADE)
    ]
    replaced = None
    for i in range(logons + 1):
        status, _, content = app._call(rsgi._environ(*logon[i]))
        assert status == 200, content
        issued = json.loads(content)
        report = {"status_token": issued["status_token"], "status": "installed"}
        if replaced:
            report["replaced_serial"] = replaced
        status, _, content = app._call(rsgi._environ(*_request(f"{API_PREFIX}/logon/status", report)))
        assert status == 200, content
        replaced = issued["serial"]
