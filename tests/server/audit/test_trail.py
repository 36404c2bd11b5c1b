"""The audit trail: what the server writes is chained and signed; rows changed, deleted or inserted behind its
back (straight SQL through the ORM's update/delete/create, as someone with database access would) are named."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import sqlite3

import pytest
from django.core.management import call_command
from django.utils import timezone

from autoenroll.protocol import EnrollmentError
from autoenroll.server.audit import trail
from autoenroll.server.audit.models import AuditCheckpoint, AuditRecord
from autoenroll.server.enrollment import events
from autoenroll.server.enrollment.models import EnrollmentEvent
from autoenroll.server.tenants.models import Customer

pytestmark = pytest.mark.django_db


@pytest.fixture
def sealed(ca, acme):
    """A customer changed twice and four enrollment events, sealed in two rounds (two checkpoints)."""
    events.record_success("sync", "ann@TEST.COM", customer=acme, remote_addr="::ffff:10.0.0.1")
    events.record_error("enroll", "ann@TEST.COM", EnrollmentError(18, "mail mismatch"), customer=acme)
    assert trail.seal().checkpoint is not None
    Customer.objects.filter(pk=acme.pk).first().save()  # an admin's Save: a configuration change
    events.record_success("enroll", "bob@TEST.COM", customer=acme, remote_addr="10.0.0.2")
    events.record_success("status", "bob@TEST.COM", customer=acme)
    assert trail.seal().chained >= 3
    report = trail.verify()
    assert report.intact, report.problems
    return report


def first_problem() -> str:
    report = trail.verify(now=timezone.now() + dt.timedelta(days=1))  # past the sealing grace
    assert not report.intact
    return report.problems[0]


def test_events_and_configuration_changes_are_chained_and_signed(sealed):
    kinds = list(AuditRecord.objects.order_by("position").values_list("kind", flat=True))
    assert kinds.count("event") == 4 and kinds.count("config") >= 2  # the customer's creation and its Save
    assert list(AuditRecord.objects.order_by("position").values_list("position", flat=True)) == list(
        range(1, len(kinds) + 1)
    )
    assert sealed.checkpoints == 2 and trail.seal().chained == 0  # nothing new: no checkpoint either
    assert EnrollmentEvent.objects.exclude(mac="").count() == 4


def test_a_round_sealed_while_verify_walks_the_chain_is_no_problem(sealed, acme, monkeypatch):
    events.record_success("enroll", "carl@TEST.COM", customer=acme)
    real = trail._check_events

    def seal_meanwhile(copies):
        monkeypatch.setattr(trail, "_check_events", real)
        assert trail.seal().checkpoint is not None  # another server's round, committed during the walk
        return real(copies)

    monkeypatch.setattr(trail, "_check_events", seal_meanwhile)
    report = trail.verify()
    assert report.intact, report.problems
    assert trail.verify().intact


def test_export_is_json_lines_a_siem_can_check(sealed):
    lines = [json.loads(line) for line in trail.export()]
    records = [r for r in lines if r["type"] == "record"]
    assert [r["position"] for r in records] == list(range(1, len(records) + 1))
    prev = trail.GENESIS
    for r in records:  # the chain checks out from the export alone
        assert r["prev"] == prev and r["hash"] == hashlib.sha256((prev + r["mac"]).encode()).hexdigest()
        prev = r["hash"]
    assert lines[-1]["type"] == "checkpoint" and lines[-1]["hash"] == prev and lines[-1]["signature"]


def _record_of(outcome: str) -> AuditRecord:
    return AuditRecord.objects.get(event_id=EnrollmentEvent.objects.get(outcome=outcome).pk)


def test_a_changed_record_is_named(sealed):
    record = _record_of("error")
    AuditRecord.objects.filter(pk=record.pk).update(data=record.data.replace("mail mismatch", "all fine"))
    assert (
        first_problem() == f"record #{record.position} ({record.subject}) was changed: its content does not "
        "match its MAC"
    )


def test_a_deleted_record_is_named(sealed):
    AuditRecord.objects.filter(position=3).delete()
    assert first_problem().startswith("records #3 to #3 were deleted")


def test_an_inserted_record_is_named(sealed):
    last = AuditRecord.objects.order_by("-position").first()
    AuditRecord.objects.create(created=timezone.now(), kind="config", subject="tenants.Customer 1 changed",
                               data="{}", mac="0" * 64, position=last.position + 1, prev=last.hash,
                               hash=hashlib.sha256((last.hash + "0" * 64).encode()).hexdigest())  # fmt: skip
    AuditRecord.objects.create(created=timezone.now(), kind="config", subject="forged", data="{}", mac="1" * 64)
    report = trail.verify(now=timezone.now() + dt.timedelta(days=1))
    assert f"record #{last.position + 1} (tenants.Customer 1 changed) was changed" in report.problems[0]
    assert any("(forged) is in no chain" in p for p in report.problems)


def test_the_enrollment_log_edited_deleted_or_forged_is_named(sealed):
    ann, error, bob, status = EnrollmentEvent.objects.order_by("pk")
    EnrollmentEvent.objects.filter(pk=error.pk).update(error_code=None, outcome="success")
    EnrollmentEvent.objects.filter(pk=status.pk).delete()
    forged = EnrollmentEvent.objects.create(step="enroll", outcome="success", principal="eve@TEST.COM")
    problems = trail.verify(now=timezone.now() + dt.timedelta(days=1)).problems
    assert f"enrollment event {error.pk} was changed after it was recorded" in " ".join(problems)
    assert f"enrollment event {status.pk} was deleted" in " ".join(problems)
    assert f"enrollment event {forged.pk} is not in the audit trail" in " ".join(problems)
    trail.seal()  # the sealer copies the forged row like any other: its missing MAC still gives it away
    problems = trail.verify(now=timezone.now() + dt.timedelta(days=1)).problems
    assert f"enrollment event {forged.pk} was not written by the server" in " ".join(problems)


def test_deleting_a_customer_empties_links_and_is_no_tampering(sealed, acme):
    """An admin deletes a customer: the database empties its events' link to it (SET_NULL). Not tampering."""
    acme.delete()
    assert trail.seal().chained >= 1  # the deletion, a configuration change
    assert trail.verify().intact, trail.verify().problems


