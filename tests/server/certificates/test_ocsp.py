"""The OCSP responder of the server: answers from the database, agrees with the CRL, never a 500."""

from __future__ import annotations

import base64
import datetime as dt
import time
from urllib.parse import quote

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509 import ocsp
from cryptography.x509.oid import ExtendedKeyUsageOID
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from autoenroll import pki
from autoenroll.server.certificates import authority, publication
from autoenroll.server.certificates.models import Certificate, PresignedOCSPResponse, RevocationReason
from autoenroll.server.enrollment import lifecycle

pytestmark = [pytest.mark.django_db, pytest.mark.urls("autoenroll.server.certificates.urls")]

OCSP_REQUEST = "application/ocsp-request"
DER = serialization.Encoding.DER


def ocsp_request(cert: Certificate, issuer_pem: str, *, nonce: bytes | None = None, serial: int | None = None) -> bytes:
    issuer = x509.load_pem_x509_certificate(issuer_pem.encode())
    leaf = x509.load_pem_x509_certificate(cert.pem.encode())
    builder = ocsp.OCSPRequestBuilder()
    if serial is None:
        builder = builder.add_certificate(leaf, issuer, hashes.SHA1())  # noqa: S303
    else:
        probe = ocsp.OCSPRequestBuilder().add_certificate(leaf, issuer, hashes.SHA1()).build()  # noqa: S303
        builder = builder.add_certificate_by_hash(
            probe.issuer_name_hash,
            probe.issuer_key_hash,
            serial,
            hashes.SHA1(),  # noqa: S303
        )
    if nonce:
        builder = builder.add_extension(x509.OCSPNonce(nonce), critical=False)
    return builder.build().public_bytes(serialization.Encoding.DER)


def post(client, der: bytes, slug: str = "test-smime"):
    response = client.post(f"/ocsp/{slug}", data=der, content_type=OCSP_REQUEST)
    assert response.status_code == 200 and response["Content-Type"] == "application/ocsp-response"
    return response


def status(response) -> ocsp.OCSPResponse:
    return ocsp.load_der_ocsp_response(response.content)


def test_good_revoked_and_unknown_over_post(client, issue, ca):
    good, revoked = issue("good@test.com"), issue("bad@test.com")
    lifecycle.revoke([revoked], RevocationReason.KEY_COMPROMISE, by="test")
    revoked.refresh_from_db()
    issuer_pem = ca[1].certificate_pem
    assert status(post(client, ocsp_request(good, issuer_pem))).certificate_status == ocsp.OCSPCertStatus.GOOD
    answer = status(post(client, ocsp_request(revoked, issuer_pem)))
    assert answer.certificate_status == ocsp.OCSPCertStatus.REVOKED
    assert answer.revocation_reason == x509.ReasonFlags.key_compromise
    assert answer.revocation_time_utc == revoked.revoked_at.replace(microsecond=0)
    unknown = status(post(client, ocsp_request(good, issuer_pem, serial=0x1234567890ABCDEF)))
    assert unknown.certificate_status == ocsp.OCSPCertStatus.UNKNOWN


def test_get_request_with_url_encoded_base64(client, issue, ca):
    cert = issue()
    der = ocsp_request(cert, ca[1].certificate_pem)
    for encoded in (quote(base64.b64encode(der).decode(), safe=""), base64.b64encode(der).decode()):
        response = client.get(f"/ocsp/test-smime/{encoded}")
        assert response.status_code == 200
        assert status(response).certificate_status == ocsp.OCSPCertStatus.GOOD


def test_get_response_is_cacheable_until_next_update_per_rfc_5019(client, issue, ca):
    der = ocsp_request(issue(), ca[1].certificate_pem)
    response = client.get("/ocsp/test-smime/" + quote(base64.b64encode(der).decode(), safe=""))
    answer = status(response)
    max_age = int(response["Cache-Control"].split("max-age=")[1].split(",")[0])
    remaining = (answer.next_update_utc - timezone.now()).total_seconds()
    assert remaining - 5 <= max_age <= remaining
    assert "public" in response["Cache-Control"] and "no-transform" in response["Cache-Control"]
    assert response["ETag"] and response["Last-Modified"] and response["Expires"]


