"""MS-WSTEP RequestSecurityToken over real Kerberos: issue, pending + QueryTokenStatus, renewal, impostors."""

import base64
import datetime as dt
import tempfile
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.serialization import pkcs7
from lxml import etree

from autoenroll import pki
from autoenroll.server.certificates.models import Certificate
from autoenroll.server.ces import templates, wstep
from autoenroll.server.enrollment import lifecycle
from autoenroll.server.enrollment.models import EnrollmentEvent, EnrollmentRequest
from checks import lint_smime_mailbox_strict, run_openssl

from .conftest import NS, assert_valid, ces_path, fault_of, make_csr, rst

pytestmark = pytest.mark.django_db


def issued_parts(doc):
    rstr = doc.find(".//t:RequestSecurityTokenResponseCollection/t:RequestSecurityTokenResponse", NS)
    leaf = x509.load_der_x509_certificate(
        base64.b64decode(rstr.findtext("t:RequestedSecurityToken/w:BinarySecurityToken", namespaces=NS))
    )
    bundle = pkcs7.load_der_pkcs7_certificates(base64.b64decode(rstr.findtext("w:BinarySecurityToken", namespaces=NS)))
    return rstr, leaf, bundle


def verify_chain(leaf: x509.Certificate, bundle: list[x509.Certificate], root_pem: str) -> None:
    """openssl verify -purpose smimesign with the root as the only trust anchor and the PKCS#7 as chain."""
    with tempfile.TemporaryDirectory() as tmp:
        root, chain, cert = Path(tmp, "root.pem"), Path(tmp, "chain.pem"), Path(tmp, "leaf.pem")
        root.write_text(root_pem)
        pem = serialization.Encoding.PEM
        chain.write_bytes(b"".join(c.public_bytes(pem) for c in bundle if c != leaf))
        cert.write_bytes(leaf.public_bytes(pem))
        result = run_openssl("verify", "-purpose", "smimesign", "-CAfile", root, "-untrusted", chain, cert)
    assert result.returncode == 0, result.stdout + result.stderr


def test_issue_with_pkcs10_returns_a_certificate_for_the_ad_mail_that_chains_to_the_ca(user1, ready, ca, schema):
    _, csr = make_csr()
    response = user1.post(ces_path(ca[1]), rst(csr))
    assert response.status_code == 200, response.content
    doc = assert_valid(schema, response.content)
    assert doc.findtext("s:Header/a:Action", namespaces=NS) == wstep.ACTION_RSTRC
    rstr, leaf, bundle = issued_parts(doc)
    assert rstr.findtext("e:DispositionMessage", namespaces=NS) == "Issued"
    assert rstr.findtext("t:TokenType", namespaces=NS) == wstep.TOKEN_X509
    san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.RFC822Name) == ["user1@test.com"]
    verify_chain(leaf, bundle, ca[0].certificate_pem)
    named = leaf.extensions.get_extension_for_class(x509.MSCertificateTemplate).value
    assert named.template_id.dotted_string == templates.USER.oid  # Windows renews by it, not re-enrolls
    assert lint_smime_mailbox_strict(leaf) == []
    request = EnrollmentRequest.objects.get()
    assert rstr.findtext("e:RequestID", namespaces=NS) == str(wstep.request_number(request))
    assert request.certificate.serial == format(leaf.serial_number, "x")
    steps = list(EnrollmentEvent.objects.order_by("pk").values_list("step", "outcome"))
    assert steps == [("sync", "success"), ("enroll", "success")]


def test_request_naming_the_user_template_is_accepted_and_an_unknown_one_refused(user1, ready, ca, schema):
    _, csr = make_csr(template="User")
    assert user1.post(ces_path(ca[1]), rst(csr)).status_code == 200
    _, csr = make_csr(template="WebServer")
    response = user1.post(ces_path(ca[1]), rst(csr))
    assert response.status_code == 500
    assert_valid(schema, response.content)
    assert fault_of(response.content)["reason"] == "Error 15: Invalid CSR.."


