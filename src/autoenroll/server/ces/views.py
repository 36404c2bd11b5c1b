"""The CEP and CES endpoints: Negotiate, SOAP envelope, dispatch by WS-Addressing Action, answer or fault.

Whatever happens after authentication, the client gets a SOAP 1.2 envelope: a response, or a fault
whose reason carries the guide's error number. Unexpected exceptions are logged with their traceback
and answered with a generic Receiver fault; Django's error page never reaches a SOAP client. A database
that does not answer is no bug: the guide's 30, one line in the log, as on the agent's API.
"""

from __future__ import annotations

import functools
import logging

from django.http import HttpRequest, HttpResponse
from django.views.decorators.csrf import csrf_exempt

from autoenroll.protocol import EnrollmentError
from autoenroll.server.certificates.models import CertificateAuthority
from autoenroll.server.enrollment import boundary, configuration
from autoenroll.server.enrollment.pipeline import Caller
from autoenroll.server.kerberos import spnego
from autoenroll.server.utils import database, http

from . import soap, wstep, xcep
from .soap import SoapFault

log = logging.getLogger("autoenroll.ces")


def _reply(body: bytes, status: int = 200, negotiated: spnego.Negotiated | None = None) -> HttpResponse:
    return spnego.mutual_auth(HttpResponse(body, status=status, content_type=soap.CONTENT_TYPE), negotiated)


def _fault(fault: SoapFault, message: soap.Message | None = None, negotiated=None) -> HttpResponse:
    relates_to = message.message_id if message is not None else None
    response = _reply(soap.fault_document(fault, relates_to), fault.status, negotiated)
    if fault.code == "Sender":  # the client's mistake: a warning, not Django's "Internal Server Error"
        log.warning("SOAP fault (Sender, HTTP %s): %s", fault.status, fault.reason)
        response._has_been_logged = True
    return response


def _unexpected(request: HttpRequest, exc: Exception, message: soap.Message | None = None, negotiated=None):
    if database.away(exc, f"{request.method} {request.path}: error 30", "MS-XCEP/WSTEP"):
        return _fault(wstep.guide_fault(EnrollmentError(30)), message, negotiated)
    who = negotiated.principal if negotiated is not None else "an unauthenticated client"
    log.exception("CEP/CES request of %s at %s failed", who, request.path)
    internal = SoapFault("The server was unable to process the request due to an internal error.", code="Receiver")
    return _fault(internal, message, negotiated)


def _soap_errors(view):
    """What fails before `_serve` has a message to answer (the CA's row, the realms) is a fault too."""

    @functools.wraps(view)
    def wrapped(request: HttpRequest, *args, **kwargs) -> HttpResponse:
        try:
            return view(request, *args, **kwargs)
        except Exception as exc:  # noqa: BLE001 - answered as a SOAP fault, logged by `_unexpected`
            return _unexpected(request, exc)

    return wrapped


def _serve(request: HttpRequest, actions: dict, ca: CertificateAuthority | None = None) -> HttpResponse:
    if request.method != "POST":
        response = _fault(SoapFault("only POST is accepted", status=405))
        response["Allow"] = "POST"
        return response
    refused = _refuse_unread(request)
    if refused is not None:
        return refused
    try:
        negotiated = spnego.negotiate(request, list(configuration.current().realms))
    except spnego.NegotiateError as exc:
        boundary.record_kerberos_refusal(request, exc)
        response = _fault(SoapFault(spnego.UNAUTHORIZED_TEXT, status=401))
        response["WWW-Authenticate"] = "Negotiate"
        return response
    message = None
    try:
        message = soap.parse(request.body, request.headers.get("Content-Type", ""))
        handler = actions.get(message.action)
        if handler is None:
            raise SoapFault(
                f"action {message.action[:200]} is not supported here", subcode=(soap.WSA, "ActionNotSupported")
            )
        caller = Caller(negotiated.principal, negotiated.realm, request.META.get("REMOTE_ADDR"))
        reply_action, payload = handler(message, caller, ca)
        return _reply(soap.response(reply_action, message.message_id, payload), 200, negotiated)
    except EnrollmentError as exc:  # already recorded as an EnrollmentEvent where it was raised
        return _fault(wstep.guide_fault(exc), message, negotiated)
    except SoapFault as fault:
        log.info("SOAP fault for %s at %s: %s", negotiated.principal, request.path, fault.reason)
        return _fault(fault, message, negotiated)
    except Exception as exc:  # noqa: BLE001 - answered as a SOAP fault, logged by `_unexpected`
        return _unexpected(request, exc, message, negotiated)


def _refuse_unread(request: HttpRequest) -> HttpResponse | None:
    """Before Kerberos and before reading the body: a body too large for any SOAP request of ours (413, not
    Django's RequestDataTooBig as a 500), or one that is not SOAP at all (415: what an HTML form sends)."""
    length = http.content_length(request.headers.get("Content-Length") or "0")
    if length is None:
        return _fault(SoapFault("Content-Length is not a decimal number", status=400))
    if length > soap.MAX_BODY_BYTES:
        return _fault(SoapFault(f"request body larger than {soap.MAX_BODY_BYTES} bytes", status=413))
    soap_types = ("", "application/soap+xml", "text/xml")  # text/xml: SOAP 1.1, a VersionMismatch fault
    if request.content_type not in soap_types:
        return _fault(SoapFault(f"Content-Type {request.content_type[:80]!r} is not SOAP", status=415))
    return None


def _get_policies(message: soap.Message, caller: Caller, ca) -> tuple[str, object]:
    return xcep.ACTION_GET_POLICIES_RESPONSE, xcep.get_policies(message.body, caller.principal, caller.realm)


def _request_security_token(message: soap.Message, caller: Caller, ca) -> tuple[str, object]:
    return wstep.ACTION_RSTRC, wstep.handle(message, wstep.Context(caller, ca))


@csrf_exempt
@_soap_errors
def cep(request: HttpRequest) -> HttpResponse:
    """MS-XCEP policy service: /ADPolicyProvider_CEP_Kerberos/service.svc/CEP."""
    return _serve(request, {xcep.ACTION_GET_POLICIES: _get_policies})


@csrf_exempt
@_soap_errors
def ces(request: HttpRequest, ca_name: str) -> HttpResponse:
    """MS-WSTEP enrollment service of one issuing CA: /<CA name>_CES_Kerberos/service.svc/CES."""
    ca = (
        CertificateAuthority.objects.filter(role=CertificateAuthority.Role.ISSUING, name__iexact=ca_name)
        .order_by("-active", "-pk")
        .first()
    )
    if ca is None:
        return _fault(SoapFault(f"no issuing CA named {ca_name!r} here", status=404))
    return _serve(request, {wstep.ACTION_RST: _request_security_token}, ca)
