"""uvicorn_log_config and django_logging_config: server and framework lines become ours.

The decisive tests run a real uvicorn (and a real Django under a real WSGI server, in a
subprocess: Django's settings are once per process) and read the JSON lines: every line of a
request — the application's, a foreign library's, the server's access line, the access event
— carries the request id.
"""

from __future__ import annotations

import io
import json
import logging
import logging.config
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from utils.core import (
    RequestContextMiddleware,
    bind_context,
    configure_logging,
    django_logging_config,
    get_logger,
    uvicorn_log_config,
)
from utils.core import log as log_module
from utils.core.log_integrations import _SkipLoggedExceptions
from utils.core.testing import serve_asgi

SERVER_LOGGERS = (
    "uvicorn",
    "uvicorn.error",
    "uvicorn.access",
    "uvicorn.asgi",
    "django",
    "django.server",
)


@pytest.fixture(autouse=True)
def _restore_server_loggers() -> Iterator[None]:
    """dictConfig changes the server loggers for the whole process: put them back."""
    saved = {
        name: (logger.level, logger.propagate, list(logger.handlers), list(logger.filters))
        for name in SERVER_LOGGERS
        for logger in [logging.getLogger(name)]
    }
    yield
    for name, (level, propagate, handlers, filters) in saved.items():
        logger = logging.getLogger(name)
        logger.setLevel(level)
        logger.propagate = propagate
        logger.handlers[:] = handlers
        logger.filters[:] = filters


def current_configuration() -> Any:
    return log_module._configuration


