"""The enrollment pipeline: sync -> enroll -> status, with the guide's decisions and numbered errors.

Plain functions over models, no web layer: the views (and the MS-WSTEP service) call them with the
Kerberos principal that authenticated the request. The identity that ends up in a certificate is
the one AD holds for that principal, never what the request claims.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import timedelta

from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from django.conf import settings
from django.db import DatabaseError, IntegrityError, transaction
from django.utils import timezone

from autoenroll import pki
from autoenroll.protocol import EnrollmentError
from autoenroll.protocol import messages as msg
from autoenroll.server.certificates import authority
from autoenroll.server.certificates.models import Certificate, RevocationReason
from autoenroll.server.directory.models import ADServer, Person
from autoenroll.server.directory.publication import publish
from autoenroll.server.directory.sync import read_user, store_person
from autoenroll.server.kerberos.models import KerberosRealm
from autoenroll.server.tenants.models import Customer, EmailDomain, Organization

from .events import record_error, record_success
from .models import EnrollmentEvent, EnrollmentRequest

log = logging.getLogger("autoenroll.enrollment")

# A person must have been synced this recently for enroll: sync and enroll belong to one logon.
SYNC_MAX_AGE = timedelta(minutes=15)
Step = EnrollmentEvent.Step


@dataclass(frozen=True)
class Caller:
    """Who is asking: the authenticated Kerberos principal, the realm that accepted it, the address."""

    principal: str
    realm: KerberosRealm | None = None
    remote_addr: str | None = None


@dataclass
class SyncResult:
    customer: Customer
    organization: Organization | None
    ad_server: ADServer
    person: Person

    def as_dict(self) -> dict:
        return {
            "principal": self.person.principal,
            "email": self.person.mail,
            "cn": self.person.cn,
            "orgid": str(self.organization.pk) if self.organization else None,
            "customeruri": self.customer.uri,
        }


class _Audit:
    """Collects what a step resolved so that every outcome is recorded with it."""

    def __init__(self, step: str, caller: Caller) -> None:
        self.step, self.caller, self.refs = step, caller, {}

    def __enter__(self) -> _Audit:
        return self

    def __exit__(self, exc_type, exc, tb) -> bool:
        if isinstance(exc, EnrollmentError):
            record_error(self.step, self.caller.principal, exc, remote_addr=self.caller.remote_addr, **self.refs)
        return False

    def success(self, **refs) -> None:
        self.refs.update(refs)
        record_success(self.step, self.caller.principal, remote_addr=self.caller.remote_addr, **self.refs)


def _text(value) -> str:
    return value.strip() if isinstance(value, str) else ""


def _principal(caller: Caller) -> tuple[str, str]:
    """(name, realm) of the authenticated principal; error 27 when there is none."""
    name, at, realm = caller.principal.partition("@")
    if not name or not at or not realm or "/" in name or name.endswith("$"):
        # services (HTTP/host) and computer accounts (WS1$) hold tickets too, but are not mail users
        raise EnrollmentError(27, f"not a user principal: {caller.principal!r}")
    return name, realm


def _customer(data: dict, caller: Caller, audit: _Audit) -> Customer:
    uri = _text(data.get("customeruri"))
    if not uri:
        raise EnrollmentError(1)
    customer = Customer.objects.filter(uri=uri).first()
    if customer is None:
        raise EnrollmentError(2, f"customeruri {uri!r}")
    audit.refs["customer"] = customer
    if not customer.enabled:
        raise EnrollmentError(3, f"customer {uri}")
    _principal(caller)
    if caller.realm is not None and caller.realm.customer_id not in (None, customer.pk):
        raise EnrollmentError(20, f"realm {caller.realm.domain} belongs to customer {caller.realm.customer}")
    return customer


def _organization(data: dict, customer: Customer, audit: _Audit) -> Organization | None:
    raw = data.get("orgid")
    if raw in (None, ""):
        return None
    text = str(raw).strip()
    if not text.isdigit():
        raise EnrollmentError(6, f"orgid {raw!r}")
    org = Organization.objects.select_related("ad_server").filter(pk=int(text)).first()
    if org is None:
        raise EnrollmentError(7, f"orgid {text}")
    if org.customer_id != customer.pk or org.deleted:
        raise EnrollmentError(8, f"organization {org.pk} is not a live organization of {customer}")
    audit.refs["organization"] = org
    return org


def _ad_server(customer: Customer, org: Organization | None, windows_domain: str) -> ADServer:
    """The organization's AD server, else the customer's default; or the one for the user's domain."""
    servers = list(customer.ad_servers.all())
    if not servers:
        raise EnrollmentError(9, f"customer {customer} has no AD server")
    if org is not None:
        server = org.ad_server or next((s for s in servers if s.is_default), None)
        if server is None:
            raise EnrollmentError(9, f"organization {org.pk} has no AD server and {customer} no default")
        if server.domain != windows_domain:
            raise EnrollmentError(10, f"AD server domain {server.domain} != user's Windows domain {windows_domain}")
        return server
    matching = [s for s in servers if s.domain == windows_domain]
    if not matching:
        raise EnrollmentError(12, f"no AD server of {customer} for domain {windows_domain}")
    return next((s for s in matching if s.is_default), matching[0])


