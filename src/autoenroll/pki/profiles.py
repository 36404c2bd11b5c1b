"""Certificate profiles: what goes into each kind of certificate we issue.

Each profile has a ``*_builder`` function returning an unsigned
:class:`~cryptography.x509.CertificateBuilder` (easy to inspect and test) and an
``issue_*`` function that signs it through a :class:`~autoenroll.pki.backends.CABackend`
(the only signing path). The S/MIME profile follows the CA/Browser Forum S/MIME
Baseline Requirements, mailbox-validated *strict* generation.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import ipaddress
import os
import re
import shutil
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final
from urllib.parse import urlsplit

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from .backends import CABackend, InMemoryKeyBackend
from .keys import (
    PKIError,
    PrivateKey,
    PublicKey,
    generate_private_key,
    key_type_of,
    write_encrypted_key,
)

__all__ = [
    "DEFAULT_ISSUING_CA_VALIDITY_DAYS",
    "DEFAULT_ROOT_VALIDITY_DAYS",
    "DEFAULT_SMIME_VALIDITY_DAYS",
    "DEFAULT_TLS_VALIDITY_DAYS",
    "ISSUING_CERT_FILE",
    "ISSUING_KEY_FILE",
    "ROOT_CERT_FILE",
    "ROOT_KEY_FILE",
    "MAX_SMIME_VALIDITY_DAYS",
    "SMIME_MAILBOX_STRICT_POLICY",
    "Hierarchy",
    "HierarchyExists",
    "ProfileError",
    "PublicationURLs",
    "ca_name",
    "crl_partition_url",
    "init_hierarchy",
    "issue_issuing_ca",
    "issue_root_ca",
    "issue_smime_certificate",
    "issue_tls_server_certificate",
    "issuing_ca_builder",
    "new_serial_number",
    "root_ca_builder",
    "smime_builder",
    "tls_server_builder",
]

#: CA/Browser Forum reserved policy OID: S/MIME mailbox-validated, strict generation.
SMIME_MAILBOX_STRICT_POLICY: Final = x509.ObjectIdentifier("2.23.140.1.5.1.3")

DEFAULT_ROOT_VALIDITY_DAYS: Final = 20 * 365 + 5
DEFAULT_ISSUING_CA_VALIDITY_DAYS: Final = 10 * 365 + 2
DEFAULT_SMIME_VALIDITY_DAYS: Final = 365
#: S/MIME BR 6.3.2: strict/multipurpose subscriber certificates live at most 825 days.
MAX_SMIME_VALIDITY_DAYS: Final = 825
DEFAULT_TLS_VALIDITY_DAYS: Final = 397

# Tolerate clients whose clock is a little behind the server's.
_BACKDATE: Final = dt.timedelta(minutes=5)

_SLUG_RE: Final = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")
_ATEXT: Final = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
_LOCAL_PART_RE: Final = re.compile(rf"^{_ATEXT}(?:\.{_ATEXT})*$")
_LABEL_RE: Final = re.compile(r"^(?!-)[A-Za-z0-9-]{1,63}(?<!-)$")


class ProfileError(PKIError, ValueError):
    """A request cannot be turned into a certificate our profiles allow."""


class HierarchyExists(PKIError, FileExistsError):
    """``init_hierarchy`` refuses to overwrite an existing CA."""


# --- small helpers -----------------------------------------------------------------------------


def new_serial_number() -> int:
    """A positive serial with at least 64 bits from a CSPRNG (CABF BR 7.1)."""
    while True:
        serial = x509.random_serial_number()  # 159 random bits
        if serial.bit_length() >= 64:
            return serial


def validity_window(
    days: int, not_before: dt.datetime | None, issuer: x509.Certificate | None
) -> tuple[dt.datetime, dt.datetime]:
    """Aware UTC (notBefore, notAfter) spanning ``days`` inclusive, never outliving the issuer."""
    if days < 1:
        raise ProfileError(f"validity must be at least 1 day, got {days}")
    if not_before is None:
        not_before = dt.datetime.now(dt.UTC) - _BACKDATE
    elif not_before.tzinfo is None:
        raise ProfileError("not_before must be timezone-aware")
    not_before = not_before.astimezone(dt.UTC).replace(microsecond=0)
    # RFC 5280 4.1.2.5: the validity period includes both ends, hence the second.
    not_after = not_before + dt.timedelta(days=days) - dt.timedelta(seconds=1)
    if issuer is not None:
        not_after = min(not_after, issuer.not_valid_after_utc)
        if not_after <= not_before:
            raise ProfileError(f"issuer {issuer.subject.rfc4514_string()} has expired")
    return not_before, not_after


def subject_key_identifier(public_key: PublicKey) -> x509.SubjectKeyIdentifier:
    return x509.SubjectKeyIdentifier.from_public_key(public_key)


def authority_key_identifier(issuer: x509.Certificate) -> x509.AuthorityKeyIdentifier:
    try:
        ski = issuer.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    except x509.ExtensionNotFound:
        raise ProfileError(f"issuer {issuer.subject.rfc4514_string()} has no subjectKeyIdentifier") from None
    return x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski)


def _check_ca_key(public_key: PublicKey) -> None:
    if key_type_of(public_key) == "rsa-2048":
        raise ProfileError("RSA-2048 is allowed for end entities only; use rsa-3072 or stronger for a CA")


def _crl_dp(url: str) -> x509.CRLDistributionPoints:
    return x509.CRLDistributionPoints([x509.DistributionPoint([x509.UniformResourceIdentifier(url)], None, None, None)])


def _aia(ca_issuers: str, ocsp: str | None) -> x509.AuthorityInformationAccess:
    descriptions = []
    if ocsp:
        descriptions.append(
            x509.AccessDescription(x509.AuthorityInformationAccessOID.OCSP, x509.UniformResourceIdentifier(ocsp))
        )
    descriptions.append(
        x509.AccessDescription(
            x509.AuthorityInformationAccessOID.CA_ISSUERS, x509.UniformResourceIdentifier(ca_issuers)
        )
    )
    return x509.AuthorityInformationAccess(descriptions)


def _policies(oids: Iterable[x509.ObjectIdentifier], cps_url: str | None) -> x509.CertificatePolicies:
    if cps_url is not None:
        _check_http_url(cps_url, "CPS URL", allow_https=True)
    qualifiers = [cps_url] if cps_url else None
    return x509.CertificatePolicies([x509.PolicyInformation(oid, qualifiers) for oid in oids])


def _check_http_url(url: str, what: str, *, allow_https: bool = False) -> None:
    parts = urlsplit(url)
    schemes = ("http", "https") if allow_https else ("http",)
    if parts.scheme not in schemes or not parts.hostname:
        # CABF BRs: CRL and AIA URLs are plain HTTP (no TLS: no chicken-and-egg on revocation).
        raise ProfileError(f"{what} must be an absolute {' or '.join(schemes)} URL, got {url!r}")


def ca_name(common_name: str, organization: str, country: str | None = None) -> x509.Name:
    """A CA subject with the attributes the S/MIME BR require of CA certificates (C, O, CN)."""
    attributes = []
    if country:
        if not re.fullmatch(r"[A-Z]{2}", country):
            raise ProfileError(f"country must be an ISO 3166-1 alpha-2 code like 'FR', got {country!r}")
        attributes.append(x509.NameAttribute(NameOID.COUNTRY_NAME, country))
    attributes.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization))
    attributes.append(x509.NameAttribute(NameOID.COMMON_NAME, common_name))
    return x509.Name(attributes)


def _check_mailbox(mail: str) -> str:
    """Validate an ASCII RFC 5321 mailbox (what AD stores in ``mail``) for an rfc822Name."""
    if not isinstance(mail, str) or mail.count("@") != 1:
        raise ProfileError(f"not a mailbox address: {mail!r}")
    local, domain = mail.split("@")
    if not mail.isascii():
        # Would need SmtpUTF8Mailbox (RFC 8398) and IDNA handling: not supported yet.
        raise ProfileError(f"internationalized mailbox addresses are not supported: {mail!r}")
    if len(local) > 64 or not _LOCAL_PART_RE.fullmatch(local):
        raise ProfileError(f"invalid local part in mailbox address {mail!r}")
    labels = domain.split(".")
    if len(domain) > 253 or len(labels) < 2 or not all(_LABEL_RE.fullmatch(label) for label in labels):
        raise ProfileError(f"invalid domain in mailbox address {mail!r}")
    return mail


# --- publication URLs --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PublicationURLs:
    """Where relying parties fetch a CA's CRL, OCSP answers and certificate."""

    crl: str
    ocsp: str | None
    ca_issuers: str

    def __post_init__(self) -> None:
        _check_http_url(self.crl, "CRL URL")
        _check_http_url(self.ca_issuers, "caIssuers URL")
        if self.ocsp is not None:
            _check_http_url(self.ocsp, "OCSP URL")

    @classmethod
    def for_ca(cls, base_url: str, slug: str) -> PublicationURLs:
        """URLs of CA ``slug`` on our server.

        ``{base}/crl/{slug}.crl``, ``{base}/ocsp/{slug}`` and ``{base}/ca/{slug}.crt``.
        """
        if not _SLUG_RE.fullmatch(slug):
            raise ProfileError(f"CA slug must match {_SLUG_RE.pattern}, got {slug!r}")
        base = base_url.rstrip("/")
        _check_http_url(base, "publication base URL")
        return cls(crl=f"{base}/crl/{slug}.crl", ocsp=f"{base}/ocsp/{slug}", ca_issuers=f"{base}/ca/{slug}.crt")

    def with_crl_partition(self, index: int) -> PublicationURLs:
        """The same URLs with the CRL of partition ``index`` (``{base}/crl/{slug}/{index}.crl``)."""
        return dataclasses.replace(self, crl=crl_partition_url(self.crl, index))


