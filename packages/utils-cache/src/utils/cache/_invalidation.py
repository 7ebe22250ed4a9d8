"""The invalidation protocol of the tiered caches: messages, channel names, and L1 bookkeeping.

A message is JSON: ``{"o": origin, "k": [keys]}`` drops those keys from the L1 of every
listener but the sender (``origin``), ``{"o": origin, "all": true}`` flushes it. Keys are
``str``: a tiered cache refuses any other key, which a message could not name.
:class:`Coherence` is the L1 of one cache plus what keeps concurrent fills and
invalidations consistent.

Example:
    >>> encode("cli", ["user:1"])
    '{"o":"cli","k":["user:1"]}'
"""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Iterable, Mapping
from typing import Any

from utils.cache._events import INVALIDATION_UNREADABLE
from utils.core import ValidationError

__all__ = ["Coherence", "check_key", "check_keys", "encode"]


def encode(origin: str, keys: list[str] | None) -> str:
    """The message that drops ``keys`` (None: every key) from the L1 of other listeners.

    Example:
        >>> encode("cli", None)
        '{"o":"cli","all":true}'
    """
    body: dict[str, Any] = {"o": origin}
    if keys is None:
        body["all"] = True
    else:
        body["k"] = keys
    return json.dumps(body, separators=(",", ":"))


def check_key(key: Any) -> None:
    """Refuse a key other processes could not invalidate (messages carry str keys only)."""
    if not isinstance(key, str):
        raise ValidationError(
            f"TieredCache keys must be str, got {type(key).__name__} {key!r}: invalidation "
            "messages carry strings, so other processes would keep serving the old value",
            details={"key": repr(key)},
        )


def check_keys(keys: Iterable[Any]) -> list[str]:
    wanted = list(keys)
    for key in wanted:
        check_key(key)
    return wanted


class Coherence:
    """L1 plus the bookkeeping that keeps concurrent fills and invalidations consistent.

    A read that misses L1 notes the ``epoch``, reads L2, then asks :meth:`fill` to copy the
    value into L1. If the key was invalidated (or L1 flushed) while the read was in flight,
    the value read may be the very one just invalidated, so it is not copied. Each drop
    records the epoch at which it happened, per key; the record is bounded (past
    ``_MAX_DROPPED`` keys it is replaced by a floor that rejects every fill in flight).

    Shared by the cache object and its subscriber. The subscriber holds no reference to the
    cache object, so a forgotten cache can be garbage-collected (which stops its subscriber).
    """

    __slots__ = ("dropped", "epoch", "floor", "l1", "lock", "namespace", "origin")

    _MAX_DROPPED = 4096

    def __init__(self, l1: Any, namespace: str) -> None:
        self.l1 = l1
        self.namespace = namespace
        self.origin = uuid.uuid4().hex
        self.lock = threading.Lock()
        #: Counts invalidations and local writes.
        self.epoch = 0
        #: Fills that started before this epoch are refused (set by a flush).
        self.floor = 0
        #: Key -> epoch of its last invalidation or local write.
        self.dropped: dict[str, int] = {}

    def _stale(self, key: str, epoch: int) -> bool:
        return epoch < self.floor or self.dropped.get(key, 0) > epoch

    def fill(self, key: str, value: Any, ttl: float | None, epoch: int) -> None:
        with self.lock:
            if not self._stale(key, epoch):
                self.l1.set(key, value, ttl)

    def fill_many(self, items: Mapping[str, tuple[Any, float | None]], epoch: int) -> None:
        with self.lock:
            for key, (value, ttl) in items.items():
                if not self._stale(key, epoch):
                    self.l1.set(key, value, ttl)

    def _touch(self, keys: Iterable[str]) -> None:
        """Record that ``keys`` changed now (lock held)."""
        self.epoch += 1
        dropped = self.dropped
        if len(dropped) > self._MAX_DROPPED:
            dropped.clear()
            self.floor = self.epoch
        epoch = self.epoch
        for key in keys:
            dropped[key] = epoch

    def store(self, key: str, value: Any, ttl: float | None) -> None:
        with self.lock:
            self._touch((key,))
            self.l1.set(key, value, ttl)

    def store_many(self, mapping: Mapping[str, Any], ttl: float | None) -> None:
        with self.lock:
            self._touch(mapping)
            self.l1.set_many(mapping, ttl)

    def drop(self, keys: list[str]) -> int:
        with self.lock:
            self._touch(keys)
            return int(self.l1.delete_many(keys))

    def flush(self) -> None:
        with self.lock:
            self.epoch += 1
            self.floor = self.epoch
            self.dropped.clear()
            self.l1.clear()

    def message(self, keys: list[str] | None) -> str:
        """The invalidation message for ``keys`` (None: everything)."""
        return encode(self.origin, keys)

    def apply(self, data: Any) -> None:
        """Apply an invalidation message received from the channel."""
        try:
            body = json.loads(data)
            if body.get("o") == self.origin:
                return  # our own write: L1 already holds the new value
            if body.get("all"):
                self.flush()
                return
            keys = body.get("k")
            if isinstance(keys, list) and keys:
                self.drop([key for key in keys if isinstance(key, str)])
        except (ValueError, TypeError, AttributeError):
            # Not one of ours (someone else publishing on the channel): flushing is the
            # safe reading of a message we cannot understand.
            INVALIDATION_UNREADABLE.emit(cache=self.namespace)
            self.flush()
