"""Person sync: read a user from AD and keep the Person row in step with it.

The identity of every certificate comes from here, never from what a client sends.
"""

from __future__ import annotations

import logging
from datetime import timedelta

from django.db import DatabaseError
from django.utils import timezone

from autoenroll.protocol import EnrollmentError
from autoenroll.server.tenants.models import Customer, Organization
from autoenroll.server.utils import database, rows

from .ldap import DirectoryError, DirectoryUser, client_for
from .models import ADServer, Person

log = logging.getLogger(__name__)


def read_user(server: ADServer, principal: str) -> DirectoryUser:
    """The AD user behind `principal`; error 13 when AD cannot answer, 17 when there is no such user."""
    client = client_for(server.pk, server.ldap_settings())
    try:
        user = client.find_user(principal)
    except DirectoryError as exc:
        raise EnrollmentError(13, f"AD server {server}: {exc}") from None
    if user is None:
        raise EnrollmentError(17, f"{principal} not found under {server.users_base_dn}")
    if not user.enabled:
        raise EnrollmentError(17, f"{principal} is disabled in AD")
    return user


#: A person row whose AD attributes did not change is rewritten (for its `synced_at`) at most this often.
QUIET_SYNC_WRITE = timedelta(minutes=5)


def store_person(
    customer: Customer,
    server: ADServer,
    principal: str,
    user: DirectoryUser,
    organization: Organization | None,
    current: Person | None = None,
) -> Person:
    """Keep the Person row in step with what AD said; error 14 when the row cannot be written.

    With `current` (the row as just read, locked), nothing is written when AD said nothing new and the
    row was synced less than QUIET_SYNC_WRITE ago: a logon storm then costs no person writes."""
    fields = _fields(server, user, organization)
    now = timezone.now()
    if current is not None:
        changed = {k: v for k, v in fields.items() if getattr(current, k) != v}
        if changed or current.synced_at is None or now - current.synced_at > QUIET_SYNC_WRITE:
            try:
                Person.objects.filter(pk=current.pk).update(**changed, synced_at=now)
            except DatabaseError as exc:
                raise database.refusal(14, exc, f"cannot store person {principal}: ") from None
            for k, v in changed.items():
                setattr(current, k, v)
            current.synced_at = now
        return current
    try:
        person, _ = Person.objects.update_or_create(
            customer=customer,
            principal=principal,
            defaults={**fields, "synced_at": now},
        )
    except DatabaseError as exc:
        raise database.refusal(14, exc, f"cannot store person {principal}: ") from None
    return person


def add_person(
    customer: Customer, server: ADServer, principal: str, user: DirectoryUser, organization: Organization | None
) -> None:
    """A first logon's person row, unless a concurrent first logon of the same principal wrote it first (then
    theirs stays: the caller locks the row and brings it in step with `store_person`). Error 14 when the
    row cannot be written."""
    person = Person(
        customer=customer, principal=principal, **_fields(server, user, organization), synced_at=timezone.now()
    )
    try:
        rows.insert(person, ignore_conflicts=True)
    except DatabaseError as exc:
        raise database.refusal(14, exc, f"cannot store person {principal}: ") from None


def _fields(server: ADServer, user: DirectoryUser, organization: Organization | None) -> dict:
    return {
        "ad_server_id": server.pk,
        "organization_id": organization.pk if organization else None,
        "sam_account_name": user.sam_account_name,
        "mail": user.mail,
        "cn": user.cn,
        "dn": user.dn,
        "enabled": user.enabled,
    }


def sync_person(
    customer: Customer, server: ADServer, principal: str, organization: Organization | None = None
) -> tuple[Person, DirectoryUser]:
    """Read the user from AD and store what AD says."""
    user = read_user(server, principal)
    return store_person(customer, server, principal, user, organization), user
