"""Rate-limit HTTP headers (Decision.headers) and the resilience errors as HTTP answers."""

from __future__ import annotations

import asyncio
import math
import re
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from utils.core.problems import http_status_for, problem_response
from utils.core.testing import FakeClock, find_free_port, serve_asgi
from utils.core.validate import MAX_SECONDS
from utils.resilience import Bulkhead, CircuitBreaker, RateLimiter, timeout
from utils.resilience.errors import (
    BulkheadFullError,
    RateLimitExceeded,
    ResilienceTimeoutError,
)
from utils.resilience.ratelimit import Decision, RedisRateLimitStorage

GUIDE = Path(__file__).resolve().parents[3] / "docs" / "guides" / "http-errors.md"
HEADER_NAMES = {"RateLimit-Limit", "RateLimit-Remaining", "RateLimit-Reset", "RateLimit-Policy"}


def test_headers_of_an_allowed_request() -> None:
    limiter = RateLimiter(100, per=60, burst=10, clock=FakeClock())
    assert limiter.try_acquire("ann").headers(limiter) == {
        "RateLimit-Limit": "10",
        "RateLimit-Remaining": "9",
        "RateLimit-Reset": "1",  # one request to refill: 0.6 s, rounded up
        "RateLimit-Policy": "10;w=6",  # 10 requests refill in 6 s: 100 per minute
    }


def test_headers_of_a_refused_request() -> None:
    clock = FakeClock()
    limiter = RateLimiter(100, per=60, burst=10, clock=clock)
    for _ in range(10):
        last = limiter.try_acquire("ann")
    assert last.headers(limiter)["RateLimit-Remaining"] == "0"
    assert last.headers(limiter)["RateLimit-Reset"] == "6"
    assert "Retry-After" not in last.headers(limiter)  # admitted
    refused = limiter.try_acquire("ann")
    assert not refused
    assert refused.headers(limiter) == {
        "RateLimit-Limit": "10",
        "RateLimit-Remaining": "0",
        "RateLimit-Reset": "6",
        "RateLimit-Policy": "10;w=6",
        "Retry-After": "1",  # 0.6 s rounded up
    }


@pytest.mark.parametrize(
    ("limiter", "policy"),
    [
        (RateLimiter(2), "2;w=1"),
        (RateLimiter(3, per=1.0), "3;w=1"),  # 3 * (1/3) is not exactly 1.0 in floats
        (RateLimiter(0.5), "1;w=2"),
        (RateLimiter(10, per=60), "10;w=60"),
        (RateLimiter(7, per=1.0, burst=3), "3;w=1"),  # 3/7 s rounds up to 1 s
        (RateLimiter(1000, per=3600, burst=1), "1;w=4"),  # 3.6 s rounds up
    ],
)
def test_policy_is_the_burst_and_the_time_to_refill_it(limiter: RateLimiter, policy: str) -> None:
    headers = limiter.try_acquire().headers(limiter)
    assert headers["RateLimit-Policy"] == policy
    assert headers["RateLimit-Limit"] == policy.split(";", maxsplit=1)[0]


@pytest.mark.parametrize(
    ("decision", "retry_after", "reset"),
    [
        (Decision(False, 0.0, 0), "1", "6"),  # a refusal never says "retry now"
        (Decision(False, math.inf, 0), str(int(MAX_SECONDS)), str(int(MAX_SECONDS))),
        (Decision(False, math.nan, 0), "1", "6"),
        (Decision(False, 2.0000000000000004, 0), "2", "6"),  # float noise, not a third second
        (Decision(False, 30.0, 0), "30", "30"),  # a storage outage: never reset before it
    ],
)
def test_odd_refusals_still_give_sane_headers(
    decision: Decision, retry_after: str, reset: str
) -> None:
    limiter = RateLimiter(100, per=60, burst=10)
    headers = decision.headers(limiter)
    assert headers["Retry-After"] == retry_after
    assert headers["RateLimit-Reset"] == reset


def test_remaining_is_never_above_the_limit() -> None:
    limiter = RateLimiter(5)
    headers = Decision(True, 0.0, 99).headers(limiter)
    assert headers["RateLimit-Remaining"] == "5"
    assert headers["RateLimit-Reset"] == "0"