def test_pending_request_is_collected_with_query_token_status(user1, ready, ca, schema):
    ready.customer.require_approval = True
    ready.customer.save()
    _, csr = make_csr()
    response = user1.post(ces_path(ca[1]), rst(csr))
    assert response.status_code == 200, response.content
    doc = assert_valid(schema, response.content)
    rstr = doc.find(".//t:RequestSecurityTokenResponse", NS)
    assert rstr.findtext("e:DispositionMessage", namespaces=NS) == wstep.DISPOSITION_PENDING
    assert rstr.find("w:BinarySecurityToken", NS) is None
    reference = rstr.find("t:RequestedSecurityToken/w:SecurityTokenReference/w:Reference", NS)
    assert reference.get("URI").endswith(ces_path(ca[1]))
    request_id = rstr.findtext("e:RequestID", namespaces=NS)
    assert request_id.isdigit() and int(request_id) > 0

    query = rst(None, request_type=wstep.REQUEST_QUERY, request_id=request_id)
    again = assert_valid(schema, user1.post(ces_path(ca[1]), query).content)
    assert again.findtext(".//e:DispositionMessage", namespaces=NS) == wstep.DISPOSITION_PENDING
    fullwidth = request_id.translate(str.maketrans("0123456789", "０１２３４５６７８９"))  # int() reads it
    response = user1.post(ces_path(ca[1]), rst(None, request_type=wstep.REQUEST_QUERY, request_id=fullwidth))
    assert_valid(schema, response.content)
    assert fault_of(response.content)["reason"] == "Error 25: Failed to get cert.."

    lifecycle.approve(EnrollmentRequest.objects.get().pk, by="admin")
    response = user1.post(ces_path(ca[1]), query)
    assert response.status_code == 200, response.content
    rstr, leaf, bundle = issued_parts(assert_valid(schema, response.content))
    assert rstr.findtext("e:RequestID", namespaces=NS) == request_id
    assert leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(
        x509.RFC822Name
    ) == ["user1@test.com"]
    verify_chain(leaf, bundle, ca[0].certificate_pem)


def test_query_token_status_of_someone_elses_request_is_refused(user1, soap_for, ready, ca, schema):
    ready.customer.require_approval = True
    ready.customer.save()
    _, csr = make_csr()
    doc = assert_valid(schema, user1.post(ces_path(ca[1]), rst(csr)).content)
    request_id = doc.findtext(".//e:RequestID", namespaces=NS)
    other = soap_for("user2")
    response = other.post(ces_path(ca[1]), rst(None, request_type=wstep.REQUEST_QUERY, request_id=request_id))
    assert response.status_code == 500
    assert_valid(schema, response.content)
    fault = fault_of(response.content)
    assert fault["reason"] == "Error 25: Failed to get cert.." and fault["request_id"] == request_id


def _issue(user1, ca, key=None):
    key, csr = make_csr(key)
    response = user1.post(ces_path(ca[1]), rst(csr))
    assert response.status_code == 200, response.content
    _, leaf, _ = issued_parts(etree.fromstring(response.content))
    return key, leaf


def renewal(csr: bytes, signer: x509.Certificate, key) -> bytes:
    """What certenroll sends to renew: the new CSR in PKCS#7, signed with a certificate's key."""
    builder = pkcs7.PKCS7SignatureBuilder().set_data(csr).add_signer(signer, key, hashes.SHA256())
    return builder.sign(serialization.Encoding.DER, [pkcs7.PKCS7Options.Binary])


def test_renewal_signed_by_the_old_key_is_issued_and_replaces_the_old_certificate(user1, ready, ca, schema):
    old_key, old_cert = _issue(user1, ca)
    _, csr = make_csr()
    signed = renewal(csr, old_cert, old_key)
    response = user1.post(ces_path(ca[1]), rst(signed))
    assert response.status_code == 200, response.content
    _, leaf, _ = issued_parts(assert_valid(schema, response.content))
    new = Certificate.objects.get(serial=format(leaf.serial_number, "x"))
    assert new.replaces.serial == format(old_cert.serial_number, "x")
    assert x509.load_der_x509_csr(csr).public_key() == leaf.public_key()


def test_a_renewal_sent_again_gets_the_same_certificate(user1, ready, ca, schema):
    """certenroll sends the same renewal again after a lost answer: the certificate that renews the old one
    comes back; the old one is not revoked by the limit of valid certificates, nor the retry refused."""
    old_key, old_cert = _issue(user1, ca)
    _, csr = make_csr()
    signed = renewal(csr, old_cert, old_key)
    serials = []
    for _ in range(3):
        response = user1.post(ces_path(ca[1]), rst(signed))
        assert response.status_code == 200, response.content
        serials.append(issued_parts(assert_valid(schema, response.content))[1].serial_number)
    assert len(set(serials)) == 1
    assert Certificate.objects.filter(profile="smime").count() == 2
    assert Certificate.objects.get(serial=format(old_cert.serial_number, "x")).status == "issued"


