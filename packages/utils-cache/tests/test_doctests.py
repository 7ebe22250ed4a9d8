"""Every docstring example of utils.cache runs, against the test Redis where it needs one.

Examples that talk to ``redis://localhost`` run here (the test server listens there); those
that would need anything else are marked ``+SKIP`` in the docstring itself.
"""

from __future__ import annotations

import doctest
import importlib
import pkgutil
from types import ModuleType

import pytest

import utils.cache

pytestmark = pytest.mark.redis


def _modules() -> list[str]:
    names = [utils.cache.__name__]
    names.extend(
        info.name for info in pkgutil.walk_packages(utils.cache.__path__, prefix="utils.cache.")
    )
    return sorted(names)


@pytest.mark.parametrize("name", _modules())
def test_docstring_examples_run(name: str, utils_redis_url: str) -> None:
    if not utils_redis_url.startswith("redis://127.0.0.1:6379") and not utils_redis_url.startswith(
        "redis://localhost:6379"
    ):
        pytest.skip("the examples use redis://localhost:6379")
    module: ModuleType = importlib.import_module(name)
    result = doctest.testmod(
        module,
        optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE,
        raise_on_error=False,
        verbose=False,
    )
    assert result.failed == 0, f"{result.failed} docstring example(s) of {name} failed"