@given(
    # Bounded so that the clock stays below ~1e6 s: the limiter's 1 ns rounding slack is
    # absolute, and beyond ~1e7 s a float's resolution is coarser than that.
    rate=st.floats(min_value=0.1, max_value=1000),
    per=st.floats(min_value=0.1, max_value=60),
    burst=st.integers(min_value=1, max_value=20),
    steps=st.lists(
        st.tuples(
            st.floats(min_value=0, max_value=100),
            st.integers(min_value=1, max_value=20),
            st.booleans(),
        ),
        min_size=1,
        max_size=30,
    ),
)
def test_headers_keep_their_promises(
    rate: float, per: float, burst: int, steps: list[tuple[float, int, bool]]
) -> None:
    """Whatever happened before: every value is a non-negative integer, waiting Retry-After
    admits the refused request, and waiting RateLimit-Reset admits a whole burst."""
    clock = FakeClock(1000.0)
    limiter = RateLimiter(rate, per=per, burst=burst, clock=clock)
    for wait, wanted, check_reset in steps:
        clock.advance(wait)
        cost = min(wanted, burst)
        decision = limiter.try_acquire("k", cost=cost)
        headers = decision.headers(limiter)
        assert set(headers) == HEADER_NAMES | (set() if decision else {"Retry-After"})
        values = {
            name: int(value) for name, value in headers.items() if name != "RateLimit-Policy"
        }
        assert all(value >= 0 for value in values.values())
        assert values["RateLimit-Limit"] == burst
        assert values["RateLimit-Remaining"] == decision.remaining
        assert re.fullmatch(rf"{burst};w=[1-9][0-9]*", headers["RateLimit-Policy"])
        if not decision:
            assert values["Retry-After"] >= 1
            assert values["RateLimit-Reset"] >= values["Retry-After"]
        if check_reset:
            clock.advance(values["RateLimit-Reset"])
            assert limiter.try_acquire("k", cost=burst), "a whole burst after RateLimit-Reset"
        elif not decision:
            clock.advance(values["Retry-After"])
            assert limiter.try_acquire("k", cost=cost), "the same request after Retry-After"


# -- the resilience errors as HTTP answers --------------------------------------------------------


def test_upstream_http_errors_are_the_servers_problem() -> None:
    """raise_for_status's errors describe a dependency's answer, not the client's request."""
    import httpx as client_lib

    from utils.resilience.http import raise_for_status

    request = client_lib.Request("GET", "https://api.partner.example/v1/items?token=abc")
    expected = {429: 503, 403: 500, 401: 500, 404: 404, 409: 409, 400: 422, 503: 503, 500: 503}
    for upstream, status in expected.items():
        response = client_lib.Response(upstream, headers={"Retry-After": "7"}, request=request)
        with pytest.raises(Exception) as raised:
            raise_for_status(response)
        answer = problem_response(raised.value)
        assert answer.status == status, upstream
        assert b"partner" not in answer.body  # neither the upstream URL nor its message
        assert b"abc" not in answer.body


def test_rate_limit_exceeded_is_a_429_with_retry_after() -> None:
    limiter = RateLimiter(1, per=10.0, clock=FakeClock())
    limiter.acquire("ann")
    with pytest.raises(RateLimitExceeded) as raised:
        limiter.acquire("ann", timeout=0)
    status, headers, body = problem_response(raised.value)
    assert status == 429
    assert headers["Retry-After"] == "10"
    assert b'"code":"rate_limited"' in body


def test_a_fail_closed_storage_outage_is_a_503_not_a_429() -> None:
    pytest.importorskip("redis", reason="needs redis-py (utils-resilience[redis])")
    dead = RedisRateLimitStorage(f"redis://127.0.0.1:{find_free_port()}/0", fail_open=False)
    limiter = RateLimiter(5, storage=dead, name="api")
    with pytest.raises(RateLimitExceeded) as raised:
        limiter.acquire("ann")
    assert raised.value.__cause__ is not None  # the storage's error
    status, _, body = problem_response(raised.value)
    assert status == 503  # the server's storage is down: not the client's excess
    assert b"redis" not in body.lower()
    assert b"The service is temporarily unavailable" in body


