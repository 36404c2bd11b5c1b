"""The server's work for one logon and its status report, for `bench/instructions.py` (not collected by
`pytest`: the benchmark names this file). A renewal logon through Django's handler (the direct path),
then its installation report with the logon's token, LOGONS times; the keys, CSRs and Kerberos tokens of
MADE logons are made first whatever LOGONS is, so that two runs differ only in the server's work."""

from __future__ import annotations

import os

import pytest

from enroll_helpers import make_csr

pytestmark = pytest.mark.django_db
MADE = int(os.environ.get("AUTOENROLL_BENCH_MADE", "111"))


@pytest.fixture
def ready(ca, realm, organization):
    return organization


def test_logons(user1, ready):
    logons = int(os.environ.get("AUTOENROLL_BENCH_LOGONS", "10"))
    assert logons < MADE
    csrs = [make_csr("user1")[1] for _ in range(MADE)]
    tokens = [user1.token() for _ in range(MADE)]
    replaced = None
    for i in range(logons + 1):
        answer = user1.client.post(
            "/api/enroll/logon",
            data={"customeruri": "acme", "csr": csrs[i]},
            content_type="application/json",
            HTTP_AUTHORIZATION=f"Negotiate {tokens[i]}",
            secure=True,
        )
        assert answer.status_code == 200, answer.content
        issued = answer.json()
        report = {"status_token": issued["status_token"], "status": "installed"}
        if replaced:
            report["replaced_serial"] = replaced
        reported = user1.client.post(
            "/api/enroll/logon/status", data=report, content_type="application/json", secure=True
        )
        assert reported.status_code == 200, reported.content
        replaced = issued["serial"]
