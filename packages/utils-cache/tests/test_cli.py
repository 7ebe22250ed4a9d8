"""``utils cache``: stats, get, delete and clear against a real Redis."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from collections.abc import Iterator
from datetime import date, datetime, timedelta, timezone
from datetime import time as clock_time
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import redis
from typer.testing import CliRunner

from utils.cache import cli
from utils.cache.cli import _jsonable, app
from utils.cache.memory import MemoryCache
from utils.cache.protocol import MISSING
from utils.cache.redis_cache import RedisCache
from utils.cache.testing import unique_namespace
from utils.cache.tiered import TieredCache
from utils.core.testing import PrivateRedis, find_free_port, private_redis, wait_until

pytestmark = pytest.mark.redis


@pytest.fixture
def namespace() -> str:
    return unique_namespace("cli")


@pytest.fixture
def cache(utils_redis_url: str, namespace: str) -> Iterator[RedisCache]:
    redis_cache = RedisCache(utils_redis_url, namespace=namespace)
    yield redis_cache
    redis_cache.clear(all_versions=True)
    redis_cache.close()


@pytest.fixture
def invoke(utils_redis_url: str, namespace: str, monkeypatch: pytest.MonkeyPatch) -> Any:
    """Run ``utils cache ...`` with UTILS_CACHE_URL / _NAMESPACE pointing at the test cache."""
    monkeypatch.setenv("UTILS_CACHE_URL", utils_redis_url)
    monkeypatch.setenv("UTILS_CACHE_NAMESPACE", namespace)
    runner = CliRunner()

    def run(*args: str, input: str | None = None) -> Any:
        return runner.invoke(app, list(args), input=input)

    return run


# -- stats ---------------------------------------------------------------------------------


def test_stats_counts_the_namespace_per_version(
    invoke: Any, cache: RedisCache, utils_redis_url: str, namespace: str
) -> None:
    cache.set_many({f"k{i}": i for i in range(150)})
    RedisCache(cache.client, namespace=namespace, version=3).set("old", 1)
    lock = cache._lock("k1", 5.0)
    assert lock.acquire(0.1)
    cache.client.set(f"{namespace}#not-a-version", b"1")  # not a cache key: ignored

    result = invoke("stats", "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["namespace"] == namespace
    assert (report["version"], report["keys"], report["locks"]) == (0, 150, 1)
    assert report["keys_by_version"] == {"0": 150, "3": 1}
    assert report["memory_sampled_keys"] == cli.MEMORY_SAMPLE
    assert report["memory_bytes_estimate"] > 150
    assert report["redis_version"]
    assert report["server"] == "127.0.0.1:6379/0" or ":" in report["server"]

    human = invoke("stats")
    assert human.exit_code == 0
    assert f"namespace {namespace!r} version 0: 150 keys, about" in human.stdout
    assert "estimated from 100 keys" in human.stdout
    assert "1 stampede locks" in human.stdout
    assert "version 3: 1" in human.stdout
    lock.release()

    # The URL's ?version= selects the version.
    versioned = invoke("stats", "--url", f"{utils_redis_url}?version=3")
    assert f"namespace {namespace!r} version 3: 1 keys" in versioned.stdout


def test_stats_of_a_small_and_an_empty_namespace(invoke: Any, cache: RedisCache) -> None:
    empty = invoke("stats")
    assert empty.exit_code == 0
    assert "0 keys, 0 B" in empty.stdout
    cache.set("one", "x" * 1000)
    small = invoke("stats")
    assert "1 keys, 1." in small.stdout  # KiB, measured, not estimated
    assert "estimated" not in small.stdout


def test_stats_when_memory_usage_is_not_allowed(namespace: str) -> None:
    with private_redis() as server:
        admin = redis.Redis.from_url(server.url)
        admin.acl_setuser(
            "nomem",
            enabled=True,
            passwords=["+pw"],
            keys=["*"],
            channels=["*"],
            commands=["+@all", "-memory"],
        )
        admin.set(f"{namespace}#0:k", b"1")
        url = f"redis://nomem:pw@127.0.0.1:{server.port}/0"
        result = CliRunner().invoke(app, ["stats", "--url", url, "-n", namespace])
        assert result.exit_code == 0, result.output
        assert "memory unknown" in result.stdout
        assert "pw@" not in result.stdout
        admin.close()


# -- get -----------------------------------------------------------------------------------


def test_get_prints_the_decoded_value(invoke: Any, cache: RedisCache) -> None:
    value = {
        "when": datetime(2024, 5, 1, 12, 0, tzinfo=timezone.utc),
        "day": date(2024, 5, 1),
        "at": clock_time(8, 30),
        "price": Decimal("9.90"),
        "ids": (1, 2),
        "tags": {"b", "a"},
        "raw": b"\xff\x00",
        "text": b"hello",
        "wait": timedelta(minutes=1),
        2: "int key",
    }
    cache.set("order", value, ttl=60)
    result = invoke("get", "order")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == {
        "when": "2024-05-01T12:00:00+00:00",
        "day": "2024-05-01",
        "at": "08:30:00",
        "price": "9.90",
        "ids": [1, 2],
        "tags": ["a", "b"],
        "raw": {"base64": "/wA="},
        "text": "hello",
        "wait": 60.0,
        "2": "int key",
    }
    machine = json.loads(invoke("get", "order", "--json").stdout)
    assert machine["found"] is True
    assert 0 < machine["ttl"] <= 60
    assert machine["value"]["price"] == "9.90"


def test_get_a_missing_key_exits_1(invoke: Any, cache: RedisCache) -> None:
    result = invoke("get", "nope")
    assert result.exit_code == 1
    assert "no value under 'nope'" in result.stderr
    machine = invoke("get", "nope", "--json")
    assert json.loads(machine.stdout) == {"key": "nope", "found": False}
    assert invoke("get", "nope", "--raw").exit_code == 1


def test_get_undecodable_data_suggests_raw(invoke: Any, cache: RedisCache) -> None:
    cache.client.set(cache.redis_key("pickled"), b"\x80\x04not json at all")
    result = invoke("get", "pickled")
    assert result.exit_code == 1
    assert "try --raw" in result.stderr
    raw = invoke("get", "pickled", "--raw")
    assert raw.exit_code == 0
    assert raw.stdout.strip() == "\\x80\x04not json at all"


# -- delete --------------------------------------------------------------------------------


def test_delete_removes_the_key_and_tells_tiered_caches(invoke: Any, cache: RedisCache) -> None:
    with TieredCache(MemoryCache(maxsize=10), cache, l1_ttl=60) as tiered:
        assert tiered.wait_subscribed(5)
        tiered.set("k", "v")
        assert tiered.l1.get("k") == "v"
        result = invoke("delete", "k", "--json")
        assert result.exit_code == 0, result.output
        assert json.loads(result.stdout) == {"key": "k", "deleted": True, "invalidated": 1}
        wait_until(lambda: tiered.l1.get("k", MISSING) is MISSING, 2.0)
        assert tiered.l1.get("k", MISSING) is MISSING
    assert cache.get("k", MISSING) is MISSING
    again = invoke("delete", "k")
    assert again.exit_code == 0
    assert "'k' was not there" in again.stdout
    cache.set("j", 1)
    assert "deleted 'j'" in invoke("delete", "j").stdout


# -- clear ---------------------------------------------------------------------------------


def test_clear_asks_first_and_can_be_declined(invoke: Any, cache: RedisCache) -> None:
    cache.set_many({"a": 1, "b": 2})
    result = invoke("clear", input="n\n")
    assert result.exit_code == 1
    assert "Delete 2 keys of namespace" in result.stderr
    assert cache.get_many(["a", "b"]) == {"a": 1, "b": 2}
    accepted = invoke("clear", input="y\n")
    assert accepted.exit_code == 0, accepted.output
    assert "deleted 2 keys" in accepted.stdout
    assert cache.get_many(["a", "b"]) == {}


def test_clear_many_keys_in_batches_with_progress(
    invoke: Any, cache: RedisCache, namespace: str
) -> None:
    count = cli.BATCH * 2 + 7
    cache.set_many({f"k{i}": i for i in range(count)})
    other = unique_namespace("cli-other")
    bystander = RedisCache(cache.client, namespace=other)
    bystander.set("keep", 1)
    result = invoke("clear", "--yes")
    assert result.exit_code == 0, result.output
    assert f"deleted {count:,} keys of namespace {namespace!r} version 0" in result.stdout
    assert "deleting" in result.stderr  # the progress bar (not a terminal: its label)
    assert cache.get_many([f"k{i}" for i in range(count)]) == {}
    assert bystander.get("keep") == 1  # another namespace is untouched
    bystander.clear()


def test_clear_exactly_one_batch(invoke: Any, cache: RedisCache) -> None:
    cache.set_many({f"k{i}": i for i in range(cli.BATCH)})
    result = invoke("clear", "--yes")
    assert f"deleted {cli.BATCH} keys" in result.stdout


def test_memory_estimate_of_keys_gone_meanwhile(cache: RedisCache) -> None:
    assert cli._memory_estimate(cache.client, [b"no-such-key-anywhere"], 10) == 0


def test_clear_json_and_all_versions(invoke: Any, cache: RedisCache, namespace: str) -> None:
    cache.set("current", 1)
    old = RedisCache(cache.client, namespace=namespace, version=7)
    old.set("old", 1)
    result = invoke("clear", "--yes", "--json")
    assert json.loads(result.stdout) == {
        "namespace": namespace,
        "version": 0,
        "deleted": 1,
        "invalidated": 0,
    }
    assert old.get("old") == 1
    everything = invoke("clear", "-y", "--all-versions", "--json")
    assert json.loads(everything.stdout)["deleted"] == 1
    assert json.loads(everything.stdout)["version"] is None
    assert old.get("old", MISSING) is MISSING
    nothing = invoke("clear", "--all-versions")
    assert nothing.exit_code == 0
    assert "deleted 0 keys of namespace" in nothing.stdout


def test_clear_tells_tiered_caches_to_flush(invoke: Any, cache: RedisCache) -> None:
    with TieredCache(MemoryCache(maxsize=10), cache, l1_ttl=60) as tiered:
        assert tiered.wait_subscribed(5)
        tiered.set("k", "v")
        result = invoke("clear", "--yes", "--json")
        assert json.loads(result.stdout)["invalidated"] == 1
        wait_until(lambda: tiered.l1.stats().size == 0, 2.0)
        assert tiered.l1.stats().size == 0


# -- configuration and failures ------------------------------------------------------------


def test_namespace_comes_from_the_option_then_the_url_then_the_environment(
    invoke: Any, cache: RedisCache, utils_redis_url: str, namespace: str
) -> None:
    cache.set("k", "v")
    in_url = f"{utils_redis_url}?namespace={namespace}"
    assert invoke("get", "k", "--url", in_url, "--namespace", "elsewhere").exit_code == 1
    assert invoke("get", "k", "--url", in_url).exit_code == 0
    assert invoke("get", "k", "-n", namespace).exit_code == 0
    assert invoke("get", "k").exit_code == 0  # UTILS_CACHE_NAMESPACE


def test_a_memory_url_has_nothing_to_inspect(invoke: Any) -> None:
    for command in (["stats"], ["get", "k"], ["delete", "k"], ["clear", "--yes"]):
        result = invoke(*command, "--url", "memory://?maxsize=10")
        assert result.exit_code == 2
        assert "not a Redis URL" in result.stderr


def test_a_bad_version_in_the_url(invoke: Any, utils_redis_url: str) -> None:
    result = invoke("stats", "--url", f"{utils_redis_url}?version=two")
    assert result.exit_code == 2
    assert "version must be an integer" in result.stderr


def test_a_bad_namespace_is_reported(invoke: Any) -> None:
    result = invoke("get", "k", "--namespace", "has#hash")
    assert result.exit_code == 1
    assert "ValidationError" in result.stderr


def test_bad_settings_are_reported(invoke: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("UTILS_CACHE_MAXSIZE", "lots")
    result = invoke("stats")
    assert result.exit_code == 1
    assert "UTILS_CACHE_MAXSIZE" in result.stderr


def test_an_unreachable_server_is_an_error_without_credentials(invoke: Any) -> None:
    url = f"redis://user:hunter2@127.0.0.1:{find_free_port()}/0"
    for command in (["stats"], ["get", "k"], ["delete", "k"], ["clear", "--yes"]):
        result = invoke(*command, "--url", url)
        assert result.exit_code == 1, command
        assert result.stderr.startswith("error: ")
        assert "hunter2" not in result.output


def test_a_publish_failure_after_delete_is_not_an_error(namespace: str) -> None:
    """The key is gone; listeners that miss the message fall back to their L1 TTL."""
    server: PrivateRedis
    with private_redis() as server:
        admin = redis.Redis.from_url(server.url)
        admin.acl_setuser(
            "nopub",
            enabled=True,
            passwords=["+pw"],
            keys=["*"],
            commands=["+@all", "-publish"],
        )
        admin.set(f"{namespace}#0:k", b"1")
        url = f"redis://nopub:pw@127.0.0.1:{server.port}/0"
        result = CliRunner().invoke(app, ["delete", "k", "--url", url, "-n", namespace, "--json"])
        assert json.loads(result.stdout) == {"key": "k", "deleted": True, "invalidated": 0}
        admin.close()


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        (frozenset({2, 1}), [1, 2]),
        (uuid.UUID(int=1), "00000000-0000-0000-0000-000000000001"),
        ({(1, 2): "tuple key", None: 0}, {"(1, 2)": "tuple key", None: 0}),
        (object, "<class 'object'>"),
    ],
)
def test_values_are_shown_as_json(value: Any, shown: Any) -> None:
    assert _jsonable(value) == shown


def test_the_utils_command_mounts_the_sub_app() -> None:
    script = Path(sys.executable).with_name("utils")
    completed = subprocess.run(
        [str(script), "cache", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr
    for command in ("stats", "get", "delete", "clear"):
        assert command in completed.stdout
    assert "load_failed" not in completed.stderr


# -- regressions -----------------------------------------------------------------------------


@pytest.mark.parametrize("port", ["99999", "abc"])
def test_d16_a_bad_port_is_a_one_line_error(invoke: Any, port: str) -> None:
    for command in (["stats"], ["get", "k"], ["delete", "k"], ["clear", "--yes"]):
        result = invoke(*command, "--url", f"redis://127.0.0.1:{port}/0?namespace=x")
        assert result.exit_code == 2, (command, result.output)
        assert result.exception is None or isinstance(result.exception, SystemExit)
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1, result.stderr
        assert lines[0].startswith("error: "), result.stderr
        assert "port" in lines[0]


def test_d16_an_unreachable_server_gets_the_right_hint(invoke: Any) -> None:
    url = f"redis://127.0.0.1:{find_free_port()}/0"
    result = invoke("get", "k", "--url", url)
    assert result.exit_code == 1
    assert "--raw" not in result.stderr
    assert "is Redis running" in result.stderr
    assert "Traceback" not in result.stderr
