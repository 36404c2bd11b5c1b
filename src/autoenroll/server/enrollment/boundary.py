"""What the enrollment endpoints accept, decided at the edge, before any Kerberos or database work.

* Only JSON from a program, never from a web page: browsers send Kerberos to intranet servers on their own
  (Integrated Windows Authentication), so a cross-site form or fetch() could otherwise enroll the user's
  mail with the attacker's key. A request in another content type answers 415; one whose `Origin` or
  `Sec-Fetch-Site` says another site sent it answers 403. The agent sends neither header.
* Every field a bounded, clean string (no NUL, no lone surrogate): a field that is not answers the guide's
  number for that field, never a 500. A body larger than any call's fields can be is refused unread (413).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from urllib.parse import urlsplit

from django.http import HttpRequest
from ninja.throttling import BaseThrottle

from autoenroll.protocol import EnrollmentError
from autoenroll.server.utils.http import content_length
from autoenroll.server.utils.text import text

log = logging.getLogger("autoenroll.enrollment")

#: The guide's number for a field that cannot be what it claims to be.
FIELD_ERRORS = {
    "customeruri": 2,
    "orgid": 6,
    "domainname": 10,
    "email": 18,
    "cn": 19,
    "csr": 15,
    "status": 21,
    "serial": 24,
    "replaced_serial": 24,
    "status_token": 24,
}
#: A body that is not a JSON object of these fields.
NO_REQUEST = 29
#: A request a web page made (another origin): the remote user is not the user's own program.
CROSS_SITE = 27


Short = text(320)  # customeruri, orgid, domainname, email, cn, status, serials
Long = text(64 * 1024)  # a CSR (RSA-8192 PEM with extensions stays far below), a status token
#: The largest body of an enrollment call: a Long field at its largest in JSON escapes (12 bytes for a character
#: outside the BMP), the Short ones, room to spare. Under Django's own limit, which answered 500.
MAX_BODY_BYTES = 1024 * 1024


def refusal_of(errors: list[dict]) -> EnrollmentError:
    """The guide's error for a body that failed validation: the number of the first field at fault."""
    for error in errors:
        loc = [part for part in error.get("loc", ()) if isinstance(part, str) and part not in ("body", "data")]
        if loc and loc[0] in FIELD_ERRORS:
            return EnrollmentError(FIELD_ERRORS[loc[0]], f"{loc[0]}: {error.get('msg', 'invalid')}")
    return EnrollmentError(NO_REQUEST, "the body is not a JSON object of the call's fields")


def cross_site(request: HttpRequest) -> str | None:
    """Why the request looks like a web page's (another site's), or None for a program's. (From META: on a logon,
    `request.headers` built a mapping of every header for these two lookups.)"""
    fetch_site = request.META.get("HTTP_SEC_FETCH_SITE", "").lower()
    if fetch_site and fetch_site not in ("same-origin", "none"):
        return f"Sec-Fetch-Site: {fetch_site[:40]}"
    origin = request.META.get("HTTP_ORIGIN")
    if origin is not None:
        own = f"{request.scheme}://{request.get_host()}"
        parts = urlsplit(origin)
        if origin == "null" or f"{parts.scheme}://{parts.netloc}".lower() != own.lower():
            return f"Origin: {origin[:100]}"
    return None


def is_json(request: HttpRequest) -> bool:
    return request.content_type == "application/json"


class EnrollmentBoundaryMiddleware:
    """Refuses, before authentication, what a program of ours never sends to `/api/enroll/`: a body that
    is not JSON (415) and a request from another site (403, recorded in the enrollment log)."""

    def __init__(self, get_response) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest):
        from autoenroll.protocol.messages import API_PREFIX

        if request.method != "POST" or not request.path.startswith(API_PREFIX + "/"):
            return self.get_response(request)
        return refusal(request) or self.get_response(request)


def refusal(request: HttpRequest):
    """The answer refusing an enrollment call at the edge (recorded), or None when it may go on."""
    reason = cross_site(request)
    if reason is not None:
        return _refuse(request, EnrollmentError(CROSS_SITE, f"request from another site ({reason})"), 403)
    if not is_json(request):
        kind = request.content_type or "none"
        return _refuse(request, EnrollmentError(NO_REQUEST, f"Content-Type {kind[:80]}, not JSON"), 415)
    length = request.META.get("CONTENT_LENGTH") or "0"
    declared = content_length(length)
    if declared is None or declared > MAX_BODY_BYTES:  # before reading it: no memory spent on it
        error = EnrollmentError(NO_REQUEST, f"a body of {length[:20]} bytes, over {MAX_BODY_BYTES}")
        return _refuse(request, error, 413)
    return None


def _refuse(request: HttpRequest, error: EnrollmentError, status: int):
    from django.http import JsonResponse

    from autoenroll.protocol.messages import error_body

    record_refusal(request, error)
    return JsonResponse(error_body(error.code), status=status)


def record_refusal(request: HttpRequest, error: EnrollmentError) -> None:
    """A refusal decided at the edge, in the enrollment log with the caller (when known) and address.
    The database may be what failed: then the log line stands alone."""
    from .events import record_error
    from .models import EnrollmentEvent

    step = EnrollmentEvent.Step.SYNC if request.path.endswith("/sync") else EnrollmentEvent.Step.ENROLL
    try:
        principal = getattr(request, "kerberos_principal", "")
        record_error(step, principal, error, remote_addr=request.META.get("REMOTE_ADDR"))
    except Exception:  # noqa: BLE001
        log.exception("cannot record the refusal of %s", request.path)


def record_kerberos_refusal(request: HttpRequest, exc) -> None:
    """A Kerberos token the server refused (replay, clock skew, unknown SPN, no realm ...), in the
    enrollment log: the admin sees why an agent got error 37 without reading server.log. A request
    without a token is the first leg of every Negotiate exchange, not a refusal."""
    if exc.kind != "missing":
        record_refusal(request, EnrollmentError(37, f"Kerberos refused ({exc.kind}): {exc.reason}"))


class PerPrincipalRate(BaseThrottle):
    """At most `enroll_rate_per_minute` logon/enroll calls per principal per minute, in this server process
    (against a runaway or hostile client; an agent makes one per logon). Beyond it: 429 with Retry-After.
    0 turns it off."""

    WINDOW = 60.0

    def __init__(self) -> None:
        self._calls: dict[str, deque[float]] = {}
        self._lock = threading.Lock()
        self._waits = threading.local()

    def allow_request(self, request: HttpRequest) -> bool:
        from django.conf import settings

        limit = settings.CONFIG.enroll_rate_per_minute
        principal = getattr(request, "kerberos_principal", "")
        if not limit or not principal:
            return True
        now = time.monotonic()
        with self._lock:
            calls = self._calls.setdefault(principal, deque())
            while calls and calls[0] <= now - self.WINDOW:
                calls.popleft()
            if len(calls) >= limit:
                self._waits.seconds = calls[0] + self.WINDOW - now
                log.warning("%s: more than %d enrollment calls a minute, refused for now", principal, limit)
                return False
            calls.append(now)
            if len(self._calls) > 10_000:  # forget principals idle for a window
                for name in [n for n, c in self._calls.items() if not c or c[-1] <= now - self.WINDOW]:
                    del self._calls[name]
        return True

    def wait(self) -> float | None:
        return getattr(self._waits, "seconds", None)
