"""The enrollment pipeline: the guide's decisions and numbered errors, for every way of asking.

Plain functions over models, no web layer. The views (the agent's one-call `logon` and its older
sync -> enroll -> status, and the MS-WSTEP service) call them with the Kerberos principal that
authenticated the request. The identity that ends up in a certificate is the one AD holds for that
principal, never what the request claims. Configuration comes from memory (`configuration.current`);
issuing, superseding and revoking go through `lifecycle`.
"""

from __future__ import annotations

import logging
import time
import uuid
from dataclasses import dataclass
from datetime import timedelta

from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from django.core import signing
from django.db import DatabaseError, transaction
from django.utils import timezone

from autoenroll import pki
from autoenroll.protocol import EnrollmentError
from autoenroll.protocol import messages as msg
from autoenroll.protocol.principals import user_principal
from autoenroll.server import metrics
from autoenroll.server.certificates import authority
from autoenroll.server.certificates.models import Certificate
from autoenroll.server.directory.ldap import DirectoryUser
from autoenroll.server.directory.models import ADServer, Person
from autoenroll.server.directory.sync import add_person, read_user, store_person
from autoenroll.server.kerberos.models import KerberosRealm
from autoenroll.server.tenants.models import Customer, Organization
from autoenroll.server.utils import database, rows

from . import configuration, events, lifecycle
from .configuration import Configuration
from .events import record_error, record_success
from .models import EnrollmentEvent, EnrollmentRequest

log = logging.getLogger("autoenroll.enrollment")

# A person must have been synced this recently for enroll: sync and enroll belong to one logon.
SYNC_MAX_AGE = timedelta(minutes=15)
#: How long the status token of a logon answer lets the agent report the installation.
STATUS_TOKEN_SECONDS = 3600
STATUS_TOKEN_SALT = "autoenroll.enrollment.status"
RETRY_AFTER_SECONDS = 5
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
    """Collects what a step resolved so that every refusal is recorded with it (after any rollback), and
    times the call (`call`: the protocol call it serves, its step by default) for the metrics."""

    def __init__(self, step: str, caller: Caller, call: str | None = None) -> None:
        self.step, self.caller, self.refs, self.call = step, caller, {}, call or step
        self._started = time.perf_counter()

    def __enter__(self) -> _Audit:
        return self

    def __exit__(self, exc_type, exc, tb) -> bool:
        metrics.ENROLLMENT_CALL_SECONDS.labels(self.call).observe(time.perf_counter() - self._started)
        if isinstance(exc, EnrollmentError):
            record_error(self.step, self.caller.principal, exc, remote_addr=self.caller.remote_addr, **self.refs)
        return False

    def success(self, **refs) -> None:
        self.refs.update(refs)
        record_success(self.step, self.caller.principal, remote_addr=self.caller.remote_addr, **self.refs)


def _text(value) -> str:
    return value.strip() if isinstance(value, str) else ""


def _principal(caller: Caller) -> tuple[str, str]:
    """(name, realm) of the authenticated principal; error 27 when it is not a mail user's."""
    try:
        return user_principal(caller.principal)
    except ValueError as exc:
        raise EnrollmentError(27, str(exc)) from None


# --- resolving customer, organization and AD server (errors 1-12, 20, 27) --------------------------


def _customer(conf: Configuration, data: dict, caller: Caller, audit: _Audit) -> Customer:
    uri = _text(data.get("customeruri"))
    if not uri:
        raise EnrollmentError(1)
    customer = conf.customers.get(uri)
    if customer is None:
        raise EnrollmentError(2, f"customeruri {uri!r}")
    if caller.realm is not None and caller.realm.customer_id not in (None, customer.pk):
        # In the caller's own customer's log, not the named one's: a user of one customer must neither write
        # into another's log nor read there what it says of them.
        audit.refs["customer"] = caller.realm.customer
        raise EnrollmentError(20, f"realm {caller.realm.domain} is not one of the customer's the request names")
    audit.refs["customer"] = customer
    lifecycle.check_customer(customer)
    _principal(caller)
    return customer


