"""The certificate templates autoenroll offers through MS-XCEP, defined in code.

There is one thing to issue, the S/MIME mailbox certificate of the pipeline, so there is one template:
"User" (the name Windows' own user template has, which Group Policy autoenrollment and certmonger
helpers look for). Its OID must never change: Windows remembers which template a certificate was enrolled
from and renews by that OID. The arcs below 1.3.6.1.4.1.311.21.8 are fixed numbers derived once from the
SHA-256 of a constant, the same way AD CS draws per-forest random arcs.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import timedelta

from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID
from pyasn1.codec.der import decoder as der_decoder
from pyasn1.error import PyAsn1Error
from pyasn1.type import char, namedtype, univ

from autoenroll.pki.profiles import key_usage

TEMPLATE_OID_ARC = "1.3.6.1.4.1.311.21.8"
_SEED = hashlib.sha256(b"autoenroll certificate templates v1").digest()
#: Six "forest" arcs, like AD CS's 1.3.6.1.4.1.311.21.8.<6 random numbers>.<2 random numbers>.
FOREST_ARCS = ".".join(str(int.from_bytes(_SEED[i : i + 3], "big") % 16_000_000 + 1_000_000) for i in range(0, 18, 3))

# Template request extensions (MS-WCCE 2.2.2.7.7): the name (V1) and the template information (V2+, which
# cryptography reads and writes as x509.MSCertificateTemplate).
OID_TEMPLATE_NAME = "1.3.6.1.4.1.311.20.2"
OID_TEMPLATE_INFO = "1.3.6.1.4.1.311.21.7"
OID_EKU = "2.5.29.37"
OID_KEY_USAGE = "2.5.29.15"
OID_EMAIL_PROTECTION = "1.3.6.1.5.5.7.3.4"
OID_RSA = "1.2.840.113549.1.1.1"
OID_SHA256 = "2.16.840.1.101.3.4.2.1"

# MS-XCEP 3.1.4.1.3.1 flag values.
SUBJECT_ALT_REQUIRE_EMAIL = 0x04000000  # the CA puts the AD mail into subjectAltName
SUBJECT_REQUIRE_EMAIL = 0x20000000  # ... and into the subject
ENROLL_INCLUDE_SYMMETRIC_ALGORITHMS = 0x00000001  # the S/MIME capabilities extension (RFC 4262)
ENROLL_PUBLISH_TO_DS = 0x00000008  # the pipeline publishes to userCertificate
ENROLL_AUTO_ENROLLMENT = 0x00000020  # msPKI-Enrollment-Flag CT_FLAG_AUTO_ENROLLMENT
PRIVATE_KEY_EXPORTABLE = 0x00000010  # users must be able to keep old decryption keys
GENERAL_MACHINE_TYPE = 0x00000040
KEYSPEC_KEYEXCHANGE = 1  # AT_KEYEXCHANGE: the key signs and decrypts


class CertificateTemplateName(univ.Choice):
    """The value of extension 1.3.6.1.4.1.311.20.2 (MS-WCCE 2.2.2.7.7.1): a BMPString; some tools write UTF-8."""

    componentType = namedtype.NamedTypes(
        namedtype.NamedType("bmp", char.BMPString()),
        namedtype.NamedType("utf8", char.UTF8String()),
    )


def _decode(value: bytes, spec: univ.Asn1Type) -> univ.Asn1Type:
    try:
        decoded, rest = der_decoder.decode(value, asn1Spec=spec)
    except (PyAsn1Error, OverflowError) as exc:  # a length of 2**64 - 1 overflows pyasn1's read
        raise ValueError(f"malformed template extension: {str(exc)[:200]}") from None
    if rest:
        raise ValueError("malformed template extension: trailing bytes")
    return decoded


def template_name(value: bytes) -> str:
    """The template name that extension 1.3.6.1.4.1.311.20.2 holds; ValueError if it is not readable."""
    return str(_decode(value, CertificateTemplateName()).getComponent())


@dataclass(frozen=True)
class Template:
    """One certificate enrollment policy (MS-XCEP CertificateEnrollmentPolicy)."""

    common_name: str
    display_name: str
    number: int  # the template's own arc under FOREST_ARCS
    major_revision: int
    minor_revision: int
    minimal_key_length: int
    subject_name_flags: int
    enrollment_flags: int
    private_key_flags: int
    general_flags: int
    for_computers: bool = False

    @property
    def oid(self) -> str:
        return f"{TEMPLATE_OID_ARC}.{FOREST_ARCS}.1.{self.number}"

    def certificate_template(self) -> x509.MSCertificateTemplate:
        """The extension that tells Windows which template a certificate came from (it renews by it)."""
        return x509.MSCertificateTemplate(x509.ObjectIdentifier(self.oid), self.major_revision, self.minor_revision)

    def validity(self, certificate_days: int) -> timedelta:
        return timedelta(days=certificate_days)

    def renewal_period(self, certificate_days: int) -> timedelta:
        """Renew when a fifth of the validity is left (at most six weeks), as AD CS's User template does."""
        return min(timedelta(days=42), timedelta(days=max(1, certificate_days // 5)))

    def extensions(self) -> list[tuple[str, bool, bytes]]:
        """(oid, critical, DER value) of the extensions the client puts into its request."""
        info = self.certificate_template()
        eku = x509.ExtendedKeyUsage([ExtendedKeyUsageOID.EMAIL_PROTECTION])
        usage = key_usage(digital_signature=True, key_encipherment=True)
        return [
            (OID_TEMPLATE_INFO, False, info.public_bytes()),
            (OID_EKU, False, eku.public_bytes()),
            (OID_KEY_USAGE, True, usage.public_bytes()),
        ]

    def matches(self, name: str | None = None, oid: str | None = None) -> bool:
        if name is not None and name.strip().lower() in (self.common_name.lower(), self.display_name.lower()):
            return True
        return oid is not None and oid.strip() == self.oid


USER = Template(
    common_name="User",
    display_name="autoenroll S/MIME user",
    number=1,
    major_revision=100,
    minor_revision=0,
    minimal_key_length=2048,
    subject_name_flags=SUBJECT_ALT_REQUIRE_EMAIL | SUBJECT_REQUIRE_EMAIL,
    enrollment_flags=ENROLL_INCLUDE_SYMMETRIC_ALGORITHMS | ENROLL_PUBLISH_TO_DS | ENROLL_AUTO_ENROLLMENT,
    private_key_flags=PRIVATE_KEY_EXPORTABLE,
    general_flags=0,
)

TEMPLATES: tuple[Template, ...] = (USER,)


def find(name: str | None = None, oid: str | None = None) -> Template | None:
    """The template a request names (by extension 1.3.6.1.4.1.311.20.2 or .21.7), if we offer it."""
    return next((t for t in TEMPLATES if t.matches(name, oid)), None)
