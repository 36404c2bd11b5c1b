"""The OCSP responder of the PKI layer: its certificate, its answers, checked by OpenSSL and pkilint."""

from __future__ import annotations

import base64
import datetime as dt
from urllib.parse import quote

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509 import ocsp
from cryptography.x509.oid import ExtendedKeyUsageOID

from autoenroll.pki import (
    MalformedOCSPRequest,
    OCSPResponder,
    OCSPSigner,
    SigningError,
    decode_get_request,
    generate_private_key,
    issue_ocsp_responder_certificate,
    responder_needs_renewal,
)
from autoenroll.pki.ocsp import GOOD, UNKNOWN, CertStatus
from checks import lint_ocsp

NOW = dt.datetime.now(dt.UTC).replace(microsecond=0)
REVOKED_AT = NOW - dt.timedelta(hours=2)


def lint_ocsp_responder_certificate(cert: x509.Certificate) -> list[str]:
    """pkilint's CA/B Forum OCSP responder certificate profile (BR 7.1.2.8), the strictest one published."""
    from pkilint import finding_filter, loader
    from pkilint.cabf import serverauth
    from pkilint.cabf.serverauth import serverauth_constants
    from pkilint.pkix import certificate
    from pkilint.validation import ValidationFindingSeverity

    from checks import format_findings

    kind = serverauth_constants.CertificateType.OCSP_RESPONDER
    doc = loader.RFC5280CertificateDocumentLoader().load_der_document(
        cert.public_bytes(serialization.Encoding.DER), "responder"
    )
    validator = certificate.create_pkix_certificate_validator_container(
        serverauth.create_decoding_validators(), serverauth.create_validators(kind)
    )
    results, _ = finding_filter.filter_results(
        serverauth.create_serverauth_finding_filters(kind), validator.validate(doc.root)
    )
    return format_findings(results, ValidationFindingSeverity.WARNING)


@pytest.fixture(scope="module")
def responder_parts(chain):
    key = generate_private_key("ec-p256")
    cert = issue_ocsp_responder_certificate(chain.issuing_backend, key.public_key())
    return cert, key


@pytest.fixture
def responder(chain, responder_parts) -> OCSPResponder:
    cert, key = responder_parts
    return OCSPResponder(OCSPSigner(cert, key, chain.hierarchy.issuing_certificate))


def request_for(chain, serial=None, *, algorithm=None, nonce: bytes | None = None) -> bytes:
    issuer = chain.hierarchy.issuing_certificate
    builder = ocsp.OCSPRequestBuilder()
    if serial is None:
        builder = builder.add_certificate(chain.leaf, issuer, algorithm or hashes.SHA1())  # noqa: S303
    else:
        probe = ocsp.OCSPRequestBuilder().add_certificate(chain.leaf, issuer, hashes.SHA1()).build()  # noqa: S303
        builder = builder.add_certificate_by_hash(probe.issuer_name_hash, probe.issuer_key_hash, serial, hashes.SHA1())  # noqa: S303
    if nonce is not None:
        builder = builder.add_extension(x509.OCSPNonce(nonce), critical=False)
    return builder.build().public_bytes(serialization.Encoding.DER)


def lookup_from(table: dict[int, CertStatus]):
    return lambda serial: table.get(serial, UNKNOWN)


# --- the responder certificate ------------------------------------------------------------------


def test_responder_certificate_is_a_delegated_ocsp_signer_with_nocheck(chain, responder_parts):
    cert, _ = responder_parts
    ext = cert.extensions
    assert list(ext.get_extension_for_class(x509.ExtendedKeyUsage).value) == [ExtendedKeyUsageOID.OCSP_SIGNING]
    assert ext.get_extension_for_class(x509.OCSPNoCheck).critical is False
    ku = ext.get_extension_for_class(x509.KeyUsage)
    assert ku.critical and ku.value.digital_signature and not ku.value.key_cert_sign
    for absent in (x509.AuthorityInformationAccess, x509.CRLDistributionPoints, x509.SubjectAlternativeName):
        with pytest.raises(x509.ExtensionNotFound):
            ext.get_extension_for_class(absent)
    assert cert.not_valid_after_utc - cert.not_valid_before_utc <= dt.timedelta(days=30)
    cert.verify_directly_issued_by(chain.hierarchy.issuing_certificate)


