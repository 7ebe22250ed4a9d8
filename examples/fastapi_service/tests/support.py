"""What the tests share besides fixtures: the API keys, the fake upstream, the running service."""

from __future__ import annotations

import itertools
from collections import deque
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any

import httpx
from orders_service.settings import ServiceSettings

__all__ = [
    "KEY",
    "OTHER_KEY",
    "Service",
    "ServiceFactory",
    "Upstream",
    "new_product_id",
    "put_product",
]

KEY = "test-key-1"
OTHER_KEY = "test-key-2"
_ids = itertools.count(1)


def new_product_id() -> int:
    """A product id no other test of the session uses."""
    return next(_ids)


#: One scripted answer of the upstream: (status, headers), or "hang" (until the client
#: gives up and closes the connection).
Answer = tuple[int, dict[str, str]] | str


@dataclass
class Upstream:
    """The pricing service: every SKU costs ``price`` cents, unless the script says otherwise."""

    price: int = 1250
    script: deque[Answer] = field(default_factory=deque)
    calls: list[str] = field(default_factory=list)
    url: str = ""

    def then(self, *answers: Answer) -> None:
        self.script.extend(answers)

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        assert scope["type"] == "http"
        self.calls.append(scope["path"])
        answer = self.script.popleft() if self.script else (200, {})
        if answer == "hang":
            # No sleep: wait until the client closes the connection (its timeout).
            while (await receive())["type"] != "http.disconnect":
                pass
            return
        assert isinstance(answer, tuple)
        status, headers = answer
        body = b'{"price_cents": %d}' % self.price if status == 200 else b"{}"
        raw = [(b"content-type", b"application/json")]
        raw += [(k.lower().encode(), v.encode()) for k, v in headers.items()]
        await send({"type": "http.response.start", "status": status, "headers": raw})
        await send({"type": "http.response.body", "body": body})


@dataclass
class Service:
    """The running service and what a test needs to talk to it."""

    url: str
    settings: ServiceSettings
    upstream: Upstream

    def client(self, key: str | None = KEY, **options: Any) -> httpx.Client:
        headers = {} if key is None else {"X-API-Key": key}
        return httpx.Client(base_url=self.url, headers=headers, **options)

    def async_client(self, key: str | None = KEY, **options: Any) -> httpx.AsyncClient:
        headers = {} if key is None else {"X-API-Key": key}
        return httpx.AsyncClient(base_url=self.url, headers=headers, **options)


def put_product(client: httpx.Client, product_id: int, *, stock: int = 10) -> dict[str, Any]:
    """Create a product through the API; return its JSON."""
    reply = client.put(
        f"/products/{product_id}",
        json={"sku": f"SKU-{product_id}", "name": f"Product {product_id}", "stock": stock},
    )
    assert reply.status_code == 200, reply.text
    data: dict[str, Any] = reply.json()
    return data


#: ``make_service(**settings_overrides)``: a context manager yielding a running :class:`Service`.
ServiceFactory = Callable[..., AbstractContextManager[Service]]
