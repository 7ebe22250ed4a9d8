"""RequestContextMiddleware (ASGI) and WSGIRequestContextMiddleware: ids, context, events.

The raw ASGI/WSGI calls drive every branch; real servers (uvicorn, wsgiref) prove that the
header really crosses the wire and that every line of a request carries its id.
"""

from __future__ import annotations

import asyncio
import io
import json
import logging
import string
import subprocess
import sys
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from utils.core import (
    ConfigError,
    RequestContextMiddleware,
    WSGIRequestContextMiddleware,
    capture_logs,
    configure_logging,
    get_context,
    get_logger,
)
from utils.core import middleware as middleware_module
from utils.core.metrics import InMemorySink
from utils.core.middleware import (
    MAX_REQUEST_ID_LENGTH,
    ROUTE_KEY,
    UNMATCHED_ROUTE,
    is_valid_request_id,
    new_request_id,
)
from utils.core.testing import FakeClock, metrics_sink, serve_asgi, serve_wsgi

ID_ALPHABET = string.ascii_letters + string.digits + "._:+/=-"

Message = dict[str, Any]


# --------------------------------------------------------------------------------------
# Helpers: a raw ASGI call with recorded messages


class Recorder:
    def __init__(self) -> None:
        self.sent: list[Message] = []

    async def send(self, message: Any) -> None:
        self.sent.append(message)

    async def receive(self) -> Message:
        return {"type": "http.request", "body": b"", "more_body": False}

    def header(self, name: bytes) -> list[bytes]:
        start = next(
            m for m in self.sent if m["type"] in ("http.response.start", "websocket.accept")
        )
        return [value for key, value in start.get("headers", []) if key == name]


def http_scope(path: str = "/users/42", method: str = "GET", **headers: str) -> dict[str, Any]:
    return {
        "type": "http",
        "method": method,
        "path": path,
        "headers": [
            (name.replace("_", "-").lower().encode(), value.encode())
            for name, value in headers.items()
        ],
    }


def call(app: Any, scope: dict[str, Any]) -> Recorder:
    recorder = Recorder()
    asyncio.run(app(scope, recorder.receive, recorder.send))
    return recorder


def ok_app(seen: list[dict[str, Any]] | None = None, headers: list[Any] | None = None) -> Any:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        if seen is not None:
            seen.append(get_context())
        get_logger("app.handler").info("handler.ran")
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": headers if headers is not None else [],
            }
        )
        await send({"type": "http.response.body", "body": b"ok"})

    return app


@pytest.fixture
def sink() -> Iterator[InMemorySink]:
    with metrics_sink() as installed:
        yield installed


# --------------------------------------------------------------------------------------
# Request ids


def test_new_request_id_is_a_fresh_uuid4_in_hex() -> None:
    ids = {new_request_id() for _ in range(1000)}
    assert len(ids) == 1000
    for request_id in list(ids)[:50]:
        parsed = uuid.UUID(request_id)
        assert parsed.version == 4
        assert parsed.variant == uuid.RFC_4122
        assert parsed.hex == request_id


@given(st.text(alphabet=ID_ALPHABET, min_size=1, max_size=MAX_REQUEST_ID_LENGTH))
def test_every_id_of_the_documented_alphabet_is_valid(value: str) -> None:
    assert is_valid_request_id(value)
    assert is_valid_request_id(value.encode())


@given(st.text(min_size=1, max_size=200))
def test_validity_is_exactly_the_documented_rule(value: str) -> None:
    expected = len(value) <= MAX_REQUEST_ID_LENGTH and all(c in ID_ALPHABET for c in value)
    assert is_valid_request_id(value) is expected


def test_empty_and_too_long_ids_are_invalid() -> None:
    assert not is_valid_request_id("")
    assert not is_valid_request_id("a" * (MAX_REQUEST_ID_LENGTH + 1))
    assert is_valid_request_id("a" * MAX_REQUEST_ID_LENGTH)
    assert not is_valid_request_id("é")
    assert not is_valid_request_id("id\nforged-line")


