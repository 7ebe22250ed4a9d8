"""client()/resource(): caching, overrides, 64 threads, fork, eviction, settings, deadlines."""

from __future__ import annotations

import os
import sys
import threading
from types import SimpleNamespace
from typing import Any

import pytest
from botocore.config import Config

from utils.aws import AWSConfigError, AWSTimeoutError, _deadline, clear_clients, client, resource
from utils.aws.clients import _state, botocore_retries, evict
from utils.aws.testing import mocked_aws
from utils.core import ValidationError, deadline


def test_one_client_per_key() -> None:
    s3 = client("s3")
    assert client("s3") is s3
    assert client("s3", region="eu-west-1") is client("s3", region="eu-west-1")
    assert client("s3", region="eu-west-1") is not s3
    assert client("s3", max_attempts=1) is not client("s3", max_attempts=2)
    same = Config(s3={"addressing_style": "path"})
    assert client("s3", config=same) is client(
        "s3", config=Config(s3={"addressing_style": "path"})
    )
    assert client("sqs") is not s3


def test_client_configuration_comes_from_settings_and_overrides(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("UTILS_AWS_REGION", "eu-central-1")
    monkeypatch.setenv("UTILS_AWS_MAX_ATTEMPTS", "5")
    monkeypatch.setenv("UTILS_AWS_READ_TIMEOUT", "12.5")
    clear_clients()
    built = client("s3")
    assert built.meta.region_name == "eu-central-1"
    assert built.meta.config.retries == {"mode": "standard", "total_max_attempts": 5}
    assert built.meta.config.read_timeout == 12.5
    assert "utils-aws/" in built.meta.config.user_agent_extra
    other = client("s3", region="ap-south-1", retry_mode="adaptive", connect_timeout=1.0)
    assert other.meta.region_name == "ap-south-1"
    assert other.meta.config.retries["mode"] == "adaptive"
    assert other.meta.config.connect_timeout == 1.0
    clear_clients()


def test_user_config_is_merged_over_ours() -> None:
    built = client("s3", config=Config(read_timeout=3, s3={"addressing_style": "path"}))
    assert built.meta.config.read_timeout == 3
    assert built.meta.config.retries["mode"] == "standard"


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"regoin": "x"}, "unknown client option"),
        ({"retry_mode": "eager"}, "retry_mode"),
        ({"max_attempts": 0}, "max_attempts"),
        ({"max_attempts": True}, "max_attempts"),
        ({"read_timeout": -1}, "read_timeout"),
        ({"config": {"read_timeout": 1}}, "botocore.config.Config"),
    ],
)
def test_bad_options(options: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        client("s3", **options)


def test_configuration_errors_are_translated(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(AWSConfigError):
        client("s3", profile="no-such-profile")
    monkeypatch.delenv("AWS_DEFAULT_REGION")
    with pytest.raises(AWSConfigError):
        client("sqs", region=None)


def test_64_threads_get_one_client() -> None:
    clear_clients()
    barrier = threading.Barrier(64)
    seen: list[int] = []
    errors: list[BaseException] = []

    def ask() -> None:
        try:
            barrier.wait()
            seen.append(id(client("dynamodb")))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=ask) for _ in range(64)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert len(seen) == 64
    assert len(set(seen)) == 1


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_forked_child_builds_its_own_client() -> None:
    parent = client("s3")
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child reports through the pipe
        try:
            child = client("s3")
            ok = child is not parent and client("s3") is child and _state.entries
            os.write(write, b"ok" if ok else b"shared")
        finally:
            os._exit(0)
    os.close(write)
    answer = os.read(read, 16)
    os.close(read)
    os.waitpid(pid, 0)
    assert answer == b"ok"
    assert client("s3") is parent


def test_evict_drops_the_profile_clients() -> None:
    s3, sqs = client("s3"), client("sqs")
    other = client("s3", region="eu-west-1")
    assert evict(s3) is True
    assert client("s3") is not s3
    assert client("sqs") is not sqs
    assert evict(object()) is False
    assert other not in [e.client for e in _state.entries.values()]


def test_clear_clients_closes_and_forgets() -> None:
    s3 = client("s3")
    clear_clients()
    assert client("s3") is not s3


def test_resource_is_cached() -> None:
    with mocked_aws():
        table = resource("dynamodb")
        assert resource("dynamodb") is table
        assert resource("dynamodb", region="eu-west-1") is not table


def test_botocore_retries() -> None:
    assert botocore_retries(client("s3")) is True
    assert botocore_retries(client("s3", max_attempts=1)) is False
    assert botocore_retries(resource("dynamodb", max_attempts=1)) is False
    assert botocore_retries(object()) is True  # not ours: assume botocore's default retries
    # A user's retries config replaces ours: botocore's max_attempts counts retries only.
    legacy = client("s3", config=Config(retries={"max_attempts": 0, "mode": "legacy"}))
    assert botocore_retries(legacy) is False
    assert botocore_retries(client("s3", config=Config(retries={"max_attempts": 4}))) is True


def test_deadline_variants_fit_the_time_left() -> None:
    base = client("s3")
    with deadline(3600):
        assert client("s3") is base  # a whole attempt (5 + 60 s) fits
    with deadline(2.2):
        capped = client("s3")
        assert capped is not base
        config = capped.meta.config
        assert config.connect_timeout + config.read_timeout <= 2.2
        assert client("s3") is capped  # the variant is cached
    with deadline(0.01), pytest.raises(AWSTimeoutError, match="too little"):
        client("s3")
    with mocked_aws():
        table = resource("dynamodb")
        with deadline(0.5):
            assert resource("dynamodb") is not table


def test_bucket_and_split() -> None:
    assert _deadline.bucket_for(0.01) is None
    assert _deadline.bucket_for(0.05) == 0.05
    assert _deadline.bucket_for(0.49) == 0.4
    assert _deadline.bucket_for(1e9) == _deadline.LADDER[-1]
    for left in (0.06, 0.7, 3.3, 59.0, 1000.0):
        bucket = _deadline.bucket_for(left)
        assert bucket is not None
        assert bucket <= left
    assert _deadline.split_budget(0.4, 5.0, 60.0) == (0.2, 0.2)
    assert _deadline.split_budget(100.0, 5.0, 60.0) == (5.0, 60.0)


def test_guard_raises_when_a_retry_would_not_fit() -> None:
    from botocore.exceptions import ClientError, ReadTimeoutError

    guard = _deadline.Guard(budget=1.0)
    guard.install(client("s3"))
    http = SimpleNamespace(status_code=503)
    failed = (http, {"Error": {"Code": "ServiceUnavailable", "Message": "m"}})
    timeout = ReadTimeoutError(endpoint_url="x")
    operation = SimpleNamespace(name="GetObject")
    guard.needs_retry(attempts=1, response=failed)  # no deadline: botocore decides
    with deadline(30):
        guard.needs_retry(attempts=1, response=failed)  # fits
        guard.needs_retry(attempts=10, response=failed)  # backoff capped: 21 s fit
        guard.needs_retry(attempts=5000, response=failed)  # no overflow
    with deadline(1.5):
        # A success or an answer botocore never retries: nothing to do (no exception).
        guard.needs_retry(attempts=1, response=(SimpleNamespace(status_code=200), {}))
        missing = (SimpleNamespace(status_code=404), {"Error": {"Code": "NoSuchKey"}})
        guard.needs_retry(attempts=1, response=missing)
        guard.needs_retry(attempts=1, response=None)
        with pytest.raises(ClientError) as info:  # 1 s backoff + 1 s attempt > 1.5 s
            guard.needs_retry(attempts=2, response=failed, operation=operation)
        assert info.value.response["ResponseMetadata"]["RetryAttempts"] == 1
        assert info.value.operation_name == "GetObject"
        with pytest.raises(ReadTimeoutError):
            guard.needs_retry(attempts=1, caught_exception=timeout)
    with deadline(1.5):
        throttled = (SimpleNamespace(status_code=400), {"Error": {"Code": "Throttling"}})
        with pytest.raises(ClientError):
            guard.needs_retry(attempts=1, response=throttled, operation=operation)
    guard.before_send(event_name="before-send.s3.GetObject")
    # deadline(0) is already over (monotonic time never goes back): no need to sleep past it.
    with deadline(0), pytest.raises(AWSTimeoutError, match="GetObject"):
        guard.before_send(event_name="before-send.s3.GetObject")


def test_import_does_not_import_boto3() -> None:
    import subprocess

    code = "import sys, utils.aws; assert 'boto3' not in sys.modules and 'botocore' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_a_user_config_cannot_stretch_a_deadline_variant() -> None:
    slow = Config(connect_timeout=30, read_timeout=300)
    base = client("s3", config=slow)
    assert base.meta.config.read_timeout == 300
    with deadline(1.0):
        capped = client("s3", config=slow)
    assert capped.meta.config.connect_timeout + capped.meta.config.read_timeout <= 1.0
