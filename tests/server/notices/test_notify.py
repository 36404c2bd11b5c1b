"""Expiry notices against a real SMTP server on loopback (aiosmtpd): each notice once, at the nearest threshold,
to holders who have not renewed; a daily digest to the customer's admins; STARTTLS and login; failures retried."""

from __future__ import annotations

import datetime as dt
import email
import ipaddress
import socket
import ssl
from email.policy import default as default_policy

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509.oid import NameOID
from django.conf import settings as django_settings
from django.contrib.auth.models import User
from django.core.management import call_command
from django.utils import timezone
from pydantic import SecretStr

from autoenroll import pki
from autoenroll.server.certificates import authority
from autoenroll.server.certificates.models import Certificate
from autoenroll.server.directory.models import Person
from autoenroll.server.notices import notify
from autoenroll.server.notices.models import ExpiryDigest, ExpiryNotice
from autoenroll.server.tenants.models import CustomerAdmin

pytestmark = pytest.mark.django_db
#: Early in a UTC day: a test that runs the notices again two hours later stays within the same day (run after
#: 22:00 UTC, "one digest a day" saw two days and failed).
NOW = timezone.now().replace(hour=6, minute=0, second=0, microsecond=0)


class Inbox:
    """aiosmtpd's handler: every message the server accepted, parsed."""

    def __init__(self) -> None:
        self.messages: list[email.message.EmailMessage] = []

    async def handle_DATA(self, server, session, envelope):  # noqa: N802 - aiosmtpd's hook name
        message = email.message_from_bytes(envelope.content, policy=default_policy)
        message["X-Envelope-To"] = ", ".join(envelope.rcpt_tos)
        self.messages.append(message)
        return "250 OK"

    def to(self, address: str) -> list[email.message.EmailMessage]:
        return [m for m in self.messages if address in m["X-Envelope-To"]]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def smtp(settings):
    """A plain SMTP server on loopback, and the configuration that points at it."""
    inbox, port = Inbox(), _free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    settings.CONFIG = settings.CONFIG.model_copy(
        update={"smtp_host": "127.0.0.1", "smtp_port": port, "mail_from": "pki@acme.example"}
    )
    yield inbox
    controller.stop()


@pytest.fixture
def person(acme) -> Person:
    return Person.objects.create(customer=acme, principal="ann@TEST.COM", sam_account_name="ann", mail="ann@test.com",
                                 cn="Ann Smith")  # fmt: skip


def certificate(person: Person, days_left: float, *, not_before: dt.datetime | None = None) -> Certificate:
    key = pki.generate_private_key("ec-p256")
    cert = authority.issue_smime(django_settings.CONFIG, key.public_key(), person.mail, person=person)
    Certificate.objects.filter(pk=cert.pk).update(
        not_after=NOW + dt.timedelta(days=days_left), not_before=not_before or NOW - dt.timedelta(days=300)
    )
    cert.refresh_from_db()
    return cert


def test_each_threshold_is_mailed_once_as_the_days_pass(ca, person, smtp):
    cert = certificate(person, 29.5)
    for day, expected in ((0, [30]), (0, [30]), (5, [30]), (15, [30, 15]), (16, [30, 15]), (28, [30, 15, 2])):
        report = notify.run(now=NOW + dt.timedelta(days=day))
        assert not report.failed
        assert sorted(ExpiryNotice.objects.filter(certificate=cert).values_list("days", flat=True), reverse=True) == (
            expected
        )
    mails = smtp.to("ann@test.com")
    assert len(mails) == 3  # one per threshold, however many runs
    assert [m["Subject"] for m in mails] == [
        "Your email certificate expires in 29 days",
        "Your email certificate expires in 14 days",
        "Your email certificate expires in 1 day",
    ]
    body = mails[0].get_content()
    assert "Hello Ann Smith" in body and cert.serial in body and "log on to a computer" in body
    assert mails[0]["From"] == "pki@acme.example"
    assert all(n.sent_at is not None for n in ExpiryNotice.objects.all())


def test_a_missed_window_sends_the_nearest_threshold_only(ca, person, smtp):
    cert = certificate(person, 10)
    notify.run(now=NOW)
    assert list(ExpiryNotice.objects.filter(certificate=cert).values_list("days", flat=True)) == [15]
    notify.run(now=NOW + dt.timedelta(hours=1))
    assert len(smtp.to("ann@test.com")) == 1


def test_a_renewed_certificate_is_not_notified(ca, person, smtp, acme):
    certificate(person, 5)
    certificate(person, 365, not_before=NOW - dt.timedelta(days=1))  # the successor, installed yesterday
    other = Person.objects.create(customer=acme, principal="bo@TEST.COM", sam_account_name="bo", mail="bo@test.com")
    certificate(other, 5)
    Person.objects.filter(pk=other.pk).update(mail="")  # no mail in AD any more: nobody to write to
    revoked = certificate(person, 3)
    Certificate.objects.filter(pk=revoked.pk).update(status="revoked", revoked_at=NOW, revocation_reason="superseded")
    assert notify.run(now=NOW).notices == 0
    assert not smtp.messages


