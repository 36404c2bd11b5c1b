"""The server's HTTP API (django-ninja, OpenAPI at /api/docs): the enrollment service for agents
(HTTP Negotiate) and the administration API (bearer tokens or the admin's session)."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from ninja import NinjaAPI
from ninja.errors import AuthenticationError

from autoenroll import __version__
from autoenroll.protocol import EnrollmentError
from autoenroll.protocol.messages import error_body, http_status
from autoenroll.server.enrollment.api import router as enrollment_router
from autoenroll.server.kerberos import spnego

from . import certificates, directory, enrollment, kerberos, tenants, tokens

api = NinjaAPI(
    title="autoenroll",
    version=__version__,
    description="Automatic S/MIME enrollment for Active Directory users. See docs/protocol.md.",
    urls_namespace="api",
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


@api.exception_handler(EnrollmentError)
def _enrollment_error(request: HttpRequest, exc: EnrollmentError) -> HttpResponse:
    return api.create_response(request, error_body(exc.code), status=http_status(exc.code))


@api.exception_handler(AuthenticationError)
def _authentication_error(request: HttpRequest, exc: AuthenticationError) -> HttpResponse:
    if hasattr(request, "negotiate_error") or request.path.startswith("/api/enroll/"):
        return spnego.unauthorized()
    return api.create_response(request, {"detail": "Unauthorized"}, status=401)
