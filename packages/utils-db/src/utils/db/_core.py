"""The I/O-free core shared by :class:`Database` and :class:`AsyncDatabase`.

Everything that is not a network call lives here once: option checks, the connection
string, the transaction contextvar and its SQL (BEGIN / SAVEPOINT / COMMIT), the
``statement_timeout`` each statement needs, error translation and outage bookkeeping,
metrics, the retry plan of :meth:`run_in_transaction`, and the SQL of ``insert``,
``upsert`` and ``COPY``. The two shells only send what the core tells them to send.
"""

from __future__ import annotations

import math
import random
import re
import time
from collections.abc import Callable, Mapping
from contextvars import ContextVar, Token
from dataclasses import dataclass, field
from itertools import count
from typing import Any, Literal, Protocol

from psycopg.rows import class_row, dict_row

from utils.core import ConfigError, ValidationError
from utils.core.deadline import DEADLINE, clamp_timeout
from utils.core.report import Event, Outage
from utils.core.validate import duration, flag, non_negative_int, positive, positive_int
from utils.db._dsn import redact_dsn
from utils.db._translate import is_connection_loss, translate
from utils.db.errors import (
    CommitUnknownError,
    DatabaseError,
    DatabaseUnavailableError,
    LockTimeoutError,
    PoolTimeoutError,
    QueryTimeoutError,
    TransactionStateError,
)
from utils.db.settings import PostgresSettings

__all__ = ["DatabaseCore", "Frame", "RetryPlan", "TxState"]

Isolation = Literal["read committed", "repeatable read", "serializable"]
ISOLATIONS: tuple[str, ...] = ("read committed", "repeatable read", "serializable")

QUERY = Event("db.query", logger="utils.db", level=None, tags=("db", "op"), metric="observe")
ERROR = Event("db.error", logger="utils.db", level=None, tags=("db", "op", "code"))
RETRY = Event("db.retry", logger="utils.db", level="info", tags=("db", "reason"))
GAVE_UP = Event("db.retry_gave_up", logger="utils.db", level="warning", tags=("db", "reason"))
LISTEN_LOST = Event("db.listen_lost", logger="utils.db", level="warning", tags=("db",))
COMMIT_UNKNOWN = Event("db.commit_unknown", logger="utils.db", level="error", tags=("db",))
POOL_SIZE = Event("db.pool_size", logger="utils.db", level=None, tags=("db",), metric="gauge")
POOL_AVAILABLE = Event(
    "db.pool_available", logger="utils.db", level=None, tags=("db",), metric="gauge"
)
POOL_WAITING = Event(
    "db.pool_waiting", logger="utils.db", level=None, tags=("db",), metric="gauge"
)

#: Statements that can change session state a later caller would inherit. A connection that
#: ran one is reset (without DISCARD ALL) before it goes back to the pool.
_SESSION_CHANGE = re.compile(
    r"(?:^|;)\s*(?:set|reset|listen|declare|prepare|load|discard|lock)\b"
    r"|advisory|set_config|\btemp(?:orary)?\b",
    re.IGNORECASE,
)
#: What a dirty connection runs on its way back to the pool: DISCARD ALL minus
#: DEALLOCATE ALL, which would drop psycopg's prepared statements behind its back.
RESET_SQL = (
    "CLOSE ALL; SET SESSION AUTHORIZATION DEFAULT; RESET ALL; UNLISTEN *; "
    "SELECT pg_advisory_unlock_all(); DISCARD PLANS; DISCARD TEMP; DISCARD SEQUENCES"
)


class Flags(Protocol):
    """What the core keeps on a pooled connection (both connection classes have it)."""

    utils_dirty: bool
    utils_timeout: int | None


@dataclass
class LockPlan:
    """What :meth:`advisory_lock` sends."""

    key: int | str
    timeout: float | None
    params: list[Any]
    acquire: list[tuple[str, list[Any] | None]]
    release: str
    connect: dict[str, Any]


