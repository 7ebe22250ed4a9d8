"""Secrets and parameters: TTL cache, single flight, force_fetch, transforms, never logged."""

from __future__ import annotations

import base64
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from utils.aws import (
    AWSNotFoundError,
    Parameters,
    clear_parameter_cache,
    client,
    get_parameter,
    get_parameters_by_path,
    get_secret,
)
from utils.aws._ttlcache import TTLCache
from utils.aws.testing import mocked_aws
from utils.core import InMemorySink, Secret, ValidationError
from utils.core.testing import FakeClock


@pytest.fixture
def aws() -> Iterator[None]:
    with mocked_aws():
        sm, ssm = client("secretsmanager"), client("ssm")
        sm.create_secret(Name="db", SecretString='{"user": "app", "password": "hunter2"}')
        sm.create_secret(Name="blob", SecretBinary=b"\x00\x01")
        sm.create_secret(Name="b64", SecretString=base64.b64encode(b"raw").decode())
        ssm.put_parameter(Name="/app/mode", Value="fast", Type="String")
        ssm.put_parameter(Name="/app/db/password", Value="s3cret", Type="SecureString")
        ssm.put_parameter(Name="/app/list", Value="a,b", Type="StringList")
        ssm.put_parameter(Name="/app/config", Value='{"n": 1}', Type="String")
        yield


def test_secrets(aws: None) -> None:
    value = get_secret("db")
    assert isinstance(value, Secret)
    assert "hunter2" not in repr(value)
    assert get_secret("db", transform="json") == {"user": "app", "password": "hunter2"}
    assert get_secret("blob") == b"\x00\x01"
    assert get_secret("b64", transform="binary") == b"raw"
    with pytest.raises(AWSNotFoundError):
        get_secret("missing")


def test_binary_secret_as_json() -> None:
    with mocked_aws():
        client("secretsmanager").create_secret(Name="j", SecretBinary=b'{"a": 1}')
        assert get_secret("j", transform="json") == {"a": 1}


def test_parameters(aws: None) -> None:
    assert get_parameter("/app/mode") == "fast"
    secret = get_parameter("/app/db/password")
    assert isinstance(secret, Secret)
    assert secret.get_secret_value() == "s3cret"
    assert get_parameter("/app/db/password", decrypt=False) != "s3cret"
    assert get_parameter("/app/list") == "a,b"
    assert get_parameter("/app/config", transform="json") == {"n": 1}
    with pytest.raises(AWSNotFoundError):
        get_parameter("/nope")
    with pytest.raises(ValidationError):
        get_parameter("/app/mode", transform="yaml")  # type: ignore[arg-type]
    with pytest.raises(ValidationError):
        get_parameter("/app/other", max_age=-1)


def test_parameters_by_path(aws: None) -> None:
    values = get_parameters_by_path("/app")
    assert values["mode"] == "fast"
    assert isinstance(values["db/password"], Secret)
    assert set(values) == {"mode", "db/password", "list", "config"}
    assert set(get_parameters_by_path("/app/", recursive=False)) == {"mode", "list", "config"}
    values["mode"] = "changed"  # a copy: the cache is not touched
    assert get_parameters_by_path("/app")["mode"] == "fast"


def test_ttl_cache_and_force_fetch(aws: None, utils_metrics: InMemorySink) -> None:
    clock = FakeClock()
    store = Parameters(clock=clock)
    ssm = client("ssm")
    assert store.get_parameter("/app/mode", max_age=60) == "fast"
    ssm.put_parameter(Name="/app/mode", Value="slow", Type="String", Overwrite=True)
    assert store.get_parameter("/app/mode", max_age=60) == "fast"  # cached
    clock.advance(59)
    assert store.get_parameter("/app/mode", max_age=60) == "fast"
    clock.advance(2)
    assert store.get_parameter("/app/mode", max_age=60) == "slow"  # expired
    ssm.put_parameter(Name="/app/mode", Value="again", Type="String", Overwrite=True)
    assert store.get_parameter("/app/mode", force_fetch=True) == "again"
    assert store.get_parameter("/app/mode", max_age=0) == "again"
    assert store.get_secret("db", max_age=60) == store.get_secret("db", max_age=60)
    assert store.get_parameters_by_path("/app", max_age=60) == store.get_parameters_by_path("/app")
    hits = utils_metrics.total("aws.parameters.hit")
    misses = utils_metrics.total("aws.parameters.miss")
    assert (hits, misses) == (5, 5)
    store.clear()
    assert store.get_parameter("/app/mode", max_age=60) == "again"
    clear_parameter_cache()


def test_values_never_reach_logs(
    aws: None, utils_logs: list[dict[str, Any]], caplog: pytest.LogCaptureFixture
) -> None:
    import logging

    caplog.set_level(logging.DEBUG)
    get_secret("db", force_fetch=True)
    get_parameter("/app/db/password", force_fetch=True)
    get_parameters_by_path("/app", force_fetch=True)
    with pytest.raises(AWSNotFoundError) as info:
        get_secret("missing")
    assert "hunter2" not in str(info.value)
    text = repr(utils_logs) + "".join(r.getMessage() for r in caplog.records)
    assert "hunter2" not in text
    assert "s3cret" not in text


def test_single_flight() -> None:
    cache = TTLCache(FakeClock())
    started, release = threading.Event(), threading.Event()
    fetches: list[int] = []

    def fetch() -> str:
        fetches.append(1)
        started.set()
        release.wait(5)
        return "value"

    results: list[Any] = []

    def ask() -> None:
        found, value = cache.lookup("k")
        results.append(value if found else cache.fetch("k", 60, fetch))

    leader = threading.Thread(target=ask)
    leader.start()
    started.wait(5)
    followers = [threading.Thread(target=ask) for _ in range(8)]
    for thread in followers:
        thread.start()
    release.set()
    for thread in [leader, *followers]:
        thread.join()
    assert results == ["value"] * 9
    assert len(fetches) == 1


def test_single_flight_shares_errors() -> None:
    cache = TTLCache(FakeClock())
    started, release = threading.Event(), threading.Event()

    def fetch() -> str:
        started.set()
        release.wait(5)
        raise RuntimeError("boom")

    errors: list[BaseException] = []

    def ask() -> None:
        try:
            cache.fetch("k", 60, fetch)
        except RuntimeError as exc:
            errors.append(exc)

    leader = threading.Thread(target=ask)
    leader.start()
    started.wait(5)
    follower = threading.Thread(target=ask)
    follower.start()
    while (
        not cache._flights["k"].done.is_set()
        and follower.is_alive()
        and len(cache._flights)
        and not release.is_set()
    ):
        release.set()
    leader.join()
    follower.join()
    assert len(errors) == 2
    assert cache.lookup("k") == (False, None)


def test_a_forked_child_gets_a_fresh_lock_and_no_flights() -> None:
    cache = TTLCache(FakeClock())
    cache._flights["stuck"] = object()  # type: ignore[assignment]
    lock = cache._lock
    cache._after_fork()
    assert cache._lock is not lock
    assert cache._flights == {}