def _organization(conf: Configuration, data: dict, customer: Customer, audit: _Audit) -> Organization | None:
    raw = data.get("orgid")
    if raw in (None, ""):
        return None
    text = str(raw).strip()
    if not (text.isascii() and text.isdigit() and len(text) <= 18):  # "²" and "١" are digits to Python
        raise EnrollmentError(6, f"orgid {str(raw)[:40]!r}")
    org = conf.organizations.get(int(text))
    if org is None:
        raise EnrollmentError(7, f"orgid {text}")
    if org.customer_id != customer.pk or org.deleted:
        raise EnrollmentError(8, f"organization {org.pk} is not a live organization of {customer}")
    audit.refs["organization"] = org
    return org


def _ad_server(conf: Configuration, customer: Customer, org: Organization | None, windows_domain: str) -> ADServer:
    """The organization's AD server, else the customer's default; or the one for the user's domain."""
    servers = conf.ad_servers.get(customer.pk, ())
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


def _suitable_organization(conf: Configuration, customer: Customer, server: ADServer, domain: str) -> Organization:
    """Without an orgid: the live organization bound to this AD server (or to none, when the server is
    the default) that holds the user's mail domain."""
    for org in conf.organizations.values():  # in pk order
        if org.customer_id != customer.pk or org.deleted:
            continue
        bound = org.ad_server_id == server.pk or (org.ad_server_id is None and server.is_default)
        if bound and domain in conf.organization_domains[org.pk]:
            return org
    raise EnrollmentError(11, f"no organization of {customer} on AD server {server} holds {domain}")


@dataclass
class _Directory:
    """What AD said about the caller, and where that put them."""

    customer: Customer
    organization: Organization | None
    ad_server: ADServer
    user: DirectoryUser


def _ask_directory(conf: Configuration, caller: Caller, data: dict, audit: _Audit) -> _Directory:
    """Resolve customer, organization and AD server, read the user from AD and apply the mail rules."""
    customer = _customer(conf, data, caller, audit)
    _, realm_name = _principal(caller)
    windows_domain = realm_name.lower()
    claimed_domain = _text(data.get("domainname")).lower()
    org = _organization(conf, data, customer, audit)
    server = _ad_server(conf, customer, org, windows_domain)
    if claimed_domain and claimed_domain != server.domain:
        raise EnrollmentError(10, f"domainname {claimed_domain} != AD server domain {server.domain}")
    user = read_user(server, caller.principal)
    claimed_mail = _text(data.get("email")).lower()
    if user.mail:
        lifecycle.check_mail_domain(conf, customer.pk, user.mail, org.pk if org else None)
        if org is None:
            org = _suitable_organization(conf, customer, server, user.mail.rpartition("@")[2].lower())
            audit.refs["organization"] = org
        if claimed_mail and claimed_mail != user.mail.lower():
            raise EnrollmentError(18, f"request says {claimed_mail}, AD says {user.mail}")
    elif claimed_mail:
        raise EnrollmentError(16, f"AD holds no mail for {caller.principal}, request says {claimed_mail}")
    return _Directory(customer, org, server, user)


# --- sync --------------------------------------------------------------------------------------------


def sync(caller: Caller, data: dict) -> SyncResult:
    """Resolve customer, organization and AD server, read the user from AD and store the person."""
    with _Audit(Step.SYNC, caller) as audit:
        found = _ask_directory(configuration.current(), caller, data, audit)
        person = store_person(found.customer, found.ad_server, caller.principal, found.user, found.organization)
        # The guide's sync succeeds without a mail; say so, or the log shows "success" while the agent stops (32).
        audit.success(person=person, message="" if person.mail else "AD holds no mail: the agent stops (its error 32)")
        return SyncResult(found.customer, found.organization, found.ad_server, person)


