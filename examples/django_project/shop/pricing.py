"""The pricing service client: httpx, with retries on transient failures.

The price of a product comes from another service, which sometimes answers 503 or 429,
resets a connection or times out. :data:`PRICING_RETRY` retries those (the family's
:func:`~utils.core.is_transient` knows httpx's errors and the
:func:`~utils.resilience.http.raise_for_status` errors), honouring ``Retry-After``, and gives
up after three attempts. What is left is translated for *our* client: an unknown product is a
404 with a message written for it; any other upstream failure is a 503 whose body says
nothing about the upstream (the problem middleware shows a fixed sentence for every error
translated from a dependency), while the log line keeps the cause.
"""

from __future__ import annotations

import functools
from typing import Any

import httpx
from django.conf import settings

from utils.core import NotFoundError, UnavailableError, get_context
from utils.core.validate import one_of
from utils.resilience import retry
from utils.resilience.errors import HTTPNotFoundError, HTTPStatusError
from utils.resilience.http import raise_for_status

__all__ = ["CURRENCIES", "PRICING_RETRY", "fetch_price"]

#: The currencies the pricing service knows.
CURRENCIES = ("EUR", "USD", "GBP")

#: Three attempts, 0.1 s then 0.2 s apart (jittered); a ``Retry-After`` above 5 s ends the
#: retries at once: the client is waiting.
PRICING_RETRY = retry(
    attempts=3, initial=0.1, maximum=1.0, max_retry_after=5.0, name="shop.pricing"
)


@functools.lru_cache(maxsize=8)
def _client(base_url: str, timeout: float) -> httpx.Client:
    # One client (one connection pool) per configuration, shared by every request thread:
    # httpx.Client is thread-safe, and keep-alive connections save a TCP handshake per call.
    return httpx.Client(base_url=base_url, timeout=timeout)


@PRICING_RETRY
def _get_price(client: httpx.Client, sku: str, currency: str) -> dict[str, Any]:
    # The request id goes downstream, so one id follows the request through both services.
    request_id = get_context().get("request_id")
    headers = {"X-Request-ID": request_id} if isinstance(request_id, str) else None
    response = client.get(f"/prices/{sku}", params={"currency": currency}, headers=headers)
    return dict(raise_for_status(response).json())


def fetch_price(sku: str, currency: str) -> dict[str, Any]:
    """The price of ``sku`` in ``currency`` from the pricing service, retried if need be.

    Raises:
        ValidationError: An unknown currency (422, with a message naming the choices).
        NotFoundError: The pricing service does not know the product (404).
        UnavailableError: It still fails after the retries, or cannot be reached (503).

    Example:
        >>> fetch_price("blue-mug", "JPY")
        Traceback (most recent call last):
        ...
        utils.core.errors.ValidationError: currency must be one of 'EUR', 'USD', 'GBP', got 'JPY'
    """
    one_of(currency, "currency", CURRENCIES)
    shop = settings.SHOP
    client = _client(shop.pricing_url, shop.pricing_timeout)
    try:
        answer = _get_price(client, sku, currency)
    except HTTPNotFoundError:
        raise NotFoundError(f"no price for product {sku!r}") from None
    except (HTTPStatusError, httpx.HTTPError) as exc:
        raise UnavailableError("the pricing service failed") from exc
    return {"sku": sku, "currency": currency, "amount": answer["amount"]}
