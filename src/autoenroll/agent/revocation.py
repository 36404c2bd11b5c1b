"""Does the CA still vouch for the current certificate? One OCSP request to the URL the certificate
names, at most once a day.

An admin revokes a certificate (a stolen laptop, a key that leaked) and expects the user to hold a new
one after the next logon; the store alone cannot tell, and mail clients would reject the old one. The
answer must be signed by the issuing CA or by a responder it certified for OCSP; anything else counts as
no answer, which never triggers an enrollment by itself.
"""

from __future__ import annotations

import datetime
import http.client
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.x509 import ocsp
from cryptography.x509.oid import AuthorityInformationAccessOID, ExtendedKeyUsageOID

from .client import connect_to, watchdog

if TYPE_CHECKING:
    from .stores import Installed, Store

RETRY_AFTER = 3600  # after a check that got no usable answer
TIMEOUT = 5.0  # the logon waits for this at most


class NoAnswer(Exception):
    """No usable OCSP answer (no URL, network, an unsigned or foreign answer)."""


@dataclass(frozen=True)
class Verdict:
    revoked: bool
    revoked_at: datetime.datetime | None = None
    reason: str | None = None
    unknown: bool = False  # the CA's own responder never heard of it (a server restored from an older backup)


def check_installed(store: Store, installed: Installed) -> Verdict:
    """`check` for a certificate of a store, with the issuer certificate the store keeps beside it."""
    cert = installed.certificate
    issuer = next((c for c in store.chain_for(installed) if c.subject == cert.issuer), None)
    if issuer is None:
        raise NoAnswer(f"{store.name} holds no issuer certificate for {installed.serial}")
    return check(cert, issuer)


def check(cert: x509.Certificate, issuer: x509.Certificate, timeout: float = TIMEOUT) -> Verdict:
    url = _ocsp_url(cert)
    # SHA-1 in the CertID is what RFC 5019 responders are required to understand; it names, not signs.
    request = ocsp.OCSPRequestBuilder().add_certificate(cert, issuer, hashes.SHA1()).build()  # noqa: S303
    data = _post(url, request.public_bytes(serialization.Encoding.DER), timeout)
    try:
        return _verdict(url, ocsp.load_der_ocsp_response(data), cert, issuer)
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:  # not DER, no BasicOCSPResponse, odd algorithms
        raise NoAnswer(f"{url}: an unusable OCSP answer ({exc})") from None


def _verdict(url: str, answer: ocsp.OCSPResponse, cert: x509.Certificate, issuer: x509.Certificate) -> Verdict:
    if answer.response_status != ocsp.OCSPResponseStatus.SUCCESSFUL:
        raise NoAnswer(f"{url}: {answer.response_status.name}")
    _verify(answer, issuer)
    if answer.serial_number != cert.serial_number:
        raise NoAnswer(f"{url}: the answer is about another certificate")
    if answer.certificate_status == ocsp.OCSPCertStatus.REVOKED:
        reason = answer.revocation_reason.name if answer.revocation_reason else None
        return Verdict(True, answer.revocation_time_utc, reason)
    if answer.certificate_status == ocsp.OCSPCertStatus.UNKNOWN:
        return Verdict(False, unknown=True)
    return Verdict(False)


def _ocsp_url(cert: x509.Certificate) -> str:
    try:
        aia = cert.extensions.get_extension_for_class(x509.AuthorityInformationAccess).value
    except x509.ExtensionNotFound:
        raise NoAnswer("the certificate names no OCSP responder") from None
    for description in aia:
        if description.access_method == AuthorityInformationAccessOID.OCSP:
            return str(description.access_location.value)
    raise NoAnswer("the certificate names no OCSP responder")


def _post(url: str, body: bytes, timeout: float) -> bytes:
    """Plain HTTP, as RFC 6960 and the S/MIME BRs have it (the answer is signed, not the channel)."""
    parts = urlsplit(url)
    if parts.scheme != "http" or not parts.hostname:
        raise NoAnswer(f"{url}: not an http:// OCSP URL")
    try:
        port = parts.port or 80
    except ValueError:
        raise NoAnswer(f"{url}: not a port") from None
    conn = http.client.HTTPConnection(connect_to(parts.hostname, port), port, timeout=timeout)
    try:
        conn.connect()
        with watchdog(conn.sock, timeout):
            return _exchange(conn, parts.path or "/", parts.netloc, body, url)
    except (OSError, http.client.HTTPException, ValueError) as exc:
        raise NoAnswer(f"{url}: {exc}") from None
    finally:
        conn.close()


def _exchange(conn: http.client.HTTPConnection, path: str, host: str, body: bytes, url: str) -> bytes:
    conn.putrequest("POST", path, skip_host=True)
    conn.putheader("Host", host)
    conn.putheader("Content-Type", "application/ocsp-request")
    conn.putheader("Content-Length", str(len(body)))
    conn.endheaders(body)
    response = conn.getresponse()
    data = response.read(65536)
    if response.status != 200:
        raise NoAnswer(f"{url}: HTTP {response.status}")
    return data


def _verify(answer: ocsp.OCSPResponse, issuer: x509.Certificate) -> None:
    """Signed by the issuer itself, or by a responder certificate the issuer made for OCSP signing."""
    signer = issuer
    for candidate in answer.certificates:
        try:
            candidate.verify_directly_issued_by(issuer)
            eku = candidate.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
        except (ValueError, TypeError, InvalidSignature, x509.ExtensionNotFound):
            continue
        if ExtendedKeyUsageOID.OCSP_SIGNING in eku:
            signer = candidate
            break
    key = signer.public_key()
    try:
        if isinstance(key, ec.EllipticCurvePublicKey):
            key.verify(answer.signature, answer.tbs_response_bytes, ec.ECDSA(answer.signature_hash_algorithm))
        elif isinstance(key, rsa.RSAPublicKey):
            key.verify(answer.signature, answer.tbs_response_bytes, padding.PKCS1v15(), answer.signature_hash_algorithm)
        else:
            raise NoAnswer("the responder's key type is not one the agent checks")
    except InvalidSignature:
        raise NoAnswer("the OCSP answer's signature does not verify") from None
