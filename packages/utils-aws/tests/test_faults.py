"""Loopback stubs: one retry budget, deadlines, throttling with Retry-After, outages, eviction."""

from __future__ import annotations

import time
from typing import Any

import pytest
from tests._stubs import StubServer, s3_error

from utils.aws import (
    S3,
    AWSPermissionDeniedError,
    AWSThrottledError,
    AWSUnavailableError,
    client,
)
from utils.aws.clients import _state
from utils.core import OperationTimeoutError, deadline, is_transient


def always(answer: Any) -> Any:
    return lambda stub, path, body: answer


def test_botocore_spends_the_budget_and_retry_does_not_multiply() -> None:
    retry_mod = pytest.importorskip("utils.resilience")
    from utils.resilience.testing import instant_retries

    with StubServer(always(s3_error(503, "ServiceUnavailable"))) as stub:
        bucket = S3("bkt", endpoint_url=stub.url, max_attempts=3)

        def get() -> bytes:
            return bucket.get_bytes("k")

        fetch = retry_mod.retry(attempts=3)(get)

        with instant_retries(), pytest.raises(AWSUnavailableError) as info:
            fetch()
    assert stub.count == 3  # botocore's 3 attempts, not 3 x 3
    assert info.value.retryable is False
    assert info.value.details["attempts"] == 3
    assert info.value.details["status"] == 503


def test_without_botocore_retries_retry_owns_the_budget() -> None:
    retry_mod = pytest.importorskip("utils.resilience")
    from utils.resilience.testing import instant_retries

    with StubServer(always(s3_error(503, "ServiceUnavailable"))) as stub:
        bucket = S3("bkt", endpoint_url=stub.url, max_attempts=1)
        with instant_retries(), pytest.raises(AWSUnavailableError) as info:
            retry_mod.retry(attempts=4)(bucket.get_bytes)("k")
    assert stub.count == 4
    assert info.value.retryable is True


def test_a_retry_loop_driven_by_is_transient_never_multiplies_attempts() -> None:
    with StubServer(always(s3_error(503, "SlowDown"))) as stub:
        bucket = S3("bkt", endpoint_url=stub.url, max_attempts=2)
        tries = 0
        while True:
            tries += 1
            try:
                bucket.get_bytes("k")
            except AWSThrottledError as exc:
                if tries < 5 and is_transient(exc):
                    continue
                break
    assert (tries, stub.count) == (1, 2)


def test_throttling_carries_retry_after() -> None:
    answer = s3_error(503, "SlowDown", headers={"Retry-After": "7"})
    with StubServer(always(answer)) as stub, pytest.raises(AWSThrottledError) as info:
        S3("bkt", endpoint_url=stub.url, max_attempts=1).get_bytes("k")
    assert info.value.retry_after == 7.0
    assert info.value.details["code"] == "SlowDown"
    assert info.value.details["request_id"] == "REQ-SlowDown"


def test_a_hanging_endpoint_never_outlives_the_deadline() -> None:
    with StubServer(always(None)) as stub:
        bucket = S3("bkt", endpoint_url=stub.url)
        cold = time.monotonic()
        with pytest.raises(OperationTimeoutError), deadline(0.5):
            bucket.get_bytes("k")  # the first call under this budget builds its variant
        assert time.monotonic() - cold < 1.0
        started = time.monotonic()
        with pytest.raises(OperationTimeoutError), deadline(0.5):
            bucket.get_bytes("k")
        elapsed = time.monotonic() - started
    assert elapsed < 1.0  # the deadline bound the issue asks for
    assert stub.count >= 1


def test_no_attempt_starts_after_the_deadline() -> None:
    with StubServer(always(s3_error(503, "ServiceUnavailable"))) as stub:
        s3 = client("s3", endpoint_url=stub.url)
        # deadline(0) is already over when the call starts: no need to sleep past it.
        with deadline(0), pytest.raises(OperationTimeoutError):
            S3("bkt", client=s3).get_bytes("k")
    assert stub.count == 0


def test_a_deadline_stops_botocore_retries_that_would_not_fit() -> None:
    with StubServer(always(s3_error(503, "ServiceUnavailable"))) as stub:
        bucket = S3("bkt", endpoint_url=stub.url, max_attempts=5)
        with deadline(1.5), pytest.raises(AWSUnavailableError):
            bucket.get_bytes("k")
    assert stub.count == 1  # backoff (up to 1 s) + another attempt did not fit


def test_outage_is_reported_once_and_recovery_too(utils_logs: list[dict[str, Any]]) -> None:
    state = {"down": True}

    def answer(stub: StubServer, path: str, body: bytes) -> Any:
        if state["down"]:
            return s3_error(503, "ServiceUnavailable")
        return 200, {"Content-Type": "application/octet-stream"}, b"data"

    with StubServer(answer) as stub:
        bucket = S3("bkt", endpoint_url=stub.url, max_attempts=1)
        for _ in range(3):
            with pytest.raises(AWSUnavailableError):
                bucket.get_bytes("k")
        state["down"] = False
        assert bucket.get_bytes("k") == b"data"
    events = [e["event"] for e in utils_logs if e["event"].startswith("aws.")]
    assert events.count("aws.unavailable") == 1
    assert events.count("aws.recovered") == 1
    assert events.count("aws.error") == 3


def test_expired_token_evicts_the_cached_client() -> None:
    with StubServer(always(s3_error(400, "ExpiredToken"))) as stub:
        bucket = S3("bkt", endpoint_url=stub.url, max_attempts=1)
        first = bucket.client()
        with pytest.raises(AWSPermissionDeniedError):
            bucket.get_bytes("k")
        assert bucket.client() is not first
        assert not any(e.client is first for e in _state.entries.values())
