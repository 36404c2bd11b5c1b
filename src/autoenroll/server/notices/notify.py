"""The expiry notices job: `autoenroll-server notify` (cron) and `notify --watch` (what `serve` runs).

A holder is mailed when a valid S/MIME certificate of theirs that has no successor (no valid certificate of the
same person ends later) comes within one of `expiry_notice_days` (30, 15 and 2 by default) of its notAfter:
the nearest threshold reached, once. A missed run sends the nearest one only, never a 30-day notice after a
15-day one. Each customer's admins get one digest a day of what expires within the largest threshold.

Mails go through Django's SMTP backend with the configured server (STARTTLS and login when set); the texts are
templates (`notices/expiry_*.txt`) an admin overrides in `<data_dir>/templates/notices/`.
"""

from __future__ import annotations

import datetime as dt
import logging
import smtplib
import ssl
from dataclasses import dataclass, field

from django.conf import settings
from django.core.mail import EmailMessage, get_connection
from django.db import IntegrityError, transaction
from django.db.models import Exists, OuterRef
from django.template.loader import render_to_string
from django.utils import timezone

from autoenroll.server.certificates.models import Certificate
from autoenroll.server.config import ServerConfig
from autoenroll.server.tenants.models import Customer, CustomerAdmin
from autoenroll.server.utils.exclusive import one_at_a_time

from .models import ExpiryDigest, ExpiryNotice

log = logging.getLogger("autoenroll.notices")

SMTP_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
MAIL_ERRORS = (smtplib.SMTPException, OSError, ssl.SSLError)


class NoticeError(Exception):
    """Mail cannot be sent at all (no SMTP server configured, or it refuses us)."""


@dataclass
class NotifyReport:
    notices: int = 0
    digests: int = 0
    failed: list[str] = field(default_factory=list)
    elsewhere: bool = False  # another server was running the job


def smtp_connection(config: ServerConfig):
    """A connection to the configured SMTP server (not opened yet); NoticeError when none is configured."""
    if not config.smtp_host:
        raise NoticeError("no SMTP server: set smtp_host and mail_from (AUTOENROLL_SMTP_HOST, AUTOENROLL_MAIL_FROM)")
    return get_connection(
        SMTP_BACKEND,
        host=config.smtp_host,
        port=config.smtp_port,
        username=config.smtp_user or None,
        password=config.smtp_password.get_secret_value() if config.smtp_password else None,
        use_tls=config.smtp_starttls,
        timeout=20,
        fail_silently=False,
    )


def check_smtp(config: ServerConfig) -> str:
    """Connect, STARTTLS and log in as configured, then hang up: what `serve` and `notify --check` do at start."""
    connection = smtp_connection(config)
    try:
        connection.open()
    except MAIL_ERRORS as exc:
        raise NoticeError(f"SMTP server {config.smtp_host}:{config.smtp_port}: {exc}") from None
    connection.close()
    tls = ", STARTTLS" if config.smtp_starttls else ""
    login = f", logged in as {config.smtp_user}" if config.smtp_user else ""
    return f"SMTP server {config.smtp_host}:{config.smtp_port} answers{tls}{login}"


def expiring(now: dt.datetime, horizon: dt.timedelta):
    """Valid S/MIME certificates ending within `horizon` whose holder has no later valid certificate."""
    successor = Certificate.objects.valid(now).filter(
        person=OuterRef("person"), profile=Certificate.Profile.SMIME, not_after__gt=OuterRef("not_after")
    )
    return (
        Certificate.objects.valid(now)
        .filter(profile=Certificate.Profile.SMIME, person__isnull=False, not_after__lte=now + horizon)
        .exclude(Exists(successor))
        .select_related("person__customer")
        .order_by("not_after")
    )


def _days_left(certificate: Certificate, now: dt.datetime) -> int:
    return max(0, (certificate.not_after - now).days)


