"""CRLs of the server's CAs: regenerated on revocation and before nextUpdate, never served stale."""

from __future__ import annotations

import datetime as dt
import io
import threading

import pytest
from cryptography import x509
from django.core.management import CommandError, call_command
from django.db import connection
from django.utils import timezone

from autoenroll import pki
from autoenroll.server.certificates import authority, publication
from autoenroll.server.certificates.models import Certificate, CertificateAuthority, RevocationList, RevocationReason
from autoenroll.server.enrollment import lifecycle
from autoenroll.server.enrollment.models import EnrollmentEvent

pytestmark = [pytest.mark.django_db, pytest.mark.urls("autoenroll.server.certificates.urls")]


def served_crl(client, slug="test-smime") -> x509.CertificateRevocationList:
    response = client.get(f"/crl/{slug}.crl")
    assert response.status_code == 200 and response["Content-Type"] == "application/pkix-crl"
    return x509.load_der_x509_crl(response.content)


def number(crl: x509.CertificateRevocationList) -> int:
    return crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number


def serial_of(cert: Certificate) -> int:
    return int(cert.serial, 16)


def test_a_burst_of_revocations_makes_one_crl_off_the_request_path(issue):
    """A revocation only marks the CRL stale (no signing in the request); the next round of the
    watcher that `serve` runs makes one CRL for the whole burst."""
    certs = [issue(f"user{i}@test.com") for i in range(3)]
    first = publication.publish_crl(certs[0].ca)
    for cert in certs:
        lifecycle.revoke([cert], RevocationReason.KEY_COMPROMISE, by="test")
    assert publication.latest_crl(certs[0].ca).number == first.number  # nothing signed yet
    made = [crl for crl in publication.refresh_crls() if crl.ca_id == first.ca_id]
    assert [crl.number for crl in made] == [first.number + 1] and made[0].entries == 3
    assert publication.refresh_crls() == []  # current now: the next round does nothing
    entry = x509.load_der_x509_crl(bytes(made[0].der)).get_revoked_certificate_by_serial_number(serial_of(certs[0]))
    assert entry.extensions.get_extension_for_class(x509.CRLReason).value.reason == x509.ReasonFlags.key_compromise


def test_served_crl_never_misses_a_committed_revocation(client, issue):
    cert = issue()
    before = served_crl(client)
    # No CRL was made since the revocation: serving must catch up.
    lifecycle.revoke([cert], RevocationReason.SUPERSEDED, by="test")
    after = served_crl(client)
    assert number(after) > number(before)
    assert after.get_revoked_certificate_by_serial_number(serial_of(cert)) is not None


def test_crl_is_regenerated_before_next_update(client, ca):
    first = served_crl(client)
    row = publication.latest_crl(ca[1])
    old = timezone.now() - dt.timedelta(days=4)
    RevocationList.objects.filter(pk=row.pk).update(this_update=old, next_update=old + dt.timedelta(days=7))
    second = served_crl(client)
    assert number(second) == number(first) + 1
    assert second.next_update_utc - timezone.now() > dt.timedelta(days=6)


def test_crl_numbers_strictly_increase(ca):
    numbers = [publication.publish_crl(ca[1]).number for _ in range(5)]
    assert numbers == sorted(set(numbers)) and len(numbers) == 5
    assert CertificateAuthority.objects.get(pk=ca[1].pk).crl_number == numbers[-1]


def test_each_ca_has_its_own_crl_signed_by_its_own_key(client, ca, ca_files):
    root_crl = served_crl(client, "test-root")
    issuing_crl = served_crl(client, "test-smime")
    assert root_crl.issuer == ca_files.root_certificate.subject
    assert root_crl.is_signature_valid(ca_files.root_certificate.public_key())
    assert issuing_crl.is_signature_valid(ca_files.issuing_certificate.public_key())


def test_crl_has_cache_headers_and_answers_if_none_match(client, ca):
    response = client.get("/crl/test-smime.crl")
    assert response["Cache-Control"].startswith("public, max-age=")
    assert 0 < int(response["Cache-Control"].split("max-age=")[1].split(",")[0]) <= 300
    assert response["Last-Modified"] and response["Expires"]
    again = client.get("/crl/test-smime.crl", headers={"If-None-Match": response["ETag"]})
    assert again.status_code == 304


def test_crl_of_an_unknown_ca_is_404(client, ca):
    assert client.get("/crl/nope.crl").status_code == 404


