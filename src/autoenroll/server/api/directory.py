"""AD servers (guide 2.3, figure 2.14) and their Verify; the login password is write-only."""

from __future__ import annotations

from django.http import HttpRequest
from django.shortcuts import get_object_or_404
from ninja import Router, Schema

from autoenroll.server.directory.ldap import DirectoryClient, DirectoryError
from autoenroll.server.directory.models import ADServer
from autoenroll.server.utils.restrict import restricted

from .auth import ADMIN_AUTH
from .crud import Boolean, Integer, customer_for_write, register, require_admin

router = Router(auth=ADMIN_AUTH, tags=["AD servers"])


class ADServerOut(Schema):
    id: int
    customer: str
    domain: str
    address: str
    port: int
    use_ssl: bool
    users_base_dn: str
    login_dn: str
    is_default: bool
    tls_server_name: str
    has_tls_ca: bool

    @staticmethod
    def resolve_customer(obj: ADServer) -> str:
        return obj.customer.uri

    @staticmethod
    def resolve_has_tls_ca(obj: ADServer) -> bool:
        return bool(obj.tls_ca_pem)


class ADServerIn(Schema):
    customer: str | None = None
    domain: str
    address: str
    port: Integer = 0
    use_ssl: Boolean = True
    users_base_dn: str
    login_dn: str
    login_password: str
    is_default: Boolean = False
    tls_ca_pem: str = ""
    tls_server_name: str = ""


class ADServerPatch(Schema):
    domain: str | None = None
    address: str | None = None
    port: Integer | None = None
    use_ssl: Boolean | None = None
    users_base_dn: str | None = None
    login_dn: str | None = None
    login_password: str | None = None
    is_default: Boolean | None = None
    tls_ca_pem: str | None = None
    tls_server_name: str | None = None


def _assign(request: HttpRequest, server: ADServer, data: dict) -> None:
    if server.pk is None:
        server.customer = customer_for_write(request, data.pop("customer", None))
    data.pop("customer", None)
    if not data.get("login_password", "x"):
        data.pop("login_password")  # empty: keep the stored password
    for key, value in data.items():
        setattr(server, key, value)


register(router, ADServer, ADServerOut, ADServerIn, ADServerPatch, assign=_assign)


class VerifyOut(Schema):
    ok: bool
    stage: str | None = None
    message: str
    round_trip_ms: float | None = None
    clock_skew_seconds: float | None = None
    dc_certificate_subject: str | None = None
    dc_certificate_issuer: str | None = None
    dc_certificate_sha256: str | None = None


@router.post("/{pk}/verify", response=VerifyOut, summary="Connect, bind, search the users base DN (guide 2.3)")
def verify(request: HttpRequest, pk: int):
    require_admin(request)
    server = get_object_or_404(restricted(ADServer, request.user), pk=pk)
    client = DirectoryClient(server.ldap_settings())
    try:
        report = client.verify()
    except DirectoryError as exc:
        return {"ok": False, "stage": exc.stage, "message": str(exc)}
    finally:
        client.close()
    skew, dc = report.clock_skew_seconds, report.dc_certificate
    return {
        "ok": True,
        "message": f"connected, bound and found {server.users_base_dn}",
        "round_trip_ms": round(report.round_trip_ms, 1),
        "clock_skew_seconds": round(skew, 1) if skew is not None else None,
        "dc_certificate_subject": dc.subject if dc else None,
        "dc_certificate_issuer": dc.issuer if dc else None,
        "dc_certificate_sha256": dc.sha256 if dc else None,
    }
