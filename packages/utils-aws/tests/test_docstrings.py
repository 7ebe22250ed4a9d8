"""Run the docstring examples of every module of the installed utils.aws package."""

from __future__ import annotations

import doctest

import pytest

from utils.core.testing import DOCTEST_OPTIONS, package_modules, run_doctests

MODULES = package_modules("utils.aws")


def test_modules_are_discovered() -> None:
    names = {"clients", "errors", "s3", "sqs", "translation"}
    assert {f"utils.aws.{name}" for name in names} | {"utils.aws"} <= set(MODULES)


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name: str) -> None:
    # Botocore's messages vary between releases: compare the exception type only.
    run_doctests(name, optionflags=DOCTEST_OPTIONS | doctest.IGNORE_EXCEPTION_DETAIL)
