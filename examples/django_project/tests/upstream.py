"""A flaky pricing service on loopback, and the settings that point the project at it."""

from __future__ import annotations

import dataclasses
import json
import threading
from collections import deque
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from http import HTTPStatus
from typing import Any
from urllib.parse import parse_qs

from django.conf import settings
from django.test.utils import override_settings

from utils.core.testing import serve_wsgi

__all__ = ["FlakyPricing", "pricing_upstream"]


class FlakyPricing:
    """The pricing service as a WSGI app: answers prices, or the failures it was told to.

    ``fail(503, 503)`` makes the next two requests answer 503; ``fail(429, retry_after="2")``
    one 429 with ``Retry-After: 2``. SKU ``unknown`` is a 404. Every request is recorded in
    :attr:`calls` (path, query, ``X-Request-ID``).
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._planned: deque[tuple[int, list[tuple[str, str]]]] = deque()
        self.calls: list[dict[str, str]] = []
        #: The base URL while served by :func:`pricing_upstream`.
        self.url = ""

    def fail(self, *statuses: int, retry_after: str | None = None) -> None:
        headers = [("Retry-After", retry_after)] if retry_after is not None else []
        with self._lock:
            self._planned.extend((status, headers) for status in statuses)

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        query = parse_qs(environ.get("QUERY_STRING", ""))
        path = environ["PATH_INFO"]
        with self._lock:
            self.calls.append(
                {
                    "path": path,
                    "currency": query.get("currency", [""])[0],
                    "request_id": environ.get("HTTP_X_REQUEST_ID", ""),
                }
            )
            planned = self._planned.popleft() if self._planned else None
        sku = path.removeprefix("/prices/")
        if planned is not None:
            status, headers = planned
            body: dict[str, Any] = {"error": "planned failure"}
        elif sku == "unknown":
            status, headers, body = 404, [], {"error": "no such sku"}
        else:
            status, headers = 200, []
            body = {"sku": sku, "amount": "12.50", "currency": query.get("currency", ["EUR"])[0]}
        phrase = HTTPStatus(status).phrase
        start_response(f"{status} {phrase}", [("Content-Type", "application/json"), *headers])
        return [json.dumps(body).encode()]


@contextmanager
def pricing_upstream() -> Iterator[FlakyPricing]:
    """Serve a :class:`FlakyPricing` on loopback; point ``settings.SHOP.pricing_url`` at it."""
    service = FlakyPricing()
    with serve_wsgi(service) as url:
        service.url = url
        shop = dataclasses.replace(settings.SHOP, pricing_url=url, pricing_timeout=2.0)
        with override_settings(SHOP=shop):
            yield service
