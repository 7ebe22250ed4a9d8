"""The orders service: a FastAPI application built on the utils family (an example).

Run it with ``python -m orders_service`` (settings from ``ORDERS_*`` variables); the
application factory is :func:`orders_service.app.create_app`.
"""

from __future__ import annotations

__all__: list[str] = []
