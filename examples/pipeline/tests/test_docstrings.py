"""The docstring examples of the pipeline's modules run (offline: no I/O in them)."""

from __future__ import annotations

import pytest

from utils.core.testing import run_doctests


@pytest.mark.parametrize("module", ["pipeline.records"])
def test_docstring_examples(module: str) -> None:
    assert run_doctests(module) > 0
