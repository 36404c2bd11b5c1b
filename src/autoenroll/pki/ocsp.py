"""OCSP (RFC 6960, lightweight profile RFC 5019): the delegated responder and its certificate.

Responses are signed by a *delegated* responder, not by the CA key: the CA key only signs the
responder's short-lived certificate (id-kp-OCSPSigning, id-pkix-ocsp-nocheck) through
:meth:`CABackend.sign`, the project's single certificate signing path. The responder key is an
ordinary key the server keeps next to its data (encrypted, see :mod:`autoenroll.pki.keys`), so an
HSM-held CA key is never needed per OCSP request and :class:`CABackend` needs no OCSP method.

What the status of a serial is comes from the caller (the server's database) through a lookup
function, so this module never decides revocation, it only states it.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final
from urllib.parse import unquote

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.x509 import ocsp
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from .backends import CABackend, SigningError
from .crl import reason_flag
from .keys import PKIError, PrivateKey, PublicKey, key_type_of, signature_hash_for_key
from .profiles import authority_key_identifier, key_usage, new_serial_number, subject_key_identifier, validity_window

__all__ = [
    "DEFAULT_OCSP_RESPONSE_VALIDITY",
    "DEFAULT_RESPONDER_VALIDITY_DAYS",
    "GOOD",
    "MAX_OCSP_REQUEST_SIZE",
    "RESPONDER_RENEWAL_FRACTION",
    "UNKNOWN",
    "CertStatus",
    "MalformedOCSPRequest",
    "OCSPAnswer",
    "OCSPResponder",
    "OCSPSigner",
    "Presigned",
    "decode_get_request",
    "issue_ocsp_responder_certificate",
    "ocsp_responder_builder",
    "responder_needs_renewal",
    "unsuccessful_response",
]

#: A delegated responder certificate lives 30 days; it is renewed with a third of that left.
DEFAULT_RESPONDER_VALIDITY_DAYS: Final = 30
RESPONDER_RENEWAL_FRACTION: Final = 1 / 3
#: thisUpdate..nextUpdate of a response: S/MIME BR 4.9.10 wants between 8 hours and 10 days.
DEFAULT_OCSP_RESPONSE_VALIDITY: Final = dt.timedelta(hours=24)
#: A response signed ahead is served until this long before its nextUpdate (then it is signed on request).
PRESIGNED_MARGIN: Final = dt.timedelta(hours=1)
#: A one-certificate request is ~100 bytes; anything this large is not a request we answer.
MAX_OCSP_REQUEST_SIZE: Final = 16 * 1024
#: RFC 8954: a nonce is 1 to 32 octets; longer ones are answered without a nonce.
_MAX_NONCE: Final = 32
# SHA-1 is what RFC 5019 clients (and openssl) put in a CertID: an identifier, not a signature.
_CERT_ID_HASHES: Final = (
    hashes.SHA1(),  # noqa: S303
    hashes.SHA256(),
    hashes.SHA384(),
    hashes.SHA512(),
)


class MalformedOCSPRequest(PKIError, ValueError):
    """Bytes that are not a single-certificate OCSP request we can parse."""


# --- the delegated responder certificate -------------------------------------------------------


def _responder_subject(issuer: x509.Certificate) -> x509.Name:
    """The issuer's C and O, with CN "<issuer CN> OCSP Responder" (cut to the 64 characters a CN holds)."""
    attributes = [a for a in issuer.subject if a.oid in (NameOID.COUNTRY_NAME, NameOID.ORGANIZATION_NAME)]
    cns = issuer.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    base = str(cns[0].value) if cns else "CA"
    suffix = " OCSP Responder"
    attributes.append(x509.NameAttribute(NameOID.COMMON_NAME, base[: 64 - len(suffix)] + suffix))
    return x509.Name(attributes)