def test_response_with_a_nonce_is_not_cacheable_and_echoes_it(client, issue, ca):
    response = post(client, ocsp_request(issue(), ca[1].certificate_pem, nonce=b"x" * 16))
    assert response["Cache-Control"] == "no-store"
    assert status(response).extensions.get_extension_for_class(x509.OCSPNonce).value.nonce == b"x" * 16


@pytest.mark.parametrize("reason", RevocationReason.values)
def test_ocsp_and_crl_state_the_same_time_and_reason(client, issue, ca, reason):
    cert = issue()
    lifecycle.revoke([cert], reason, by="test")
    answer = status(post(client, ocsp_request(cert, ca[1].certificate_pem)))
    crl = x509.load_der_x509_crl(client.get("/crl/test-smime.crl").content)
    entry = crl.get_revoked_certificate_by_serial_number(int(cert.serial, 16))
    assert answer.revocation_time_utc == entry.revocation_date_utc
    try:
        crl_reason = entry.extensions.get_extension_for_class(x509.CRLReason).value.reason
    except x509.ExtensionNotFound:
        crl_reason = None
    assert answer.revocation_reason == crl_reason
    assert (crl_reason is None) == (reason == "unspecified")


def test_ocsp_and_crl_agree_on_every_certificate_at_every_step(client, issue, ca):
    certs = [issue(f"s{i}@test.com") for i in range(4)]
    for step in range(len(certs) + 1):
        if step:
            lifecycle.revoke([certs[step - 1]], RevocationReason.SUPERSEDED, by="test")
        crl = x509.load_der_x509_crl(client.get("/crl/test-smime.crl").content)
        for cert in certs:
            on_crl = crl.get_revoked_certificate_by_serial_number(int(cert.serial, 16)) is not None
            answer = status(post(client, ocsp_request(cert, ca[1].certificate_pem)))
            assert on_crl == (answer.certificate_status == ocsp.OCSPCertStatus.REVOKED)


@pytest.mark.parametrize("body", [b"", b"junk", b"\x30\x80\x00\x00", b"\x30" * 100])
def test_malformed_post_gets_malformed_request_not_500(client, ca, body):
    response = post(client, body)
    assert status(response).response_status == ocsp.OCSPResponseStatus.MALFORMED_REQUEST
    assert response["Cache-Control"] == "no-store"


@pytest.mark.parametrize(
    "path", ["/ocsp/test-smime/!!!", "/ocsp/test-smime/", "/ocsp/test-smime/MAo=", "/ocsp/test-smime"]
)
def test_malformed_get_gets_malformed_request_not_500(client, ca, path):
    response = client.get(path)
    assert response.status_code == 200
    assert status(response).response_status == ocsp.OCSPResponseStatus.MALFORMED_REQUEST


def test_oversized_post_is_refused_as_malformed(client, ca):
    response = post(client, b"\x30" * (pki.ocsp.MAX_OCSP_REQUEST_SIZE + 1))
    assert status(response).response_status == ocsp.OCSPResponseStatus.MALFORMED_REQUEST


@pytest.mark.parametrize("length", ["１２", "²", "-1", " 12", "1e3"])
def test_a_content_length_that_is_no_number_is_refused_as_malformed_unread(db, ca, length):
    """`int` read "１２" as 12 and " 12" as 12: the body would have been read at a length never sent."""
    from autoenroll.server.certificates.views import ocsp_exchange

    def unread() -> bytes:
        raise AssertionError("the body was read")

    response = ocsp_exchange("POST", "test-smime", None, length, unread)
    assert status(response).response_status == ocsp.OCSPResponseStatus.MALFORMED_REQUEST


def test_request_to_the_wrong_ca_or_an_unknown_one_is_unauthorized(client, issue, ca):
    der = ocsp_request(issue(), ca[1].certificate_pem)
    assert status(post(client, der, "test-root")).response_status == ocsp.OCSPResponseStatus.UNAUTHORIZED
    assert status(post(client, der, "nope")).response_status == ocsp.OCSPResponseStatus.UNAUTHORIZED


