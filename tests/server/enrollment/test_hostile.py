"""Hostile input against the real enrollment views, with real Kerberos tokens from the Samba DC.

The rule: every answer is one of the guide's numbered refusals, or a certificate for the caller's own AD
mail; never a 5xx. First the cases found by hand (issue 14), kept as regression tests, then a
property-based suite (Hypothesis) over every field of every call and over mutated CSRs. Examples per
property: AUTOENROLL_HYPOTHESIS_EXAMPLES (default 200; more for a long local run).
"""

from __future__ import annotations

import base64
import json
import os

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID
from django.test import Client
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from autoenroll import pki
from autoenroll.protocol import CATALOGUE
from autoenroll.protocol.messages import API_PREFIX
from autoenroll.server.certificates.models import Certificate
from autoenroll.server.enrollment import pipeline
from autoenroll.server.enrollment.models import EnrollmentEvent
from enroll_helpers import assert_error, make_csr, raw_csr

pytestmark = pytest.mark.django_db

EXAMPLES = int(os.environ.get("AUTOENROLL_HYPOTHESIS_EXAMPLES", "200"))
HYPOTHESIS = settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large],
    derandomize=bool(os.environ.get("CI")),  # CI: the same examples every run; locally: new ones each time
)
SAN, EKU, BASIC = "2.5.29.17", "2.5.29.37", "2.5.29.19"


@pytest.fixture
def ready(ca, realm, organization):
    return organization


def post(agent, call: str, body, *, content_type="application/json", **headers):
    data = body if isinstance(body, bytes | str) else json.dumps(body)
    return agent.client.post(
        f"{API_PREFIX}/{call}",
        data=data,
        content_type=content_type,
        HTTP_AUTHORIZATION=f"Negotiate {agent.token()}",
        secure=True,
        **headers,
    )


def assert_guide_answer(response) -> None:
    """A numbered refusal in the guide's shape, or a certificate for user1's own AD mail; never a 5xx."""
    assert response.status_code < 500, response.content
    body = response.json()
    if "error" in body:
        code = body["error"]["code"]
        assert body == {"error": {"code": code, "message": CATALOGUE[code].message}}
        return
    assert response.status_code == 200, response.content
    if body.get("certificate"):
        cert = x509.load_pem_x509_certificate(body["certificate"].encode())
        mails = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        assert mails.get_values_for_type(x509.RFC822Name) == ["user1@test.com"]


def user1_name() -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "user1")])


# --- cross-site requests: a web page must not enroll on a user's behalf -----------------------------


@pytest.mark.parametrize(
    "content_type, headers, status, code",
    [
        ("text/plain", {}, 415, 29),  # what an HTML form can send without a preflight
        ("application/x-www-form-urlencoded", {}, 415, 29),
        ("multipart/form-data; boundary=x", {}, 415, 29),
        ("application/json", {"HTTP_ORIGIN": "https://evil.example"}, 403, 27),
        ("application/json", {"HTTP_ORIGIN": "null"}, 403, 27),
        ("application/json", {"HTTP_SEC_FETCH_SITE": "cross-site"}, 403, 27),
        ("application/json", {"HTTP_SEC_FETCH_SITE": "same-site"}, 403, 27),
    ],
)
@pytest.mark.parametrize("call", ["logon", "enroll", "sync", "status"])
def test_a_request_a_web_page_could_make_gets_nothing(user1, ready, call, content_type, headers, status, code):
    body = json.dumps({"customeruri": "acme", "email": "user1@test.com", "csr": make_csr("user1")[1]})
    response = post(user1, call, body, content_type=content_type, **headers)
    assert response.status_code == status
    assert_error(response, code, CATALOGUE[code].message)
    assert not Certificate.objects.exists()
    assert EnrollmentEvent.objects.filter(error_code=code).exists()  # the admin sees it on the Logs page