def _suitable_organization(customer: Customer, server: ADServer, mail_domain: str) -> Organization:
    """Without an orgid: the live organization bound to this AD server (or to none, when the server is
    the default) that holds the user's mail domain."""
    orgs = Organization.objects.filter(customer=customer, deleted=False).prefetch_related("domains")
    bound = orgs.filter(ad_server=server)
    if server.is_default:
        bound = bound | orgs.filter(ad_server__isnull=True)
    for org in bound.order_by("pk"):
        if any(d.name == mail_domain for d in org.domains.all()):
            return org
    raise EnrollmentError(11, f"no organization of {customer} on AD server {server} holds {mail_domain}")


def _check_mail_domain(customer: Customer, mail: str, org: Organization | None) -> None:
    domain_name = mail.rpartition("@")[2].lower()
    domain = EmailDomain.objects.filter(customer=customer, name=domain_name).first()
    if domain is None:
        raise EnrollmentError(4, f"{domain_name} is not a domain of {customer}")
    if not domain.authorized:
        raise EnrollmentError(5, f"{domain_name} is not authorized")
    if org is not None and not org.domains.filter(pk=domain.pk).exists():
        raise EnrollmentError(8, f"organization {org.pk} does not hold {domain_name}")


# --- sync ------------------------------------------------------------------------------------


def sync(caller: Caller, data: dict) -> SyncResult:
    """Resolve customer, organization and AD server, read the user from AD and store the person."""
    with _Audit(Step.SYNC, caller) as audit:
        customer = _customer(data, caller, audit)
        _, realm_name = _principal(caller)
        windows_domain = realm_name.lower()
        claimed_domain = _text(data.get("domainname")).lower()
        org = _organization(data, customer, audit)
        server = _ad_server(customer, org, windows_domain)
        if claimed_domain and claimed_domain != server.domain:
            raise EnrollmentError(10, f"domainname {claimed_domain} != AD server domain {server.domain}")
        user = read_user(server, caller.principal)
        claimed_mail = _text(data.get("email")).lower()
        if user.mail:
            _check_mail_domain(customer, user.mail, org)
            if org is None:
                org = _suitable_organization(customer, server, user.mail.rpartition("@")[2].lower())
                audit.refs["organization"] = org
            if claimed_mail and claimed_mail != user.mail.lower():
                raise EnrollmentError(18, f"request says {claimed_mail}, AD says {user.mail}")
        elif claimed_mail:
            raise EnrollmentError(16, f"AD holds no mail for {caller.principal}, request says {claimed_mail}")
        person = store_person(customer, server, caller.principal, user, org)
        audit.success(person=person)
        return SyncResult(customer, org, server, person)


# --- enroll ----------------------------------------------------------------------------------