def test_root_responder_answers_for_the_issuing_ca_certificate(client, ca):
    root, issuing = ca
    issuing_cert = x509.load_pem_x509_certificate(issuing.certificate_pem.encode())
    root_cert = x509.load_pem_x509_certificate(root.certificate_pem.encode())
    der = (
        ocsp.OCSPRequestBuilder()
        .add_certificate(issuing_cert, root_cert, hashes.SHA256())
        .build()
        .public_bytes(serialization.Encoding.DER)
    )
    assert status(post(client, der, "test-root")).certificate_status == ocsp.OCSPCertStatus.GOOD


def test_other_methods_are_refused(client, ca):
    assert client.put("/ocsp/test-smime", data=b"", content_type=OCSP_REQUEST).status_code == 405


def test_internal_failure_is_an_internal_error_response_not_500(client, issue, ca, settings):
    der = ocsp_request(issue(), ca[1].certificate_pem)
    publication.clear_responder_cache()
    settings.CONFIG = settings.CONFIG.model_copy(update={"data_dir": settings.CONFIG.data_dir / "missing" / "\0bad"})
    response = post(client, der)
    assert status(response).response_status == ocsp.OCSPResponseStatus.INTERNAL_ERROR


def test_responses_pass_pkilint(client, issue, ca, ocsp_lint):
    good, revoked = issue("g@test.com"), issue("r@test.com")
    lifecycle.revoke([revoked], RevocationReason.AFFILIATION_CHANGED, by="test")
    for der in (
        ocsp_request(good, ca[1].certificate_pem, nonce=b"n" * 32),
        ocsp_request(revoked, ca[1].certificate_pem),
        ocsp_request(good, ca[1].certificate_pem, serial=12345678901234567890),
    ):
        assert ocsp_lint(post(client, der).content) == []


# --- responses signed ahead (issue 17) -------------------------------------------------------------


