"""``client()`` / ``resource()``: cached, thread-safe, fork-safe, deadline-aware boto3 objects.

Each distinct (service, region, profile, endpoint, config) gets one client, built once under
a lock from a private ``boto3.Session`` per profile (boto3's default session is not safe to
build clients from concurrently: 64 threads asking at once get one client here, and no
``KeyError: 'credential_provider'``). A forked child drops the parent's clients and builds
its own (through :mod:`utils.core.forksafe`). A call that fails because the temporary credentials
expired evicts the clients of that profile, so the next call resolves credentials again.
:func:`clear_clients` drops everything (tests, credential rotation).

Under :func:`utils.core.deadline`, ``client()`` returns a variant whose connect and read
timeouts fit in the time left, and botocore retries only while another attempt fits: a
call never outlives the deadline (see the guide for the limits).

Defaults come from :class:`~utils.aws.AWSSettings` (``UTILS_AWS_*``), read once; keyword
overrides win: ``region``, ``profile``, ``endpoint_url``, ``max_attempts``, ``retry_mode``,
``connect_timeout``, ``read_timeout`` and ``config`` (a ``botocore.config.Config`` merged
over ours).

Example:
    >>> from utils.aws.testing import mocked_aws
    >>> with mocked_aws():
    ...     s3 = client("s3", region="us-east-1")
    ...     s3 is client("s3", region="us-east-1"), s3.meta.config.retries["mode"]
    (True, 'standard')
"""

from __future__ import annotations

import contextlib
import threading
import time
from dataclasses import dataclass, field, replace
from typing import Any

from utils.aws import _deadline, _outages, _redact
from utils.aws.errors import AWSTimeoutError
from utils.aws.settings import AWSSettings
from utils.aws.translation import translate
from utils.core import ValidationError, get_logger
from utils.core.deadline import DEADLINE
from utils.core.forksafe import reset_after_fork
from utils.core.validate import positive, positive_int

__all__ = ["OVERRIDES", "botocore_retries", "clear_clients", "client", "evict", "resource"]

#: The keyword overrides ``client()`` and ``resource()`` accept.
OVERRIDES = frozenset(
    {
        "region",
        "profile",
        "endpoint_url",
        "max_attempts",
        "retry_mode",
        "connect_timeout",
        "read_timeout",
        "config",
    }
)
_MODES = ("standard", "adaptive", "legacy")
_log = get_logger("utils.aws")


@dataclass(frozen=True)
class _Options:
    region: str | None
    profile: str | None
    endpoint_url: str | None
    max_attempts: int
    retry_mode: str
    connect_timeout: float
    read_timeout: float
    config_key: tuple[tuple[str, str], ...] = ()
    config: Any = field(default=None, compare=False, hash=False)


class _Entry:
    __slots__ = ("budget", "client", "options", "variants")

    def __init__(self, built: Any, options: _Options, budget: float) -> None:
        self.client = built
        self.options = options
        #: Seconds one attempt can take: connect + read timeout of the built client.
        self.budget = budget
        self.variants: dict[float, _Entry] = {}


class _State:
    """Everything a process caches; replaced whole in a forked child."""

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.settings: AWSSettings | None = None
        self.sessions: dict[str | None, Any] = {}
        self.entries: dict[tuple[str, str, _Options], _Entry] = {}
        #: ``client("s3")`` without overrides: the hot path is one dict lookup.
        self.fast: dict[tuple[str, str], _Entry] = {}
        reset_after_fork(self, _fresh_state)


def _fresh_state(_parents: _State) -> None:
    global _state  # noqa: PLW0603 - the child must not share the parent's sockets or lock
    _state = _State()


_state = _State()


def _settings() -> AWSSettings:
    settings = _state.settings
    if settings is None:
        settings = _state.settings = AWSSettings.from_env()
    return settings


