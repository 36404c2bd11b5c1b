"""Recording enrollment events: one row per decision, success or refusal, for the log page and audit."""

from __future__ import annotations

import logging

from django.utils import timezone

from autoenroll.protocol import EnrollmentError
from autoenroll.server import metrics
from autoenroll.server.audit import trail
from autoenroll.server.utils import rows

from .models import EnrollmentEvent

log = logging.getLogger("autoenroll.enrollment")


def event(
    step: str,
    principal: str,
    *,
    error: EnrollmentError | None = None,
    message: str = "",
    outcome: str | None = None,
    **refs,
) -> EnrollmentEvent:
    """An event row, not yet saved: a success, a refusal with the guide's number and the reason, or `outcome`
    (pending). Written with its MAC for the audit trail (audit.trail.event_mac)."""
    for name in _LINKS:  # by id: Django's check of a related object costs more than the rest of the row
        if name in refs:
            linked = refs.pop(name)
            refs[f"{name}_id"] = linked.pk if linked is not None else None
    row = rows.new(
        EnrollmentEvent,
        created=timezone.now(),
        step=step,
        outcome=outcome or (EnrollmentEvent.Outcome.ERROR if error else EnrollmentEvent.Outcome.SUCCESS),
        error_code=error.code if error else None,
        message=(error.message if error else message)[:500],
        detail=error.detail[:4000] if error else "",
        principal=principal,
        **refs,
    )
    if row.remote_addr:  # as the database will store it (IPv6 written out), so the MAC matches what is read back
        row.remote_addr = _REMOTE_ADDR.get_prep_value(row.remote_addr)
    row.mac = trail.event_mac(row)
    return row


_REMOTE_ADDR = EnrollmentEvent._meta.get_field("remote_addr")
_LINKS = ("customer", "organization", "person", "certificate")


def record_success(step: str, principal: str, **refs) -> EnrollmentEvent:
    log.info("%s %s: success", step, principal)
    row = event(step, principal, **refs)
    rows.insert(row)
    metrics.count_step(step)
    return row


def record_error(step: str, principal: str, error: EnrollmentError, **refs) -> EnrollmentEvent:
    log.warning("%s %s: error %d %s %s", step, principal, error.code, error.message, error.detail)
    row = event(step, principal, error=error, **refs)
    rows.insert(row)
    metrics.count_step(step, error.code)
    return row