def _csr_identity_check(csr: x509.CertificateSigningRequest, person: Person) -> None:
    """Refuse a CSR that asks for another identity (18/19) or for more than an S/MIME certificate (15)."""
    mail = person.mail.lower()
    for attr in csr.subject.get_attributes_for_oid(NameOID.EMAIL_ADDRESS):
        if str(attr.value).lower() != mail:
            raise EnrollmentError(18, f"CSR emailAddress {attr.value} != AD mail {person.mail}")
    for attr in csr.subject.get_attributes_for_oid(NameOID.COMMON_NAME):
        value = str(attr.value)
        if "@" in value:
            if value.lower() != mail:
                raise EnrollmentError(18, f"CSR CN {value} != AD mail {person.mail}")
        elif value.lower() not in {person.cn.lower(), person.sam_account_name.lower()}:
            raise EnrollmentError(19, f"CSR CN {value!r} != AD CN {person.cn!r}")
    for ext in csr.extensions:
        value = ext.value
        if isinstance(value, x509.SubjectAlternativeName):
            for name in value:
                if not isinstance(name, x509.RFC822Name):
                    raise EnrollmentError(15, f"CSR asks for a {type(name).__name__} subject alternative name")
                if name.value.lower() != mail:
                    raise EnrollmentError(18, f"CSR asks for {name.value}, AD mail is {person.mail}")
        elif isinstance(value, x509.BasicConstraints) and value.ca:
            raise EnrollmentError(15, "CSR asks for a CA certificate")
        elif isinstance(value, x509.ExtendedKeyUsage):
            extra = [u.dotted_string for u in value if u != ExtendedKeyUsageOID.EMAIL_PROTECTION]
            if extra:
                raise EnrollmentError(15, f"CSR asks for extended key usages {', '.join(extra)}")


def _synced_person(customer: Customer, caller: Caller) -> Person:
    person = (
        Person.objects.select_related("customer", "ad_server", "organization")
        .filter(customer=customer, principal=caller.principal)
        .first()
    )
    if person is None:
        other = Person.objects.filter(principal=caller.principal).exclude(customer=customer).exists()
        if other:
            raise EnrollmentError(20, f"{caller.principal} is synced for another customer, not {customer}")
        raise EnrollmentError(28, f"{caller.principal} never synced for {customer}")
    if person.synced_at is None or timezone.now() - person.synced_at > SYNC_MAX_AGE:
        raise EnrollmentError(28, f"{caller.principal} last synced {person.synced_at}; sync first")
    return person


def enroll(caller: Caller, data: dict, template: x509.MSCertificateTemplate | None = None) -> EnrollmentRequest:
    """Check the CSR against the synced person and issue (or hold it for approval). `template` is the
    Windows certificate template to name in the certificate (CES requests only; never from the JSON)."""
    with _Audit(Step.ENROLL, caller) as audit:
        customer = _customer(data, caller, audit)
        org = _organization(data, customer, audit)
        claimed_mail = _text(data.get("email")).lower()
        if not claimed_mail:
            raise EnrollmentError(26)
        csr_text = data.get("csr")
        if not isinstance(csr_text, str) or not csr_text.strip():
            raise EnrollmentError(29)
        person = _synced_person(customer, caller)
        audit.refs["person"] = person
        if not person.enabled:
            raise EnrollmentError(17, f"{caller.principal} is disabled in AD")
        if not person.mail:
            raise EnrollmentError(16, f"AD holds no mail for {caller.principal}")
        if claimed_mail != person.mail.lower():
            raise EnrollmentError(18, f"request says {claimed_mail}, AD says {person.mail}")
        claimed_cn = _text(data.get("cn"))
        if claimed_cn and claimed_cn.lower() != person.cn.lower():
            raise EnrollmentError(19, f"request says CN {claimed_cn!r}, AD says {person.cn!r}")
        org = org or person.organization
        if org is not None:
            _check_mail_domain(customer, person.mail, org)
        try:
            public_key = pki.public_key_from_csr(csr_text.encode())
            csr = x509.load_pem_x509_csr(csr_text.encode())
        except (pki.InvalidCSR, pki.PKIError, ValueError) as exc:
            raise EnrollmentError(15, str(exc)) from None
        _csr_identity_check(csr, person)
        request = EnrollmentRequest.objects.create(
            customer=customer,
            person=person,
            organization=org,
            csr_pem=csr_text.strip() + "\n",
            template_oid=template.template_id.dotted_string if template else "",
            template_major_version=(template.major_version or 0) if template else 0,
            template_minor_version=(template.minor_version or 0) if template else 0,
        )
        if customer.require_approval:
            _record_pending(caller, request)
            return request
        _issue(request, public_key)
        audit.success(person=person, certificate=request.certificate)
        publish(person, add_pem=request.certificate.pem)
        return request


