"""Revocation publication: each CA's CRL, its OCSP responder, and its certificates for download.

One source of truth: the `Certificate` rows. OCSP answers read them per request, or are reused from
an earlier identical request made under the same revocation generation; a CRL is a stored artefact made
from them (each revoked row carries its CRL entry), tagged with the revocation generation it covers, and
never served once a newer revocation exists (it is regenerated first). So a CRL and an OCSP answer
fetched at the same moment always agree.

Each CA has its full CRL (`crl/<ca>.crl`, every revoked certificate, generation: the CA's
`revocation_generation`) and, with `crl_partitions` > 1, partitioned CRLs (`crl/<ca>/<n>.crl`, the
revoked certificates issued into partition n, with an issuing distribution point; generation: its
`CRLPartition` row). A revocation makes the full CRL and its own partition's CRL stale, no other.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.x509 import ocsp
from django.conf import settings
from django.db import connection, transaction
from django.db.models import F
from django.utils import timezone

from autoenroll import pki
from autoenroll.pki.crl import DEFAULT_CRL_VALIDITY
from autoenroll.pki.ocsp import GOOD, UNKNOWN, CertStatus
from autoenroll.server.config import ServerConfig
from autoenroll.server.utils import database
from autoenroll.server.utils.exclusive import host_lock, one_at_a_time

from . import authority
from .models import Certificate, CertificateAuthority, CRLPartition, PresignedOCSPResponse, RevocationList

log = logging.getLogger(__name__)

#: Old CRLs kept per CA (the latest is served; a few more help an admin compare).
CRLS_KEPT = 3


def _config(config: ServerConfig | None) -> ServerConfig:
    return config or settings.CONFIG


# --- CRL -----------------------------------------------------------------------------------------


def latest_crl(ca: CertificateAuthority, partition: int | None = None) -> RevocationList | None:
    """The latest full CRL of `ca`, or of one of its partitions."""
    return RevocationList.objects.filter(ca=ca, partition=partition).order_by("-number").first()


def _generation(ca: CertificateAuthority, partition: int | None) -> int:
    """How many revocations the CRL of this scope must cover: the CA's count, or its partition's."""
    if partition is None:
        return ca.revocation_generation
    found = CRLPartition.objects.filter(ca=ca, index=partition).values_list("revocation_generation", flat=True)
    return next(iter(found), 0)


def crl_is_current(ca: CertificateAuthority, crl: RevocationList | None, now: dt.datetime | None = None) -> bool:
    """True if `crl` lists every revocation of its scope so far and is not yet due for renewal."""
    if crl is None or crl.generation != _generation(ca, crl.partition):
        return False
    return not pki.crl_needs_refresh(crl.this_update, crl.next_update, now or timezone.now())


def crl_partition_published(ca: CertificateAuthority, partition: int, config: ServerConfig | None = None) -> bool:
    """Whether `crl/<ca>/<partition>.crl` exists: a partition new certificates go into, or one that a
    certificate or an earlier CRL names (the setting may have shrunk since). Nobody makes the CA sign others."""
    return (
        partition < _config(config).crl_partitions
        or RevocationList.objects.filter(ca=ca, partition=partition).exists()
        or Certificate.objects.filter(ca=ca, crl_partition=partition).exists()
    )


def _revoked_entries(
    ca: CertificateAuthority, now: dt.datetime, partition: int | None
) -> Iterator[pki.RevokedEntry | bytes]:
    """The entries of `ca`'s next CRL, streamed (a server-side cursor on PostgreSQL): a million rows are
    never in memory as rows or model instances at once. Each is the entry stored with its revocation
    (`revoke_rows`), or for a row without one (written some other way), made from its columns."""
    # An entry stays until it has appeared on at least one CRL issued after the certificate
    # expired (RFC 5280 5.2.6/5.3): a CRL lives DEFAULT_CRL_VALIDITY and is renewed at half of it.
    cutoff = connection.ops.adapt_datetimefield_value(now - DEFAULT_CRL_VALIDITY)
    params = [ca.pk, Certificate.Status.REVOKED, cutoff]
    sql = _REVOKED_SQL
    if partition is not None:
        sql, params = sql + _IN_PARTITION, [*params, partition]
    with connection.chunked_cursor() as cursor:
        cursor.execute(sql, params)
        while rows := cursor.fetchmany(10_000):
            for entry, serial, revoked_at, reason in rows:
                if entry is not None:
                    yield bytes(entry)
                else:
                    yield pki.RevokedEntry(int(serial, 16), _utc(revoked_at), reason)


def _utc(value: dt.datetime | str) -> dt.datetime:
    """A timestamp read with plain SQL: SQLite answers Django's text, without a zone (it is UTC)."""
    if isinstance(value, str):
        value = dt.datetime.fromisoformat(value)
    return value if value.tzinfo is not None else value.replace(tzinfo=dt.UTC)


