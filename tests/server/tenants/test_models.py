import pytest
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction

from autoenroll.server.tenants.models import Customer, EmailDomain, Organization

pytestmark = pytest.mark.django_db


def test_customer_uri_is_unique():
    Customer.objects.create(uri="acme", name="ACME")
    with pytest.raises(IntegrityError):
        Customer.objects.create(uri="acme", name="Other")


@pytest.mark.parametrize("uri", ["has space", "acme\n"])  # `$` let a final line break through
def test_customer_uri_must_fit_in_a_url_path(uri):
    with pytest.raises(ValidationError):
        Customer(uri=uri, name="x").full_clean()


def test_organization_belongs_to_exactly_one_customer():
    acme = Customer.objects.create(uri="acme", name="ACME")
    org = Organization.objects.create(customer=acme, name="Sales")
    assert org.customer == acme
    with pytest.raises(IntegrityError):
        Organization.objects.create(customer=None, name="Orphan")


def test_organization_ids_are_the_numeric_orgid():
    acme = Customer.objects.create(uri="acme", name="ACME")
    org = Organization.objects.create(customer=acme, name="Sales")
    assert isinstance(org.pk, int) and Organization.objects.get(pk=int(str(org.pk))) == org


def test_email_domain_is_stored_lower_case_and_belongs_to_one_customer():
    acme = Customer.objects.create(uri="acme", name="ACME")
    other = Customer.objects.create(uri="other", name="Other")
    domain = EmailDomain.objects.create(customer=acme, name="Test.COM.")
    assert domain.name == "test.com"
    with pytest.raises(IntegrityError):
        EmailDomain.objects.create(customer=other, name="test.com")


def test_organization_refuses_another_customers_domain():
    acme = Customer.objects.create(uri="acme", name="ACME")
    other = Customer.objects.create(uri="other", name="Other")
    foreign = EmailDomain.objects.create(customer=other, name="other.com")
    org = Organization.objects.create(customer=acme, name="Sales")
    with pytest.raises(ValidationError, match="other.com"), transaction.atomic():
        org.domains.add(foreign)
    assert not org.domains.exists()