def test_the_servers_own_origin_and_a_program_without_headers_are_served(user1, ready):
    own = post(user1, "logon", {"customeruri": "acme", "csr": make_csr("user1")[1]}, HTTP_ORIGIN="https://testserver")
    assert own.status_code == 200, own.content
    assert post(user1, "logon", {"customeruri": "acme", "csr": make_csr("user1")[1]}).status_code == 200


# --- the cases found by hand, kept -------------------------------------------------------------------


@pytest.mark.parametrize(
    "body, code",
    [
        ({"orgid": "²"}, 6),  # isdigit() is true, int() fails
        ({"orgid": "١"}, 6),  # Arabic-Indic one resolved to organization 1
        ({"orgid": "9" * 5000}, 6),  # beyond Python's int-conversion limit
        ({"orgid": 1.5}, 6),
        ({"orgid": -3}, 6),
        ({"customeruri": "\ud800"}, 2),  # a lone surrogate (SQLite could not encode it)
        ({"customeruri": "ac\x00me"}, 2),  # a NUL (PostgreSQL refuses it)
        ({"email": "\udfff@test.com"}, 18),
        ({"customeruri": ["acme"]}, 2),
        ({"customeruri": "x" * 100_000}, 2),
    ],
)
def test_malformed_fields_get_the_guides_number(user1, ready, body, code):
    data = {"customeruri": "acme", "csr": make_csr("user1")[1], **body}
    assert_error(post(user1, "logon", data), code, CATALOGUE[code].message)
    assert not Certificate.objects.exists()


def _bad_csrs():
    key = pki.generate_private_key("ec-p256")
    san = x509.SubjectAlternativeName([x509.RFC822Name("user1@test.com")]).public_bytes()
    name = user1_name()
    yield "duplicate SAN", raw_csr(key, name, [(SAN, False, san), (SAN, False, san)])
    yield "malformed SAN", raw_csr(key, name, [(SAN, False, b"\x30\x03\x81\x01")])
    yield "malformed EKU", raw_csr(key, name, [(EKU, False, b"\x30\x02\x06\x00")])
    yield "malformed basicConstraints", raw_csr(key, name, [(BASIC, True, b"\x01\x01\xff")])
    yield "non-ASCII rfc822Name", raw_csr(key, name, [(SAN, False, b"\x30\x08\x81\x06\xc3\xa9@t.co")])
    yield "CN not UTF-8", _csr_with_raw_cn(key, b"\x0c\x02\xff\xfe")  # a UTF8String of two invalid bytes
    good = x509.load_pem_x509_csr(make_csr("user1")[1].encode()).public_bytes(serialization.Encoding.DER)
    version_1 = bytearray(good)
    version_1[7] ^= 1  # found by Hypothesis: x509.InvalidVersion is not a ValueError
    yield "CSR version 1", _pem(bytes(version_1))
    weak = rsa.generate_private_key(public_exponent=3, key_size=2048)
    yield (
        "RSA exponent 3",
        x509.CertificateSigningRequestBuilder()
        .subject_name(name)
        .sign(weak, hashes.SHA256())
        .public_bytes(serialization.Encoding.PEM)
        .decode(),
    )


def _csr_with_raw_cn(key, cn_value_der: bytes) -> str:
    """A request whose subject CN holds `cn_value_der` as is (an encoding cryptography never writes)."""
    from cryptography.hazmat.primitives.asymmetric import ec
    from pyasn1.codec.der import decoder, encoder
    from pyasn1.type import univ
    from pyasn1_alt_modules import rfc2986

    template = x509.CertificateSigningRequestBuilder().subject_name(user1_name()).sign(key, hashes.SHA256())
    der = template.public_bytes(serialization.Encoding.DER)
    csr, _ = decoder.decode(der, asn1Spec=rfc2986.CertificationRequest())
    info = csr["certificationRequestInfo"]
    rdn = info["subject"][0][0][0]
    rdn["value"] = univ.Any(cn_value_der)
    csr["signature"] = univ.BitString.fromOctetString(key.sign(encoder.encode(info), ec.ECDSA(hashes.SHA256())))
    return _pem(encoder.encode(csr))


