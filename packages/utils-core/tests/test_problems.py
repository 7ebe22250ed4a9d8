"""Tests of utils.core.problems: the status table, the safety rule, Retry-After, the body."""

from __future__ import annotations

import json
import math
import string
import subprocess
import sys
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from utils.core import (
    ConfigError,
    ConflictError,
    NotFoundError,
    OperationTimeoutError,
    PermissionDeniedError,
    ThrottledError,
    TransientError,
    UnavailableError,
    UtilsError,
    ValidationError,
)
from utils.core.problems import (
    PROBLEM_CONTENT_TYPE,
    ProblemResponse,
    http_status_for,
    problem_details,
    problem_headers,
    problem_response,
)
from utils.core.validate import MAX_SECONDS

# -- package-style errors, shaped as the siblings define theirs (origin first, then meaning) --


class DatabaseError(UtilsError):
    default_code = "database_error"


class UniqueViolationError(DatabaseError, ConflictError):
    default_code = "unique_violation"


class DatabasePermissionError(DatabaseError, PermissionDeniedError):
    default_code = "permission_denied"


class SerializationError(DatabaseError, TransientError):
    default_code = "serialization_failure"


class CommitUnknownError(DatabaseError):
    default_code = "commit_unknown"


class ResilienceError(UtilsError):
    default_code = "resilience_error"


class RateLimitExceeded(ResilienceError, ThrottledError):
    default_code = "rate_limited"


class CircuitOpenError(ResilienceError, UnavailableError):
    default_code = "circuit_open"


class AWSError(UtilsError):
    default_code = "aws_error"


class AWSThrottledError(AWSError, ThrottledError):
    default_code = "throttled"


class NotFoundButRetry(NotFoundError, TransientError):
    """Bases in this order: the nearest meaning class is NotFoundError."""


class RetryButNotFound(TransientError, NotFoundError):
    """Bases in this order: the nearest meaning class is TransientError."""


class DriverError(Exception):
    """A third-party exception, as a translated error's cause."""


def caused(error: UtilsError, cause: BaseException | None = None) -> UtilsError:
    """``error`` as raised ``from`` a driver exception (what every family translator does)."""
    try:
        raise error from (cause or DriverError("driver said: password=hunter2"))
    except UtilsError as raised:
        return raised


#: (error, status without a cause, status when translated from a dependency)
TABLE: list[tuple[UtilsError, int, int]] = [
    (ThrottledError("slow down"), 429, 503),
    (RateLimitExceeded("limit reached"), 429, 503),
    (AWSThrottledError("SlowDown"), 429, 503),
    (UnavailableError("down"), 503, 503),
    (CircuitOpenError("circuit 'db' is open"), 503, 503),
    (OperationTimeoutError("deadline exceeded"), 504, 504),
    (NotFoundError("no user 42"), 404, 404),
    (ConflictError("exists"), 409, 409),
    (UniqueViolationError("unique constraint 'users_email_key'"), 409, 409),
    (PermissionDeniedError("not yours"), 403, 500),
    (DatabasePermissionError("permission denied for table users"), 403, 500),
    (ValidationError("ttl must be positive"), 422, 422),
    (ConfigError("UTILS_REDIS_URL is not set"), 500, 500),
    (TransientError("connection reset"), 503, 503),
    (SerializationError("serialization failure"), 503, 503),
    (UtilsError("queue is full"), 500, 500),
    (CommitUnknownError("commit outcome unknown"), 500, 500),
    (NotFoundButRetry("gone for now"), 404, 404),
    (RetryButNotFound("gone for now"), 503, 503),
]
STATUSES = {403, 404, 409, 422, 429, 500, 503, 504}


@pytest.mark.parametrize(("error", "status", "status_caused"), TABLE)
def test_status_by_meaning_class(error: UtilsError, status: int, status_caused: int) -> None:
    assert http_status_for(error) == status
    translated = caused(type(error)(error.message))
    assert http_status_for(translated) == status_caused


@pytest.mark.parametrize(
    "error", [RuntimeError("boom"), KeyError("x"), TimeoutError(), KeyboardInterrupt()]
)
def test_foreign_exceptions_are_500_with_a_fixed_text(error: BaseException) -> None:
    body = problem_details(error)
    assert body == {
        "type": "about:blank",
        "title": "Internal Server Error",
        "status": 500,
        "detail": "The server could not complete the request.",
        "code": "internal_error",
    }


def test_not_an_exception_is_refused() -> None:
    with pytest.raises(ValidationError, match="needs an exception, got str"):
        http_status_for("boom")  # type: ignore[arg-type]


# -- the safety rule -------------------------------------------------------------------------