@given(st.binary(max_size=160))
def test_any_incoming_header_gives_a_valid_echoed_id(raw: bytes) -> None:
    generated = "generated-1"
    app = RequestContextMiddleware(ok_app(), generate_id=lambda: generated)
    scope = http_scope()
    scope["headers"] = [(b"x-request-id", raw)]
    with capture_logs():
        recorder = call(app, scope)
    [echoed] = recorder.header(b"x-request-id")
    assert echoed == (raw if is_valid_request_id(raw) else generated.encode())


def test_valid_incoming_id_is_kept_bound_and_echoed(sink: InMemorySink) -> None:
    seen: list[dict[str, Any]] = []
    app = RequestContextMiddleware(ok_app(seen))
    with capture_logs() as logs:
        recorder = call(app, http_scope(x_request_id="req-123"))
    assert seen == [{"request_id": "req-123", "method": "GET", "path": "/users/42"}]
    assert recorder.header(b"x-request-id") == [b"req-123"]
    assert [entry["request_id"] for entry in logs] == ["req-123", "req-123"]
    assert get_context() == {}  # unbound after the request


def test_invalid_or_missing_id_is_replaced_by_the_generator() -> None:
    ids = iter(["gen-1", "gen-2"])
    app = RequestContextMiddleware(ok_app(), generate_id=lambda: next(ids))
    with capture_logs():
        bad = call(app, http_scope(x_request_id="has space"))
        missing = call(app, http_scope())
    assert bad.header(b"x-request-id") == [b"gen-1"]
    assert missing.header(b"x-request-id") == [b"gen-2"]


def test_untrusted_incoming_id_is_ignored() -> None:
    app = RequestContextMiddleware(ok_app(), trust_incoming=False, generate_id=lambda: "mine")
    with capture_logs():
        recorder = call(app, http_scope(x_request_id="theirs"))
    assert recorder.header(b"x-request-id") == [b"mine"]


def test_custom_header_name_is_read_and_echoed() -> None:
    app = RequestContextMiddleware(ok_app(), header="X-Correlation-ID")
    with capture_logs():
        recorder = call(app, http_scope(x_correlation_id="corr-9", x_request_id="other"))
    assert recorder.header(b"x-correlation-id") == [b"corr-9"]
    assert recorder.header(b"x-request-id") == []
    assert app.header == "X-Correlation-ID"
    assert "X-Correlation-ID" in repr(app)


def test_application_headers_list_is_copied_not_mutated() -> None:
    shared: list[tuple[bytes, bytes]] = [(b"content-type", b"text/plain")]
    app = RequestContextMiddleware(ok_app(headers=shared))
    with capture_logs():
        for _ in range(3):
            recorder = call(app, http_scope())
    assert shared == [(b"content-type", b"text/plain")]
    assert len(recorder.sent[0]["headers"]) == 2


@pytest.mark.parametrize("header", ["", "X Request", "X-Request-ID\r\n", 42])
def test_bad_header_name_is_a_config_error(header: Any) -> None:
    with pytest.raises(ConfigError, match="header must be an HTTP header name"):
        RequestContextMiddleware(ok_app(), header=header)
    with pytest.raises(ConfigError, match="header must be an HTTP header name"):
        WSGIRequestContextMiddleware(wsgi_ok, header=header)


def test_generator_must_be_callable_and_return_a_valid_id() -> None:
    with pytest.raises(ConfigError, match="generate_id must be a callable"):
        RequestContextMiddleware(ok_app(), generate_id="uuid4")  # type: ignore[arg-type]
    app = RequestContextMiddleware(ok_app(), generate_id=lambda: "not valid!")
    with pytest.raises(ConfigError, match="generate_id returned 'not valid!'"):
        call(app, http_scope())


# --------------------------------------------------------------------------------------
# The access event


