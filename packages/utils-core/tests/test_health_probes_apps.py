"""The probe apps over real sockets: uvicorn (ASGI) and wsgiref (WSGI), driven by httpx."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from utils.core import ValidationError
from utils.core import health as health_module
from utils.core.health import mark_draining, register_check
from utils.core.probes import HealthApp, WSGIHealthApp, health_app, wsgi_health_app
from utils.core.testing import FakeClock, serve_asgi, serve_wsgi, wait_until


@pytest.fixture(autouse=True)
def _clean_registry() -> Iterator[None]:
    before = dict(health_module._state.checks)
    yield
    health_module._state.checks = before
    mark_draining(False)


def _fail(message: str) -> Any:
    def check() -> None:
        raise ConnectionError(message)

    return check


@pytest.mark.parametrize("kind", ["asgi", "wsgi"])
def test_routes_statuses_bodies_and_methods(kind: str) -> None:
    register_check("loop", lambda: "alive", kind="liveness")
    register_check("db", _fail("cannot reach postgresql://app:hunter2@db:5432/x"))
    register_check("warm", lambda: "cache warmed", kind="startup")
    serve = serve_asgi if kind == "asgi" else serve_wsgi
    app = (health_app if kind == "asgi" else wsgi_health_app)(entry_points=False)
    with serve(app) as url, httpx.Client(base_url=url) as client:
        live = client.get("/livez")
        assert live.status_code == 200
        assert live.headers["content-type"] == "application/json"
        assert live.headers["cache-control"] == "no-store"
        assert live.json() == {
            "status": "ok",
            "kind": "liveness",
            "checks": [
                {
                    "name": "loop",
                    "ok": True,
                    "detail": "alive",
                    "seconds": live.json()["checks"][0]["seconds"],
                    "kind": "liveness",
                }
            ],
        }
        ready = client.get("/readyz")
        assert ready.status_code == 503
        [db] = ready.json()["checks"]
        assert (db["name"], db["ok"]) == ("db", False)
        assert "hunter2" not in ready.text
        assert db["detail"].startswith("ConnectionError: cannot reach postgresql://app:***@db")
        assert client.get("/startupz/").json()["checks"][0]["detail"] == "cache warmed"
        head = client.head("/readyz")
        assert head.status_code == 503
        assert head.content == b""
        assert head.headers["content-length"] == str(len(ready.content))
        assert client.post("/readyz").status_code == 405
        missing = client.get("/healthz")
        assert missing.status_code == 404
        assert "use /livez, /readyz or /startupz" in missing.text


def test_liveness_with_no_checks_is_alive_and_never_runs_readiness() -> None:
    ran: list[str] = []
    register_check("db", lambda: ran.append("db"))
    with serve_asgi(health_app(entry_points=True)) as url:
        reply = httpx.get(url + "/livez")
    assert (reply.status_code, reply.json()["checks"]) == (200, [])
    assert ran == []


@pytest.mark.parametrize("kind", ["asgi", "wsgi"])
def test_answers_are_cached_for_max_age(kind: str) -> None:
    clock = FakeClock()
    calls: list[int] = []

    def db() -> str:
        calls.append(1)
        return "up"

    register_check("db", db)
    serve = serve_asgi if kind == "asgi" else serve_wsgi
    factory = health_app if kind == "asgi" else wsgi_health_app
    app = factory(max_age=5.0, entry_points=False, clock=clock)
    with serve(app) as url, httpx.Client(base_url=url) as client:
        assert [client.get("/readyz").status_code for _ in range(5)] == [200] * 5
        assert len(calls) == 1
        clock.advance(4.9)
        client.get("/readyz")
        assert len(calls) == 1
        clock.advance(0.1)
        client.get("/readyz")
        assert len(calls) == 2
        client.get("/livez")  # another kind has its own answer
        assert len(calls) == 2


def test_concurrent_callers_share_one_run() -> None:
    async def scenario() -> None:
        entered, release = asyncio.Event(), asyncio.Event()
        calls: list[int] = []

        async def slow() -> str:
            calls.append(1)
            entered.set()
            await release.wait()
            return "up"

        register_check("db", slow, timeout=5)
        app = health_app(max_age=0, entry_points=False)
        first = asyncio.ensure_future(app.answer("readiness"))
        await entered.wait()
        second = asyncio.ensure_future(app.answer("readiness"))
        await asyncio.sleep(0)  # let the second caller find the run in progress
        second.cancel()  # a caller that goes away does not cancel the shared run
        release.set()
        answer = await first
        assert answer.status == 200
        assert calls == [1]
        assert (await app.answer("readiness")).status == 200  # max_age=0: runs again
        assert calls == [1, 1]

    asyncio.run(scenario())


def test_wsgi_callers_during_a_run_share_it() -> None:
    release = threading.Event()
    calls: list[int] = []

    def slow() -> str:
        calls.append(1)
        release.wait(10)
        return "up"

    register_check("db", slow, timeout=10)
    app = wsgi_health_app(max_age=0, entry_points=False)
    answers: list[Any] = []
    leader = threading.Thread(target=lambda: answers.append(app.answer("readiness")))
    leader.start()
    wait_until(lambda: calls == [1])
    follower = threading.Thread(target=lambda: answers.append(app.answer("readiness")))
    follower.start()
    wait_until(follower.is_alive)
    release.set()
    leader.join(10)
    follower.join(10)
    assert [answer.status for answer in answers] == [200, 200]
    assert len(calls) in (1, 2)  # the follower shares the run unless it arrived after it ended


def test_draining_takes_effect_at_once_even_with_a_cached_answer() -> None:
    register_check("db", lambda: "up")
    clock = FakeClock()
    with serve_wsgi(wsgi_health_app(max_age=60, entry_points=False, clock=clock)) as url:
        assert httpx.get(url + "/readyz").status_code == 200
        mark_draining()
        draining = httpx.get(url + "/readyz")
        assert draining.status_code == 503
        assert draining.json()["checks"][0]["name"] == "draining"
        assert httpx.get(url + "/livez").status_code == 200
        mark_draining(False)
        assert httpx.get(url + "/readyz").status_code == 200


def test_mounted_in_starlette_and_fastapi_under_a_prefix() -> None:
    from fastapi import FastAPI
    from starlette.applications import Starlette
    from starlette.responses import PlainTextResponse
    from starlette.routing import Mount, Route

    register_check("db", lambda: "up")

    async def hello(request: Any) -> PlainTextResponse:
        return PlainTextResponse("hello")

    starlette_app = Starlette(
        routes=[Route("/hello", hello), Mount("/health", health_app(entry_points=False))]
    )
    fastapi_app = FastAPI()
    fastapi_app.mount("/ops/health", health_app(entry_points=False))
    with serve_asgi(starlette_app) as url:
        assert httpx.get(url + "/health/readyz").json()["checks"][0]["name"] == "db"
        assert httpx.get(url + "/hello").text == "hello"
        assert httpx.get(url + "/health/nope").status_code == 404
        assert httpx.get(url + "/readyz").status_code == 404  # only under the mount
    # Behind a proxy that strips /api: uvicorn puts root_path in front of every path.
    with serve_asgi(fastapi_app, root_path="/api") as url:
        assert httpx.get(url + "/ops/health/livez").status_code == 200
        assert httpx.get(url + "/ops/health/readyz").json()["status"] == "ok"
        assert httpx.get(url + "/ops/health/other").status_code == 404


def test_fallback_gets_everything_else_and_lifespan_alone() -> None:
    from starlette.applications import Starlette
    from starlette.responses import PlainTextResponse
    from starlette.routing import Route

    started: list[str] = []

    async def hello(request: Any) -> PlainTextResponse:
        return PlainTextResponse("hello")

    def lifespan(app: Any) -> Any:
        from contextlib import asynccontextmanager

        @asynccontextmanager
        async def run(app: Any) -> Any:
            started.append("up")
            yield

        return run(app)

    inner = Starlette(routes=[Route("/hello", hello)], lifespan=lifespan)
    with serve_asgi(health_app(entry_points=False, fallback=inner), lifespan="on") as url:
        assert httpx.get(url + "/hello").text == "hello"
        assert httpx.get(url + "/livez").status_code == 200
    assert started == ["up"]  # lifespan events reached the fallback
    with serve_asgi(health_app(entry_points=False), lifespan="on") as url:  # served alone
        assert httpx.get(url + "/livez").status_code == 200


def test_websocket_without_fallback_is_refused() -> None:
    sent: list[Any] = []

    async def scenario() -> None:
        async def receive() -> dict[str, Any]:
            return {"type": "websocket.connect"}

        async def send(message: Any) -> None:
            sent.append(message)

        await health_app()({"type": "websocket", "path": "/livez"}, receive, send)

    asyncio.run(scenario())
    assert sent == []  # not accepted: the server closes it


def test_wsgi_fallback_and_dispatcher_mount() -> None:
    def django_like(environ: Any, start_response: Any) -> list[bytes]:
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"app: " + environ["PATH_INFO"].encode()]

    register_check("db", lambda: "up")
    with serve_wsgi(wsgi_health_app(entry_points=False, fallback=django_like)) as url:
        assert httpx.get(url + "/orders").text == "app: /orders"
        assert httpx.get(url + "/readyz").json()["status"] == "ok"
    dispatcher = pytest.importorskip("werkzeug.middleware.dispatcher")
    mounted = dispatcher.DispatcherMiddleware(django_like, {"/health": wsgi_health_app()})
    with serve_wsgi(mounted) as url:
        assert httpx.get(url + "/health/livez").status_code == 200
        assert httpx.get(url + "/health/readyz").status_code == 200


def test_entry_points_on_readyz_without_the_doctor_diagnostics(fake_distribution: Any) -> None:
    fake_distribution(
        "utils-envprobe",
        {"utils.health": {"env-redis": "envprobe_mod:check", "broken": "envprobe_broken:x"}},
        module="envprobe_mod",
        module_source="def check(): return 'redis from env'",
    )
    fake_distribution(
        "utils-envprobe-broken",
        {},
        module="envprobe_broken",
        module_source="raise ImportError('no driver')",
    )
    with serve_asgi(health_app()) as url:
        body = httpx.get(url + "/readyz").json()
    names = {check["name"]: check for check in body["checks"]}
    assert names["env-redis"]["detail"] == "redis from env"
    assert names["broken"]["detail"] == "failed to import"
    assert "python" not in names
    assert "plugins" not in names


def test_a_run_that_cannot_start_is_a_503(fake_distribution: Any) -> None:
    fake_distribution("utils-dup-one", {"utils.health": {"same": "mod_one:x"}})
    fake_distribution("utils-dup-two", {"utils.health": {"same": "mod_two:x"}})
    with serve_asgi(health_app()) as url:
        reply = httpx.get(url + "/readyz")
    assert reply.status_code == 503
    assert reply.json()["checks"][0]["detail"].startswith("PluginError: two plugins named")
    app = wsgi_health_app()
    assert app.answer("readiness").status == 503


def test_failures_and_recoveries_are_logged_once(utils_logs: list[dict[str, Any]]) -> None:
    healthy = [False]

    def flaky() -> str:
        if not healthy[0]:
            raise ConnectionError("refused")
        return "up"

    register_check("db", flaky)
    app = wsgi_health_app(max_age=0, entry_points=False)
    statuses = [app.answer("readiness").status for _ in range(3)]
    healthy[0] = True
    statuses += [app.answer("readiness").status for _ in range(2)]
    assert statuses == [503, 503, 503, 200, 200]
    events = [(e["event"], e["check"]) for e in utils_logs if e["event"].startswith("health.")]
    assert events == [("health.check_failed", "db"), ("health.check_recovered", "db")]


def test_arguments_are_validated_and_shown() -> None:
    with pytest.raises(ValidationError, match="max_age"):
        health_app(max_age=-1)
    with pytest.raises(ValidationError, match="timeout"):
        wsgi_health_app(timeout=0)
    with pytest.raises(ValidationError, match="entry_points"):
        health_app(entry_points="yes")  # type: ignore[arg-type]
    assert repr(health_app(max_age=2)) == "<HealthApp max_age=2>"
    assert repr(wsgi_health_app()) == "<WSGIHealthApp max_age=1>"
    assert isinstance(health_app(), HealthApp)
    assert isinstance(wsgi_health_app(), WSGIHealthApp)


def test_wsgi_app_forgets_runs_in_a_forked_child() -> None:
    app = wsgi_health_app()
    app._flights["readiness"] = object()  # type: ignore[assignment]
    app._after_fork()
    assert app._flights == {}