#: The time only for rows without their entry: on SQLite, Django's converter would parse it for every row.
_REVOKED_SQL = (
    "SELECT crl_entry, serial, CASE WHEN crl_entry IS NULL THEN revoked_at END, revocation_reason "  # noqa: S608
    f"FROM {Certificate._meta.db_table} WHERE ca_id = %s AND status = %s AND not_after > %s"
)
_IN_PARTITION = " AND crl_partition = %s"


def publish_crl(
    ca: CertificateAuthority | int,
    config: ServerConfig | None = None,
    *,
    force: bool = True,
    partition: int | None = None,
) -> RevocationList:
    """Sign and store a new CRL of `ca`, the full one or of `partition` (with `force=False`, only if the
    latest is not current).

    No lock is held while the CRL is built and signed (seconds for a large one), so revocations go on
    meanwhile: a short transaction takes the next CRL number and the revocation generation the CRL
    will cover, the revoked set is read after it (so it holds every revocation of that generation),
    and another short transaction stores the CRL. Numbers strictly increase and only the highest is
    served. One builder per CA at a time (`one_at_a_time`): the watchers of several servers and a download
    asking for a stale CRL do not build it twice."""
    config = _config(config)
    ca_id = ca.pk if isinstance(ca, CertificateAuthority) else ca
    with one_at_a_time(config.data_dir, "crl" if partition is None else f"crl-{partition}", ca_id):
        ca = CertificateAuthority.objects.get(pk=ca_id)
        now = timezone.now()
        if not force:
            latest = latest_crl(ca, partition)
            if crl_is_current(ca, latest, now):
                return latest
        with transaction.atomic():
            CertificateAuthority.objects.filter(pk=ca_id).update(crl_number=F("crl_number") + 1)
            ca.refresh_from_db(fields=["crl_number", "revocation_generation"])
            number, generation = ca.crl_number, _generation(ca, partition)
        distribution_point = None
        if partition is not None:
            full = pki.PublicationURLs.for_ca(config.publication_url, ca.name).crl
            distribution_point = pki.crl_partition_url(full, partition)
        backend = authority.backend_for(ca, config.ca_passphrase_bytes())
        der = pki.issue_crl(
            backend,
            number,
            _revoked_entries(ca, now, partition),
            this_update=now,
            distribution_point=distribution_point,
        )
        facts = pki.crl_facts(der)
        with transaction.atomic():
            row = RevocationList.objects.create(
                ca=ca,
                partition=partition,
                number=number,
                this_update=facts.this_update,
                next_update=facts.next_update,
                generation=generation,
                entries=facts.entries,
                der=der,
            )
            kept = RevocationList.objects.filter(ca=ca, partition=partition).order_by("-number")
            stale = kept.values_list("pk", flat=True)[CRLS_KEPT:]
            RevocationList.objects.filter(pk__in=list(stale)).delete()
    log.info("%s issued with %d entries", row, facts.entries)
    return row


def crl_scopes(ca: CertificateAuthority) -> list[int | None]:
    """The CRLs `ca` keeps published: its full CRL (None), then the partitions with a CRL or a revocation
    already (another partition's CRL is made when it is first fetched)."""
    partitions = {
        *RevocationList.objects.filter(ca=ca, partition__isnull=False).values_list("partition", flat=True),
        *CRLPartition.objects.filter(ca=ca).values_list("index", flat=True),
    }
    return [None, *sorted(partitions)]