# --- the CSR (errors 15, 18, 19, 29) -----------------------------------------------------------------


def _parse_csr(csr_text) -> tuple[x509.CertificateSigningRequest, pki.PublicKey]:
    if not isinstance(csr_text, str) or not csr_text.strip():
        raise EnrollmentError(29)
    if "-----BEGIN" not in csr_text:
        raise EnrollmentError(15, "the CSR is not PEM")
    try:
        csr = pki.checked_csr(csr_text.encode())
        return csr, csr.public_key()
    except (pki.InvalidCSR, pki.PKIError, ValueError, x509.InvalidVersion) as exc:
        raise EnrollmentError(15, str(exc)) from None


def _csr_identity_check(
    csr: x509.CertificateSigningRequest, mail: str, cn: str, sam_account_name: str, *, subject_from_ad: bool = False
) -> None:
    """Refuse a CSR that asks for another identity (18/19) or for more than an S/MIME certificate (15);
    one whose subject or extensions cannot be read is an invalid CSR (15), not a crash.

    `subject_from_ad`: the client was told the subject is built from AD (MS-XCEP's policy carries no
    "enrollee supplies subject" flag), so its subject names are ignored, as AD CS ignores them; what it
    asks for in the extensions (another mailbox, more usages, a CA) is still refused."""
    try:
        if not subject_from_ad:
            _check_subject(csr, mail, cn, sam_account_name)
        _check_extensions(csr, mail)
    except (ValueError, TypeError, x509.DuplicateExtension, x509.UnsupportedGeneralNameType) as exc:
        raise EnrollmentError(15, f"unreadable CSR content: {type(exc).__name__}: {exc}") from None


def _check_subject(csr: x509.CertificateSigningRequest, mail: str, cn: str, sam_account_name: str) -> None:
    shown, mail = mail, mail.lower()
    for attr in csr.subject.get_attributes_for_oid(NameOID.EMAIL_ADDRESS):
        if str(attr.value).lower() != mail:
            raise EnrollmentError(18, f"CSR emailAddress {attr.value} != AD mail {shown}")
    for attr in csr.subject.get_attributes_for_oid(NameOID.COMMON_NAME):
        value = str(attr.value)
        if "@" in value:
            if value.lower() != mail:
                raise EnrollmentError(18, f"CSR CN {value} != AD mail {shown}")
        elif value.lower() not in {cn.lower(), sam_account_name.lower()}:
            raise EnrollmentError(19, f"CSR CN {value!r} != AD CN {cn!r}")


def _check_extensions(csr: x509.CertificateSigningRequest, mail: str) -> None:
    shown, mail = mail, mail.lower()
    for ext in csr.extensions:
        value = ext.value
        if isinstance(value, x509.SubjectAlternativeName):
            for name in value:
                if not isinstance(name, x509.RFC822Name):
                    raise EnrollmentError(15, f"CSR asks for a {type(name).__name__} subject alternative name")
                if name.value.lower() != mail:
                    raise EnrollmentError(18, f"CSR asks for {name.value}, AD mail is {shown}")
        elif isinstance(value, x509.BasicConstraints) and value.ca:
            raise EnrollmentError(15, "CSR asks for a CA certificate")
        elif isinstance(value, x509.ExtendedKeyUsage):
            extra = [u.dotted_string for u in value if u != ExtendedKeyUsageOID.EMAIL_PROTECTION]
            if extra:
                raise EnrollmentError(15, f"CSR asks for extended key usages {', '.join(extra)}")


# --- logon: everything in one call -------------------------------------------------------------------


@dataclass
class Logon:
    """The answer to a logon: where AD put the user, and the certificate or the pending request."""

    customer: Customer
    organization: Organization | None
    person: Person
    certificate: Certificate | None = None
    request: EnrollmentRequest | None = None

    def as_dict(self) -> dict:
        answer = {
            "principal": self.person.principal,
            "email": self.person.mail,
            "cn": self.person.cn,
            "orgid": str(self.organization.pk) if self.organization else None,
            "customeruri": self.customer.uri,
        }
        if self.certificate is not None:
            answer.update(_issued(self.certificate, self.person))
        else:
            answer.update(_pending(self.request))
        return answer