def _no_signing(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("an OCSP response was signed on the request path")

    monkeypatch.setattr(pki.OCSPSigner, "sign", refuse)


def test_responses_signed_ahead_are_served_as_stored_without_signing(client, issue, ca, monkeypatch):
    good, revoked = issue("g@test.com"), issue("r@test.com")
    lifecycle.revoke([revoked], RevocationReason.KEY_COMPROMISE, by="test")
    assert publication.presign_ocsp() == 2
    assert publication.presign_ocsp() == 0  # nothing is due any more
    _no_signing(monkeypatch)
    for cert, expected in ((good, ocsp.OCSPCertStatus.GOOD), (revoked, ocsp.OCSPCertStatus.REVOKED)):
        stored = bytes(PresignedOCSPResponse.objects.get(certificate=cert).der)
        response = post(client, ocsp_request(cert, ca[1].certificate_pem))
        assert response.content == stored and status(response).certificate_status == expected
        # GET answers carry what an HTTP cache needs (RFC 5019 6.2); a nonce is not echoed when signed ahead.
        get = client.get(f"/ocsp/test-smime/{quote(base64.b64encode(ocsp_request(cert, ca[1].certificate_pem)))}")
        assert get.content == stored and "max-age=" in get["Cache-Control"] and get["ETag"]
        with_nonce = post(client, ocsp_request(cert, ca[1].certificate_pem, nonce=b"n" * 16))
        assert with_nonce.content == stored
        assert not any(isinstance(e.value, x509.OCSPNonce) for e in status(with_nonce).extensions)


def test_a_sha256_cert_id_is_answered_by_signing_on_request(client, issue, ca):
    cert = issue()
    publication.presign_ocsp()
    issuer = x509.load_pem_x509_certificate(ca[1].certificate_pem.encode())
    leaf = x509.load_pem_x509_certificate(cert.pem.encode())
    der = ocsp.OCSPRequestBuilder().add_certificate(leaf, issuer, hashes.SHA256()).build().public_bytes(DER)
    answer = status(post(client, der))
    assert answer.hash_algorithm.name == "sha256" and answer.certificate_status == ocsp.OCSPCertStatus.GOOD


def test_a_revocation_drops_the_answer_signed_ahead_in_its_transaction(client, issue, ca, monkeypatch):
    """No window where OCSP and the CRL disagree: inside the revoking transaction, before it commits, the
    good answer signed ahead is already gone, and what this connection sees says revoked everywhere."""
    cert = issue()
    publication.presign_ocsp()
    request = ocsp_request(cert, ca[1].certificate_pem)
    with transaction.atomic():
        lifecycle.revoke([cert], RevocationReason.KEY_COMPROMISE, by="test")
        assert not PresignedOCSPResponse.objects.filter(certificate=cert).exists()
        assert status(post(client, request)).certificate_status == ocsp.OCSPCertStatus.REVOKED
        crl = x509.load_der_x509_crl(bytes(publication.current_crl(ca[1]).der))
        assert crl.get_revoked_certificate_by_serial_number(int(cert.serial, 16)) is not None
    assert publication.presign_ocsp() == 1
    _no_signing(monkeypatch)
    assert status(post(client, request)).certificate_status == ocsp.OCSPCertStatus.REVOKED


def test_an_answer_signed_ahead_that_states_another_status_is_never_served(client, issue, ca):
    """A refresher that signed "good" just before a revocation committed, and stored it after: the status
    read with the answer decides, and the next round replaces it."""
    cert = issue()
    publication.presign_ocsp()
    good = PresignedOCSPResponse.objects.get(certificate=cert)
    lifecycle.revoke([cert], RevocationReason.SUPERSEDED, by="test")
    good.save()  # stored again behind the revocation's back
    request = ocsp_request(cert, ca[1].certificate_pem)
    assert status(post(client, request)).certificate_status == ocsp.OCSPCertStatus.REVOKED
    assert publication.presign_ocsp() == 1
    assert PresignedOCSPResponse.objects.get(certificate=cert).status == Certificate.Status.REVOKED


def test_an_answer_signed_ahead_is_refreshed_before_its_next_update(client, issue, ca, monkeypatch):
    cert = issue()
    publication.presign_ocsp()
    first = PresignedOCSPResponse.objects.get(certificate=cert)
    lifetime = first.next_update - first.this_update
    # Half its lifetime later (and a little): due again; an hour before nextUpdate it is not served any more.
    later = first.this_update + lifetime / 2 + dt.timedelta(minutes=1)
    monkeypatch.setattr(timezone, "now", lambda: later)
    assert publication.presign_ocsp() >= 1
    second = PresignedOCSPResponse.objects.get(certificate=cert)
    assert second.this_update == later.replace(microsecond=0) and second.next_update > first.next_update
    assert bytes(second.der) != bytes(first.der)
    response = ocsp.load_der_ocsp_response(bytes(second.der))
    assert response.this_update_utc == second.this_update and response.next_update_utc == second.next_update


def test_an_answer_signed_ahead_near_its_next_update_is_signed_anew_on_request(client, issue, ca):
    cert = issue()
    publication.presign_ocsp()
    PresignedOCSPResponse.objects.filter(certificate=cert).update(next_update=timezone.now() + dt.timedelta(minutes=30))
    answer = status(post(client, ocsp_request(cert, ca[1].certificate_pem)))
    assert answer.next_update_utc > timezone.now() + dt.timedelta(hours=2)


def test_answers_signed_ahead_pass_pkilint(client, issue, ca, ocsp_lint):
    issue("g@test.com")
    lifecycle.revoke([issue("r@test.com")], RevocationReason.AFFILIATION_CHANGED, by="test")
    assert publication.presign_ocsp() == 2
    for row in PresignedOCSPResponse.objects.all():
        assert ocsp_lint(bytes(row.der)) == [], row


# --- the delegated responder certificate ----------------------------------------------------------


def test_responder_certificate_is_recorded_and_its_key_encrypted_in_the_data_dir(client, issue, ca, settings):
    response = status(post(client, ocsp_request(issue(), ca[1].certificate_pem)))
    signer_cert = response.certificates[0]
    row = Certificate.objects.get(profile=Certificate.Profile.OCSP_RESPONDER)
    assert row.serial == format(signer_cert.serial_number, "x") and row.ca == ca[1]
    eku = signer_cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.OCSP_SIGNING]
    signer_cert.extensions.get_extension_for_class(x509.OCSPNoCheck)
    key_path = publication.responder_dir(settings.CONFIG, ca[1]) / f"{row.serial}.key"
    assert key_path.read_bytes().startswith(b"-----BEGIN ENCRYPTED PRIVATE KEY-----")
    assert key_path.stat().st_mode & 0o077 == 0