def current_crl(
    ca: CertificateAuthority, config: ServerConfig | None = None, partition: int | None = None
) -> RevocationList:
    """The CRL to serve: the stored one, regenerated first if a revocation or nextUpdate requires it.

    When regeneration fails (the CA key is unavailable to this process, say), a stored CRL that
    has not reached nextUpdate is still served: it is signed and honest about its thisUpdate.
    """
    latest = latest_crl(ca, partition)
    if crl_is_current(ca, latest):
        return latest
    try:
        return publish_crl(ca, config, force=False, partition=partition)
    except Exception:
        if latest is not None and latest.next_update > timezone.now():
            log.exception("cannot regenerate the CRL of %s; serving CRL #%d", ca.name, latest.number)
            return latest
        raise


def refresh_crls(config: ServerConfig | None = None, *, force: bool = False) -> list[RevocationList]:
    """Regenerate every CRL that needs it (all of them with `force`) and return the new ones: what `serve`
    runs every few seconds, so that a burst of revocations makes one CRL, not one each. The partitions
    are those with a CRL or a revocation already (another is made when first fetched).

    Checked without a lock first: a round with nothing to do costs two reads per CRL."""
    made = []
    for ca in CertificateAuthority.objects.order_by("pk"):
        for partition in crl_scopes(ca):
            if force or not crl_is_current(ca, latest_crl(ca, partition)):
                made.append(publish_crl(ca, config, force=force, partition=partition))
    return made


# --- OCSP ----------------------------------------------------------------------------------------


def status_of(ca: CertificateAuthority, serial: int) -> CertStatus:
    """What `ca`'s records say about `serial`: the same rows the CRL is made from, with the response signed
    ahead for it when that response still states the row's status.

    One indexed lookup per OCSP request, in plain SQL: the ORM's query compilation would cost
    more than the query and the signature together.
    """
    hex_serial = format(serial, "x")
    with connection.cursor() as cursor:
        cursor.execute(_STATUS_SQL, [ca.pk, hex_serial])
        row = cursor.fetchone()
    if row is not None:
        status, revoked_at, reason, ahead_status, der, this_update, next_update = row
        presigned = None
        if ahead_status == status:  # an answer signed before a revocation is never served after it
            presigned = pki.Presigned(bytes(der), _utc(this_update), _utc(next_update))
        if status != Certificate.Status.REVOKED:
            return CertStatus(ocsp.OCSPCertStatus.GOOD, presigned=presigned)
        return CertStatus(ocsp.OCSPCertStatus.REVOKED, _utc(revoked_at), reason, presigned)
    if CertificateAuthority.objects.filter(parent=ca, serial=hex_serial).exists():
        return GOOD  # a subordinate CA certificate (CA certificates are not revocable here)
    return UNKNOWN


_STATUS_SQL = (
    "SELECT c.status, c.revoked_at, c.revocation_reason, o.status, o.der, o.this_update, o.next_update "  # noqa: S608
    f"FROM {Certificate._meta.db_table} c LEFT JOIN {PresignedOCSPResponse._meta.db_table} o "
    "ON o.certificate_id = c.id WHERE c.ca_id = %s AND c.serial = %s"
)

_CA_HEAD_SQL = f"SELECT id, revocation_generation FROM {CertificateAuthority._meta.db_table} WHERE name = %s"  # noqa: S608

#: CA rows by name, per process, checked against the row's id on every use (a replaced CA is seen at once).
_cas: dict[str, CertificateAuthority] = {}


def _ca_row(name: str, pk: int) -> CertificateAuthority:
    cached = _cas.get(name)
    if cached is None or cached.pk != pk:
        cached = _cas[name] = CertificateAuthority.objects.get(pk=pk)
    return cached


@dataclass(frozen=True, slots=True)
class _KeptAnswer:
    answer: pki.OCSPAnswer
    head: tuple[int, int]  # the CA's id and revocation generation when the answer was made
    until: float  # time.time()


