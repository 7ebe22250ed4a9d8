"""The upstream pricing service: ``GET {pricing_url}/prices/{sku}`` -> ``{"price_cents": 1250}``.

Every lookup goes through one resilience pipeline, outermost first:

1. ``timeout(pricing_timeout)`` — the budget of the whole lookup, retries and waits
   included, and never past the request's own deadline;
2. ``retry(...)`` — transient failures (connection errors, 5xx, 429) and an attempt that
   timed out (the family does not retry timeouts by default, since the work may have been
   done; a price lookup is a GET, safe to repeat) are retried with jittered backoff; a ``Retry-After`` header (read by
   :func:`~utils.resilience.raise_for_status`) is honoured: the retry waits at least that
   long, and gives up at once if the wait would not fit the budget;
3. ``CircuitBreaker`` — each attempt counts; after ``fail_max`` consecutive failures the
   circuit opens and lookups fail at once for ``reset_timeout`` seconds, sparing a sick
   upstream and our own request budget;
4. ``timeout(pricing_attempt_timeout)`` — one attempt: a hung upstream costs this much.

Whatever still fails becomes :class:`PricingUnavailableError` (a 503 for our client, with
the upstream's ``Retry-After`` passed on) or, when the budget ran out, the pipeline's
timeout error (a 504). The upstream's URL and answer stay in our logs, never in the body.

Example:
    >>> import asyncio, httpx
    >>> def prices(request: httpx.Request) -> httpx.Response:
    ...     return httpx.Response(200, json={"price_cents": 1250})
    >>> async def main() -> int:
    ...     async with httpx.AsyncClient(transport=httpx.MockTransport(prices),
    ...                                  base_url="http://pricing") as http:
    ...         return await PricingClient(http).price("BOOK-1")
    >>> asyncio.run(main())
    1250
"""

from __future__ import annotations

from urllib.parse import quote

import httpx

from utils.core import UnavailableError, is_transient
from utils.resilience import CircuitBreaker, pipeline, raise_for_status, retry, timeout
from utils.resilience.errors import HTTPStatusError, ResilienceTimeoutError

__all__ = ["PricingClient", "PricingUnavailableError", "worth_retrying"]


class PricingUnavailableError(UnavailableError):
    """The pricing service could not give a price: answered ``503`` with ``Retry-After``.

    Example:
        >>> PricingUnavailableError("pricing answered HTTP 503", retry_after=30).code
        'pricing_unavailable'
    """

    default_code = "pricing_unavailable"


def worth_retrying(exc: BaseException) -> bool:
    """Retry transient errors, and an attempt that timed out (a GET is safe to repeat).

    Example:
        >>> worth_retrying(ResilienceTimeoutError("slow")), worth_retrying(ValueError("bad"))
        (True, False)
    """
    return is_transient(exc) or isinstance(exc, ResilienceTimeoutError)


class PricingClient:
    """Asks the pricing service for a SKU's current unit price, resiliently.

    Args:
        http: An ``httpx.AsyncClient`` whose ``base_url`` is the pricing service (the
            application owns it: one connection pool for the process).
        timeout_s: Budget of one lookup, retries included.
        attempt_timeout: Budget of one attempt.
        attempts: Attempts at most, the first included.
        breaker: The circuit breaker (default: a private one, 5 failures, 30 s).

    Example:
        >>> PricingClient(httpx.AsyncClient()).breaker.name
        'pricing'
    """

    def __init__(
        self,
        http: httpx.AsyncClient,
        *,
        timeout_s: float = 2.0,
        attempt_timeout: float = 0.5,
        attempts: int = 3,
        breaker: CircuitBreaker | None = None,
    ) -> None:
        self.http = http
        self.breaker = breaker or CircuitBreaker("pricing")
        self._lookup = pipeline(
            timeout(timeout_s),
            # max_retry_after: a Retry-After longer than the budget ends the retries at once.
            retry(
                attempts=attempts,
                on=worth_retrying,
                initial=0.05,
                maximum=0.5,
                max_retry_after=timeout_s,
            ),
            self.breaker,
            timeout(attempt_timeout),
        )

    async def price(self, sku: str) -> int:
        """The unit price of ``sku`` in cents.

        Raises:
            PricingUnavailableError: The upstream answered an error (after the retries),
                or its circuit is open.
            ResilienceTimeoutError: The lookup's budget (or the request's) ran out.
        """
        try:
            return await self._lookup.acall(self._fetch, sku)
        except HTTPStatusError as exc:
            raise PricingUnavailableError(
                f"the pricing service answered HTTP {exc.status}",
                retry_after=exc.retry_after,  # the upstream's Retry-After, passed on
            ) from exc
        except httpx.HTTPError as exc:  # refused, reset, a broken body...
            raise PricingUnavailableError(
                f"the pricing service failed: {type(exc).__name__}"
            ) from exc

    async def _fetch(self, sku: str) -> int:
        response = raise_for_status(await self.http.get(f"/prices/{quote(sku, safe='')}"))
        try:
            price = response.json()["price_cents"]
        except (ValueError, TypeError, KeyError):  # not JSON, not an object, no price
            price = None
        if isinstance(price, bool) or not isinstance(price, int) or price < 0:
            # The upstream's fault, not our client's: a 503, like any other upstream failure.
            raise PricingUnavailableError(f"the pricing service sent a bad price for {sku!r}")
        return price
