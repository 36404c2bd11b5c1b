"""URLs for test_spnego: one tiny view behind `negotiate_required` (test-only, never in the server's urls)."""

from django.http import HttpRequest, JsonResponse
from django.urls import path

from autoenroll.server.kerberos.spnego import negotiate_required


@negotiate_required
def whoami(request: HttpRequest) -> JsonResponse:
    return JsonResponse(
        {
            "principal": request.kerberos_principal,
            "realm": request.kerberos_realm.domain,
            "method": request.method,
        }
    )


urlpatterns = [path("whoami", whoami)]
