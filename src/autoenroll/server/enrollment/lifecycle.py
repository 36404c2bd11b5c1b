"""The lifecycle of a certificate: issue, supersede, revoke, approve, reject.

Every entry point calls these and nothing else: the enrollment pipeline (the agent's calls and
MS-WSTEP), the admin pages, the REST API, the command line and the directory sweep. Each function
makes the whole of a change in one place: the rows, the audit event (in the same transaction), AD's
userCertificate (after commit) and the CA's revocation generation. OCSP answers from the rows, so a
revocation shows there at once; the CRL is regenerated off the request path, coalesced
(`publication.refresh_crls`, run by `serve`), and is never served without the revocation
(`publication.current_crl`).

Issuance is serialised per person (a row lock held until the transaction ends), idempotent (the same
public key presented again gets its certificate back), and bounded (a person holds at most
`max_valid_certificates` valid certificates).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from cryptography import x509
from django.conf import settings
from django.db import DatabaseError, connection, transaction
from django.db.models import F, QuerySet
from django.utils import timezone

from autoenroll import pki
from autoenroll.protocol import EnrollmentError
from autoenroll.server import metrics
from autoenroll.server.certificates import authority
from autoenroll.server.certificates.models import Certificate, CertificateAuthority, RevocationReason
from autoenroll.server.config import ConfigError
from autoenroll.server.directory.models import Person
from autoenroll.server.directory.publication import publish
from autoenroll.server.utils import database, rows

from . import configuration, events
from .configuration import Configuration
from .models import EnrollmentEvent, EnrollmentRequest

log = logging.getLogger("autoenroll.enrollment")
Step = EnrollmentEvent.Step


def max_valid_certificates() -> int:
    return settings.CONFIG.max_valid_certificates


# --- issue -----------------------------------------------------------------------------------------


def check_mail_domain(conf: Configuration, customer_id: int, mail: str, organization_id: int | None) -> None:
    """The mail's domain is the customer's (4), authorized (5) and held by the organization (8)."""
    name = mail.rpartition("@")[2].lower()
    domain = conf.domains.get(name)
    if domain is None or domain.customer_id != customer_id:
        raise EnrollmentError(4, f"{name} is not a domain of {conf.customer(customer_id) or customer_id}")
    if not domain.authorized:
        raise EnrollmentError(5, f"{name} is not authorized")
    if organization_id is not None and name not in conf.organization_domains.get(organization_id, ()):
        raise EnrollmentError(8, f"organization {organization_id} does not hold {name}")


def check_customer(customer) -> None:
    """A disabled customer's users get nothing done: no certificate, no installation report (3)."""
    if not customer.enabled:
        raise EnrollmentError(3, f"customer {customer.uri}")


def check_issuable(conf: Configuration, person: Person) -> None:
    """What must hold at the moment a certificate is signed, whoever asks (a logon, MS-WSTEP, an approval
    of a request made last week, the command line): the customer enabled (3), the person enabled (17)
    with a mail (16) of an authorized domain of the customer (4, 5), in a live organization of the
    customer that holds the domain (8). `person` carries the organization the caller resolved."""
    customer = conf.customer(person.customer_id)
    if customer is None:
        raise EnrollmentError(3, f"customer {person.customer_id} no longer exists")
    check_customer(customer)
    if not person.enabled:
        raise EnrollmentError(17, f"{person.principal} is disabled in AD")
    if not person.mail:
        raise EnrollmentError(16, f"AD holds no mail for {person.principal}")
    if person.organization_id is not None:
        org = conf.organizations.get(person.organization_id)
        if org is None or org.deleted or org.customer_id != customer.pk:
            raise EnrollmentError(8, f"organization {person.organization_id} is not a live organization of {customer}")
    check_mail_domain(conf, customer.pk, person.mail, person.organization_id)


def _valid_smime(**filters) -> QuerySet:
    return Certificate.objects.valid().filter(profile=Certificate.Profile.SMIME, **filters)


#: What decides an issuance, read with the person in one statement. Written out rather than built with
#: the ORM: on the hot path, compiling three correlated subqueries cost more than running them.
_PERSON_FACTS = """
SELECT {columns},
  (SELECT COUNT(*) FROM {cert} c WHERE c.person_id = p.id AND {valid}) AS held,
  (SELECT c.id FROM {cert} c WHERE c.person_id = p.id AND {valid} AND c.public_key_sha256 = %s
    ORDER BY c.not_after DESC, c.id DESC LIMIT 1) AS same_key,
  EXISTS (SELECT 1 FROM {cert} c WHERE c.public_key_sha256 = %s AND (c.person_id IS NULL OR c.person_id <> p.id))
    AS key_elsewhere,
  EXISTS (SELECT 1 FROM {cert} c WHERE c.public_key_sha256 = %s AND c.revocation_reason = 'key_compromise')
    AS key_compromised
FROM {person} p WHERE p.customer_id = %s AND p.principal = %s
""".format(  # noqa: S608 - table names from the models; every value is a parameter
    columns=rows.select_list(Person, "p"),
    cert=Certificate._meta.db_table,
    person=Person._meta.db_table,
    valid="c.profile = 'smime' AND c.status = 'issued' AND c.not_before <= %s AND c.not_after > %s",
)


