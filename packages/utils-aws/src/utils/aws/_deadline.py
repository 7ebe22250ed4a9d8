"""How a call made under :func:`utils.core.deadline` never outlives it (private).

botocore has no per-call timeout: connect and read timeouts belong to the client's
``Config``. So a call under a deadline that leaves less time than one full attempt of the
cached client (connect + read timeout) goes to a *variant* of that client whose timeouts fit
what is left, rounded **down** to a fixed ladder of budgets (at most ``len(LADDER)`` variants
per client, built once and cached). Two event hooks on every client finish the job:

- ``before-send``: no HTTP attempt starts once the deadline has passed;
- ``needs-retry`` (first in line, before botocore's own retry handler): when botocore may
  retry (a connection error, 5xx, 429, throttling) but its worst-case backoff for that
  attempt (standard mode: ``2 ** (attempt - 1)`` seconds, at most 20) plus one full attempt
  no longer fit in the time left, the attempt's error is raised at once, as botocore would
  raise it after its last attempt.

Limits (documented in the guide): the timeouts bound each socket operation, so a server that
keeps trickling bytes of a large body can stretch a read; transfers run by
``upload_file``/``download_file`` use worker threads, which do not see the deadline.
"""

from __future__ import annotations

import time
from typing import Any

from utils.aws.errors import AWSTimeoutError
from utils.core.deadline import DEADLINE

__all__ = ["LADDER", "MIN_BUDGET", "Guard", "bucket_for", "split_budget"]

#: The per-attempt budgets (seconds) a deadline variant can have.
LADDER = (
    0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.6, 0.75, 1.0, 1.25, 1.5, 2.0, 2.5, 3.0,
    4.0, 5.0, 6.0, 7.5, 10.0, 12.5, 15.0, 20.0, 25.0, 30.0, 45.0, 60.0, 90.0, 120.0, 180.0,
    300.0, 600.0,
)  # fmt: skip
#: Below this many seconds left, no AWS call is started.
MIN_BUDGET = LADDER[0]
_MAX_BACKOFF = 20.0


def bucket_for(left: float) -> float | None:
    """The largest budget of the ladder that fits in ``left`` seconds (None: too little)."""
    if left < MIN_BUDGET:
        return None
    low, high = 0, len(LADDER) - 1
    while low < high:  # the last index whose budget <= left
        middle = (low + high + 1) // 2
        if LADDER[middle] <= left:
            low = middle
        else:
            high = middle - 1
    return LADDER[low]


def split_budget(budget: float, connect: float, read: float) -> tuple[float, float]:
    """Connect and read timeouts (each at most the configured one) adding up to ``budget``."""
    connect_part = min(connect, budget / 2)
    return connect_part, min(read, budget - connect_part)


def _would_retry(response: Any) -> bool:
    """Whether botocore's standard policy may retry this answer (5xx, 429, throttling)."""
    from utils.aws.translation import THROTTLING_CODES

    if not isinstance(response, tuple) or len(response) != 2:
        return False
    http, parsed = response
    status = getattr(http, "status_code", 0) or 0
    code = (parsed or {}).get("Error", {}).get("Code") if isinstance(parsed, dict) else None
    return status >= 500 or status == 429 or code in THROTTLING_CODES


class Guard:
    """The two event handlers of one client; ``budget`` = its connect + read timeout."""

    __slots__ = ("budget", "exceptions")

    def __init__(self, budget: float) -> None:
        self.budget = budget
        self.exceptions: Any = None

    def before_send(self, event_name: str = "", **_: Any) -> None:
        at = DEADLINE.get()
        if at is not None and at <= time.monotonic():
            operation = event_name.rsplit(".", 1)[-1]
            raise AWSTimeoutError(
                f"deadline exceeded before sending AWS {operation}",
                details={"operation": operation},
            )

    def needs_retry(
        self,
        attempts: int = 1,
        response: Any = None,
        caught_exception: BaseException | None = None,
        operation: Any = None,
        **_: Any,
    ) -> None:
        """Raise the attempt's error now when another attempt would not fit the deadline.

        Raising (rather than answering "no retry") works the same in every botocore
        version, and spends no retry quota.
        """
        at = DEADLINE.get()
        if at is None or (caught_exception is None and not _would_retry(response)):
            return  # botocore decides
        worst_wait = min(2.0 ** min(attempts - 1, 10), _MAX_BACKOFF)
        if at - time.monotonic() >= worst_wait + self.budget:
            return
        if caught_exception is not None:
            raise caught_exception
        _, parsed = response
        parsed.setdefault("ResponseMetadata", {})["RetryAttempts"] = attempts - 1
        code = str(parsed.get("Error", {}).get("Code", ""))
        name = getattr(operation, "name", "the call")
        raise self.exceptions.from_code(code)(parsed, name)

    def install(self, client: Any) -> None:
        self.exceptions = client.exceptions
        events = client.meta.events
        service = client.meta.service_model.service_id.hyphenize()
        events.register(f"before-send.{service}", self.before_send)
        events.register_first(f"needs-retry.{service}", self.needs_retry)