def _pem(der: bytes) -> str:
    body = base64.encodebytes(der).decode()
    return f"-----BEGIN CERTIFICATE REQUEST-----\n{body}-----END CERTIFICATE REQUEST-----\n"


@pytest.mark.parametrize("what, csr", list(_bad_csrs()), ids=[w for w, _ in _bad_csrs()])
def test_a_csr_that_cannot_be_read_is_error_15(user1, ready, what, csr):
    assert_error(post(user1, "logon", {"customeruri": "acme", "csr": csr}), 15, "Invalid CSR..")
    assert not Certificate.objects.exists()


def test_polling_another_users_request_is_404_and_a_failure_report_needs_your_own_serial(user1, agent_for, ready):
    ready.customer.require_approval = True
    ready.customer.save()
    user2 = agent_for("user2")
    theirs = post(user2, "logon", {"customeruri": "acme", "csr": make_csr("user2")[1]}).json()
    polled = user1.get(f"requests/{theirs['request_id']}")
    assert polled.status_code == 404 and polled.json()["error"]["code"] == 25
    assert user1.get("requests/%00").status_code == 404
    ready.customer.require_approval = False
    ready.customer.save()
    issued = post(user2, "logon", {"customeruri": "acme", "csr": make_csr("user2")[1]}).json()
    assert post(user1, "logon", {"customeruri": "acme", "csr": make_csr("user1")[1]}).status_code == 200
    report = {"customeruri": "acme", "status": "failed", "serial": issued["serial"]}
    assert_error(user1.status(**report), 24, "Invalid serial number supplied..")


def test_a_principal_calling_too_often_gets_429_with_retry_after(user1, ready, settings):
    settings.CONFIG = settings.CONFIG.model_copy(update={"enroll_rate_per_minute": 3})
    _, csr = make_csr("user1")  # the same key: no new certificate, only the calls count
    answers = [post(user1, "logon", {"customeruri": "acme", "csr": csr}) for _ in range(4)]
    assert [a.status_code for a in answers] == [200, 200, 200, 429]
    assert 0 < int(answers[-1]["Retry-After"]) <= 60
    assert Certificate.objects.count() == 1


def test_an_unexpected_error_is_logged_recorded_and_answered_30(user1, ready, monkeypatch, caplog):
    def broken(caller, data):
        raise KeyError("a bug")

    monkeypatch.setattr(pipeline, "logon", broken)
    response = post(user1, "logon", {"customeruri": "acme", "csr": make_csr("user1")[1]})
    assert response.status_code == 500
    assert_error(response, 30, CATALOGUE[30].message)
    event = EnrollmentEvent.objects.get(error_code=30)
    assert event.principal == "user1@TEST.COM" and "KeyError" in event.detail
    assert "Traceback" in caplog.text or any(r.exc_info for r in caplog.records)


# --- property-based: whatever the fields hold ------------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=3),
    max_leaves=6,
)
FIELDS = {
    "logon": ["customeruri", "orgid", "domainname", "email", "cn", "csr"],
    "sync": ["customeruri", "orgid", "domainname", "email"],
    "enroll": ["customeruri", "orgid", "email", "cn", "csr"],
    "status": ["customeruri", "status", "serial", "replaced_serial"],
}
PLAUSIBLE = {
    "customeruri": st.sampled_from(["acme", "ACME", "acme ", ""]),
    "orgid": st.sampled_from(["1", 1, "0", "01"]),
    "domainname": st.sampled_from(["test.com", "TEST.COM", "other.com"]),
    "email": st.sampled_from(["user1@test.com", "user2@test.com", "USER1@TEST.COM"]),
    "cn": st.sampled_from(["user1", "User One", "user2"]),
    "status": st.sampled_from(["installed", "failed", "INSTALLED"]),
    "serial": st.sampled_from(["0", "ab", "0x00AB", "zz"]),
    "replaced_serial": st.sampled_from(["1", "ab:cd"]),
}


