"""The server's side of the CA: which CA issues, its key backend, and recording what it signs.

Every certificate the server signs goes through `record` inside the same transaction as the
signature, so a certificate that leaves the server is always in the database.
"""

from __future__ import annotations

import hashlib
import ipaddress
import os
import threading
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from django.db import transaction
from django.db.models import F, QuerySet
from django.utils import timezone
from django.utils.text import slugify

from autoenroll import pki
from autoenroll.server.config import ServerConfig
from autoenroll.server.directory.models import Person

from .models import Certificate, CertificateAuthority, RevocationReason


class CAError(Exception):
    """The CA cannot do what was asked; the message says why in an admin's words."""


def _pem(cert: x509.Certificate) -> str:
    return cert.public_bytes(serialization.Encoding.PEM).decode("ascii")


def serial_hex(serial: int) -> str:
    return format(serial, "x")


def _ca_row(cert: x509.Certificate, **fields) -> CertificateAuthority:
    return CertificateAuthority.objects.create(
        subject=cert.subject.rfc4514_string(),
        serial=serial_hex(cert.serial_number),
        not_before=cert.not_valid_before_utc,
        not_after=cert.not_valid_after_utc,
        certificate_pem=_pem(cert),
        **fields,
    )


FILE_BACKEND = "autoenroll.pki.backends.FileKeyBackend"
PKCS11_BACKEND = "autoenroll.pki.hsm.PKCS11Backend"


def create_hierarchy(
    config: ServerConfig,
    key_type: str | None = None,
    name: str | None = None,
    token_uris: tuple[str, str] | None = None,
):
    """`ca init`: a new root and S/MIME issuing CA. Their keys go to encrypted files in the data directory,
    or, with `token_uris` (root, issuing: RFC 7512 pkcs11: URIs), are generated inside an HSM, whose PIN
    is then the configured CA passphrase."""
    if CertificateAuthority.objects.exists():
        names = ", ".join(CertificateAuthority.objects.values_list("name", flat=True))
        raise CAError(f"a CA already exists ({names}); `ca init` never replaces one")
    slug = slugify(name or config.ca_name) or "autoenroll"
    common = dict(
        name=name or config.ca_name,
        organization=config.ca_organization,
        publication_base_url=config.publication_url,
        root_slug=f"{slug}-root",
        issuing_slug=f"{slug}-smime",
    )
    if token_uris is not None:
        from autoenroll.pki import hsm

        made = hsm.init_hierarchy_in_token(
            *token_uris, config.ca_passphrase_bytes(), key_type or config.ca_key_type, **common
        )
        return register_hierarchy(
            slug, made.root_certificate, made.root_uri, made.issuing_certificate, made.issuing_uri, PKCS11_BACKEND
        )
    try:
        made = pki.init_hierarchy(config.ca_dir, config.ca_passphrase_bytes(), key_type or config.ca_key_type, **common)
    except pki.HierarchyExists as exc:
        raise CAError(f"{exc}. Move those files away to create a new CA.") from None
    return register_hierarchy(
        slug, made.root_certificate, str(made.root_key_path), made.issuing_certificate, str(made.issuing_key_path)
    )


@transaction.atomic
def register_hierarchy(
    slug: str,
    root_certificate: x509.Certificate,
    root_key: str,
    issuing_certificate: x509.Certificate,
    issuing_key: str,
    key_backend: str = FILE_BACKEND,
):
    """Record a root + issuing CA pair whose keys exist (files from `pki.init_hierarchy`, or HSM objects)."""
    root = _ca_row(
        root_certificate,
        name=f"{slug}-root",
        role=CertificateAuthority.Role.ROOT,
        key_backend=key_backend,
        key_path=root_key,
        active=False,
    )
    issuing = _ca_row(
        issuing_certificate,
        name=f"{slug}-smime",
        role=CertificateAuthority.Role.ISSUING,
        parent=root,
        key_backend=key_backend,
        key_path=issuing_key,
        active=True,
    )
    return root, issuing


_backends: dict[tuple, pki.CABackend] = {}
_backends_lock = threading.Lock()


def backend_for(ca: CertificateAuthority, passphrase: bytes) -> pki.CABackend:
    """The CA's signer, built once per process (the key is decrypted once, not per signature)."""
    cache_key = (ca.pk, ca.key_backend, ca.key_path, hashlib.sha256(passphrase).digest())
    with _backends_lock:
        backend = _backends.get(cache_key)
        if backend is None:
            backend = pki.load_backend(
                ca.key_backend,
                certificate=x509.load_pem_x509_certificate(ca.certificate_pem.encode()),
                key_path=ca.key_path,
                passphrase=passphrase,
            )
            _backends[cache_key] = backend
        return backend


def issuing_ca() -> CertificateAuthority:
    ca = CertificateAuthority.objects.filter(role=CertificateAuthority.Role.ISSUING, active=True).first()
    if ca is None:
        raise CAError("there is no active issuing CA: run `autoenroll-server ca init`")
    return ca


def root_ca() -> CertificateAuthority:
    ca = CertificateAuthority.objects.filter(role=CertificateAuthority.Role.ROOT).order_by("-created").first()
    if ca is None:
        raise CAError("there is no root CA: run `autoenroll-server ca init`")
    return ca


_chains: dict[tuple[int, str], str] = {}


def chain_pem(ca: CertificateAuthority) -> str:
    """The CA and its parents up to the root, PEM, issuing CA first. A CA certificate never changes, so
    the chain is built once per process (keyed by serial too: a row id alone can be reused)."""
    key = (ca.pk, ca.serial)
    chain = _chains.get(key)
    if chain is None:
        parts = []
        node: CertificateAuthority | None = ca
        while node is not None:
            parts.append(node.certificate_pem)
            node = node.parent
        chain = _chains[key] = "".join(parts)
    return chain


