"""Run the docstring examples of every module of the installed utils.resilience package."""

from __future__ import annotations

import pytest

from utils.core.testing import package_modules, run_doctests

MODULES = package_modules("utils.resilience")


def test_modules_are_discovered() -> None:
    names = {"backoff", "budget", "bulkhead", "errors", "pipeline", "retry", "testing", "timeout"}
    assert {f"utils.resilience.{name}" for name in names} | {"utils.resilience"} <= set(MODULES)


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name: str) -> None:
    run_doctests(name)
