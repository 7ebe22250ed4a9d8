"""Run the docstring examples of every module of the installed utils.db package."""

from __future__ import annotations

import pytest

from utils.core.testing import package_modules, run_doctests

MODULES = package_modules("utils.db")


def test_modules_are_discovered() -> None:
    assert {"utils.db", "utils.db.database", "utils.db.errors"} <= set(MODULES)


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name: str) -> None:
    run_doctests(name)
