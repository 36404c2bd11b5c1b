"""Recording enrollment events: one row per decision, success or refusal, for the log page and audit."""

from __future__ import annotations

import logging

from autoenroll.protocol import EnrollmentError

from .models import EnrollmentEvent

log = logging.getLogger("autoenroll.enrollment")


def record_success(step: str, principal: str, **refs) -> EnrollmentEvent:
    log.info("%s %s: success", step, principal)
    return EnrollmentEvent.objects.create(
        step=step, outcome=EnrollmentEvent.Outcome.SUCCESS, principal=principal, **refs
    )


def record_error(step: str, principal: str, error: EnrollmentError, **refs) -> EnrollmentEvent:
    log.warning("%s %s: error %d %s %s", step, principal, error.code, error.message, error.detail)
    return EnrollmentEvent.objects.create(
        step=step,
        outcome=EnrollmentEvent.Outcome.ERROR,
        error_code=error.code,
        message=error.message,
        detail=error.detail[:4000],
        principal=principal,
        **refs,
    )
