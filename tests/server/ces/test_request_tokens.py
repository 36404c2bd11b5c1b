"""Unwrapping MS-WSTEP request tokens without a server: PKCS#10, PKCS#7 and CMC, their signatures, the template
extensions, and hostile bytes, which must end in a clean ValueError (TokenError), never another exception."""

from __future__ import annotations

import datetime as dt
import random

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import pkcs7
from pyasn1.codec.ber import encoder as ber_encoder
from pyasn1.codec.der import decoder, encoder
from pyasn1.type import univ
from pyasn1_alt_modules import rfc5280, rfc5652, rfc6402

from autoenroll.server.ces import templates, wstep

ECDSA_SHA256 = univ.ObjectIdentifier("1.2.840.10045.4.3.2")
SHA256 = univ.ObjectIdentifier("2.16.840.1.101.3.4.2.1")
SHA1 = univ.ObjectIdentifier("1.3.14.3.2.26")


@pytest.fixture(scope="module")
def key():
    return ec.generate_private_key(ec.SECP256R1())


@pytest.fixture(scope="module")
def csr(key) -> bytes:
    return (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([]))
        .sign(key, hashes.SHA256())
        .public_bytes(serialization.Encoding.DER)
    )


@pytest.fixture(scope="module")
def cert(key) -> x509.Certificate:
    return (
        x509.CertificateBuilder()
        .subject_name(x509.Name([]))
        .issuer_name(x509.Name([]))
        .public_key(key.public_key())
        .serial_number(4711)
        .not_valid_before(dt.datetime(2024, 1, 1))
        .not_valid_after(dt.datetime(2099, 1, 1))
        .sign(key, hashes.SHA256())
    )


def cmc(csr: bytes) -> bytes:
    """PKIData with one TaggedCertificationRequest, as certenroll sends it for CMC."""
    data = rfc6402.PKIData()
    request = rfc6402.TaggedRequest()
    request["tcr"]["bodyPartID"] = 1
    request["tcr"]["certificationRequest"] = decoder.decode(csr, asn1Spec=rfc6402.CertificationRequest())[0]
    data["reqSequence"].append(request)
    for name in ("controlSequence", "cmsSequence", "otherMsgSequence"):
        data[name].clear()
    return encoder.encode(data)


def signed(
    content: bytes,
    content_type: univ.ObjectIdentifier,
    key,
    *,
    cert: x509.Certificate | None = None,
    digest_oid: univ.ObjectIdentifier = SHA256,
    message_digest: bytes | None = None,
    der_order: bool = True,
    tamper: bool = False,
    include_cert: bool = True,
    **encode_options,
) -> bytes:
    """CMS SignedData with signed attributes, BER-encoded by pyasn1 (so the attribute order is ours)."""
    if message_digest is None:
        h = hashes.Hash(hashes.SHA256())
        h.update(content)
        message_digest = h.finalize()
    attributes = [
        (rfc5652.id_contentType, encoder.encode(content_type)),
        (rfc5652.id_messageDigest, encoder.encode(univ.OctetString(message_digest))),
    ]
    attrs = rfc5652.SignedAttributes()
    for oid, value in attributes if der_order else reversed(attributes):
        attr = rfc5652.Attribute()
        attr["attrType"] = oid
        attr["attrValues"].append(univ.Any(value))
        attrs.append(attr)
    signature = key.sign(ber_encoder.encode(attrs), ec.ECDSA(hashes.SHA256()))
    if tamper:
        signature = signature[:-1] + bytes([signature[-1] ^ 1])
    info = rfc5652.SignerInfo()
    if cert is None:
        info["version"] = 3
        info["sid"]["subjectKeyIdentifier"] = b"\x01" * 20  # names no certificate: the CSR's key signs
    else:
        info["version"] = 1
        issuer = decoder.decode(cert.issuer.public_bytes(), asn1Spec=rfc5280.Name())[0]
        info["sid"]["issuerAndSerialNumber"]["issuer"] = issuer
        info["sid"]["issuerAndSerialNumber"]["serialNumber"] = cert.serial_number
    info["digestAlgorithm"]["algorithm"] = digest_oid
    info["signedAttrs"].extend(list(attrs))
    info["signatureAlgorithm"]["algorithm"] = ECDSA_SHA256
    info["signature"] = signature
    data = rfc5652.SignedData()
    data["version"] = 3
    data["digestAlgorithms"].append(info["digestAlgorithm"])
    data["encapContentInfo"]["eContentType"] = content_type
    data["encapContentInfo"]["eContent"] = content
    if cert is not None and include_cert:
        choice = rfc5652.CertificateChoices()
        choice["certificate"] = decoder.decode(
            cert.public_bytes(serialization.Encoding.DER), asn1Spec=rfc5280.Certificate()
        )[0]
        data["certificates"].append(choice)
    data["signerInfos"].append(info)
    outer = rfc5652.ContentInfo()
    outer["contentType"] = rfc5652.id_signedData
    outer["content"] = univ.Any(ber_encoder.encode(data, **encode_options))
    return ber_encoder.encode(outer)