def test_circuit_open_bulkhead_full_and_timeout() -> None:
    breaker = CircuitBreaker("payments", fail_max=1, reset_timeout=30.0)

    def fail() -> None:
        raise ConnectionError("payments.internal:443 refused")

    with pytest.raises(ConnectionError):
        breaker.call(fail)
    with pytest.raises(Exception) as opened:
        breaker.call(fail)
    assert type(opened.value).__name__ == "CircuitOpenError"
    status, headers, body = problem_response(opened.value)
    assert status == 503
    assert int(headers["Retry-After"]) >= 1
    assert b"payments" not in body

    assert http_status_for(BulkheadFullError("bulkhead 'db' is full")) == 503

    @timeout(0.01)
    async def slow() -> None:
        await asyncio.Event().wait()  # never set: only the timeout ends it

    with pytest.raises(ResilienceTimeoutError) as expired:
        asyncio.run(slow())
    assert http_status_for(expired.value) == 504


def test_a_full_bulkhead_is_a_503() -> None:
    bulkhead = Bulkhead(1, max_waiting=0, name="db")

    async def scenario() -> BaseException:
        started = asyncio.Event()
        release = asyncio.Event()

        async def hold() -> None:
            started.set()
            await release.wait()

        holder = asyncio.create_task(bulkhead.acall(hold))
        await started.wait()
        try:
            await bulkhead.acall(hold)
        except BulkheadFullError as error:
            return error
        finally:
            release.set()
            await holder
        raise AssertionError("the bulkhead admitted a second call")

    error = asyncio.run(scenario())
    assert problem_response(error).status == 503


# -- the guide's middleware recipe, on a real server -----------------------------------------------


def test_ratelimit_recipe_on_a_real_server() -> None:
    from starlette.applications import Starlette
    from starlette.middleware.base import BaseHTTPMiddleware
    from starlette.requests import Request
    from starlette.responses import PlainTextResponse
    from starlette.routing import Route

    blocks = dict(
        re.findall(
            r"```\{code-block\} python\n:name: (recipe-[a-z]+)\n\n(.*?)```",
            GUIDE.read_text(encoding="utf-8"),
            re.DOTALL,
        )
    )
    recipe: dict[str, Any] = {"__name__": "http_errors_ratelimit_recipe"}
    exec(compile(blocks["recipe-ratelimit"], f"{GUIDE}:recipe-ratelimit", "exec"), recipe)
    # The recipe's limiter, on a clock that stands still: no refill while the test runs.
    clock = FakeClock()
    recipe["limiter"] = RateLimiter(100, per=60, burst=10, name="api", clock=clock)

    async def hello(request: Request) -> PlainTextResponse:
        return PlainTextResponse("hello")

    app = Starlette(routes=[Route("/hello", hello)])
    app.add_middleware(BaseHTTPMiddleware, dispatch=recipe["rate_limit"])
    with serve_asgi(app) as base, httpx.Client(base_url=base) as client:
        answers = [client.get("/hello?token=secret") for _ in range(11)]
        clock.advance(0.6)  # one request's worth of refill
        after_wait = client.get("/hello")
    for count, answer in enumerate(answers[:10]):
        assert answer.status_code == 200
        assert answer.text == "hello"
        assert answer.headers["ratelimit-limit"] == "10"
        assert answer.headers["ratelimit-remaining"] == str(9 - count)
        assert answer.headers["ratelimit-policy"] == "10;w=6"
    refused = answers[10]
    assert refused.status_code == 429
    assert refused.headers["content-type"] == "application/problem+json"
    assert refused.headers["retry-after"] == "1"
    assert refused.headers["ratelimit-remaining"] == "0"
    assert refused.headers["ratelimit-reset"] == "6"
    assert refused.json() == {
        "type": "about:blank",
        "title": "Too Many Requests",
        "status": 429,
        "detail": "too many requests",
        "code": "throttled",
        "instance": "/hello",
        "retry_after": 1,
    }
    assert after_wait.status_code == 200
