"""The guide's exception-handler recipes (docs/guides/http-errors.md), run on real servers.

Each recipe is read from the guide and executed as written, so the documentation cannot
drift from what is tested: Starlette and FastAPI under uvicorn, Django and Flask under a
threaded WSGI server, all hit with httpx over loopback.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import httpx
import pytest

from utils.core import (
    ConflictError,
    NotFoundError,
    PermissionDeniedError,
    ThrottledError,
    UtilsError,
    ValidationError,
)
from utils.core.testing import serve_asgi, serve_wsgi

GUIDE = Path(__file__).resolve().parents[3] / "docs" / "guides" / "http-errors.md"
_RECIPE = re.compile(r"```\{code-block\} python\n:name: (recipe-[a-z]+)\n\n(.*?)```", re.DOTALL)


def recipes() -> dict[str, str]:
    return dict(_RECIPE.findall(GUIDE.read_text(encoding="utf-8")))


def run_recipe(*names: str) -> dict[str, Any]:
    """Execute the named recipes, in order, in one fresh namespace."""
    found = recipes()
    namespace: dict[str, Any] = {"__name__": "http_errors_recipe"}
    for name in names:
        exec(compile(found[name], f"{GUIDE}:{name}", "exec"), namespace)
    return namespace


class DriverError(Exception):
    """A driver's exception, as the cause of a translated error."""


def translated(error: UtilsError) -> UtilsError:
    try:
        raise error from DriverError("ERROR: duplicate key value (email)=(ann@example.com)")
    except UtilsError as raised:
        return raised


#: path -> the exception its view raises
FAILURES: dict[str, Callable[[], BaseException]] = {
    "/users/42": lambda: NotFoundError("no user 42"),
    "/signup": lambda: translated(ConflictError("unique constraint 'users_email_key' violated")),
    "/search": lambda: ValidationError("q must not be empty (token=abc123)"),
    "/busy": lambda: ThrottledError("slow down", retry_after=2.5),
    "/admin": lambda: translated(PermissionDeniedError("permission denied for table audit")),
    "/crash": lambda: RuntimeError("cannot connect to postgresql://app:hunter2@db/main"),
}


def fetch(base: str, paths: Iterable[str]) -> dict[str, httpx.Response]:
    with httpx.Client(base_url=base) as client:
        return {path: client.get(path + "?api_key=k3y") for path in paths}


def check_answers(base: str) -> None:
    check(fetch(base, FAILURES))


def check(answers: dict[str, httpx.Response]) -> None:
    """Every failure is answered by the recipe, as the mapping says and without leaks."""
    for path in FAILURES:
        answer = answers[path]
        assert answer.headers["content-type"] == "application/problem+json", path
        body = answer.json()
        assert body["status"] == answer.status_code
        assert body["instance"] == path  # the query string is not echoed
        text = answer.text
        for secret in ("hunter2", "abc123", "k3y", "ann@example.com", "users_email_key"):
            assert secret not in text, (path, text)
    assert answers["/users/42"].status_code == 404
    assert answers["/users/42"].json()["detail"] == "no user 42"
    assert answers["/signup"].status_code == 409
    assert answers["/signup"].json()["detail"] == (
        "The request conflicts with the current state of the resource."
    )
    assert answers["/search"].status_code == 422
    assert answers["/search"].json()["detail"] == "q must not be empty (token=***"
    assert answers["/busy"].status_code == 429
    assert answers["/busy"].headers["retry-after"] == "3"
    assert answers["/busy"].json()["retry_after"] == 3
    assert answers["/admin"].status_code == 500
    assert answers["/crash"].status_code == 500
    assert answers["/crash"].json() == {
        "type": "about:blank",
        "title": "Internal Server Error",
        "status": 500,
        "detail": "The server could not complete the request.",
        "code": "internal_error",
        "instance": "/crash",
    }


def test_the_guide_has_every_recipe() -> None:
    assert set(recipes()) == {
        "recipe-starlette",
        "recipe-fastapi",
        "recipe-django",
        "recipe-flask",
        "recipe-ratelimit",
    }


# -- Starlette and FastAPI ---------------------------------------------------------------------


def raising(make: Callable[[], BaseException]) -> Callable[..., Any]:
    async def endpoint(request: Any) -> Any:
        raise make()

    return endpoint


def raising_without_arguments(make: Callable[[], BaseException]) -> Callable[[], Any]:
    async def endpoint() -> None:  # FastAPI reads parameters as query fields: none here
        raise make()

    return endpoint