def locked_person(customer_id: int, principal: str, public_key_hash: str) -> Person | None:
    """The person, locked until the transaction ends, with what decides an issuance for this key:
    `held` (valid certificates), `same_key` (a valid one for this key), `key_elsewhere` (the key is
    certified for someone else) and `key_compromised` (a certificate of this key was revoked for it).

    SQLite: one statement (the transaction began IMMEDIATE: the write lock is held already).
    PostgreSQL: the row lock first, then the facts in a statement of their own, because a statement's
    subqueries read the snapshot taken before it waited for the lock and would miss what the previous
    holder of the lock just committed."""
    if connection.features.has_select_for_update:
        # order_by(): Person's default ordering joins the customer, whose row FOR UPDATE would lock too,
        # serialising every logon of the customer instead of the person's.
        people = Person.objects.filter(customer_id=customer_id, principal=principal).order_by()
        if not list(people.select_for_update(of=("self",)).values_list("pk")):
            return None
    now = timezone.now()
    params = [now, now, now, now, public_key_hash, public_key_hash, public_key_hash, customer_id, principal]
    person = next(iter(rows.select(Person, _PERSON_FACTS, params)), None)
    if person is not None:
        person.key_elsewhere, person.key_compromised = bool(person.key_elsewhere), bool(person.key_compromised)
    return person


def lock(person: Person, public_key_hash: str) -> Person:
    """`locked_person` for a person at hand (approvals, MS-WSTEP, the command line)."""
    locked = locked_person(person.customer_id, person.principal, public_key_hash)
    if locked is None:
        raise EnrollmentError(28, f"{person.principal} is no longer a person of {person.customer}")
    locked.customer, locked.ad_server, locked.organization = person.customer, person.ad_server, person.organization
    return locked


@dataclass(frozen=True)
class Issued:
    certificate: Certificate
    new: bool  # False: the same key came again and got its certificate back


def issue(
    person: Person,
    public_key: pki.PublicKey,
    *,
    csr_pem: str = "",
    ca: CertificateAuthority | None = None,
    template: x509.MSCertificateTemplate | None = None,
    replaces: Certificate | None = None,
    step: str = Step.ENROLL,
    remote_addr: str | None = None,
    message: str = "",
    conf: Configuration | None = None,
) -> Issued:
    """Sign and record an S/MIME certificate for the person's AD mail, with its audit event, inside the
    caller's transaction; `person` comes from `locked_person`/`lock`. Publishes to AD after commit.

    The errors of `check_issuable`; 15 when the key is certified for someone else or was revoked for key
    compromise; 25 when the CA cannot sign; 30 when the database refuses the row. `conf`: the caller's
    configuration, when it read one already."""
    check_issuable(conf or configuration.current(), person)
    if person.key_elsewhere:
        raise EnrollmentError(15, "this public key is certified for another person")
    if person.key_compromised:
        raise EnrollmentError(15, "a certificate of this public key was revoked for key compromise: make a new key")
    certificate = already_issued(person, replaces)
    if certificate is not None:
        _event(step, person, certificate=certificate, remote_addr=remote_addr, message="same key: same certificate")
        # the first answer may have been lost before its publication, or AD was away: publish again
        transaction.on_commit(lambda: publish(person, add_pem=certificate.pem))
        return Issued(certificate, new=False)
    try:
        certificate = authority.issue_smime(
            settings.CONFIG,
            public_key,
            person.mail,
            person=person,
            csr_pem=csr_pem,
            replaces=replaces,
            template=template,
            ca=ca,
            public_key_sha256=authority.key_sha256(public_key),
        )
    except (authority.CAError, pki.PKIError, ConfigError) as exc:  # no CA, key or passphrase: the guide's 25
        raise EnrollmentError(25, f"CA: {exc}") from None
    except DatabaseError as exc:
        raise database.refusal(30, exc) from None
    except ValueError as exc:
        raise EnrollmentError(30, f"{type(exc).__name__}: {exc}") from None
    _event(step, person, certificate=certificate, remote_addr=remote_addr, message=message)
    if person.held + 1 > max_valid_certificates():
        _bound(person, certificate)
    transaction.on_commit(lambda: publish(person, add_pem=certificate.pem))
    transaction.on_commit(lambda: metrics.CERTIFICATES_ISSUED.labels(certificate.profile).inc())
    return Issued(certificate, new=True)


