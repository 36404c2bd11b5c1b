"""The Administrators page: Super Admins manage every administrator, a Customer Admin the Customer Admins of
their own customer; passwords pass the password validators and are never shown again."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import User
from django.test import Client
from django.urls import reverse

from autoenroll.server.tenants.models import CustomerAdmin

from .conftest import USER_PASSWORD, client_for
from .test_pages import csrf_client, token_of

pytestmark = pytest.mark.django_db

NEW_PASSWORD = "Orbit-Lantern-Pebble-42"


def admin_form(**overrides) -> dict:
    data = {
        "username": "carol",
        "email": "carol@alpha.example",
        "role": "customer",
        "password1": NEW_PASSWORD,
        "password2": NEW_PASSWORD,
    }
    data.update(overrides)
    return data


def signs_in(username: str, password: str) -> Client | None:
    """Sign in through the sign-in form (CSRF checks on); the client if it worked."""
    client = csrf_client()
    page = client.get(reverse("web:login"))
    answer = client.post(
        reverse("web:login"),
        {"username": username, "password": password, "csrfmiddlewaretoken": token_of(page)},
    )
    return client if answer.status_code == 302 and "_auth_user_id" in client.session else None


def test_super_admin_creates_a_customer_admin_who_signs_in_and_sees_only_their_customer(
    super_client, tenant_a, tenant_b
):
    answer = super_client.post(reverse("web:administrator_add"), admin_form(customer=tenant_a.customer.pk))
    assert answer.status_code == 302, answer.content.decode()
    carol = User.objects.get(username="carol")
    assert not carol.is_superuser and carol.customer_admin.customer == tenant_a.customer
    listed = super_client.get(reverse("web:administrator_list"), follow=True).content.decode()
    assert "carol" in listed and "operator@beta.example" in listed and NEW_PASSWORD not in listed

    client = signs_in("carol", NEW_PASSWORD)
    assert client is not None
    admins = client.get(reverse("web:administrator_list")).content.decode()
    assert "operator@alpha.example" in admins and "carol" in admins
    assert "operator@beta.example" not in admins and "root-admin" not in admins
    servers = client.get(reverse("web:adserver_list")).content.decode()
    assert "alpha.example" in servers and "beta.example" not in servers
    assert client.get(reverse("web:customer_list")).status_code == 403


def test_super_admin_creates_a_super_admin(super_client):
    answer = super_client.post(reverse("web:administrator_add"), admin_form(role="super", customer=""))
    assert answer.status_code == 302
    carol = User.objects.get(username="carol")
    assert carol.is_superuser and carol.is_staff and not CustomerAdmin.objects.filter(user=carol).exists()


def test_a_customer_admin_needs_a_customer(super_client):
    answer = super_client.post(reverse("web:administrator_add"), admin_form(customer=""))
    assert answer.status_code == 200 and "A Customer Admin needs a customer." in answer.content.decode()
    assert not User.objects.filter(username="carol").exists()


def test_a_customer_admin_cannot_create_a_super_admin_nor_an_admin_of_another_customer(client_a, tenant_a, tenant_b):
    page = client_a.get(reverse("web:administrator_add")).content.decode()
    assert "Super Admin</option>" not in page and "BETA" not in page
    answer = client_a.post(reverse("web:administrator_add"), admin_form(role="super", customer=tenant_b.customer.pk))
    assert answer.status_code == 302
    carol = User.objects.get(username="carol")
    assert not carol.is_superuser and not carol.is_staff and carol.customer_admin.customer == tenant_a.customer


def test_a_customer_admin_cannot_reach_another_customers_admins_nor_super_admins(
    client_a, super_admin, tenant_a, tenant_b
):
    assert "operator@beta.example" not in client_a.get(reverse("web:administrator_list")).content.decode()
    for target in (tenant_b.administrator, super_admin):
        for name in ("edit", "password", "disable", "enable", "delete"):
            url = reverse(f"web:administrator_{name}", args=[target.pk])
            assert client_a.get(url).status_code == 404, url
            posted = {**admin_form(username="taken-over"), "new_password1": NEW_PASSWORD, "new_password2": NEW_PASSWORD}
            assert client_a.post(url, posted).status_code == 404, url
        target.refresh_from_db()
        assert target.is_active and target.check_password(USER_PASSWORD) and target.username != "taken-over"


def test_a_super_admin_with_a_customer_stays_out_of_that_customers_admin_list(client_a, tenant_a):
    boss = User.objects.create_user("boss", password=USER_PASSWORD, is_superuser=True)
    CustomerAdmin.objects.create(user=boss, customer=tenant_a.customer)
    assert "boss" not in client_a.get(reverse("web:administrator_list")).content.decode()
    assert client_a.post(reverse("web:administrator_disable", args=[boss.pk])).status_code == 404
    assert User.objects.get(pk=boss.pk).is_active


def test_nobody_changes_their_own_role(client_a, super_admin, super_client, tenant_a, tenant_b, admin_a):
    client_a.post(
        reverse("web:administrator_edit", args=[admin_a.pk]),
        {"username": "admin-a", "email": "a@alpha.example", "role": "super", "customer": tenant_b.customer.pk},
    )
    admin_a.refresh_from_db()
    assert not admin_a.is_superuser and admin_a.customer_admin.customer == tenant_a.customer
    assert admin_a.email == "a@alpha.example"
    super_client.post(
        reverse("web:administrator_edit", args=[super_admin.pk]),
        {"username": "root-admin", "role": "customer", "customer": tenant_a.customer.pk},
    )
    super_admin.refresh_from_db()
    assert super_admin.is_superuser and not CustomerAdmin.objects.filter(user=super_admin).exists()


def test_a_super_admin_promotes_and_demotes_another_administrator(super_client, tenant_a, tenant_b):
    operator = tenant_a.administrator
    url = reverse("web:administrator_edit", args=[operator.pk])
    assert super_client.post(url, {"username": operator.username, "role": "super"}).status_code == 302
    operator.refresh_from_db()
    assert operator.is_superuser and not CustomerAdmin.objects.filter(user=operator).exists()
    data = {"username": operator.username, "role": "customer", "customer": tenant_b.customer.pk}
    assert super_client.post(url, data).status_code == 302
    operator = User.objects.get(pk=operator.pk)
    assert not operator.is_superuser and operator.customer_admin.customer == tenant_b.customer


@pytest.mark.parametrize(
    ("password", "message"),
    [
        ("Xy7-ab", "This password is too short. It must contain at least 8 characters."),
        ("password123", "This password is too common."),
        ("4815162342", "This password is entirely numeric."),
        ("Carol2024", "The password is too similar to the username."),
    ],
)
def test_weak_passwords_are_refused_with_the_validators_message(client_a, tenant_a, password, message):
    answer = client_a.post(reverse("web:administrator_add"), admin_form(password1=password, password2=password))
    page = answer.content.decode()
    assert answer.status_code == 200 and message in page and password not in page
    assert not User.objects.filter(username="carol").exists()


@pytest.mark.parametrize(
    ("password", "message"),
    [
        ("password123", "This password is too common."),
        ("operator1", "The password is too similar to the username."),
    ],
)
def test_a_weak_new_password_is_refused_with_the_validators_message(client_a, tenant_a, password, message):
    operator = tenant_a.administrator
    url = reverse("web:administrator_password", args=[operator.pk])
    answer = client_a.post(url, {"new_password1": password, "new_password2": password})
    page = answer.content.decode()
    assert answer.status_code == 200 and message in page and password not in page
    operator.refresh_from_db()
    assert operator.check_password(USER_PASSWORD)


def test_mismatched_passwords_are_refused_and_the_password_is_never_shown(super_client, tenant_a):
    answer = super_client.post(
        reverse("web:administrator_add"), admin_form(customer=tenant_a.customer.pk, password2=NEW_PASSWORD + "x")
    )
    page = answer.content.decode()
    assert "The two password fields didn’t match." in page and NEW_PASSWORD not in page
    assert 'type="password"' in page


def test_usernames_are_unique_whatever_the_case(super_client, tenant_a):
    answer = super_client.post(
        reverse("web:administrator_add"), admin_form(username="Operator@Alpha.example", customer=tenant_a.customer.pk)
    )
    assert answer.status_code == 200 and "A user with that username already exists." in answer.content.decode()


def test_setting_a_new_password_replaces_the_old_one(client_a, tenant_a):
    operator = tenant_a.administrator
    page = client_a.get(reverse("web:administrator_password", args=[operator.pk])).content.decode()
    assert 'name="new_password1"' in page
    answer = client_a.post(
        reverse("web:administrator_password", args=[operator.pk]),
        {"new_password1": NEW_PASSWORD, "new_password2": NEW_PASSWORD},
        follow=True,
    )
    assert "New password of operator@alpha.example set." in answer.content.decode()
    assert NEW_PASSWORD not in answer.content.decode()
    assert signs_in(operator.username, NEW_PASSWORD) is not None
    assert signs_in(operator.username, USER_PASSWORD) is None


def test_ones_own_new_password_keeps_one_signed_in(client_a, admin_a):
    url = reverse("web:administrator_password", args=[admin_a.pk])
    client_a.post(url, {"new_password1": NEW_PASSWORD, "new_password2": NEW_PASSWORD})
    assert client_a.get(reverse("web:administrator_list")).status_code == 200
    assert signs_in("admin-a", NEW_PASSWORD) is not None


def test_a_disabled_administrator_cannot_sign_in_until_enabled(client_a, tenant_a):
    operator = tenant_a.administrator
    session = signs_in(operator.username, USER_PASSWORD)
    page = client_a.get(reverse("web:administrator_disable", args=[operator.pk])).content.decode()
    assert "Disable administrator operator@alpha.example?" in page
    assert client_a.post(reverse("web:administrator_disable", args=[operator.pk])).status_code == 302
    assert not User.objects.get(pk=operator.pk).is_active
    assert signs_in(operator.username, USER_PASSWORD) is None
    assert session.get(reverse("web:dashboard")).status_code == 302  # its session ended: back to sign-in
    listed = client_a.get(reverse("web:administrator_list")).content.decode()
    assert reverse("web:administrator_enable", args=[operator.pk]) in listed
    assert client_a.post(reverse("web:administrator_enable", args=[operator.pk])).status_code == 302
    assert signs_in(operator.username, USER_PASSWORD) is not None


def test_nobody_deletes_or_disables_themselves(client_a, admin_a, super_client, super_admin):
    for client, me in ((client_a, admin_a), (super_client, super_admin)):
        for name in ("disable", "delete"):
            url = reverse(f"web:administrator_{name}", args=[me.pk])
            assert client.get(url).status_code == 403 and client.post(url).status_code == 403
        me.refresh_from_db()
        assert me.is_active
        listed = client.get(reverse("web:administrator_list")).content.decode()
        assert reverse("web:administrator_delete", args=[me.pk]) not in listed
        assert reverse("web:administrator_disable", args=[me.pk]) not in listed


def test_deleting_an_administrator_removes_the_account(client_a, tenant_a):
    operator = tenant_a.administrator
    answer = client_a.post(reverse("web:administrator_delete", args=[operator.pk]), follow=True)
    assert "Administrator operator@alpha.example deleted." in answer.content.decode()
    assert not User.objects.filter(pk=operator.pk).exists()
    assert not CustomerAdmin.objects.filter(user_id=operator.pk).exists()


def test_the_administrator_forms_need_the_csrf_token(super_admin, tenant_a):
    client = csrf_client(super_admin)
    operator = tenant_a.administrator
    pages = {
        reverse("web:administrator_add"): admin_form(customer=tenant_a.customer.pk),
        reverse("web:administrator_edit", args=[operator.pk]): {"username": operator.username, "role": "super"},
        reverse("web:administrator_password", args=[operator.pk]): {
            "new_password1": NEW_PASSWORD,
            "new_password2": NEW_PASSWORD,
        },
        reverse("web:administrator_disable", args=[operator.pk]): {},
    }
    for url, data in pages.items():
        assert client.post(url, data).status_code == 403, url
    operator.refresh_from_db()
    assert operator.is_active and not operator.is_superuser and operator.check_password(USER_PASSWORD)
    assert not User.objects.filter(username="carol").exists()
    for url, data in pages.items():
        token = token_of(client.get(url))
        assert client.post(url, {**data, "csrfmiddlewaretoken": token}).status_code == 302, url
    operator.refresh_from_db()
    assert not operator.is_active and operator.is_superuser and operator.check_password(NEW_PASSWORD)
    assert User.objects.filter(username="carol").exists()


def test_administrators_are_in_the_navigation_next_to_customers(super_client, client_a):
    nav = super_client.get(reverse("web:dashboard")).content.decode()
    assert nav.index(">Customers</a>") < nav.index(">Administrators</a>")
    assert ">Administrators</a>" in client_a.get(reverse("web:dashboard")).content.decode()
    page = client_for(User.objects.get(username="admin-a")).get(reverse("web:administrator_list")).content.decode()
    assert 'aria-current="page">Administrators' in page and '<th scope="col">Customer</th>' not in page