def test_a_chain_rewritten_with_the_secret_key_still_fails_its_signed_checkpoints(sealed):
    """Someone with SECRET_KEY recomputes every MAC and hash after changing a record; the checkpoints were
    signed with the CA key, which needs the passphrase."""
    record = _record_of("error")
    record.data = record.data.replace("ann@TEST.COM", "mallory@TEST.COM")
    record.mac = trail._record_mac(record)
    prev = record.prev
    for r in [record, *AuditRecord.objects.filter(position__gt=record.position).order_by("position")]:
        r.prev, r.hash = prev, trail._chained(prev, r.mac)
        prev = r.hash
        r.save()
    problems = trail.verify().problems
    assert any("is not the one signed" in p for p in problems), problems
    AuditCheckpoint.objects.update(hash=prev)  # and the checkpoints too: their signatures no longer match
    assert any("is not signed by" in p for p in trail.verify().problems)


def test_the_command_says_intact_or_names_the_first_problem(sealed, capsys):
    call_command("audit", "verify")
    assert "intact:" in capsys.readouterr().out
    AuditRecord.objects.filter(position=1).delete()
    with pytest.raises(Exception, match="tampered with: .* first: records #1 to #1 were deleted"):
        call_command("audit", "verify")


def test_which_domains_an_organization_holds_and_the_administrators_are_recorded(acme):
    """Both decide who gets what: an organization's domains (a many-to-many table, invisible to a row's
    save) and the administrator accounts (a Super Admin added, an admin disabled). A sign-in is no change."""
    from django.contrib.auth import get_user_model

    from autoenroll.server.tenants.models import EmailDomain, Organization

    org = Organization.objects.create(customer=acme, name="Sales")
    org.domains.set(EmailDomain.objects.filter(customer=acme))
    record = AuditRecord.objects.get(subject=f"tenants.Organization {org.pk} domains changed")
    assert json.loads(record.data) == {"domains": ["test.com"]}
    call_command("admins", "add", "boss", "--super", "--password-file", _password_file())
    boss = get_user_model().objects.get(username="boss")
    assert AuditRecord.objects.filter(subject=f"auth.User {boss.pk} created").exists()
    made = json.loads(AuditRecord.objects.filter(subject__startswith=f"auth.User {boss.pk} ").latest("pk").data)
    assert made["is_superuser"] is True and made["password"] == "(set)"  # never the hash
    before = AuditRecord.objects.count()
    from django.contrib.auth.models import update_last_login

    update_last_login(None, boss)  # what a sign-in does (the user_logged_in receiver)
    assert AuditRecord.objects.count() == before
    boss.is_active = False
    boss.save()
    assert AuditRecord.objects.filter(subject=f"auth.User {boss.pk} changed").exists()


