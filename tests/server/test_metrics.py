"""`/metrics` in one process (Django's test client): the token, the counters where things happen, the stored
state per customer. The multiprocess scrape of the real `serve` is tests/agent/test_serve.py's."""

from __future__ import annotations

import datetime as dt

import pytest
from django.conf import settings as django_settings
from django.utils import timezone
from prometheus_client.parser import text_string_to_metric_families
from pydantic import SecretStr

from autoenroll import pki
from autoenroll.protocol import EnrollmentError
from autoenroll.server.certificates import authority
from autoenroll.server.certificates.models import Certificate
from autoenroll.server.directory.models import Person
from autoenroll.server.enrollment import events, lifecycle

pytestmark = pytest.mark.django_db

TOKEN = "metrics-t0ken"


@pytest.fixture
def token(settings):
    settings.CONFIG = settings.CONFIG.model_copy(update={"metrics_token": SecretStr(TOKEN)})
    return TOKEN


def scrape(client) -> dict[tuple[str, tuple], float]:
    response = client.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}", secure=True)
    assert response.status_code == 200, response.content
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(response.content.decode())
        for sample in family.samples
    }


def value(samples, name: str, **labels) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def test_metrics_are_off_without_a_token(client):
    assert client.get("/metrics", secure=True).status_code == 404


def test_a_bearer_token_is_required(client, token):
    assert client.get("/metrics", secure=True).status_code == 401
    wrong = client.get("/metrics", HTTP_AUTHORIZATION="Bearer nope", secure=True)
    assert wrong.status_code == 401 and wrong["WWW-Authenticate"].startswith("Bearer")
    assert client.post("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}", secure=True).status_code == 405


def test_refusals_are_counted_by_the_guides_number(client, token):
    before = value(scrape(client), "autoenroll_enrollment_steps_total", step="enroll", outcome="error", error="18")
    events.record_error("enroll", "someone@TEST.COM", EnrollmentError(18, "mail mismatch"))
    after = value(scrape(client), "autoenroll_enrollment_steps_total", step="enroll", outcome="error", error="18")
    assert after == before + 1


def test_stored_state_per_customer_ca_expiry_and_revocations(
    client, token, ca, acme, django_capture_on_commit_callbacks
):
    person = Person.objects.create(customer=acme, principal="u@TEST.COM", sam_account_name="u", mail="u@test.com")

    def issue() -> Certificate:
        key = pki.generate_private_key("ec-p256")
        return authority.issue_smime(django_settings.CONFIG, key.public_key(), "u@test.com", person=person)

    kept, expiring, revoked = issue(), issue(), issue()
    Certificate.objects.filter(pk=expiring.pk).update(not_after=timezone.now() + dt.timedelta(days=10))
    before = value(scrape(client), "autoenroll_certificates_revoked_total", reason="key_compromise")
    with django_capture_on_commit_callbacks(execute=True):  # counted once the revocation commits
        lifecycle.revoke([revoked], "key_compromise", by="test")
    samples = scrape(client)
    assert value(samples, "autoenroll_certificates", customer="acme", state="valid") == 2
    assert value(samples, "autoenroll_certificates", customer="acme", state="expiring") == 1
    assert value(samples, "autoenroll_certificates", customer="acme", state="revoked") == 1
    assert value(samples, "autoenroll_certificates_revoked_total", reason="key_compromise") == before + 1
    _, issuing = ca
    assert value(samples, "autoenroll_ca_not_after_seconds", ca=issuing.name, role="issuing") == pytest.approx(
        issuing.not_after.timestamp()
    )
    assert kept.status == Certificate.Status.ISSUED