def ocsp_responder_builder(
    issuer: x509.Certificate,
    public_key: PublicKey,
    *,
    validity_days: int = DEFAULT_RESPONDER_VALIDITY_DAYS,
    not_before: dt.datetime | None = None,
) -> x509.CertificateBuilder:
    """Delegated OCSP responder certificate (RFC 6960 4.2.2.2, CABF BR 7.1.2.8).

    EKU id-kp-OCSPSigning only, keyUsage digitalSignature only, id-pkix-ocsp-nocheck (clients
    do not check a responder's own revocation: it is short-lived instead), no AIA, CRL DP,
    SAN or policies.
    """
    key_type_of(public_key)
    start, end = validity_window(validity_days, not_before, issuer)
    return (
        x509.CertificateBuilder()
        .subject_name(_responder_subject(issuer))
        .issuer_name(issuer.subject)
        .public_key(public_key)
        .serial_number(new_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            key_usage(digital_signature=True),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.OCSP_SIGNING]), critical=False)
        .add_extension(x509.OCSPNoCheck(), critical=False)
        .add_extension(subject_key_identifier(public_key), critical=False)
        .add_extension(authority_key_identifier(issuer), critical=False)
    )


def issue_ocsp_responder_certificate(
    ca: CABackend,
    public_key: PublicKey,
    *,
    validity_days: int = DEFAULT_RESPONDER_VALIDITY_DAYS,
    not_before: dt.datetime | None = None,
) -> x509.Certificate:
    """Have ``ca`` sign a delegated responder certificate for ``public_key``."""
    return ca.sign(
        ocsp_responder_builder(ca.certificate, public_key, validity_days=validity_days, not_before=not_before)
    )


def responder_needs_renewal(
    cert: x509.Certificate, now: dt.datetime | None = None, *, fraction: float = RESPONDER_RENEWAL_FRACTION
) -> bool:
    """True once less than ``fraction`` of the responder certificate's lifetime is left."""
    now = now or dt.datetime.now(dt.UTC)
    start, end = cert.not_valid_before_utc, cert.not_valid_after_utc
    return end - now < (end - start) * fraction