def crl_partition_url(crl_url: str, index: int) -> str:
    """Where partition ``index`` of the CRL at ``crl_url`` is published: what certificates of that partition
    name in their CRL distribution point, and what the partition's issuing distribution point repeats."""
    if not 0 <= index < 1024:
        raise ProfileError(f"CRL partition must be between 0 and 1023, got {index}")
    return f"{crl_url.removesuffix('.crl')}/{index}.crl"


# --- root CA -----------------------------------------------------------------------------------


def root_ca_builder(
    public_key: PublicKey,
    subject: x509.Name,
    *,
    validity_days: int = DEFAULT_ROOT_VALIDITY_DAYS,
    not_before: dt.datetime | None = None,
) -> x509.CertificateBuilder:
    """Self-signed root: CA:TRUE with no path length, keyCertSign+cRLSign, no EKU (S/MIME BR 7.1.2.1)."""
    _check_ca_key(public_key)
    start, end = validity_window(validity_days, not_before, None)
    ski = subject_key_identifier(public_key)
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(public_key)
        .serial_number(new_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(key_usage(key_cert_sign=True, crl_sign=True), critical=True)
        .add_extension(ski, critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski), critical=False)
    )


def issue_root_ca(
    key: PrivateKey,
    subject: x509.Name,
    *,
    validity_days: int = DEFAULT_ROOT_VALIDITY_DAYS,
    not_before: dt.datetime | None = None,
) -> x509.Certificate:
    """Create a self-signed root certificate for ``key`` (signed via an in-memory backend)."""
    builder = root_ca_builder(key.public_key(), subject, validity_days=validity_days, not_before=not_before)
    return InMemoryKeyBackend(key).sign(builder)


