"""Tenant isolation, proven by walking every URL pattern of the web app (a new page is covered automatically,
and the walk fails if it cannot fill a new page's URL arguments)."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import User
from django.urls import URLResolver, get_resolver, reverse

from autoenroll.server.certificates.models import Certificate
from autoenroll.server.directory.models import ADServer
from autoenroll.server.enrollment.models import EnrollmentRequest
from autoenroll.server.tenants.models import Customer, EmailDomain, Organization

from .conftest import AD_PASSWORD, USER_PASSWORD, Tenant

pytestmark = pytest.mark.django_db

SUPER_ADMIN_ONLY = {"realm", "loginconf", "customer", "audit"}  # URL name prefixes
POST_ONLY = {"adserver_verify", "logout"}
#: What of customer B the walk may not reveal in any page of customer A's admin.
B_MARKERS = ("beta.example", "BETA.EXAMPLE", "beta sales")


def web_patterns() -> list[tuple[str, set[str]]]:
    """(URL name, its keyword arguments) for every pattern under the `web` namespace."""
    for entry in get_resolver().url_patterns:
        if isinstance(entry, URLResolver) and entry.namespace == "web":
            return [(p.name, set(p.pattern.converters)) for p in entry.url_patterns]
    raise AssertionError("the web URLs are not included")


def object_for(name: str, tenant: Tenant, realm):
    prefix = name.split("_")[0]
    objects = {
        "adserver": tenant.ad_server,
        "organization": tenant.organization,
        "domain": tenant.domain,
        "customer": tenant.customer,
        "certificate": tenant.certificate,
        "request": tenant.request,
        "realm": realm,
        "administrator": tenant.administrator,
    }
    assert prefix in objects, f"URL {name!r} takes a pk, but the walk does not know which object to give it"
    return objects[prefix]


def url_for(name: str, kwargs: set[str], tenant: Tenant, realm) -> str:
    assert kwargs <= {"pk"}, f"URL {name!r} has arguments the walk cannot fill: {kwargs}"
    args = [object_for(name, tenant, realm).pk] if kwargs else []
    return reverse(f"web:{name}", args=args)


def test_the_walk_sees_every_page():
    names = {name for name, _ in web_patterns()}
    assert {"adserver_edit", "certificate_revoke", "request_approve", "realm_edit", "event_list"} <= names
    assert {"administrator_edit", "administrator_password", "administrator_disable", "administrator_delete"} <= names
    assert all(names), "every URL has a name"


def test_customer_admin_of_a_gets_403_or_404_on_every_page_of_b(client_a, tenant_a, tenant_b, other_realm):
    for name, kwargs in web_patterns():
        if name in ("login", "logout"):
            continue
        url = url_for(name, kwargs, tenant_b, other_realm)
        for method in ("get", "post"):
            response = getattr(client_a, method)(url, {"confirm": "on", "reason": "key_compromise", "name": "x"})
            content = response.content.decode(errors="replace")
            if kwargs or name.split("_")[0] in SUPER_ADMIN_ONLY:
                # 405: the page takes no such method at all (a POST to a detail page), so nothing is reached
                allowed = {403, 404} | ({405} if method == "post" or name in POST_ONLY else set())
                assert response.status_code in allowed, f"{method.upper()} {url} ({name}): {response.status_code}"
            else:  # A's own list or add pages: they may answer, but show nothing of B
                assert response.status_code in (200, 302, 405), f"{method.upper()} {url}: {response.status_code}"
            leaked = [m for m in B_MARKERS if m in content] + [tenant_b.certificate.serial] * (
                tenant_b.certificate.serial in content
            )
            assert not leaked, f"{method.upper()} {url} ({name}) shows customer B's {leaked}"
    # and nothing of B changed
    b = tenant_b
    assert Certificate.objects.get(pk=b.certificate.pk).status == "issued"
    assert EnrollmentRequest.objects.get(pk=b.request.pk).status == "pending"
    assert ADServer.objects.get(pk=b.ad_server.pk).login_password == AD_PASSWORD
    assert Organization.objects.filter(pk=b.organization.pk, name="beta sales").exists()
    assert EmailDomain.objects.filter(pk=b.domain.pk).exists()
    assert Customer.objects.filter(pk=b.customer.pk, uri="beta").exists()
    operator = User.objects.get(pk=b.administrator.pk)
    assert (
        operator.is_active and operator.check_password(USER_PASSWORD) and operator.customer_admin.customer == b.customer
    )


def test_customer_admin_of_a_reaches_every_page_of_a(client_a, tenant_a, tenant_b, other_realm):
    for name, kwargs in web_patterns():
        url = url_for(name, kwargs, tenant_a, other_realm)
        response = client_a.get(url)
        if name.split("_")[0] in SUPER_ADMIN_ONLY:
            expected = 403
        elif name in POST_ONLY:
            expected = 405
        else:
            expected = 200
        assert response.status_code == expected, f"GET {url} ({name}): {response.status_code}"


def test_super_admin_reaches_every_page(super_client, tenant_a, tenant_b, other_realm):
    for name, kwargs in web_patterns():
        url = url_for(name, kwargs, tenant_b, other_realm)
        response = super_client.get(url)
        assert response.status_code == (405 if name in POST_ONLY else 200), f"GET {url} ({name})"


def test_anonymous_is_sent_to_sign_in_from_every_page(client, tenant_b, other_realm):
    for name, kwargs in web_patterns():
        if name in ("login", "logout"):
            continue
        url = url_for(name, kwargs, tenant_b, other_realm)
        response = client.get(url)
        assert response.status_code == 302 and response["Location"].startswith(reverse("web:login")), name


def test_a_user_without_a_role_sees_nothing(tenant_b, other_realm, django_user_model):
    from .conftest import client_for

    nobody = client_for(django_user_model.objects.create_user("nobody", password="x" * 12))
    for name, kwargs in web_patterns():
        if name in ("login", "logout"):
            continue
        response = nobody.get(url_for(name, kwargs, tenant_b, other_realm))
        assert response.status_code in (403, 404, 405), name
