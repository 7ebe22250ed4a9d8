from __future__ import annotations

from pathlib import Path

import yaml

from tools import compose_check

ROOT = Path(__file__).resolve().parents[2]


def test_repository_compose_file_is_valid() -> None:
    data = yaml.safe_load((ROOT / "compose.yaml").read_text(encoding="utf-8"))
    assert compose_check.check(data) == []


def test_problems_are_reported() -> None:
    data = {
        "servics": {},
        "services": {
            "postgres": {"image": "postgres:16", "ports": [5432], "environment": {"A": 1}},
            "redis": {"ports": ["6379:6379"], "healthcheck": {"interval": "5s"}, "bogus": 1},
        },
    }
    errors = compose_check.check(data)
    assert "unknown top-level key 'servics'" in errors
    assert "missing service 'moto'" in errors
    assert any("port 5432" in e for e in errors)
    assert any("environment A" in e for e in errors)
    assert "redis: needs an image (or build)" in errors
    assert "redis: healthcheck needs a test" in errors
    assert "redis: unknown key 'bogus'" in errors
    assert compose_check.check([]) == ["the file is not a mapping"]