def _config_key(config: Any) -> tuple[tuple[str, str], ...]:
    if config is None:
        return ()
    from botocore.config import Config

    if not isinstance(config, Config):
        raise ValidationError(f"config must be a botocore.config.Config, got {config!r}")
    return tuple(sorted((name, repr(value)) for name, value in vars(config).items()))


def _options(overrides: dict[str, Any]) -> _Options:
    unknown = set(overrides) - OVERRIDES
    if unknown:
        raise ValidationError(
            f"unknown client option(s) {sorted(unknown)}; use {sorted(OVERRIDES)}"
        )
    settings = _settings()
    get = overrides.get
    mode = get("retry_mode", settings.retry_mode)
    if mode not in _MODES:
        raise ValidationError(f"retry_mode must be one of {_MODES}, got {mode!r}")
    config = get("config")
    return _Options(
        region=get("region", settings.region),
        profile=get("profile", settings.profile),
        endpoint_url=get("endpoint_url", settings.endpoint_url),
        max_attempts=positive_int(get("max_attempts", settings.max_attempts), "max_attempts"),
        retry_mode=mode,
        connect_timeout=positive(
            get("connect_timeout", settings.connect_timeout), "connect_timeout"
        ),
        read_timeout=positive(get("read_timeout", settings.read_timeout), "read_timeout"),
        config_key=_config_key(config),
        config=config,
    )


def _session(profile: str | None) -> Any:
    session = _state.sessions.get(profile)
    if session is None:
        import boto3.session

        session = boto3.session.Session(profile_name=profile)
        _state.sessions[profile] = session
    return session


def _build(kind: str, service: str, options: _Options, *, capped: bool = False) -> _Entry:
    from botocore.config import Config

    from utils.aws import __version__

    _redact.install()
    retries: Any = {"mode": options.retry_mode, "total_max_attempts": options.max_attempts}
    config = Config(
        connect_timeout=options.connect_timeout,
        read_timeout=options.read_timeout,
        retries=retries,
        user_agent_extra=f"utils-aws/{__version__}",
    )
    if options.config is not None:
        config = config.merge(options.config)
        if capped:  # a deadline variant: its timeouts win over the user's config
            config = config.merge(
                Config(connect_timeout=options.connect_timeout, read_timeout=options.read_timeout)
            )
    try:
        session = _session(options.profile)
        factory = session.client if kind == "client" else session.resource
        built = factory(
            service, region_name=options.region, endpoint_url=options.endpoint_url, config=config
        )
    except Exception as exc:
        raise translate(exc) from exc
    low_level = built if kind == "client" else built.meta.client
    effective = low_level.meta.config
    entry = _Entry(built, options, float(effective.connect_timeout + effective.read_timeout))
    _deadline.Guard(entry.budget).install(low_level)
    _log.debug(
        "aws.client_created",
        kind=kind,
        service=service,
        region=low_level.meta.region_name,
        budget=entry.budget,
    )
    return entry


def _entry(kind: str, service: str, overrides: dict[str, Any]) -> _Entry:
    options = _options(overrides)
    key = (kind, service, options)
    state = _state
    entry = state.entries.get(key)
    if entry is None:
        with state.lock:
            entry = state.entries.get(key)
            if entry is None:
                entry = _build(kind, service, options)
                state.entries[key] = entry
    if not overrides:
        state.fast[(kind, service)] = entry
    return entry


def _within(entry: _Entry, at: float, kind: str, service: str) -> _Entry:
    """The entry itself, or the variant whose attempt budget fits before ``at``."""
    left = at - time.monotonic()
    if left >= entry.budget:
        return entry
    while True:
        budget = _deadline.bucket_for(left)
        if budget is None:
            raise AWSTimeoutError(
                f"deadline leaves {max(left, 0.0):.3f}s: too little to call AWS {service}",
                details={"service": service},
            )
        variant = entry.variants.get(budget)
        if variant is None:
            connect, read = _deadline.split_budget(
                budget, entry.options.connect_timeout, entry.options.read_timeout
            )
            with _state.lock:
                variant = entry.variants.get(budget)
                if variant is None:
                    options = replace(entry.options, connect_timeout=connect, read_timeout=read)
                    variant = _build(kind, service, options, capped=True)
                    entry.variants[budget] = variant
            left = at - time.monotonic()  # building took time: check it still fits
            if variant.budget > left:
                continue
        return variant


