"""`/healthz` for the load balancer: 200 when this server can enroll, 503 with the reason when not."""

import pytest
from django.db import DatabaseError

pytestmark = pytest.mark.django_db


def test_a_server_that_can_enroll_is_healthy(client):
    answer = client.get("/healthz")
    assert answer.status_code == 200 and answer.json() == {"status": "ok"}
    assert answer["Cache-Control"] == "no-store"
    assert client.head("/healthz").status_code == 200
    assert client.post("/healthz").status_code == 405


def test_without_the_ca_passphrase_the_balancer_is_told_to_go_elsewhere(client, settings):
    settings.CONFIG = settings.CONFIG.model_copy(update={"ca_passphrase": None, "ca_passphrase_file": None})
    answer = client.get("/healthz")
    assert answer.status_code == 503
    assert answer.json()["status"] == "unavailable" and "CA_PASSPHRASE" in answer.json()["reason"]


def test_without_the_database_it_is_unavailable(client, monkeypatch):
    from django.db.backends.utils import CursorWrapper

    def refuse(self, sql, params=None):
        raise DatabaseError("connection refused")

    monkeypatch.setattr(CursorWrapper, "execute", refuse)
    answer = client.get("/healthz")
    assert answer.status_code == 503 and answer.json()["reason"] == "the database does not answer"


def test_djangos_own_admin_site_is_not_served(client):
    """The guide's screens are the admin pages; Django's Groups and Users would be a way around them."""
    assert client.get("/admin/", secure=True).status_code == 404
    assert client.get("/admin/login/", secure=True).status_code == 404
