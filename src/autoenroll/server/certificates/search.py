"""Finding certificates the way an admin asks for them: by serial as it was written, by state in one word.

The admin pages' search, the REST API and the CLI filter through here, so that the same question gets the
same answer everywhere: ``0x00AB…``, ``ab…`` and ``AB:…`` name one certificate (``pki.parse_serial``), and
"expired" means what ``Certificate.state`` shows in the tables.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal, get_args

from django.db.models import QuerySet
from django.utils import timezone

from autoenroll.pki.serials import parse_serial

from .models import Certificate

__all__ = ["STATES", "State", "filter_by_serial", "filter_by_state"]

#: The words of `Certificate.state`.
State = Literal["issued", "revoked", "expired"]
STATES: tuple[str, ...] = get_args(State)


def filter_by_state(queryset: QuerySet, state: str, *, now: datetime | None = None) -> QuerySet:
    """The certificates whose `Certificate.state` is ``state`` (the same rule, as a database query)."""
    now = now or timezone.now()
    if state == "revoked":
        return queryset.filter(status=Certificate.Status.REVOKED)
    if state == "issued":
        return queryset.filter(status=Certificate.Status.ISSUED, not_after__gt=now)
    if state == "expired":
        return queryset.filter(status=Certificate.Status.ISSUED, not_after__lte=now)
    raise ValueError(f"unknown certificate state {state!r}; one of {', '.join(STATES)}")


def filter_by_serial(queryset: QuerySet, text: str, *, partial: bool = False) -> QuerySet:
    """The certificates with the serial ``text`` in any written form; ValueError when it is not a serial.

    ``partial`` also finds serials that contain it (the admin pages let a person type a few digits).
    """
    serial = parse_serial(text)
    return queryset.filter(serial__contains=serial) if partial else queryset.filter(serial=serial)
