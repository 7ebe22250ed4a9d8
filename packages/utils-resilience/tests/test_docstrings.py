"""Run the docstring examples of every module of the installed utils.resilience package."""

from __future__ import annotations

import doctest
import importlib
import pkgutil

import pytest

import utils.resilience

MODULES = sorted(info.name for info in pkgutil.iter_modules(utils.resilience.__path__))
OPTIONS = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE


def test_modules_are_discovered() -> None:
    assert {
        "backoff",
        "budget",
        "bulkhead",
        "errors",
        "pipeline",
        "retry",
        "testing",
        "timeout",
    } <= set(MODULES)


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name: str) -> None:
    module = importlib.import_module(f"utils.resilience.{name}")
    runner = doctest.DocTestRunner(optionflags=OPTIONS)
    report: list[str] = []
    for test in doctest.DocTestFinder().find(module, module.__name__):
        runner.run(test, out=report.append)
    results = runner.summarize(verbose=False)
    assert results.failed == 0, "".join(report)


def test_package_docstring_examples() -> None:
    results = doctest.testmod(utils.resilience, optionflags=OPTIONS, report=False)
    assert results.failed == 0
    assert results.attempted > 0