def test_responder_certificate_passes_pkilint_ocsp_responder_profile(responder_parts):
    assert lint_ocsp_responder_certificate(responder_parts[0]) == []


def test_responder_certificate_is_renewed_with_a_third_of_its_life_left(responder_parts):
    cert, _ = responder_parts
    start = cert.not_valid_before_utc
    assert not responder_needs_renewal(cert, start + dt.timedelta(days=19))
    assert responder_needs_renewal(cert, start + dt.timedelta(days=21))


def test_signer_refuses_a_key_or_certificate_that_is_not_the_responders(chain, responder_parts):
    cert, key = responder_parts
    issuer = chain.hierarchy.issuing_certificate
    with pytest.raises(SigningError, match="does not match"):
        OCSPSigner(cert, generate_private_key("ec-p256"), issuer)
    with pytest.raises(SigningError, match="not an OCSP responder"):
        OCSPSigner(chain.leaf, chain.leaf_key, issuer)
    with pytest.raises(SigningError, match="not an OCSP responder"):
        OCSPSigner(cert, key, chain.hierarchy.root_certificate)


# --- answers -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("state", "expected"),
    [
        (GOOD, ocsp.OCSPCertStatus.GOOD),
        (CertStatus.revoked(REVOKED_AT, "key_compromise"), ocsp.OCSPCertStatus.REVOKED),
        (UNKNOWN, ocsp.OCSPCertStatus.UNKNOWN),
    ],
)
def test_responder_states_good_revoked_and_unknown(chain, responder, state, expected):
    answer = responder.respond(request_for(chain), lookup_from({chain.leaf.serial_number: state}))
    response = ocsp.load_der_ocsp_response(answer.der)
    assert response.response_status == ocsp.OCSPResponseStatus.SUCCESSFUL
    assert response.certificate_status == expected == answer.cert_status
    assert response.serial_number == chain.leaf.serial_number
    if expected == ocsp.OCSPCertStatus.REVOKED:
        assert response.revocation_time_utc == REVOKED_AT
        assert response.revocation_reason == x509.ReasonFlags.key_compromise
    assert response.certificates == [responder.signer.certificate]
    assert response.responder_name is None and len(response.responder_key_hash) == 20  # byKey, SHA-1 (RFC 6960)
    assert dt.timedelta(hours=8) <= response.next_update_utc - response.this_update_utc <= dt.timedelta(days=10)
    assert lint_ocsp(answer.der) == []


def test_revoked_for_an_unspecified_reason_has_no_reason_in_the_response(chain, responder):
    state = CertStatus.revoked(REVOKED_AT)
    answer = responder.respond(request_for(chain), lookup_from({chain.leaf.serial_number: state}))
    response = ocsp.load_der_ocsp_response(answer.der)
    assert response.certificate_status == ocsp.OCSPCertStatus.REVOKED and response.revocation_reason is None


def test_response_verifies_with_openssl_against_the_ca_chain(chain, responder, tmp_path, openssl):
    req = tmp_path / "req.der"
    req.write_bytes(request_for(chain, nonce=b"0123456789abcdef"))
    resp = tmp_path / "resp.der"
    resp.write_bytes(
        responder.respond(
            req.read_bytes(), lookup_from({chain.leaf.serial_number: CertStatus.revoked(REVOKED_AT, "superseded")})
        ).der
    )
    h = chain.hierarchy
    result = openssl(
        "ocsp",
        "-no_nonce",  # with -cert, openssl builds its own request (and nonce) to match the response against
        "-respin",
        resp,
        "-issuer",
        h.issuing_cert_path,
        "-cert",
        chain.leaf_cert_path,
        "-CAfile",
        h.root_cert_path,
        "-verify_other",
        h.issuing_cert_path,
    )
    out = result.stdout + result.stderr
    assert result.returncode == 0, out
    assert "Response verify OK" in out and ": revoked" in out and "superseded" in out


