"""The FastAPI application: routes, the lifespan that owns every client, errors as RFC 9457.

Layers of one request, outermost first::

    RequestContextMiddleware   request id (X-Request-ID), log context, http.request event
      health_app               /livez /readyz /startupz (never rate-limited, no API key)
        FastAPI                ServerErrorMiddleware: an unexpected exception -> 500 problem
          DeadlineMiddleware   one budget (request_timeout) for everything below
            routes             X-API-Key -> per-key rate limit -> the endpoint

:func:`create_app` builds it from :class:`~orders_service.settings.ServiceSettings`. The
lifespan opens the database pool, the Redis client, the tiered cache and the httpx client
at start-up, registers the readiness checks, and closes everything at shutdown — which
uvicorn runs on SIGTERM after the requests in flight have finished (graceful shutdown).

Example:
    >>> problem_answer(RateLimitedError("slow down", retry_after=1.5), "/orders").headers["Retry-After"]
    '2'
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from http import HTTPStatus
from typing import Annotated, Any

import httpx
from fastapi import Depends, FastAPI, Header, Request, Response
from fastapi.exceptions import RequestValidationError
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import JSONResponse

from orders_service.pricing import PricingClient
from orders_service.settings import ServiceSettings, client_id
from orders_service.store import Store
from utils.cache import AsyncRedisCache, AsyncTieredCache, MemoryCache
from utils.cache.health import redis_check
from utils.core import (
    PermissionDeniedError,
    RequestContextMiddleware,
    ThrottledError,
    UtilsError,
    ValidationError,
    deadline,
    health_app,
    register_check,
    unregister_check,
)
from utils.core.metrics import set_metrics_sink
from utils.core.problems import PROBLEM_CONTENT_TYPE, problem_details
from utils.core.prometheus import PrometheusSink
from utils.core.redis import fail_fast_client
from utils.core.report import Event
from utils.db import AsyncDatabase
from utils.db.health import postgres_check
from utils.resilience import CircuitBreaker, RateLimiter, RedisRateLimitStorage

__all__ = [
    "DeadlineMiddleware",
    "RateLimitedError",
    "Resources",
    "UnauthenticatedError",
    "create_app",
    "problem_answer",
]

STARTED = Event("orders.started", logger="orders_service", metric=None)
STOPPED = Event("orders.stopped", logger="orders_service", metric=None)
ORDER_PLACED = Event("orders.placed", logger="orders_service")
REQUEST_FAILED = Event(
    "orders.request_failed", logger="orders_service", level="error", tags=("status",)
)

#: The readiness checks this service registers (and removes at shutdown).
CHECKS = ("postgres", "redis")


class UnauthenticatedError(PermissionDeniedError):
    """No API key, or an unknown one: answered ``401 Unauthorized``.

    Example:
        >>> UnauthenticatedError("send your API key in the X-API-Key header").code
        'unauthenticated'
    """

    default_code = "unauthenticated"


class RateLimitedError(ThrottledError):
    """The API key used up its rate limit: answered ``429`` with the rate-limit headers.

    Example:
        >>> RateLimitedError("slow down", retry_after=2).code
        'rate_limited'
    """

    default_code = "rate_limited"


@dataclass(frozen=True)
class Resources:
    """What the lifespan opened, for the routes (``request.app.state.resources``).

    Example:
        >>> sorted(Resources.__dataclass_fields__)  # doctest: +NORMALIZE_WHITESPACE
        ['cache', 'clients', 'db', 'limiter', 'pricing', 'registry', 'store']
    """

    db: AsyncDatabase
    cache: AsyncTieredCache
    limiter: RateLimiter
    pricing: PricingClient
    store: Store
    clients: frozenset[str]
    registry: CollectorRegistry


class DeadlineMiddleware:
    """Run every HTTP request under :func:`utils.core.deadline`: one budget for all its calls.

    The deadline is cooperative: the pool checkout, every query, Redis command and the
    pricing lookup wait no longer than the time left, and raise an
    :class:`~utils.core.OperationTimeoutError` (answered ``504``) when it is spent.

    Example:
        >>> DeadlineMiddleware(app=None, seconds=2.0).seconds
        2.0
    """

    def __init__(self, app: Any, *, seconds: float) -> None:
        self.app = app
        self.seconds = seconds

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        with deadline(self.seconds):
            await self.app(scope, receive, send)


def problem_answer(
    exc: BaseException,
    instance: str,
    headers: dict[str, str] | None = None,
    **members: Any,
) -> Response:
    """The ``application/problem+json`` response for ``exc`` (RFC 9457).

    The status comes from the error's meaning (:func:`utils.core.problems.http_status_for`);
    401 is this service's addition. ``headers`` are the request's ``RateLimit-*`` headers,
    which every answer carries, errors included; ``members`` are extension members.

    Example:
        >>> from utils.core import NotFoundError
        >>> answer = problem_answer(NotFoundError("no product 7"), "/products/7")
        >>> answer.status_code, answer.headers["content-type"]
        (404, 'application/problem+json')
    """
    body = {**problem_details(exc, instance=instance), **members}
    headers = dict(headers or {})
    if isinstance(exc, UnauthenticatedError):
        body.update(status=401, title="Unauthorized")
        headers["WWW-Authenticate"] = 'ApiKey header="X-API-Key"'
    if "retry_after" in body:
        headers["Retry-After"] = str(body["retry_after"])
    return JSONResponse(
        body, status_code=body["status"], headers=headers, media_type=PROBLEM_CONTENT_TYPE
    )


async def _problem_handler(request: Request, exc: Exception) -> Response:
    answer = problem_answer(exc, request.url.path, getattr(request.state, "rate_limit", None))
    if answer.status_code >= 500:
        # The client got a fixed sentence; the log keeps the whole story (redacted).
        REQUEST_FAILED.emit(status=answer.status_code, exc_info=exc)
    return answer


async def _validation_handler(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    # Where and what, never the input: it may hold anything the client sent.
    errors = [
        {"loc": ".".join(str(part) for part in error["loc"]), "msg": error["msg"]}
        for error in exc.errors()
    ]
    summary = "; ".join(f"{error['loc']}: {error['msg']}" for error in errors)
    return problem_answer(ValidationError(summary), request.url.path, errors=errors)


async def _http_handler(request: Request, exc: Exception) -> Response:
    """Starlette's own answers (unknown route, wrong method) as problems too."""
    assert isinstance(exc, StarletteHTTPException)
    status = HTTPStatus(exc.status_code)
    body = {
        "type": "about:blank",
        "title": status.phrase,
        "status": status.value,
        "detail": exc.detail if isinstance(exc.detail, str) else status.description,
        "instance": request.url.path,
    }
    return JSONResponse(
        body, status_code=status.value, headers=exc.headers, media_type=PROBLEM_CONTENT_TYPE
    )


