"""Publishing to AD's userCertificate (customer option): the issued certificate appears in the user's
entry, the superseded one disappears after the renewal is installed; a retry, or the directory sweep,
makes what did not reach AD."""

import uuid

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from django.core.management import call_command
from ldap3 import MODIFY_ADD, MODIFY_DELETE

from autoenroll import pki
from autoenroll.server.certificates import authority
from autoenroll.server.certificates.models import Certificate
from autoenroll.server.directory import publication
from autoenroll.server.directory.models import Person
from autoenroll.server.enrollment import lifecycle
from autoenroll.testbed import samba
from enroll_helpers import make_csr

from .conftest import published as in_ad

pytestmark = pytest.mark.django_db(transaction=True)  # AD is written after commit


def published(samba_ad) -> set[bytes]:
    return in_ad(samba_ad, samba.USERS["user1"].dn)


def der(pem: str) -> bytes:
    return x509.load_pem_x509_certificate(pem.encode()).public_bytes(serialization.Encoding.DER)


def enroll(user1):
    assert user1.sync(customeruri="acme").status_code == 200
    _, csr = make_csr("user1")
    answer = user1.enroll(customeruri="acme", email="user1@test.com", csr=csr)
    assert answer.status_code == 200, answer.content
    return answer.json()


def test_issued_certificate_is_published_and_the_superseded_one_removed(
    user1, ca, realm, organization, ccm_is_a_cert_publisher, samba_ad
):
    organization.customer.publish_to_ad = True
    organization.customer.save()
    first = enroll(user1)
    assert der(first["certificate"]) in published(samba_ad)
    second = enroll(user1)
    user1.status(customeruri="acme", status="installed", serial=second["serial"], replaced_serial=first["serial"])
    now = published(samba_ad)
    assert der(second["certificate"]) in now and der(first["certificate"]) not in now


def test_nothing_is_published_when_the_option_is_off(user1, ca, realm, organization, samba_ad):
    before = published(samba_ad)
    issued = enroll(user1)
    assert der(issued["certificate"]) not in published(samba_ad)
    assert published(samba_ad) == before


def ad_admin_modify(samba_ad, op, der_value: bytes) -> None:
    conn = samba_ad.ldap_admin()
    assert conn.modify(samba.USERS["user1"].dn, {"userCertificate": [(op, [der_value])]}), conn.result
    conn.unbind()


def test_a_retry_with_the_same_key_publishes_again(user1, ca, realm, organization, ccm_is_a_cert_publisher, samba_ad):
    """The first answer was lost after its certificate was recorded, and AD never got it (away at that
    moment): the agent's retry with the same key gets the same certificate, and AD gets it now."""
    organization.customer.publish_to_ad = True
    organization.customer.save()
    assert user1.sync(customeruri="acme").status_code == 200
    _, csr = make_csr("user1")
    first = user1.enroll(customeruri="acme", email="user1@test.com", csr=csr).json()
    ad_admin_modify(samba_ad, MODIFY_DELETE, der(first["certificate"]))
    again = user1.enroll(customeruri="acme", email="user1@test.com", csr=csr).json()
    assert again["serial"] == first["serial"]
    assert der(first["certificate"]) in published(samba_ad)
    third = user1.enroll(customeruri="acme", email="user1@test.com", csr=csr)  # already there: no error
    assert third.json()["serial"] == first["serial"]
    assert der(first["certificate"]) in published(samba_ad)


def test_publishing_is_idempotent(user1, ca, realm, organization, ccm_is_a_cert_publisher, samba_ad):
    """AD's permissive modify: adding a value that is there, or removing one that is gone, succeeds."""
    organization.customer.publish_to_ad = True
    organization.customer.save()
    issued = enroll(user1)
    person = Person.objects.select_related("customer", "ad_server").get(principal__startswith="user1@")
    assert publication.publish(person, add_pem=issued["certificate"]) is True
    assert publication.publish(person, remove_pem=issued["certificate"]) is True
    assert publication.publish(person, remove_pem=issued["certificate"]) is True
    assert der(issued["certificate"]) not in published(samba_ad)


