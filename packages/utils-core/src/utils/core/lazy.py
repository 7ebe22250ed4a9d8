"""Names a package exports but imports only when first used (PEP 562).

Every ``utils`` package keeps ``import utils.<name>`` cheap and free of drivers: a name whose
module imports structlog processors, pybreaker or redis-py is listed here instead of being
imported at the top of ``__init__``. One helper, so every package resolves, caches and lists
its lazy names the same way (and ``dir()`` and tab completion still show them).

Example:
    In ``utils/example/__init__.py``::

        from typing import TYPE_CHECKING
        from utils.core.lazy import lazy_exports

        if TYPE_CHECKING:  # type checkers and IDEs see the real names
            from utils.example.heavy import Heavy

        __all__ = ["Heavy"]
        __getattr__, __dir__ = lazy_exports(__name__, {"Heavy": "utils.example.heavy"})

    >>> getattr_, dir_ = lazy_exports("utils.core", {"Secret": "utils.core.config"})
    >>> getattr_("Secret").__name__
    'Secret'
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["lazy_exports"]


def lazy_exports(
    module_name: str, exports: Mapping[str, str]
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """Build a module's ``__getattr__`` and ``__dir__`` for names imported on first use.

    Args:
        module_name: The package's ``__name__``.
        exports: Public name -> the module that defines it (under the same name).

    Returns:
        ``(__getattr__, __dir__)``: assign both at module level. The first access imports
        the defining module and stores the value in the package's namespace, so later
        accesses are plain attribute reads.
    """
    table = dict(exports)

    def __getattr__(name: str) -> Any:  # noqa: N807 - the module hook PEP 562 looks for
        source = table.get(name)
        if source is None:
            raise AttributeError(f"module {module_name!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(source), name)
        setattr(sys.modules[module_name], name, value)
        return value

    def __dir__() -> list[str]:  # noqa: N807 - the module hook PEP 562 looks for
        namespace = vars(sys.modules[module_name])
        return sorted(set(namespace) | set(namespace.get("__all__", ())) | set(table))

    return __getattr__, __dir__
