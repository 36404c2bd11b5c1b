"""The agent's logon and its status report, answered before Django's middleware and django-ninja's request
cycle: the two calls every logon makes, where that machinery cost a seventh of the server's CPU.

Only the machinery is skipped, not a decision. The answer is what the routes of `enrollment.api` would
give: the boundary's refusals (`boundary.refusal`), the same authentication, throttle, body schema and
view functions, the API's own exception handlers for every error, and the same JSON. The routes stay in
the API for its OpenAPI document and for any path this middleware does not take (`MIDDLEWARE` lists it
first; without it they answer alike). Sessions, CSRF, messages and the security headers of pages are
nothing an agent's JSON call uses: it carries no cookie and is refused when a browser sends it.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from typing import NamedTuple

import pydantic
from django.http import HttpRequest, HttpResponse
from ninja import Schema
from ninja.errors import AuthenticationError, HttpError, Throttled, ValidationError

from autoenroll.protocol.messages import API_PREFIX
from autoenroll.server.enrollment import api as enrollment
from autoenroll.server.enrollment import boundary

from .root import api


class Route(NamedTuple):
    body: type[Schema]
    answer: type[Schema]
    view: Callable
    authenticated: bool  # HTTP Negotiate, then the per-principal throttle of the issuing calls


ROUTES = {
    f"{API_PREFIX}/logon": Route(enrollment.LogonIn, enrollment.LogonOut, enrollment.logon, True),
    f"{API_PREFIX}/logon/status": Route(enrollment.LogonStatusIn, enrollment.StatusOut, enrollment.logon_status, False),
}


class DirectEnrollmentMiddleware:
    def __init__(self, get_response) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        route = ROUTES.get(request.path_info) if request.method == "POST" else None
        if route is None:
            return self.get_response(request)
        refused = boundary.refusal(request)
        if refused is not None:
            return refused
        try:
            return _answer(request, route)
        except Exception as exc:  # noqa: BLE001 - each rendered by the API's handler, as the route would
            return api.on_exception(request, exc)


def _answer(request: HttpRequest, route: Route) -> HttpResponse:
    if route.authenticated:
        if enrollment.negotiate_auth(request) is None:
            raise AuthenticationError()
        if not enrollment.issuing_rate.allow_request(request):
            wait = enrollment.issuing_rate.wait()
            response = api.on_exception(request, Throttled(wait=wait))
            if wait is not None:
                response["Retry-After"] = str(math.ceil(wait))
            return response
    try:
        data = json.loads(request.body) if request.body else None
    except ValueError as exc:
        raise HttpError(400, "Cannot parse request body") from exc
    try:
        body = route.body.model_validate(data)
    except pydantic.ValidationError as exc:
        raise ValidationError(exc.errors(include_url=False, include_context=False)) from None
    response = api.create_temporal_response(request)
    result = route.view(request, response, body)
    if isinstance(result, HttpResponse):
        return result
    return api.create_response(request, route.answer.model_validate(result).model_dump(), temporal_response=response)
