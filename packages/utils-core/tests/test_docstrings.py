"""Run the docstring examples of every module of the installed utils.core package."""

from __future__ import annotations

import pytest

from utils.core.testing import package_modules, run_doctests

MODULES = package_modules("utils.core")


def test_modules_are_discovered() -> None:
    assert {"utils.core", "utils.core.deadline", "utils.core.errors"} <= set(MODULES)


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name: str) -> None:
    run_doctests(name)