def test_served_crl_passes_pkilint_with_every_reason(client, issue, crl_lint):
    for reason in RevocationReason.values:
        lifecycle.revoke([issue(f"{reason.replace('_', '')}@test.com")], reason, by="test")
    response = client.get("/crl/test-smime.crl")
    assert x509.load_der_x509_crl(response.content).__len__() == len(RevocationReason.values)
    assert crl_lint(response.content) == []


def test_expired_revoked_certificate_leaves_the_crl_a_week_after_expiry(client, issue):
    recent, old = issue("recent@test.com"), issue("old@test.com")
    for cert in (recent, old):
        lifecycle.revoke([cert], RevocationReason.AFFILIATION_CHANGED, by="test")
    now = timezone.now()
    Certificate.objects.filter(pk=recent.pk).update(not_after=now - dt.timedelta(days=2))
    Certificate.objects.filter(pk=old.pk).update(not_after=now - dt.timedelta(days=8))
    crl = x509.load_der_x509_crl(bytes(publication.publish_crl(recent.ca).der))
    assert crl.get_revoked_certificate_by_serial_number(serial_of(recent)) is not None
    assert crl.get_revoked_certificate_by_serial_number(serial_of(old)) is None


def test_a_revocation_stores_its_crl_entry_and_the_crl_joins_them(issue):
    certs = [issue(f"e{i}@test.com") for i in range(3)]
    lifecycle.revoke(certs[:2], RevocationReason.KEY_COMPROMISE, by="test")
    lifecycle.revoke(certs[2:], RevocationReason.SUPERSEDED, by="test")
    der = bytes(publication.publish_crl(certs[0].ca).der)
    for cert in certs:
        row = Certificate.objects.get(pk=cert.pk)
        entry = bytes(row.crl_entry)
        assert entry == pki.crl_entry(serial_of(cert), row.revoked_at, row.revocation_reason)
        assert der.count(entry) == 1


def test_revocation_times_written_with_or_without_their_zone_are_listed_to_the_second(issue):
    """On SQLite a timestamp written through the ORM is stored as naive UTC text, one written as a plain SQL
    parameter keeps its zone; the CRL reads both (to the second, as the CRL and OCSP state it)."""
    by_orm, by_sql = issue("orm@test.com"), issue("sql@test.com")
    lifecycle.revoke([by_sql], RevocationReason.SUPERSEDED, by="test")
    when = dt.datetime(2026, 3, 4, 5, 6, 7, 890_000, tzinfo=dt.UTC)
    Certificate.objects.filter(pk=by_orm.pk).update(status="revoked", revoked_at=when, revocation_reason="superseded")
    by_sql.refresh_from_db()
    crl = x509.load_der_x509_crl(bytes(publication.publish_crl(by_orm.ca).der))
    listed = {entry.serial_number: entry.revocation_date_utc for entry in crl}
    assert listed == {
        serial_of(by_orm): when.replace(microsecond=0),
        serial_of(by_sql): by_sql.revoked_at.replace(microsecond=0),
    }


def test_revoking_twice_changes_nothing_and_the_first_reason_stands(issue):
    cert = issue()
    assert lifecycle.revoke([cert], RevocationReason.KEY_COMPROMISE, by="first") == [cert]
    assert lifecycle.revoke([cert], RevocationReason.SUPERSEDED, by="second") == []
    cert.refresh_from_db()
    assert (cert.revocation_reason, cert.revoked_by) == ("key_compromise", "first")
    assert cert.events.filter(step="revoke").count() == 1


def test_unknown_reason_is_refused(issue):
    with pytest.raises(authority.CAError, match="unknown revocation reason"):
        lifecycle.revoke([issue()], "certificate_hold", by="test")


def test_bulk_revocation_records_each_and_publishes_one_crl_for_all(issue):
    certs = [issue(f"u{i}@test.com") for i in range(5)]
    seen = []
    revoked = lifecycle.revoke(
        Certificate.objects.filter(pk__in=[c.pk for c in certs]),
        RevocationReason.CESSATION_OF_OPERATION,
        by="test",
        batch_size=2,
        progress=seen.append,
    )
    assert len(revoked) == 5 and sum(seen) == 5
    assert EnrollmentEvent.objects.filter(step="revoke", certificate__in=certs).count() == 5
    assert [crl.entries for crl in publication.refresh_crls() if crl.ca_id == certs[0].ca_id] == [5]


# --- the commands --------------------------------------------------------------------------------


