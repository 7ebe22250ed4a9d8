"""Under a real WSGI server, Django's, the app's and utils' log lines are one JSON format,
each with the request id of its request."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
from django.conf import settings
from django.test import SimpleTestCase

from tests.upstream import pricing_upstream

PROJECT = Path(__file__).resolve().parents[1]


class LoggingTests(SimpleTestCase):
    def test_every_line_is_json_and_carries_its_request_id(self) -> None:
        with pricing_upstream() as upstream:
            upstream.fail(503)  # one retry: a line from utils.resilience
            env = {
                **os.environ,
                "SHOP_PRICING_URL": upstream.url,
                "SHOP_LOG_LEVEL": "INFO",
                "SHOP_LOG_FORMAT": "json",
                # This run's Redis namespace, as everything else in the run (testing.py).
                "SHOP_CACHE_NAMESPACE": settings.CACHES["default"]["OPTIONS"]["namespace"],
            }
            server = subprocess.Popen(
                [sys.executable, "-m", "tests.serve"],
                cwd=PROJECT,
                env=env,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            try:
                assert server.stdout is not None
                url = server.stdout.readline().strip()
                if not url.startswith("http://127.0.0.1:"):
                    raise AssertionError(f"the server did not start: {server.communicate()[1]}")
                price = httpx.get(
                    f"{url}/products/blue-mug/price/?token=s3cr3t",
                    headers={"X-Request-ID": "req-price"},
                )
                missing = httpx.get(f"{url}/nowhere/", headers={"X-Request-ID": "req-404"})
            finally:
                _, stderr = server.communicate(timeout=30)  # closes stdin: the server stops
        assert price.status_code == 200, price.text
        assert missing.status_code == 404
        lines = [line for line in stderr.splitlines() if line.strip()]
        records = [_json(line) for line in lines]  # every line: Django's too

        def seen(request_id: str) -> set[tuple[str, str]]:
            return {
                (record["logger"], record["event"].split(":")[0])
                for record in records
                if record.get("request_id") == request_id
            }

        assert {
            ("utils.resilience.retry", "retry.attempt_failed"),  # utils
            ("shop", "shop.price_fetched"),  # the application
            ("utils.core.middleware", "http.request"),  # the access line
        } <= seen("req-price"), records
        assert {
            ("django.request", "Not Found"),  # Django's own line
            ("utils.core.middleware", "http.request"),
        } <= seen("req-404"), records
        access = [
            record
            for record in records
            if record["event"] == "http.request" and record["request_id"] == "req-price"
        ]
        assert access[0]["route"] == "/products/<slug:sku>/price/"  # the template, not the path
        assert access[0]["status"] == 200
        assert "s3cr3t" not in stderr


def _json(line: str) -> dict[str, Any]:
    try:
        record: dict[str, Any] = json.loads(line)
    except json.JSONDecodeError:
        raise AssertionError(f"not a JSON log line: {line!r}") from None
    return record
