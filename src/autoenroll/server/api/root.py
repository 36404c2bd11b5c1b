"""The server's HTTP API (django-ninja, OpenAPI at /api/docs): the enrollment service for agents
(HTTP Negotiate) and the administration API (bearer tokens or the admin's session)."""

from __future__ import annotations

import logging

from django.http import HttpRequest, HttpResponse
from ninja import NinjaAPI
from ninja.errors import AuthenticationError, HttpError, ValidationError
from ninja.parser import Parser

from autoenroll import __version__
from autoenroll.protocol import EnrollmentError
from autoenroll.protocol.messages import API_PREFIX, error_body, http_status
from autoenroll.server.enrollment import boundary
from autoenroll.server.enrollment.api import router as enrollment_router
from autoenroll.server.kerberos import spnego
from autoenroll.server.utils import database
from autoenroll.server.utils.text import storable

from . import certificates, directory, enrollment, kerberos, openapi, tenants, tokens

log = logging.getLogger("autoenroll.api")


class StrictParser(Parser):
    """What reaches a view is what the document describes: a query parameter given once, not read as its
    last value when repeated; no NUL or lone surrogate in a query parameter nor, in the admin API, in any
    string of a body, which must be a JSON object (PostgreSQL refuses the one, SQLite cannot encode the
    other: a 500 either way, as a filter or as a value). The enrollment calls check their body's fields
    themselves, each with the guide's number."""

    def parse_querydict(self, data, list_fields, request):
        problems = [
            (key, "given more than once") for key in data if key not in list_fields and len(data.getlist(key)) > 1
        ]
        problems += [(key, "NUL or a lone surrogate") for key, values in data.lists() if _unstorable([key, *values])]
        if problems:
            raise ValidationError([{"loc": ["query", key], "msg": msg, "type": "value_error"} for key, msg in problems])
        return super().parse_querydict(data, list_fields, request)

    def parse_body(self, request):
        body = super().parse_body(request)
        if _enrollment(request):
            return body
        problem = "not a JSON object" if not isinstance(body, dict) else None  # `[]` was read as an empty PATCH
        if problem is None and _unstorable(body):
            problem = "NUL or a lone surrogate in a string"
        if problem:
            raise ValidationError([{"loc": ["body"], "msg": problem, "type": "value_error"}])
        return body


def _unstorable(value) -> bool:
    if isinstance(value, str):
        return not storable(value)
    if isinstance(value, dict):
        return any(_unstorable(k) or _unstorable(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_unstorable(v) for v in value)
    return False


class AutoenrollAPI(NinjaAPI):
    def get_openapi_schema(self, *args, **kwargs):
        return openapi.complete(super().get_openapi_schema(*args, **kwargs))


api = AutoenrollAPI(
    title="autoenroll",
    version=__version__,
    description="Automatic S/MIME enrollment for Active Directory users. See docs/protocol.md.",
    urls_namespace="api",
    parser=StrictParser(),
)
api.add_router("/enroll", enrollment_router)
api.add_router("/customers", tenants.router)
api.add_router("/domains", tenants.domains)
api.add_router("/organizations", tenants.organizations)
api.add_router("/ad-servers", directory.router)
api.add_router("/realms", kerberos.router)
api.add_router("/certificates", certificates.router)
api.add_router("/events", enrollment.router)
api.add_router("/requests", enrollment.requests_router)
api.add_router("/tokens", tokens.router)


def _enrollment(request: HttpRequest) -> bool:
    return request.path.startswith(API_PREFIX + "/")


@api.exception_handler(EnrollmentError)
def _enrollment_error(request: HttpRequest, exc: EnrollmentError) -> HttpResponse:
    """A 503 (AD, the CA or the database cannot serve the call now) says when to come back."""
    status = exc.http_status or http_status(exc.code)
    response = api.create_response(request, error_body(exc.code), status=status)
    if status == 503:
        response["Retry-After"] = str(database.RETRY_SECONDS)
    return response


@api.exception_handler(ValidationError)
def _validation_error(request: HttpRequest, exc: ValidationError) -> HttpResponse:
    """The enrollment API refuses in the guide's shape, with the number of the field at fault."""
    if not _enrollment(request):
        return api.create_response(request, {"detail": exc.errors}, status=422)
    error = boundary.refusal_of(exc.errors)
    boundary.record_refusal(request, error)
    return api.create_response(request, error_body(error.code), status=400)


@api.exception_handler(HttpError)
def _http_error(request: HttpRequest, exc: HttpError) -> HttpResponse:
    if not _enrollment(request) or exc.status_code != 400:
        detail = str(exc)
        if isinstance(exc.__cause__, ValidationError):  # StrictParser's reason, which django-ninja hides
            detail += ": " + "; ".join(e["msg"] for e in exc.__cause__.errors)
        return api.create_response(request, {"detail": detail}, status=exc.status_code)
    error = EnrollmentError(boundary.NO_REQUEST, str(exc))  # a body that is not JSON at all
    boundary.record_refusal(request, error)
    return api.create_response(request, error_body(error.code), status=400)


@api.exception_handler(Exception)
def _unexpected(request: HttpRequest, exc: Exception) -> HttpResponse:
    """A bug: its traceback in the server log, an event (error 30) on the Logs page, the guide's 30.
    A database that does not answer is no bug: an agent gets 30 with 503 and Retry-After, the log one line
    (not three tracebacks per logon while it is away), and nothing is recorded (it could not be)."""
    if _enrollment(request) and database.away(exc, f"{request.method} {request.path}: error 30", "enrollment"):
        return _enrollment_error(request, EnrollmentError(30, http_status=503))
    log.exception("unexpected error in %s %s", request.method, request.path)
    if not _enrollment(request):
        raise exc
    boundary.record_refusal(request, EnrollmentError(30, f"unexpected {type(exc).__name__}: {exc}"[:500]))
    return api.create_response(request, error_body(30), status=500)


@api.exception_handler(AuthenticationError)
def _authentication_error(request: HttpRequest, exc: AuthenticationError) -> HttpResponse:
    if hasattr(request, "negotiate_error") or _enrollment(request):
        return spnego.unauthorized()
    return api.create_response(request, {"detail": "Unauthorized"}, status=401)