# --- well-formed tokens ---------------------------------------------------------------------------------------


def test_bare_pkcs10_passes_through(csr):
    request = wstep.unwrap(csr)
    assert (request.kind, request.csr_der, request.signer) == ("pkcs10", csr, None)


def test_pkcs7_renewal_names_its_signer(key, csr, cert):
    token = (
        pkcs7.PKCS7SignatureBuilder()
        .set_data(csr)
        .add_signer(cert, key, hashes.SHA256())
        .sign(serialization.Encoding.DER, [pkcs7.PKCS7Options.Binary])
    )
    request = wstep.unwrap(token)
    assert (request.kind, request.csr_der, request.signer) == ("pkcs7", csr, cert)


def test_cmc_signed_with_the_requested_key_is_unwrapped(key, csr):
    request = wstep.unwrap(signed(cmc(csr), rfc6402.id_cct_PKIData, key))
    assert (request.kind, request.csr_der, request.signer) == ("cmc", csr, None)


def test_signature_covers_the_signed_attributes_as_received_even_in_non_der_order(key, csr):
    request = wstep.unwrap(signed(cmc(csr), rfc6402.id_cct_PKIData, key, der_order=False))
    assert request.kind == "cmc"


def test_constructed_econtent_octet_string_is_accepted(key, csr):
    token = signed(csr, rfc5652.id_data, key, maxChunkSize=50)  # BER: eContent in 50-byte segments
    assert token.count(b"\x24\x80") + token.count(b"\x24\x81") + token.count(b"\x24\x82") > 0
    request = wstep.unwrap(token)
    assert (request.kind, request.csr_der) == ("pkcs7", csr)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"tamper": True}, "signature is invalid"),
        ({"message_digest": b"\x00" * 32}, "messageDigest"),
        ({"digest_oid": SHA1}, "is not accepted"),
    ],
    ids=["bad-signature", "bad-digest", "sha1"],
)
def test_bad_signatures_are_refused(key, csr, options, message):
    with pytest.raises(wstep.TokenError, match=message):
        wstep.unwrap(signed(cmc(csr), rfc6402.id_cct_PKIData, key, **options))


def test_renewal_signed_by_a_certificate_not_in_the_request_is_refused(key, csr, cert):
    with pytest.raises(wstep.TokenError, match="not in the request"):
        wstep.unwrap(signed(csr, rfc5652.id_data, key, cert=cert, include_cert=False))


def request_with(key, *extensions: tuple[str, bytes]) -> bytes:
    builder = x509.CertificateSigningRequestBuilder().subject_name(x509.Name([]))
    for oid, value in extensions:
        builder = builder.add_extension(x509.UnrecognizedExtension(x509.ObjectIdentifier(oid), value), critical=False)
    return builder.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.DER)


def test_template_is_read_by_name_and_by_oid(key):
    info = {oid: value for oid, _, value in templates.USER.extensions()}
    by_oid = wstep.unwrap(request_with(key, (templates.OID_TEMPLATE_INFO, info[templates.OID_TEMPLATE_INFO])))
    assert wstep.requested_template(by_oid.csr) == (None, templates.USER.oid)
    for value in (b"\x1e\x08" + "User".encode("utf-16-be"), b"\x0c\x04User"):
        by_name = wstep.unwrap(request_with(key, (templates.OID_TEMPLATE_NAME, value)))
        assert wstep.requested_template(by_name.csr) == ("User", None)


