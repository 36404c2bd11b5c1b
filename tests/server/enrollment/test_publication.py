"""Publishing to AD's userCertificate (customer option): the issued certificate appears in the user's
entry, the superseded one disappears after the renewal is installed."""

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

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
