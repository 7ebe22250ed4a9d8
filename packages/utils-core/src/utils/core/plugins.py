"""Discover and load plugins that installed distributions declare as entry points.

Groups used by the family: ``utils.transient`` (transient-error classifiers),
``utils.cli`` (typer sub-apps) and ``utils.health`` (health checks). A plugin whose import
raises is logged as ``plugins.load_failed`` and skipped: one broken distribution never takes
the others (or the ``utils`` CLI) down with it.

Example:
    >>> from utils.core import plugins
    >>> "python" in plugins.names("utils.health")
    True
"""

from __future__ import annotations

from typing import Any

from utils.core.errors import ConfigError

__all__ = ["PluginError", "load", "names"]


class PluginError(ConfigError):
    """Two installed distributions declare a plugin with the same name in one group.

    Example:
        >>> PluginError("two plugins named 'redis' in utils.health").code
        'plugin_conflict'
    """

    default_code = "plugin_conflict"


def _entry_points(group: str) -> list[Any]:
    from importlib.metadata import entry_points

    return sorted(entry_points(group=group), key=lambda ep: ep.name)


def names(group: str) -> list[str]:
    """Return the sorted plugin names declared for ``group``, importing none of them.

    Example:
        >>> names("utils.no_such_group")
        []
    """
    return sorted({ep.name for ep in _entry_points(group)})


def _distribution_name(entry_point: Any) -> str:
    dist = getattr(entry_point, "dist", None)
    return str(dist.name) if dist is not None else "<unknown distribution>"


def load(group: str) -> dict[str, Any]:
    """Import every plugin of ``group`` and return ``{name: loaded object}``.

    A plugin that fails to import is logged (``plugins.load_failed``, warning, with the
    exception) and left out. Two plugins with one name raise :class:`PluginError`, naming
    both distributions, because silently picking one would hide a packaging mistake.

    Example:
        >>> checks = load("utils.health")
        >>> callable(checks["python"])
        True
    """
    from utils.core.log import get_logger

    seen: dict[str, Any] = {}
    for entry_point in _entry_points(group):
        previous = seen.get(entry_point.name)
        if previous is not None:
            raise PluginError(
                f"two plugins named {entry_point.name!r} in group {group!r}: "
                f"{previous.value} (from {_distribution_name(previous)}) and "
                f"{entry_point.value} (from {_distribution_name(entry_point)}); "
                "uninstall one of the distributions",
                details={"group": group, "name": entry_point.name},
            )
        seen[entry_point.name] = entry_point

    loaded: dict[str, Any] = {}
    for name, entry_point in seen.items():
        try:
            loaded[name] = entry_point.load()
        except Exception as exc:  # isolate a broken plugin; the others still load
            get_logger("utils.core.plugins").warning(
                "plugins.load_failed",
                group=group,
                plugin=name,
                target=entry_point.value,
                distribution=_distribution_name(entry_point),
                error=f"{type(exc).__name__}: {exc}",
            )
    return loaded