def _record_pending(caller: Caller, request: EnrollmentRequest) -> None:
    EnrollmentEvent.objects.create(
        step=Step.ENROLL,
        outcome=EnrollmentEvent.Outcome.PENDING,
        principal=caller.principal,
        customer=request.customer,
        organization=request.organization,
        person=request.person,
        remote_addr=caller.remote_addr,
        message="waiting for approval",
    )


def _issue(request: EnrollmentRequest, public_key) -> None:
    """Sign and record in one transaction: a certificate that leaves the server is in the database."""
    try:
        with transaction.atomic():
            cert = authority.issue_smime(
                settings.CONFIG,
                public_key,
                request.person.mail,
                person=request.person,
                csr_pem=request.csr_pem,
                template=request.template,
            )
            request.certificate = cert
            request.status = EnrollmentRequest.Status.ISSUED
            request.save(update_fields=["certificate", "status", "updated"])
    except (authority.CAError, pki.PKIError) as exc:
        _fail(request, 25)
        raise EnrollmentError(25, f"CA: {exc}") from None
    except (DatabaseError, IntegrityError, ValueError) as exc:
        _fail(request, 30)
        raise EnrollmentError(30, f"{type(exc).__name__}: {exc}") from None


def _fail(request: EnrollmentRequest, code: int) -> None:
    try:
        EnrollmentRequest.objects.filter(pk=request.pk).update(status=EnrollmentRequest.Status.FAILED, error_code=code)
    except DatabaseError:
        log.exception("cannot mark request %s failed", request.pk)


def approve(request: EnrollmentRequest, approved_by: str) -> EnrollmentRequest:
    """An administrator lets a pending request through; the agent's next poll collects it."""
    if request.status != EnrollmentRequest.Status.PENDING:
        raise ValueError(f"request {request.pk} is {request.status}, not pending")
    request.decided_by = approved_by
    request.save(update_fields=["decided_by", "updated"])
    public_key = pki.public_key_from_csr(request.csr_pem.encode())
    caller = Caller(principal=request.person.principal)
    with _Audit(Step.ENROLL, caller) as audit:
        audit.refs.update(customer=request.customer, person=request.person)
        _issue(request, public_key)
        audit.success(certificate=request.certificate)
    publish(request.person, add_pem=request.certificate.pem)
    return request


def reject(request: EnrollmentRequest, rejected_by: str) -> EnrollmentRequest:
    """An administrator refuses a pending request; the agent's next poll answers error 25."""
    updated = EnrollmentRequest.objects.filter(pk=request.pk, status=EnrollmentRequest.Status.PENDING).update(
        status=EnrollmentRequest.Status.REJECTED, decided_by=rejected_by, error_code=25
    )
    if not updated:
        raise ValueError(f"request {request.pk} is {request.status}, not pending")
    request.refresh_from_db()
    record_error(
        Step.ENROLL,
        request.person.principal,
        EnrollmentError(25, f"request {request.pk} rejected by {rejected_by}"),
        customer=request.customer,
        person=request.person,
    )
    return request


