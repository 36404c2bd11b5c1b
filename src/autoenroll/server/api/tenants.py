"""Customers, email domains and organizations (guide 2.3, 6)."""

from __future__ import annotations

from django.http import HttpRequest
from ninja import Router, Schema
from ninja.errors import HttpError

from autoenroll.server.tenants.models import Customer, EmailDomain, Organization
from autoenroll.server.utils.restrict import may_authorize_domains, restricted

from .auth import ADMIN_AUTH
from .crud import Boolean, Integer, customer_for_write, register

router = Router(auth=ADMIN_AUTH, tags=["customers"])
domains = Router(auth=ADMIN_AUTH, tags=["domains"])
organizations = Router(auth=ADMIN_AUTH, tags=["organizations"])


class CustomerOut(Schema):
    id: int
    uri: str
    name: str
    enabled: bool
    require_approval: bool
    publish_to_ad: bool


class CustomerIn(Schema):
    uri: str
    name: str
    enabled: Boolean = True
    require_approval: Boolean = False
    publish_to_ad: Boolean = False


class CustomerPatch(Schema):
    name: str | None = None
    enabled: Boolean | None = None
    require_approval: Boolean | None = None
    publish_to_ad: Boolean | None = None


def _assign_customer(request: HttpRequest, customer: Customer, data: dict) -> None:
    for key, value in data.items():
        setattr(customer, key, value)


register(router, Customer, CustomerOut, CustomerIn, CustomerPatch, assign=_assign_customer, super_admin_writes=True)


class DomainOut(Schema):
    id: int
    customer: str
    name: str
    authorized: bool

    @staticmethod
    def resolve_customer(obj: EmailDomain) -> str:
        return obj.customer.uri


class DomainIn(Schema):
    name: str
    authorized: Boolean = False
    customer: str | None = None


class DomainPatch(Schema):
    authorized: Boolean | None = None


def _assign_domain(request: HttpRequest, domain: EmailDomain, data: dict) -> None:
    if domain.pk is None:
        domain.customer = customer_for_write(request, data.pop("customer", None))
    data.pop("customer", None)
    if data.get("authorized", domain.authorized) != domain.authorized and not may_authorize_domains(request.user):
        raise HttpError(403, "a Super Admin authorizes domains")
    for key, value in data.items():
        setattr(domain, key, value)


register(domains, EmailDomain, DomainOut, DomainIn, DomainPatch, assign=_assign_domain)


class OrganizationOut(Schema):
    id: int
    customer: str
    name: str
    domains: list[str]
    ad_server: int | None
    deleted: bool

    @staticmethod
    def resolve_customer(obj: Organization) -> str:
        return obj.customer.uri

    @staticmethod
    def resolve_domains(obj: Organization) -> list[str]:
        return [d.name for d in obj.domains.all()]

    @staticmethod
    def resolve_ad_server(obj: Organization) -> int | None:
        return obj.ad_server_id


class OrganizationIn(Schema):
    name: str
    customer: str | None = None
    domains: list[str] = []
    ad_server: Integer | None = None


class OrganizationPatch(Schema):
    name: str | None = None
    domains: list[str] | None = None
    ad_server: Integer | None = None
    deleted: Boolean | None = None


def _assign_organization(request: HttpRequest, org: Organization, data: dict):
    if org.pk is None:
        org.customer = customer_for_write(request, data.pop("customer", None))
    data.pop("customer", None)
    if "ad_server" in data:
        server_id = data.pop("ad_server")
        org.ad_server = None
        if server_id is not None:
            org.ad_server = (
                restricted("directory.ADServer", request.user).filter(pk=server_id, customer=org.customer).first()
            )
            if org.ad_server is None:
                raise HttpError(400, f"ad_server: no AD server {server_id} of {org.customer}")
    names = data.pop("domains", None)
    for key, value in data.items():
        setattr(org, key, value)
    if names is None:
        return None
    found = list(EmailDomain.objects.filter(customer=org.customer, name__in=[n.lower() for n in names]))
    if len(found) != len(set(names)):
        raise HttpError(400, f"domains: not all of {names} are domains of {org.customer}")
    return lambda: org.domains.set(found)


register(organizations, Organization, OrganizationOut, OrganizationIn, OrganizationPatch, assign=_assign_organization)