def test_nonce_is_echoed_and_an_oversized_one_is_dropped(chain, responder):
    lookup = lookup_from({})
    answer = responder.respond(request_for(chain, nonce=b"n" * 16), lookup)
    nonce = ocsp.load_der_ocsp_response(answer.der).extensions.get_extension_for_class(x509.OCSPNonce)
    assert nonce.value.nonce == b"n" * 16 and answer.nonce
    answer = responder.respond(request_for(chain, nonce=b"n" * 33), lookup)
    with pytest.raises(x509.ExtensionNotFound):
        ocsp.load_der_ocsp_response(answer.der).extensions.get_extension_for_class(x509.OCSPNonce)
    assert not answer.nonce


@pytest.mark.parametrize("algorithm", [hashes.SHA256(), hashes.SHA384(), hashes.SHA512()])
def test_certid_hashed_with_sha2_is_recognised_and_echoed(chain, responder, algorithm):
    answer = responder.respond(request_for(chain, algorithm=algorithm), lookup_from({chain.leaf.serial_number: GOOD}))
    response = ocsp.load_der_ocsp_response(answer.der)
    assert response.certificate_status == ocsp.OCSPCertStatus.GOOD
    assert response.hash_algorithm.name == algorithm.name


@pytest.mark.parametrize(
    "payload", [b"", b"\x30\x03\x02\x01\x01", b"garbage" * 10, b"\x30" + b"\xff" * 8, b"\x00" * 20_000]
)
def test_malformed_request_gets_malformed_request_status(responder, payload):
    answer = responder.respond(payload, lookup_from({}))
    assert ocsp.load_der_ocsp_response(answer.der).response_status == ocsp.OCSPResponseStatus.MALFORMED_REQUEST


def test_request_for_two_certificates_is_refused_as_malformed(chain, responder, tmp_path, openssl):
    # RFC 5019 2.1.1: one certificate per request; OpenSSL builds a two-certificate one for us.
    req = tmp_path / "two.der"
    h = chain.hierarchy
    made = openssl(
        "ocsp",
        "-issuer",
        h.issuing_cert_path,
        "-cert",
        chain.leaf_cert_path,
        "-cert",
        chain.leaf_cert_path,
        "-no_nonce",
        "-reqout",
        req,
    )
    assert made.returncode == 0, made.stderr
    answer = responder.respond(req.read_bytes(), lookup_from({}))
    assert ocsp.load_der_ocsp_response(answer.der).response_status == ocsp.OCSPResponseStatus.MALFORMED_REQUEST


def test_request_about_another_issuer_is_unauthorized(chain, responder, tmp_path, new_hierarchy):
    other = new_hierarchy(tmp_path / "other", "ec-p256")
    builder = ocsp.OCSPRequestBuilder().add_certificate(
        chain.leaf,
        other.issuing_certificate,
        hashes.SHA1(),  # noqa: S303
    )
    answer = responder.respond(builder.build().public_bytes(serialization.Encoding.DER), lookup_from({}))
    assert answer.response_status == ocsp.OCSPResponseStatus.UNAUTHORIZED
    assert ocsp.load_der_ocsp_response(answer.der).response_status == ocsp.OCSPResponseStatus.UNAUTHORIZED


def test_get_request_path_decodes_url_encoded_base64(chain):
    der = request_for(chain)
    b64 = base64.b64encode(der).decode()
    assert decode_get_request(quote(b64, safe="")) == der
    assert decode_get_request(b64) == der
    assert decode_get_request(b64.rstrip("=")) == der
    with pytest.raises(MalformedOCSPRequest):
        decode_get_request("not base64!")
    with pytest.raises(MalformedOCSPRequest):
        decode_get_request("")
