"""The clock and the sleeps every strategy uses unless given its own.

Strategies look these up at call time (``_timing.sleep(...)``), so
:func:`utils.resilience.testing.instant_retries` can turn every wait into a no-op for a test
without each strategy knowing about it. All local timing is ``time.monotonic``: jumping the
wall clock changes nothing.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

Clock = Callable[[], float]
Sleep = Callable[[float], None]
AsyncSleep = Callable[[float], Awaitable[None]]

clock: Clock = time.monotonic
sleep: Sleep = time.sleep
asleep: AsyncSleep = asyncio.sleep
