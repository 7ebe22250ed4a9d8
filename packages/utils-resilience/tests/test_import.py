"""What ``import utils.resilience`` must not do: import drivers or configure logging."""

from __future__ import annotations

import json
import subprocess
import sys


def run_python(code: str) -> subprocess.CompletedProcess[str]:
    """Run ``code`` in a fresh interpreter, where nothing is imported yet."""
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=False
    )


def imported_after(statement: str, modules: tuple[str, ...]) -> list[str]:
    code = (
        f"import json, sys\n{statement}\n"
        f"print(json.dumps([m for m in {modules!r} if m in sys.modules]))\n"
    )
    result = run_python(code)
    assert result.returncode == 0, result.stderr
    found: list[str] = json.loads(result.stdout)
    return found


def test_import_configures_no_logging() -> None:
    code = """
import logging
root_handlers = list(logging.getLogger().handlers)
root_level = logging.getLogger().level
other = logging.getLogger("somebody.else"); other.setLevel(logging.ERROR)
import structlog
import utils.resilience
from utils.resilience import Bulkhead, RetryBudget, pipeline, retry, timeout
from utils.resilience.testing import instant_retries
assert logging.getLogger().handlers == root_handlers, logging.getLogger().handlers
assert logging.getLogger().level == root_level
assert other.level == logging.ERROR
assert not structlog.is_configured()
print("clean")
"""
    result = run_python(code)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "clean"
    assert result.stderr == ""


def test_import_does_not_import_the_cli_or_optional_extras() -> None:
    modules = ("typer", "click", "prometheus_client")
    assert imported_after("import utils.resilience", modules) == []


def test_import_does_not_import_redis() -> None:
    assert imported_after("import utils.resilience", ("redis",)) == []


def test_import_does_not_import_pybreaker_or_the_core_redis_layer() -> None:
    modules = ("pybreaker", "utils.core.redis")
    statement = (
        "import utils.resilience\n"
        "from utils.resilience import Bulkhead, RateLimiter, StorageError, pipeline, retry\n"
        "from utils.resilience import RedisRateLimitStorage, timeout"
    )
    assert imported_after(statement, modules) == []


def test_import_works_without_redis_installed() -> None:
    code = (
        "import sys; sys.modules['redis'] = None\n"
        "import utils.resilience\n"
        "from utils.resilience import retry\n"
        "print(retry().call(int, '7'))\n"
    )
    result = run_python(code)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "7"


def test_a_retry_that_logs_prints_nothing_in_library_mode() -> None:
    code = """
from utils.resilience import retry
from utils.resilience.testing import instant_retries

def fail() -> None:
    raise TimeoutError("x")

with instant_retries():
    try:
        retry(attempts=2).call(fail)
    except TimeoutError:
        print("gave up")
"""
    result = run_python(code)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "gave up"
    assert result.stderr == ""
