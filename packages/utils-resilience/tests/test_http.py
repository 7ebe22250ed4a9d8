"""Tests of utils.resilience.http: Retry-After, raise_for_status, the HTTP transient classifier.

Responses and exceptions are the libraries' own objects, built as the libraries build them
(``httpx.Response(..., request=...)``, ``requests.Response``, aiohttp's exception classes);
what needs a real connection (aiohttp responses, TLS failures, timeouts, resets) is in
test_http_upstream.py.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import email.utils
import pickle
import sys
from typing import Any

import aiohttp
import httpcore
import httpx
import multidict
import pytest
import requests
import urllib3.exceptions
import yarl
from hypothesis import given
from hypothesis import strategies as st

from utils.core import (
    ConflictError,
    NotFoundError,
    OperationTimeoutError,
    PermissionDeniedError,
    ThrottledError,
    TransientError,
    UnavailableError,
    UtilsError,
    ValidationError,
    is_transient,
)
from utils.core import transient as core_transient
from utils.core.validate import MAX_SECONDS
from utils.resilience import (
    CircuitBreaker,
    HTTPBadRequestError,
    HTTPClientError,
    HTTPConflictError,
    HTTPGatewayTimeoutError,
    HTTPNotFoundError,
    HTTPPermissionDeniedError,
    HTTPRequestTimeoutError,
    HTTPServerError,
    HTTPStatusError,
    HTTPThrottledError,
    HTTPUnavailableError,
    ResilienceError,
    counts_as_failure,
    parse_retry_after,
    raise_for_status,
    retry,
)
from utils.resilience import _http_classify as classify_module
from utils.resilience.http import RETRYABLE_STATUSES, _redacted, classify_http_error
from utils.resilience.testing import instant_retries

NOW = dt.datetime(2026, 3, 1, 12, 0, 0, tzinfo=dt.timezone.utc)
URL = "https://api.example/v1/prices?currency=EUR"


def httpx_response(
    status: int, *, url: str = URL, method: str = "GET", headers: dict[str, str] | None = None
) -> httpx.Response:
    return httpx.Response(status, headers=headers, request=httpx.Request(method, url))


def httpx_error(status: int, headers: dict[str, str] | None = None) -> httpx.HTTPStatusError:
    response = httpx_response(status, headers=headers)
    try:
        response.raise_for_status()
    except httpx.HTTPStatusError as error:
        return error
    raise AssertionError(f"httpx did not raise for {status}")


def requests_response(
    status: int | None,
    *,
    url: str = URL,
    method: str = "GET",
    headers: dict[str, str] | None = None,
) -> requests.Response:
    response = requests.Response()
    response.status_code = status  # type: ignore[assignment]
    response.url = url
    response.headers.update(headers or {})
    response.request = requests.Request(method, url).prepare()
    return response


def requests_error(status: int, headers: dict[str, str] | None = None) -> requests.HTTPError:
    try:
        requests_response(status, headers=headers).raise_for_status()
    except requests.HTTPError as error:
        return error
    raise AssertionError(f"requests did not raise for {status}")


def aiohttp_error(
    status: int, headers: dict[str, str] | None = None
) -> aiohttp.ClientResponseError:
    info = aiohttp.RequestInfo(
        url=yarl.URL(URL),
        method="GET",
        headers=multidict.CIMultiDictProxy(multidict.CIMultiDict()),
        real_url=yarl.URL(URL),
    )
    return aiohttp.ClientResponseError(
        info,
        (),
        status=status,
        message="",
        headers=multidict.CIMultiDictProxy(multidict.CIMultiDict(headers or {})),
    )


# ----------------------------------------------------------------------- parse_retry_after


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("120", 120.0),
        (" 7 ", 7.0),
        ("0", 0.0),
        ("+3", 3.0),
        ("1.5", 1.5),
        ("2.", 2.0),
        ("-3", 0.0),
        (b"15", 15.0),
        (bytearray(b"4"), 4.0),
        (9, 9.0),
        (2.5, 2.5),
        (-1, 0.0),
        (float("inf"), MAX_SECONDS),
        ("9" * 90, MAX_SECONDS),
        ("Sun, 01 Mar 2026 12:00:30 GMT", 30.0),
        ("Sunday, 01-Mar-26 12:01:00 GMT", 60.0),  # RFC 850, obsolete but allowed
        ("Sun Mar  1 12:00:10 2026", 10.0),  # asctime, no zone: GMT
        ("Sun, 01 Mar 2026 14:00:05 +0200", 5.0),
        ("Sun, 01 Mar 2026 12:00:05 -0000", 5.0),
        ("Sat, 28 Feb 2026 12:00:00 GMT", 0.0),  # in the past
        ("Fri, 31 Dec 9999 23:59:59 GMT", MAX_SECONDS),
    ],
)
def test_parse_retry_after_values(value: Any, expected: float) -> None:
    assert parse_retry_after(value, now=NOW) == expected


@pytest.mark.parametrize(
    "value",
    [
        None,
        True,
        "",
        "   ",
        "soon",
        "1e3",
        "inf",
        "nan",
        "0x10",
        "1,5",
        "٣",  # an Arabic-Indic digit: float() would accept it
        "1 2",
        "Sun, 99 Foo 2026 12:00:00 GMT",
        "Sun, 01 Mar 99999 12:00:00 GMT",
        "Sun, 01 Mar 2026 12:00:00 +9999",
        "Mon, 01 Jan 2026 12:00:00 GMT " + "x" * 100,
        float("nan"),
        object(),
    ],
)
def test_parse_retry_after_says_nothing_for_garbage(value: Any) -> None:
    assert parse_retry_after(value, now=NOW) is None


def test_parse_retry_after_now_forms() -> None:
    date = "Sun, 01 Mar 2026 12:01:00 GMT"
    assert parse_retry_after(date, now=NOW.timestamp()) == 60.0
    assert parse_retry_after(date, now=NOW.replace(tzinfo=None)) == 60.0  # naive = UTC
    in_a_minute = dt.datetime.now(dt.timezone.utc) + dt.timedelta(seconds=60)
    # No `now`: the system clock (whole seconds in the header, so within a second).
    seconds = parse_retry_after(email.utils.format_datetime(in_a_minute, usegmt=True))
    assert seconds is not None
    assert 58.0 <= seconds <= 60.0


@given(st.integers(min_value=0, max_value=10**30))
def test_parse_retry_after_delta_seconds(seconds: int) -> None:
    assert parse_retry_after(str(seconds)) == min(float(seconds), MAX_SECONDS)


@given(st.integers(min_value=-(10**30), max_value=-1))
def test_parse_retry_after_negative_is_zero(seconds: int) -> None:
    assert parse_retry_after(str(seconds)) == 0.0


@given(
    st.datetimes(
        min_value=dt.datetime(1970, 1, 1),
        max_value=dt.datetime(9999, 12, 31),
        timezones=st.just(dt.timezone.utc),
    ),
    st.datetimes(
        min_value=dt.datetime(1971, 1, 1),
        max_value=dt.datetime(2200, 1, 1),
        timezones=st.just(dt.timezone.utc),
    ),
)
def test_parse_retry_after_http_dates(when: dt.datetime, now: dt.datetime) -> None:
    when = when.replace(microsecond=0)
    header = email.utils.format_datetime(when, usegmt=True)
    expected = min(max(0.0, (when - now).total_seconds()), MAX_SECONDS)
    assert parse_retry_after(header, now=now) == expected


@given(st.one_of(st.text(), st.binary(), st.floats(), st.integers(), st.none()))
def test_parse_retry_after_never_raises(value: Any) -> None:
    seconds = parse_retry_after(value, now=NOW)
    assert seconds is None or 0.0 <= seconds <= MAX_SECONDS


# ------------------------------------------------------------------------ raise_for_status

#: status -> (class, meaning classes, retryable)
TABLE: list[tuple[int, type[HTTPStatusError], tuple[type[BaseException], ...], bool]] = [
    (400, HTTPBadRequestError, (ValidationError, HTTPClientError), False),
    (401, HTTPPermissionDeniedError, (PermissionDeniedError, HTTPClientError), False),
    (403, HTTPPermissionDeniedError, (PermissionDeniedError,), False),
    (404, HTTPNotFoundError, (NotFoundError, HTTPClientError), False),
    (405, HTTPClientError, (), False),
    (408, HTTPRequestTimeoutError, (TransientError, OperationTimeoutError), True),
    (409, HTTPConflictError, (ConflictError,), False),
    (410, HTTPNotFoundError, (NotFoundError,), False),
    (412, HTTPConflictError, (ConflictError,), False),
    (418, HTTPClientError, (), False),
    (422, HTTPBadRequestError, (ValidationError,), False),
    (425, HTTPClientError, (), True),
    (429, HTTPThrottledError, (ThrottledError, TransientError, HTTPClientError), True),
    (499, HTTPClientError, (), False),
    (500, HTTPServerError, (TransientError,), True),
    (501, HTTPServerError, (TransientError,), False),
    (502, HTTPUnavailableError, (UnavailableError, HTTPServerError), True),
    (503, HTTPUnavailableError, (UnavailableError,), True),
    (504, HTTPGatewayTimeoutError, (UnavailableError, OperationTimeoutError), True),
    (505, HTTPServerError, (), False),
    (599, HTTPServerError, (), False),
    (600, HTTPStatusError, (), False),
]


@pytest.mark.parametrize(("status", "cls", "meanings", "retryable"), TABLE)
@pytest.mark.parametrize("library", ["httpx", "requests"])
def test_raise_for_status_classes(
    library: str,
    status: int,
    cls: type[HTTPStatusError],
    meanings: tuple[type[BaseException], ...],
    retryable: bool,
) -> None:
    make = httpx_response if library == "httpx" else requests_response
    response = make(status, method="PUT")
    with pytest.raises(HTTPStatusError) as caught:
        raise_for_status(response)
    error = caught.value
    assert type(error) is cls
    assert isinstance(error, ResilienceError)
    assert isinstance(error, UtilsError)
    for meaning in meanings:
        assert isinstance(error, meaning)
    assert error.status == status
    assert error.retryable is retryable
    assert is_transient(error) is retryable
    assert error.response is response
    assert error.method == "PUT"
    assert error.url == URL
    assert error.details == {"status": status, "url": URL, "method": "PUT"}
    assert str(error).startswith(f"HTTP {status} ")
    assert str(error).endswith(f" from PUT {URL}")


@pytest.mark.parametrize("status", [100, 200, 201, 204, 301, 304, 399])
def test_raise_for_status_returns_the_response(status: int) -> None:
    for response in (httpx_response(status), requests_response(status)):
        assert raise_for_status(response) is response


def test_raise_for_status_message_and_reason() -> None:
    with pytest.raises(HTTPUnavailableError) as caught:
        raise_for_status(httpx_response(503, method="POST"))
    assert str(caught.value) == f"HTTP 503 Service Unavailable from POST {URL}"
    assert caught.value.reason == "Service Unavailable"
    # An unknown status has no standard phrase; the server's own text is never used.
    response = requests_response(599)
    response.reason = "Secret upstream detail"
    with pytest.raises(HTTPServerError) as unknown:
        raise_for_status(response)
    assert unknown.value.reason is None
    assert str(unknown.value) == f"HTTP 599 error from GET {URL}"


def test_raise_for_status_retry_after() -> None:
    with pytest.raises(ThrottledError) as caught:
        raise_for_status(httpx_response(429, headers={"Retry-After": "7"}))
    assert caught.value.retry_after == 7.0
    assert str(caught.value).endswith("(retry after 7s)")
    date = {"retry-after": "Sun, 01 Mar 2026 12:00:42 GMT"}
    with pytest.raises(UnavailableError) as by_date:
        raise_for_status(requests_response(503, headers=date), now=NOW)
    assert by_date.value.retry_after == 42.0
    # A Retry-After on an answer that is not worth retrying does not invite a retry.
    with pytest.raises(HTTPBadRequestError) as refused:
        raise_for_status(httpx_response(400, headers={"Retry-After": "7"}))
    assert refused.value.retry_after is None
    with pytest.raises(HTTPUnavailableError) as garbage:
        raise_for_status(httpx_response(503, headers={"Retry-After": "later"}))
    assert garbage.value.retry_after is None


class Urllib3LikeResponse:
    """A response with ``status`` and a plain dict of headers, no URL, no method."""

    def __init__(self, status: Any, headers: dict[str, str] | None = None) -> None:
        self.status = status
        self.headers = headers or {}


def test_raise_for_status_duck_typed() -> None:
    ok = Urllib3LikeResponse(200)
    assert raise_for_status(ok) is ok
    with pytest.raises(HTTPThrottledError) as caught:
        raise_for_status(Urllib3LikeResponse(429, {"retry-after": "3"}))
    assert caught.value.retry_after == 3.0
    assert caught.value.url is None
    assert caught.value.method is None
    assert str(caught.value) == "HTTP 429 Too Many Requests (retry after 3s)"
    assert caught.value.details == {"status": 429, "url": None}
    # An IntEnum status (http.HTTPStatus) counts as its integer.
    from http import HTTPStatus

    with pytest.raises(HTTPNotFoundError):
        raise_for_status(Urllib3LikeResponse(HTTPStatus.NOT_FOUND))
    assert raise_for_status(Urllib3LikeResponse(HTTPStatus.OK)).status == 200


def test_raise_for_status_without_request() -> None:
    # httpx raises RuntimeError for .url and .request when no request is attached.
    with pytest.raises(HTTPNotFoundError) as caught:
        raise_for_status(httpx.Response(404))
    assert caught.value.url is None
    assert caught.value.method is None
    assert str(caught.value) == "HTTP 404 Not Found"
    # requests: a URL but no request object, so no method.
    response = requests_response(404)
    response.request = None  # type: ignore[assignment]
    with pytest.raises(HTTPNotFoundError) as no_method:
        raise_for_status(response)
    assert str(no_method.value) == f"HTTP 404 Not Found from {URL}"


class BytesMethodResponse:
    status_code = 500
    url = URL
    method = b"GET"
    headers: dict[str, str] = {}  # noqa: RUF012 - read-only in the test


def test_raise_for_status_bytes_method() -> None:
    with pytest.raises(HTTPServerError) as caught:
        raise_for_status(BytesMethodResponse())
    assert caught.value.method == "GET"


@pytest.mark.parametrize(
    "response", [object(), requests_response(None), Urllib3LikeResponse(True)]
)
def test_raise_for_status_needs_a_status(response: Any) -> None:
    with pytest.raises(ValidationError, match="integer status_code or status attribute"):
        raise_for_status(response)


def test_response_is_reachable_but_never_shown_or_pickled() -> None:
    response = httpx_response(503, headers={"Retry-After": "2", "X-Secret": "hunter2"})
    with pytest.raises(HTTPUnavailableError) as caught:
        raise_for_status(response)
    error = caught.value
    assert error.response is response
    for text in (str(error), repr(error), str(error.details)):
        assert "hunter2" not in text
        assert "Response" not in text
    for protocol in range(pickle.HIGHEST_PROTOCOL + 1):
        copy = pickle.loads(pickle.dumps(error, protocol))
        assert type(copy) is HTTPUnavailableError
        assert copy.response is None
        assert (copy.status, copy.url, copy.method, copy.reason) == (503, URL, "GET", error.reason)
        assert (copy.retry_after, copy.retryable, copy.details) == (2.0, True, error.details)
        assert str(copy) == str(error)


def test_constructing_errors_directly() -> None:
    error = HTTPStatusError("teapot", status=418, details={"attempt": 2})
    assert error.details == {"status": 418, "url": None, "attempt": 2}
    assert error.retryable is False
    assert HTTPServerError("x", status=500, retryable=False).retryable is False
    assert HTTPThrottledError("x", status=429).code == "http_throttled"


# --------------------------------------------------------------------------- redaction

SECRET = st.text(alphabet="ABCDEFGHJKLMNPQRSTUVWXYZ", min_size=12, max_size=24).map(
    lambda text: "Zq" + text  # "Zq" is nowhere in the rest of the URL
)
SECRET_KEYS = [
    "api_key",
    "apikey",
    "API-Key",
    "key",
    "token",
    "access_token",
    "refresh_token",
    "password",
    "passwd",
    "client_secret",
    "signature",
    "sig",
    "X-Amz-Signature",
    "X-Amz-Credential",
    "X-Amz-Security-Token",
    "X-Goog-Signature",
    "code",
    "session_id",
    "auth",
]


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("https://u:pw@h/p?a=1", "https://u:***@h/p?a=1"),
        ("https://ghp_tokenvalue@h/p", "https://***@h/p"),
        ("https://u:p%40ss:w@h:8443/p", "https://u:***@h:8443/p"),
        ("https://h/p?api%5Fkey=abc&x=1&token", "https://h/p?api%5Fkey=***&x=1&token"),
        (
            "https://h/p?X-Amz-Signature=abc&X-Amz-Date=1",
            "https://h/p?X-Amz-Signature=***&X-Amz-Date=1",
        ),
        ("https://h/p?q=1#access_token=abc", "https://h/p?q=1"),
        ("https://h/p?monkey=1&keyword=2", "https://h/p?monkey=1&keyword=2"),
        ("http://[::1/p", "<unparseable URL>"),
        (None, None),
    ],
)
def test_redacted(url: str | None, expected: str | None) -> None:
    assert _redacted(url) == expected


def test_redact_url_of_library_url_objects() -> None:
    assert _redacted(yarl.URL("https://u:pw@h/p?token=t")) == "https://u:***@h/p?token=***"
    assert _redacted(httpx.URL("https://u:pw@h/p?token=t")) == "https://u:***@h/p?token=***"


@given(secret=SECRET, password=SECRET, key=st.sampled_from(SECRET_KEYS), data=st.data())
def test_secrets_never_reach_the_error(
    secret: str, password: str, key: str, data: st.DataObject
) -> None:
    from urllib.parse import urlencode

    query = urlencode([("q", "prices"), (key, secret), ("page", "2")])
    url = f"https://app:{password}@api.example/v1/prices?{query}#frag"
    status = data.draw(st.integers(min_value=400, max_value=599))
    library = data.draw(st.sampled_from(["httpx", "requests"]))
    make = httpx_response if library == "httpx" else requests_response
    with pytest.raises(HTTPStatusError) as caught:
        raise_for_status(make(status, url=url))
    error = caught.value
    for text in (str(error), repr(error), str(error.details), str(error.url), str(error.args)):
        assert secret not in text
        assert password not in text
    assert "q=prices" in str(error)
    assert "page=2" in str(error)


# -------------------------------------------------------------------------- classifier


@given(status=st.integers(min_value=400, max_value=699))
def test_raise_for_status_and_the_classifier_agree(status: int) -> None:
    with pytest.raises(HTTPStatusError) as caught:
        raise_for_status(httpx_response(status))
    error = caught.value
    retryable = status in RETRYABLE_STATUSES
    assert error.retryable is retryable
    assert isinstance(error, HTTPClientError) is (status < 500)
    assert isinstance(error, HTTPServerError) is (500 <= status < 600)
    assert is_transient(httpx_error(status)) is retryable
    assert is_transient(aiohttp_error(status)) is retryable
    if status < 600:  # requests raises for 4xx and 5xx only
        assert is_transient(requests_error(status)) is retryable


def test_the_classifier_is_an_installed_entry_point() -> None:
    assert classify_http_error in core_transient._entry_point_classifiers()


REQUEST = httpx.Request("GET", URL)


def ssl_cert_error() -> BaseException:
    import ssl

    return ssl.SSLCertVerificationError(1, "certificate verify failed")


def max_retries(reason: Exception | None) -> urllib3.exceptions.MaxRetryError:
    return urllib3.exceptions.MaxRetryError(None, URL, reason)  # type: ignore[arg-type]


def chained(outer: BaseException, cause: BaseException) -> BaseException:
    outer.__cause__ = cause
    return outer


TRANSIENT: list[BaseException] = [
    httpx.ConnectTimeout("x", request=REQUEST),
    httpx.ReadTimeout("x", request=REQUEST),
    httpx.WriteTimeout("x", request=REQUEST),
    httpx.PoolTimeout("x", request=REQUEST),
    httpx.ConnectError("x", request=REQUEST),
    httpx.ReadError("x", request=REQUEST),
    httpx.WriteError("x", request=REQUEST),
    httpx.CloseError("x", request=REQUEST),
    httpx.RemoteProtocolError("x", request=REQUEST),
    httpx.ProxyError("x", request=REQUEST),
    httpcore.ReadTimeout("x"),
    httpcore.ConnectError("x"),
    httpcore.RemoteProtocolError("x"),
    httpcore.ConnectionNotAvailable("x"),
    requests.ConnectionError("x"),
    requests.ConnectTimeout("x"),
    requests.ReadTimeout("x"),
    requests.exceptions.ProxyError("x"),
    requests.exceptions.SSLError("EOF occurred in violation of protocol"),
    requests.exceptions.ChunkedEncodingError("x"),
    urllib3.exceptions.ReadTimeoutError(None, URL, "x"),  # type: ignore[arg-type]
    urllib3.exceptions.NewConnectionError(None, "x"),  # type: ignore[arg-type]
    urllib3.exceptions.ProtocolError("x"),
    urllib3.exceptions.IncompleteRead(10, 5),
    urllib3.exceptions.EmptyPoolError(None, "x"),  # type: ignore[arg-type]
    urllib3.exceptions.MaxRetryError(None, URL, urllib3.exceptions.ProtocolError("x")),  # type: ignore[arg-type]
    aiohttp.ServerDisconnectedError(),
    aiohttp.ClientOSError(104, "reset"),
    aiohttp.ClientPayloadError("cut short"),
    aiohttp.ServerTimeoutError("x"),
    aiohttp.ClientConnectorError(None, ConnectionRefusedError(111, "refused")),  # type: ignore[arg-type]
    asyncio.TimeoutError(),  # aiohttp's total timeout: the stdlib rule
]
PERMANENT: list[BaseException] = [
    httpx.LocalProtocolError("x", request=REQUEST),
    httpx.UnsupportedProtocol("x", request=REQUEST),
    httpx.DecodingError("x", request=REQUEST),
    httpx.TooManyRedirects("x", request=REQUEST),
    httpx.InvalidURL("x"),
    httpx.StreamConsumed(),
    chained(
        httpx.ConnectError("x", request=REQUEST),
        chained(httpcore.ConnectError("y"), ssl_cert_error()),
    ),
    requests.exceptions.SSLError(max_retries(urllib3.exceptions.SSLError(ssl_cert_error()))),
    requests.exceptions.RetryError("x"),
    requests.exceptions.InvalidURL("x"),
    requests.exceptions.MissingSchema("x"),
    requests.exceptions.TooManyRedirects("x"),
    requests.exceptions.JSONDecodeError("x", "doc", 0),
    requests.HTTPError("no response attached"),
    max_retries(urllib3.exceptions.ResponseError("too many 500 error responses")),
    max_retries(None),
    urllib3.exceptions.ResponseNotChunked("x"),
    urllib3.exceptions.LocationParseError("x"),
    aiohttp.ServerFingerprintMismatch(b"a", b"b", "h", 443),
    aiohttp.InvalidURL("x"),
    aiohttp.ClientConnectorError(None, chained(OSError("x"), ssl_cert_error())),  # type: ignore[arg-type]
]


@pytest.mark.parametrize("error", TRANSIENT, ids=lambda e: type(e).__qualname__)
def test_transient_library_errors(error: BaseException) -> None:
    assert is_transient(error) is True
    assert counts_as_failure(error) is True


@pytest.mark.parametrize("error", PERMANENT, ids=lambda e: type(e).__qualname__)
def test_permanent_library_errors(error: BaseException) -> None:
    assert is_transient(error) is False


def test_no_opinion_on_other_errors() -> None:
    for error in (ValueError("x"), KeyError("x"), ConnectionResetError(), OSError("x")):
        assert classify_http_error(error) is None
    assert classify_http_error(requests.HTTPError("no response")) is None
    assert classify_http_error(urllib3.exceptions.MaxRetryError(None, URL, None)) is None  # type: ignore[arg-type]
    assert classify_http_error(httpx.InvalidURL("x")) is None


class MyStatusError(httpx.HTTPStatusError):
    """A subclass defined outside httpx: recognised through the MRO."""


class ModuleLessBase(Exception):
    pass


def test_subclasses_and_odd_classes() -> None:
    response = httpx_response(503)
    assert MyStatusError.__module__ != "httpx"
    assert classify_http_error(MyStatusError("x", request=REQUEST, response=response)) is True
    # A class whose __module__ is not a string (some C extensions, dynamic classes).
    odd = type("Odd", (ModuleLessBase,), {"__module__": None})
    assert classify_http_error(odd()) is None


def test_the_class_cache_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(classify_module, "_kind_by_class", {})
    monkeypatch.setattr(classify_module, "_MAX_CLASSES", 8)
    made = [type(f"E{i}", (ValueError,), {}) for i in range(20)]
    for cls in made:
        assert classify_http_error(cls()) is None
    assert len(classify_module._kind_by_class) <= 8
    assert classify_http_error(httpx.ReadTimeout("x", request=REQUEST)) is True


def test_certificate_search_is_bounded() -> None:
    # A long chain of connection errors without a certificate failure: transient, and the
    # search stops after a few links instead of walking for ever.
    error: BaseException = requests.ConnectionError("root")
    for _ in range(100):
        error = chained(requests.ConnectionError("link"), error)
    assert classify_http_error(error) is True
    # A chain that loops back on itself.
    first = requests.ConnectionError("a")
    second = chained(requests.ConnectionError("b"), first)
    first.__cause__ = second
    assert classify_http_error(first) is True


def test_classifier_rejects_status_errors_without_a_status() -> None:
    error = httpx.HTTPStatusError("x", request=REQUEST, response=httpx_response(503))
    error.response = None  # type: ignore[assignment]
    assert classify_http_error(error) is None


# ---------------------------------------------------------- raw errors, retry and breaker


def raising(errors: list[BaseException]) -> Any:
    def call() -> str:
        if errors:
            raise errors.pop(0)
        return "ok"

    return call


@pytest.mark.parametrize(
    "make", [httpx_error, requests_error, aiohttp_error], ids=["httpx", "requests", "aiohttp"]
)
def test_retry_honours_retry_after_of_raw_errors(make: Any) -> None:
    errors = [make(503, {"Retry-After": "7"}), make(429, {"Retry-After": "3"})]
    with instant_retries() as delays:
        assert retry(attempts=3, initial=0.01, jitter="none").call(raising(errors)) == "ok"
    assert delays == [7.0, 3.0]


def test_retry_ignores_retry_after_of_a_raw_error_when_it_is_shorter_or_absent() -> None:
    errors: list[BaseException] = [httpx_error(503, {"Retry-After": "0"}), httpx_error(502)]
    with instant_retries() as delays:
        assert retry(attempts=3, initial=0.5, jitter="none").call(raising(errors)) == "ok"
    assert delays == [0.5, 1.0]


def test_retry_gives_up_on_a_raw_retry_after_beyond_its_limit() -> None:
    errors: list[BaseException] = [httpx_error(503, {"Retry-After": "3600"})]
    with instant_retries() as delays, pytest.raises(httpx.HTTPStatusError) as caught:
        retry(attempts=3, max_retry_after=60).call(raising(errors))
    assert delays == []
    assert "(retry_after)" in getattr(caught.value, "__notes__", [""])[-1]


def test_retry_does_not_retry_raw_client_errors() -> None:
    errors: list[BaseException] = [httpx_error(404, {"Retry-After": "1"})]
    with instant_retries() as delays, pytest.raises(httpx.HTTPStatusError):
        retry(attempts=3).call(raising(errors))
    assert delays == []


def test_retry_after_of_non_http_errors() -> None:
    assert classify_module.retry_after_of(ValueError("x")) is None
    assert classify_module.retry_after_of(httpx_error(404, {"Retry-After": "3"})) is None
    assert classify_module.retry_after_of(httpx_error(503)) is None
    assert classify_module.retry_after_of(aiohttp_error(503, {"Retry-After": "4"})) == 4.0


class BrokenHeaders:
    def get(self, name: str) -> str:
        raise RuntimeError("broken headers object")


def test_header_lookup_survives_exotic_headers() -> None:
    response = Urllib3LikeResponse(503)
    response.headers = BrokenHeaders()  # type: ignore[assignment]
    with pytest.raises(HTTPUnavailableError) as caught:
        raise_for_status(response)
    assert caught.value.retry_after is None


def test_breaker_counts_raw_5xx_but_not_4xx() -> None:
    breaker = CircuitBreaker("http-unit", fail_max=2)
    for _ in range(3):
        with pytest.raises(httpx.HTTPStatusError):
            breaker.call(raising([httpx_error(404)]))
    assert breaker.state == "closed"
    for _ in range(2):
        with pytest.raises(httpx.HTTPStatusError):
            breaker.call(raising([httpx_error(503)]))
    assert breaker.state == "open"


def test_import_does_not_load_http_clients() -> None:
    import subprocess

    code = (
        "import sys, utils.resilience, utils.resilience.http\n"
        "from utils.core import is_transient\n"
        "assert is_transient(ConnectionResetError())\n"
        "assert not is_transient(ValueError())\n"
        "loaded = {'httpx', 'httpcore', 'requests', 'urllib3', 'aiohttp'} & set(sys.modules)\n"
        "assert not loaded, loaded\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
