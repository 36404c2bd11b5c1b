"""Publishing certificates to AD's userCertificate (a customer option, off by default), so that
Outlook finds the certificate to encrypt to in the address book."""

from __future__ import annotations

import logging

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from .ldap import DirectoryError, client_for
from .models import Person

log = logging.getLogger("autoenroll.directory")


def _der(pem: str) -> bytes:
    return x509.load_pem_x509_certificate(pem.encode()).public_bytes(serialization.Encoding.DER)


def publish(person: Person, add_pem: str | None = None, remove_pem: str | None = None) -> bool:
    """Add and/or remove a certificate in the person's AD entry. A failure is logged, not raised: the
    user has their certificate either way, and the next renewal publishes again."""
    if not person.customer.publish_to_ad or person.ad_server is None or not person.dn:
        return False
    try:
        client_for(person.ad_server_id, person.ad_server.ldap_settings()).publish_certificates(
            person.dn,
            add=[_der(add_pem)] if add_pem else [],
            remove=[_der(remove_pem)] if remove_pem else [],
        )
    except DirectoryError as exc:
        log.warning("cannot publish the certificate of %s to AD: %s", person.principal, exc)
        return False
    return True