def logon(caller: Caller, data: dict, *, step: str = Step.ENROLL, message: str = "") -> Logon:
    """One authenticated call per logon: sync, the identity checks and issuance, in one transaction.

    Serialised per person (the person's row is locked while the certificate is made); the same key sent
    again gets the same certificate back (or its pending request), so a retry after a lost answer
    converges. The command line's `certificates issue` asks through here too (`step`, `message`)."""
    conf = configuration.current()
    with _Audit(Step.SYNC, caller, call="logon") as audit:
        found = _ask_directory(conf, caller, data, audit)
        user = found.user
        if not user.mail:
            raise EnrollmentError(16, f"AD holds no mail for {caller.principal}")
        audit.step = step
        claimed_cn = _text(data.get("cn"))
        if claimed_cn and claimed_cn.lower() != user.cn.lower():
            raise EnrollmentError(19, f"request says CN {claimed_cn!r}, AD says {user.cn!r}")
        csr, public_key = _parse_csr(data.get("csr"))
        _csr_identity_check(csr, user.mail, user.cn, user.sam_account_name)
        key_hash = authority.key_sha256(public_key)
        customer, org = found.customer, found.organization
        try:
            with transaction.atomic():
                person = lifecycle.locked_person(customer.pk, caller.principal, key_hash)
                if person is None:  # the first logon ever: add, then lock like any other
                    add_person(customer, found.ad_server, caller.principal, user, org)
                    person = lifecycle.locked_person(customer.pk, caller.principal, key_hash)
                    if person is None:  # deleted by an admin in between
                        raise EnrollmentError(14, f"cannot store person {caller.principal}: removed meanwhile")
                else:  # (a refusal is recorded after the rollback: only a person that was there before)
                    audit.refs["person"] = person
                store_person(customer, found.ad_server, caller.principal, user, org, current=person)
                person.customer, person.ad_server, person.organization = customer, found.ad_server, org
                if customer.require_approval and lifecycle.already_issued(person) is None:
                    request = _hold(caller, person, org, data["csr"], key_hash)
                    return Logon(customer, org, person, request=request)
                issued = lifecycle.issue(
                    person,
                    public_key,
                    csr_pem=_pem(data["csr"]),
                    ca=conf.issuing_ca,
                    remote_addr=caller.remote_addr,
                    step=step,
                    message=message,
                    conf=conf,
                )
        except DatabaseError as exc:
            raise database.refusal(30, exc) from None
        return Logon(customer, org, person, certificate=issued.certificate)


def _pem(text: str) -> str:
    return text.strip() + "\n"


def _request_row(
    person: Person, org: Organization | None, csr_text: str, key_hash: str, template=None, replaces=None, **fields
):
    """The record of a CSR (and of the Windows template it asked for and the certificate it renews, MS-WSTEP)."""
    return EnrollmentRequest.objects.create(
        customer=person.customer,
        person=person,
        organization=org,
        csr_pem=_pem(csr_text),
        public_key_sha256=key_hash,
        replaces=replaces,
        template_oid=template.template_id.dotted_string if template else "",
        template_major_version=(template.major_version or 0) if template else 0,
        template_minor_version=(template.minor_version or 0) if template else 0,
        **fields,
    )