def key_usage(**bits: bool) -> x509.KeyUsage:
    """A keyUsage with the named bits set and every other bit clear."""
    names = ("digital_signature", "content_commitment", "key_encipherment", "data_encipherment", "key_agreement",
             "key_cert_sign", "crl_sign", "encipher_only", "decipher_only")  # fmt: skip
    unknown = set(bits) - set(names)
    if unknown:
        raise TypeError(f"unknown keyUsage bits {sorted(unknown)}")
    return x509.KeyUsage(**{name: bits.get(name, False) for name in names})


# --- issuing (subordinate) CA for S/MIME -------------------------------------------------------


def issuing_ca_builder(
    issuer: x509.Certificate,
    public_key: PublicKey,
    subject: x509.Name,
    issuer_urls: PublicationURLs,
    *,
    validity_days: int = DEFAULT_ISSUING_CA_VALIDITY_DAYS,
    policies: Sequence[x509.ObjectIdentifier] = (SMIME_MAILBOX_STRICT_POLICY,),
    cps_url: str | None = None,
    not_before: dt.datetime | None = None,
) -> x509.CertificateBuilder:
    """S/MIME subordinate CA (S/MIME BR 7.1.2.2): pathLen 0, EKU emailProtection only,
    the CABF policy OIDs it may issue under, and the *issuer's* (root's) CRL and caIssuers URLs."""
    _check_ca_key(public_key)
    if not policies:
        raise ProfileError("an S/MIME subordinate CA needs at least one certificate policy")
    start, end = validity_window(validity_days, not_before, issuer)
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer.subject)
        .public_key(public_key)
        .serial_number(new_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(key_usage(key_cert_sign=True, crl_sign=True), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.EMAIL_PROTECTION]), critical=False)
        .add_extension(_policies(policies, cps_url), critical=False)
        .add_extension(_crl_dp(issuer_urls.crl), critical=False)
        .add_extension(_aia(issuer_urls.ca_issuers, None), critical=False)
        .add_extension(subject_key_identifier(public_key), critical=False)
        .add_extension(authority_key_identifier(issuer), critical=False)
    )