def test_crl_command_regenerates_and_prints_the_facts(issue):
    lifecycle.revoke([issue()], RevocationReason.KEY_COMPROMISE, by="test")
    out = io.StringIO()
    call_command("crl", stdout=out)
    text = out.getvalue()
    for ca_name in ("test-root", "test-smime"):
        assert f"CA          {ca_name}" in text
    row = publication.latest_crl(CertificateAuthority.objects.get(name="test-smime"))
    assert f"number      {row.number}\n" in text
    assert f"thisUpdate  {row.this_update:%Y-%m-%dT%H:%M:%SZ}" in text
    assert f"nextUpdate  {row.next_update:%Y-%m-%dT%H:%M:%SZ}" in text
    assert "entries     1" in text and "http://ccm.test.com:8080/crl/test-smime.crl" in text


def test_crl_command_with_due_leaves_a_current_crl_alone(ca):
    call_command("crl", "--ca", "test-smime", stdout=io.StringIO())
    out = io.StringIO()
    call_command("crl", "--ca", "test-smime", "--due", stdout=out)
    assert "unchanged" in out.getvalue()
    with pytest.raises(CommandError, match="no CA named"):
        call_command("crl", "--ca", "nope", stdout=io.StringIO())


def test_certificates_revoke_command_revokes_with_the_reason_given(issue):
    cert = issue()
    out = io.StringIO()
    call_command("certificates", "revoke", cert.serial.upper(), "--reason", "keyCompromise", stdout=out)
    cert.refresh_from_db()
    assert cert.status == "revoked" and cert.revocation_reason == "key_compromise"
    assert cert.revoked_by.startswith("cli:")
    assert "revoked 1 certificate(s) (key compromise)" in out.getvalue()


def test_certificates_revoke_command_reads_serials_from_a_file(issue, tmp_path):
    certs = [issue(f"f{i}@test.com") for i in range(3)]
    path = tmp_path / "serials.txt"
    path.write_text("\n".join(":".join(c.serial[i : i + 2] for i in range(0, len(c.serial), 2)) for c in certs))
    call_command("certificates", "revoke", "--file", path, "--reason", "affiliation-changed", "--by", "hr")
    assert set(Certificate.objects.values_list("status", "revocation_reason", "revoked_by")) == {
        ("revoked", "affiliation_changed", "hr")
    }


def test_certificates_revoke_command_refuses_unknown_serials_and_reasons(issue):
    issue()
    with pytest.raises(CommandError, match="no certificate with serial abc"):
        call_command("certificates", "revoke", "abc", "--reason", "superseded")
    with pytest.raises(CommandError, match="not a hexadecimal serial"):
        call_command("certificates", "revoke", "xyz", "--reason", "superseded")
    with pytest.raises(CommandError):
        call_command("certificates", "revoke", "abc", "--reason", "certificateHold")


@pytest.mark.django_db(transaction=True)
def test_concurrent_revocations_keep_crl_numbers_strictly_increasing(issue):
    certs = [issue(f"c{i}@test.com") for i in range(6)]
    errors = []

    def revoke(cert):
        try:
            lifecycle.revoke([cert], RevocationReason.SUPERSEDED, by="thread")
            publication.refresh_crls()
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)
        finally:
            connection.close()  # this thread's own connection: none left open at teardown

    threads = [threading.Thread(target=revoke, args=(c,)) for c in certs]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not errors
    ca = CertificateAuthority.objects.get(name="test-smime")
    numbers = list(RevocationList.objects.filter(ca=ca).order_by("created", "pk").values_list("number", flat=True))
    assert numbers == sorted(numbers) and len(set(numbers)) == len(numbers)
    latest = publication.latest_crl(ca)
    assert latest.entries == 6 and latest.generation == ca.revocation_generation == 6


@pytest.mark.django_db(transaction=True)
def test_builders_at_once_make_one_crl(issue):
    """The watchers of several servers and a download, all finding the CRL stale at once: one builds, the
    others find its CRL current (a file lock on SQLite, an advisory lock across hosts on PostgreSQL)."""
    cert = issue("builders@test.com")
    first = publication.publish_crl(cert.ca)
    lifecycle.revoke([cert], RevocationReason.KEY_COMPROMISE, by="test")
    made, errors = [], []

    def build():
        try:
            made.append(publication.publish_crl(cert.ca_id, force=False).number)
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)
        finally:
            connection.close()  # this thread's own connection: none left open at teardown

    threads = [threading.Thread(target=build) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not errors
    assert set(made) == {first.number + 1}
    assert RevocationList.objects.filter(ca_id=cert.ca_id).count() == 2