def poll(caller: Caller, request_id: str) -> EnrollmentRequest:
    """The agent asks again for a pending request; only its own requests are visible to it."""
    with _Audit(Step.ENROLL, caller) as audit:
        _principal(caller)
        request = (
            EnrollmentRequest.objects.select_related("certificate", "person", "customer")
            .filter(pk=request_id if _is_uuid(request_id) else None, person__principal=caller.principal)
            .first()
        )
        if request is None:
            raise EnrollmentError(25, f"no request {request_id} for {caller.principal}")
        audit.refs.update(customer=request.customer, person=request.person)
        if request.status in (EnrollmentRequest.Status.FAILED, EnrollmentRequest.Status.REJECTED):
            raise EnrollmentError(25, f"request {request_id} {request.status}")
        return request


def _is_uuid(value: str) -> bool:
    import uuid

    try:
        uuid.UUID(str(value))
    except ValueError:
        return False
    return True


def request_answer(request: EnrollmentRequest) -> dict:
    """The enroll/poll answer: the certificate with its chain, or a pending marker."""
    if request.status == EnrollmentRequest.Status.ISSUED:
        cert = request.certificate
        return {
            "request_id": str(request.pk),
            "status": msg.REQUEST_ISSUED,
            "certificate": cert.pem,
            "chain": authority.chain_pem(cert.ca),
            "serial": cert.serial,
        }
    return {"request_id": str(request.pk), "status": msg.REQUEST_PENDING, "retry_after": 5}


# --- status ----------------------------------------------------------------------------------


def _serial(value, field: str) -> str:
    text = _text(value).lower().removeprefix("0x").replace(":", "")
    if not text or len(text) > 64 or any(c not in "0123456789abcdef" for c in text):
        raise EnrollmentError(24, f"{field} {value!r} is not a hexadecimal serial number")
    return text.lstrip("0") or "0"


def report_status(caller: Caller, data: dict) -> Certificate | None:
    """The agent says it installed (or failed to install) a certificate; on install with the
    certificate it replaces, that one is revoked as superseded. Returns the revoked certificate."""
    with _Audit(Step.STATUS, caller) as audit:
        customer = _customer(data, caller, audit)
        status = _text(data.get("status")).lower()
        if status not in msg.REPORTED_STATUSES:
            raise EnrollmentError(21, f"status {data.get('status')!r}")
        person = Person.objects.filter(customer=customer, principal=caller.principal).first()
        if person is None:
            raise EnrollmentError(22, f"{caller.principal} is not a person of {customer}")
        audit.refs["person"] = person
        if status == msg.STATUS_FAILED:  # the agent could not install: its error 39, on the server's record too
            failure = EnrollmentError(39, f"agent reports failure for serial {data.get('serial')!r}")
            record_error(Step.STATUS, caller.principal, failure, remote_addr=caller.remote_addr, **audit.refs)
            return None
        serial = _serial(data.get("serial"), "serial")
        mine = Certificate.objects.filter(person=person, profile=Certificate.Profile.SMIME)
        installed = mine.valid().filter(serial=serial).first()
        if installed is None:
            raise EnrollmentError(24, f"no valid certificate {serial} of {caller.principal}")
        revoked = None
        if data.get("replaced_serial") not in (None, ""):
            old_serial = _serial(data.get("replaced_serial"), "replaced_serial")
            if old_serial == serial:
                raise EnrollmentError(24, "replaced_serial is the installed certificate")
            candidates = list(mine.filter(serial=old_serial, ca__in=[installed.ca]))
            if len(candidates) != 1 or candidates[0].status != Certificate.Status.ISSUED:
                raise EnrollmentError(24, f"{old_serial} is not a valid certificate of {caller.principal}")
            revoked = candidates[0]
        if revoked is not None:  # a transaction only when there is something to write (SQLite locks for it)
            try:
                with transaction.atomic():
                    authority.revoke(revoked, RevocationReason.SUPERSEDED, by=f"renewal by {caller.principal}")
                    Certificate.objects.filter(pk=installed.pk).update(replaces=revoked)
            except DatabaseError as exc:
                raise EnrollmentError(23, f"{type(exc).__name__}: {exc}") from None
        audit.success(certificate=installed)
        if revoked is not None:
            publish(person, remove_pem=revoked.pem)
        return revoked