def issue_issuing_ca(
    root: CABackend,
    public_key: PublicKey,
    subject: x509.Name,
    root_urls: PublicationURLs,
    *,
    validity_days: int = DEFAULT_ISSUING_CA_VALIDITY_DAYS,
    policies: Sequence[x509.ObjectIdentifier] = (SMIME_MAILBOX_STRICT_POLICY,),
    cps_url: str | None = None,
    not_before: dt.datetime | None = None,
) -> x509.Certificate:
    """Have the root ``root`` sign an S/MIME issuing CA certificate for ``public_key``."""
    builder = issuing_ca_builder(
        root.certificate,
        public_key,
        subject,
        root_urls,
        validity_days=validity_days,
        policies=policies,
        cps_url=cps_url,
        not_before=not_before,
    )
    return root.sign(builder)


# --- S/MIME end entity -------------------------------------------------------------------------


def _smime_key_usage(public_key: PublicKey) -> x509.KeyUsage:
    """RSA signs and wraps content keys; EC signs and does ECDH key agreement (S/MIME BR 7.1.2.3 e)."""
    key_type_of(public_key)  # rejects unsupported keys
    is_rsa = isinstance(public_key, rsa.RSAPublicKey)
    is_ec = isinstance(public_key, ec.EllipticCurvePublicKey)
    return key_usage(digital_signature=True, key_encipherment=is_rsa, key_agreement=is_ec)


def smime_builder(
    issuer: x509.Certificate,
    public_key: PublicKey,
    mail: str,
    issuer_urls: PublicationURLs,
    *,
    validity_days: int = DEFAULT_SMIME_VALIDITY_DAYS,
    cps_url: str | None = None,
    not_before: dt.datetime | None = None,
) -> x509.CertificateBuilder:
    """Mailbox-validated strict S/MIME certificate for ``mail`` (the address AD holds).

    The identity comes only from ``mail``, never from a CSR: the subject is just
    ``CN=<mail>`` (or empty with a critical SAN when the address exceeds the 64
    characters a CN may hold), the SAN is the single rfc822Name ``mail``.
    """
    mail = _check_mailbox(mail)
    if validity_days > MAX_SMIME_VALIDITY_DAYS:
        raise ProfileError(
            f"S/MIME certificates may be valid at most {MAX_SMIME_VALIDITY_DAYS} days, got {validity_days}"
        )
    start, end = validity_window(validity_days, not_before, issuer)
    if len(mail) <= 64:
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, mail)])
        san_critical = False
    else:
        subject = x509.Name([])
        san_critical = True  # RFC 5280 4.2.1.6: empty subject => critical SAN
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer.subject)
        .public_key(public_key)
        .serial_number(new_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_smime_key_usage(public_key), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.EMAIL_PROTECTION]), critical=False)
        .add_extension(x509.SubjectAlternativeName([x509.RFC822Name(mail)]), critical=san_critical)
        .add_extension(_policies([SMIME_MAILBOX_STRICT_POLICY], cps_url), critical=False)
        .add_extension(_crl_dp(issuer_urls.crl), critical=False)
        .add_extension(_aia(issuer_urls.ca_issuers, issuer_urls.ocsp), critical=False)
        .add_extension(subject_key_identifier(public_key), critical=False)
        .add_extension(authority_key_identifier(issuer), critical=False)
    )


