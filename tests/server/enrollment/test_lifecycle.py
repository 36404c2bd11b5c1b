"""The lifecycle service is the one place a certificate is revoked, approved or rejected: the admin page,
the REST API, the command line and the directory sweep all do exactly the same (the row, an audit event,
the certificate removed from AD's userCertificate), against the real Samba DC."""

from __future__ import annotations

import threading
import uuid

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.db import connection, transaction
from django.test import Client
from django.urls import reverse

from autoenroll import pki
from autoenroll.protocol import EnrollmentError
from autoenroll.server.api.models import ApiToken
from autoenroll.server.certificates import authority
from autoenroll.server.certificates.models import Certificate
from autoenroll.server.directory.sync import sync_person
from autoenroll.server.enrollment import lifecycle
from autoenroll.server.enrollment.models import EnrollmentEvent, EnrollmentRequest
from autoenroll.testbed import samba
from enroll_helpers import make_csr

from .conftest import published

pytestmark = pytest.mark.django_db(transaction=True)  # AD is written after commit


@pytest.fixture
def publishing(ca, realm, organization, ccm_is_a_cert_publisher):
    """A customer that publishes to AD, its service account allowed to write userCertificate."""
    organization.customer.publish_to_ad = True
    organization.customer.save()
    return organization


def new_holder(samba_ad, organization) -> Certificate:
    """A fresh AD user with a certificate published in their entry."""
    sam = f"rv{uuid.uuid4().hex[:8]}"
    samba_ad.add_user(sam, "Passw0rd!Revoke1", mail=f"{sam}@test.com")
    person, _ = sync_person(organization.customer, organization.ad_server, f"{sam}@{samba.REALM}", organization)
    public_key = pki.generate_private_key("ec-p256").public_key()
    with transaction.atomic():
        certificate = lifecycle.issue(lifecycle.lock(person, authority.key_sha256(public_key)), public_key).certificate
    assert der(certificate) in published(samba_ad, person.dn)
    return certificate


def der(cert: Certificate) -> bytes:
    return x509.load_pem_x509_certificate(cert.pem.encode()).public_bytes(serialization.Encoding.DER)


def revoke_on_the_page(cert: Certificate) -> None:
    admin = get_user_model().objects.create_superuser(f"a{uuid.uuid4().hex[:6]}", "a@test.com", "x-Super-Passw0rd")
    client = Client()
    client.force_login(admin)
    url = reverse("web:certificate_revoke", args=[cert.pk])
    assert client.post(url, {"reason": "key_compromise", "confirm": "on"}, secure=True).status_code == 302


def revoke_through_the_api(cert: Certificate) -> None:
    admin = get_user_model().objects.create_superuser(f"a{uuid.uuid4().hex[:6]}", "a@test.com", "x-Super-Passw0rd")
    token = ApiToken.issue(admin, "tests")[1]
    answer = Client().post(
        f"/api/certificates/{cert.pk}/revoke",
        data={"reason": "key_compromise"},
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Bearer {token}",
        secure=True,
    )
    assert answer.status_code == 200, answer.content


def revoke_on_the_command_line(cert: Certificate) -> None:
    call_command("certificates", "revoke", cert.serial, "--reason", "key-compromise", "--by", "cli-test")


@pytest.mark.parametrize("revoke", [revoke_on_the_page, revoke_through_the_api, revoke_on_the_command_line])
def test_every_entry_point_revokes_records_and_unpublishes_alike(publishing, samba_ad, revoke):
    cert = new_holder(samba_ad, publishing)
    revoke(cert)
    cert.refresh_from_db()
    assert (cert.status, cert.revocation_reason) == ("revoked", "key_compromise")
    events = EnrollmentEvent.objects.filter(certificate=cert, step="revoke", outcome="success")
    assert events.count() == 1 and events.get().principal == cert.person.principal
    assert der(cert) not in published(samba_ad, cert.person.dn)


def test_the_sweep_revokes_records_and_unpublishes_alike(publishing, samba_ad):
    cert = new_holder(samba_ad, publishing)
    samba_ad.disable_user(cert.person.sam_account_name)
    call_command("persons", "sweep")
    cert.refresh_from_db()
    assert (cert.status, cert.revocation_reason) == ("revoked", "affiliation_changed")
    assert EnrollmentEvent.objects.filter(certificate=cert, step="revoke", outcome="success").count() == 1
    assert der(cert) not in published(samba_ad, cert.person.dn)


