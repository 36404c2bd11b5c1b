"""Kerberos realms (guide 2.2, Super Admin) and the equivalent login.conf (guide 6.1)."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from ninja import Router, Schema
from ninja.errors import HttpError

from autoenroll.server.kerberos import loginconf
from autoenroll.server.kerberos.models import KerberosRealm
from autoenroll.server.tenants.models import Customer

from .auth import ADMIN_AUTH
from .crud import register, require_super_admin

router = Router(auth=ADMIN_AUTH, tags=["Kerberos realms"])


class RealmOut(Schema):
    id: int
    domain: str
    keytab_path: str
    service_principal: str
    customer: str | None

    @staticmethod
    def resolve_customer(obj: KerberosRealm) -> str | None:
        return obj.customer.uri if obj.customer_id else None


class RealmIn(Schema):
    domain: str
    keytab_path: str
    service_principal: str
    customer: str | None = None


class RealmPatch(Schema):
    keytab_path: str | None = None
    service_principal: str | None = None
    customer: str | None = None


def _assign(request: HttpRequest, realm: KerberosRealm, data: dict) -> None:
    if "customer" in data:
        uri = data.pop("customer")
        realm.customer = Customer.objects.filter(uri=uri).first() if uri else None
    for key, value in data.items():
        setattr(realm, key, value)
    problems = realm.keytab_problems()
    if problems:
        raise HttpError(400, "keytab_path: " + "; ".join(problems))


@router.get("/login.conf", summary="The realms as a JAAS login.conf (guide 6.1)")
def login_conf(request: HttpRequest):
    require_super_admin(request)
    text = loginconf.render(loginconf.entries_from_realms(KerberosRealm.objects.all()))
    return HttpResponse(text, content_type="text/plain; charset=utf-8")


register(router, KerberosRealm, RealmOut, RealmIn, RealmPatch, assign=_assign, super_admin_writes=True)