def _resources(request: Request) -> Resources:
    resources: Resources = request.app.state.resources
    return resources


async def _api_client(
    request: Request,
    response: Response,
    x_api_key: Annotated[str | None, Header()] = None,
) -> str:
    """Authenticate the API key and charge its rate limit; the RateLimit-* headers go out."""
    resources = _resources(request)
    if not x_api_key:
        raise UnauthenticatedError("send your API key in the X-API-Key header")
    client = client_id(x_api_key)
    if client not in resources.clients:
        raise UnauthenticatedError("unknown API key")
    limiter = resources.limiter
    decision = await limiter.atry_acquire(client)
    headers = decision.headers(limiter)
    request.state.rate_limit = headers  # for an error answer (see _problem_handler)
    if not decision:
        raise RateLimitedError(
            "too many requests for this API key", retry_after=decision.retry_after
        )
    response.headers.update(headers)
    return client


ResourcesDep = Annotated[Resources, Depends(_resources)]
ClientDep = Annotated[str, Depends(_api_client)]


class ProductIn(BaseModel):
    """The body of ``PUT /products/{id}``."""

    sku: str = Field(min_length=1, max_length=64)
    name: str = Field(min_length=1, max_length=200)
    stock: int = Field(ge=0, le=1_000_000)


class OrderIn(BaseModel):
    """The body of ``POST /orders``."""

    product_id: int = Field(gt=0)
    quantity: int = Field(gt=0, le=1000)