def test_the_sweep_puts_userCertificate_in_step(
    user1, ca, realm, organization, ccm_is_a_cert_publisher, samba_ad, capsys
):
    """Publications that never reached AD (the option was off, AD was away, an answer was lost) are
    made by the directory sweep: valid certificates added, revoked ones removed, other CAs' left."""
    first = enroll(user1)
    second = enroll(user1)
    user1.status(customeruri="acme", status="installed", serial=second["serial"], replaced_serial=first["serial"])
    assert Certificate.objects.get(serial=first["serial"]).status == "revoked"
    ad_admin_modify(samba_ad, MODIFY_ADD, der(first["certificate"]))  # its removal was lost
    foreign = der(samba_ad.tls_ca.read_text())  # another CA's certificate
    ad_admin_modify(samba_ad, MODIFY_ADD, foreign)
    organization.customer.publish_to_ad = True
    organization.customer.save()

    call_command("persons", "sweep")
    now = published(samba_ad)
    assert der(second["certificate"]) in now
    assert der(first["certificate"]) not in now
    assert foreign in now
    assert "1 published to AD, 1 removed from AD" in capsys.readouterr().out

    call_command("persons", "sweep")  # in step: nothing to write
    assert "0 published to AD, 0 removed from AD" in capsys.readouterr().out
    ad_admin_modify(samba_ad, MODIFY_DELETE, foreign)


def test_the_sweep_removes_the_last_certificate_of_a_person_after_its_revocation(
    user1, ca, realm, organization, ccm_is_a_cert_publisher, samba_ad, capsys, settings
):
    """Their only certificate was revoked while AD was away: they hold nothing valid, yet for a month the
    sweep still takes it out of the address book, where mail would be encrypted to a revoked key."""
    orphan = pki.generate_private_key("ec-p256").public_key()
    authority.issue_smime(settings.CONFIG, orphan, "orphan@test.com")  # a deleted customer's: no person
    issued = enroll(user1)
    ad_admin_modify(samba_ad, MODIFY_ADD, der(issued["certificate"]))  # published; its removal is lost
    lifecycle.revoke(Certificate.objects.filter(serial=issued["serial"]), "key_compromise", by="test")
    organization.customer.publish_to_ad = True
    organization.customer.save()
    call_command("persons", "sweep")
    assert der(issued["certificate"]) not in published(samba_ad)
    assert "0 persons checked, 0 left, 0 revoked, 0 published to AD, 1 removed from AD" in capsys.readouterr().out


def test_an_entry_moved_in_ad_is_put_in_step_where_it_is_now(
    user1, ca, realm, organization, ccm_is_a_cert_publisher, samba_ad
):
    """A leaver's entry is often moved to another OU: the DN stored at the last logon names nothing now."""
    issued = enroll(user1)  # the option off: not published
    organization.customer.publish_to_ad = True
    organization.customer.save()
    person = Person.objects.select_related("customer", "ad_server").get(principal__startswith="user1@")
    moved = f"CN=moved{uuid.uuid4().hex[:6]},{samba.USERS_DN}"
    assert publication.reconcile(person, dn=moved) == publication.Reconciled(added=1)
    assert der(issued["certificate"]) in published(samba_ad)


def test_an_entry_gone_from_ad_has_nothing_to_put_in_step(user1, ca, realm, organization, ccm_is_a_cert_publisher):
    organization.customer.publish_to_ad = True
    organization.customer.save()
    enroll(user1)
    person = Person.objects.select_related("customer", "ad_server").get(principal__startswith="user1@")
    person.principal = f"gone{uuid.uuid4().hex[:6]}@{samba.REALM}"
    gone = f"CN=gone,{samba.USERS_DN}"
    assert publication.reconcile(person, dn=gone) == publication.Reconciled()
