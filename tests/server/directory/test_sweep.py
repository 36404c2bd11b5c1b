"""Users disabled or deleted in AD lose their certificates (reason affiliationChanged) at the next sweep."""

import uuid

import pytest
from django.core.management import call_command

from autoenroll import pki
from autoenroll.server.certificates import authority
from autoenroll.server.certificates.models import Certificate
from autoenroll.server.directory.models import ADServer, Person
from autoenroll.testbed import samba

pytestmark = pytest.mark.django_db


def holder(acme, server, sam, settings):
    person = Person.objects.create(
        customer=acme, ad_server=server, principal=f"{sam}@{samba.REALM}", sam_account_name=sam, mail=f"{sam}@test.com"
    )
    key = pki.generate_private_key("ec-p256").public_key()
    return authority.issue_smime(settings.CONFIG, key, person.mail, person=person)


def test_a_user_disabled_in_ad_loses_their_certificate(ca, ad_server, samba_ad, settings, capsys):
    sam = f"leaver{uuid.uuid4().hex[:6]}"
    samba_ad.add_user(sam, "Passw0rd!Leave1", mail=f"{sam}@test.com")
    leaver = holder(ad_server.customer, ad_server, sam, settings)
    stayer = holder(ad_server.customer, ad_server, "user1", settings)
    samba_ad.disable_user(sam)
    call_command("persons", "sweep")
    leaver.refresh_from_db()
    stayer.refresh_from_db()
    assert (leaver.status, leaver.revocation_reason) == ("revoked", "affiliation_changed")
    assert stayer.status == "issued"
    assert Person.objects.get(principal=f"{sam}@{samba.REALM}").enabled is False
    assert f"{sam}@{samba.REALM}: left AD" in capsys.readouterr().out


def test_an_unreachable_ad_server_revokes_nothing(ca, ad_server, settings):
    cert = holder(ad_server.customer, ad_server, "user1", settings)
    ADServer.objects.filter(pk=ad_server.pk).update(port=1)
    call_command("persons", "sweep")
    assert Certificate.objects.get(pk=cert.pk).status == "issued"


def test_while_another_server_sweeps_this_one_skips_its_round(ca, ad_server, samba_ad, settings, capsys):
    """Every server's timer may fire at once: the sweep's lock (an advisory lock on PostgreSQL, a file
    lock on SQLite) is held by the other one, so this round revokes nothing and says why."""
    import threading

    from autoenroll.server.utils.exclusive import one_at_a_time

    sam = f"leaver{uuid.uuid4().hex[:6]}"
    samba_ad.add_user(sam, "Passw0rd!Leave1", mail=f"{sam}@test.com")
    leaver = holder(ad_server.customer, ad_server, sam, settings)
    samba_ad.disable_user(sam)
    held, release = threading.Event(), threading.Event()

    def other_server():  # its own database connection, as another process would have
        from django.db import connection

        try:
            with one_at_a_time(settings.CONFIG.data_dir, "sweep"):
                held.set()
                release.wait(30)
        finally:
            connection.close()

    thread = threading.Thread(target=other_server)
    thread.start()
    try:
        assert held.wait(30)
        call_command("persons", "sweep")
        assert "another server is sweeping now" in capsys.readouterr().out
        assert Certificate.objects.get(pk=leaver.pk).status == "issued"
    finally:
        release.set()
        thread.join(30)
    call_command("persons", "sweep")
    assert Certificate.objects.get(pk=leaver.pk).status == "revoked"