def issue_smime_certificate(
    issuing_ca: CABackend,
    public_key: PublicKey,
    mail: str,
    issuer_urls: PublicationURLs,
    *,
    validity_days: int = DEFAULT_SMIME_VALIDITY_DAYS,
    cps_url: str | None = None,
    not_before: dt.datetime | None = None,
    template: x509.MSCertificateTemplate | None = None,
) -> x509.Certificate:
    """Sign an S/MIME certificate for ``mail`` with the issuing CA ``issuing_ca``.

    ``public_key`` comes from a CSR whose signature was checked by the caller;
    ``issuer_urls`` are the issuing CA's own publication URLs.
    """
    builder = smime_builder(
        issuing_ca.certificate,
        public_key,
        mail,
        issuer_urls,
        validity_days=validity_days,
        cps_url=cps_url,
        not_before=not_before,
    )
    if template is not None:  # Windows autoenrollment recognises its certificates by their template
        builder = builder.add_extension(template, critical=False)
    return issuing_ca.sign(builder)


# --- TLS server certificate for our own HTTPS server -------------------------------------------


def tls_server_builder(
    issuer: x509.Certificate,
    public_key: PublicKey,
    dns_names: Sequence[str] = (),
    ip_addresses: Sequence[str | ipaddress.IPv4Address | ipaddress.IPv6Address] = (),
    *,
    validity_days: int = DEFAULT_TLS_VALIDITY_DAYS,
    issuer_urls: PublicationURLs | None = None,
    not_before: dt.datetime | None = None,
) -> x509.CertificateBuilder:
    """TLS server certificate: SANs are the DNS names and IP addresses, EKU serverAuth only."""
    key_type_of(public_key)
    names: list[x509.GeneralName] = []
    for dns in dns_names:
        labels = dns.removeprefix("*.").split(".")
        if not dns.isascii() or not all(_LABEL_RE.fullmatch(label) for label in labels):
            raise ProfileError(f"invalid DNS name {dns!r} (use the IDNA A-label form)")
        names.append(x509.DNSName(dns.lower()))
    for ip in ip_addresses:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(ip)))
        except ValueError:
            raise ProfileError(f"invalid IP address {ip!r}") from None
    if not names:
        raise ProfileError("a TLS server certificate needs at least one DNS name or IP address")
    start, end = validity_window(validity_days, not_before, issuer)
    first = dns_names[0].lower() if dns_names else str(ipaddress.ip_address(ip_addresses[0]))
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, first)]))
        .issuer_name(issuer.subject)
        .public_key(public_key)
        .serial_number(new_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            key_usage(digital_signature=True, key_encipherment=isinstance(public_key, rsa.RSAPublicKey)),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(subject_key_identifier(public_key), critical=False)
        .add_extension(authority_key_identifier(issuer), critical=False)
    )
    if issuer_urls is not None:
        builder = builder.add_extension(_crl_dp(issuer_urls.crl), critical=False).add_extension(
            _aia(issuer_urls.ca_issuers, None), critical=False
        )
    return builder


def issue_tls_server_certificate(
    ca: CABackend,
    public_key: PublicKey,
    dns_names: Sequence[str] = (),
    ip_addresses: Sequence[str | ipaddress.IPv4Address | ipaddress.IPv6Address] = (),
    *,
    validity_days: int = DEFAULT_TLS_VALIDITY_DAYS,
    issuer_urls: PublicationURLs | None = None,
    not_before: dt.datetime | None = None,
) -> x509.Certificate:
    """Sign a TLS server certificate for our HTTPS endpoint with ``ca`` (normally the root)."""
    builder = tls_server_builder(
        ca.certificate,
        public_key,
        dns_names,
        ip_addresses,
        validity_days=validity_days,
        issuer_urls=issuer_urls,
        not_before=not_before,
    )
    return ca.sign(builder)


# --- a new hierarchy on disk -------------------------------------------------------------------

