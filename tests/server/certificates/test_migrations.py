"""Schema changes of the certificates app: the models match the migrations, and data migrations fill what
the code now reads."""

from __future__ import annotations

import importlib
from types import SimpleNamespace

import pytest
from django.apps import apps
from django.core.management import call_command
from django.db import connection

from autoenroll import pki
from autoenroll.server.certificates.models import Certificate, RevocationReason
from autoenroll.server.enrollment import lifecycle

pytestmark = pytest.mark.django_db


def test_every_model_change_has_its_migration():
    call_command("makemigrations", "--check", "--dry-run", verbosity=0)  # exits non-zero when one is missing


def test_certificates_revoked_before_0007_get_their_crl_entry(issue):
    revoked, kept = issue("old@test.com"), issue("valid@test.com")
    lifecycle.revoke([revoked], RevocationReason.AFFILIATION_CHANGED, by="test")
    Certificate.objects.filter(pk=revoked.pk).update(crl_entry=None)  # as before the migration
    migration = importlib.import_module("autoenroll.server.certificates.migrations.0007_crl_entry")
    migration.encode_revoked(apps, SimpleNamespace(connection=connection))
    revoked.refresh_from_db()
    assert bytes(revoked.crl_entry) == pki.crl_entry(int(revoked.serial, 16), revoked.revoked_at, "affiliation_changed")
    assert Certificate.objects.get(pk=kept.pk).crl_entry is None
