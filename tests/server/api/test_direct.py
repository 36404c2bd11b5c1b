"""The logon and its status report answered before Django's middleware and django-ninja (api.direct):
the same answer as the API's routes give, for the right request and for each kind of wrong one.

Each request is made twice, through the full stack without the direct middleware and through it,
with real Kerberos tokens from the Samba DC; the two answers must agree (status, guide number, the
headers an agent reads)."""

from __future__ import annotations

import json

import pytest
from django.conf import settings
from django.test import override_settings

from autoenroll.protocol.messages import API_PREFIX
from enroll_helpers import Agent, make_csr

pytestmark = pytest.mark.django_db

DIRECT = "autoenroll.server.api.direct.DirectEnrollmentMiddleware"


@pytest.fixture
def user1(kerberos_env, ca, realm, organization) -> Agent:
    return Agent(kerberos_env.kinit("user1"))


def _post(agent: Agent, call: str, body, *, token: bool = True, **extra):
    data = body if isinstance(body, bytes | str) else json.dumps(body)
    headers = {"HTTP_AUTHORIZATION": f"Negotiate {agent.token()}"} if token else {}
    kwargs = {"content_type": "application/json", "secure": True, **headers, **extra}
    return agent.client.post(f"{API_PREFIX}/{call}", data=data, **kwargs)


def _seen(response) -> tuple:
    """What an agent reads of an answer (a new certificate differs by serial and key, not by shape)."""
    try:
        body = response.json()
    except ValueError:
        body = response.content.decode()
    if isinstance(body, dict) and body.get("certificate"):
        body = {k: (v is not None) for k, v in body.items()}  # which fields are there, for an issued one
    negotiate = response.headers.get("WWW-Authenticate", "")
    return response.status_code, body, negotiate.split(" ")[0], response.headers.get("Retry-After")


def _both(request) -> tuple[tuple, tuple]:
    without = [m for m in settings.MIDDLEWARE if m != DIRECT]
    assert len(without) == len(settings.MIDDLEWARE) - 1
    with override_settings(MIDDLEWARE=without):
        routed = _seen(request())
    return routed, _seen(request())


CASES = {
    "a logon": ("logon", lambda: {"customeruri": "acme", "csr": make_csr("user1")[1]}, {}),
    "not JSON": ("logon", lambda: b"{not json", {}),
    "a JSON list": ("logon", lambda: [1, 2], {}),
    "an empty body": ("logon", lambda: b"", {}),
    "no CSR": ("logon", lambda: {"customeruri": "acme"}, {}),
    "an unknown customer": ("logon", lambda: {"customeruri": "nobody", "csr": make_csr("user1")[1]}, {}),
    "a field too long": ("logon", lambda: {"customeruri": "x" * 400, "csr": "c"}, {}),
    "a NUL in a field": ("logon", lambda: {"customeruri": "acme\x00", "csr": "c"}, {}),
    "a number for a string": ("logon", lambda: {"customeruri": 5, "csr": "c"}, {}),
    "another site's page": ("logon", lambda: {"customeruri": "acme"}, {"HTTP_ORIGIN": "https://evil.example"}),
    "a form": ("logon", lambda: "customeruri=acme", {"content_type": "application/x-www-form-urlencoded"}),
    "a forged status token": ("logon/status", lambda: {"status_token": "x:y:z", "status": "installed"}, {}),
    "a status without a token": ("logon/status", lambda: {"status": "installed"}, {}),
    "a body over Django's limit": ("logon", lambda: {"customeruri": "acme", "csr": "A" * 3_000_000}, {}),
}


@pytest.mark.parametrize("case", CASES)
def test_the_direct_answer_is_the_routes_answer(user1, case):
    call, body, extra = CASES[case]
    routed, direct = _both(lambda: _post(user1, call, body(), **extra))
    assert direct == routed and direct[0] < 500


def test_without_a_ticket_both_ask_for_negotiate(user1):
    routed, direct = _both(lambda: _post(user1, "logon", {"customeruri": "acme"}, token=False))
    assert direct == routed and direct[0] == 401 and direct[2] == "Negotiate"


def test_a_status_report_with_the_logon_token_is_answered_alike(user1):
    def report():
        issued = _post(user1, "logon", {"customeruri": "acme", "csr": make_csr("user1")[1]}).json()
        return _post(user1, "logon/status", {"status_token": issued["status_token"], "status": "installed"})

    routed, direct = _both(report)
    assert direct == routed and direct[0] == 200


def test_the_throttle_answers_429_with_retry_after_alike(user1, monkeypatch):
    from autoenroll.server.enrollment.api import issuing_rate

    monkeypatch.setattr(settings, "CONFIG", settings.CONFIG.model_copy(update={"enroll_rate_per_minute": 1}))
    monkeypatch.setattr(issuing_rate, "_calls", {})  # the calls counted here are forgotten after the test

    def over_the_limit():
        issuing_rate._calls.clear()
        _post(user1, "logon", {"customeruri": "acme"})
        return _post(user1, "logon", {"customeruri": "acme"})

    routed, direct = _both(over_the_limit)
    assert direct == routed and direct[0] == 429 and direct[3] is not None