@pytest.mark.parametrize(("error", "status", "_"), TABLE)
def test_detail_shows_the_message_only_for_4xx_without_a_cause(
    error: UtilsError, status: int, _: int
) -> None:
    shown = problem_details(error)["detail"]
    if status < 500:
        assert shown == error.message
    else:
        assert shown != error.message
        assert error.message not in shown
    # Translated from a driver: always the fixed sentence of its status.
    translated = caused(type(error)(error.message))
    body = problem_details(translated)
    assert body["detail"] != error.message
    assert "hunter2" not in json.dumps(body)


def find_user_from_none() -> None:
    try:
        raise DriverError("x")
    except DriverError:
        raise NotFoundError("no user 42") from None


def find_user_in_except() -> None:
    users: dict[str, str] = {}
    try:
        users["ann"]
    except KeyError:
        raise NotFoundError("no such user")  # noqa: B904 - the implicit context is the point


class UpstreamAnswer(UtilsError):
    """An upstream HTTP answer, as utils.resilience's HTTPStatusError declares itself (no cause).

    The real class is proven in utils-resilience's test_ratelimit_headers.py.
    """

    def __init__(self, message: str, *, status: int) -> None:
        super().__init__(message)
        self.status = status

    @property
    def from_dependency(self) -> bool:
        return True


class UpstreamThrottled(UpstreamAnswer, ThrottledError):
    pass


class UpstreamNotFound(UpstreamAnswer, NotFoundError):
    pass


class UpstreamForbidden(UpstreamAnswer, PermissionDeniedError):
    pass


@pytest.mark.parametrize(
    ("error", "status"),
    [
        (UpstreamThrottled("429 from GET https://api.example/x", status=429), 503),
        (UpstreamForbidden("403 from GET https://api.example/x", status=403), 500),
        (UpstreamNotFound("404 from GET https://api.example/x", status=404), 404),
    ],
)
def test_an_upstream_http_answer_counts_as_from_a_dependency(
    error: UtilsError, status: int
) -> None:
    body = problem_details(error)
    assert body["status"] == status
    assert "api.example" not in body["detail"]


def test_raise_from_none_keeps_the_message() -> None:
    with pytest.raises(NotFoundError) as raised:
        find_user_from_none()
    assert problem_details(raised.value)["detail"] == "no user 42"


def test_an_implicit_context_does_not_hide_the_message() -> None:
    # `except KeyError: raise NotFoundError(...)`: the application wrote the message.
    with pytest.raises(NotFoundError) as raised:
        find_user_in_except()
    assert raised.value.__context__ is not None
    assert problem_details(raised.value)["detail"] == "no such user"


@pytest.mark.parametrize(
    ("message", "shown"),
    [
        (
            "cannot reach postgresql://app:hunter2@db/main",
            "cannot reach postgresql://app:***@db/main",
        ),
        (
            "fetch https://api.example.com/v1/x?signature=abc123&page=2 failed",
            "fetch https://api.example.com/v1/x?*** failed",
        ),
        ("sent Authorization: Bearer abc.def", "sent Authorization: ***"),
        ("sent mybearer abc.def", "sent mybearer ***"),
        ("bad x-amz-signature=deadbeef&x=1", "bad x-amz-signature=***&x=1"),
        ("dbpassword: hunter2 is wrong", "dbpassword: *** is wrong"),
        ("key AKIAIOSFODNN7EXAMPLE refused", "key *** refused"),
        ("sig=abc, session=xyz, oauth: q", "sig=***, session=***, oauth: ***"),
        (
            "email 'ann@example.com' is already registered",
            "email 'ann@example.com' is already registered",
        ),
        (
            "see https://example.com/docs/errors#limits",
            "see https://example.com/docs/errors#limits",
        ),
        ("cache key user:42, page=2", "cache key user:42, page=2"),
        ("header Authorization: Bearer", "header Authorization: ***"),  # nothing after it
    ],
)
def test_shown_messages_are_masked(message: str, shown: str) -> None:
    assert problem_details(ValidationError(message))["detail"] == shown


def test_long_messages_are_cut() -> None:
    detail = problem_details(ValidationError("word " * 500))["detail"]
    assert len(detail) == 1000
    assert detail.endswith("...")
    # A huge value the error quotes: only its start is examined, cut at a space.
    detail = problem_details(ValidationError("got " + "a " * 100_000))["detail"]
    assert len(detail) == 1000
    # Never cut through a word (it might be a secret the patterns would then miss).
    assert problem_details(ValidationError("got " + "a" * 10_000))["detail"] == "got"
    # One huge word cannot be cut safely: the fixed sentence.
    detail = problem_details(ValidationError("a" * 10_000))["detail"]
    assert detail == "The request contains invalid data."


