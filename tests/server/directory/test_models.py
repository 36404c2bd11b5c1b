import ipaddress
from pathlib import Path

import pytest
from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import IntegrityError, connection

from autoenroll.server.directory.models import ADServer, Person
from autoenroll.server.tenants.models import Customer, Organization

pytestmark = pytest.mark.django_db(transaction=True)

PASSWORD = "Sup3r-Secret-AD-Passw0rd!"


def make_server(customer, address, **kwargs) -> ADServer:
    return ADServer.objects.create(
        customer=customer,
        domain="test.com",
        address=address,
        users_base_dn="CN=Users,DC=test,DC=com",
        login_dn="CN=ccm,CN=Users,DC=test,DC=com",
        login_password=PASSWORD,
        **kwargs,
    )


@pytest.fixture
def acme():
    return Customer.objects.create(uri="acme", name="ACME")


def test_first_ad_server_of_a_customer_becomes_its_default(acme):
    first = make_server(acme, "10.0.0.1")
    second = make_server(acme, "10.0.0.2")
    first.refresh_from_db()
    assert first.is_default and not second.is_default


def test_a_new_default_replaces_the_old_one(acme):
    first = make_server(acme, "10.0.0.1")
    second = make_server(acme, "10.0.0.2", is_default=True)
    first.refresh_from_db()
    assert second.is_default and not first.is_default
    assert ADServer.objects.filter(customer=acme, is_default=True).count() == 1


def test_deleting_the_default_promotes_another(acme):
    first = make_server(acme, "10.0.0.1")
    second = make_server(acme, "10.0.0.2")
    first.delete()
    second.refresh_from_db()
    assert second.is_default


def test_database_refuses_two_defaults_for_one_customer(acme):
    make_server(acme, "10.0.0.1")
    other = make_server(acme, "10.0.0.2")
    with pytest.raises(IntegrityError):
        ADServer.objects.filter(pk=other.pk).update(is_default=True)


def test_each_customer_has_its_own_default(acme):
    other = Customer.objects.create(uri="other", name="Other")
    a = make_server(acme, "10.0.0.1")
    b = make_server(other, "10.0.0.1")
    assert a.is_default and b.is_default


def test_port_zero_means_389_or_636_with_ssl(acme):
    assert make_server(acme, "10.0.0.1", use_ssl=True).effective_port == 636
    assert make_server(acme, "10.0.0.2", use_ssl=False).effective_port == 389
    assert make_server(acme, "10.0.0.3", port=3269).effective_port == 3269


def test_login_password_is_encrypted_at_rest(acme):
    server = make_server(acme, "10.0.0.1")
    with connection.cursor() as cursor:
        cursor.execute("SELECT login_password FROM directory_adserver WHERE id = %s", [server.pk])
        stored = cursor.fetchone()[0]
    assert PASSWORD not in stored and stored.startswith("gAAAAA")
    assert ADServer.objects.get(pk=server.pk).login_password == PASSWORD


def test_login_password_is_absent_in_clear_from_the_database_file(acme):
    if connection.vendor != "sqlite":
        pytest.skip("the SQLite file check applies to SQLite; the column check above covers PostgreSQL")
    make_server(acme, "10.0.0.1")
    with connection.cursor() as cursor:
        cursor.execute("PRAGMA wal_checkpoint(FULL)")
    db_file = Path(settings.DATABASES["default"]["TEST"].get("NAME") or connection.settings_dict["NAME"])
    if not db_file.is_file():
        pytest.skip(f"test database {db_file} is in memory")
    data = db_file.read_bytes() + (
        db_file.with_name(db_file.name + "-wal").read_bytes()
        if db_file.with_name(db_file.name + "-wal").exists()
        else b""
    )
    assert PASSWORD.encode() not in data
    assert PASSWORD.encode("utf-16-le") not in data


def test_organization_can_bind_only_its_own_customers_ad_server(acme):
    from django.core.exceptions import ValidationError

    other = Customer.objects.create(uri="other", name="Other")
    foreign = make_server(other, "10.0.0.9")
    org = Organization(customer=acme, name="Sales", ad_server=foreign)
    with pytest.raises(ValidationError, match="another customer"):
        org.full_clean()


def test_person_principal_is_unique_per_customer(acme):
    Person.objects.create(customer=acme, principal="user1@TEST.COM", sam_account_name="user1")
    with pytest.raises(IntegrityError):
        Person.objects.create(customer=acme, principal="user1@TEST.COM", sam_account_name="user1")


@pytest.mark.parametrize(
    ("address", "refused"),
    [("192.0.2.7", True), ("::ffff:192.0.2.7", True), ("10.1.2.3", False), ("dc1.example.com", False)],
)
def test_an_address_outside_the_ad_networks_is_refused_when_saved(acme, settings, address, refused):
    """A name is checked when the server resolves it (tests/server/directory/test_ldap.py)."""
    settings.CONFIG = settings.CONFIG.model_copy(update={"ad_networks": [ipaddress.ip_network("10.0.0.0/8")]})
    server = ADServer(customer=acme, domain="test.com", address=address, users_base_dn="CN=Users,DC=test,DC=com")
    server.login_dn, server.login_password = "CN=ccm,CN=Users,DC=test,DC=com", PASSWORD
    if refused:
        with pytest.raises(ValidationError, match="outside the networks AD servers may be in"):
            server.full_clean()
    else:
        server.full_clean()
