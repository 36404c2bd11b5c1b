import io

import pytest
from django.contrib.auth import get_user_model
from django.core.management import CommandError, call_command

from autoenroll.server.tenants.models import Customer
from autoenroll.server.utils.restrict import customer_of, is_super_admin

pytestmark = pytest.mark.django_db


def add_admin(*args, password="a-Long-Passw0rd-42"):
    import sys

    stdin, sys.stdin = sys.stdin, io.StringIO(password + "\n")
    try:
        call_command("admins", "add", *args, "--password-file", "-", stdout=io.StringIO())
    finally:
        sys.stdin = stdin


def test_customer_admin_and_super_admin_from_the_shell():
    acme = Customer.objects.create(uri="acme", name="ACME")
    add_admin("alice", "--customer", "acme")
    add_admin("root", "--super")
    users = get_user_model().objects
    alice = users.get(username="alice")
    assert alice.check_password("a-Long-Passw0rd-42")
    assert customer_of(alice) == acme and not is_super_admin(alice)
    assert is_super_admin(users.get(username="root"))


def test_a_weak_password_is_refused():
    Customer.objects.create(uri="acme", name="ACME")
    with pytest.raises(CommandError, match="too short|too common"):
        add_admin("bob", "--customer", "acme", password="abc")