#: OCSP answers kept per process, by CA name and request bytes. One is reused while its CA's revocation
#: generation is unchanged (a revocation commits with its bump, so none is served after it), for at most
#: ANSWER_REUSE (answers signed ahead again then replace it) and never in its last PRESIGNED_MARGIN; at most
#: `ocsp_answers_kept` of them, the oldest dropped first.
_answers: dict[tuple[str, bytes], _KeptAnswer] = {}
_answers_lock = threading.Lock()
ANSWER_REUSE = dt.timedelta(minutes=5)
#: A one-certificate request is about 100 bytes (200 with a SHA-512 CertID); larger ones, padded with
#: extensions, would let a client fill the memory of every worker, and are not kept.
KEPT_REQUEST_BYTES = 512


def _keep(key: tuple[str, bytes], answer: pki.OCSPAnswer, head: tuple[int, int], kept: int) -> None:
    now = time.time()
    until = min(now + ANSWER_REUSE.total_seconds(), (answer.next_update - pki.ocsp.PRESIGNED_MARGIN).timestamp())
    with _answers_lock:
        while _answers and len(_answers) >= kept:
            del _answers[next(iter(_answers))]  # the oldest
        _answers[key] = _KeptAnswer(answer, head, until)


@dataclass(frozen=True)
class _CachedResponder:
    responder: pki.OCSPResponder
    renew_at: dt.datetime


_responders: dict[tuple[int, str], _CachedResponder] = {}
_responders_lock = threading.Lock()


def _responder_key_type(ca_cert: x509.Certificate) -> str:
    """EC CAs get a responder of the same curve; RSA CAs an RSA-2048 responder (30 days, fast to sign)."""
    key_type = pki.key_type_of(ca_cert.public_key())
    return key_type if key_type.startswith("ec-") else "rsa-2048"


def responder_dir(config: ServerConfig, ca: CertificateAuthority) -> Path:
    return config.data_dir / "ocsp" / ca.name


def _usable_responder(ca: CertificateAuthority, ca_cert: x509.Certificate, config: ServerConfig, now):
    """The newest recorded responder of `ca` whose key this host holds and that is not due for renewal."""
    directory = responder_dir(config, ca)
    rows = Certificate.objects.filter(
        ca=ca, profile=Certificate.Profile.OCSP_RESPONDER, status=Certificate.Status.ISSUED, not_after__gt=now
    ).order_by("-not_after")
    for row in rows:
        key_path = directory / f"{row.serial}.key"
        if not key_path.exists():
            continue  # another host's responder (several servers may share one database)
        cert = x509.load_pem_x509_certificate(row.pem.encode())
        if pki.responder_needs_renewal(cert, now):
            continue
        key = pki.read_encrypted_key(key_path, config.ca_passphrase_bytes())
        return pki.OCSPSigner(cert, key, ca_cert)
    return None


def _issue_responder(ca: CertificateAuthority, ca_cert: x509.Certificate, config: ServerConfig) -> pki.OCSPSigner:
    directory = responder_dir(config, ca)
    key = pki.generate_private_key(_responder_key_type(ca_cert))
    backend = authority.backend_for(ca, config.ca_passphrase_bytes())
    with transaction.atomic():
        cert = pki.issue_ocsp_responder_certificate(backend, key.public_key())
        row = authority.record(cert, ca, Certificate.Profile.OCSP_RESPONDER)
        pki.write_encrypted_key(key, directory / f"{row.serial}.key", config.ca_passphrase_bytes())
    log.info("OCSP responder certificate #%s issued for %s, valid until %s", row.serial, ca.name, row.not_after)
    for old in directory.glob("*.key"):  # keys of expired responders are of no use any more
        expired = Certificate.objects.filter(
            ca=ca, serial=old.stem, profile=Certificate.Profile.OCSP_RESPONDER, not_after__lte=timezone.now()
        )
        if expired.exists():
            old.unlink(missing_ok=True)
    return pki.OCSPSigner(cert, key, ca_cert)


