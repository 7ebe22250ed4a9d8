"""The loader: S3 objects in, PostgreSQL rows out, each object exactly once.

For every object under the prefix, in key order:

1. skip it if the ``checkpoints`` table has it (a previous run loaded it);
2. read it through the rate limiter (S3 reads per second) with retries on transient errors;
3. parse it (:mod:`pipeline.records`): rows to load and rejected rows;
4. in **one transaction**: COPY the rows into ``order_lines``, COPY the rejects into
   ``rejects``, and insert the object's checkpoint. A crash anywhere before the commit
   leaves no trace of the object; after it, the checkpoint says it is done. So a rerun
   after a crash loads every object exactly once. (The primary keys are the safety net: a
   second copy of an object's rows, or a concurrent run loading the same object, fails
   its transaction instead of duplicating rows.)

Checkpoints are per object key, so an object changed after it was loaded is not reloaded
(that would need its old rows deleted first); it is reported as ``pipeline.object_changed``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from typing import Any

from psycopg import sql

from pipeline.records import (
    COLUMNS,
    REJECT_COLUMNS,
    Parsed,
    Reject,
    format_of,
    parse_object,
)
from utils.aws import S3
from utils.core import ValidationError
from utils.core.report import Event
from utils.db import Database
from utils.resilience import RateLimiter, Retry, retry

__all__ = ["Loader", "ObjectResult", "Summary"]

OBJECT_LOADED = Event("pipeline.object_loaded", logger="pipeline", tags=("format",))
OBJECT_CHANGED = Event("pipeline.object_changed", logger="pipeline", level="warning")
OBJECT_IGNORED = Event("pipeline.object_ignored", logger="pipeline", level="warning")

_DDL = """
CREATE SCHEMA IF NOT EXISTS {schema};
CREATE TABLE IF NOT EXISTS {schema}.order_lines (
    source_key  text          NOT NULL,
    line_no     integer       NOT NULL,
    order_id    text          NOT NULL,
    sku         text          NOT NULL,
    quantity    integer       NOT NULL CHECK (quantity > 0),
    unit_price  numeric(12,2) NOT NULL,
    amount      numeric(16,2) NOT NULL,
    ordered_at  timestamptz   NOT NULL,
    PRIMARY KEY (source_key, line_no)
);
CREATE TABLE IF NOT EXISTS {schema}.rejects (
    source_key  text    NOT NULL,
    line_no     integer NOT NULL,
    reason      text    NOT NULL,
    raw         text    NOT NULL,
    PRIMARY KEY (source_key, line_no)
);
CREATE TABLE IF NOT EXISTS {schema}.checkpoints (
    source_key    text        PRIMARY KEY,
    etag          text        NOT NULL,
    rows_loaded   integer     NOT NULL,
    rows_rejected integer     NOT NULL,
    loaded_at     timestamptz NOT NULL DEFAULT now()
);
"""


@dataclass(frozen=True)
class ObjectResult:
    """What loading one object did."""

    key: str
    rows_loaded: int
    rows_rejected: int


@dataclass
class Summary:
    """What one run did. ``rows_*`` count this run's work only (skipped objects excluded)."""

    objects_seen: int = 0
    objects_loaded: int = 0
    objects_skipped: int = 0
    objects_ignored: int = 0
    rows_read: int = 0
    rows_loaded: int = 0
    rows_rejected: int = 0
    seconds: float = 0.0

    @property
    def rows_per_second(self) -> float:
        """Throughput: rows read per second of the run."""
        return self.rows_read / self.seconds if self.seconds > 0 else 0.0

    def as_dict(self) -> dict[str, Any]:
        """The summary as JSON-ready values."""
        return {**asdict(self), "rows_per_second": round(self.rows_per_second, 1)}


#: Called with (objects done, objects to do, rows read so far) after each object.
Progress = Callable[[int, int, int], None]