def test_responder_certificate_is_reused_then_renewed_with_a_third_of_its_life_left(client, issue, ca, settings):
    config = settings.CONFIG
    der = ocsp_request(issue(), ca[1].certificate_pem)
    # A responder certificate issued 21 days ago: less than a third of its 30 days left.
    key = pki.generate_private_key("ec-p256")
    backend = authority.backend_for(ca[1], config.ca_passphrase_bytes())
    old = pki.issue_ocsp_responder_certificate(
        backend, key.public_key(), not_before=timezone.now() - dt.timedelta(days=21)
    )
    old_row = authority.record(old, ca[1], Certificate.Profile.OCSP_RESPONDER)
    directory = publication.responder_dir(config, ca[1])
    directory.mkdir(parents=True, exist_ok=True)
    pki.write_encrypted_key(key, directory / f"{old_row.serial}.key", config.ca_passphrase_bytes())

    first = status(post(client, der)).certificates[0]
    assert first.serial_number != old.serial_number
    assert first.not_valid_after_utc - first.not_valid_before_utc <= dt.timedelta(days=30)
    publication.clear_responder_cache()  # a new worker process
    again = status(post(client, der)).certificates[0]
    assert again.serial_number == first.serial_number
    assert Certificate.objects.filter(profile=Certificate.Profile.OCSP_RESPONDER).count() == 2


# --- answers kept per worker (issue 17) -----------------------------------------------------------


def _statements(client, der: bytes) -> tuple[bytes, int]:
    with CaptureQueriesContext(connection) as queries:
        content = post(client, der).content
    return content, len(queries)


def test_the_same_request_again_costs_one_statement_and_no_signature(client, issue, ca, monkeypatch):
    cert, other = issue("kept@test.com"), issue("other@test.com")
    publication.presign_ocsp()
    post(client, ocsp_request(other, ca[1].certificate_pem))  # the worker's first request reads the CA row too
    der = ocsp_request(cert, ca[1].certificate_pem)
    first, statements = _statements(client, der)
    assert statements == 2  # the CA's revocation count, then the certificate's status with its answer
    _no_signing(monkeypatch)
    again, statements = _statements(client, der)
    assert again == first and statements == 1
    assert status(post(client, der)).certificate_status == ocsp.OCSPCertStatus.GOOD


def test_a_revocation_is_never_hidden_by_a_kept_answer(client, issue, ca):
    """The kept "good" is tied to the CA's revocation count, which the revocation bumps when it commits:
    the next request reads the records again, whichever server revoked."""
    cert, other = issue("kept@test.com"), issue("other@test.com")
    publication.presign_ocsp()
    der, other_der = ocsp_request(cert, ca[1].certificate_pem), ocsp_request(other, ca[1].certificate_pem)
    for request in (der, other_der, der):
        assert status(post(client, request)).certificate_status == ocsp.OCSPCertStatus.GOOD
    lifecycle.revoke([cert], RevocationReason.KEY_COMPROMISE, by="test")
    assert status(post(client, der)).certificate_status == ocsp.OCSPCertStatus.REVOKED
    # Every kept answer of the CA is dropped, not only the revoked certificate's: the other is read again.
    content, statements = _statements(client, other_der)
    assert statements == 2 and status_of_bytes(content) == ocsp.OCSPCertStatus.GOOD
    assert _statements(client, other_der)[1] == 1