def test_the_customer_admins_get_one_digest_a_day(ca, person, smtp, acme):
    certificate(person, 20)
    certificate(person, 1)  # an older one, also about to lapse (its successor is the 20-day one)
    for name, address in (("alice", "alice@acme.example"), ("bob", "bob@acme.example"), ("nomail", "")):
        CustomerAdmin.objects.create(user=User.objects.create_user(name, address, "x"), customer=acme)
    gone = User.objects.create_user("gone", "gone@acme.example", "x", is_active=False)  # disabled: no digest
    CustomerAdmin.objects.create(user=gone, customer=acme)
    notify.run(now=NOW)
    notify.run(now=NOW + dt.timedelta(hours=2))
    digests = smtp.to("alice@acme.example")
    assert len(digests) == 1 and digests[0]["X-Envelope-To"] == "alice@acme.example, bob@acme.example"
    assert digests[0]["Subject"] == "1 email certificate of ACME expires within 30 days"
    assert "ann@test.com" in digests[0].get_content()
    notify.run(now=NOW + dt.timedelta(days=1))
    assert len(smtp.to("alice@acme.example")) == 2
    assert ExpiryDigest.objects.count() == 2
    assert not smtp.to("gone@acme.example")


def test_a_failed_mail_is_tried_again_next_run(ca, person, settings):
    cert = certificate(person, 14)
    settings.CONFIG = settings.CONFIG.model_copy(
        update={"smtp_host": "127.0.0.1", "smtp_port": _free_port(), "mail_from": "pki@acme.example"}
    )
    report = notify.run(now=NOW)
    assert report.notices == 0 and report.failed and "ann@test.com" in report.failed[0]
    assert not ExpiryNotice.objects.exists()  # the claim went with the failure
    inbox = Inbox()
    controller = Controller(inbox, hostname="127.0.0.1", port=settings.CONFIG.smtp_port)
    controller.start()
    try:
        assert notify.run(now=NOW).notices == 1
    finally:
        controller.stop()
    assert ExpiryNotice.objects.get(certificate=cert).days == 15 and len(inbox.messages) == 1


def test_an_admin_overrides_the_texts(ca, person, smtp, settings, tmp_path):
    (tmp_path / "notices").mkdir()
    (tmp_path / "notices" / "expiry_holder.txt").write_text("Dear {{ person.mail }}: {{ days_left }} days left.\n")
    settings.TEMPLATES = [{**settings.TEMPLATES[0], "DIRS": [tmp_path]}]
    certificate(person, 14)
    notify.run(now=NOW)
    assert smtp.messages[0].get_content().strip() == "Dear ann@test.com: 14 days left."


def test_without_an_smtp_server_the_job_says_so(settings):
    settings.CONFIG = settings.CONFIG.model_copy(update={"smtp_host": ""})
    with pytest.raises(notify.NoticeError, match="set smtp_host"):
        notify.run()


# --- STARTTLS and login ------------------------------------------------------------------------------


@pytest.fixture
def tls_smtp(tmp_path, settings, monkeypatch):
    """An SMTP server that requires STARTTLS and a login, its certificate trusted through SSL_CERT_FILE."""
    key = pki.generate_private_key("ec-p256")
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "smtp.test")])
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(NOW - dt.timedelta(days=1))
        .not_valid_after(NOW + dt.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
        .sign(key, hashes.SHA256())
    )  # fmt: skip
    (tmp_path / "smtp.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (tmp_path / "smtp.key").write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(tmp_path / "smtp.pem", tmp_path / "smtp.key")
    monkeypatch.setenv("SSL_CERT_FILE", str(tmp_path / "smtp.pem"))

    def authenticator(server, session, envelope, mechanism, auth_data):
        return AuthResult(success=(auth_data.login, auth_data.password) == (b"notices", b"s3cret"), handled=False)

    inbox, port = Inbox(), _free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=port, tls_context=context, require_starttls=True,
                            authenticator=authenticator, auth_require_tls=True)  # fmt: skip
    controller.start()
    settings.CONFIG = settings.CONFIG.model_copy(
        update={
            "smtp_host": "127.0.0.1",
            "smtp_port": port,
            "mail_from": "pki@acme.example",
            "smtp_starttls": True,
            "smtp_user": "notices",
            "smtp_password": SecretStr("s3cret"),
        }  # fmt: skip
    )
    yield inbox
    controller.stop()


def test_starttls_and_login_are_checked_at_start_and_used(ca, person, tls_smtp, settings, capsys):
    call_command("notify", "--check")
    assert "STARTTLS, logged in as notices" in capsys.readouterr().out
    certificate(person, 14)
    assert notify.run(now=NOW).notices == 1 and len(tls_smtp.messages) == 1
    settings.CONFIG = settings.CONFIG.model_copy(update={"smtp_password": SecretStr("wrong")})
    with pytest.raises(notify.NoticeError, match="535|Authentication"):
        notify.check_smtp(settings.CONFIG)