def _hold(
    caller: Caller,
    person: Person,
    org: Organization | None,
    csr_text: str,
    key_hash: str,
    template=None,
    replaces: Certificate | None = None,
) -> EnrollmentRequest:
    """A customer that requires approval: the request waits, and says so in the log. The same key asking
    again (an agent that gave up waiting, error 34, and retries; a renewal of the same certificate) gets
    its pending request back."""
    pending = EnrollmentRequest.objects.filter(
        person=person, status=EnrollmentRequest.Status.PENDING, public_key_sha256=key_hash, replaces=replaces
    ).first()
    if pending is not None:
        return pending
    request = _request_row(person, org, csr_text, key_hash, template, replaces)
    events.event(
        Step.ENROLL,
        caller.principal,
        outcome=EnrollmentEvent.Outcome.PENDING,
        customer=person.customer,
        organization=org,
        person=person,
        remote_addr=caller.remote_addr,
        message="waiting for approval",
    ).save(force_insert=True)
    metrics.count_step(Step.ENROLL, outcome=EnrollmentEvent.Outcome.PENDING)
    return request


# --- enroll (the three-call protocol and MS-WSTEP) ---------------------------------------------------


def _synced_person(customer: Customer, caller: Caller) -> Person:
    person = Person.objects.filter(customer=customer, principal=caller.principal).first()
    if person is None:
        other = Person.objects.filter(principal=caller.principal).exclude(customer=customer).exists()
        if other:
            raise EnrollmentError(20, f"{caller.principal} is synced for another customer, not {customer}")
        raise EnrollmentError(28, f"{caller.principal} never synced for {customer}")
    if person.synced_at is None or timezone.now() - person.synced_at > SYNC_MAX_AGE:
        raise EnrollmentError(28, f"{caller.principal} last synced {person.synced_at}; sync first")
    return person


def enroll(
    caller: Caller,
    data: dict,
    template: x509.MSCertificateTemplate | None = None,
    replaces: Certificate | None = None,
    subject_from_ad: bool = False,
) -> EnrollmentRequest:
    """Check the CSR against the person synced moments ago and issue (or hold it for approval).
    `template` is the Windows certificate template to name in the certificate, `replaces` the
    certificate a Windows renewal was signed with, and `subject_from_ad` says the CSR's subject names
    are not the client's to choose (MS-WSTEP only; never from the JSON)."""
    conf = configuration.current()
    with _Audit(Step.ENROLL, caller) as audit:
        customer = _customer(conf, data, caller, audit)
        org = _organization(conf, data, customer, audit)
        claimed_mail = _text(data.get("email")).lower()
        if not claimed_mail:
            raise EnrollmentError(26)
        if not isinstance(data.get("csr"), str) or not data["csr"].strip():
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
        org = org or (conf.organizations.get(person.organization_id) if person.organization_id else None)
        if org is not None:
            lifecycle.check_mail_domain(conf, customer.pk, person.mail, org.pk)
        csr, public_key = _parse_csr(data["csr"])
        _csr_identity_check(csr, person.mail, person.cn, person.sam_account_name, subject_from_ad=subject_from_ad)
        try:
            with transaction.atomic():
                key_hash = authority.key_sha256(public_key)
                locked = lifecycle.locked_person(customer.pk, caller.principal, key_hash)
                if locked is None:  # deleted by an admin since the sync moments ago
                    raise EnrollmentError(28, f"{caller.principal} is no longer a person of {customer}")
                locked.customer, locked.organization = customer, org
                locked.ad_server = conf.ad_server(person.ad_server_id)
                if customer.require_approval and lifecycle.already_issued(locked, replaces) is None:
                    return _hold(caller, locked, org, data["csr"], key_hash, template, replaces)
                issued = lifecycle.issue(
                    locked,
                    public_key,
                    csr_pem=_pem(data["csr"]),
                    ca=conf.issuing_ca,
                    template=template,
                    replaces=replaces,
                    remote_addr=caller.remote_addr,
                    conf=conf,
                )
                # the same key again (a retry): the request that got this certificate, not a second record
                request = (None if issued.new else issued.certificate.enrollment_requests.first()) or _request_row(
                    locked,
                    org,
                    data["csr"],
                    key_hash,
                    template,
                    replaces,
                    status=EnrollmentRequest.Status.ISSUED,
                    certificate=issued.certificate,
                )
        except DatabaseError as exc:
            raise database.refusal(30, exc) from None
        return request