@dataclass
class TxState:
    """The transaction a task or thread is in: its connection and savepoint depth."""

    conn: Any
    owner: object
    depth: int = 0


@dataclass
class Frame:
    """One ``transaction()`` block: the SQL to open, commit and roll it back."""

    begin: str
    commit: str
    rollback: str
    state: TxState
    token: Token[TxState | None] | None = None
    var: ContextVar[TxState | None] | None = field(default=None, repr=False)

    def close(self) -> None:
        """Leave the block: the outermost one forgets the transaction."""
        if self.token is not None and self.var is not None:
            self.var.reset(self.token)
            self.token = None
        else:
            self.state.depth -= 1


class RetryPlan:
    """Backoff of :meth:`run_in_transaction`: full jitter, capped, inside the deadline.

    Example:
        >>> plan = RetryPlan("db", attempts=3, base=0.01, cap=0.1, rng=lambda: 0.5)
        >>> from utils.db.errors import SerializationError
        >>> plan.backoff(SerializationError("conflict"))
        0.005
    """

    __slots__ = ("attempt", "attempts", "base", "cap", "name", "rng")

    def __init__(
        self, name: str, *, attempts: int, base: float, cap: float, rng: Callable[[], float]
    ) -> None:
        self.name = name
        self.attempts = positive_int(attempts, "attempts")
        self.base = base
        self.cap = cap
        self.rng = rng
        self.attempt = 1

    def backoff(self, error: DatabaseError) -> float:
        """Seconds to sleep before the next attempt; raises ``error`` when there is none."""
        reason = error.code
        ceiling = min(self.cap, self.base * 2 ** (self.attempt - 1))
        delay = ceiling * self.rng()
        at = DEADLINE.get()
        left = None if at is None else at - time.monotonic()
        if self.attempt >= self.attempts or (left is not None and left <= delay):
            why = (
                f"gave up after {self.attempt} attempts"
                if self.attempt >= self.attempts
                else f"gave up after {self.attempt} attempts: the deadline leaves no time"
            )
            add_note(error, f"utils.db: {why} ({reason})")
            GAVE_UP.emit(db=self.name, reason=reason, attempts=self.attempt)
            raise error
        RETRY.emit(db=self.name, reason=reason, attempt=self.attempt, delay=round(delay, 4))
        self.attempt += 1
        return float(delay)


def add_note(error: BaseException, note: str) -> None:
    """``error.add_note(note)``, also on Python 3.10."""
    adder = getattr(error, "add_note", None)
    if adder is not None:
        adder(note)
    else:  # pragma: no cover - Python 3.10
        error.__notes__ = [*getattr(error, "__notes__", []), note]  # type: ignore[attr-defined]