def json_lines(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


# --------------------------------------------------------------------------------------
# The dictionaries


def test_uvicorn_config_routes_every_uvicorn_logger_to_the_root() -> None:
    config = uvicorn_log_config("DEBUG", format="json")
    assert config["version"] == 1
    assert config["disable_existing_loggers"] is False
    assert "root" not in config  # handlers the application put on the root logger stay
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access", "uvicorn.asgi"):
        assert config["loggers"][name]["handlers"] == []
        assert config["loggers"][name]["propagate"] is True
        assert config["loggers"][name]["level"] == "DEBUG"
    assert config["loggers"]["uvicorn.error"]["filters"] == ["utils_skip_logged"]
    assert uvicorn_log_config(access_log=False)["loggers"]["uvicorn.access"]["level"] == "WARNING"
    json.dumps(config)  # plain data: can be written to a --log-config JSON file


def test_django_config_routes_django_loggers_to_the_root() -> None:
    config = django_logging_config(logging.WARNING)
    assert config["disable_existing_loggers"] is False
    assert "root" not in config
    assert config["loggers"]["django"] == {
        "handlers": [],
        "level": logging.WARNING,
        "propagate": True,
    }
    assert config["loggers"]["django.server"]["handlers"] == []


def test_applying_the_config_configures_logging_when_nobody_did(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert current_configuration() is None
    logging.config.dictConfig(uvicorn_log_config("INFO", format="json"))
    assert current_configuration() is not None
    logging.getLogger("uvicorn.error").info("Started server process [1]")
    get_logger("app").info("app.ready")
    lines = json_lines(capsys.readouterr().err)
    assert [(line["logger"], line["event"]) for line in lines] == [
        ("uvicorn.error", "Started server process [1]"),
        ("app", "app.ready"),
    ]


def test_applying_the_config_keeps_the_applications_configuration_and_root_handlers() -> None:
    out = io.StringIO()
    configure_logging(level="INFO", format="json", stream=out, redact_keys=["ssn"])
    configured = current_configuration()
    assert configured is not None
    foreign = logging.NullHandler()  # any handler the application added (Sentry, OTel...)
    logging.getLogger().addHandler(foreign)
    try:
        logging.config.dictConfig(uvicorn_log_config("WARNING", format="console"))
        assert current_configuration() is configured  # not reconfigured: options kept
        assert foreign in logging.getLogger().handlers
        assert configured.handler in logging.getLogger().handlers
        logging.getLogger("uvicorn.error").warning("port in use")
        logging.getLogger("uvicorn.error").info("below uvicorn's level")
        get_logger("app").info("app.event", ssn="123-45-6789")
    finally:
        logging.getLogger().removeHandler(foreign)
    lines = json_lines(out.getvalue())
    assert [line["event"] for line in lines] == ["port in use", "app.event"]
    assert lines[1]["ssn"] == "***"


def test_skip_filter_drops_only_exceptions_the_middleware_logged() -> None:
    skip = _SkipLoggedExceptions()

    def record(exc: BaseException | None) -> logging.LogRecord:
        exc_info = (type(exc), exc, None) if exc is not None else None
        return logging.LogRecord("uvicorn.error", logging.ERROR, "", 0, "boom", (), exc_info)

    logged = RuntimeError("seen")
    logged.__utils_logged__ = True  # type: ignore[attr-defined]
    assert skip.filter(record(logged)) is False
    assert skip.filter(record(RuntimeError("new"))) is True
    assert skip.filter(record(None)) is True


def test_uvicorn_accepts_the_config_with_use_colors() -> None:
    import uvicorn

    # uvicorn writes use_colors into the "default" and "access" formatters of a dict config.
    uvicorn.Config("app:app", log_config=uvicorn_log_config(), use_colors=False)


# --------------------------------------------------------------------------------------
# A real uvicorn and a Starlette app: every line of a request carries its id


def starlette_app() -> Any:
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import PlainTextResponse
    from starlette.routing import Route

    async def user(request: Request) -> PlainTextResponse:
        get_logger("app.users").info("user.read", user_id=request.path_params["user_id"])
        logging.getLogger("some.driver").warning("driver retried")
        return PlainTextResponse("user")

    async def boom(request: Request) -> PlainTextResponse:
        raise RuntimeError("handler failed, password=hunter2")

    return Starlette(routes=[Route("/users/{user_id:int}", user), Route("/boom", boom)])


def test_every_line_of_a_request_under_uvicorn_carries_the_request_id() -> None:
    out = io.StringIO()
    configure_logging(level="INFO", format="json", stream=out)
    app = RequestContextMiddleware(starlette_app())  # outermost: around ServerErrorMiddleware
    with serve_asgi(app, log_config=uvicorn_log_config()) as url:
        ok = httpx.get(f"{url}/users/42?token=abc", headers={"X-Request-ID": "req-42"})
        failed = httpx.get(f"{url}/boom", headers={"X-Request-ID": "req-boom"})
    assert ok.status_code == 200
    assert ok.headers["x-request-id"] == "req-42"
    assert failed.status_code == 500
    assert failed.headers["x-request-id"] == "req-boom"  # even Starlette's own 500 response

    lines = json_lines(out.getvalue())
    request_lines = [line for line in lines if line.get("path") == "/users/42"]
    assert [(line["logger"], line["event"].split(" ")[0]) for line in request_lines] == [
        ("app.users", "user.read"),
        ("some.driver", "driver"),
        ("uvicorn.access", "127.0.0.1:" + request_lines[2]["event"].split(":")[1].split(" ")[0]),
        ("utils.core.middleware", "http.request"),
    ]
    assert {line["request_id"] for line in request_lines} == {"req-42"}
    access = request_lines[2]["event"]
    assert '"GET /users/42?token=*** HTTP/1.1" 200' in access  # the query secret is redacted
    assert request_lines[3]["route"] == "/users/{user_id}"

    boom_lines = [line for line in lines if line.get("request_id") == "req-boom"]
    events = [line["event"] for line in boom_lines]
    # Starlette's 500 response goes out (uvicorn's access line) before the exception reaches
    # the middleware, which logs it and then reports the request.
    assert events[0].endswith('"GET /boom HTTP/1.1" 500')
    assert events[1:] == ["http.unhandled_error", "http.request"]
    assert "hunter2" not in out.getvalue()
    # Logged once: uvicorn's own "Exception in ASGI application" was filtered out.
    assert not any("Exception in ASGI application" in line["event"] for line in lines)
    assert sum("RuntimeError" in line.get("exception", "") for line in lines) == 1


def test_access_log_false_leaves_the_access_event_as_the_only_access_line() -> None:
    out = io.StringIO()
    configure_logging(level="INFO", format="json", stream=out)
    with serve_asgi(
        RequestContextMiddleware(starlette_app()), log_config=uvicorn_log_config(access_log=False)
    ) as url:
        httpx.get(f"{url}/users/1")
    loggers = [
        line["logger"] for line in json_lines(out.getvalue()) if line.get("path") == "/users/1"
    ]
    assert loggers == ["app.users", "some.driver", "utils.core.middleware"]


# --------------------------------------------------------------------------------------
# Django


def test_django_loggers_propagate_through_the_utils_handler() -> None:
    out = io.StringIO()
    configure_logging(level="INFO", format="json", stream=out)
    logging.getLogger("django").addHandler(logging.StreamHandler())  # as Django's default does
    logging.config.dictConfig(django_logging_config())  # what Django does with LOGGING
    assert logging.getLogger("django").handlers == []
    with bind_context(request_id="dj-1"):
        logging.getLogger("django.request").error("Internal Server Error: /boom/")
        logging.getLogger("django.server").info('"GET /boom/ HTTP/1.1" 500 145')
    lines = json_lines(out.getvalue())
    assert [(line["logger"], line["request_id"]) for line in lines] == [
        ("django.request", "dj-1"),
        ("django.server", "dj-1"),
    ]


DJANGO_SITE = textwrap.dedent(
    """
    import json, logging, sys
    import django
    import httpx
    from django.conf import settings
    from django.http import HttpResponse
    from django.urls import path
    from utils.core import WSGIRequestContextMiddleware, django_logging_config, get_logger
    from utils.core.middleware import ROUTE_KEY
    from utils.core.testing import serve_wsgi

    class RouteMiddleware:
        def __init__(self, get_response):
            self.get_response = get_response

        def __call__(self, request):
            return self.get_response(request)

        def process_view(self, request, view, args, kwargs):
            request.META[ROUTE_KEY] = request.resolver_match.route

    def user(request, user_id):
        get_logger("app.users").info("user.read", user_id=user_id)
        return HttpResponse("user")

    def boom(request):
        raise RuntimeError("view failed")

    urlpatterns = [path("users/<int:user_id>/", user), path("boom/", boom)]
    settings.configure(
        DEBUG=False,
        SECRET_KEY="not-a-secret-" * 4,
        ALLOWED_HOSTS=["*"],
        ROOT_URLCONF="__main__",
        MIDDLEWARE=["__main__.RouteMiddleware"],
        LOGGING=django_logging_config(format="json"),
    )
    django.setup()
    from django.core.wsgi import get_wsgi_application

    with serve_wsgi(WSGIRequestContextMiddleware(get_wsgi_application())) as url:
        ok = httpx.get(url + "/users/5/", headers={"X-Request-ID": "dj-ok"})
        failed = httpx.get(url + "/boom/", headers={"X-Request-ID": "dj-boom"})
    print(json.dumps([ok.status_code, ok.headers["x-request-id"], failed.status_code]))
    """
)


def test_django_site_under_a_real_wsgi_server(tmp_path: Any) -> None:
    script = tmp_path / "site.py"
    script.write_text(DJANGO_SITE)
    result = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == [200, "dj-ok", 500]
    lines = json_lines(result.stderr)
    ok = [line for line in lines if line.get("request_id") == "dj-ok"]
    assert [line["event"] for line in ok] == ["user.read", "http.request"]
    assert ok[-1]["route"] == "users/<int:user_id>/"
    boom = [line for line in lines if line.get("request_id") == "dj-boom"]
    assert [(line["logger"], line["event"]) for line in boom] == [
        ("django.request", "Internal Server Error: /boom/"),
        ("utils.core.middleware", "http.request"),
    ]
    assert "RuntimeError: view failed" in boom[0]["exception"]
    assert boom[1]["status"] == 500
    assert boom[1]["route"] == "boom/"