def test_starlette_recipe() -> None:
    from starlette.applications import Starlette
    from starlette.routing import Route

    recipe = run_recipe("recipe-starlette")
    app = Starlette(
        routes=[Route(path, raising(make)) for path, make in FAILURES.items()],
        exception_handlers=recipe["exception_handlers"],
    )
    with serve_asgi(app) as base:
        check_answers(base)


def test_fastapi_recipe_keeps_fastapis_own_errors() -> None:
    pytest.importorskip("fastapi", reason="the FastAPI recipe needs fastapi installed")
    from fastapi import HTTPException

    recipe = run_recipe("recipe-starlette", "recipe-fastapi")
    app = recipe["app"]
    for path, make in FAILURES.items():
        app.add_api_route(path, raising_without_arguments(make))

    async def item(item_id: int) -> dict[str, int]:
        raise HTTPException(status_code=418, detail="teapot")

    app.add_api_route("/items/{item_id}", item)

    with serve_asgi(app) as base:
        check_answers(base)
        with httpx.Client(base_url=base) as client:
            teapot = client.get("/items/1")
            invalid = client.get("/items/not-a-number")
    assert (teapot.status_code, teapot.json()) == (418, {"detail": "teapot"})
    assert invalid.status_code == 422  # FastAPI's request validation, unchanged
    assert invalid.headers["content-type"] == "application/json"


# -- Django --------------------------------------------------------------------------------------


# Django's settings are process-wide: the site runs in a child process of its own.
DJANGO_SITE = """
import importlib.util, json, sys

spec = importlib.util.spec_from_file_location("problems_frameworks", sys.argv[1])
tests = importlib.util.module_from_spec(spec)
spec.loader.exec_module(tests)
# The recipe as written, in __main__, so that MIDDLEWARE can name it.
exec(compile(tests.recipes()["recipe-django"], "recipe-django", "exec"), globals())

import django
from django.conf import settings
from django.core.exceptions import PermissionDenied
from django.http import Http404
from django.urls import path

def view(make):
    def failing(request):
        raise make()
    return failing

def not_found(request):
    raise Http404("no such page")

def forbidden(request):
    raise PermissionDenied

urlpatterns = [
    *(path(route.lstrip("/"), view(make)) for route, make in tests.FAILURES.items()),
    path("django-404", not_found),
    path("django-403", forbidden),
]
settings.configure(
    DEBUG=False,
    SECRET_KEY="not-a-secret-" * 4,
    ALLOWED_HOSTS=["127.0.0.1"],
    ROOT_URLCONF="__main__",
    MIDDLEWARE=["__main__.ProblemDetailsMiddleware"],
    LOGGING_CONFIG=None,
)
django.setup()
from django.core.wsgi import get_wsgi_application
from utils.core.testing import serve_wsgi

with serve_wsgi(get_wsgi_application()) as base:
    answers = tests.fetch(base, [*tests.FAILURES, "/django-404", "/django-403"])
print(json.dumps({route: [a.status_code, dict(a.headers), a.text] for route, a in answers.items()}))
"""


def test_django_recipe(tmp_path: Path) -> None:
    pytest.importorskip("django", reason="the Django recipe needs django installed")
    script = tmp_path / "site.py"
    script.write_text(DJANGO_SITE, encoding="utf-8")
    run = subprocess.run(
        [sys.executable, str(script), __file__],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert run.returncode == 0, run.stderr
    answers = {
        route: httpx.Response(status, headers=headers, text=text)
        for route, (status, headers, text) in json.loads(run.stdout).items()
    }
    check(answers)
    # Django's own exceptions are left to Django.
    assert answers["/django-404"].status_code == 404
    assert answers["/django-403"].status_code == 403
    assert "problem+json" not in answers["/django-404"].headers["content-type"]


# -- Flask ---------------------------------------------------------------------------------------


def test_flask_recipe() -> None:
    pytest.importorskip("flask", reason="the Flask recipe needs flask installed")
    recipe = run_recipe("recipe-flask")
    app = recipe["app"]
    for path, make in FAILURES.items():

        def failing(make: Callable[[], BaseException] = make) -> Any:
            raise make()

        app.add_url_rule(path, endpoint=path, view_func=failing)
    with serve_wsgi(app) as base:
        check_answers(base)
        with httpx.Client(base_url=base) as client:
            unknown = client.get("/no-such-page")
    assert unknown.status_code == 404  # Flask's own answer, unchanged
    assert "problem+json" not in unknown.headers["content-type"]