def responder_for(ca: CertificateAuthority, config: ServerConfig | None = None) -> pki.OCSPResponder:
    """`ca`'s OCSP responder, built once per process and renewed once a third of its lifetime is left."""
    config = _config(config)
    cache_key = (ca.pk, ca.serial)
    now = timezone.now()
    cached = _responders.get(cache_key)
    if cached is not None and now < cached.renew_at:
        return cached.responder
    with _responders_lock:
        cached = _responders.get(cache_key)
        if cached is not None and now < cached.renew_at:
            return cached.responder
        ca_cert = x509.load_pem_x509_certificate(ca.certificate_pem.encode())
        with host_lock(responder_dir(config, ca)):
            signer = _usable_responder(ca, ca_cert, config, now) or _issue_responder(ca, ca_cert, config)
        responder = pki.OCSPResponder(signer)
        cert = signer.certificate
        lifetime = cert.not_valid_after_utc - cert.not_valid_before_utc
        renew_at = cert.not_valid_after_utc - lifetime * pki.ocsp.RESPONDER_RENEWAL_FRACTION
        _responders[cache_key] = _CachedResponder(responder, renew_at)
        return responder


def clear_responder_cache() -> None:
    """Forget the per-process responders, CA rows and answers (tests; after replacing a CA)."""
    with _responders_lock:
        _responders.clear()
        _cas.clear()
    with _answers_lock:
        _answers.clear()


#: Responses signed ahead per batch, and the time a round of `presign_ocsp` may take per CA.
PRESIGN_BATCH = 1_000
PRESIGN_ROUND = dt.timedelta(seconds=5)


def presign_ocsp(config: ServerConfig | None = None, *, round_time: dt.timedelta = PRESIGN_ROUND) -> int:
    """Sign ahead the OCSP response of each certificate that has none, whose response states another status,
    or whose response has less than half its lifetime left; at most `round_time` per CA (the CRL watcher of
    `serve` calls this every round, so a large CA is filled over several). One server at a time per CA.
    Returns how many were signed."""
    config = _config(config)
    signed = 0
    for ca in CertificateAuthority.objects.order_by("pk"):
        with one_at_a_time(config.data_dir, "ocsp-presign", ca.pk, wait=False) as mine:
            if not mine:
                continue
            responder = responder_for(ca, config)
            deadline = timezone.now() + round_time
            while timezone.now() < deadline:
                done = _presign_batch(ca, responder)
                signed += done
                if done < PRESIGN_BATCH:
                    break
    return signed


def _presign_batch(ca: CertificateAuthority, responder: pki.OCSPResponder) -> int:
    now = timezone.now()
    adapt = connection.ops.adapt_datetimefield_value
    with connection.cursor() as cursor:  # a responder certificate is never asked about (id-pkix-ocsp-nocheck)
        due = adapt(now + responder.validity / 2)
        cursor.execute(_DUE_SQL, [ca.pk, Certificate.Profile.OCSP_RESPONDER, adapt(now), due, PRESIGN_BATCH])
        rows = cursor.fetchall()
    made = []
    for pk, serial, status, revoked_at, reason in rows:
        if status == Certificate.Status.REVOKED:
            state = CertStatus(ocsp.OCSPCertStatus.REVOKED, _utc(revoked_at), reason)
        else:
            state = GOOD
        ahead = responder.presign(int(serial, 16), state, now=now)
        made.append(
            PresignedOCSPResponse(
                certificate_id=pk,
                status=status,
                der=ahead.der,
                this_update=ahead.this_update,
                next_update=ahead.next_update,
            )
        )
    with transaction.atomic():
        PresignedOCSPResponse.objects.filter(certificate_id__in=[r.certificate_id for r in made]).delete()
        PresignedOCSPResponse.objects.bulk_create(made)
    return len(made)


_DUE_SQL = (
    f"SELECT c.id, c.serial, c.status, c.revoked_at, c.revocation_reason FROM {Certificate._meta.db_table} c "  # noqa: S608
    f"LEFT JOIN {PresignedOCSPResponse._meta.db_table} o ON o.certificate_id = c.id "
    "WHERE c.ca_id = %s AND c.profile <> %s AND c.not_after > %s "
    "AND (o.certificate_id IS NULL OR o.status <> c.status OR o.next_update < %s) LIMIT %s"
)


