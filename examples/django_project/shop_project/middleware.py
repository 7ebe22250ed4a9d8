"""Two small Django middlewares: route templates for the access event, problem+json errors."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.core.exceptions import BadRequest, PermissionDenied, SuspiciousOperation
from django.http import Http404, HttpRequest, HttpResponse

from utils.core import get_logger
from utils.core.middleware import ROUTE_KEY
from utils.core.problems import problem_response

__all__ = ["ProblemDetailsMiddleware", "RouteMiddleware"]

log = get_logger("shop.errors")

#: Django answers these itself (404, 403, 400): leave them to it.
DJANGO_ANSWERS = (Http404, PermissionDenied, BadRequest, SuspiciousOperation)


class RouteMiddleware:
    """Put the matched URL pattern (``products/<slug:sku>/``) where the access event finds it.

    :class:`~utils.core.WSGIRequestContextMiddleware` tags its ``http.request`` metric with
    the route *template*, never the raw path (one series per URL would swamp the metrics
    backend); Django exposes the template only after URL resolution, hence this hook.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        return self.get_response(request)

    def process_view(
        self,
        request: HttpRequest,
        view: Callable[..., Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
    ) -> None:
        match = request.resolver_match
        if match is not None:
            # request.META is the WSGI environ the middleware reads when the response ends.
            request.META[ROUTE_KEY] = "/" + match.route


class ProblemDetailsMiddleware:
    """Answer what a view raised with RFC 9457 problem details (``application/problem+json``).

    The status comes from the error's meaning (:func:`~utils.core.problems.http_status_for`):
    a ``NotFoundError`` is 404, a ``ValidationError`` 422, an upstream that stays unavailable
    503. The body shows the message only when it was written for the client (a 4xx family
    error); every 5xx gets a fixed sentence, and the traceback goes to the log, with the
    request id.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        return self.get_response(request)

    def process_exception(self, request: HttpRequest, exc: Exception) -> HttpResponse | None:
        if isinstance(exc, DJANGO_ANSWERS):
            return None
        status, headers, body = problem_response(exc, instance=request.path)
        if status >= 500:
            log.error("http.request_failed", path=request.path, status=status, exc_info=exc)
        return HttpResponse(body, status=status, headers=headers)
