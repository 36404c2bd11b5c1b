"""Certificate revocation lists (RFC 5280 section 5, CA/Browser Forum CRL profile).

The server decides *which* certificates are revoked; this module only turns that list into a
CRL signed through the CA's :class:`~autoenroll.pki.backends.CABackend` (the single signing
path). Reason names are the server's ``RevocationReason`` values, which are the names of
:class:`cryptography.x509.ReasonFlags`.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final, NamedTuple

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization

from .backends import CABackend, SigningError
from .keys import PKIError, key_type_of, signature_hash_for_key, throwaway_key, verify_data

__all__ = [
    "CRL_RENEWAL_FRACTION",
    "DEFAULT_CRL_VALIDITY",
    "MAX_CRL_NUMBER",
    "REVOCATION_REASONS",
    "CRLError",
    "CRLFacts",
    "RevokedEntry",
    "crl_builder",
    "crl_entry",
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


class RevokedEntry(NamedTuple):
    """One revoked certificate as the CRL and the OCSP responder state it (a tuple: a CRL may hold a million)."""

    serial: int
    revoked_at: dt.datetime
    reason: str = "unspecified"


def crl_builder(
    issuer: x509.Certificate,
    number: int,
    *,
    this_update: dt.datetime | None = None,
    validity: dt.timedelta = DEFAULT_CRL_VALIDITY,
    distribution_point: str | None = None,
) -> x509.CertificateRevocationListBuilder:
    """The header of a v2 CRL of ``issuer`` (issuer, dates, CRL number, AKI), without entries:
    :func:`issue_crl` encodes those itself.

    With ``distribution_point``, the CRL is one partition (RFC 5280 5.2.5): its issuing distribution point
    names that URL, the one the certificates of the partition carry, and it lists end-entity certificates
    only."""
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
    if distribution_point is not None:
        scope = x509.IssuingDistributionPoint(
            full_name=[x509.UniformResourceIdentifier(distribution_point)],
            relative_name=None,
            only_contains_user_certs=True,
            only_contains_ca_certs=False,
            only_some_reasons=None,
            indirect_crl=False,
            only_contains_attribute_certs=False,
        )
        builder = builder.add_extension(scope, critical=True)  # RFC 5280 5.2.5: critical
    return builder


def issue_crl(
    ca: CABackend,
    number: int,
    entries: Iterable[RevokedEntry | bytes],
    *,
    this_update: dt.datetime | None = None,
    validity: dt.timedelta = DEFAULT_CRL_VALIDITY,
    distribution_point: str | None = None,
) -> bytes:
    """The CRL number ``number`` of ``ca``, signed and checked against the CA certificate, in DER.

    The header comes from :func:`crl_builder` (a draft signed with a throwaway key of the CA's type, which
    fixes the signature algorithm); the entries are DER-encoded here as they stream in (or come encoded by
    :func:`crl_entry`), and the CA signs the finished TBS once (:meth:`CABackend.sign_data`). A million entries
    take seconds and a few hundred MB, where cryptography's builder holds Python objects per entry and encodes
    them again to check them."""
    issuer = ca.certificate
    key = throwaway_key(key_type_of(issuer.public_key()))
    draft = crl_builder(
        issuer, number, this_update=this_update, validity=validity, distribution_point=distribution_point
    ).sign(key, signature_hash_for_key(key))
    head, extensions = _split_before_extensions(draft.tbs_certlist_bytes)
    revoked = _encode_entries(entries)
    tbs = _tlv(0x30, head + (_tlv(0x30, revoked) if revoked else b"") + extensions)
    signature = ca.sign_data(tbs)
    try:
        verify_data(issuer.public_key(), signature, tbs)  # type: ignore[arg-type]
    except InvalidSignature:
        raise SigningError("the signed CRL does not verify against the CA certificate") from None
    algorithm = _algorithm_identifier(draft.public_bytes(serialization.Encoding.DER))
    der = _tlv(0x30, tbs + algorithm + _tlv(0x03, b"\x00" + signature))
    if x509.load_der_x509_crl(der).issuer != issuer.subject:  # and it parses
        raise SigningError("the signed CRL does not name the CA certificate's subject")
    return der


# --- DER, for the entries -------------------------------------------------------------------------


def _length(size: int) -> bytes:
    if size < 0x80:
        return bytes((size,))
    octets = size.to_bytes((size.bit_length() + 7) // 8, "big")
    return bytes((0x80 | len(octets),)) + octets


def _tlv(tag: int, content: bytes | bytearray) -> bytes:
    return bytes((tag,)) + _length(len(content)) + content


def _read_tlv(der: bytes, at: int) -> tuple[int, int, int]:
    """(tag, start of content, end) of the DER element at ``at``."""
    tag, first = der[at], der[at + 1]
    if first < 0x80:
        return tag, at + 2, at + 2 + first
    count = first & 0x7F
    start = at + 2 + count
    return tag, start, start + int.from_bytes(der[at + 2 : start], "big")


def _split_before_extensions(tbs: bytes) -> tuple[bytes, bytes]:
    """The content of an entry-less TBSCertList, cut where revokedCertificates belongs: before
    crlExtensions ([0]), after version, signature, issuer, thisUpdate and nextUpdate."""
    _, at, end = _read_tlv(tbs, 0)
    start = at
    while at < end:
        tag, _, after = _read_tlv(tbs, at)
        if tag == 0xA0:
            return tbs[start:at], tbs[at:end]
        at = after
    raise CRLError("the drafted CRL has no extensions")


def _algorithm_identifier(certificate_list: bytes) -> bytes:
    """The signatureAlgorithm element of a DER CertificateList (the one after its TBS)."""
    _, at, _ = _read_tlv(certificate_list, 0)
    _, _, after_tbs = _read_tlv(certificate_list, at)
    _, _, end = _read_tlv(certificate_list, after_tbs)
    return certificate_list[after_tbs:end]


def crl_entry(serial: int, revoked_at: dt.datetime, reason: str = "unspecified") -> bytes:
    """One revokedCertificates entry, DER: SEQUENCE { serial INTEGER, revocationDate Time, crlEntryExtensions
    OPTIONAL }. The server stores it with the revocation, so a CRL is its stored entries joined."""
    if not 0 < serial < 2**159:  # RFC 5280 4.1.2.2: positive, at most 20 octets
        raise CRLError(f"serial {serial:x} is not a positive integer of at most 20 octets")
    extension = _REASON_DER.get(reason)
    if extension is None:
        reason_flag(reason)  # not one of ours: raises the error that names them
    if revoked_at.tzinfo is not dt.UTC:
        revoked_at = _utc(revoked_at, "revocation time")
    year = revoked_at.year
    if 1950 <= year < 2050:  # RFC 5280 5.1.2.6: UTCTime through 2049, then GeneralizedTime
        when = b"\x17\x0d%02d%02d%02d%02d%02d%02dZ" % (
            year % 100, revoked_at.month, revoked_at.day, revoked_at.hour, revoked_at.minute, revoked_at.second,
        )  # fmt: skip
    elif year >= 2050:
        when = b"\x18\x0f%04d%02d%02d%02d%02d%02dZ" % (
            year, revoked_at.month, revoked_at.day, revoked_at.hour, revoked_at.minute, revoked_at.second,
        )  # fmt: skip
    else:
        raise CRLError(f"revocation time {revoked_at} is before 1950")
    octets = serial.to_bytes(serial.bit_length() // 8 + 1, "big")  # a leading 0 bit: positive
    size = len(octets)
    # at most 54 octets: a one-octet length
    return b"\x30%c\x02%c%b%b%b" % (size + 2 + len(when) + len(extension), size, octets, when, extension)


def _encode_entries(entries: Iterable[RevokedEntry | bytes]) -> bytearray:
    """The entries' DER one after the other in one buffer (no object per entry is kept). An entry given as
    bytes is one :func:`crl_entry` made (stored by the server at revocation; its serial is unique there)."""
    out = bytearray()
    seen: set[int] = set()
    for entry in entries:
        if isinstance(entry, bytes):
            out += entry
            continue
        serial = entry[0]
        if serial in seen:
            raise CRLError(f"serial {serial:x} is listed twice")
        seen.add(serial)
        out += crl_entry(*entry)
    return out


#: RFC 5280 5.3.1 CRLReason values of the reasons this product revokes for.
_REASON_CODES: Final = {"key_compromise": 1, "affiliation_changed": 3, "superseded": 4, "cessation_of_operation": 5}
#: Each reason's crlEntryExtensions, encoded: a reasonCode (OID 2.5.29.21, ENUMERATED), none for unspecified.
_REASON_DER: Final = {
    "unspecified": b"",
    **{
        name: _tlv(0x30, _tlv(0x30, bytes.fromhex("0603551d15") + _tlv(0x04, bytes((0x0A, 1, code)))))
        for name, code in _REASON_CODES.items()
    },
}


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
    """Facts of a CRL object or its DER encoding (given the DER, it is not encoded again: it may be 50 MB)."""
    if isinstance(crl, bytes):
        der, crl = crl, x509.load_der_x509_crl(crl)
    else:
        der = crl.public_bytes(serialization.Encoding.DER)
    next_update = crl.next_update_utc
    if next_update is None:
        raise CRLError("the CRL has no nextUpdate")
    return CRLFacts(
        issuer=crl.issuer.rfc4514_string(),
        number=crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number,
        this_update=crl.last_update_utc,
        next_update=next_update,
        entries=len(crl),
        sha256=hashlib.sha256(der).hexdigest(),
        size=len(der),
    )