def answer_ocsp(ca_name: str, request_der: bytes, config: ServerConfig | None = None) -> pki.OCSPAnswer:
    """The OCSP response for a request sent to `/ocsp/<ca_name>`; never raises.

    One SQL statement when the same request was answered before under the CA's current revocation
    generation (what mail clients and caches send again and again), else two; no signature unless
    the records hold no response signed ahead that states the status."""
    try:
        with connection.cursor() as cursor:
            cursor.execute(_CA_HEAD_SQL, [ca_name])
            head = cursor.fetchone()
        if head is None:
            return pki.unsuccessful_response(ocsp.OCSPResponseStatus.UNAUTHORIZED)
        head = (head[0], head[1])
        key = (ca_name, request_der)
        kept = _answers.get(key)
        if kept is not None and kept.head == head and time.time() < kept.until:
            return kept.answer
        ca = _ca_row(ca_name, head[0])
        config = _config(config)
        # The status is read after the generation: a revocation between the two is in the answer, and
        # its bump makes the next request read the records again.
        answer = responder_for(ca, config).respond(request_der, lambda serial: status_of(ca, serial))
        if answer.reusable and config.ocsp_answers_kept and len(request_der) <= KEPT_REQUEST_BYTES:
            _keep(key, answer, head, config.ocsp_answers_kept)
        return answer
    except Exception as exc:
        if database.away(exc, f"OCSP request to {ca_name}: tryLater", "OCSP"):  # RFC 6960 2.3: ask again later
            return pki.unsuccessful_response(ocsp.OCSPResponseStatus.TRY_LATER)
        log.exception("OCSP request to %s failed", ca_name)
        return pki.unsuccessful_response(ocsp.OCSPResponseStatus.INTERNAL_ERROR)


# --- certificate downloads (AIA caIssuers, Group Policy, guide 3.6 and error 41) ---------------


def ca_chain(ca: CertificateAuthority) -> list[x509.Certificate]:
    """`ca` and its parents up to the root, `ca` first."""
    chain = []
    while ca is not None:
        chain.append(x509.load_pem_x509_certificate(ca.certificate_pem.encode()))
        ca = ca.parent
    return chain


def find_ca(name: str) -> CertificateAuthority | None:
    """A CA by slug; `root` and `issuing` name the current root and active issuing CA."""
    try:
        if name == "root":
            return authority.root_ca()
        if name == "issuing":
            return authority.issuing_ca()
    except authority.CAError:
        return None
    return CertificateAuthority.objects.filter(name=name).first()


def _issued_by(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    if cert.issuer != issuer.subject:
        return False
    try:
        cert.verify_directly_issued_by(issuer)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def tls_issuer_chain(config: ServerConfig | None = None) -> list[x509.Certificate]:
    """The issuer of the server's TLS certificate and its parents, issuer first (guide error 41).

    This is what Group Policy must put in the clients' trusted roots for the agent to trust the
    HTTPS server: our root when `ca tls` issued the certificate, or the CA that issued a
    certificate configured with AUTOENROLL_TLS_CERT (found in that file or among our CAs), or the
    certificate itself when it is self-signed. Empty when none can be determined.
    """
    config = _config(config)
    try:
        certs = x509.load_pem_x509_certificates(config.tls_cert_path.read_bytes())
    except (OSError, ValueError):
        return []
    leaf, others = certs[0], certs[1:]
    if _issued_by(leaf, leaf):
        return [leaf]
    candidates = list(others)
    for ca in CertificateAuthority.objects.all():
        candidates.append(x509.load_pem_x509_certificate(ca.certificate_pem.encode()))
    chain: list[x509.Certificate] = []
    current = leaf
    while len(chain) < 8:
        issuer = next((c for c in candidates if _issued_by(current, c)), None)
        if issuer is None or issuer in chain:
            break
        chain.append(issuer)
        if _issued_by(issuer, issuer):
            break
        current = issuer
    return chain


def pkcs7_bundle(certs: list[x509.Certificate]) -> bytes:
    """A certs-only PKCS#7 (.p7b, DER): what the Windows certificate import wizard reads."""
    from cryptography.hazmat.primitives.serialization import pkcs7

    return pkcs7.serialize_certificates(certs, serialization.Encoding.DER)


def ocsp_serial_summary(answer: pki.OCSPAnswer) -> str:
    """One log word for an answer: good, revoked, unknown or the error status."""
    if not answer.successful:
        return answer.response_status.name.lower()
    return answer.cert_status.name.lower() if answer.cert_status else "?"