# --- hostile tokens -------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def good(key, csr, cert) -> bytes:
    return signed(csr, rfc5652.id_data, key, cert=cert)


def nested(depth: int, inner: bytes = b"\x05\x00") -> bytes:
    for _ in range(depth):
        inner = encoder.encode(univ.Any(inner, tagSet=univ.Sequence.tagSet))
    return inner


HOSTILE = {
    "empty": b"",
    "one-byte": b"\x30",
    "huge-length": b"\x30\x84\xff\xff\xff\xff\x06\x09\x2a\x86\x48\x86\xf7\x0d\x01\x07\x02",
    "length-of-length": b"\x30\x89" + b"\xff" * 9,
    "indefinite": b"\x30\x80\x06\x09\x2a\x86\x48\x86\xf7\x0d\x01\x07\x02\x00\x00",
    "deep-indefinite": b"\x30\x80" * 5000,
    "deep-definite": nested(3000),
    "set-not-sequence": b"\x31\x00",
    "enveloped-data": encoder.encode(
        rfc5652.ContentInfo().setComponents(rfc5652.id_envelopedData, univ.Any(b"\x30\x00"))
    ),
    "signed-data-garbage": encoder.encode(
        rfc5652.ContentInfo().setComponents(rfc5652.id_signedData, univ.Any(nested(500)))
    ),
}


@pytest.mark.parametrize("token", HOSTILE.values(), ids=HOSTILE.keys())
def test_hostile_tokens_are_refused_cleanly(token):
    with pytest.raises(ValueError):
        wstep.unwrap(token)


def test_truncated_tokens_are_refused_cleanly(good):
    for cut in range(0, len(good), 5):
        with pytest.raises(ValueError):
            wstep.unwrap(good[:cut])


@pytest.mark.filterwarnings("ignore::cryptography.utils.CryptographyDeprecationWarning")  # corrupted serials
def test_a_length_past_what_python_can_index_is_refused_cleanly():
    """Found by the random corruption below in a CI run: a ContentInfo whose content declares 2**64 - 1 bytes
    made pyasn1 raise OverflowError, which the SOAP endpoint answered as an internal error."""
    signed_data = bytes.fromhex("06092a864886f70d010702")
    token = b"\x30" + bytes([len(signed_data) + 11]) + signed_data + b"\xa0\x88" + b"\xff" * 8
    with pytest.raises(ValueError, match="malformed CMS request"):
        wstep.unwrap(token)


def test_wrong_tags_and_random_corruption_are_refused_cleanly(good):
    rng = random.Random(5652)
    for _ in range(1500):
        token = bytearray(good)
        for _ in range(rng.randint(1, 3)):
            token[rng.randrange(len(token))] = rng.randrange(256)
        try:
            wstep.unwrap(bytes(token))
        except ValueError:
            pass


HOSTILE_EXTENSIONS = {
    "empty": b"",
    "truncated": b"\x1e",
    "odd-bmp": b"\x1e\x03abc",
    "huge-length": b"\x1e\x84\xff\xff\xff\xff",
    "overflowing-length": b"\x1e\x88" + b"\xff" * 8,  # 2**64 - 1: pyasn1's read raised OverflowError
    "deep-indefinite": b"\x30\x80" * 3000,
    "deep-definite": nested(3000),
    "octets": b"\x04\x00",
    "trailing": b"\x0c\x04User\x00",
}


@pytest.mark.parametrize("value", HOSTILE_EXTENSIONS.values(), ids=HOSTILE_EXTENSIONS.keys())
def test_hostile_template_name_extensions_are_ignored(value, key):
    with pytest.raises(ValueError):
        templates.template_name(value)
    request = wstep.unwrap(request_with(key, (templates.OID_TEMPLATE_NAME, value)))
    assert wstep.requested_template(request.csr) == (None, None)


@pytest.mark.parametrize("value", HOSTILE_EXTENSIONS.values(), ids=HOSTILE_EXTENSIONS.keys())
def test_hostile_template_information_extensions_refuse_the_request(value, key):
    with pytest.raises(wstep.TokenError):
        wstep.unwrap(request_with(key, (templates.OID_TEMPLATE_INFO, value)))
