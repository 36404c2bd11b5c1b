"""The configuration generation: how every server process knows that what it holds in memory is stale.

Customers, domains, organizations, AD servers, Kerberos realms and CAs change only when an admin
edits them, but the enrollment hot path needs them on every logon. Each process keeps them in memory
(`enrollment.configuration`) and reads one number from the database, once per request: the
generation, bumped by any change of a watched model in the transaction of that change. Processes on
other hosts see the new number at their next request; nothing is pushed.
"""

from __future__ import annotations

import threading

from django.core.signals import request_finished, request_started
from django.db import connection, models
from django.db.models.signals import m2m_changed, post_delete, post_save

from .models import ConfigurationGeneration

_request = threading.local()
_READ = f"SELECT value FROM {ConfigurationGeneration._meta.db_table} WHERE id = 1"  # noqa: S608 - model's table


def bump(**_) -> None:
    """Signal receiver: the configuration changed (inside the change's transaction when there is one)."""
    ConfigurationGeneration.bump()


def current() -> int:
    """The generation, read from the database once per request (every call outside a request reads it)."""
    value = getattr(_request, "value", None)
    if value is None:
        with connection.cursor() as cursor:  # written out: on every request, compiling cost more than reading
            cursor.execute(_READ)
            row = cursor.fetchone()
        value = row[0] if row else 0
        if getattr(_request, "active", False):
            _request.value = value
    return value


def _request_started(**_) -> None:
    _request.active, _request.value = True, None


def _request_finished(**_) -> None:
    _request.active, _request.value = False, None


def watch(*watched: type[models.Model]) -> None:
    """Bump the generation whenever one of these models is saved or deleted (called from AppConfig.ready)."""
    for model in watched:
        post_save.connect(bump, sender=model, dispatch_uid=f"generation-save-{model._meta.label}")
        post_delete.connect(bump, sender=model, dispatch_uid=f"generation-delete-{model._meta.label}")
        for field in model._meta.many_to_many:
            m2m_changed.connect(bump, sender=field.remote_field.through, dispatch_uid=f"generation-m2m-{field}")


request_started.connect(_request_started, dispatch_uid="generation-request-started")
request_finished.connect(_request_finished, dispatch_uid="generation-request-finished")