def _is_responder_for(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    try:
        eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    except x509.ExtensionNotFound:
        return False
    return ExtendedKeyUsageOID.OCSP_SIGNING in eku and cert.issuer == issuer.subject


class OCSPSigner:
    """The delegated responder: its certificate and private key. Signs responses, nothing else."""

    def __init__(self, certificate: x509.Certificate, key: PrivateKey, issuer: x509.Certificate) -> None:
        if certificate.public_key() != key.public_key():
            raise SigningError("the OCSP responder key does not match its certificate")
        if not _is_responder_for(certificate, issuer):
            raise SigningError(
                f"{certificate.subject.rfc4514_string()} is not an OCSP responder of {issuer.subject.rfc4514_string()}"
            )
        try:
            certificate.verify_directly_issued_by(issuer)
        except (ValueError, TypeError, InvalidSignature):
            raise SigningError("the OCSP responder certificate was not signed by its CA") from None
        self.certificate = certificate
        self.issuer = issuer
        self._key = key
        self._hash = signature_hash_for_key(key)

    def sign(self, builder: ocsp.OCSPResponseBuilder) -> ocsp.OCSPResponse:
        """Sign a fully built response, then check the signature before it can leave the server."""
        response = builder.responder_id(ocsp.OCSPResponderEncoding.HASH, self.certificate).certificates(
            [self.certificate]
        )
        signed = response.sign(self._key, self._hash)
        public = self._key.public_key()
        try:
            if isinstance(public, rsa.RSAPublicKey):
                public.verify(signed.signature, signed.tbs_response_bytes, padding.PKCS1v15(), self._hash)
            else:
                public.verify(signed.signature, signed.tbs_response_bytes, ec.ECDSA(self._hash))
        except InvalidSignature:
            raise SigningError("signed OCSP response does not verify with the responder key") from None
        return signed


# --- answering requests ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Presigned:
    """A response signed ahead (:meth:`OCSPResponder.presign`): SHA-1 CertID, no nonce."""

    der: bytes
    this_update: dt.datetime
    next_update: dt.datetime


@dataclass(frozen=True, slots=True)
class CertStatus:
    """What the CA's records say about one serial number, and a response signed ahead that says the same."""

    status: ocsp.OCSPCertStatus
    revoked_at: dt.datetime | None = None
    reason: str = "unspecified"
    presigned: Presigned | None = None

    @classmethod
    def revoked(cls, revoked_at: dt.datetime, reason: str = "unspecified") -> CertStatus:
        return cls(ocsp.OCSPCertStatus.REVOKED, revoked_at, reason)


GOOD: Final = CertStatus(ocsp.OCSPCertStatus.GOOD)
UNKNOWN: Final = CertStatus(ocsp.OCSPCertStatus.UNKNOWN)


@dataclass(frozen=True, slots=True)
class OCSPAnswer:
    """A DER response and the facts the HTTP layer needs (status for logs, dates for caching)."""

    der: bytes
    response_status: ocsp.OCSPResponseStatus
    serial: int | None = None
    cert_status: ocsp.OCSPCertStatus | None = None
    this_update: dt.datetime | None = None
    next_update: dt.datetime | None = None
    nonce: bool = False
    #: The request asked no nonce: the same request bytes get this answer until the records change.
    reusable: bool = False

    @property
    def successful(self) -> bool:
        return self.response_status == ocsp.OCSPResponseStatus.SUCCESSFUL


def unsuccessful_response(status: ocsp.OCSPResponseStatus) -> OCSPAnswer:
    """An unsigned error response (malformedRequest, internalError, tryLater, unauthorized)."""
    der = ocsp.OCSPResponseBuilder.build_unsuccessful(status).public_bytes(serialization.Encoding.DER)
    return OCSPAnswer(der, status)


def decode_get_request(encoded: str) -> bytes:
    """RFC 6960 A.1: the DER request of a GET URL, from its url-encoded base64 path component."""
    text = unquote(encoded).strip()
    if not text or len(text) > MAX_OCSP_REQUEST_SIZE * 2:
        raise MalformedOCSPRequest("empty or oversized OCSP GET request")
    try:
        return base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise MalformedOCSPRequest("the OCSP GET request is not base64") from None


def _load_request(der: bytes) -> tuple[ocsp.OCSPRequest, bytes | None]:
    if not der or len(der) > MAX_OCSP_REQUEST_SIZE:
        raise MalformedOCSPRequest("empty or oversized OCSP request")
    try:
        request = ocsp.load_der_ocsp_request(der)
        serial = request.serial_number
        request.hash_algorithm  # noqa: B018 -- an unsupported hash raises here, not later
        try:
            nonce = request.extensions.get_extension_for_class(x509.OCSPNonce).value.nonce
        except x509.ExtensionNotFound:
            nonce = None
    except (ValueError, TypeError, UnsupportedAlgorithm, NotImplementedError) as exc:
        # NotImplementedError: several certificates in one request. RFC 5019 2.1.1 allows one,
        # as every mail client and browser sends; OpenSSL users query one -cert at a time.
        raise MalformedOCSPRequest(f"not a single-certificate OCSP request: {exc}") from None
    if serial < 0:
        raise MalformedOCSPRequest("negative serial number")
    return request, nonce


def _public_key_bits(public_key: PublicKey) -> bytes:
    """The subjectPublicKey BIT STRING contents, which the CertID's issuerKeyHash hashes."""
    if isinstance(public_key, ec.EllipticCurvePublicKey):
        return public_key.public_bytes(serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)
    return public_key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.PKCS1)


def _digest(algorithm: hashes.HashAlgorithm, data: bytes) -> bytes:
    h = hashes.Hash(algorithm)
    h.update(data)
    return h.finalize()


