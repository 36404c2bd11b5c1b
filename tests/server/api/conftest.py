import pytest
from django.contrib.auth import get_user_model
from django.test import Client

from autoenroll.server.api.models import ApiToken
from autoenroll.server.tenants.models import Customer, CustomerAdmin


class ApiClient:
    """Django's test client speaking JSON with a bearer token."""

    def __init__(self, token: str) -> None:
        self.client = Client()
        self.headers = {"HTTP_AUTHORIZATION": f"Bearer {token}"}

    def call(self, method: str, path: str, body=None):
        kwargs = dict(self.headers, secure=True)
        if body is not None:
            kwargs.update(data=body, content_type="application/json")
        return getattr(self.client, method)(path, **kwargs)

    def get(self, path):
        return self.call("get", path)

    def post(self, path, body=None):
        return self.call("post", path, body if body is not None else {})

    def patch(self, path, body):
        return self.call("patch", path, body)

    def delete(self, path):
        return self.call("delete", path)


def token_for(user) -> str:
    return ApiToken.issue(user, "tests")[1]


@pytest.fixture
def super_api(db):
    user = get_user_model().objects.create_superuser("root", "root@test.com", "x-Super-Passw0rd")
    return ApiClient(token_for(user))


@pytest.fixture
def customer_admin_of(db):
    def make(customer: Customer, name: str | None = None):
        user = get_user_model().objects.create_user(name or f"admin-{customer.uri}", password="x-Admin-Passw0rd")
        CustomerAdmin.objects.create(user=user, customer=customer)
        return ApiClient(token_for(user))

    return make