def status_of_bytes(content: bytes) -> ocsp.OCSPCertStatus:
    return ocsp.load_der_ocsp_response(content).certificate_status


def test_a_kept_answer_is_read_again_after_five_minutes(client, issue, ca, monkeypatch):
    der = ocsp_request(issue(), ca[1].certificate_pem)
    post(client, der)
    assert _statements(client, der)[1] == 1
    later = time.time() + publication.ANSWER_REUSE.total_seconds() + 1
    monkeypatch.setattr(publication.time, "time", lambda: later)
    assert _statements(client, der)[1] == 2


def test_requests_with_a_nonce_are_not_kept_and_the_count_is_bounded(client, issue, ca, settings):
    cert = issue()
    publication.presign_ocsp()
    for n in range(3):
        post(client, ocsp_request(cert, ca[1].certificate_pem, nonce=b"%d" % n * 16))
    # Nor a request padded with an extension (a client filling the workers' memory).
    padded = ocsp.OCSPRequestBuilder().add_certificate(
        x509.load_pem_x509_certificate(cert.pem.encode()),
        x509.load_pem_x509_certificate(ca[1].certificate_pem.encode()),
        hashes.SHA1(),  # noqa: S303
    )
    oid = x509.ObjectIdentifier("1.3.6.1.4.1.55555.1")
    padding = x509.UnrecognizedExtension(oid, b"\x04\x82\x04\x00" + b"p" * 1024)
    answer = post(client, padded.add_extension(padding, critical=False).build().public_bytes(DER))
    assert status(answer).certificate_status == ocsp.OCSPCertStatus.GOOD
    assert publication._answers == {}
    settings.CONFIG = settings.CONFIG.model_copy(update={"ocsp_answers_kept": 2})
    serials = [int(issue(f"u{n}@test.com").serial, 16) for n in range(3)]
    requests = [ocsp_request(cert, ca[1].certificate_pem, serial=serial) for serial in serials]
    for der in requests:
        post(client, der)
    assert [der for _, der in publication._answers] == requests[1:]  # the oldest went first
    settings.CONFIG = settings.CONFIG.model_copy(update={"ocsp_answers_kept": 0})
    publication._answers.clear()
    assert [_statements(client, requests[0])[1] for _ in range(2)] == [2, 2]
    assert publication._answers == {}


class _Undo(Exception):
    """Raised to roll one example back."""


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    steps=st.lists(
        st.tuples(st.sampled_from(["ask", "ask", "revoke", "presign"]), st.integers(0, 2), st.booleans()),
        max_size=14,
    )
)
def test_any_order_of_questions_revocations_and_signing_ahead_answers_what_the_records_say(client, issue, ca, steps):
    """Whatever the interleaving, over POST and GET, each answer states the row's status at that moment:
    no kept or signed-ahead answer survives a revocation."""
    try:
        with transaction.atomic():
            certs = [issue(f"any{i}@test.com") for i in range(3)]
            requests = [ocsp_request(cert, ca[1].certificate_pem) for cert in certs]
            for step, index, over_get in steps:
                if step == "revoke":
                    lifecycle.revoke([certs[index]], RevocationReason.SUPERSEDED, by="test")
                elif step == "presign":
                    publication.presign_ocsp()
                else:
                    if over_get:
                        response = client.get(f"/ocsp/test-smime/{quote(base64.b64encode(requests[index]))}")
                    else:
                        response = post(client, requests[index])
                    revoked = Certificate.objects.get(pk=certs[index].pk).status == Certificate.Status.REVOKED
                    expected = ocsp.OCSPCertStatus.REVOKED if revoked else ocsp.OCSPCertStatus.GOOD
                    assert status(response).certificate_status == expected, (steps, step, index)
            raise _Undo
    except _Undo:
        pass
    finally:
        # Rolled back, the revocation count repeats, which never happens outside a test.
        publication.clear_responder_cache()