def _lifespan(settings: ServiceSettings) -> Any:
    @asynccontextmanager
    async def lifespan(api: FastAPI) -> AsyncIterator[None]:
        registry = CollectorRegistry()
        previous_sink = set_metrics_sink(PrometheusSink(registry=registry, namespace="orders"))
        db = AsyncDatabase(
            settings.database_url.get_secret_value(),
            max_size=settings.db_pool_size,
            name="orders",
            application_name="orders-service",
        )
        await db.open()  # no wait: a database still starting shows in /readyz, not a crash
        # One fail-fast client for the cache and the limiter: an outage costs one short
        # timeout, and the family's outage gates keep the rest of the calls from waiting.
        redis = fail_fast_client(
            settings.redis_url.get_secret_value(),
            asynchronous=True,
            timeout=settings.redis_timeout,
        )
        l2 = AsyncRedisCache(redis, namespace=settings.redis_namespace)
        cache = AsyncTieredCache(MemoryCache(maxsize=10_000), l2, l1_ttl=settings.product_l1_ttl)
        await cache.start()
        limiter = RateLimiter(
            settings.rate_limit,
            per=settings.rate_limit_per,
            burst=settings.rate_limit_burst,
            storage=RedisRateLimitStorage(
                redis,
                fail_open=settings.rate_limit_fail_open,
                prefix=f"{settings.redis_namespace}:rl",
            ),
            name="api",
        )
        http = httpx.AsyncClient(
            base_url=settings.pricing_url,
            # A backstop only: the pipeline's per-attempt timeout is the real limit.
            timeout=settings.pricing_timeout,
        )
        breaker = CircuitBreaker(
            "pricing",
            fail_max=settings.pricing_breaker_fail_max,
            reset_timeout=settings.pricing_breaker_reset,
        )
        pricing = PricingClient(
            http,
            timeout_s=settings.pricing_timeout,
            attempt_timeout=settings.pricing_attempt_timeout,
            attempts=settings.pricing_attempts,
            breaker=breaker,
        )
        api.state.resources = Resources(
            db=db,
            cache=cache,
            limiter=limiter,
            pricing=pricing,
            store=Store(db, cache, product_ttl=settings.product_ttl),
            clients=settings.allowed_clients(),
            registry=registry,
        )
        # Readiness only: a liveness check on a dependency would restart every pod at once
        # when it blips. Each check stays below the probe's timeoutSeconds (k8s/).
        register_check("postgres", postgres_check(db), timeout=0.8, replace=True)
        register_check("redis", redis_check(cache), timeout=0.5, replace=True)
        STARTED.emit(port=settings.port)
        try:
            yield
        finally:
            # uvicorn gets here after the requests in flight have finished.
            for name in CHECKS:
                unregister_check(name)
            await http.aclose()
            await cache.aclose()
            await redis.aclose()
            await db.close()
            set_metrics_sink(previous_sink)
            STOPPED.emit()

    return lifespan


def create_app(settings: ServiceSettings) -> RequestContextMiddleware:
    """The whole ASGI application; serve it with uvicorn (see ``__main__``).

    Nothing is opened here: the lifespan opens the clients when the server starts.

    Example:
        >>> from utils.core import Secret
        >>> create_app(ServiceSettings(database_url=Secret("postgresql://db/shop"),
        ...                            pricing_url="http://pricing", api_keys=Secret("k")))
        RequestContextMiddleware(<HealthApp max_age=1>, header='X-Request-ID')
    """
    api = FastAPI(title="orders", lifespan=_lifespan(settings))
    api.add_middleware(DeadlineMiddleware, seconds=settings.request_timeout)
    api.add_exception_handler(UtilsError, _problem_handler)
    api.add_exception_handler(Exception, _problem_handler)
    api.add_exception_handler(RequestValidationError, _validation_handler)
    api.add_exception_handler(StarletteHTTPException, _http_handler)

    @api.get("/products/{product_id}")
    async def get_product(product_id: int, resources: ResourcesDep, _: ClientDep) -> Any:
        return (await resources.store.product(product_id)).as_dict()

    @api.put("/products/{product_id}")
    async def put_product(
        product_id: int, body: ProductIn, resources: ResourcesDep, _: ClientDep
    ) -> Any:
        product = await resources.store.put_product(product_id, body.sku, body.name, body.stock)
        return product.as_dict()

    @api.post("/orders", status_code=201)
    async def post_order(
        body: OrderIn, response: Response, resources: ResourcesDep, client: ClientDep
    ) -> Any:
        store = resources.store
        product = await store.product(body.product_id)
        # The network call happens before the transaction: never hold row locks (and a
        # pooled connection) while waiting for another service.
        price = await resources.pricing.price(product.sku)
        order = await store.place_order(product.id, body.quantity, price, client)
        ORDER_PLACED.emit(order_id=order.id, product_id=order.product_id, client=client)
        response.headers["Location"] = f"/orders/{order.id}"
        return order.as_dict()

    @api.get("/orders/{order_id}")
    async def get_order(order_id: int, resources: ResourcesDep, _: ClientDep) -> Any:
        return (await resources.store.order(order_id)).as_dict()

    @api.get("/metrics", include_in_schema=False)
    async def metrics(resources: ResourcesDep) -> Response:
        return Response(generate_latest(resources.registry), media_type=CONTENT_TYPE_LATEST)

    probes = health_app(max_age=settings.probe_max_age, entry_points=False, fallback=api)
    return RequestContextMiddleware(probes)
