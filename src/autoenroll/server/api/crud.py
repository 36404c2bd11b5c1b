"""Create/read/update/delete routes for one model, every query through the restriction point.

A row outside the caller's reach answers 404, exactly like a row that does not exist: a Customer
Admin learns nothing about other customers, not even which ids are taken.
"""

import re
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Annotated

from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.http import HttpRequest
from django.shortcuts import get_object_or_404
from ninja import Router, Schema, Status
from ninja.errors import HttpError
from pydantic import AfterValidator, BeforeValidator, StrictBool

from autoenroll.server.utils.restrict import customer_of, is_super_admin, restricted

_NUMBER = re.compile(r"\s*[+-]?\d+(\.\d*)?([eE][+-]?\d+)?\s*")


def _iso_text(value):
    """Only what the OpenAPI document promises (an ISO 8601 string): pydantic alone would also read a
    number, or a string of digits, as a Unix time."""
    if value is not None and (not isinstance(value, str) or _NUMBER.fullmatch(value)):
        raise ValueError("an ISO 8601 date-time, e.g. 2027-01-31T00:00:00Z")
    return value


def _integer_text(value):
    """An integer, written as one: pydantic alone would also read "0.0" or 1.0 as 0 and 1."""
    if isinstance(value, float) or (isinstance(value, str) and not re.fullmatch(r"\s*[+-]?\d+\s*", value)):
        raise ValueError("an integer")
    return value


def _storable_time(value: datetime) -> datetime:
    """A time the database can hold in UTC: 0001-01-01T00:04:00+04:00 is a valid ISO 8601 text whose UTC
    time is before year 1 (Python's OverflowError, a 500 once)."""
    try:
        (value if value.tzinfo else value.replace(tzinfo=UTC)).astimezone(UTC)
    except OverflowError:
        raise ValueError("out of the range of dates (years 1 to 9999 in UTC)") from None
    return value


IsoDateTime = Annotated[datetime, BeforeValidator(_iso_text), AfterValidator(_storable_time)]
Integer = Annotated[int, BeforeValidator(_integer_text)]
#: true or false in a JSON body, as the document says: pydantic alone would also read 0.0, 1 or "yes".
Boolean = StrictBool


class Message(Schema):
    detail: str


def require_super_admin(request: HttpRequest) -> None:
    if not is_super_admin(request.user):
        raise HttpError(403, "Super Admin only")


def require_admin(request: HttpRequest) -> None:
    if not (is_super_admin(request.user) or customer_of(request.user) is not None):
        raise HttpError(403, "not an administrator")


def save(instance, then: Callable[[], None] | None = None) -> None:
    """full_clean + save (+ `then`, e.g. many-to-many changes) in one transaction; model and database
    refusals become 400 with the reason."""
    try:
        with transaction.atomic():
            instance.full_clean()
            instance.save()
            if then is not None:
                then()
    except ValidationError as exc:
        raise HttpError(400, "; ".join(f"{k}: {', '.join(v)}" for k, v in exc.message_dict.items())) from None
    except IntegrityError as exc:
        raise HttpError(400, f"refused by the database: {exc}") from None


def register(
    router: Router,
    model,
    out_schema,
    in_schema,
    patch_schema,
    *,
    assign: Callable[[HttpRequest, object, dict], Callable[[], None] | None],
    super_admin_writes: bool = False,
) -> None:
    """Add GET list, POST, GET/PATCH/DELETE by id for `model` to `router`. `assign` copies the request's
    fields onto the instance and may return a callable to run after the save (many-to-many fields)."""
    name, plural = model._meta.verbose_name, model._meta.verbose_name_plural
    op = model._meta.model_name

    def one(request: HttpRequest, pk: int):
        require_admin(request)
        return get_object_or_404(restricted(model, request.user), pk=pk)

    def writable(request: HttpRequest) -> None:
        require_admin(request)
        if super_admin_writes:
            require_super_admin(request)

    @router.get("", response=list[out_schema], summary=f"List {plural}", operation_id=f"{op}_list")
    def list_(request: HttpRequest):
        require_admin(request)
        return restricted(model, request.user)

    @router.get("/{pk}", response=out_schema, summary=f"Get a {name}", operation_id=f"{op}_get")
    def get(request: HttpRequest, pk: int):
        return one(request, pk)

    @router.post("", response={201: out_schema}, summary=f"Add a {name}", operation_id=f"{op}_create")
    def create(request: HttpRequest, body: in_schema):  # type: ignore[valid-type]
        writable(request)
        instance = model()
        save(instance, assign(request, instance, body.dict()))
        return Status(201, instance)

    @router.patch("/{pk}", response=out_schema, summary=f"Change a {name}", operation_id=f"{op}_update")
    def update(request: HttpRequest, pk: int, body: patch_schema):  # type: ignore[valid-type]
        writable(request)
        instance = one(request, pk)
        save(instance, assign(request, instance, body.dict(exclude_unset=True)))
        return instance

    @router.delete("/{pk}", response={204: None}, summary=f"Delete a {name}", operation_id=f"{op}_delete")
    def delete(request: HttpRequest, pk: int):
        writable(request)
        one(request, pk).delete()
        return Status(204, None)


def customer_for_write(request: HttpRequest, uri: str | None):
    """The customer a new row belongs to: a Customer Admin's own; a Super Admin names one."""
    own = customer_of(request.user)
    if own is not None:
        if uri not in (None, own.uri):
            raise HttpError(404, "no such customer")
        return own
    if not uri:
        raise HttpError(400, "customer: give the customer's uri")
    return get_object_or_404(restricted("tenants.Customer", request.user), uri=uri)
