"""Checking a CSR before its public key may be certified.

Only the public key (and proof of possession of its private key) is taken from a
CSR; the identity always comes from the directory, never from the request.
"""

from __future__ import annotations

from cryptography import x509
from cryptography.x509.oid import NameOID

from .keys import PKIError, PrivateKey, PublicKey, UnsupportedKeyType, key_type_of, signature_hash_for_key

__all__ = ["InvalidCSR", "checked_csr", "mailbox_csr", "public_key_from_csr"]

# A CSR is a few KiB at most; refuse to parse anything absurd.
_MAX_CSR_BYTES = 64 * 1024


class InvalidCSR(PKIError, ValueError):
    """The CSR is malformed, not self-signed by its key, or carries an unsupported key."""


def public_key_from_csr(data: bytes, *, allowed_key_types: tuple[str, ...] | None = None) -> PublicKey:
    """Return the CSR's public key once its signature proves possession of the private key."""
    return checked_csr(data, allowed_key_types=allowed_key_types).public_key()  # type: ignore[return-value]


def checked_csr(data: bytes, *, allowed_key_types: tuple[str, ...] | None = None) -> x509.CertificateSigningRequest:
    """The CSR (PEM or DER), once its signature proves possession of the private key of a supported
    key type: parsed once for the caller that also reads its subject and extensions."""
    if len(data) > _MAX_CSR_BYTES:
        raise InvalidCSR("CSR too large")
    try:
        if b"-----BEGIN" in data:
            csr = x509.load_pem_x509_csr(data)
        else:
            csr = x509.load_der_x509_csr(data)
    except (ValueError, x509.InvalidVersion) as exc:  # InvalidVersion is no ValueError (found by Hypothesis)
        raise InvalidCSR(f"cannot parse CSR: {exc}") from None
    try:
        valid = csr.is_signature_valid
    except Exception as exc:  # unsupported signature algorithm, broken key...
        raise InvalidCSR(f"cannot check CSR signature: {exc}") from None
    if not valid:
        raise InvalidCSR("CSR signature is invalid (no proof of possession of the private key)")
    public_key = csr.public_key()
    try:
        key_type = key_type_of(public_key)  # type: ignore[arg-type]
    except UnsupportedKeyType as exc:
        raise InvalidCSR(str(exc)) from None
    if allowed_key_types is not None and key_type not in allowed_key_types:
        raise InvalidCSR(f"key type {key_type} is not allowed here; allowed: {', '.join(allowed_key_types)}")
    return csr


def mailbox_csr(key: PrivateKey, cn: str, mail: str) -> x509.CertificateSigningRequest:
    """The request a client sends for an S/MIME certificate: CN and the mailbox, signed by ``key``.

    The server certifies only the key (the identity comes from the directory); CN and mail are there so
    that a person or a CA reading the request knows whom it is for.
    """
    return (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)]))
        .add_extension(x509.SubjectAlternativeName([x509.RFC822Name(mail)]), critical=False)
        .sign(key, signature_hash_for_key(key))
    )
