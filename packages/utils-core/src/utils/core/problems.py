"""Errors as HTTP answers: RFC 9457 problem details, by meaning class, without leaks.

One mapping turns any exception into a status code, a ``application/problem+json`` body and
its headers, so every service built on the family answers alike. Nothing here imports a web
framework: :func:`problem_response` gives ``(status, headers, body)`` for any of them, and
the guide shows the handlers for FastAPI / Starlette, Django and Flask.

**Status.** The nearest meaning class in the exception's MRO decides (so a class inheriting
``NotFoundError`` before ``TransientError`` is a 404); an error *from a dependency* — one
whose :attr:`~utils.core.UtilsError.from_dependency` is true: one with a ``__cause__``,
which is how every family package raises a driver's failure, or an upstream HTTP answer
(``utils.resilience.raise_for_status``'s errors) — changes two rows, because then it is the
server's problem, not the client's:

=============================  ======  ==============================================
meaning class                  status  from a dependency
=============================  ======  ==============================================
``ThrottledError``             429     503: a dependency throttles *us*, or the
                                       limiter's storage is down
``UnavailableError``           503     503 (circuit open, bulkhead full, pool, ...)
``OperationTimeoutError``      504     504
``NotFoundError``              404     404
``ConflictError``              409     409 (a unique key the client sent)
``PermissionDeniedError``      403     500: *our* credentials lack a right
``ValidationError``            422     422 (a constraint the client's data broke)
``ConfigError``                500     500: a misconfigured server is a server bug
``TransientError`` (other)     503     503 (serialization failure, deadlock)
any other ``UtilsError``       500     500
any other exception            500     500
=============================  ======  ==============================================

**Safety.** The body never shows what the server knows but the client must not: secrets,
URLs with credentials, driver messages, table or host names. The rule, precisely:

- ``detail`` is the exception's message only for a 4xx status, a :class:`UtilsError` not
  from a dependency (no ``__cause__``, not an upstream HTTP answer) — a message the
  application (or a family helper judging the caller's input) wrote for this very
  situation. Even then, credentials in URLs, the query string of every
  URL, ``Authorization`` values, AWS keys and ``name=value`` pairs whose name looks secret
  are masked, and it is cut at 1000 characters.
- Every other case — 5xx, an error from a dependency (its message quotes the driver or the
  upstream URL), a foreign exception — gets a fixed sentence for its status.
- ``details`` are never in the body (they are for logs); ``code`` is shown when it is a short
  identifier, else the class's default code; ``instance`` loses its query string and
  fragment.

A handler may give its own ``detail=`` (masked the same way) where it knows better, e.g.
"this e-mail address is already registered" for a ``UniqueViolationError``.

**Retry-After.** Sent (header and ``retry_after`` member) whenever the error carries a
``retry_after``: whole seconds, rounded *up* so that a client waiting that long is never
early (float noise below a nanosecond aside), at least 1 so that a refused client never
retries at once, at most ten years (``inf``, "never", included).

Example:
    >>> from utils.core import NotFoundError, ThrottledError
    >>> http_status_for(NotFoundError("no user 42"))
    404
    >>> problem_details(ThrottledError("slow down", retry_after=1.2))
    {'type': 'about:blank', 'title': 'Too Many Requests', 'status': 429, 'detail': 'slow down', 'code': 'throttled', 'retry_after': 2}
    >>> problem_details(RuntimeError("password=hunter2"))["detail"]
    'The server could not complete the request.'
"""

from __future__ import annotations

import json
import math
import re
from typing import Any, NamedTuple