def test_access_event_logs_and_observes_the_duration(
    sink: InMemorySink, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = FakeClock(100.0)
    monkeypatch.setattr(middleware_module, "_perf_counter", clock)

    async def slow(scope: Any, receive: Any, send: Any) -> None:
        clock.advance(0.25)
        scope["route"] = type("Route", (), {"path_format": "/users/{id}"})()
        await send({"type": "http.response.start", "status": 201, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    with capture_logs() as logs:
        call(RequestContextMiddleware(slow), http_scope(method="POST", x_request_id="r-1"))
    [event] = logs
    assert event["event"] == "http.request"
    assert event["log_level"] == "info"
    assert event["logger"] == "utils.core.middleware"
    assert {
        k: event[k] for k in ("method", "route", "status", "duration", "request_id", "path")
    } == {
        "method": "POST",
        "route": "/users/{id}",
        "status": 201,
        "duration": 0.25,
        "request_id": "r-1",
        "path": "/users/42",
    }
    [measurement] = sink.select("http.request")
    assert measurement.kind == "observe"
    assert measurement.value == pytest.approx(0.25)
    assert measurement.tags == {"method": "POST", "route": "/users/{id}", "status": "201"}


def test_route_label_never_uses_the_raw_path(sink: InMemorySink) -> None:
    async def routed(scope: Any, receive: Any, send: Any) -> None:
        if scope["path"] == "/explicit/7":
            scope[ROUTE_KEY] = "/explicit/{n}"
        if scope["path"] == "/starlette-like/7":
            scope["route"] = type("Mount", (), {"path": "/starlette-like"})()
        if scope["path"] == "/weird/7":
            scope["route"] = object()  # a route object without a template
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    app = RequestContextMiddleware(routed)
    with capture_logs():
        for path in ("/explicit/7", "/starlette-like/7", "/weird/7", "/nothing/7"):
            call(app, http_scope(path))
    routes = [m.tags["route"] for m in sink.select("http.request")]
    assert routes == ["/explicit/{n}", "/starlette-like", UNMATCHED_ROUTE, UNMATCHED_ROUTE]


@pytest.mark.parametrize(
    ("method", "label"), [("GET", "GET"), ("PATCH", "PATCH"), ("BREW", "OTHER"), ("get", "OTHER")]
)
def test_unknown_methods_are_one_label(sink: InMemorySink, method: str, label: str) -> None:
    with capture_logs() as logs:
        call(RequestContextMiddleware(ok_app()), http_scope(method=method))
    assert sink.select("http.request")[0].tags["method"] == label
    assert logs[-1]["method"] == label


def test_unhandled_exception_is_logged_once_in_context_counted_500_and_reraised(
    sink: InMemorySink,
) -> None:
    error = RuntimeError("db at postgresql://app:hunter2@db/main is down")

    async def broken(scope: Any, receive: Any, send: Any) -> None:
        get_logger("app").info("before.failure")
        raise error

    with capture_logs() as logs, pytest.raises(RuntimeError) as raised:
        call(RequestContextMiddleware(broken), http_scope(x_request_id="r-err"))
    assert raised.value is error
    assert getattr(error, "__utils_logged__", False) is True
    events = [entry["event"] for entry in logs]
    assert events == ["before.failure", "http.unhandled_error", "http.request"]
    failure = logs[1]
    assert failure["log_level"] == "error"
    assert failure["request_id"] == "r-err"
    assert failure["error"] == "RuntimeError"
    assert "Traceback" in failure["exception"]
    assert "hunter2" not in failure["exception"]
    assert logs[2]["status"] == 500
    assert sink.select("http.request")[0].tags["status"] == "500"
    assert get_context() == {}


def test_exception_after_the_response_started_still_counts_500(sink: InMemorySink) -> None:
    async def half(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        raise ValueError("stream broke")

    with capture_logs(), pytest.raises(ValueError, match="stream broke"):
        call(RequestContextMiddleware(half), http_scope())
    assert sink.select("http.request")[0].tags["status"] == "500"


def test_exception_that_refuses_the_mark_is_still_logged() -> None:
    class Slotted(Exception):
        __slots__ = ()

        def __setattr__(self, name: str, value: Any) -> None:
            raise AttributeError(name)

    async def broken(scope: Any, receive: Any, send: Any) -> None:
        raise Slotted("no attributes")

    with capture_logs() as logs, pytest.raises(Slotted):
        call(RequestContextMiddleware(broken), http_scope())
    assert [entry["event"] for entry in logs] == ["http.unhandled_error", "http.request"]


def test_cancelled_request_is_499_without_an_error() -> None:
    started = asyncio.Event()

    async def waits(scope: Any, receive: Any, send: Any) -> None:
        started.set()
        await asyncio.Event().wait()

    async def main() -> None:
        recorder = Recorder()
        task = asyncio.ensure_future(
            RequestContextMiddleware(waits)(http_scope(), recorder.receive, recorder.send)
        )
        await started.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    with capture_logs() as logs:
        asyncio.run(main())
    assert [(entry["event"], entry["status"]) for entry in logs] == [("http.request", 499)]


def test_cancelled_after_the_response_started_keeps_its_status() -> None:
    async def streams(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        raise asyncio.CancelledError

    with capture_logs() as logs, pytest.raises(asyncio.CancelledError):
        call(RequestContextMiddleware(streams), http_scope())
    assert [entry["status"] for entry in logs] == [200]


def test_application_that_never_responds_counts_500() -> None:
    async def silent(scope: Any, receive: Any, send: Any) -> None:
        return None

    with capture_logs() as logs:
        call(RequestContextMiddleware(silent), http_scope())
    assert logs[0]["status"] == 500


def test_lifespan_passes_straight_through() -> None:
    seen: list[Any] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        seen.append((scope["type"], get_context()))

    with capture_logs() as logs:
        call(RequestContextMiddleware(app), {"type": "lifespan"})
    assert seen == [("lifespan", {})]
    assert logs == []


def test_websocket_gets_an_id_and_an_echo_but_no_access_event(sink: InMemorySink) -> None:
    seen: list[dict[str, Any]] = []

    async def ws(scope: Any, receive: Any, send: Any) -> None:
        seen.append(get_context())
        await send({"type": "websocket.accept", "headers": [(b"x-app", b"1")]})
        await send({"type": "websocket.close", "code": 1000})

    scope = http_scope("/ws", x_request_id="ws-1")
    scope["type"] = "websocket"
    with capture_logs() as logs:
        recorder = call(RequestContextMiddleware(ws), scope)
    assert seen == [{"request_id": "ws-1", "path": "/ws"}]
    assert recorder.sent[0]["headers"] == [(b"x-app", b"1"), (b"x-request-id", b"ws-1")]
    assert recorder.sent[1] == {"type": "websocket.close", "code": 1000}
    assert logs == []
    assert sink.measurements == []
    assert get_context() == {}


def test_concurrent_requests_keep_their_own_ids() -> None:
    gate = asyncio.Event()
    seen: dict[str, str] = {}

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await gate.wait()  # every request is in flight at once
        seen[scope["path"]] = get_context()["request_id"]
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    async def main() -> None:
        wrapped = RequestContextMiddleware(app)
        tasks = [
            asyncio.ensure_future(
                wrapped(
                    http_scope(f"/{n}", x_request_id=f"id-{n}"),
                    Recorder().receive,
                    Recorder().send,
                )
            )
            for n in range(20)
        ]
        await asyncio.sleep(0)
        gate.set()
        await asyncio.gather(*tasks)

    with capture_logs():
        asyncio.run(main())
    assert seen == {f"/{n}": f"id-{n}" for n in range(20)}


# --------------------------------------------------------------------------------------
# WSGI


def wsgi_ok(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    get_logger("app.wsgi").info("wsgi.handler", seen=get_context().get("request_id"))
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"ok"]


def wsgi_environ(path: str = "/users/42", method: str = "GET", **headers: str) -> dict[str, Any]:
    environ: dict[str, Any] = {
        "REQUEST_METHOD": method,
        "SCRIPT_NAME": "",
        "PATH_INFO": path,
        "wsgi.input": io.BytesIO(),
    }
    environ.update({f"HTTP_{name.upper()}": value for name, value in headers.items()})
    return environ


class StartResponse:
    def __init__(self) -> None:
        self.calls: list[tuple[str, list[tuple[str, str]], Any]] = []

    def __call__(self, status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
        self.calls.append((status, headers, exc_info))
        return lambda data: None


def run_wsgi(app: Any, environ: dict[str, Any]) -> tuple[bytes, StartResponse]:
    start_response = StartResponse()
    result = app(environ, start_response)
    try:
        body = b"".join(result)
    finally:
        result.close()
    return body, start_response


def test_wsgi_binds_echoes_and_reports(
    sink: InMemorySink, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = FakeClock()
    monkeypatch.setattr(middleware_module, "_perf_counter", clock)

    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        clock.advance(0.5)
        environ[ROUTE_KEY] = "/users/<id>"
        return wsgi_ok(environ, start_response)

    wrapped = WSGIRequestContextMiddleware(app)
    with capture_logs() as logs:
        body, start_response = run_wsgi(wrapped, wsgi_environ(x_request_id="w-1"))
    assert body == b"ok"
    assert start_response.calls[0][1] == [("Content-Type", "text/plain"), ("X-Request-ID", "w-1")]
    assert [entry["event"] for entry in logs] == ["wsgi.handler", "http.request"]
    assert logs[0]["seen"] == "w-1"
    assert {k: logs[1][k] for k in ("request_id", "route", "status", "duration", "path")} == {
        "request_id": "w-1",
        "route": "/users/<id>",
        "status": 200,
        "duration": 0.5,
        "path": "/users/42",
    }
    assert sink.select("http.request")[0].tags == {
        "method": "GET",
        "route": "/users/<id>",
        "status": "200",
    }
    assert get_context() == {}
    assert "X-Request-ID" in repr(wrapped)
    assert wrapped.header == "X-Request-ID"


def test_wsgi_context_lasts_while_the_body_streams_and_ends_at_close() -> None:
    seen: list[Any] = []

    def streaming(environ: dict[str, Any], start_response: Any) -> Iterator[bytes]:
        start_response("200 OK", [])
        for n in range(3):
            seen.append(get_context().get("request_id"))
            yield str(n).encode()

    wrapped = WSGIRequestContextMiddleware(streaming, generate_id=lambda: "stream-1")
    with capture_logs() as logs:
        result = wrapped(wsgi_environ(), StartResponse())
        assert get_context()["request_id"] == "stream-1"  # bound until close()
        assert b"".join(result) == b"012"
        assert logs == []  # the access event waits for close()
        result.close()  # type: ignore[attr-defined]
        result.close()  # type: ignore[attr-defined]  # a second close does nothing
    assert seen == ["stream-1"] * 3
    assert [entry["event"] for entry in logs] == ["http.request"]
    assert get_context() == {}


def test_wsgi_closes_the_application_iterable() -> None:
    closed: list[bool] = []

    class Body:
        def __iter__(self) -> Iterator[bytes]:
            return iter([b"a", b"b"])

        def close(self) -> None:
            closed.append(get_context().get("request_id") == "c-1")

    def app(environ: dict[str, Any], start_response: Any) -> Body:
        start_response("204 No Content", [])
        return Body()

    with capture_logs():
        body, _ = run_wsgi(WSGIRequestContextMiddleware(app), wsgi_environ(x_request_id="c-1"))
    assert body == b"ab"
    assert closed == [True]


def test_wsgi_exception_in_the_call_is_logged_counted_and_reraised(sink: InMemorySink) -> None:
    def broken(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        raise KeyError("missing")

    with capture_logs() as logs, pytest.raises(KeyError) as raised:
        WSGIRequestContextMiddleware(broken)(wsgi_environ(x_request_id="e-1"), StartResponse())
    assert getattr(raised.value, "__utils_logged__", False) is True
    assert [(entry["event"], entry["request_id"]) for entry in logs] == [
        ("http.unhandled_error", "e-1"),
        ("http.request", "e-1"),
    ]
    assert sink.select("http.request")[0].tags["status"] == "500"
    assert get_context() == {}


def test_wsgi_exception_while_streaming_is_logged_then_reported_at_close() -> None:
    def broken_stream(environ: dict[str, Any], start_response: Any) -> Iterator[bytes]:
        start_response("200 OK", [])
        yield b"first"
        raise OSError("disk gone")

    with capture_logs() as logs:
        result = WSGIRequestContextMiddleware(broken_stream)(wsgi_environ(), StartResponse())
        iterator = iter(result)
        assert next(iterator) == b"first"
        with pytest.raises(OSError, match="disk gone"):
            next(iterator)
        result.close()  # type: ignore[attr-defined]
    assert [entry["event"] for entry in logs] == ["http.unhandled_error", "http.request"]
    assert logs[1]["status"] == 500


def test_wsgi_base_exception_unbinds_without_an_error_event() -> None:
    def interrupted(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        raise KeyboardInterrupt

    with capture_logs() as logs, pytest.raises(KeyboardInterrupt):
        WSGIRequestContextMiddleware(interrupted)(wsgi_environ(), StartResponse())
    assert [entry["event"] for entry in logs] == ["http.request"]
    assert get_context() == {}


def test_wsgi_odd_inputs() -> None:
    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        start_response("xyz nonsense", [])
        return []

    environ = wsgi_environ(
        "/caf\u00c3\u00a9", method="BREW", x_request_id="bad id"
    )  # latin-1 of "café"
    environ["SCRIPT_NAME"] = "/mount"
    with capture_logs() as logs:
        run_wsgi(WSGIRequestContextMiddleware(app, generate_id=lambda: "fresh"), environ)
    [event] = logs
    assert event["path"] == "/mount/café"
    assert event["request_id"] == "fresh"
    assert event["method"] == "OTHER"
    assert event["status"] == 500  # a status line the middleware cannot read
    assert event["route"] == UNMATCHED_ROUTE


def test_wsgi_close_from_another_context_does_not_raise() -> None:
    import contextvars

    with capture_logs() as logs:
        result = WSGIRequestContextMiddleware(wsgi_ok)(wsgi_environ(), StartResponse())
        b"".join(result)
        contextvars.Context().run(result.close)  # type: ignore[attr-defined]
    assert logs[-1]["event"] == "http.request"


# --------------------------------------------------------------------------------------
# Real servers: the header crosses the wire, every line of a request carries the id


def json_lines(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stream.getvalue().splitlines() if line]


def test_fastapi_route_template_under_uvicorn(sink: InMemorySink) -> None:
    from fastapi import FastAPI

    api = FastAPI()

    @api.get("/items/{item_id}")
    async def item(item_id: int) -> dict[str, int]:
        return {"item_id": item_id}

    out = io.StringIO()
    configure_logging(format="json", stream=out)
    with serve_asgi(RequestContextMiddleware(api), access_log=False) as url:
        first = httpx.get(f"{url}/items/1", headers={"X-Request-ID": "fa-1"})
        second = httpx.get(f"{url}/items/2")
        missing = httpx.get(f"{url}/nowhere")
    assert first.json() == {"item_id": 1}
    assert first.headers["x-request-id"] == "fa-1"
    assert is_valid_request_id(second.headers["x-request-id"])
    assert missing.status_code == 404
    routes = [(m.tags["route"], m.tags["status"]) for m in sink.select("http.request")]
    assert routes == [
        ("/items/{item_id}", "200"),
        ("/items/{item_id}", "200"),
        (UNMATCHED_ROUTE, "404"),
    ]


def test_flask_under_a_real_wsgi_server_every_line_carries_the_id() -> None:
    from flask import Flask, request

    flask_app = Flask("demo")

    @flask_app.before_request
    def expose_route() -> None:
        if request.url_rule is not None:
            request.environ[ROUTE_KEY] = request.url_rule.rule

    @flask_app.get("/orders/<int:order_id>")
    def order(order_id: int) -> str:
        get_logger("app.orders").info("order.read", order_id=order_id)
        logging.getLogger("thirdparty.client").warning("slow upstream")
        return "found"

    out = io.StringIO()
    configure_logging(format="json", stream=out)
    with serve_wsgi(WSGIRequestContextMiddleware(flask_app.wsgi_app)) as url:
        response = httpx.get(f"{url}/orders/7", headers={"X-Request-ID": "fl-7"})
    assert response.text == "found"
    assert response.headers["x-request-id"] == "fl-7"
    lines = [line for line in json_lines(out) if line.get("path") == "/orders/7"]
    assert [line["event"] for line in lines] == ["order.read", "slow upstream", "http.request"]
    assert {line["request_id"] for line in lines} == {"fl-7"}
    assert lines[-1]["route"] == "/orders/<int:order_id>"


def test_middleware_and_integrations_import_no_framework() -> None:
    code = (
        "import sys, utils.core.middleware, utils.core.log_integrations; "
        "print([m for m in ('starlette', 'fastapi', 'uvicorn', 'django', 'flask', 'httpx', "
        "'opentelemetry') if m in sys.modules])"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "[]"