def poll(caller: Caller, request_id: str) -> EnrollmentRequest:
    """The agent asks again for a pending request; only its own requests are visible to it."""
    with _Audit(Step.ENROLL, caller, call="poll") as audit:
        _principal(caller)
        request = (
            EnrollmentRequest.objects.select_related("certificate", "person", "customer")
            .filter(pk=request_id if _is_uuid(request_id) else None, person__principal=caller.principal)
            .first()
        )
        if request is None:  # 404, not 25's usual 503: nothing a client should retry
            raise EnrollmentError(25, f"no request {request_id[:60]!r} for {caller.principal}", http_status=404)
        audit.refs.update(customer=request.customer, person=request.person)
        if request.status in (EnrollmentRequest.Status.FAILED, EnrollmentRequest.Status.REJECTED):
            raise EnrollmentError(25, f"request {request_id} {request.status}")
        return request


def _is_uuid(value: str) -> bool:
    try:
        uuid.UUID(str(value))
    except ValueError:
        return False
    return True


def _issued(cert: Certificate, person: Person) -> dict:
    return {
        "status": msg.REQUEST_ISSUED,
        "certificate": cert.pem,
        "chain": authority.chain_pem(cert.ca),
        "serial": cert.serial,
        "status_token": status_token(person, cert),
    }


def _pending(request: EnrollmentRequest) -> dict:
    return {"request_id": str(request.pk), "status": msg.REQUEST_PENDING, "retry_after": RETRY_AFTER_SECONDS}


def request_answer(request: EnrollmentRequest) -> dict:
    """The enroll/poll answer: the certificate with its chain, or a pending marker."""
    if request.status == EnrollmentRequest.Status.ISSUED:
        return {"request_id": str(request.pk), **_issued(request.certificate, request.person)}
    return _pending(request)


# --- status: the agent installed (or failed to install) a certificate --------------------------------


def status_token(person: Person, cert: Certificate) -> str:
    """Lets the agent report the installation of `cert` without a second Kerberos authentication:
    signed with the server's secret key, bound to the person and the serial, valid for an hour."""
    return signing.dumps({"p": person.pk, "s": cert.serial}, salt=STATUS_TOKEN_SALT, compress=False)


class BadStatusToken(Exception):
    """The token is not one of ours, or too old: the agent falls back to the authenticated status call."""


#: Written out: on the status report, the ORM's statement compilation cost more than the statements.
#: Table and column names come from the models; every value is a parameter.
_PERSON_BY_ID = f"SELECT {rows.select_list(Person, 'p')} FROM {Person._meta.db_table} p WHERE p.id = %s"  # noqa: S608
_REPORTED = (  # the installed certificate and the one it replaces, in one query
    f"SELECT {rows.select_list(Certificate, 'c')} FROM {Certificate._meta.db_table} c "  # noqa: S608
    "WHERE c.person_id = %s AND c.profile = 'smime' AND c.serial IN (%s, %s)"
)


def report_with_token(token: str, data: dict, remote_addr: str | None = None) -> Certificate | None:
    """`report_status` for the holder of a logon answer's status token."""
    try:
        claims = signing.loads(token, salt=STATUS_TOKEN_SALT, max_age=STATUS_TOKEN_SECONDS)
        person_id, serial = int(claims["p"]), str(claims["s"])
    except (signing.BadSignature, KeyError, TypeError, ValueError):
        raise BadStatusToken("invalid or expired status token") from None
    conf = configuration.current()
    person = next(iter(rows.select(Person, _PERSON_BY_ID, [person_id])), None)
    customer = conf.customer(person.customer_id) if person is not None else None
    if customer is None:
        raise BadStatusToken("the token's person no longer exists")
    person.customer, person.ad_server = customer, conf.ad_server(person.ad_server_id)
    caller = Caller(principal=person.principal, remote_addr=remote_addr)
    with _Audit(Step.STATUS, caller, call="logon_status") as audit:
        audit.refs.update(customer=person.customer, person=person)
        lifecycle.check_customer(customer)  # as the authenticated report (`_customer`) does
        if _text(data.get("serial")) and _serial(data.get("serial"), "serial") != serial:
            raise EnrollmentError(24, f"the status token is for certificate {serial}, not {data.get('serial')}")
        return _apply_report(caller, person, {**data, "serial": serial}, audit)


