"""Settings from the environment: missing and invalid variables, secrets kept out of errors."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from django.test import SimpleTestCase

from utils.core.testing import run_doctests

PROJECT = Path(__file__).resolve().parents[1]


def manage(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """``python manage.py <args>`` in a fresh process, with ``env`` changed (``""``: unset)."""
    environ = {**os.environ, **env}
    environ = {key: value for key, value in environ.items() if value != ""}
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=PROJECT,
        env=environ,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


class ConfigTests(SimpleTestCase):
    def test_docstring_examples(self) -> None:
        for module in ("shop_project.config", "shop.catalog", "shop.pricing"):
            with self.subTest(module=module):
                assert run_doctests(module) > 0

    def test_the_checks_pass_as_configured(self) -> None:
        result = manage("check", "--deploy", "--fail-level", "ERROR")
        assert result.returncode == 0, result.stderr

    def test_every_bad_variable_is_named_and_secrets_stay_hidden(self) -> None:
        result = manage(
            "check", SHOP_SECRET_KEY="", SHOP_CONN_MAX_AGE="forever", SHOP_DEBUG="maybe"
        )
        assert result.returncode != 0
        assert "SHOP_SECRET_KEY: missing" in result.stderr
        assert "SHOP_CONN_MAX_AGE" in result.stderr
        assert "SHOP_DEBUG" in result.stderr

    def test_a_bad_database_url_does_not_show_its_password(self) -> None:
        result = manage("check", SHOP_DATABASE_URL="mysql://root:hunter2@db/shop")
        assert result.returncode != 0
        assert "SHOP_DATABASE_URL must be a postgresql:// URL" in result.stderr
        assert "hunter2" not in result.stderr