ROOT_CERT_FILE: Final = "root-ca.pem"
ROOT_KEY_FILE: Final = "root-ca.key"
ISSUING_CERT_FILE: Final = "issuing-ca.pem"
ISSUING_KEY_FILE: Final = "issuing-ca.key"
_HIERARCHY_FILES: Final = (ROOT_CERT_FILE, ROOT_KEY_FILE, ISSUING_CERT_FILE, ISSUING_KEY_FILE)


@dataclass(frozen=True, slots=True)
class Hierarchy:
    """A root + S/MIME issuing CA as written by :func:`init_hierarchy`."""

    root_certificate: x509.Certificate
    root_cert_path: Path
    root_key_path: Path
    root_urls: PublicationURLs
    issuing_certificate: x509.Certificate
    issuing_cert_path: Path
    issuing_key_path: Path
    issuing_urls: PublicationURLs


def _pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _write_new(path: Path, data: bytes, mode: int) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), mode)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())


def init_hierarchy(
    directory: Path | str,
    passphrase: bytes,
    key_type: str = "ec-p256",
    *,
    name: str,
    organization: str,
    publication_base_url: str,
    country: str | None = None,
    root_slug: str = "root",
    issuing_slug: str = "smime",
    root_validity_days: int = DEFAULT_ROOT_VALIDITY_DAYS,
    issuing_validity_days: int = DEFAULT_ISSUING_CA_VALIDITY_DAYS,
    cps_url: str | None = None,
) -> Hierarchy:
    """Create a root CA and an S/MIME issuing CA in ``directory`` (``root-ca.{pem,key}``,
    ``issuing-ca.{pem,key}``), keys encrypted with ``passphrase``.

    All four files appear together or not at all, and nothing existing is ever
    overwritten: they are written into a private temporary directory first, then
    hard-linked into place (a link, like ``O_EXCL``, fails if the name exists).
    """
    directory = Path(directory)
    if not passphrase:
        raise ProfileError("a passphrase is required to encrypt the CA keys")
    root_urls = PublicationURLs.for_ca(publication_base_url, root_slug)
    issuing_urls = PublicationURLs.for_ca(publication_base_url, issuing_slug)
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    existing = [f for f in _HIERARCHY_FILES if os.path.lexists(directory / f)]
    if existing:
        raise HierarchyExists(f"a CA already exists in {directory} ({', '.join(existing)}); not overwriting")

    root_key = generate_private_key(key_type, ca=True)
    root_cert = issue_root_ca(
        root_key, ca_name(f"{name} Root CA", organization, country), validity_days=root_validity_days
    )
    issuing_key = generate_private_key(key_type, ca=True)
    issuing_cert = issue_issuing_ca(
        InMemoryKeyBackend(root_key, root_cert),
        issuing_key.public_key(),
        ca_name(f"{name} S/MIME CA", organization, country),
        root_urls,
        validity_days=issuing_validity_days,
        cps_url=cps_url,
    )

    staging = Path(tempfile.mkdtemp(prefix=".init-hierarchy-", dir=directory))
    linked: list[Path] = []
    try:
        write_encrypted_key(root_key, staging / ROOT_KEY_FILE, passphrase)
        write_encrypted_key(issuing_key, staging / ISSUING_KEY_FILE, passphrase)
        _write_new(staging / ROOT_CERT_FILE, _pem(root_cert), 0o644)
        _write_new(staging / ISSUING_CERT_FILE, _pem(issuing_cert), 0o644)
        for filename in _HIERARCHY_FILES:
            target = directory / filename
            try:
                os.link(staging / filename, target)
            except FileExistsError:
                raise HierarchyExists(f"{target} appeared while creating the CA; not overwriting") from None
            linked.append(target)
    except BaseException:
        for target in linked:
            target.unlink(missing_ok=True)
        raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)

    return Hierarchy(
        root_certificate=root_cert,
        root_cert_path=directory / ROOT_CERT_FILE,
        root_key_path=directory / ROOT_KEY_FILE,
        root_urls=root_urls,
        issuing_certificate=issuing_cert,
        issuing_cert_path=directory / ISSUING_CERT_FILE,
        issuing_key_path=directory / ISSUING_KEY_FILE,
        issuing_urls=issuing_urls,
    )