def _serial(value, field: str) -> str:
    try:
        return pki.parse_serial(_text(value))
    except ValueError as exc:
        raise EnrollmentError(24, f"{field}: {exc}") from None


def report_status(caller: Caller, data: dict) -> Certificate | None:
    """The agent says it installed (or failed to install) a certificate; on install with the
    certificate it replaces, that one is revoked as superseded. Returns the revoked certificate."""
    conf = configuration.current()
    with _Audit(Step.STATUS, caller) as audit:
        customer = _customer(conf, data, caller, audit)
        person = Person.objects.filter(customer=customer, principal=caller.principal).first()
        if person is None:
            raise EnrollmentError(22, f"{caller.principal} is not a person of {customer}")
        person.customer, person.ad_server = customer, conf.ad_server(person.ad_server_id)
        audit.refs["person"] = person
        return _apply_report(caller, person, data, audit)


def _apply_report(caller: Caller, person: Person, data: dict, audit: _Audit) -> Certificate | None:
    """Idempotent: reporting the same installation again, or after the replaced certificate was
    revoked already, is a success that changes nothing (a lost answer must not lock the agent out)."""
    status = _text(data.get("status")).lower()
    if status not in msg.REPORTED_STATUSES:
        raise EnrollmentError(21, f"status {data.get('status')!r}")
    serial = _serial(data.get("serial"), "serial")
    if status == msg.STATUS_FAILED:  # the agent could not install: its error 39, on the server's record too
        if not Certificate.objects.filter(person=person, serial=serial).exists():
            raise EnrollmentError(24, f"failure reported for {serial}, which is not a certificate of {person}")
        failure = EnrollmentError(39, f"agent reports failure for serial {serial}")
        record_error(Step.STATUS, caller.principal, failure, remote_addr=caller.remote_addr, **audit.refs)
        return None
    old_serial = None
    if data.get("replaced_serial") not in (None, ""):
        old_serial = _serial(data.get("replaced_serial"), "replaced_serial")
        if old_serial == serial:
            raise EnrollmentError(24, "replaced_serial is the installed certificate")
    mine = {c.serial: c for c in rows.select(Certificate, _REPORTED, [person.pk, serial, old_serial or serial])}
    installed = mine.get(serial)
    if installed is None or installed.state != "issued":
        raise EnrollmentError(24, f"no valid certificate {serial} of {caller.principal}")
    replaced, note = mine.get(old_serial) if old_serial else None, ""
    if old_serial and replaced is None and not Certificate.objects.filter(serial=old_serial).exists():
        # Never issued here: held since before a restore from backup, or from another CA. Nothing to revoke;
        # the installation is real and is recorded (refusing it would fail this agent's every renewal).
        note = f"replaced certificate {old_serial} is unknown here: nothing to revoke"
        old_serial = None
    if old_serial and replaced is None:  # of any of our CAs: a renewal after a rotation replaces the old CA's
        raise EnrollmentError(24, f"{old_serial} is not a certificate of {caller.principal}")
    installed.person = person  # its events and AD entry are the person's, as loaded here
    if replaced is not None:
        replaced.person = person
    try:  # the report's event commits with what it did (supersede records it)
        revoked = lifecycle.supersede(
            installed, replaced, by=f"renewal by {caller.principal}", remote_addr=caller.remote_addr, message=note
        )
    except DatabaseError as exc:
        raise database.refusal(23, exc) from None
    return replaced if revoked else None
