"""Fixtures of the admin-page tests: a Super Admin, Customer Admins of two customers, and a full set of
objects for each customer (so the isolation walk has something of customer B behind every URL)."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from django.conf import settings as django_settings
from django.contrib.auth.models import User
from django.test import Client

from autoenroll import pki
from autoenroll.protocol import EnrollmentError
from autoenroll.server.certificates import authority
from autoenroll.server.certificates.models import Certificate
from autoenroll.server.directory.models import ADServer, Person
from autoenroll.server.enrollment import events
from autoenroll.server.enrollment.models import EnrollmentEvent, EnrollmentRequest
from autoenroll.server.kerberos.models import KerberosRealm
from autoenroll.server.tenants.models import Customer, CustomerAdmin, EmailDomain, Organization
from enroll_helpers import make_csr

#: The AD login password of the objects below: it must never appear in a page or a log.
AD_PASSWORD = "Zq7-never-shown-AD-pass!"
USER_PASSWORD = "correct horse battery staple 7"
#: Screenshots of the browser tests, printed where the run prints (a print in a test is captured).
SCREENSHOTS_TAKEN: list = []


def pytest_terminal_summary(terminalreporter) -> None:
    if SCREENSHOTS_TAKEN:
        terminalreporter.section("screenshots")
        for path in SCREENSHOTS_TAKEN:
            terminalreporter.write_line(str(path))


@dataclass
class Tenant:
    customer: Customer
    domain: EmailDomain
    ad_server: ADServer
    organization: Organization
    person: Person
    certificate: Certificate
    event: EnrollmentEvent
    request: EnrollmentRequest
    administrator: User  # a second Customer Admin of the customer, named after its mail domain


def make_tenant(uri: str, mail_domain: str) -> Tenant:
    customer = Customer.objects.create(uri=uri, name=uri.upper(), require_approval=True)
    domain = EmailDomain.objects.create(customer=customer, name=mail_domain, authorized=True)
    server = ADServer.objects.create(
        customer=customer,
        domain=mail_domain,
        address="127.0.0.1",
        port=1,  # nothing listens: a Verify fails fast at "tcp"
        use_ssl=True,
        users_base_dn="CN=Users,DC=x",
        login_dn="CN=ccm,CN=Users,DC=x",
        login_password=AD_PASSWORD,
    )
    org = Organization.objects.create(customer=customer, name=f"{uri} sales", ad_server=server)
    org.domains.add(domain)
    person = Person.objects.create(
        customer=customer,
        ad_server=server,
        organization=org,
        principal=f"user1@{mail_domain.upper()}",
        sam_account_name="user1",
        mail=f"user1@{mail_domain}",
        cn="User One",
    )
    key = pki.generate_private_key("ec-p256")
    cert = authority.issue_smime(django_settings.CONFIG, key.public_key(), person.mail, person=person)
    event = events.record_error(  # as the server writes it (with its MAC, for the audit trail)
        "enroll", person.principal, EnrollmentError(18, "mail mismatch"), customer=customer, person=person
    )
    _, csr = make_csr("User One")
    request = EnrollmentRequest.objects.create(customer=customer, person=person, organization=org, csr_pem=csr)
    administrator = make_user(f"operator@{mail_domain}", customer=customer)
    return Tenant(customer, domain, server, org, person, cert, event, request, administrator)


@pytest.fixture
def tenant_a(ca) -> Tenant:
    return make_tenant("alpha", "alpha.example")


@pytest.fixture
def tenant_b(ca) -> Tenant:
    return make_tenant("beta", "beta.example")


@pytest.fixture
def other_realm(db) -> KerberosRealm:
    return KerberosRealm.objects.create(
        domain="beta.example", keytab_path="/etc/beta.keytab", service_principal="HTTP/ccm.beta.example@BETA.EXAMPLE"
    )


def make_user(username: str, *, superuser: bool = False, customer: Customer | None = None) -> User:
    user = User.objects.create_user(username, password=USER_PASSWORD, is_superuser=superuser, is_staff=superuser)
    if customer is not None:
        CustomerAdmin.objects.create(user=user, customer=customer)
    return user


@pytest.fixture
def super_admin(db) -> User:
    return make_user("root-admin", superuser=True)


@pytest.fixture
def admin_a(tenant_a) -> User:
    return make_user("admin-a", customer=tenant_a.customer)


def client_for(user: User, **kwargs) -> Client:
    client = Client(**kwargs)
    client.force_login(user)
    return client


@pytest.fixture
def super_client(super_admin) -> Client:
    return client_for(super_admin)


@pytest.fixture
def client_a(admin_a) -> Client:
    return client_for(admin_a)
