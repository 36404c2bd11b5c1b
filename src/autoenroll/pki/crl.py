"""Certificate revocation lists (RFC 5280 section 5, CA/Browser Forum CRL profile).

The server decides *which* certificates are revoked; this module only turns that list into a
CRL signed through the CA's :class:`~autoenroll.pki.backends.CABackend` (the single signing
path). Reason names are the server's ``RevocationReason`` values, which are the names of
:class:`cryptography.x509.ReasonFlags`.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization

from .backends import CABackend
from .keys import PKIError

__all__ = [
    "CRL_RENEWAL_FRACTION",
    "DEFAULT_CRL_VALIDITY",
    "MAX_CRL_NUMBER",
    "REVOCATION_REASONS",
    "CRLError",
    "CRLFacts",
    "RevokedEntry",
    "crl_builder",
    "crl_facts",
    "crl_needs_refresh",
    "issue_crl",
    "reason_flag",
]

#: S/MIME BR 4.9.7: a new CRL at least every 7 days, nextUpdate at most 10 days after thisUpdate.
DEFAULT_CRL_VALIDITY: Final = dt.timedelta(days=7)
#: Regenerate once less than this fraction of the CRL's lifetime is left (3.5 days for 7).
CRL_RENEWAL_FRACTION: Final = 0.5
#: RFC 5280 5.2.3: the CRL number fits in 20 octets.
MAX_CRL_NUMBER: Final = 2**159 - 1

#: The reasons this product revokes for. ``unspecified`` is written as *no* reasonCode entry
#: extension: RFC 5280 5.3.1 says it SHOULD NOT be used and the CABF profiles forbid it.
REVOCATION_REASONS: Final[tuple[str, ...]] = (
    "unspecified",
    "key_compromise",
    "affiliation_changed",
    "superseded",
    "cessation_of_operation",
)


class CRLError(PKIError, ValueError):
    """A CRL cannot be built from what was given (bad number, reason, dates)."""


def reason_flag(reason: str) -> x509.ReasonFlags | None:
    """The reasonCode for ``reason`` (a :data:`REVOCATION_REASONS` name); None for unspecified."""
    if reason not in REVOCATION_REASONS:
        raise CRLError(f"unsupported revocation reason {reason!r}; use one of {', '.join(REVOCATION_REASONS)}")
    return None if reason == "unspecified" else x509.ReasonFlags[reason]


def _utc(value: dt.datetime, what: str) -> dt.datetime:
    if value.tzinfo is None:
        raise CRLError(f"{what} must be timezone-aware")
    return value.astimezone(dt.UTC).replace(microsecond=0)


@dataclass(frozen=True, slots=True)
class RevokedEntry:
    """One revoked certificate as the CRL and the OCSP responder state it."""

    serial: int
    revoked_at: dt.datetime
    reason: str = "unspecified"


def crl_builder(
    issuer: x509.Certificate,
    number: int,
    entries: Iterable[RevokedEntry],
    *,
    this_update: dt.datetime | None = None,
    validity: dt.timedelta = DEFAULT_CRL_VALIDITY,
) -> x509.CertificateRevocationListBuilder:
    """An unsigned v2 CRL of ``issuer``: CRL number, AKI, one entry per revoked serial."""
    if not 0 <= number <= MAX_CRL_NUMBER:
        raise CRLError(f"CRL number must be between 0 and 2**159-1, got {number}")
    if not dt.timedelta(hours=1) <= validity <= dt.timedelta(days=10):
        raise CRLError(f"CRL validity must be between 1 hour and 10 days (S/MIME BR 4.9.7), got {validity}")
    this_update = _utc(this_update or dt.datetime.now(dt.UTC), "this_update")
    try:
        ski = issuer.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    except x509.ExtensionNotFound:
        raise CRLError(f"issuer {issuer.subject.rfc4514_string()} has no subjectKeyIdentifier") from None
    builder = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(issuer.subject)
        .last_update(this_update)
        .next_update(this_update + validity)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski), critical=False)
        .add_extension(x509.CRLNumber(number), critical=False)
    )
    seen: set[int] = set()
    for entry in entries:
        if entry.serial in seen:
            raise CRLError(f"serial {entry.serial:x} is listed twice")
        seen.add(entry.serial)
        revoked = (
            x509.RevokedCertificateBuilder()
            .serial_number(entry.serial)
            .revocation_date(_utc(entry.revoked_at, "revocation time"))
        )
        flag = reason_flag(entry.reason)
        if flag is not None:
            revoked = revoked.add_extension(x509.CRLReason(flag), critical=False)
        builder = builder.add_revoked_certificate(revoked.build())
    return builder


def issue_crl(
    ca: CABackend,
    number: int,
    entries: Iterable[RevokedEntry],
    *,
    this_update: dt.datetime | None = None,
    validity: dt.timedelta = DEFAULT_CRL_VALIDITY,
) -> x509.CertificateRevocationList:
    """Build and sign the CRL number ``number`` of ``ca`` (the backend self-checks the signature)."""
    return ca.sign_crl(crl_builder(ca.certificate, number, entries, this_update=this_update, validity=validity))


def crl_needs_refresh(
    this_update: dt.datetime,
    next_update: dt.datetime,
    now: dt.datetime | None = None,
    *,
    fraction: float = CRL_RENEWAL_FRACTION,
) -> bool:
    """True once less than ``fraction`` of the CRL's lifetime is left: regenerate well before nextUpdate."""
    now = now or dt.datetime.now(dt.UTC)
    return next_update - now < (next_update - this_update) * fraction


@dataclass(frozen=True, slots=True)
class CRLFacts:
    """What an admin (or a test) wants to know about a CRL."""

    issuer: str
    number: int
    this_update: dt.datetime
    next_update: dt.datetime
    entries: int
    sha256: str
    size: int


def crl_facts(crl: x509.CertificateRevocationList | bytes) -> CRLFacts:
    """Facts of a CRL object or its DER encoding."""
    if isinstance(crl, bytes):
        crl = x509.load_der_x509_crl(crl)
    der = crl.public_bytes(serialization.Encoding.DER)
    digest = hashes.Hash(hashes.SHA256())
    digest.update(der)
    next_update = crl.next_update_utc
    if next_update is None:
        raise CRLError("the CRL has no nextUpdate")
    return CRLFacts(
        issuer=crl.issuer.rfc4514_string(),
        number=crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number,
        this_update=crl.last_update_utc,
        next_update=next_update,
        entries=len(crl),
        sha256=digest.finalize().hex(),
        size=len(der),
    )
