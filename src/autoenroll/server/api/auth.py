"""Who calls the REST API: a bearer token (scripts) or the signed-in admin's session (the browser)."""

from __future__ import annotations

from django.http import HttpRequest
from ninja.security import HttpBearer, django_auth

from .models import ApiToken


class TokenAuth(HttpBearer):
    def authenticate(self, request: HttpRequest, token: str):
        user = ApiToken.authenticate(token)
        if user is not None:
            request.user = user
        return user


ADMIN_AUTH = [TokenAuth(), django_auth]