def already_issued(person: Person, replaces: Certificate | None = None) -> Certificate | None:
    """The valid certificate the person holds for this key (`locked_person`'s `same_key`), which a retry
    gets back instead of a second signature; None when AD changed the mail since, or when it is not the
    renewal of `replaces` that was asked (a renewal that keeps its key is signed once)."""
    if person.same_key is None:
        return None
    certificate = Certificate.objects.select_related("ca").get(pk=person.same_key)
    if certificate.mail.lower() != person.mail.lower():
        return None
    if replaces is not None and certificate.replaces_id != replaces.pk:
        return None
    return certificate


def _bound(person: Person, newest: Certificate) -> None:
    """Keep the person at `max_valid_certificates`: revoke (superseded) the oldest of the others,
    those never reported installed first, so that retries and runaway clients cannot pile up keys."""
    others = _valid_smime(person=person).exclude(pk=newest.pk)
    oldest_first = others.order_by(F("installed_at").asc(nulls_first=True), "not_before", "pk")
    excess = oldest_first.values_list("pk", flat=True)[: max(0, person.held + 1 - max_valid_certificates())]
    if excess:
        limit = f"limit of {max_valid_certificates()} valid certificates"
        revoke(Certificate.objects.filter(pk__in=list(excess)), RevocationReason.SUPERSEDED, by=limit)


# --- supersede, revoke -----------------------------------------------------------------------------


#: The first installation report wins (COALESCE); a report naming no replaced certificate keeps the
#: one recorded. Written out: the ORM's update compilation cost more than the statement.
_INSTALLED = (
    f"UPDATE {Certificate._meta.db_table} "  # noqa: S608 - table name from the model
    "SET installed_at = COALESCE(installed_at, %s), replaces_id = COALESCE(%s, replaces_id) WHERE id = %s"
)


def supersede(
    installed: Certificate,
    replaced: Certificate | None,
    *,
    by: str,
    remote_addr: str | None = None,
    message: str = "",
) -> bool:
    """The agent installed `installed`: record it (with the status event), and revoke `replaced`
    (superseded), once. Idempotent: reporting again, or after `replaced` was revoked already, changes
    nothing and is not an error. Returns whether this call revoked `replaced`."""
    person = installed.person
    reported = _event_row(Step.STATUS, person, certificate=installed, remote_addr=remote_addr, message=message)
    with transaction.atomic(savepoint=False):  # the caller's transaction when there is one
        with connection.cursor() as cursor:
            cursor.execute(_INSTALLED, [timezone.now(), replaced.pk if replaced else None, installed.pk])
        done = _revoke([replaced] if replaced else [], RevocationReason.SUPERSEDED, by, remote_addr, [reported])
    log.info("certificate %s installed by %s", installed.serial, person.principal)
    return bool(done)


def revoke(
    certificates: Iterable[Certificate] | QuerySet,
    reason: str,
    *,
    by: str,
    remote_addr: str | None = None,
    batch_size: int = 500,
    progress: Callable[[int], None] | None = None,
) -> list[Certificate]:
    """Revoke every certificate of `certificates` that is still issued, in one transaction: the rows,
    one audit event each, the CA's revocation generation; after commit, each person's AD entry.
    Certificates already revoked keep their first revocation. Returns those revoked now.

    Pass a queryset for many (they are read with their persons); instances are used as they are."""
    if isinstance(certificates, QuerySet):
        certificates = certificates.filter(status=Certificate.Status.ISSUED).select_related(
            "person__customer", "person__ad_server"
        )
    return _revoke(list(certificates), reason, by, remote_addr, [], batch_size, progress)


def _revoke(
    certificates: list[Certificate],
    reason: str,
    by: str,
    remote_addr: str | None,
    events: list[EnrollmentEvent],
    batch_size: int = 500,
    progress: Callable[[int], None] | None = None,
) -> list[Certificate]:
    """`revoke`, recording `events` with the revocations' own in one insert."""
    done: list[Certificate] = []
    with transaction.atomic(savepoint=False):  # the caller's transaction when there is one
        for start in range(0, len(certificates), batch_size):
            revoked = authority.revoke_rows(certificates[start : start + batch_size], reason, by=by)
            done += revoked
            if progress is not None:
                progress(len(revoked))
        events += [
            _event_row(
                Step.REVOKE,
                c.person,
                certificate=c,
                remote_addr=remote_addr,
                message=f"revoked by {by}: {c.get_revocation_reason_display()}",
            )
            for c in done
        ]
        rows.insert_all(events, batch_size=batch_size)
        if done:
            transaction.on_commit(lambda: _unpublish(done))
            transaction.on_commit(lambda: _count_revoked(done, reason))
    for c in done:
        log.info("certificate %s revoked by %s (%s)", c.serial, by, c.revocation_reason)
    return done


