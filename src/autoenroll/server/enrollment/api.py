"""The enrollment service (what the agent's `requestpath` points at).

`logon` does a whole logon in one call (sync, checks, issuance) and `logon/status` confirms the
installation with the status token of the logon's answer; sync, enroll, requests/{id} and status are
the older agents' three calls. Every call but `logon/status` is authenticated with HTTP Negotiate;
the Kerberos principal is the caller's identity.
"""

from __future__ import annotations

import logging

from django.http import HttpRequest, HttpResponse
from ninja import Router, Schema
from ninja.security.base import AuthBase
from pydantic import ConfigDict

from autoenroll.protocol import messages as msg
from autoenroll.server.kerberos import spnego

from . import configuration, pipeline
from .boundary import Long, PerPrincipalRate, Short, record_kerberos_refusal

log = logging.getLogger("autoenroll.enrollment")


class NegotiateAuth(AuthBase):
    """HTTP Negotiate (SPNEGO/Kerberos) for django-ninja; the 401 answer is built by the API's handler."""

    openapi_type = "http"
    openapi_scheme = "negotiate"

    def __call__(self, request: HttpRequest):
        try:
            return spnego.negotiate(request, list(configuration.current().realms))
        except spnego.NegotiateError as exc:
            request.negotiate_error = exc
            record_kerberos_refusal(request, exc)
            return None


negotiate_auth = NegotiateAuth()  # one per process: the routes' and `api.direct`'s
router = Router(auth=negotiate_auth, tags=["enrollment"])
issuing_rate = PerPrincipalRate()  # one per process, shared by the calls that can issue


class ErrorDetail(Schema):
    code: int
    message: str


class ErrorOut(Schema):
    error: ErrorDetail


def documented(*required: str, enums: dict[str, list[str]] | None = None) -> ConfigDict:
    """What the OpenAPI document says a client must send. The model itself accepts a body without
    these fields: the pipeline answers the guide's number for each one missing (1, 26, 29, 21 …), which
    a validation error could not."""

    def extra(schema: dict) -> None:
        schema["required"] = sorted(set(schema.get("required", [])) | set(required))
        for name in required:
            prop = schema["properties"][name]
            branches = [b for b in prop.pop("anyOf", [prop.copy()]) if b.get("type") != "null"]
            prop.update(branches[0] if len(branches) == 1 else {"anyOf": branches})
        for name, values in (enums or {}).items():
            schema["properties"][name]["enum"] = values

    return ConfigDict(json_schema_extra=extra)


REPORTED = {"status": sorted(msg.REPORTED_STATUSES)}


class SyncIn(Schema):
    model_config = documented("customeruri")

    customeruri: Short | None = None
    orgid: Short | int | None = None
    domainname: Short | None = None
    email: Short | None = None


class SyncOut(Schema):
    principal: str
    email: str
    cn: str
    orgid: str | None
    customeruri: str


class EnrollIn(Schema):
    model_config = documented("customeruri", "email", "csr")

    customeruri: Short | None = None
    orgid: Short | int | None = None
    email: Short | None = None
    cn: Short | None = None
    csr: Long | None = None


class EnrollOut(Schema):
    request_id: str
    status: str
    certificate: str | None = None
    chain: str | None = None
    serial: str | None = None
    status_token: str | None = None
    retry_after: int | None = None


class LogonIn(EnrollIn):
    model_config = documented("customeruri", "csr")

    domainname: Short | None = None


class LogonOut(SyncOut, EnrollOut):
    request_id: str | None = None


class LogonStatusIn(Schema):
    model_config = documented("status", enums=REPORTED)

    status_token: Long
    status: Short | None = None
    serial: Short | None = None
    replaced_serial: Short | None = None


class StatusIn(Schema):
    model_config = documented("customeruri", "status", "serial", enums=REPORTED)

    customeruri: Short | None = None
    status: Short | None = None
    serial: Short | None = None
    replaced_serial: Short | None = None


class StatusOut(Schema):
    status: str
    revoked_serial: str | None = None


def _caller(request: HttpRequest, response: HttpResponse) -> pipeline.Caller:
    spnego.mutual_auth(response, request.negotiated)
    return pipeline.Caller(
        principal=request.kerberos_principal,
        realm=request.kerberos_realm,
        remote_addr=request.META.get("REMOTE_ADDR"),
    )


ERRORS = {400: ErrorOut, 401: str, 403: ErrorOut, 404: ErrorOut, 500: ErrorOut, 503: ErrorOut}


@router.post("/sync", response={200: SyncOut, **ERRORS}, summary="Resolve customer, organization, AD server and person")
def sync(request: HttpRequest, response: HttpResponse, body: SyncIn):
    return pipeline.sync(_caller(request, response), body.dict()).as_dict()


@router.post(
    "/enroll", response={200: EnrollOut, **ERRORS}, summary="Check a CSR against AD and issue", throttle=issuing_rate
)
def enroll(request: HttpRequest, response: HttpResponse, body: EnrollIn):
    return pipeline.request_answer(pipeline.enroll(_caller(request, response), body.dict()))


@router.get("/requests/{request_id}", response={200: EnrollOut, **ERRORS}, summary="Poll a pending request")
def poll(request: HttpRequest, response: HttpResponse, request_id: str):
    return pipeline.request_answer(pipeline.poll(_caller(request, response), request_id))


@router.post("/status", response={200: StatusOut, **ERRORS}, summary="Report installed/failed; revokes the replaced")
def status(request: HttpRequest, response: HttpResponse, body: StatusIn):
    revoked = pipeline.report_status(_caller(request, response), body.dict())
    return {"status": "ok", "revoked_serial": revoked.serial if revoked else None}


@router.post(
    "/logon",
    response={200: LogonOut, **ERRORS},
    summary="One call per logon: sync, check the CSR against AD, issue",
    throttle=issuing_rate,
)
def logon(request: HttpRequest, response: HttpResponse, body: LogonIn):
    return pipeline.logon(_caller(request, response), body.dict()).as_dict()


@router.post(
    "/logon/status",
    auth=None,
    response={200: StatusOut, **ERRORS},
    summary="Report installed/failed with the logon answer's status token; revokes the replaced",
)
def logon_status(request: HttpRequest, response: HttpResponse, body: LogonStatusIn):
    data = body.dict()
    try:
        revoked = pipeline.report_with_token(data.pop("status_token"), data, request.META.get("REMOTE_ADDR"))
    except pipeline.BadStatusToken as exc:
        log.warning("status report refused: %s (client %s)", exc, request.META.get("REMOTE_ADDR"))
        return spnego.unauthorized()
    return {"status": "ok", "revoked_serial": revoked.serial if revoked else None}
