"""The caller's own API tokens; the clear value is shown once, at creation."""

from __future__ import annotations

from datetime import datetime

from django.http import HttpRequest
from django.shortcuts import get_object_or_404
from ninja import Router, Schema, Status

from .auth import ADMIN_AUTH
from .crud import IsoDateTime, require_admin
from .models import ApiToken

router = Router(auth=ADMIN_AUTH, tags=["API tokens"])


class TokenOut(Schema):
    id: int
    name: str
    prefix: str
    created: datetime
    last_used: datetime | None
    expires: datetime | None


class TokenCreated(TokenOut):
    token: str


class TokenIn(Schema):
    name: str
    expires: IsoDateTime | None = None


@router.get("", response=list[TokenOut], summary="My API tokens")
def list_tokens(request: HttpRequest):
    require_admin(request)
    return ApiToken.objects.filter(user=request.user)


@router.post("", response={201: TokenCreated}, summary="Create a token (its value is shown only now)")
def create_token(request: HttpRequest, body: TokenIn):
    require_admin(request)
    token, value = ApiToken.issue(request.user, body.name, body.expires)
    return Status(201, {**TokenOut.from_orm(token).dict(), "token": value})


@router.delete("/{pk}", response={204: None}, summary="Revoke one of my tokens")
def delete_token(request: HttpRequest, pk: int):
    require_admin(request)
    get_object_or_404(ApiToken, pk=pk, user=request.user).delete()
    return Status(204, None)
