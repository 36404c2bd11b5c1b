"""The enrollment log (every EnrollmentEvent, with the guide's potential reasons) and pending requests."""

from __future__ import annotations

from datetime import datetime
from uuid import UUID

from django.http import HttpRequest
from django.shortcuts import get_object_or_404
from ninja import Query, Router, Schema
from ninja.errors import HttpError

from autoenroll.protocol import EnrollmentError
from autoenroll.protocol.messages import http_status
from autoenroll.server.enrollment import lifecycle
from autoenroll.server.enrollment.models import EnrollmentEvent, EnrollmentRequest
from autoenroll.server.utils.restrict import restricted

from .auth import ADMIN_AUTH
from .crud import Integer, require_admin

router = Router(auth=ADMIN_AUTH, tags=["enrollment log"])
requests_router = Router(auth=ADMIN_AUTH, tags=["enrollment requests"])


class EventOut(Schema):
    id: int
    created: datetime
    step: str
    outcome: str
    error_code: int | None
    message: str
    potential_reasons: list[str]
    principal: str
    customer: str | None
    certificate: int | None

    @staticmethod
    def resolve_customer(obj: EnrollmentEvent) -> str | None:
        return obj.customer.uri if obj.customer_id else None

    @staticmethod
    def resolve_certificate(obj: EnrollmentEvent) -> int | None:
        return obj.certificate_id

    @staticmethod
    def resolve_potential_reasons(obj: EnrollmentEvent) -> list[str]:
        return list(obj.potential_reasons)


class EventFilter(Schema):
    code: Integer | None = None
    principal: str | None = None
    outcome: EnrollmentEvent.Outcome | None = None


@router.get("", response=list[EventOut], summary="The enrollment log, newest first")
def events(request: HttpRequest, filters: Query[EventFilter]):
    require_admin(request)
    qs = restricted(EnrollmentEvent, request.user).select_related("customer")
    if filters.code is not None:
        qs = qs.filter(error_code=filters.code)
    if filters.principal:
        qs = qs.filter(principal__icontains=filters.principal)
    if filters.outcome:
        qs = qs.filter(outcome=filters.outcome)
    return qs[:1000]


class RequestOut(Schema):
    id: UUID
    created: datetime
    status: str
    principal: str
    mail: str
    certificate: int | None

    @staticmethod
    def resolve_principal(obj: EnrollmentRequest) -> str:
        return obj.person.principal

    @staticmethod
    def resolve_mail(obj: EnrollmentRequest) -> str:
        return obj.person.mail

    @staticmethod
    def resolve_certificate(obj: EnrollmentRequest) -> int | None:
        return obj.certificate_id


def _request(request: HttpRequest, pk: UUID) -> EnrollmentRequest:
    require_admin(request)
    return get_object_or_404(restricted(EnrollmentRequest, request.user).select_related("person", "customer"), pk=pk)


@requests_router.get("", response=list[RequestOut], summary="Enrollment requests (pending first)")
def list_requests(request: HttpRequest, status: EnrollmentRequest.Status | None = None):
    require_admin(request)
    qs = restricted(EnrollmentRequest, request.user).select_related("person")
    return (qs.filter(status=status) if status else qs).order_by("status", "-created")[:1000]


@requests_router.post(
    "/{pk}/approve",
    response=RequestOut,
    summary="Approve: the certificate is issued now",
    description="Approved already: answered as it is (a retry converges). 409 when it was rejected, or when the "
    "rules of any issuance refuse it now (customer disabled, domain not authorized, ...); it stays pending.",
)
def approve(request: HttpRequest, pk: UUID):
    req = _request(request, pk)
    try:
        return lifecycle.approve(req.pk, by=request.user.get_username())
    except ValueError as exc:
        raise HttpError(409, str(exc)) from None
    except EnrollmentError as exc:  # the CA or the database cannot now: 503; the rules refuse it: 409
        raise HttpError(503 if (exc.http_status or http_status(exc.code)) >= 500 else 409, str(exc)) from None


@requests_router.post(
    "/{pk}/reject",
    response=RequestOut,
    summary="Reject: the agent's next poll gets error 25",
    description="Rejected already: answered as it is (a retry converges). 409 when it was issued.",
)
def reject(request: HttpRequest, pk: UUID):
    req = _request(request, pk)
    try:
        return lifecycle.reject(req.pk, by=request.user.get_username())
    except ValueError as exc:
        raise HttpError(409, str(exc)) from None
