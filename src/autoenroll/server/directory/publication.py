"""Publishing certificates to AD's userCertificate (a customer option, off by default), so that
Outlook finds the certificate to encrypt to in the address book."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from django.db.models import Exists, OuterRef

from autoenroll.server.certificates.models import Certificate

from .ldap import DirectoryError, client_for
from .models import Person

log = logging.getLogger("autoenroll.directory")


def _der(pem: str) -> bytes:
    return x509.load_pem_x509_certificate(pem.encode()).public_bytes(serialization.Encoding.DER)


def publish(person: Person, add_pem: str | None = None, remove_pem: str | None = None) -> bool:
    """Add and/or remove a certificate in the person's AD entry, right after it was issued or revoked.
    Idempotent. A failure is logged, not raised: the user has their certificate either way, and the
    directory sweep's `reconcile` publishes it later."""
    if not _publishes(person):
        return False
    try:
        _client(person).publish_certificates(
            person.dn,
            add=[_der(add_pem)] if add_pem else [],
            remove=[_der(remove_pem)] if remove_pem else [],
        )
    except DirectoryError as exc:
        log.warning("cannot publish the certificate of %s to AD: %s", person.principal, exc)
        return False
    return True


@dataclass
class Reconciled:
    added: int = 0
    removed: int = 0


def reconcile(person: Person, dn: str | None = None) -> Reconciled | None:
    """Put the userCertificate of the person's AD entry (at `dn`, where AD has it now) in step with what
    this server issued them: each valid certificate there, each revoked or expired one gone; values from
    other CAs are left alone. What `publish` could not do (AD away, the answer lost) is done here.
    None when the customer does not publish or AD cannot be read or written (logged)."""
    if not _publishes(person):
        return None
    client = _client(person)
    try:
        dn, present = _entry(client, person, dn or person.dn)
        if dn is None:  # the entry is gone from AD, and with it what it held
            return Reconciled()
        # read after AD was: a certificate issued meanwhile is in AD and valid here, not taken out
        valid = Exists(Certificate.objects.valid().filter(pk=OuterRef("pk")))
        ours = Certificate.objects.filter(person=person, profile=Certificate.Profile.SMIME).annotate(valid=valid)
        issued = [(_der(pem), is_valid) for pem, is_valid in ours.values_list("pem", "valid")]
        add = [der for der, is_valid in issued if is_valid and der not in present]
        remove = [der for der, is_valid in issued if not is_valid and der in present]
        client.publish_certificates(dn, add=add, remove=remove)
    except DirectoryError as exc:
        log.warning("cannot put the certificates of %s in AD in step: %s", person.principal, exc)
        return None
    return Reconciled(added=len(add), removed=len(remove))


def _entry(client, person: Person, dn: str) -> tuple[str | None, set[bytes]]:
    """The person's entry and its certificates: at `dn`, or where AD has it now (a leaver's entry is often
    moved to another OU); (None, empty) when AD has no such user any more."""
    try:
        return dn, client.published_certificates(dn)
    except DirectoryError as exc:
        if exc.stage != "base_dn":
            raise
    user = client.find_user(person.principal)
    if user is None:
        return None, set()
    return user.dn, client.published_certificates(user.dn)


def _publishes(person: Person) -> bool:
    return bool(person.customer.publish_to_ad and person.ad_server is not None and person.dn)


def _client(person: Person):
    return client_for(person.ad_server_id, person.ad_server.ldap_settings())
