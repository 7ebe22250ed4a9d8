"""``python manage.py test`` as one pytest test, for ``nox -s examples`` (which runs pytest).

The project's tests are Django's own (``tests/``, run by Django's runner against real
PostgreSQL and Redis); this only starts that runner in a fresh process, with the test
settings below unless the environment already has them. Options for Django's runner go in
``DJANGO_TEST_ARGS`` (``DJANGO_TEST_ARGS="-k pricing" pytest``).
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from pathlib import Path

PROJECT = Path(__file__).resolve().parent

#: What the tests run with: the family's test services (UTILS_TEST_*_URL, as in CI).
TEST_ENVIRONMENT = {
    "SHOP_SECRET_KEY": "test-only-" + "k" * 50,
    "SHOP_DATABASE_URL": os.environ.get(
        "UTILS_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"
    ),
    "SHOP_REDIS_URL": os.environ.get("UTILS_TEST_REDIS_URL", "redis://127.0.0.1:6379/0"),
    # Quiet: the tests provoke failures on purpose; test_logging reads its own server's lines.
    "SHOP_LOG_LEVEL": "CRITICAL",
    # As filterwarnings = ["error"] does for pytest: a warning fails the run (and its children).
    "PYTHONWARNINGS": "error",
}


def test_django_test_runner() -> None:
    env = {**TEST_ENVIRONMENT, **os.environ}
    args = shlex.split(os.environ.get("DJANGO_TEST_ARGS", ""))
    result = subprocess.run(
        [sys.executable, "manage.py", "test", "--noinput", "-v", "2", *args],
        cwd=PROJECT,
        env=env,
        check=False,
        timeout=600,
    )
    assert result.returncode == 0, "python manage.py test failed: see the output above"
