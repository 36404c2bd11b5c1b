"""Recording enrollment events: one row per decision, success or refusal, for the log page and audit."""

from __future__ import annotations

import logging

from autoenroll.protocol import EnrollmentError
from autoenroll.server import metrics

from .models import EnrollmentEvent

log = logging.getLogger("autoenroll.enrollment")


def event(step: str, principal: str, *, error: EnrollmentError | None = None, message: str = "", **refs):
    """An event row, not yet saved: a success, or a refusal with the guide's number and the reason."""
    return EnrollmentEvent(
        step=step,
        outcome=EnrollmentEvent.Outcome.ERROR if error else EnrollmentEvent.Outcome.SUCCESS,
        error_code=error.code if error else None,
        message=(error.message if error else message)[:500],
        detail=error.detail[:4000] if error else "",
        principal=principal,
        **refs,
    )


def record_success(step: str, principal: str, **refs) -> EnrollmentEvent:
    log.info("%s %s: success", step, principal)
    row = event(step, principal, **refs)
    row.save(force_insert=True)
    metrics.count_step(step)
    return row


def record_error(step: str, principal: str, error: EnrollmentError, **refs) -> EnrollmentEvent:
    log.warning("%s %s: error %d %s %s", step, principal, error.code, error.message, error.detail)
    row = event(step, principal, error=error, **refs)
    row.save(force_insert=True)
    metrics.count_step(step, error.code)
    return row