class Loader:
    """Loads the objects under a prefix of ``bucket`` into ``schema`` of ``db``.

    Args:
        db: An open :class:`~utils.db.Database`.
        bucket: The source bucket.
        schema: Where ``order_lines``, ``rejects`` and ``checkpoints`` live (created if
            missing).
        limiter: Paces S3 reads (each read attempt takes one token).
        read_retry: Retries a read on transient errors (throttling, 5xx, lost connections).
        load_retry: Retries an object's transaction on transient database errors (the
            transaction rolled back, so running it again is safe).
        after_copy: A test hook, called with the object's number (1-based) after its rows
            were copied and before its transaction commits: raise, or exit the process,
            to simulate a crash at the worst moment.
    """

    def __init__(
        self,
        db: Database,
        bucket: S3,
        *,
        schema: str,
        limiter: RateLimiter,
        read_retry: Retry | None = None,
        load_retry: Retry | None = None,
        after_copy: Callable[[int], None] | None = None,
    ) -> None:
        self.db = db
        self.bucket = bucket
        self.schema = schema
        self.limiter = limiter
        self.read_retry = read_retry or retry(attempts=5, initial=0.2, maximum=5.0)
        self.load_retry = load_retry or retry(attempts=3, initial=0.5, maximum=5.0)
        self.after_copy = after_copy
        self.lines_table = (schema, "order_lines")
        self.rejects_table = (schema, "rejects")
        self.checkpoints_table = (schema, "checkpoints")

    def ensure_schema(self) -> None:
        """Create the schema and its tables if they do not exist."""
        self.db.execute(sql.SQL(_DDL).format(schema=sql.Identifier(self.schema)))

    def done(self) -> dict[str, str]:
        """The objects already loaded, by key, with the ETag they had."""
        query = sql.SQL("SELECT source_key, etag FROM {}").format(
            sql.Identifier(*self.checkpoints_table)
        )
        return {row["source_key"]: row["etag"] for row in self.db.fetch_all(query)}

    def run(self, prefix: str = "", progress: Progress | None = None) -> Summary:
        """Load every object under ``prefix`` that is not loaded yet; return the summary."""
        started = time.perf_counter()
        self.ensure_schema()
        summary = Summary()
        done = self.done()
        todo = []
        for obj in self.bucket.iter_objects(prefix):
            key, etag = obj["Key"], obj["ETag"]
            summary.objects_seen += 1
            if format_of(key) is None:
                summary.objects_ignored += 1
                OBJECT_IGNORED.emit(key=key, reason="unknown suffix")
            elif key in done:
                summary.objects_skipped += 1
                if done[key] != etag:
                    OBJECT_CHANGED.emit(key=key, loaded_etag=done[key], etag=etag)
            else:
                todo.append((key, etag))
        if progress is not None:
            progress(0, len(todo), 0)
        for number, (key, etag) in enumerate(todo, 1):
            result = self.load_object(key, etag, number)
            summary.objects_loaded += 1
            summary.rows_loaded += result.rows_loaded
            summary.rows_rejected += result.rows_rejected
            summary.rows_read += result.rows_loaded + result.rows_rejected
            if progress is not None:
                progress(number, len(todo), summary.rows_read)
        summary.seconds = time.perf_counter() - started
        return summary

    def read(self, key: str) -> bytes:
        """One object's bytes, paced by the limiter and retried on transient errors."""
        return self.read_retry.call(self._read_once, key)

    def _read_once(self, key: str) -> bytes:
        self.limiter.acquire()
        return self.bucket.get_bytes(key)

    def load_object(self, key: str, etag: str, number: int = 1) -> ObjectResult:
        """Read and parse one object, then load it and its checkpoint in one transaction.

        The read has its own retries; only the transaction is retried by ``load_retry``, so
        the two budgets never multiply.
        """
        try:
            parsed = parse_object(key, self.read(key))
        except ValidationError as exc:
            # The object as a whole is unreadable (not UTF-8, a CSV without its header):
            # one reject says why, and the checkpoint keeps the next run from retrying it.
            parsed = Parsed([], [Reject(0, str(exc), "")])
        self.load_retry.call(self._store, key, etag, number, parsed)
        OBJECT_LOADED.emit(
            format=format_of(key), key=key, rows=len(parsed.rows), rejected=len(parsed.rejects)
        )
        return ObjectResult(key, len(parsed.rows), len(parsed.rejects))

    def _store(self, key: str, etag: str, number: int, parsed: Parsed) -> None:
        rejects = [(key, r.line_no, r.reason, r.raw) for r in parsed.rejects]
        with self.db.transaction():
            self.db.copy_records(self.lines_table, COLUMNS, parsed.rows)
            self.db.copy_records(self.rejects_table, REJECT_COLUMNS, rejects)
            if self.after_copy is not None:
                self.after_copy(number)
            self.db.insert(
                self.checkpoints_table,
                {
                    "source_key": key,
                    "etag": etag,
                    "rows_loaded": len(parsed.rows),
                    "rows_rejected": len(rejects),
                },
            )

    def rejects(self, prefix: str = "") -> Iterable[dict[str, Any]]:
        """Every rejected row of the objects under ``prefix``, in key and line order.

        Read from the ``rejects`` table, which each object's transaction fills: the file
        written from it is exact however many runs and crashes it took.
        """
        query = sql.SQL(
            "SELECT source_key, line_no, reason, raw FROM {} "
            "WHERE starts_with(source_key, %s) ORDER BY source_key, line_no"
        ).format(sql.Identifier(*self.rejects_table))
        return self.db.stream(query, [prefix])
