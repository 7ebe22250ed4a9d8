"""LISTEN as an iterator (sync) and an async iterator, reconnecting after connection loss."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import psycopg

from utils.db import _sql
from utils.db._core import DatabaseCore
from utils.db._types import Notification

__all__ = ["alisten", "listen"]


def _note(received: Any) -> Notification:
    return Notification(received.channel, received.payload, received.pid)


def listen(core: DatabaseCore, channel: str) -> Iterator[Notification]:
    """Yield the notifications of ``channel``; reconnect (with backoff) when the link drops.

    The first connection must work: a wrong DSN or password raises at once (translated)
    instead of retrying forever.
    """
    statement = _sql.listen_sql(channel)
    attempt = -1
    while True:
        try:
            with psycopg.connect(core.conninfo, **core.connect_kwargs()) as conn:
                conn.execute(statement)
                attempt = 0
                for received in conn.notifies():
                    yield _note(received)
        except psycopg.OperationalError as exc:
            time.sleep(core.listen_lost(exc, attempt))
            attempt = max(attempt, 0) + 1


async def alisten(core: DatabaseCore, channel: str) -> AsyncIterator[Notification]:
    """The async twin of :func:`listen`."""
    statement = _sql.listen_sql(channel)
    attempt = -1
    while True:
        try:
            conn = await psycopg.AsyncConnection.connect(core.conninfo, **core.connect_kwargs())
            async with conn:
                await conn.execute(statement)
                attempt = 0
                async for received in conn.notifies():
                    yield _note(received)
        except psycopg.OperationalError as exc:
            await asyncio.sleep(core.listen_lost(exc, attempt))
            attempt = max(attempt, 0) + 1