def run(config: ServerConfig | None = None, *, now: dt.datetime | None = None) -> NotifyReport:
    """Send what is due now; one server at a time (the others skip their round)."""
    config = config or settings.CONFIG
    with one_at_a_time(config.data_dir, "notify", wait=False) as mine:
        if not mine:
            return NotifyReport(elsewhere=True)
        connection = smtp_connection(config)
        report = NotifyReport()
        now = now or timezone.now()
        try:
            _notify_holders(config, connection, now, report)
            _digests(config, connection, now, report)
        finally:
            connection.close()
        return report


def _notify_holders(config: ServerConfig, connection, now: dt.datetime, report: NotifyReport) -> None:
    thresholds = config.expiry_notice_days  # largest first
    for certificate in expiring(now, dt.timedelta(days=thresholds[0])).prefetch_related("expiry_notices"):
        person = certificate.person
        left = certificate.not_after - now
        days = min(d for d in thresholds if left <= dt.timedelta(days=d))  # the nearest threshold reached
        if not person.mail or any(n.days <= days for n in certificate.expiry_notices.all()):
            continue
        context = {
            "person": person,
            "certificate": certificate,
            "customer": person.customer,
            "days_left": _days_left(certificate, now),
            "threshold": days,
        }
        claim = ExpiryNotice(certificate=certificate, days=days, recipient=person.mail)
        mail = _Mail(connection, config, [person.mail], "notices/expiry_holder", context)
        sent = _claimed_send(claim, mail, f"expiry notice to {person.mail}", report)
        if sent:
            report.notices += 1
            log.info("%d-day expiry notice sent to %s for certificate %s", days, person.mail, certificate.serial)


def _digests(config: ServerConfig, connection, now: dt.datetime, report: NotifyReport) -> None:
    horizon = config.expiry_notice_days[0]
    per_customer: dict[int, list[dict]] = {}
    for certificate in expiring(now, dt.timedelta(days=horizon)).prefetch_related("expiry_notices"):
        notified = [n.days for n in certificate.expiry_notices.all() if n.sent_at is not None]
        per_customer.setdefault(certificate.person.customer_id, []).append(
            {"certificate": certificate, "days_left": _days_left(certificate, now), "notified": min(notified or [0])}
        )
    today = now.date()
    for customer in Customer.objects.filter(pk__in=per_customer).order_by("pk"):
        recipients = sorted(
            {a.user.email for a in CustomerAdmin.objects.active().filter(customer=customer).select_related("user")}
            - {""}
        )
        if not recipients:
            continue
        entries = per_customer[customer.pk]
        context = {"customer": customer, "entries": entries, "horizon": horizon, "today": today}
        claim = ExpiryDigest(customer=customer, day=today, recipients=", ".join(recipients), certificates=len(entries))
        mail = _Mail(connection, config, recipients, "notices/expiry_digest", context)
        sent = _claimed_send(claim, mail, f"expiry digest for {customer.uri}", report)
        report.digests += sent


@dataclass(frozen=True)
class _Mail:
    connection: object
    config: ServerConfig
    to: list[str]
    template: str
    context: dict

    def send(self) -> None:
        subject = " ".join(render_to_string(f"{self.template}_subject.txt", self.context).split())
        body = render_to_string(f"{self.template}.txt", self.context).strip() + "\n"
        EmailMessage(subject, body, self.config.mail_from, self.to, connection=self.connection).send()


def _claimed_send(claim: ExpiryNotice | ExpiryDigest, mail: _Mail, what: str, report: NotifyReport) -> bool:
    """Save the row that records the mail (unique: taken elsewhere means sent elsewhere), send the mail, and
    give the claim back when it fails, so that the next run tries again."""
    try:
        with transaction.atomic():
            claim.save(force_insert=True)
    except IntegrityError:
        return False
    try:
        mail.send()
    except MAIL_ERRORS as exc:
        claim.delete()
        report.failed.append(f"{what}: {exc}")
        log.warning("%s failed: %s", what, exc)
        return False
    type(claim).objects.filter(pk=claim.pk).update(sent_at=timezone.now())
    return True