def bodies(call: str):
    fields = {name: json_values | PLAUSIBLE.get(name, st.nothing()) for name in FIELDS[call]}
    if "csr" in fields:
        fields["csr"] = json_values | st.just("VALID")
    objects = st.fixed_dictionaries({}, optional=fields)
    return objects | json_values


@pytest.mark.parametrize("call", sorted(FIELDS))
def test_any_json_in_any_field_gets_a_guide_answer(user1, ready, call):
    valid_csr = make_csr("user1")[1]

    @HYPOTHESIS
    @given(body=bodies(call))
    def check(body):
        if isinstance(body, dict) and body.get("csr") == "VALID":
            body["csr"] = valid_csr
        assert_guide_answer(post(user1, call, body))

    check()


@pytest.mark.parametrize("call", ["logon", "sync"])
def test_bytes_that_are_not_json_get_29(user1, ready, call):
    @HYPOTHESIS
    @given(raw=st.binary(max_size=300))
    def check(raw):
        try:
            json.loads(raw)
        except ValueError:
            assert_error(post(user1, call, raw), 29, "No request supplied..")

    check()


def test_mutated_csrs_get_error_15_or_a_certificate_for_the_callers_mail(user1, ready):
    key = pki.generate_private_key("ec-p256")
    good = x509.load_pem_x509_csr(make_csr("user1")[1].encode()).public_bytes(serialization.Encoding.DER)
    oids = st.sampled_from([SAN, EKU, BASIC, "2.5.29.15", "2.5.29.14", "1.2.3.4", "2.5.29.32"])
    extension = st.tuples(oids, st.booleans(), st.binary(max_size=40))

    mutation = st.one_of(
        st.tuples(st.just("flip"), st.integers(0, len(good) * 8 - 1)),
        st.tuples(st.just("cut"), st.integers(0, len(good) - 1)),
        st.tuples(st.just("extensions"), st.lists(extension, min_size=1, max_size=4)),
    )

    @HYPOTHESIS
    @given(change=mutation)
    def check(change):
        kind, arg = change
        if kind == "extensions":
            pem = raw_csr(key, user1_name(), arg)
        else:
            der = bytearray(good)
            if kind == "flip":
                der[arg // 8] ^= 1 << (arg % 8)
            else:
                der = der[:arg]
            pem = _pem(bytes(der))
        assert_guide_answer(post(user1, "logon", {"customeruri": "acme", "csr": pem}))

    check()


def test_a_client_is_not_needed_for_the_refusals(db):
    """Even without Kerberos, the boundary answers in the guide's shape before authentication."""
    response = Client().post(f"{API_PREFIX}/logon", data="{}", content_type="text/plain", secure=True)
    assert response.status_code == 415 and response.json()["error"]["code"] == 29


@pytest.mark.parametrize("call", ["logon", "sync", "enroll", "status", "logon/status"])
def test_a_body_larger_than_any_call_is_refused_unread(db, call):
    """Django's own limit (2.5 MB) raised RequestDataTooBig, answered 500 with guide error 30; the edge now
    answers 413 with error 29 from Content-Length, before Kerberos and before reading a byte of it."""
    from autoenroll.server.enrollment.boundary import MAX_BODY_BYTES

    body = json.dumps({"customeruri": "acme", "csr": "A" * MAX_BODY_BYTES})
    response = Client().post(f"{API_PREFIX}/{call}", data=body, content_type="application/json", secure=True)
    assert response.status_code == 413 and response.json()["error"]["code"] == 29


@pytest.mark.parametrize("length", ["²", "１２", "-1", "1e3"])
def test_a_content_length_that_is_no_number_is_refused_unread(db, length):
    """Digits to `str.isdigit` that are none in HTTP (fullwidth "１２" was taken as 12) are refused as any
    other length that is no number."""
    response = Client().post(
        f"{API_PREFIX}/logon", data="{}", content_type="application/json", secure=True, CONTENT_LENGTH=length
    )
    assert response.status_code in (400, 413) and response.json()["error"]["code"] == 29, response.content
