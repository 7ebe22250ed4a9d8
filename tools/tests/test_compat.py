from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from tools import compat

ROOT = Path(__file__).resolve().parents[2]


def test_lower_bound() -> None:
    assert compat.lower_bound("redis[hiredis]>=5.0,<6") == ("redis[hiredis]", "5.0")
    assert compat.lower_bound("psycopg[pool] >= 3.1") == ("psycopg[pool]", "3.1")
    assert compat.lower_bound("anyio") == ("anyio", "-")


def test_third_party() -> None:
    reqs = ["utils-core>=0.1", "UTILS-core[cli]>=0.1", "redis>=5"]
    assert compat.third_party(reqs) == ["redis>=5"]


def test_render_lists_every_package(tmp_path: Path) -> None:
    for dist, deps in (("utils-core", '"structlog>=24.1"'), ("utils-x", '"utils-core>=0.1.0"')):
        (tmp_path / dist).mkdir()
        (tmp_path / dist / "pyproject.toml").write_text(
            f'[project]\nrequires-python = ">=3.10"\ndependencies = [{deps}]\n'
            'classifiers = ["Programming Language :: Python :: 3.10"]\n',
            encoding="utf-8",
        )
    page = compat.render(tmp_path)
    assert "| `utils-core` | `>=3.10` | 3.10 | (is utils-core) | `structlog==24.1` |" in page
    assert "| `utils-x` | `>=3.10` | 3.10 | `0.1.0` | none |" in page
    assert "| 3.14 | CI | CI |" in page
    assert "| 3.12 | CI | on demand |" in page


def workflow(name: str) -> dict[Any, Any]:
    data = yaml.safe_load((ROOT / ".github" / "workflows" / name).read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


def test_ci_workflow_runs_exactly_the_matrix() -> None:
    matrix = workflow("ci.yml")["jobs"]["matrix"]["strategy"]["matrix"]
    pairs = {(str(e["python"]), e["deps"]) for e in matrix["include"]}
    assert pairs == set(compat.CI_MATRIX)


@pytest.mark.parametrize("name", ["ci.yml", "release.yml"])
def test_workflows_pin_actions_by_sha(name: str) -> None:
    for job in workflow(name)["jobs"].values():
        for step in job.get("steps", []):
            if "uses" in step:
                ref = step["uses"].rsplit("@", 1)[1]
                assert len(ref) == 40, step["uses"]
                assert all(c in "0123456789abcdef" for c in ref), step["uses"]
