"""redis-py errors met by the caches are transient (or not) for utils.core, and the ``redis-cache``
health check, on real Redis."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
import redis.exceptions as rex

from utils.cache.errors import CacheUnavailableError
from utils.cache.health import configured_cache, describe_url, redis_client, redis_ping
from utils.core import ConfigError, OperationTimeoutError, deadline, is_transient
from utils.core.redis import is_transient_error as classify_redis_error
from utils.core.testing import PrivateRedis, find_free_port, private_redis

pytestmark = pytest.mark.redis


def _closed_url() -> str:
    return f"redis://127.0.0.1:{find_free_port()}/0"


@pytest.fixture(scope="module")
def locked_redis() -> Iterator[PrivateRedis]:
    """A private server with a password and a user that may PING but not run INFO."""
    with private_redis() as server:
        admin = redis.Redis.from_url(server.url)
        admin.acl_setuser(
            "pinger", enabled=True, passwords=["+pingpass"], commands=["+ping", "+hello"]
        )
        admin.config_set("requirepass", "s3cret-pw")
        admin.close()
        yield server


def _with_credentials(server: PrivateRedis, user: str, password: str) -> str:
    return f"redis://{user}:{password}@127.0.0.1:{server.port}/0"


# -- classifier ---------------------------------------------------------------------------


def test_connection_refused_is_transient() -> None:
    client = redis.Redis.from_url(_closed_url(), socket_connect_timeout=0.5)
    with pytest.raises(rex.ConnectionError) as caught:
        client.ping()
    assert classify_redis_error(caught.value) is True
    # Through utils.core and the installed entry point, as @retry() would ask.
    assert is_transient(caught.value) is True


def test_read_timeout_is_transient(utils_redis_url: str) -> None:
    client = redis.Redis.from_url(utils_redis_url, socket_timeout=0.05)
    with pytest.raises(rex.TimeoutError) as caught:
        client.blpop([f"never-pushed-{uuid.uuid4().hex}"], timeout=1)
    client.close()
    assert classify_redis_error(caught.value) is True
    assert is_transient(caught.value) is True


def test_error_replies_are_permanent(utils_redis_url: str) -> None:
    client = redis.Redis.from_url(utils_redis_url)
    key = f"classifier-{uuid.uuid4().hex}"
    try:
        client.set(key, "text")
        with pytest.raises(rex.ResponseError) as wrongtype:
            client.lpush(key, "x")
        with pytest.raises(rex.NoScriptError) as noscript:
            client.evalsha("0" * 40, 0)
        with pytest.raises(rex.DataError) as data:
            client.set(key, {"a dict": "is not a redis value"})  # type: ignore[arg-type]
    finally:
        client.delete(key)
        client.close()
    for error in (wrongtype.value, noscript.value, data.value):
        assert classify_redis_error(error) is False
        assert is_transient(error) is False


def test_watch_conflict_is_transient(utils_redis_url: str) -> None:
    client = redis.Redis.from_url(utils_redis_url)
    key = f"classifier-{uuid.uuid4().hex}"
    try:
        with client.pipeline() as pipe:
            pipe.watch(key)  # type: ignore[no-untyped-call]
            client.set(key, "changed by someone else")
            pipe.multi()
            pipe.set(key, "mine")
            with pytest.raises(rex.WatchError) as caught:
                pipe.execute()
    finally:
        client.delete(key)
        client.close()
    assert classify_redis_error(caught.value) is True


def test_wrong_password_is_permanent(locked_redis: PrivateRedis) -> None:
    client = redis.Redis.from_url(_with_credentials(locked_redis, "default", "wrong"))
    with pytest.raises(rex.AuthenticationError) as caught:
        client.ping()
    assert classify_redis_error(caught.value) is False
    assert is_transient(caught.value) is False


def test_missing_acl_permission_is_permanent(locked_redis: PrivateRedis) -> None:
    client = redis.Redis.from_url(_with_credentials(locked_redis, "pinger", "pingpass"))
    with pytest.raises(rex.NoPermissionError) as caught:
        client.get("anything")
    client.close()
    assert classify_redis_error(caught.value) is False


def test_replica_refusing_writes_is_transient() -> None:
    # A replica (of a primary that does not exist) answers writes with READONLY, as a
    # demoted primary does during a failover.
    with private_redis() as server:
        client = redis.Redis.from_url(server.url)
        client.replicaof("127.0.0.1", find_free_port())
        with pytest.raises(rex.ReadOnlyError) as caught:
            client.set("k", "v")
        client.close()
    assert classify_redis_error(caught.value) is True


@pytest.mark.parametrize(
    ("error", "verdict"),
    [
        (rex.BusyLoadingError("LOADING Redis is loading the dataset in memory"), True),
        (rex.TryAgainError("TRYAGAIN"), True),
        (rex.ClusterDownError("CLUSTERDOWN The cluster is down"), True),
        (rex.MasterDownError("MASTERDOWN Link with MASTER is down"), True),
        (rex.MovedError("3999 127.0.0.1:6381"), True),
        (rex.OutOfMemoryError("OOM command not allowed"), False),
        (rex.LockNotOwnedError("cannot release a lock that's no longer owned"), False),
        (rex.ChildDeadlockedError(), False),
        (ValueError("not from redis"), None),
        (ConnectionResetError("a stdlib error: core decides"), None),
    ],
)
def test_replies_that_cannot_be_provoked_on_one_server(
    error: BaseException, verdict: bool | None
) -> None:
    assert classify_redis_error(error) is verdict


def test_the_former_classifier_is_a_deprecated_alias() -> None:
    from utils.cache.transient import classify_redis_error as former

    with pytest.warns(DeprecationWarning, match="utils.core.is_transient"):
        assert former(redis.exceptions.ConnectionError("refused")) is True


def test_utils_cache_registers_no_classifier_of_its_own() -> None:
    """utils.core classifies redis-py errors itself: one classifier for the family."""
    from importlib.metadata import entry_points

    assert [
        e for e in entry_points(group="utils.transient") if e.value.startswith("utils.cache")
    ] == []


# -- health check -------------------------------------------------------------------------


def test_ping_reports_version_server_and_latency(utils_redis_url: str) -> None:
    detail = redis_ping(url=utils_redis_url)
    assert re.fullmatch(r"redis \d+\.\d+\.\d+ at \S+:\d+/\d+ \(\d+\.\d ms\)", detail), detail


def test_ping_reads_the_configured_url(
    utils_redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("UTILS_CACHE_URL", utils_redis_url + "?namespace=ignored&ttl=30")
    monkeypatch.setenv("UTILS_CACHE_NAMESPACE", "shop")
    assert configured_cache() == (utils_redis_url + "?namespace=ignored&ttl=30", "shop")
    assert redis_ping().startswith("redis ")


def test_memory_cache_has_nothing_to_check(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("UTILS_CACHE_URL", raising=False)
    assert redis_ping() == "memory cache: nothing to check"


def test_closed_port_fails_with_the_cause() -> None:
    url = _closed_url()
    with pytest.raises(CacheUnavailableError, match="did not answer PING") as caught:
        redis_ping(url=url)
    assert isinstance(caught.value.__cause__, rex.ConnectionError)
    assert caught.value.details == {"server": describe_url(url)}


def test_credentials_never_appear(locked_redis: PrivateRedis) -> None:
    detail = redis_ping(url=_with_credentials(locked_redis, "default", "s3cret-pw"))
    assert "s3cret" not in detail
    assert detail.startswith("redis ")
    with pytest.raises(CacheUnavailableError) as caught:
        redis_ping(url=_with_credentials(locked_redis, "default", "wrong-pw-123"))
    assert "wrong-pw-123" not in str(caught.value)


def test_version_is_optional_when_info_is_denied(locked_redis: PrivateRedis) -> None:
    detail = redis_ping(url=_with_credentials(locked_redis, "pinger", "pingpass"))
    assert detail.startswith("redis ? at 127.0.0.1:")


def test_unknown_scheme_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="not a Redis URL"):
        redis_ping(url="postgresql://db/main")


def test_spent_deadline_fails_before_connecting(utils_redis_url: str) -> None:
    with deadline(0), pytest.raises(OperationTimeoutError):
        redis_ping(url=utils_redis_url)


def test_client_timeouts_are_capped_by_the_deadline(utils_redis_url: str) -> None:
    with deadline(0.3):
        client = redis_client(utils_redis_url + "?namespace=x&socket_keepalive=true", timeout=5)
    kwargs = client.connection_pool.connection_kwargs
    assert 0 < kwargs["socket_timeout"] <= 0.3
    assert kwargs["socket_keepalive"] is True
    assert "namespace" not in kwargs


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("redis://u:pw@h:1/3", "h:1/3"),
        ("redis://h", "h:6379/0"),
        ("redis://h/?db=4", "h:6379/4"),
        ("unix:///tmp/r.sock", "/tmp/r.sock"),
        ("memory://?maxsize=3", "memory"),
        ("tiered+redis://:pw@h:2/1", "h:2/1"),
    ],
)
def test_describe_url(url: str, shown: str) -> None:
    assert describe_url(url) == shown


def test_doctor_lists_the_check(utils_redis_url: str) -> None:
    """``utils doctor --json`` runs the installed check through the console script."""
    script = Path(sys.executable).with_name("utils")
    env = {"UTILS_CACHE_URL": utils_redis_url, "PATH": str(script.parent)}
    completed = subprocess.run(
        [str(script), "doctor", "--json", "--check", "redis-cache"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    report = json.loads(completed.stdout)
    (check,) = report["checks"]
    assert (check["name"], check["ok"]) == ("redis-cache", True), completed.stderr
    assert check["detail"].startswith("redis ")
    assert completed.returncode == 0


def test_doctor_reports_a_down_server(monkeypatch: pytest.MonkeyPatch) -> None:
    from typer.testing import CliRunner

    from utils.core.cli import build_app

    monkeypatch.setenv("UTILS_CACHE_URL", _closed_url())
    result = CliRunner().invoke(build_app(), ["doctor", "--json"])
    checks = {check["name"]: check for check in json.loads(result.stdout)["checks"]}
    assert checks["redis-cache"]["ok"] is False
    assert "CacheUnavailableError" in checks["redis-cache"]["detail"]
    assert result.exit_code == 1
