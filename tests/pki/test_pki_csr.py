"""Only a CSR with a valid self-signature and a supported key yields a public key."""

from __future__ import annotations

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from autoenroll.pki import InvalidCSR, generate_private_key, public_key_from_csr


def _csr(key) -> x509.CertificateSigningRequest:
    return (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "whatever")]))
        .sign(key, hashes.SHA256())
    )


@pytest.mark.parametrize("key_type", ["ec-p256", "rsa-2048"])
def test_valid_csr_in_pem_or_der_yields_its_public_key(key_type):
    key = generate_private_key(key_type)
    csr = _csr(key)
    for encoding in (serialization.Encoding.PEM, serialization.Encoding.DER):
        assert public_key_from_csr(csr.public_bytes(encoding)) == key.public_key()


def test_csr_with_a_broken_signature_is_refused():
    der = bytearray(_csr(generate_private_key("rsa-2048")).public_bytes(serialization.Encoding.DER))
    der[-1] ^= 0x01
    with pytest.raises(InvalidCSR, match="signature"):
        public_key_from_csr(bytes(der))


@pytest.mark.parametrize(
    "make_key", [lambda: rsa.generate_private_key(65537, 1024), lambda: ec.generate_private_key(ec.SECP521R1())]
)
def test_csr_with_an_unsupported_key_is_refused(make_key):
    with pytest.raises(InvalidCSR, match="unsupported"):
        public_key_from_csr(_csr(make_key()).public_bytes(serialization.Encoding.PEM))


def test_csr_key_type_can_be_restricted():
    pem = _csr(generate_private_key("rsa-2048")).public_bytes(serialization.Encoding.PEM)
    with pytest.raises(InvalidCSR, match="not allowed"):
        public_key_from_csr(pem, allowed_key_types=("ec-p256",))


@pytest.mark.parametrize(
    "data", [b"", b"garbage", b"-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END", b"\x30" * 70000]
)
def test_garbage_is_refused_as_invalid_csr(data):
    with pytest.raises(InvalidCSR):
        public_key_from_csr(data)