def _get(kind: str, service: str, overrides: dict[str, Any]) -> Any:
    entry = None if overrides else _state.fast.get((kind, service))
    if entry is None:
        entry = _entry(kind, service, overrides)
    at = DEADLINE.get()
    if at is None:
        return entry.client
    return _within(entry, at, kind, service).client


def client(service: str, /, **overrides: Any) -> Any:
    """The cached boto3 client for ``service`` (see the module docs for ``overrides``).

    Raises:
        AWSConfigError: no region, no credentials source, unknown profile.
        AWSTimeoutError: called under a deadline with less than 50 ms left.
        ValidationError: an unknown override or a bad value.

    Example:
        >>> from utils.aws.testing import mocked_aws
        >>> with mocked_aws():
        ...     client("sqs", region="eu-west-1").meta.region_name
        'eu-west-1'
    """
    return _get("client", service, overrides)


def resource(service: str, /, **overrides: Any) -> Any:
    """The cached boto3 resource for ``service`` (``dynamodb``, ``s3``, ...); like :func:`client`.

    Example:
        >>> from utils.aws.testing import mocked_aws
        >>> with mocked_aws():
        ...     resource("dynamodb", region="us-east-1").meta.client.meta.service_model.service_name
        'dynamodb'
    """
    return _get("resource", service, overrides)


def _close(built: Any) -> None:
    low_level = getattr(getattr(built, "meta", None), "client", built)
    with contextlib.suppress(Exception):  # closing is best effort
        low_level.close()


def evict(built: Any) -> bool:
    """Forget the cached clients of ``built``'s profile, so the next call re-resolves credentials.

    Called by the helpers when AWS says the temporary credentials expired. Returns whether
    ``built`` was one of ours.

    Example:
        >>> evict(object())
        False
    """
    state = _state
    with state.lock:
        profile = None
        found = False
        for entry in state.entries.values():
            owned = [entry, *entry.variants.values()]
            if any(item.client is built for item in owned):
                profile, found = entry.options.profile, True
                break
        if not found:
            return False
        for key, entry in list(state.entries.items()):
            if entry.options.profile == profile:
                del state.entries[key]
        for fast_key, entry in list(state.fast.items()):
            if entry.options.profile == profile:
                del state.fast[fast_key]
        state.sessions.pop(profile, None)
    _log.info("aws.clients_evicted", profile=profile)
    return True


def clear_clients() -> None:
    """Close and forget every cached client, resource and session; re-read the settings.

    Also forgets the state of outages (``aws.unavailable`` is reported anew).

    Example:
        >>> clear_clients()
    """
    state = _state
    with state.lock:
        entries = list(state.entries.values())
        state.entries.clear()
        state.fast.clear()
        state.sessions.clear()
        state.settings = None
    _outages.reset()
    for entry in entries:
        for item in (entry, *entry.variants.values()):
            _close(item.client)


def botocore_retries(built: Any) -> bool:
    """Whether botocore retries calls of this client itself (``max_attempts`` > 1).

    Example:
        >>> from utils.aws.testing import mocked_aws
        >>> with mocked_aws():
        ...     botocore_retries(client("s3", region="us-east-1", max_attempts=1))
        False
    """
    low_level = getattr(getattr(built, "meta", None), "client", built)
    retries = getattr(getattr(low_level, "meta", None), "config", None)
    retries = getattr(retries, "retries", None) or {}
    attempts = retries.get("total_max_attempts")
    if attempts is None and "max_attempts" in retries:
        attempts = int(retries["max_attempts"]) + 1
    return attempts is None or int(attempts) > 1