def test_a_message_that_cannot_be_read_gives_the_fixed_text() -> None:
    class Unprintable:
        def __str__(self) -> str:
            raise RuntimeError("no")

    error = NotFoundError(Unprintable())  # type: ignore[arg-type]
    assert problem_details(error)["detail"] == "The requested resource was not found."
    assert problem_details(NotFoundError(""))["detail"] == "The requested resource was not found."


def test_details_never_reach_the_body() -> None:
    error = ConflictError("exists", details={"password": "hunter2", "table": "users"})
    text = json.dumps(problem_details(error))
    assert "hunter2" not in text
    assert "users" not in text


@pytest.mark.parametrize(
    ("code", "shown"),
    [
        ("email_taken", "email_taken"),
        ("billing.card-declined:v2", "billing.card-declined:v2"),
        ("has space", "conflict"),
        ("password=hunter2", "conflict"),
        ("x" * 65, "conflict"),
        ("", "conflict"),
    ],
)
def test_code_is_shown_only_when_it_is_an_identifier(code: str, shown: str) -> None:
    assert problem_details(ConflictError("x", code=code))["code"] == shown


def test_a_class_with_a_junk_default_code_falls_back_to_the_root_code() -> None:
    class Odd(NotFoundError):
        default_code = "not an identifier"

    assert problem_details(Odd("x", code="also junk"))["code"] == "utils_error"


def test_instance_loses_query_fragment_and_credentials() -> None:
    body = problem_details(NotFoundError("x"), instance="/users/42?token=abc#frag")
    assert body["instance"] == "/users/42"
    body = problem_details(NotFoundError("x"), instance="https://u:hunter2@api.example.com/a?b")
    assert body["instance"] == "https://u:***@api.example.com/a"

    class URL:  # a framework's URL object: its str() is used
        def __str__(self) -> str:
            return "/orders/7?signature=abc"

    assert problem_details(NotFoundError("x"), instance=URL())["instance"] == "/orders/7"  # type: ignore[arg-type]


def test_type_base_and_detail_override() -> None:
    body = problem_details(
        caused(UniqueViolationError("unique constraint 'users_email_key'")),
        type_base="https://errors.example.com/",
        detail="this e-mail address is already registered (token=abc)",
    )
    assert body["type"] == "https://errors.example.com/unique_violation"
    assert body["title"] == "Conflict"
    assert body["detail"] == "this e-mail address is already registered (token=***"
    # An override that cannot be shown safely falls back to the fixed sentence.
    assert problem_details(ConflictError("x"), detail="y" * 5000)["detail"] == (
        "The request conflicts with the current state of the resource."
    )


@pytest.mark.parametrize(("what", "value"), [("type_base", 1), ("detail", b"bytes")])
def test_bad_arguments_are_refused(what: str, value: Any) -> None:
    with pytest.raises(ValidationError, match=f"{what} must be a str or None"):
        problem_details(NotFoundError("x"), **{what: value})


# -- Retry-After -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("retry_after", "seconds"),
    [
        (1.2, 2),
        (2.0, 2),
        (2.0000000000000004, 2),  # float noise from a limiter's arithmetic
        (2.001, 3),
        (0.2, 1),
        (0.0, 1),  # a refused client never retries at once
        (math.inf, int(MAX_SECONDS)),  # "never", as a short integer
        (1e300, int(MAX_SECONDS)),
    ],
)
def test_retry_after_is_whole_seconds_rounded_up(retry_after: float, seconds: int) -> None:
    error = ThrottledError("slow down", retry_after=retry_after)
    assert problem_details(error)["retry_after"] == seconds
    assert problem_headers(error)["Retry-After"] == str(seconds)


@pytest.mark.parametrize("junk", [None, math.nan, "soon", True])
def test_retry_after_without_a_usable_number_is_absent(junk: Any) -> None:
    error = UnavailableError("down")
    error.retry_after = junk
    assert "retry_after" not in problem_details(error)
    assert problem_headers(error) == {"Content-Type": PROBLEM_CONTENT_TYPE}


@given(st.floats(min_value=0.0, max_value=MAX_SECONDS, exclude_max=True))
def test_retry_after_is_never_early_and_never_a_second_late(retry_after: float) -> None:
    seconds = problem_details(ThrottledError("x", retry_after=retry_after))["retry_after"]
    assert isinstance(seconds, int)
    assert seconds >= 1
    assert seconds >= retry_after - 1e-9  # never early (float noise aside)
    assert seconds == 1 or seconds - 1 < retry_after  # and the smallest such second


# -- the whole response ----------------------------------------------------------------------


