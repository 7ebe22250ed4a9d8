"""The API: a product (cached) and its price (from the pricing service).

Views raise family errors (``NotFoundError``, ``ValidationError``, ``UnavailableError``) and
let :class:`~shop_project.middleware.ProblemDetailsMiddleware` turn them into RFC 9457
answers: no view builds an error response by hand.
"""

from __future__ import annotations

from django.http import HttpRequest, JsonResponse
from django.views.decorators.http import require_GET

from shop.catalog import get_product
from shop.pricing import fetch_price
from utils.core import get_logger

__all__ = ["price", "product"]

log = get_logger("shop")


@require_GET
def product(request: HttpRequest, sku: str) -> JsonResponse:
    """``GET /products/<sku>/``: the product, from the cache when it is there."""
    return JsonResponse(get_product(sku))


@require_GET
def price(request: HttpRequest, sku: str) -> JsonResponse:
    """``GET /products/<sku>/price/?currency=EUR``: the current price, from upstream."""
    answer = fetch_price(sku, request.GET.get("currency", "EUR"))
    log.info("shop.price_fetched", sku=sku, currency=answer["currency"])
    return JsonResponse(answer)
