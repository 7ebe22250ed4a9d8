"""Shared fixtures of utils-core's own tests."""

from __future__ import annotations

import sys
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import structlog

from utils.core import reset_logging

pytest_plugins = ["pytester"]


@pytest.fixture(autouse=True)
def _clean_logging_state() -> Iterator[None]:
    """Every test starts and ends in library mode with no bound context."""
    reset_logging()
    structlog.contextvars.clear_contextvars()
    yield
    reset_logging()
    structlog.contextvars.clear_contextvars()


FakeDistribution = Callable[..., Path]


@pytest.fixture
def fake_distribution(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[FakeDistribution]:
    """Install a tiny real distribution (dist-info + module) on sys.path for the test.

    ``fake_distribution("utils-demo", {"utils.health": {"demo": "utils_demo_mod:check"}},
    module="utils_demo_mod", module_source="def check(): return 'fine'")`` makes
    ``importlib.metadata`` see a distribution with those entry points, exactly as an
    installed package would.
    """
    root = tmp_path / "site"
    root.mkdir()
    monkeypatch.syspath_prepend(str(root))
    modules: list[str] = []

    def make(
        name: str,
        entry_points: dict[str, dict[str, str]],
        *,
        module: str | None = None,
        module_source: str = "",
        version: str = "1.0.0",
    ) -> Path:
        dist_info = root / f"{name.replace('-', '_')}-{version}.dist-info"
        dist_info.mkdir()
        (dist_info / "METADATA").write_text(
            f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n"
        )
        sections = []
        for group, items in entry_points.items():
            lines = "\n".join(f"{key} = {value}" for key, value in items.items())
            sections.append(f"[{group}]\n{lines}\n")
        (dist_info / "entry_points.txt").write_text("\n".join(sections))
        if module is not None:
            (root / f"{module}.py").write_text(textwrap.dedent(module_source))
            modules.append(module)
        return dist_info

    yield make
    for module in modules:
        sys.modules.pop(module, None)
