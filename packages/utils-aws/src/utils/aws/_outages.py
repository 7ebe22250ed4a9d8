"""One :class:`~utils.core.report.Outage` per AWS service, process-wide (private).

``aws.unavailable`` is logged once when calls to a service start failing as unavailable
(endpoint or connection errors, 5xx after botocore's retries), ``aws.recovered`` once when
one succeeds again. The helpers do not fail fast while a service is down: botocore's retry
quota already limits the retries an outage can cause.
"""

from __future__ import annotations

import threading

from utils.core.forksafe import reset_after_fork
from utils.core.report import Outage

__all__ = ["outage_of", "outages", "reset"]

#: The outages seen so far, by service name.
outages: dict[str, Outage] = {}


class _Guard:
    """The lock of :data:`outages`, replaced in a forked child (utils.core.forksafe)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        reset_after_fork(self, _Guard.__init__)


_guard = _Guard()


def outage_of(service: str) -> Outage:
    """The outage tracker of ``service`` (made on first use)."""
    outage = outages.get(service)
    if outage is None:
        with _guard.lock:
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


def reset() -> None:
    """Forget every outage (``clear_clients()`` calls it)."""
    with _guard.lock:
        outages.clear()