def _password_file() -> str:
    import tempfile

    with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False) as f:
        f.write("a-Long-Passw0rd-42\n")
    return f.name


@pytest.mark.django_db(transaction=True)
def test_while_a_round_chains_thousands_of_events_a_logon_can_still_commit(ca, acme, monkeypatch):
    """After a logon storm the sealer reads, MACs and chains thousands of events. On SQLite, one writer at a
    time: if that happened inside its write transaction, every logon's commit would wait for it (the storm's
    open-loop points showed half a second on the p95)."""
    from django.db import connection

    if connection.vendor != "sqlite":
        pytest.skip("PostgreSQL has no database-wide write lock")
    for i in range(1200):
        events.record_success("enroll", f"user{i}@TEST.COM", customer=acme)
    made, tried = [], []
    real = trail._record_mac

    def mac_then_commit_elsewhere(record):
        made.append(record)
        if len(made) == 600:  # halfway through the events: a logon commits from its own connection
            other = sqlite3.connect(connection.settings_dict["NAME"], timeout=0.5)
            try:
                other.execute("BEGIN IMMEDIATE")
                other.execute("ROLLBACK")
                tried.append("committed")
            except sqlite3.OperationalError as exc:
                tried.append(str(exc))
            finally:
                other.close()
        return real(record)

    monkeypatch.setattr(trail, "_record_mac", mac_then_commit_elsewhere)
    report = trail.seal()
    assert tried == ["committed"]
    assert report.copied == 1200 and report.checkpoint is not None
    assert trail.verify().intact


@pytest.mark.django_db(transaction=True)
def test_a_round_stopped_midway_leaves_an_intact_chain_that_the_next_round_finishes_and_signs(ca, acme, monkeypatch):
    """The server stopped between two of a round's transactions, or before its checkpoint: what was written
    verifies, and the next round goes on from it and signs the whole chain, even with nothing new."""
    configuration = AuditRecord.objects.count()  # the CA's and the customer's creation, not chained yet
    for i in range(2 * trail.WRITE_CHUNK + 50):
        events.record_success("enroll", f"user{i}@TEST.COM", customer=acme)
    real_create = AuditRecord.objects.bulk_create
    chunks = []

    def stop_at_the_second_chunk(records, *args, **kwargs):
        chunks.append(len(records))
        if len(chunks) == 2:
            raise SystemExit("the server stopped")
        return real_create(records, *args, **kwargs)

    monkeypatch.setattr(AuditRecord.objects, "bulk_create", stop_at_the_second_chunk)
    with pytest.raises(SystemExit):
        trail.seal()
    assert AuditRecord.objects.filter(position__isnull=False).count() == configuration + trail.WRITE_CHUNK
    assert trail.verify().intact
    monkeypatch.setattr(AuditRecord.objects, "bulk_create", real_create)

    real_save = AuditCheckpoint.save
    monkeypatch.setattr(AuditCheckpoint, "save", lambda *a, **k: (_ for _ in ()).throw(SystemExit("stopped")))
    with pytest.raises(SystemExit):
        trail.seal()  # the rest written, its checkpoint not
    monkeypatch.setattr(AuditCheckpoint, "save", real_save)
    report = trail.seal()
    assert (report.chained, report.checkpoint) == (0, configuration + 2 * trail.WRITE_CHUNK + 50)
    assert AuditCheckpoint.objects.order_by("-position").first().position == AuditRecord.objects.count()
    assert trail.verify().intact
    assert trail.seal().checkpoint is None  # signed now: nothing to do
