"""One serial, however it is written, finds the same certificate on the admin pages and in the REST API;
the state filters of both agree with the state the tables show."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from autoenroll.server.api.models import ApiToken
from autoenroll.server.certificates import search
from autoenroll.server.certificates.models import Certificate

pytestmark = pytest.mark.django_db


def written_forms(serial: str) -> list[str]:
    """``0x00AB…``, ``ab…`` and ``AB:…`` (the colon form in whole octets, as OpenSSL and browsers print it)."""
    octets = serial if len(serial) % 2 == 0 else "0" + serial
    return [
        "0x00" + serial.upper(),
        serial,
        ":".join(octets[i : i + 2] for i in range(0, len(octets), 2)).upper(),
        " " + serial.upper() + " ",
    ]


def api_client(user) -> Client:
    return Client(HTTP_AUTHORIZATION=f"Bearer {ApiToken.issue(user, 'tests')[1]}")


def web_found(client: Client, **query) -> list[int]:
    response = client.get(reverse("web:certificate_list"), query)
    assert response.status_code == 200
    return [c.pk for c in response.context["object_list"]]


def api_found(client: Client, **query) -> list[int]:
    response = client.get("/api/certificates", query, secure=True)
    assert response.status_code == 200, response.content
    return [c["id"] for c in response.json()]


def test_the_web_search_and_the_api_find_one_certificate_by_any_written_form_of_its_serial(client_a, admin_a, tenant_a):
    cert = tenant_a.certificate
    api = api_client(admin_a)
    for form in written_forms(cert.serial):
        assert web_found(client_a, serial=form) == [cert.pk], form
        assert api_found(api, serial=form) == [cert.pk], form


def test_a_serial_that_is_not_hexadecimal_finds_nothing_and_says_why(client_a, admin_a, tenant_a):
    response = client_a.get(reverse("web:certificate_list"), {"serial": "xyz"})
    assert list(response.context["object_list"]) == []
    assert "not a hexadecimal serial number" in response.content.decode()
    answer = api_client(admin_a).get("/api/certificates", {"serial": "xyz"}, secure=True)
    assert answer.status_code == 422 and "not a hexadecimal serial number" in answer.content.decode()


def test_the_state_filters_of_the_web_and_the_api_agree_with_the_state_the_tables_show(client_a, admin_a, tenant_a):
    issued = tenant_a.certificate
    expired = Certificate.objects.get(pk=issued.pk)
    expired.pk, expired.serial, expired.fingerprint_sha256 = None, "e0", "e0" * 32
    expired.not_after = timezone.now() - timedelta(days=1)
    expired.save()
    revoked = Certificate.objects.get(pk=issued.pk)
    revoked.pk, revoked.serial, revoked.fingerprint_sha256 = None, "e1", "e1" * 32
    revoked.status, revoked.revoked_at, revoked.revocation_reason = "revoked", timezone.now(), "superseded"
    revoked.save()
    mine = Certificate.objects.filter(person__customer=tenant_a.customer)
    api = api_client(admin_a)
    for state in search.STATES:
        shown = sorted(c.pk for c in mine if c.state == state)
        assert len(shown) == 1, state
        assert sorted(c.pk for c in search.filter_by_state(mine, state)) == shown, state
        assert sorted(web_found(client_a, status=state)) == shown, state
        assert sorted(api_found(api, state=state)) == shown, state
    with pytest.raises(ValueError, match="unknown certificate state"):
        search.filter_by_state(mine, "valid")