from utils.core._redact import DEFAULT_SENSITIVE_KEY_PARTS, MASK, redact_text
from utils.core.errors import (
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
from utils.core.validate import MAX_SECONDS

__all__ = [
    "PROBLEM_CONTENT_TYPE",
    "ProblemResponse",
    "http_status_for",
    "problem_details",
    "problem_headers",
    "problem_response",
]

#: The media type of an RFC 9457 problem details body.
PROBLEM_CONTENT_TYPE = "application/problem+json"

# Meaning class -> status. Looked up along the exception's MRO, so the nearest meaning class
# wins, exactly as the class author ordered the bases.
_STATUS_BY_CLASS: dict[type[BaseException], int] = {
    ThrottledError: 429,
    UnavailableError: 503,
    OperationTimeoutError: 504,
    NotFoundError: 404,
    ConflictError: 409,
    PermissionDeniedError: 403,
    ValidationError: 422,
    ConfigError: 500,
    TransientError: 503,
}
# Status of an error translated from a dependency (it has a __cause__), where that differs:
# being throttled by AWS, or a rate limiter whose storage is down, is not the client's
# excess (503, not 429); a permission the server's own role lacks is not the client's
# (500, not 403).
_STATUS_WHEN_CAUSED = {429: 503, 403: 500}

# status -> (title, the fixed detail shown whenever the message may not be). The titles are
# the HTTP reason phrases, as RFC 9457 asks for type "about:blank".
_TEXTS: dict[int, tuple[str, str]] = {
    403: ("Forbidden", "You are not allowed to do this."),
    404: ("Not Found", "The requested resource was not found."),
    409: ("Conflict", "The request conflicts with the current state of the resource."),
    422: ("Unprocessable Content", "The request contains invalid data."),
    429: ("Too Many Requests", "Too many requests; retry later."),
    500: ("Internal Server Error", "The server could not complete the request."),
    503: ("Service Unavailable", "The service is temporarily unavailable; retry later."),
    504: ("Gateway Timeout", "The operation took too long to complete."),
}

_FOREIGN_CODE = "internal_error"
# A code shown to clients: a short identifier (what every family code is). Anything else
# might be free text, so the class's default code is shown instead.
_CODE = re.compile(r"[A-Za-z][A-Za-z0-9_.:\-]{0,63}")
_MAX_DETAIL = 1000
# Only this much of a message is examined (cut at a space): every scan below is linear, and
# a client that sends a megabyte which a ValidationError quotes gets nothing expensive.
_MAX_SCANNED = 4 * _MAX_DETAIL
_NOISE = 1e-9

# Words, each kept with the whitespace after it, so that a text is rebuilt exactly.
_WORDS = re.compile(r"\S+|\s+")
# ``name=`` / ``name:`` at the start of a word (the look-behind keeps the scan linear).
_NAME = re.compile(r"(?<![\w.\-])([\w.\-]+)[ \t]*[=:][ \t]*")
# What a value is: up to a space, a separator or a quote.
_VALUE = re.compile(r"[^\s&,;'\"]+")
# A name that holds a secret: the log redaction's key parts anywhere in it (the log
# patterns need a word boundary, these do not: ``x-amz-signature=``, ``dbpassword:``), or
# a name ending in a short word that is a secret by itself (``sig=``, ``oauth=``).
_SECRET_NAME_PART = re.compile(
    "|".join(
        re.escape(part)
        for part in (
            *DEFAULT_SENSITIVE_KEY_PARTS,
            "signature",
            "access_key",
            "accesskey",
            "session",
        )
    )
)
_SECRET_NAME_ENDS = ("sig", "key", "auth", "jwt")
# What follows a mask without a break belongs to what was masked: a token ending in "="
# padding swallows the name after it (``Bearer abc=password=x``), and its value follows.
_GLUED_TO_MASK = re.compile(r"\*\*\*[^\s&,;'\"@*]+")
# Authorization schemes: the word after one is a credential.
_AUTH_SCHEMES = ("bearer", "basic", "token", "digest", "negotiate", "aws4-hmac-sha256")
# A credential after an authorization scheme, even glued to the word before it.
_AUTH_SCHEME = re.compile(r"(bearer|basic|token)([ \t]+)[A-Za-z0-9._~+/\-]+=*", re.IGNORECASE)


def http_status_for(exc: BaseException) -> int:
    """The HTTP status code that answers ``exc`` (see the module docstring's table).

    Args:
        exc: Any exception.

    Returns:
        One of 403, 404, 409, 422, 429, 500, 503, 504.

    Raises:
        ValidationError: ``exc`` is not an exception.

    Example:
        >>> from utils.core import ConfigError, OperationTimeoutError, ThrottledError
        >>> http_status_for(ThrottledError("slow down")), http_status_for(ConfigError("x"))
        (429, 500)
        >>> http_status_for(OperationTimeoutError("deadline exceeded")), http_status_for(KeyError())
        (504, 500)
        >>> try:  # a dependency throttled the server: not the client's fault
        ...     raise ThrottledError("AWS: SlowDown") from RuntimeError("SlowDown")
        ... except ThrottledError as error:
        ...     http_status_for(error)
        503
    """
    if not isinstance(exc, BaseException):
        raise ValidationError(
            f"http_status_for() needs an exception, got {type(exc).__name__}; "
            "pass the exception your handler caught"
        )
    if not isinstance(exc, UtilsError):
        return 500
    for cls in type(exc).__mro__:
        status = _STATUS_BY_CLASS.get(cls)
        if status is not None:
            if _from_dependency(exc):
                return _STATUS_WHEN_CAUSED.get(status, status)
            return status
    return 500


def _from_dependency(exc: BaseException) -> bool:
    """Whether ``exc`` reports a dependency's failure (:attr:`UtilsError.from_dependency`)."""
    if isinstance(exc, UtilsError):
        return exc.from_dependency
    return exc.__cause__ is not None


def _retry_after(exc: BaseException) -> int | None:
    """Whole seconds to wait, rounded up and at least 1; None when unknown or unusable."""
    seconds = getattr(exc, "retry_after", None) if isinstance(exc, UtilsError) else None
    # The attribute is public and writable: anything but a number is ignored, NaN means
    # unknown, and the wait is capped at ten years (``inf``: "do not retry") so that the
    # header stays a short integer.
    if isinstance(seconds, bool) or not isinstance(seconds, int | float):
        return None
    if not seconds < MAX_SECONDS:
        return None if math.isnan(seconds) else int(MAX_SECONDS)
    # Sub-nanosecond float noise (2.0000000000000004 from a limiter's arithmetic) is not a
    # third second.
    return max(1, math.ceil(seconds - _NOISE))


def _secret_name(name: str) -> bool:
    lowered = name.lower()
    return lowered.endswith(_SECRET_NAME_ENDS) or _SECRET_NAME_PART.search(lowered) is not None


def _mask_words(text: str) -> str:
    """Mask the word after an authorization scheme, and the query string of every URL.

    A URL's query carries signatures, tokens and one-time codes under any parameter name.
    Word by word, so that a scheme glued to the word before it (``xbearer abc``) and a
    credential ending in a scheme word (``bearer abcbearer def``) are followed.
    """
    words = _WORDS.findall(text)
    after_scheme = False
    for index, word in enumerate(words):
        if word[0].isspace():
            continue
        if after_scheme:
            words[index] = MASK
        else:
            scheme_end = word.find("://")
            query = word.find("?", scheme_end) if scheme_end >= 0 else -1
            if query >= 0:
                words[index] = word[: query + 1] + MASK
        after_scheme = word.lower().endswith(_AUTH_SCHEMES)
    return "".join(words)


def _mask_named_secrets(text: str) -> str:
    parts: list[str] = []
    done = 0  # text[:done] is decided
    for match in _NAME.finditer(text):
        if match.start() < done or not _secret_name(match.group(1)):
            continue  # inside a value already masked, or an ordinary name
        parts += (text[done : match.end()], MASK)
        done = match.end()
        # The next word is masked too when this value is an authorization scheme
        # (``Authorization: Bearer abc``) or ends in "=" or ":", holding another name
        # (``sig=abcdb_password: x``).
        while (value := _VALUE.match(text, done)) is not None:
            done = value.end()
            if text[done - 1] not in "=:" and not value.group().lower().endswith(_AUTH_SCHEMES):
                break
            while done < len(text) and text[done] in " \t":
                done += 1
    return "".join(parts) + text[done:] if parts else text


def _mask(text: str) -> str | None:
    """``text`` with everything secret-looking masked and cut to ``_MAX_DETAIL`` characters.

    None when it cannot be shown safely: longer than ``_MAX_SCANNED`` without a space to
    cut at (a cut through a word might cut through a secret and hide it from the patterns).
    """
    if len(text) > _MAX_SCANNED:
        cut = max(text.rfind(space, 0, _MAX_SCANNED) for space in " \n\t")
        if cut <= 0:
            return None
        text = text[:cut]
    # Named secrets first, on the raw text: every other pattern masks a span that may
    # swallow the name of a value that follows in the next word (``...?a=1db_password: x``),
    # and only this pass follows such chains.
    if "=" in text or ":" in text:
        text = _mask_named_secrets(text)
    text = redact_text(_mask_words(text))
    if MASK in text:
        text = _GLUED_TO_MASK.sub(MASK, text)
    if len(text) > _MAX_DETAIL:
        text = text[: _MAX_DETAIL - 3] + "..."
    return text


def _detail(exc: BaseException, status: int) -> str:
    """The message if the safety rule lets it through (see the module docstring)."""
    if status < 500 and isinstance(exc, UtilsError) and not _from_dependency(exc):
        try:
            message = exc.message
        except Exception:  # a message object whose __str__ fails: show the fixed text
            message = ""
        if message:
            shown = _mask(message)
            if shown is not None:
                return shown
    return _TEXTS[status][1]


def _code(exc: BaseException) -> str:
    if not isinstance(exc, UtilsError):
        return _FOREIGN_CODE
    for code in (exc.code, type(exc).default_code):
        if isinstance(code, str) and _CODE.fullmatch(code):
            return code
    return UtilsError.default_code


def _instance(instance: object) -> str:
    # The request's path is what identifies the occurrence; its query string may carry a
    # token or a signature, and a full URL may carry credentials.
    text = str(instance)
    for mark in ("?", "#"):
        text = text.split(mark, 1)[0]
    return redact_text(text)


def problem_details(
    exc: BaseException,
    *,
    instance: str | None = None,
    type_base: str | None = None,
    detail: str | None = None,
) -> dict[str, Any]:
    """The RFC 9457 problem details object for ``exc``, safe to send to any client.

    Members: ``type``, ``title``, ``status``, ``detail``, ``code`` (the error's stable code),
    then ``instance`` and ``retry_after`` (whole seconds) when there is one. The module
    docstring states exactly what ``detail`` may show.

    Args:
        exc: Any exception (a foreign one answers 500 with a fixed text).
        instance: The URI reference of this occurrence, usually the request path; its query
            string and fragment are dropped.
        type_base: Makes ``type`` ``type_base + code`` (e.g. ``"https://errors.example.com/"``
            gives ``"https://errors.example.com/not_found"``) for APIs that document their
            problem types; by default ``type`` is ``"about:blank"`` and ``title`` the status
            phrase.
        detail: The handler's own sentence, used instead of the computed one (masked the
            same way).

    Returns:
        A new JSON-ready dict; add extension members to it freely.

    Raises:
        ValidationError: ``exc`` is not an exception, or ``type_base`` / ``detail`` are not
            strings.

    Example:
        >>> from utils.core import NotFoundError
        >>> problem_details(NotFoundError("no user 42"), instance="/users/42?token=abc")
        {'type': 'about:blank', 'title': 'Not Found', 'status': 404, 'detail': 'no user 42', 'code': 'not_found', 'instance': '/users/42'}
        >>> error = NotFoundError("NoSuchKey: s3://u:pw@bucket/k")
        >>> error.__cause__ = LookupError("NoSuchKey")  # as a translated driver error
        >>> problem_details(error, type_base="https://errors.example.com/")["detail"]
        'The requested resource was not found.'
        >>> problem_details(error, type_base="https://errors.example.com/")["type"]
        'https://errors.example.com/not_found'
    """
    status = http_status_for(exc)
    for what, value in (("type_base", type_base), ("detail", detail)):
        if value is not None and not isinstance(value, str):
            raise ValidationError(f"{what} must be a str or None, got {type(value).__name__}")
    code = _code(exc)
    body: dict[str, Any] = {
        "type": "about:blank" if type_base is None else type_base + code,
        "title": _TEXTS[status][0],
        "status": status,
        "detail": _detail(exc, status) if detail is None else _mask(detail) or _TEXTS[status][1],
        "code": code,
    }
    if instance is not None:
        body["instance"] = _instance(instance)
    retry_after = _retry_after(exc)
    if retry_after is not None:
        body["retry_after"] = retry_after
    return body


def problem_headers(exc: BaseException) -> dict[str, str]:
    """The response headers for ``exc``'s problem: ``Content-Type`` and ``Retry-After``.

    ``Retry-After`` is present when the error carries a ``retry_after`` (whole seconds,
    rounded up, at least 1). Use it with a framework's own JSON response and
    :func:`problem_details`; :func:`problem_response` gives both at once.

    Example:
        >>> from utils.core import UnavailableError
        >>> problem_headers(UnavailableError("redis is down", retry_after=0.2))
        {'Content-Type': 'application/problem+json', 'Retry-After': '1'}
        >>> problem_headers(KeyError("x"))
        {'Content-Type': 'application/problem+json'}
    """
    headers = {"Content-Type": PROBLEM_CONTENT_TYPE}
    retry_after = _retry_after(exc)
    if retry_after is not None:
        headers["Retry-After"] = str(retry_after)
    return headers


class ProblemResponse(NamedTuple):
    """A whole HTTP answer for an exception, for any framework (see :func:`problem_response`).

    Example:
        >>> from utils.core import ConflictError
        >>> status, headers, body = problem_response(ConflictError("user 'ann' exists"))
        >>> status, headers["Content-Type"], body[:24]
        (409, 'application/problem+json', b'{"type":"about:blank","t')
    """

    #: The HTTP status code.
    status: int
    #: ``Content-Type`` and, when known, ``Retry-After``.
    headers: dict[str, str]
    #: The problem details as compact UTF-8 JSON (pure ASCII: non-ASCII is escaped).
    body: bytes


def problem_response(
    exc: BaseException,
    *,
    instance: str | None = None,
    type_base: str | None = None,
    detail: str | None = None,
) -> ProblemResponse:
    """Status, headers and JSON body answering ``exc``; the arguments are :func:`problem_details`'s.

    Framework-free: a handler only copies the three parts into its own response type (the
    guide shows FastAPI / Starlette, Django and Flask).

    Example:
        >>> import json
        >>> from utils.core import ThrottledError
        >>> answer = problem_response(ThrottledError("slow down", retry_after=30))
        >>> answer.status, answer.headers["Retry-After"], json.loads(answer.body)["detail"]
        (429, '30', 'slow down')
    """
    body = problem_details(exc, instance=instance, type_base=type_base, detail=detail)
    headers = {"Content-Type": PROBLEM_CONTENT_TYPE}
    if "retry_after" in body:
        headers["Retry-After"] = str(body["retry_after"])
    return ProblemResponse(
        body["status"], headers, json.dumps(body, separators=(",", ":")).encode("ascii")
    )