def test_renewal_signed_by_a_foreign_certificate_or_a_wrong_key_is_refused(user1, ready, ca, schema):
    stranger_key = pki.generate_private_key("rsa-2048")
    stranger = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([]))
        .issuer_name(x509.Name([]))
        .public_key(stranger_key.public_key())
        .serial_number(1)
        .not_valid_before(dt.datetime(2024, 1, 1))
        .not_valid_after(dt.datetime(2099, 1, 1))
        .sign(stranger_key, hashes.SHA256())
    )
    _, csr = make_csr()
    signed = renewal(csr, stranger, stranger_key)
    response = user1.post(ces_path(ca[1]), rst(signed))
    assert response.status_code == 500
    assert_valid(schema, response.content)
    assert fault_of(response.content)["reason"] == "Error 15: Invalid CSR.."

    _, old_cert = _issue(user1, ca)
    forged = renewal(csr, old_cert, stranger_key)  # the old certificate, but not its key
    response = user1.post(ces_path(ca[1]), rst(forged))
    assert response.status_code == 500
    assert fault_of(response.content)["reason"] == "Error 15: Invalid CSR.."


@pytest.mark.parametrize(
    ("sans", "code", "message"),
    [
        ([x509.RFC822Name("user2@test.com")], 18, "Email in AD mismatch.."),
        ([x509.RFC822Name("user1@test.com"), x509.DNSName("evil.test.com")], 15, "Invalid CSR.."),
    ],
    ids=["another-users-mail", "extra-sans"],
)
def test_impostor_requests_get_a_fault_with_the_guides_number(user1, ready, ca, schema, sans, code, message):
    _, csr = make_csr(sans=sans)
    response = user1.post(ces_path(ca[1]), rst(csr))
    assert response.status_code == 500
    assert_valid(schema, response.content)
    fault = fault_of(response.content)
    assert fault["code"] == "s:Receiver"
    assert fault["reason"] == f"Error {code}: {message}"
    assert int(fault["error_code"]) < 0  # an HRESULT, as xs:int
    event = EnrollmentEvent.objects.filter(outcome="error").get()
    assert (event.step, event.error_code, event.principal) == ("enroll", code, "user1@TEST.COM")
    assert not Certificate.objects.exists()


def test_channel_bindings_of_the_tls_certificate_are_accepted_and_wrong_ones_refused(user1, ready, ca, monkeypatch):
    from autoenroll.server.kerberos import spnego

    binding = spnego.CBT_PREFIX + b"\x01" * 32
    monkeypatch.setattr(spnego, "server_end_point", lambda: binding)
    _, csr = make_csr()
    assert user1.post(ces_path(ca[1]), rst(csr), bindings=binding).status_code == 200
    assert user1.post(ces_path(ca[1]), rst(csr)).status_code == 200  # clients that bind nothing still work
    refused = user1.post(ces_path(ca[1]), rst(csr), bindings=spnego.CBT_PREFIX + b"\x02" * 32)
    assert refused.status_code == 401 and refused["WWW-Authenticate"] == "Negotiate"


def test_a_certmonger_request_with_the_host_name_as_cn_gets_a_certificate_for_the_ad_mail(user1, ready, ca):
    """certmonger puts the host name in the subject CN and no SAN. The policy says the subject is built
    from AD, so its names are ignored, as AD CS ignores them; the certificate names the AD user."""
    _, csr = make_csr(cn="workstation7.test.com")
    response = user1.post(ces_path(ca[1]), rst(csr))
    assert response.status_code == 200, response.content
    _, leaf, _ = issued_parts(etree.fromstring(response.content))
    san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.RFC822Name) == ["user1@test.com"]
    assert "workstation7" not in leaf.subject.rfc4514_string()


@pytest.mark.parametrize("key_type", ["ec-p256", "rsa-1024"])
def test_a_key_the_policy_did_not_announce_is_refused(user1, ready, ca, key_type):
    """The policy announces RSA of at least 2048 bits (MS-XCEP); an EC or a short RSA key is not what a
    client that read it would send, and is not issued."""
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(65537, 1024) if key_type == "rsa-1024" else pki.generate_private_key(key_type)
    _, csr = make_csr(key)
    response = user1.post(ces_path(ca[1]), rst(csr))
    assert response.status_code == 500
    assert fault_of(response.content)["reason"] == "Error 15: Invalid CSR.."
    assert "asks for RSA of at least 2048 bits" in EnrollmentEvent.objects.get(outcome="error").detail
    assert not Certificate.objects.exists()
