"""`GET /healthz`: whether this server can enroll, for a load balancer's health check.

Unauthenticated and cheap (one `SELECT 1`, the passphrase file read): HAProxy asks every few hundred
milliseconds. A server that cannot reach the database or unlock the CA would answer every enrollment
with error 30 or 25, so it says 503 and the balancer sends the agents elsewhere."""

from __future__ import annotations

from django.conf import settings
from django.db import DatabaseError, connection
from django.http import JsonResponse
from django.views.decorators.http import require_safe

from autoenroll.server.config import ConfigError


@require_safe
def healthz(request) -> JsonResponse:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
    except DatabaseError:
        return _unavailable("the database does not answer")
    try:
        settings.CONFIG.ca_passphrase_bytes()
    except ConfigError as exc:
        return _unavailable(str(exc))
    return JsonResponse({"status": "ok"}, headers={"Cache-Control": "no-store"})


def _unavailable(reason: str) -> JsonResponse:
    return JsonResponse({"status": "unavailable", "reason": reason}, status=503, headers={"Cache-Control": "no-store"})
