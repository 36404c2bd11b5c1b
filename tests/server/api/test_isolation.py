"""A Customer Admin of customer A reaches nothing of customer B through any API route."""

import re
import uuid

import pytest

from autoenroll import pki
from autoenroll.server.api.root import api
from autoenroll.server.certificates import authority
from autoenroll.server.directory.models import ADServer, Person
from autoenroll.server.enrollment.models import EnrollmentEvent, EnrollmentRequest
from autoenroll.server.kerberos.models import KerberosRealm
from autoenroll.server.tenants.models import Customer, EmailDomain, Organization

pytestmark = pytest.mark.django_db

SECRET = "B-secret-AD-Passw0rd"


@pytest.fixture
def customer_b(ca, settings):
    """Customer B with one object of every kind; returns the id to use for each route prefix."""
    b = Customer.objects.create(uri="bravo", name="Bravo")
    domain = EmailDomain.objects.create(customer=b, name="bravo.example", authorized=True)
    server = ADServer.objects.create(
        customer=b, domain="bravo.example", address="10.9.9.9", users_base_dn="CN=Users,DC=bravo,DC=example",
        login_dn="CN=ccm,CN=Users,DC=bravo,DC=example", login_password=SECRET,
    )  # fmt: skip
    org = Organization.objects.create(customer=b, name="Bravo Org", ad_server=server)
    person = Person.objects.create(customer=b, principal="bob@BRAVO.EXAMPLE", sam_account_name="bob",
                                   mail="bob@bravo.example")  # fmt: skip
    cert = authority.issue_smime(settings.CONFIG, pki.generate_private_key("ec-p256").public_key(),
                                 "bob@bravo.example", person=person)  # fmt: skip
    realm = KerberosRealm.objects.create(
        domain="bravo.example",
        keytab_path="/etc/b.keytab",
        service_principal="HTTP/ccm.bravo.example@BRAVO.EXAMPLE",
        customer=b,
    )
    request = EnrollmentRequest.objects.create(customer=b, person=person, csr_pem="x")
    EnrollmentEvent.objects.create(step="sync", outcome="error", error_code=18, principal=person.principal, customer=b)
    return {
        "customers": b.pk, "domains": domain.pk, "ad-servers": server.pk, "organizations": org.pk,
        "certificates": cert.pk, "realms": realm.pk, "requests": request.pk, "tokens": 10**6,
    }  # fmt: skip


def admin_routes():
    """(method, path template) of every administration route, from the OpenAPI document itself."""
    schema = api.get_openapi_schema()
    for path, operations in schema["paths"].items():
        if path.startswith("/api/enroll/"):
            continue  # the agents' service: Kerberos, not admin roles
        for method in operations:
            yield method, path


def test_every_admin_route_refuses_customer_b_to_customer_as_admin(acme, customer_b, customer_admin_of):
    admin_a = customer_admin_of(acme)
    body = {"name": "x", "reason": "unspecified", "authorized": True, "login_password": "x"}
    checked = 0
    for method, path in admin_routes():
        prefix = path.split("/")[2]
        concrete = re.sub(r"\{pk\}", str(customer_b.get(prefix, uuid.uuid4())), path)
        if "{" in concrete:
            pytest.fail(f"route {path} has a parameter this test does not know")
        answer = admin_a.call(method, concrete, body if method in ("post", "patch", "put") else None)
        text = answer.content.decode(errors="replace")
        if "{pk}" in path:
            assert answer.status_code in (403, 404), f"{method.upper()} {concrete}: {answer.status_code} {text[:200]}"
        else:  # collections: A sees only A's rows
            assert "bravo" not in text.lower() and "bob@" not in text, (
                f"{method.upper()} {concrete} leaks B: {text[:300]}"
            )
        assert SECRET not in text
        checked += 1
    assert checked >= 20
    assert (
        Customer.objects.get(uri="bravo").enabled
        and ADServer.objects.get(customer__uri="bravo").login_password == SECRET
    )


def test_the_walker_sees_b_as_super_admin(customer_b, super_api):
    assert "bravo" in super_api.get("/api/customers").content.decode()
    assert super_api.get(f"/api/certificates/{customer_b['certificates']}").status_code == 200
