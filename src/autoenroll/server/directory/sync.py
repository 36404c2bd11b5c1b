"""Person sync: read a user from AD and keep the Person row in step with it.

The identity of every certificate comes from here, never from what a client sends.
"""

from __future__ import annotations

import logging

from django.db import DatabaseError
from django.utils import timezone

from autoenroll.protocol import EnrollmentError
from autoenroll.server.tenants.models import Customer, Organization

from .ldap import DirectoryError, DirectoryUser, client_for
from .models import ADServer, Person

log = logging.getLogger(__name__)


def read_user(server: ADServer, principal: str) -> DirectoryUser:
    """The AD user behind `principal`; error 13 when AD cannot answer, 17 when there is no such user."""
    client = client_for(server.ldap_settings())
    try:
        user = client.find_user(principal)
    except DirectoryError as exc:
        raise EnrollmentError(13, f"AD server {server}: {exc}") from None
    if user is None:
        raise EnrollmentError(17, f"{principal} not found under {server.users_base_dn}")
    if not user.enabled:
        raise EnrollmentError(17, f"{principal} is disabled in AD")
    return user


def store_person(
    customer: Customer, server: ADServer, principal: str, user: DirectoryUser, organization: Organization | None
) -> Person:
    """Keep the Person row in step with what AD said; error 14 when the row cannot be written."""
    try:
        person, _ = Person.objects.update_or_create(
            customer=customer,
            principal=principal,
            defaults={
                "ad_server": server,
                "organization": organization,
                "sam_account_name": user.sam_account_name,
                "mail": user.mail,
                "cn": user.cn,
                "dn": user.dn,
                "enabled": user.enabled,
                "synced_at": timezone.now(),
            },
        )
    except DatabaseError as exc:
        raise EnrollmentError(14, f"cannot store person {principal}: {exc}") from None
    return person


def sync_person(
    customer: Customer, server: ADServer, principal: str, organization: Organization | None = None
) -> tuple[Person, DirectoryUser]:
    """Read the user from AD and store what AD says."""
    user = read_user(server, principal)
    return store_person(customer, server, principal, user, organization), user