class DatabaseCore:
    """Configuration and every decision of a database, shared by both shells."""

    def __init__(
        self,
        dsn_or_settings: str | PostgresSettings,
        *,
        owner: Callable[[], object],
        min_size: int | None,
        max_size: int | None,
        timeout: float | None,
        max_idle: float | None,
        max_lifetime: float | None,
        application_name: str | None,
        pgbouncer: bool | None,
        statement_timeout: float | None,
        name: str | None,
        probe_interval: float,
        retry_backoff: float,
        retry_cap: float,
        rng: Callable[[], float],
    ) -> None:
        if isinstance(dsn_or_settings, PostgresSettings):
            settings = dsn_or_settings
        elif isinstance(dsn_or_settings, str):
            from utils.core import Secret

            settings = PostgresSettings(dsn=Secret(dsn_or_settings))
        else:
            raise ValidationError(
                "Database needs a DSN string (postgresql://... or key=value) or a "
                f"PostgresSettings, got {type(dsn_or_settings).__name__}"
            )
        try:
            self.conninfo = settings.conninfo()
        except Exception:  # psycopg's message may quote part of the DSN: say it without it
            raise ConfigError(
                "the DSN cannot be parsed: use postgresql://user@host:port/dbname or "
                "'host=... dbname=...' (the DSN is not shown: it may contain a password)"
            ) from None
        # 0 is psycopg_pool's too: no idle connection (a health-check pool, a rare job).
        self.min_size = non_negative_int(_pick(min_size, settings.min_size), "min_size")
        self.max_size = positive_int(_pick(max_size, settings.max_size), "max_size")
        if self.max_size < self.min_size:
            raise ValidationError(
                f"max_size ({self.max_size}) must be >= min_size ({self.min_size})"
            )
        self.timeout = positive(_pick(timeout, settings.timeout), "timeout")
        self.max_idle = positive(_pick(max_idle, settings.max_idle), "max_idle")
        self.max_lifetime = positive(_pick(max_lifetime, settings.max_lifetime), "max_lifetime")
        self.pgbouncer = flag(_pick(pgbouncer, settings.pgbouncer), "pgbouncer")
        limit = duration(
            _pick(statement_timeout, settings.statement_timeout),
            "statement_timeout",
            allow_zero=False,
        )
        self.statement_timeout_ms = None if limit is None else max(1, math.ceil(limit * 1000))
        self.application_name = application_name or settings.application_name
        self.name = name or _db_name(self.conninfo)
        self.shown = _describe(self.conninfo)
        self.retry_backoff = positive(retry_backoff, "retry_backoff")
        self.retry_cap = positive(retry_cap, "retry_cap")
        self.rng = rng
        self.owner = owner
        self.var: ContextVar[TxState | None] = ContextVar(f"utils_db_tx_{id(self)}", default=None)
        self.outage = Outage(
            "postgres",
            events=("db.unavailable", "db.recovered"),
            logger="utils.db",
            tags={"db": self.name},
            probe_interval=probe_interval,
        )
        self.timed = {op: QUERY.bind(db=self.name, op=op) for op in _OPERATIONS}
        self.savepoints = count(1)
        self.connect_errors = 0
        self._rows: dict[type[Any], Any] = {}
        #: statement text -> whether it may change session state (a bounded cache)
        self._changes: dict[str, bool] = {}

    # -- pool ------------------------------------------------------------------------------

    def pool_options(self) -> dict[str, Any]:
        """Keyword arguments of psycopg_pool's ``ConnectionPool`` / ``AsyncConnectionPool``."""
        kwargs: dict[str, Any] = {"autocommit": True}
        # pgbouncer in transaction mode hands each transaction another server connection:
        # prepared statements would not be there.
        kwargs["prepare_threshold"] = None if self.pgbouncer else 5
        if self.application_name:
            kwargs["application_name"] = self.application_name
        if self.statement_timeout_ms is not None:
            kwargs["options"] = f"-c statement_timeout={self.statement_timeout_ms}"
        return {
            "kwargs": kwargs,
            "min_size": self.min_size,
            "max_size": self.max_size,
            "timeout": self.timeout,
            "max_idle": self.max_idle,
            "max_lifetime": self.max_lifetime,
            "name": self.name,
            "open": False,
        }

    def checkout_timeout(self) -> float:
        """How long a checkout may wait; raises at once during a known outage or past the deadline."""
        outage = self.outage
        if outage.down and not outage.allow():
            raise DatabaseUnavailableError(
                f"database {self.shown} is unavailable (failing fast until the next probe)",
                details={"db": self.name},
                retry_after=outage.retry_after(),
            )
        at = DEADLINE.get()
        if at is None:
            return self.timeout
        left = at - time.monotonic()
        if left <= 0.0:
            raise QueryTimeoutError(
                "deadline exceeded before getting a connection", details={"db": self.name}
            )
        return left if left < self.timeout else self.timeout

    def pool_timeout(self, waited: float, stats: Mapping[str, int]) -> DatabaseError:
        """The error for psycopg_pool's ``PoolTimeout``: exhausted pool, or database down."""
        errors = stats.get("connections_errors", 0)
        details = {
            "db": self.name,
            "min_size": self.min_size,
            "max_size": self.max_size,
            "wait_seconds": round(waited, 3),
            "pool_size": stats.get("pool_size", 0),
            "waiting": stats.get("requests_waiting", 0),
        }
        if errors > self.connect_errors:
            self.connect_errors = errors
            error = PoolTimeoutError(
                f"could not get a connection to {self.shown} within {waited:.2f}s: the "
                f"database is not accepting connections (pool max_size={self.max_size})",
                details=details,
            )
            self.outage.failed(error)
            return error
        return PoolTimeoutError(
            f"no pooled connection to {self.shown} became free within {waited:.2f}s "
            f"(pool max_size={self.max_size}, all in use): raise max_size, or shorten "
            "transactions and stop holding connections while waiting on other work",
            details=details,
        )

    def pool_closed(self) -> DatabaseError:
        """The error for a call on a database that is not open."""
        return DatabaseError(
            f"database {self.shown} is not open: use `with Database(...) as db:` "
            "(or `async with AsyncDatabase(...)`), or call open() first",
            code="pool_closed",
        )

    # -- statements ------------------------------------------------------------------------

    def joined(self) -> TxState | None:
        """The transaction of the calling thread or task, if any."""
        state = self.var.get()
        if state is not None and state.owner == self.owner():
            return state
        return None

    def setup(self, conn: Flags, text: object, state: TxState | None, op: str) -> str | None:
        """Note session changes; return the SET needed to cap ``statement_timeout``, if any.

        ``text`` is the caller's SQL (None for SQL utils.db composed itself).
        """
        if text is not None and not conn.utils_dirty and self._changes_session(text):
            conn.utils_dirty = True
        at = DEADLINE.get()
        if at is None:
            if state is None and conn.utils_timeout is not None:
                conn.utils_timeout = None
                return "RESET statement_timeout"
            return None
        left = at - time.monotonic()
        if left <= 0.0:
            raise QueryTimeoutError(
                f"deadline exceeded before the {op} statement",
                details={"db": self.name, "operation": op},
            )
        ms = max(1, math.ceil(left * 1000))
        if self.statement_timeout_ms is not None and self.statement_timeout_ms < ms:
            ms = self.statement_timeout_ms
        if state is not None:
            return f"SET LOCAL statement_timeout = {ms}"
        conn.utils_timeout = ms
        return f"SET statement_timeout = {ms}"

    def _changes_session(self, text: object) -> bool:
        """Whether a caller's statement may change session state (cached per statement)."""
        if not isinstance(text, str):
            return True  # bytes, composed SQL, a raw connection: assume it does
        changes = self._changes.get(text)
        if changes is None:
            changes = _SESSION_CHANGE.search(text) is not None
            if len(self._changes) < 1024:  # the statements of an application: bounded
                self._changes[text] = changes
        return changes

    def failed(self, exc: BaseException, op: str) -> DatabaseError:
        """Translate a psycopg error; record it (metric, outage)."""
        error = translate(exc, operation=op)
        error.details["db"] = self.name
        ERROR.emit(db=self.name, op=op, code=error.code)
        return error

    def done(self, op: str, started: float) -> None:
        """Record a statement that worked: its duration, and the end of any outage."""
        self.timed[op](time.perf_counter() - started)
        if self.outage.down:
            self.outage.succeeded()

    def rows(self, as_: type[Any] | None) -> Any:
        """The psycopg row factory: dicts, or instances of ``as_`` (a dataclass or any class)."""
        if as_ is None:
            return dict_row
        factory = self._rows.get(as_)
        if factory is None:
            if not callable(as_):
                raise ValidationError(f"as_ must be a class (a dataclass), got {as_!r}")
            factory = self._rows[as_] = class_row(as_)
        return factory

    # -- transactions ----------------------------------------------------------------------

    def begin(
        self, conn: Any, state: TxState | None, isolation: str | None, readonly: bool
    ) -> Frame:
        """Open a ``transaction()`` block: a transaction, or a savepoint inside one."""
        if isolation is not None and isolation not in ISOLATIONS:
            raise ValidationError(
                f"isolation must be one of {ISOLATIONS} or None, got {isolation!r}"
            )
        flag(readonly, "readonly")
        if state is not None:
            if isolation is not None or readonly:
                raise TransactionStateError(
                    "isolation and readonly can only be set on the outermost transaction(); "
                    "this one is nested (a savepoint)"
                )
            state.depth += 1
            name = f"utils_sp_{next(self.savepoints)}"
            return Frame(
                f"SAVEPOINT {name}",
                f"RELEASE SAVEPOINT {name}",
                f"ROLLBACK TO SAVEPOINT {name}; RELEASE SAVEPOINT {name}",
                state,
            )
        begin = "BEGIN"
        if isolation is not None:
            begin += f" ISOLATION LEVEL {isolation.upper()}"
        if readonly:
            begin += " READ ONLY"
        fresh = TxState(conn, self.owner())
        return Frame(begin, "COMMIT", "ROLLBACK", fresh, self.var.set(fresh), self.var)

    def commit_failed(self, exc: BaseException, frame: Frame) -> DatabaseError:
        """The error for a failed COMMIT: unknown outcome when the connection died."""
        if frame.commit == "COMMIT" and is_connection_loss(exc):
            COMMIT_UNKNOWN.emit(db=self.name, error=type(exc).__name__)
            return CommitUnknownError(
                "the connection was lost during COMMIT: the transaction may or may not have "
                "committed; check before re-running it (never retried automatically)",
                details={"db": self.name, "operation": "commit"},
            )
        return self.failed(exc, "commit")

    def retry_plan(self, attempts: int, isolation: str | None) -> RetryPlan:
        """Start :meth:`run_in_transaction`; refuse inside an outer transaction."""
        if self.joined() is not None:
            raise TransactionStateError(
                "run_in_transaction() inside a transaction would only retry a savepoint, not "
                "the transaction that conflicted: call it outside any transaction() block"
            )
        if isolation is not None and isolation not in ISOLATIONS:
            raise ValidationError(
                f"isolation must be one of {ISOLATIONS} or None, got {isolation!r}"
            )
        return RetryPlan(
            self.name, attempts=attempts, base=self.retry_backoff, cap=self.retry_cap, rng=self.rng
        )

    def cursor_name(self) -> str:
        """A fresh name for a server-side cursor of :meth:`stream`."""
        return f"utils_cursor_{next(self.savepoints)}"

    @staticmethod
    def types_of(cursor: Any) -> list[int]:
        """The type OIDs of a described cursor (for binary COPY's ``set_types``)."""
        return [column.type_code for column in cursor.description]

    # -- locks, listen, health -------------------------------------------------------------

    def connect_kwargs(self) -> dict[str, Any]:
        """Keyword arguments of a dedicated (non-pooled) connection."""
        waited = clamp_timeout(self.timeout, "connecting to PostgreSQL")
        return {
            **self.pool_options()["kwargs"],
            "connect_timeout": max(1, math.ceil(waited or 0)),
        }

    def lock_plan(self, key: int | str, timeout: float | None) -> LockPlan:
        """The statements of :meth:`advisory_lock`."""
        if isinstance(key, bool) or not isinstance(key, int | str):
            raise ValidationError(f"advisory lock key must be an int or a str, got {key!r}")
        if isinstance(key, int) and not -(2**63) <= key < 2**63:
            raise ValidationError(f"advisory lock key must fit in a bigint, got {key!r}")
        expr = "%s::bigint" if isinstance(key, int) else "hashtextextended(%s, 0)"
        limit = clamp_timeout(duration(timeout, "timeout"), "pg_advisory_lock")
        acquire: list[tuple[str, list[Any] | None]] = []
        if limit is not None:
            acquire.append((f"SET lock_timeout = {max(1, math.ceil(limit * 1000))}", None))
        acquire.append((f"SELECT pg_advisory_lock({expr})", [key]))
        return LockPlan(
            key=key,
            timeout=limit,
            params=[key],
            acquire=acquire,
            release=f"SELECT pg_advisory_unlock({expr})",
            connect=self.connect_kwargs(),
        )

    def lock_failed(self, exc: BaseException, plan: LockPlan) -> DatabaseError:
        """The error for an advisory lock that could not be taken."""
        error = self.failed(exc, "advisory_lock")
        if isinstance(error, LockTimeoutError):
            return LockTimeoutError(
                f"advisory lock {plan.key!r} not granted within {plan.timeout:g}s "
                "(another session holds it)",
                details={**error.details, "key": plan.key, "timeout": plan.timeout},
            )
        return error

    def listen_lost(self, exc: BaseException, attempt: int) -> float:
        """Record a lost LISTEN connection; return the seconds to wait before reconnecting.

        ``attempt`` is -1 before the first connection ever worked: then the error is raised
        (translated), so a wrong DSN fails at once instead of retrying forever.
        """
        if attempt < 0:
            raise self.failed(exc, "listen") from exc
        if attempt == 0:
            LISTEN_LOST.emit(db=self.name, error=redact_dsn(f"{type(exc).__name__}: {exc}"))
        return float(min(1.0, 0.05 * 2**attempt))

    HEALTH_SQL = "SELECT current_setting('server_version')"

    def health_report(self, row: Any, started: float) -> dict[str, Any]:
        """The result of :meth:`health`."""
        return {
            "ok": True,
            "db": self.name,
            "server": self.shown,
            "server_version": row[0] if row else None,
            "seconds": round(time.perf_counter() - started, 6),
        }

    def report_stats(self, stats: Mapping[str, int]) -> dict[str, int]:
        """Emit the pool gauges and return the statistics."""
        POOL_SIZE.emit(db=self.name, value=float(stats.get("pool_size", 0)))
        POOL_AVAILABLE.emit(db=self.name, value=float(stats.get("pool_available", 0)))
        POOL_WAITING.emit(db=self.name, value=float(stats.get("requests_waiting", 0)))
        return dict(stats)

    def __repr__(self) -> str:
        return f"{self.shown} pool={self.min_size}..{self.max_size}"


_OPERATIONS = (
    "select",
    "execute",
    "execute_many",
    "stream",
    "transaction",
    "insert",
    "upsert",
    "copy_in",
    "copy_out",
    "notify",
    "health",
)


def _pick(value: Any, default: Any) -> Any:
    return default if value is None else value


def _db_name(conninfo: str) -> str:
    from psycopg.conninfo import conninfo_to_dict

    return str(conninfo_to_dict(conninfo).get("dbname") or "postgres")


def _describe(conninfo: str) -> str:
    """``user@host:port/dbname`` without the password (for reprs, logs and errors)."""
    from psycopg.conninfo import conninfo_to_dict

    parts = conninfo_to_dict(conninfo)  # parsed once already by the constructor
    user = f"{parts['user']}@" if parts.get("user") else ""
    port = f":{parts['port']}" if parts.get("port") else ""
    return f"{user}{parts.get('host') or 'localhost'}{port}/{parts.get('dbname') or ''}"


def describe_conninfo(conninfo: str) -> str:
    """Public spelling of :func:`_describe` for the CLI and health check."""
    return _describe(conninfo)


def default_rng() -> float:
    """Jitter source of the retry backoff (not for cryptography)."""
    return random.random()  # noqa: S311 - jitter, not cryptography
