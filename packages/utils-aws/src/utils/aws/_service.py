"""The shell every service helper calls AWS through (private): translate, report, evict.

One place decides what a failed call becomes: the botocore error is translated (with
``retried`` = whether this client's botocore retries already spent the budget), an
expired-token answer evicts the cached clients, an unavailable AWS is reported once per
outage (``aws.unavailable`` / ``aws.recovered``), and every failure is logged and counted as
``aws.error``. Every call is timed as ``aws.call`` (a metric, never logged).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any, ClassVar

from utils.aws._outages import outage_of, outages
from utils.aws.clients import OVERRIDES, botocore_retries, client, evict
from utils.aws.errors import AWSUnavailableError
from utils.aws.translation import EXPIRED_TOKEN_CODES, error_code, translate
from utils.core import ConflictError, NotFoundError, UtilsError, ValidationError
from utils.core.report import Event

__all__ = ["AWS_CALL", "AWS_ERROR", "Service", "failure"]

AWS_CALL = Event(
    "aws.call",
    logger="utils.aws",
    level=None,
    tags=("service", "operation", "outcome"),
    metric="observe",
)
AWS_ERROR = Event(
    "aws.error", logger="utils.aws", level="warning", tags=("service", "operation", "code")
)
#: The same event at debug level, for answers that are part of normal control flow (a
#: missing key behind ``exists()``, a failed condition): counted the same, logged quietly.
AWS_ERROR_EXPECTED = Event(
    "aws.error", logger="utils.aws", level="debug", tags=("service", "operation", "code")
)

_AWS_MODULES = ("botocore", "boto3", "s3transfer", "urllib3", "utils.")


def _from_aws(exc: BaseException) -> bool:
    """Whether ``exc`` comes from the AWS stack (or is already ours), not from the caller."""
    return type(exc).__module__.startswith(_AWS_MODULES)


def failure(built: Any, service: str, operation: str, exc: BaseException) -> UtilsError:
    """Translate ``exc`` raised by ``built`` and report it; the caller raises the result."""
    error = translate(exc, retried=botocore_retries(built))
    code = error_code(exc) or str(error.details.get("code") or type(exc).__name__)
    if code in EXPIRED_TOKEN_CODES:
        evict(built)
    if isinstance(error, AWSUnavailableError):
        outage_of(service).failed(exc, operation=operation)
    event = AWS_ERROR_EXPECTED if isinstance(error, NotFoundError | ConflictError) else AWS_ERROR
    event.emit(
        service=service,
        operation=operation,
        code=code,
        error=type(error).__name__,
        retryable=error.retryable,
    )
    return error


class Service:
    """Base of the helpers: holds the client options and calls AWS through :func:`failure`."""

    service: ClassVar[str]

    def __init__(self, *, client: Any = None, **overrides: Any) -> None:
        unknown = set(overrides) - OVERRIDES
        if unknown:
            raise ValidationError(
                f"{type(self).__name__}() got unknown option(s) {sorted(unknown)}; "
                f"use client= or {sorted(OVERRIDES)}"
            )
        if client is not None and overrides:
            raise ValidationError(
                f"{type(self).__name__}(): pass either client= or client options, not both"
            )
        self._explicit = client
        self._overrides = overrides

    def client(self) -> Any:
        """The boto3 client used for the next call (deadline-capped under a deadline)."""
        if self._explicit is not None:
            return self._explicit
        return client(self.service, **self._overrides)

    def _call(self, operation: str, /, **params: Any) -> Any:
        return self._invoke(self.client(), operation, params)

    def _invoke(self, built: Any, operation: str, params: dict[str, Any]) -> Any:
        started = time.perf_counter()
        try:
            result = getattr(built, operation)(**params)
        except Exception as exc:
            if not _from_aws(exc):
                raise  # the caller's own error (a progress callback, a bad argument type)
            AWS_CALL.emit(
                value=time.perf_counter() - started,
                service=self.service,
                operation=operation,
                outcome="error",
            )
            raise failure(built, self.service, operation, exc) from exc
        AWS_CALL.emit(
            value=time.perf_counter() - started,
            service=self.service,
            operation=operation,
            outcome="ok",
        )
        outage = outages.get(self.service)
        if outage is not None and outage.down:
            outage.succeeded(operation=operation)
        return result

    def _pages(self, operation: str, /, **params: Any) -> Iterator[dict[str, Any]]:
        built = self.client()
        pages = iter(built.get_paginator(operation).paginate(**params))
        while True:
            try:
                page = next(pages)
            except StopIteration:
                return
            except Exception as exc:
                raise failure(built, self.service, operation, exc) from exc
            yield page