class OCSPResponder:
    """Answers OCSP requests about certificates of one issuer, signed by its delegated responder.

    ``lookup(serial)`` returns the :class:`CertStatus` of a serial this issuer signed, or
    :data:`UNKNOWN`. Every failure becomes an unsuccessful OCSP response, never an exception.
    """

    def __init__(
        self,
        signer: OCSPSigner,
        *,
        validity: dt.timedelta = DEFAULT_OCSP_RESPONSE_VALIDITY,
    ) -> None:
        if not dt.timedelta(hours=8) <= validity <= dt.timedelta(days=10):
            raise ValueError("OCSP response validity must be between 8 hours and 10 days (S/MIME BR 4.9.10)")
        self.signer = signer
        self.issuer = signer.issuer
        self.validity = validity
        name = self.issuer.subject.public_bytes()
        key_bits = _public_key_bits(self.issuer.public_key())
        self._cert_ids = {alg.name: (_digest(alg, name), _digest(alg, key_bits)) for alg in _CERT_ID_HASHES}

    def is_for(self, request: ocsp.OCSPRequest) -> bool:
        """Whether the request's CertID names our issuer (by name and key hash)."""
        expected = self._cert_ids.get(request.hash_algorithm.name)
        return expected == (request.issuer_name_hash, request.issuer_key_hash)

    def respond(
        self, request_der: bytes, lookup: Callable[[int], CertStatus], *, now: dt.datetime | None = None
    ) -> OCSPAnswer:
        try:
            request, nonce = _load_request(request_der)
        except MalformedOCSPRequest:
            return unsuccessful_response(ocsp.OCSPResponseStatus.MALFORMED_REQUEST)
        if not self.is_for(request):
            # RFC 5019 2.2.3: not a certificate this responder is authoritative for.
            return unsuccessful_response(ocsp.OCSPResponseStatus.UNAUTHORIZED)
        serial = request.serial_number
        state = lookup(serial)
        now = (now or dt.datetime.now(dt.UTC)).astimezone(dt.UTC).replace(microsecond=0)
        ahead, echo = state.presigned, False
        if ahead is not None and request.hash_algorithm.name == "sha1" and now < ahead.next_update - PRESIGNED_MARGIN:
            signed = ahead  # served as signed ahead, without the request's nonce (RFC 8954 lets a responder)
        else:
            echo = nonce is not None and 1 <= len(nonce) <= _MAX_NONCE
            cert_id = (request.issuer_name_hash, request.issuer_key_hash, request.hash_algorithm)
            signed = self._sign(cert_id, serial, state, now, nonce if echo else None)
        return OCSPAnswer(
            signed.der,
            ocsp.OCSPResponseStatus.SUCCESSFUL,
            serial=serial,
            cert_status=state.status,
            this_update=signed.this_update,
            next_update=signed.next_update,
            nonce=echo,
            reusable=nonce is None,
        )

    def presign(self, serial: int, state: CertStatus, *, now: dt.datetime | None = None) -> Presigned:
        """The response for ``serial`` signed ahead of any request: SHA-1 CertID (what RFC 5019 clients
        send), no nonce, as large CAs serve them (and HTTP caches can keep them)."""
        now = (now or dt.datetime.now(dt.UTC)).astimezone(dt.UTC).replace(microsecond=0)
        sha1 = hashes.SHA1()  # noqa: S303 -- an identifier, not a signature
        return self._sign((*self._cert_ids["sha1"], sha1), serial, state, now, None)

    def _sign(
        self,
        cert_id: tuple[bytes, bytes, hashes.HashAlgorithm],
        serial: int,
        state: CertStatus,
        this_update: dt.datetime,
        nonce: bytes | None,
    ) -> Presigned:
        next_update = min(this_update + self.validity, self.signer.certificate.not_valid_after_utc)
        revoked = state.status == ocsp.OCSPCertStatus.REVOKED
        if revoked and state.revoked_at is None:
            raise ValueError(f"lookup says {serial:x} is revoked without a revocation time")
        name_hash, key_hash, algorithm = cert_id
        builder = ocsp.OCSPResponseBuilder().add_response_by_hash(
            issuer_name_hash=name_hash,
            issuer_key_hash=key_hash,
            serial_number=serial,
            algorithm=algorithm,
            cert_status=state.status,
            this_update=this_update,
            next_update=next_update,
            revocation_time=state.revoked_at.astimezone(dt.UTC).replace(microsecond=0) if revoked else None,
            revocation_reason=reason_flag(state.reason) if revoked else None,
        )
        if nonce is not None:
            builder = builder.add_extension(x509.OCSPNonce(nonce), critical=False)
        response = self.signer.sign(builder)
        return Presigned(response.public_bytes(serialization.Encoding.DER), this_update, next_update)
