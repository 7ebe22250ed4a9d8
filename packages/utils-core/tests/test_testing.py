"""The service policy every package's tests rely on, proven on real servers."""

from __future__ import annotations

import socket

import pytest

from utils.core import timed
from utils.core.metrics import InMemorySink
from utils.core.testing import (
    find_free_port,
    in_ci,
    metrics_sink,
    private_redis,
    redis_for_tests,
    service_reachable,
    service_url,
    wait_until,
)

INNER_TEST = """
def test_needs_redis(utils_redis_url):
    assert utils_redis_url

def test_needs_postgres(utils_postgres_url):
    assert utils_postgres_url
"""


def test_service_url_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("UTILS_TEST_REDIS_URL", "redis://example:1/2")
    assert service_url("redis") == "redis://example:1/2"
    assert service_url("postgres", {}) == "postgresql://postgres@127.0.0.1:5432/test"


def test_in_ci() -> None:
    assert in_ci({"CI": "TRUE"})
    assert not in_ci({"CI": ""})


def test_real_services_are_reachable(utils_redis_url: str, utils_postgres_url: str) -> None:
    # Under CI both servers run; locally these tests skip with one line when absent.
    assert service_reachable(utils_redis_url)
    assert service_reachable(utils_postgres_url)


def test_a_closed_port_is_not_reachable() -> None:
    port = find_free_port()
    assert not service_reachable(f"redis://127.0.0.1:{port}/0")
    assert not service_reachable(f"postgresql://u:p@127.0.0.1:{port}/db")


def test_a_non_redis_server_does_not_count_as_redis(utils_postgres_url: str) -> None:
    postgres_port = utils_postgres_url.rsplit(":", 1)[1].split("/", maxsplit=1)[0]
    assert not service_reachable(f"redis://127.0.0.1:{postgres_port}/0", timeout=0.5)


def _run_inner(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, ci: str) -> str:
    port = find_free_port()
    monkeypatch.setenv("UTILS_TEST_REDIS_URL", f"redis://127.0.0.1:{port}/0")
    monkeypatch.setenv("UTILS_TEST_POSTGRES_URL", f"postgresql://u:pw@127.0.0.1:{port}/db")
    monkeypatch.setenv("CI", ci)
    monkeypatch.setenv("PATH", "/nonexistent")  # no local redis-server to fall back on
    pytester.makepyfile(INNER_TEST)
    result = pytester.runpytest_subprocess("-rs", "-p", "no:cacheprovider")
    return "\n".join(result.outlines)


def test_missing_service_skips_locally_with_one_clear_line(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    output = _run_inner(pytester, monkeypatch, ci="")
    assert "2 skipped" in output
    assert "redis is not reachable at redis://127.0.0.1:" in output
    assert "postgres is not reachable at postgresql://u:***@127.0.0.1:" in output
    assert "UTILS_TEST_POSTGRES_URL" in output
    assert ":pw@" not in output


def test_missing_service_fails_under_ci(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    output = _run_inner(pytester, monkeypatch, ci="true")
    assert "2 errors" in output
    assert "CI=true: a missing service fails the run" in output


def test_private_redis_starts_stops_and_restarts() -> None:
    with private_redis() as server:
        assert server.is_running()
        assert service_reachable(server.url)
        server.stop()
        assert not server.is_running()
        assert not service_reachable(server.url)
        server.start()
        server.start()  # already running: no-op
        assert service_reachable(server.url)
    assert not server.is_running()


def test_redis_for_tests_falls_back_to_a_throwaway_server(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("UTILS_TEST_REDIS_URL", f"redis://127.0.0.1:{find_free_port()}/0")
    monkeypatch.delenv("CI", raising=False)
    with redis_for_tests() as url:
        assert service_reachable(url)
    assert not service_reachable(url)


def test_redis_for_tests_uses_the_configured_server(utils_redis_url: str) -> None:
    with redis_for_tests() as url:
        assert url == service_url("redis")


def test_metrics_sink_helper_restores_previous() -> None:
    with metrics_sink() as sink, timed("x"):
        pass
    assert isinstance(sink, InMemorySink)
    assert sink.count("x") == 1
    with timed("x"):
        pass
    assert sink.count("x") == 1


def test_utils_metrics_fixture(utils_metrics: InMemorySink) -> None:
    with timed("fixture.block"):
        pass
    assert utils_metrics.count("fixture.block", outcome="ok") == 1


def test_find_free_port_is_bindable() -> None:
    port = find_free_port()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", port))


def test_wait_until_returns_once_the_condition_holds() -> None:
    answers = iter([False, False, True])
    assert wait_until(lambda: next(answers), interval=0) >= 0.0


def test_wait_until_fails_the_test_after_the_timeout() -> None:
    with pytest.raises(AssertionError, match="server ready within 0s"):
        wait_until(lambda: False, timeout=0, message="server ready")