def record(
    cert: x509.Certificate,
    ca: CertificateAuthority,
    profile: str,
    *,
    person: Person | None = None,
    mail: str = "",
    csr_pem: str = "",
    replaces: Certificate | None = None,
) -> Certificate:
    return Certificate.objects.create(
        ca=ca,
        serial=serial_hex(cert.serial_number),
        profile=profile,
        person=person,
        subject=cert.subject.rfc4514_string(),
        issuer=cert.issuer.rfc4514_string(),
        mail=mail,
        not_before=cert.not_valid_before_utc,
        not_after=cert.not_valid_after_utc,
        fingerprint_sha256=cert.fingerprint(hashes.SHA256()).hex(),
        pem=_pem(cert),
        csr_pem=csr_pem,
        replaces=replaces,
    )


def issue_smime(
    config: ServerConfig,
    public_key: pki.PublicKey,
    mail: str,
    *,
    person: Person | None = None,
    csr_pem: str = "",
    replaces: Certificate | None = None,
    template: x509.MSCertificateTemplate | None = None,
) -> Certificate:
    """Sign and record an S/MIME certificate for `mail`, the address AD holds for `person`."""
    ca = issuing_ca()
    backend = backend_for(ca, config.ca_passphrase_bytes())
    with transaction.atomic():
        cert = pki.issue_smime_certificate(
            backend,
            public_key,
            mail,
            pki.PublicationURLs.for_ca(config.publication_url, ca.name),
            validity_days=config.certificate_days,
            template=template,
        )
        return record(cert, ca, Certificate.Profile.SMIME, person=person, mail=mail, csr_pem=csr_pem, replaces=replaces)


def _write_private(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


def issue_tls_certificate(config: ServerConfig, extra_names: list[str] | None = None) -> Certificate:
    """The server's own HTTPS certificate, signed by the root (deployed to clients by GPO, guide 3.6)."""
    ca = root_ca()
    hosts = {urlsplit(config.public_url).hostname or "localhost", "localhost", *(extra_names or [])}
    dns_names, ips = [], []
    for host in sorted(hosts) + ["127.0.0.1", "::1"]:
        try:
            ips.append(ipaddress.ip_address(host.strip("[]")))
        except ValueError:
            dns_names.append(host)
    key = pki.generate_private_key("ec-p256")
    backend = backend_for(ca, config.ca_passphrase_bytes())
    with transaction.atomic():
        cert = pki.issue_tls_server_certificate(
            backend,
            key.public_key(),
            dns_names,
            sorted(set(ips), key=str),
            issuer_urls=pki.PublicationURLs.for_ca(config.publication_url, ca.name),
        )
        row = record(cert, ca, Certificate.Profile.TLS_SERVER)
        _write_private(
            config.tls_key_path,
            key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            ),
        )
        config.tls_cert_path.parent.mkdir(parents=True, exist_ok=True)
        config.tls_cert_path.write_text(_pem(cert))
    return row


def _check_reason(reason: str) -> str:
    if reason not in RevocationReason.values:
        raise CAError(f"unknown revocation reason {reason!r}; use one of {', '.join(RevocationReason.values)}")
    return reason


def _revoked(ca_id: int, count: int) -> None:
    """In the revocation's transaction: mark the CA's CRL stale, and regenerate it after commit."""
    from .publication import regenerate_after_revocation

    CertificateAuthority.objects.filter(pk=ca_id).update(revocation_generation=F("revocation_generation") + count)
    transaction.on_commit(lambda: regenerate_after_revocation(ca_id))


def revoke(cert: Certificate, reason: str, *, by: str) -> Certificate:
    """Mark `cert` revoked; refuses one that already is (its first revocation time and reason stand).

    OCSP answers from the database at once; the CA's CRL is regenerated when the transaction
    commits (and is never served stale before that: see `publication.current_crl`).
    """
    _check_reason(reason)
    with transaction.atomic():
        updated = Certificate.objects.filter(pk=cert.pk, status=Certificate.Status.ISSUED).update(
            status=Certificate.Status.REVOKED, revoked_at=timezone.now(), revocation_reason=reason, revoked_by=by
        )
        if not updated:
            raise CAError(f"certificate {cert.serial} is already revoked")
        _revoked(cert.ca_id, 1)
    cert.refresh_from_db()
    return cert


def revoke_many(
    certificates, reason: str, *, by: str, batch_size: int = 500, progress: Callable[[int], None] | None = None
) -> int:
    """Revoke every still-issued certificate of `certificates` (a queryset or rows) in one transaction.

    One CRL per CA is regenerated after commit, not one per certificate. `progress(n)` is called
    after each batch with the number revoked in it. Returns how many were revoked.
    """
    _check_reason(reason)
    if isinstance(certificates, QuerySet):
        ids = list(certificates.filter(status=Certificate.Status.ISSUED).values_list("pk", flat=True))
    else:
        ids = [c.pk for c in certificates]
    total = 0
    per_ca: dict[int, int] = {}
    with transaction.atomic():
        now = timezone.now()
        for start in range(0, len(ids), batch_size):
            chunk = Certificate.objects.filter(pk__in=ids[start : start + batch_size], status=Certificate.Status.ISSUED)
            cas = list(chunk.values_list("ca_id", flat=True))
            done = chunk.update(
                status=Certificate.Status.REVOKED, revoked_at=now, revocation_reason=reason, revoked_by=by
            )
            for ca_id in cas:
                per_ca[ca_id] = per_ca.get(ca_id, 0) + 1
            total += done
            if progress is not None:
                progress(done)
        for ca_id, count in per_ca.items():
            _revoked(ca_id, count)
    return total