def revoke_on_deletion(sender, instance: Person, origin=None, **_) -> None:
    """A person deleted (with their customer) leaves no valid certificate behind:
    afterwards no page, API or sweep could see or revoke it (they reach certificates through persons)."""
    what = f"{origin._meta.verbose_name} {origin}" if hasattr(origin, "_meta") else f"person {instance.principal}"
    revoke(_valid_smime(person=instance), RevocationReason.CESSATION_OF_OPERATION, by=f"deletion of {what}")


def _count_revoked(certificates: list[Certificate], reason: str) -> None:
    metrics.CERTIFICATES_REVOKED.labels(reason).inc(len(certificates))
    metrics.ENROLLMENT_STEPS.labels(Step.REVOKE, EnrollmentEvent.Outcome.SUCCESS, "").inc(len(certificates))


def _unpublish(certificates: list[Certificate]) -> None:
    for c in certificates:
        if c.person is not None:
            publish(c.person, remove_pem=c.pem)


# --- approve, reject -------------------------------------------------------------------------------


def approve(request_id, *, by: str) -> EnrollmentRequest:
    """An administrator lets a pending request through: issued now, once, however many approve at once;
    approving it again answers it as it is (a retry after a lost answer). ValueError when it was
    rejected; EnrollmentError when it cannot be issued now, by the rules of any issuance (it stays
    pending)."""
    with transaction.atomic():
        request = _pending(request_id, decided=EnrollmentRequest.Status.ISSUED)
        if request.status != EnrollmentRequest.Status.PENDING:
            return request
        public_key = pki.public_key_from_csr(request.csr_pem.encode())
        person = lock(request.person, authority.key_sha256(public_key))
        issued = issue(
            person,
            public_key,
            csr_pem=request.csr_pem,
            template=request.template,
            replaces=request.replaces,  # a Windows renewal held for approval renews its certificate
            message=f"approved by {by}",
        )
        request.certificate, request.status, request.decided_by = issued.certificate, request.Status.ISSUED, by
        request.save(update_fields=["certificate", "status", "decided_by", "updated"])
    return request


def reject(request_id, *, by: str) -> EnrollmentRequest:
    """An administrator refuses a pending request; the agent's next poll answers error 25. Rejecting it
    again answers it as it is; ValueError when it was issued."""
    with transaction.atomic():
        request = _pending(request_id, decided=EnrollmentRequest.Status.REJECTED)
        if request.status != EnrollmentRequest.Status.PENDING:
            return request
        request.status, request.decided_by, request.error_code = EnrollmentRequest.Status.REJECTED, by, 25
        request.save(update_fields=["status", "decided_by", "error_code", "updated"])
        error = EnrollmentError(25, f"request {request.pk} rejected by {by}")
        _event(Step.ENROLL, request.person, error=error, organization=request.organization)
    return request


def _pending(request_id, decided: str) -> EnrollmentRequest:
    """The request, locked; ValueError unless it is pending or already `decided` so."""
    request = (
        EnrollmentRequest.objects.select_for_update(of=("self",))
        .select_related("person__customer", "person__ad_server", "person__organization", "customer", "organization")
        .select_related("replaces")
        .get(pk=request_id)
    )
    if request.status not in (EnrollmentRequest.Status.PENDING, decided):
        raise ValueError(f"request {request.pk} is {request.get_status_display().lower()}, not pending")
    return request


# --- the audit event -------------------------------------------------------------------------------


def _event_row(
    step: str,
    person: Person | None,
    *,
    certificate: Certificate | None = None,
    error: EnrollmentError | None = None,
    organization=None,
    remote_addr: str | None = None,
    message: str = "",
) -> EnrollmentEvent:
    """An event about `person`, with the customer and organization it belongs to."""
    return events.event(
        step,
        person.principal if person else "",
        error=error,
        message=message,
        customer_id=person.customer_id if person else None,
        organization_id=organization.pk if organization is not None else getattr(person, "organization_id", None),
        person=person,
        certificate=certificate,
        remote_addr=remote_addr,
    )


def _event(step: str, person: Person | None, **fields) -> EnrollmentEvent:
    """An event saved inside the caller's transaction: counted for the metrics once it commits."""
    row = _event_row(step, person, **fields)
    rows.insert(row)
    transaction.on_commit(lambda: metrics.count_step(step, row.error_code, outcome=row.outcome))
    return row