def test_two_concurrent_approvals_issue_one_certificate(publishing, samba_ad):
    cert = new_holder(samba_ad, publishing)
    person = cert.person
    _, csr = make_csr(person.sam_account_name)
    request = EnrollmentRequest.objects.create(customer=person.customer, person=person, csr_pem=csr)
    outcomes = []
    start = threading.Barrier(2)

    def approve(by):
        try:
            start.wait(timeout=10)
            lifecycle.approve(request.pk, by=by)
            outcomes.append("approved")
        except ValueError as exc:
            outcomes.append(str(exc))
        finally:
            connection.close()  # this thread's own connection: none left open at teardown

    threads = [threading.Thread(target=approve, args=(f"admin{i}",)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert outcomes == ["approved", "approved"]  # the second is answered the request as the first left it
    request.refresh_from_db()
    assert request.status == "issued"
    assert Certificate.objects.filter(person=person).count() == 2  # the first one, and this one
    assert EnrollmentEvent.objects.filter(person=person, message__startswith="approved by").count() == 1
    again = lifecycle.approve(request.pk, by="admin9")  # a retry after a lost answer
    assert (again.status, again.certificate_id) == ("issued", request.certificate_id)
    assert again.decided_by == request.decided_by


def test_reject_is_recorded_once_and_a_second_decision_is_refused(publishing, samba_ad):
    cert = new_holder(samba_ad, publishing)
    request = EnrollmentRequest.objects.create(
        customer=cert.person.customer, person=cert.person, csr_pem=make_csr(cert.person.sam_account_name)[1]
    )
    lifecycle.reject(request.pk, by="admin")
    assert lifecycle.reject(request.pk, by="admin2").decided_by == "admin"  # again: answered as it is
    with pytest.raises(ValueError, match="not pending"):
        lifecycle.approve(request.pk, by="admin")
    event = EnrollmentEvent.objects.get(person=cert.person, error_code=25)
    assert "rejected by admin" in event.detail


def disable_customer(organization, person):
    organization.customer.enabled = False
    organization.customer.save()


def unauthorize_domain(organization, person):
    domain = organization.domains.get()
    domain.authorized = False
    domain.save()


def delete_organization(organization, person):
    organization.deleted = True
    organization.save()


def disable_person(organization, person):
    person.enabled = False  # as the sweep records a user disabled in AD
    person.save()


@pytest.mark.parametrize(
    ("change", "code"),
    [(disable_customer, 3), (unauthorize_domain, 5), (delete_organization, 8), (disable_person, 17)],
)
def test_an_approval_meets_the_rules_of_every_issuance(publishing, samba_ad, change, code):
    """A request made last week is approved today: what a logon would refuse today is refused, and the
    request stays pending (the rules are checked where every issuance is signed, `lifecycle.issue`)."""
    cert = new_holder(samba_ad, publishing)
    person = cert.person
    request = EnrollmentRequest.objects.create(
        customer=person.customer, person=person, csr_pem=make_csr(person.sam_account_name)[1]
    )
    change(publishing, person)
    with pytest.raises(EnrollmentError) as refused:
        lifecycle.approve(request.pk, by="admin")
    assert refused.value.code == code
    request.refresh_from_db()
    assert request.status == "pending" and Certificate.objects.filter(person=person).count() == 1


def test_deleting_a_customer_revokes_its_valid_certificates(publishing, samba_ad):
    """Certificates outlive their person row (the audit needs them); a valid one whose person went with the
    customer could no longer be seen or revoked by anyone, so the deletion revokes it, in its transaction."""
    cert = new_holder(samba_ad, publishing)
    dn = cert.person.dn
    admin = get_user_model().objects.create_superuser("root", "r@test.com", "x-Super-Passw0rd")
    answer = Client().delete(
        f"/api/customers/{publishing.customer.pk}",
        HTTP_AUTHORIZATION=f"Bearer {ApiToken.issue(admin, 'tests')[1]}",
        secure=True,
    )
    assert answer.status_code == 204, answer.content
    cert.refresh_from_db()
    assert (cert.status, cert.revocation_reason, cert.person_id) == ("revoked", "cessation_of_operation", None)
    assert cert.revoked_by == "deletion of customer acme"
    event = EnrollmentEvent.objects.get(certificate=cert, step="revoke")
    assert event.person_id is None and event.principal  # the link went with the person; the name stays
    assert der(cert) not in published(samba_ad, dn)  # and taken out of AD's userCertificate


@pytest.mark.parametrize("same_key", [True, False], ids=["key-kept", "new-key"])
def test_a_windows_renewal_held_for_approval_renews_once_approved(publishing, samba_ad, same_key):
    """MS-WSTEP renewal (signed with the old certificate's key) for a customer that requires approval: once
    approved, a new certificate that replaces the old one (the approval had answered the old one when the
    key was kept, and lost what it renewed otherwise); the same renewal sent again gets it back."""
    from cryptography.hazmat.primitives import hashes
    from cryptography.x509.oid import NameOID

    from autoenroll.server.enrollment import pipeline

    old = new_holder(samba_ad, publishing)
    person = old.person
    publishing.customer.require_approval = True
    publishing.customer.save()
    key = pki.generate_private_key("ec-p256")
    if same_key:  # new_holder threw its key away: certify this one as the certificate to renew
        with transaction.atomic():
            old = lifecycle.issue(lifecycle.lock(person, authority.key_sha256(key.public_key())), key.public_key())
            old = old.certificate
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, person.sam_account_name)])
    csr = x509.CertificateSigningRequestBuilder().subject_name(name).sign(key, hashes.SHA256())
    data = {"customeruri": "acme", "email": person.mail, "csr": csr.public_bytes(serialization.Encoding.PEM).decode()}
    caller = pipeline.Caller(person.principal)
    pending = pipeline.enroll(caller, data, replaces=old, subject_from_ad=True)
    assert pending.status == "pending"
    assert pipeline.enroll(caller, data, replaces=old, subject_from_ad=True).pk == pending.pk  # the same request
    renewed = lifecycle.approve(pending.pk, by="admin").certificate
    assert renewed.pk != old.pk and renewed.replaces_id == old.pk
    again = pipeline.enroll(caller, data, replaces=old, subject_from_ad=True)
    assert (again.status, again.certificate_id) == ("issued", renewed.pk)
