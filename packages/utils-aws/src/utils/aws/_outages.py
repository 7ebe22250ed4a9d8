"""One :class:`~utils.core.report.Outage` per AWS service, process-wide (private).

``aws.unavailable`` is logged once when calls to a service start failing as unavailable
(endpoint or connection errors, 5xx after botocore's retries), ``aws.recovered`` once when
one succeeds again. The helpers do not fail fast while a service is down: botocore's retry
quota already limits the retries an outage can cause.
"""

from __future__ import annotations

import os
import threading

from utils.core.report import Outage

__all__ = ["outage_of", "outages", "reset"]

#: The outages seen so far, by service name.
outages: dict[str, Outage] = {}
_lock = threading.Lock()


def outage_of(service: str) -> Outage:
    """The outage tracker of ``service`` (made on first use)."""
    outage = outages.get(service)
    if outage is None:
        with _lock:
            outage = outages.get(service)
            if outage is None:
                outage = Outage(
                    f"aws {service}",
                    events=("aws.unavailable", "aws.recovered"),
                    logger="utils.aws",
                    tags={"service": service},
                )
                outages[service] = outage
    return outage


def _after_fork_in_child() -> None:
    global _lock  # noqa: PLW0603 - a lock held by a parent's thread would never be released
    _lock = threading.Lock()


if hasattr(os, "register_at_fork"):  # pragma: no branch - absent on Windows only
    os.register_at_fork(after_in_child=_after_fork_in_child)


def reset() -> None:
    """Forget every outage (``clear_clients()`` calls it)."""
    with _lock:
        outages.clear()