def test_problem_response_is_status_headers_and_compact_json() -> None:
    error = RateLimitExceeded("rate limiter 'api' refused the request", retry_after=29.5)
    answer = problem_response(error, instance="/v1/search?q=x")
    assert isinstance(answer, ProblemResponse)
    status, headers, body = answer
    assert status == 429
    assert headers == {"Content-Type": "application/problem+json", "Retry-After": "30"}
    assert headers == problem_headers(error)
    assert json.loads(body) == problem_details(error, instance="/v1/search")
    assert body.startswith(b'{"type":"about:blank","title":"Too Many Requests","status":429,')


def test_body_is_ascii_json() -> None:
    body = problem_response(ValidationError("nom invalide: « Zoë »")).body
    body.decode("ascii")
    assert json.loads(body)["detail"] == "nom invalide: « Zoë »"


def test_importing_problems_imports_no_web_framework() -> None:
    code = (
        "import sys, utils.core, utils.core.problems\n"
        "loaded = [m for m in ('starlette', 'fastapi', 'django', 'flask', 'httpx', 'werkzeug')"
        " if m in sys.modules]\n"
        "assert not loaded, loaded\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


# -- property: nothing secret ever reaches the body ---------------------------------------------

SECRET_CHARS = string.ascii_uppercase + string.digits
FILLER_CHARS = string.ascii_lowercase + " .,-/:=?&'\"()"
secrets = st.text(alphabet=SECRET_CHARS, min_size=10, max_size=30)
filler = st.text(alphabet=FILLER_CHARS, max_size=20)
names = st.text(alphabet=string.ascii_lowercase, min_size=1, max_size=8)
#: How applications and drivers put a secret into an error message.
TEMPLATES = [
    "{scheme}://{name}:{secret}@db.internal:5432/main",
    "https://api.example.com/v1/{name}?{name}={secret}",
    "https://api.example.com/v1?page=2&signature={secret}",
    "password={secret}",
    "{name}password={secret}",
    "db_password: {secret}",
    "Password: {secret}",
    "api_key={secret}",
    "client_secret={secret}",
    "X-Amz-Signature={secret}",
    "Authorization: Bearer {secret}",
    "bearer {secret}",
    "token={secret}",
    "sig={secret}",
]
MEANING_CLASSES = [
    UtilsError,
    ConfigError,
    ValidationError,
    NotFoundError,
    ConflictError,
    PermissionDeniedError,
    OperationTimeoutError,
    TransientError,
    UnavailableError,
    ThrottledError,
    UniqueViolationError,
    DatabasePermissionError,
    RateLimitExceeded,
    CircuitOpenError,
    NotFoundButRetry,
    RetryButNotFound,
]


@st.composite
def leaky_errors(draw: st.DrawFn) -> tuple[UtilsError, str]:
    secret = draw(secrets)
    pieces = []
    for _ in range(draw(st.integers(1, 3))):
        template = draw(st.sampled_from(TEMPLATES))
        pieces.append(draw(filler))
        pieces.append(
            template.format(
                secret=secret, name=draw(names), scheme=draw(st.sampled_from(["redis", "https"]))
            )
        )
    pieces.append(draw(filler))
    message = draw(st.sampled_from([" ", ""])).join(pieces)
    cls = draw(st.sampled_from(MEANING_CLASSES))
    retry_after = draw(st.none() | st.floats(min_value=0, max_value=1e6))
    # A code is an identifier the developer chose, shown as is: never a secret.
    code = draw(
        (st.none() | st.from_regex(r"[a-z][a-z0-9_]{0,20}", fullmatch=True) | st.text()).filter(
            lambda code: code is None or secret not in code
        )
    )
    error = cls(message, code=code, details={"url": message}, retry_after=retry_after)
    if draw(st.booleans()):
        error = caused(error, DriverError(f"driver: {message}"))
    return error, secret


@given(leaky_errors(), st.none() | st.sampled_from(["/a?token=SECRET", "/b"]))
def test_no_secret_ever_reaches_the_body(
    case: tuple[UtilsError, str], instance: str | None
) -> None:
    error, secret = case
    status, headers, body = problem_response(error, instance=instance)
    assert secret.encode() not in body
    assert b"SECRET" not in body
    assert status in STATUSES
    details = json.loads(body)
    assert details["status"] == status == http_status_for(error)
    if error.retry_after is None:
        assert "retry_after" not in details
        assert "Retry-After" not in headers
    else:
        assert isinstance(details["retry_after"], int)
        assert details["retry_after"] >= 1
        assert headers["Retry-After"] == str(details["retry_after"])
    assert headers["Content-Type"] == PROBLEM_CONTENT_TYPE
