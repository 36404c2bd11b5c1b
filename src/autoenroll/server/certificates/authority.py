"""The server's side of the CA: which CA issues, its key backend, and recording what it signs.

Every certificate the server signs goes through `record` inside the same transaction as the
signature, so a certificate that leaves the server is always in the database.
"""

from __future__ import annotations

import hashlib
import ipaddress
import os
import secrets
import threading
from pathlib import Path
from urllib.parse import urlsplit

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from django.db import connection, transaction
from django.utils import timezone
from django.utils.text import slugify

from autoenroll import pki
from autoenroll.server.config import ServerConfig
from autoenroll.server.directory.models import Person
from autoenroll.server.utils import rows

from .models import Certificate, CertificateAuthority, CRLPartition, PresignedOCSPResponse, RevocationReason


class CAError(Exception):
    """The CA cannot do what was asked; the message says why in an admin's words."""


def _pem(cert: x509.Certificate) -> str:
    return cert.public_bytes(serialization.Encoding.PEM).decode("ascii")


def key_sha256(public_key: pki.PublicKey) -> str:
    """What identifies a key across certificates: SHA-256 of its SubjectPublicKeyInfo (DER)."""
    der = public_key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return hashlib.sha256(der).hexdigest()


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


@transaction.atomic
def activate(ca: CertificateAuthority) -> CertificateAuthority:
    """Make `ca` the issuing CA of new certificates. Every server process, on any host, uses it from its
    next request (saving the row changes the configuration generation); the CA it replaces keeps
    publishing its CRL and answering OCSP for what it issued."""
    if ca.role != CertificateAuthority.Role.ISSUING:
        raise CAError(f"{ca.name} is a {ca.get_role_display()}, not an issuing CA")
    CertificateAuthority.objects.filter(role=ca.role, active=True).exclude(pk=ca.pk).update(active=False)
    ca.active = True
    ca.save(update_fields=["active"])
    return ca


def rotate_issuing_ca(config: ServerConfig, name: str | None = None) -> CertificateAuthority:
    """Key rotation: a new S/MIME issuing CA, its key made here and signed by the root, then active."""
    root, current = root_ca(), issuing_ca()
    if root.key_backend != FILE_BACKEND:
        raise CAError("the root's key is in an HSM: make the new issuing CA with the HSM's tools, then `ca activate`")
    count = CertificateAuthority.objects.filter(role=CertificateAuthority.Role.ISSUING).count() + 1
    slug = slugify(name or f"{current.name.split('-smime')[0]}-smime-{count}")
    if CertificateAuthority.objects.filter(name=slug).exists():
        raise CAError(f"a CA named {slug} exists already")
    passphrase = config.ca_passphrase_bytes()
    key = pki.generate_private_key(config.ca_key_type, ca=True)
    cert = pki.issue_issuing_ca(
        backend_for(root, passphrase),
        key.public_key(),
        pki.ca_name(f"{config.ca_name} S/MIME CA {count}", config.ca_organization),
        pki.PublicationURLs.for_ca(config.publication_url, root.name),
    )
    path = config.ca_dir / f"{slug}.key"
    if path.exists():
        raise CAError(f"{path} exists already; not overwriting a key")
    pki.write_encrypted_key(key, path, passphrase)
    with transaction.atomic():
        row = _ca_row(
            cert,
            name=slug,
            role=CertificateAuthority.Role.ISSUING,
            parent=root,
            key_backend=FILE_BACKEND,
            key_path=str(path),
            active=False,
        )
        return activate(row)


_signers: dict[tuple, pki.CABackend] = {}
_signers_lock = threading.Lock()


def backend_for(ca: CertificateAuthority, passphrase: bytes) -> pki.CABackend:
    """The CA's signer, built once per process and CA row (the key is decrypted, or the HSM session
    opened, once, not per signature). A new key is a new CA row (`rotate_issuing_ca`); a signer
    loaded with another passphrase is another entry (salted hash: nothing that identifies it is kept)."""
    cache_key = (ca.pk, ca.serial, ca.key_backend, ca.key_path, hashlib.sha256(b"signer\0" + passphrase).digest())
    with _signers_lock:
        backend = _signers.get(cache_key)
        if backend is None:
            backend = pki.load_backend(
                ca.key_backend,
                certificate=x509.load_pem_x509_certificate(ca.certificate_pem.encode()),
                key_path=ca.key_path,
                passphrase=passphrase,
            )
            _signers[cache_key] = backend
        return backend


def forget_signers() -> None:
    """Drop every CA signer of this process: the next signature loads the key again (a key file
    restored in place)."""
    with _signers_lock:
        _signers.clear()
    pki.clear_key_cache()


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
    public_key_sha256: str = "",
    crl_partition: int | None = None,
) -> Certificate:
    certificate = Certificate(
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
        public_key_sha256=public_key_sha256 or key_sha256(cert.public_key()),
        pem=_pem(cert),
        csr_pem=csr_pem,
        replaces=replaces,
        crl_partition=crl_partition,
    )
    return rows.insert(certificate)


