"""Publishing to AD's userCertificate (customer option): the issued certificate appears in the user's
entry, the superseded one disappears after the renewal is installed."""

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from ldap3 import BASE, MODIFY_ADD

from autoenroll.testbed import samba
from enroll_helpers import make_csr

pytestmark = pytest.mark.django_db


@pytest.fixture(scope="session")
def ccm_is_a_cert_publisher(samba_ad):
    """In AD the Cert Publishers group may write userCertificate; the service account joins it."""
    conn = samba_ad.ldap_admin()
    group = f"CN=Cert Publishers,{samba.USERS_DN}"
    conn.search(group, "(objectClass=group)", BASE, attributes=["member"])
    if samba.SERVICE_ACCOUNT_DN not in conn.entries[0].member.values:
        assert conn.modify(group, {"member": [(MODIFY_ADD, [samba.SERVICE_ACCOUNT_DN])]}), conn.result
    conn.unbind()


def published(samba_ad) -> set[bytes]:
    conn = samba_ad.ldap_admin()
    conn.search(samba.USERS["user1"].dn, "(objectClass=user)", BASE, attributes=["userCertificate"])
    values = set(conn.entries[0].userCertificate.values) if "userCertificate" in conn.entries[0] else set()
    conn.unbind()
    return values


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
