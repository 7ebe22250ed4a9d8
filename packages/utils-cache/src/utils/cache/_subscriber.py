"""The invalidation subscribers of the tiered caches: a daemon thread, or a task of the loop.

Each listens on the cache's channel and applies the messages to its
:class:`~utils.cache._invalidation.Coherence`; whenever it (re)subscribes it flushes L1
(what was sent while nobody listened is lost). A lost connection is retried with backoff and
reported once (``cache.invalidation_lost`` / ``cache.invalidation_resumed``); a connection
that silently stops delivering is found by an idle-time PING. A thread subscriber made
before ``fork()`` starts again in the child; a task subscriber follows the event loop that
uses its cache.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
import uuid
from typing import Any

import redis.exceptions

from utils.cache._events import CACHE_ERROR, invalidation_outage
from utils.cache._invalidation import Coherence
from utils.core.forksafe import reset_after_fork

__all__ = ["Subscriber", "TaskSubscriber", "ThreadSubscriber"]


class Subscriber:
    """Connection bookkeeping shared by the thread and the task subscribers."""

    #: First and largest pause between reconnection attempts (seconds).
    backoff_min = 0.05
    backoff_max = 1.0
    #: Idle seconds after which the subscriber PINGs; no reply within as long again
    #: counts as a lost connection (a half-open TCP connection delivers nothing).
    ping_interval = 10.0
    #: Seconds one poll of the connection blocks (bounds how long ``close`` waits).
    poll = 1.0

    def __init__(self, coherence: Coherence, channel: str) -> None:
        self.coherence = coherence
        self.channel = channel
        self.backoff = self.backoff_min
        self.subscriptions = 0
        #: ``cache.invalidation_lost`` once when the connection goes, ``..._resumed`` once back.
        self.outage = invalidation_outage(coherence.namespace)

    @property
    def in_outage(self) -> bool:
        """Whether the subscriber has lost its connection and not listened since."""
        return self.outage.down

    def on_subscribed(self) -> None:
        # Invalidations sent while we were not subscribed are lost: drop everything.
        self.coherence.flush()
        self.subscriptions += 1
        self.backoff = self.backoff_min
        self.outage.succeeded(channel=self.channel, l1_flushed=True)

    def on_lost(self, exc: BaseException) -> float:
        """Record a lost connection; return the pause before the next attempt."""
        CACHE_ERROR.emit(cache=self.coherence.namespace, op="subscribe", reason="unavailable")
        self.outage.failed(exc, channel=self.channel)
        pause = self.backoff
        self.backoff = min(self.backoff * 2, self.backoff_max)
        return pause

    @staticmethod
    def check_silence(pinged: bool) -> None:
        """Raise when an idle connection did not even answer our PING: it is dead."""
        if pinged:
            raise redis.exceptions.ConnectionError("no reply to PING")

    def handle(self, message: dict[str, Any]) -> None:
        kind = message.get("type")
        if kind == "subscribe":
            self.on_subscribed()
        elif kind == "message":
            self.coherence.apply(message.get("data"))


class ThreadSubscriber(Subscriber):
    def __init__(self, coherence: Coherence, channel: str, client: Any) -> None:
        super().__init__(coherence, channel)
        self.client = client
        self.stopping = threading.Event()
        self.subscribed = threading.Event()
        self.thread = self._new_thread()
        # A forked child has no listener thread: restart one (utils.core.forksafe's hook).
        reset_after_fork(self, ThreadSubscriber.restart_in_child)

    def _new_thread(self) -> threading.Thread:
        return threading.Thread(
            target=self.run, name=f"utils-cache-invalidation[{self.channel}]", daemon=True
        )

    def restart_in_child(self) -> None:
        """After ``fork()``: the child has no subscriber thread; give it one.

        A cache made before a pre-forking server (gunicorn ``--preload``) forks its workers
        would otherwise never hear an invalidation in them. Locks and events are made anew
        (a thread that no longer exists may have held them at the fork), and so is the
        origin id (the parent's messages are not the child's own); redis-py gives the child
        fresh connections; the new subscription flushes the L1 inherited from the parent.
        """
        if self.stopping.is_set():
            return
        self.stopping = threading.Event()
        self.subscribed = threading.Event()
        self.coherence.lock = threading.Lock()
        self.coherence.origin = uuid.uuid4().hex
        self.outage = invalidation_outage(self.coherence.namespace)
        self.thread = self._new_thread()
        self.thread.start()

    def run(self) -> None:
        while not self.stopping.is_set():
            pubsub = self.client.pubsub()
            try:
                pubsub.subscribe(self.channel)
                self.listen(pubsub)
            except Exception as exc:  # the subscriber must outlive any Redis failure
                self.subscribed.clear()
                self.stopping.wait(self.on_lost(exc))
            finally:
                with contextlib.suppress(Exception):
                    pubsub.close()

    def listen(self, pubsub: Any) -> None:
        last_seen = time.monotonic()
        pinged = False
        while not self.stopping.is_set():
            message = pubsub.get_message(timeout=self.poll)
            now = time.monotonic()
            if message is None:
                if now - last_seen >= self.ping_interval:
                    self.check_silence(pinged)
                    pubsub.ping()
                    pinged, last_seen = True, now
                continue
            pinged, last_seen = False, now
            self.handle(message)
            if message.get("type") == "subscribe":
                self.subscribed.set()

    def stop(self) -> None:
        self.stopping.set()


class TaskSubscriber(Subscriber):
    """The subscriber of an async cache: a task of the loop that uses the cache.

    The task lives and dies with its event loop. When the cache is used from another loop
    (a second ``asyncio.run()``), the subscriber starts again on that loop: the old task is
    cancelled if its loop still runs, L1 is flushed (nothing listened in between), and
    :meth:`AsyncTieredCache.wait_subscribed` waits for the new subscription.
    """

    def __init__(self, coherence: Coherence, channel: str, client: Any) -> None:
        super().__init__(coherence, channel)
        self.client = client
        self.subscribed = asyncio.Event()
        self.task: asyncio.Task[None] | None = None
        self.closed = False

    def start(self) -> None:
        if self.closed:
            return
        loop = asyncio.get_running_loop()
        task = self.task
        if task is not None:
            if task.get_loop() is loop and not task.done():
                return  # the hot case: running on this loop
            self._abandon(task)
        self.subscribed = asyncio.Event()
        self.task = loop.create_task(
            self.run(self.subscribed), name=f"utils-cache-invalidation[{self.channel}]"
        )

    def _abandon(self, task: asyncio.Task[None]) -> None:
        """Forget a task of another (or a finished) loop; nothing listened meanwhile."""
        self.task = None
        self.coherence.flush()
        if not task.done():
            with contextlib.suppress(RuntimeError):  # its loop is already closed
                task.get_loop().call_soon_threadsafe(task.cancel)

    def listening(self) -> bool:
        """True when a task of the running loop is subscribed."""
        task = self.task
        return (
            task is not None
            and not task.done()
            and task.get_loop() is asyncio.get_running_loop()
            and self.subscribed.is_set()
        )

    def cancel_soon(self) -> None:
        """Cancel the task from any thread (the cache was garbage-collected)."""
        self.closed = True
        task = self.task
        if task is not None and not task.done():
            with contextlib.suppress(RuntimeError):  # its loop is already closed
                task.get_loop().call_soon_threadsafe(task.cancel)

    async def run(self, subscribed: asyncio.Event) -> None:
        try:
            while True:
                pubsub = self.client.pubsub()
                try:
                    await pubsub.subscribe(self.channel)
                    await self.listen(pubsub, subscribed)
                except Exception as exc:  # the subscriber must outlive any Redis failure
                    subscribed.clear()
                    await asyncio.sleep(self.on_lost(exc))
                finally:
                    with contextlib.suppress(Exception):
                        closing = getattr(pubsub, "aclose", None) or pubsub.close
                        await closing()
        finally:
            # Cancelled: aclose(), or the loop is ending (asyncio.run cancels its tasks).
            # From now on nothing listens: whatever L1 holds may be invalidated unheard.
            subscribed.clear()
            self.coherence.flush()

    async def listen(self, pubsub: Any, subscribed: asyncio.Event) -> None:
        pinged = False
        while True:
            message = await pubsub.get_message(timeout=self.ping_interval)
            if message is not None:
                pinged = False
                self.handle(message)
                if message.get("type") == "subscribe":
                    subscribed.set()
                continue
            self.check_silence(pinged)
            await pubsub.ping()
            pinged = True

    async def stop(self) -> None:
        self.closed = True
        task, self.task = self.task, None
        if task is None or task.done():
            return
        if task.get_loop() is not asyncio.get_running_loop():
            self._abandon(task)
            return
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