def issue_smime(
    config: ServerConfig,
    public_key: pki.PublicKey,
    mail: str,
    *,
    person: Person | None = None,
    csr_pem: str = "",
    replaces: Certificate | None = None,
    template: x509.MSCertificateTemplate | None = None,
    ca: CertificateAuthority | None = None,
    public_key_sha256: str = "",
) -> Certificate:
    """Sign and record an S/MIME certificate for `mail`, the address AD holds for `person`, by `ca`
    (default: the active issuing CA)."""
    ca = ca or issuing_ca()
    backend = backend_for(ca, config.ca_passphrase_bytes())
    urls = pki.PublicationURLs.for_ca(config.publication_url, ca.name)
    partition = secrets.randbelow(config.crl_partitions) if config.crl_partitions > 1 else None
    if partition is not None:
        urls = urls.with_crl_partition(partition)
    with transaction.atomic(savepoint=False):  # the caller's transaction when there is one
        cert = pki.issue_smime_certificate(
            backend,
            public_key,
            mail,
            urls,
            validity_days=config.certificate_days,
            template=template,
        )
        return record(
            cert,
            ca,
            Certificate.Profile.SMIME,
            person=person,
            mail=mail,
            csr_pem=csr_pem,
            replaces=replaces,
            public_key_sha256=public_key_sha256,
            crl_partition=partition,
        )


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


#: One statement marks, stores each CRL entry, and tells which were still issued (RETURNING: SQLite >= 3.35,
#: PostgreSQL).
_REVOKE = (
    "UPDATE {table} SET status = %s, revoked_at = %s, revocation_reason = %s, revoked_by = %s, "
    "crl_entry = CASE id {entries} END WHERE status = %s AND id IN ({ids}) RETURNING id"
)


_NEXT_GENERATION = (
    f"UPDATE {CertificateAuthority._meta.db_table} "  # noqa: S608 - table name from the model
    "SET revocation_generation = revocation_generation + %s WHERE id = %s"
)


#: A partition's row is made by its first revocation (INSERT … ON CONFLICT: SQLite >= 3.24, PostgreSQL).
_NEXT_PARTITION_GENERATION = (
    f'INSERT INTO {CRLPartition._meta.db_table} (ca_id, "index", revocation_generation) '  # noqa: S608
    'VALUES (%s, %s, %s) ON CONFLICT (ca_id, "index") '
    f"DO UPDATE SET revocation_generation = {CRLPartition._meta.db_table}.revocation_generation "
    "+ excluded.revocation_generation"
)

_DROP_PRESIGNED = f"DELETE FROM {PresignedOCSPResponse._meta.db_table} WHERE certificate_id IN ({{ids}})"  # noqa: S608


def revoke_rows(certificates: list[Certificate], reason: str, *, by: str) -> list[Certificate]:
    """Mark those of `certificates` still issued revoked, with their CRL entries, and make each CA's CRL stale
    (and the partition's, for a certificate issued into a partitioned CRL), inside the caller's transaction;
    returns those revoked now (updated in place). Only `enrollment.lifecycle.revoke` calls this: it adds the
    audit events and AD's side.

    OCSP answers from the rows at once (their responses signed ahead are dropped here); the CRL is
    regenerated off the request path and is never served stale meanwhile (`publication.current_crl`)."""
    _check_reason(reason)
    if not certificates:
        return []
    now = timezone.now()
    entries = [(c.pk, pki.crl_entry(int(c.serial, 16), now, reason)) for c in certificates]
    sql = _REVOKE.format(
        table=Certificate._meta.db_table,
        entries=" ".join(["WHEN %s THEN %s"] * len(certificates)),
        ids=", ".join(["%s"] * len(certificates)),
    )
    with connection.cursor() as cursor:
        cursor.execute(
            sql,
            [
                *(Certificate.Status.REVOKED, now, reason, by),
                *(value for entry in entries for value in entry),
                Certificate.Status.ISSUED,
                *(c.pk for c in certificates),
            ],
        )
        revoked = {pk for (pk,) in cursor.fetchall()}
    rows = [c for c in certificates if c.pk in revoked]
    per_ca: dict[int, int] = {}
    per_partition: dict[tuple[int, int], int] = {}
    encoded = dict(entries)
    for c in rows:
        c.status, c.revoked_at, c.revocation_reason, c.revoked_by = Certificate.Status.REVOKED, now, reason, by
        c.crl_entry = encoded[c.pk]
        per_ca[c.ca_id] = per_ca.get(c.ca_id, 0) + 1
        if c.crl_partition is not None:
            per_partition[c.ca_id, c.crl_partition] = per_partition.get((c.ca_id, c.crl_partition), 0) + 1
    with connection.cursor() as cursor:
        for ca_id, count in per_ca.items():
            cursor.execute(_NEXT_GENERATION, [count, ca_id])
        for (ca_id, index), count in sorted(per_partition.items()):
            cursor.execute(_NEXT_PARTITION_GENERATION, [ca_id, index, count])
        if rows:  # their answers signed ahead said "good"; the responder signs the next ones
            drop = _DROP_PRESIGNED.format(ids=", ".join(["%s"] * len(rows)))
            cursor.execute(drop, [c.pk for c in rows])
    return rows
