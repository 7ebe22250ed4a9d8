"""``utils cache``: inspect and clear a Redis cache from the shell (entry-point group ``utils.cli``).

Commands: ``stats`` (keys of the namespace per version, an estimate of their memory, the
server), ``get KEY`` (the decoded value, as JSON), ``delete KEY`` and ``clear`` (asks for
confirmation unless ``--yes``; shows progress). Every command takes ``--url`` (default:
``UTILS_CACHE_URL``) and ``--namespace`` (default: the URL's ``?namespace=``, then
``UTILS_CACHE_NAMESPACE``); the URL's ``?version=`` selects the namespace version. Output is
for humans by default and JSON with ``--json``; errors go to stderr with exit code 1
(2 for a URL that names no Redis). ``delete`` and ``clear`` also tell running
:class:`~utils.cache.TieredCache` processes to drop the keys from their L1.

Credentials are never printed: a server is shown as ``host:port/db``.

Example:
    >>> from typer.testing import CliRunner
    >>> result = CliRunner().invoke(app, ["stats", "--url", "memory://"])
    >>> result.exit_code
    2
"""

from __future__ import annotations

import json
import sys
import uuid
from base64 import b64encode
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Annotated, Any
from urllib.parse import parse_qsl, urlsplit

import redis.exceptions
import typer

from utils.cache.errors import CacheError, CacheUnavailableError
from utils.cache.health import configured_cache, describe_url, redis_client
from utils.cache.protocol import MISSING
from utils.cache.tiered import invalidation_channel, invalidation_message
from utils.core import ConfigError, UtilsError

__all__ = ["app"]

#: Seconds allowed for each Redis reply of a command.
TIMEOUT = 5.0
#: Keys per SCAN step and per UNLINK of ``clear``.
BATCH = 500
#: Keys whose ``MEMORY USAGE`` is summed to estimate a namespace's memory.
MEMORY_SAMPLE = 100

app: typer.Typer = typer.Typer(
    name="cache",
    help="Inspect and clear utils.cache Redis caches.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

UrlOption = Annotated[
    str | None,
    typer.Option("--url", help="Redis URL of the cache (default: UTILS_CACHE_URL)."),
]
NamespaceOption = Annotated[
    str | None,
    typer.Option(
        "--namespace",
        "-n",
        help="Cache namespace (default: the URL's ?namespace=, then UTILS_CACHE_NAMESPACE).",
    ),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON.")]


@dataclass(frozen=True)
class _Target:
    url: str
    namespace: str
    version: int
    where: str


def _fail(message: str, code: int = 1) -> typer.Exit:
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(code=code)


def _target(url: str | None, namespace: str | None) -> _Target:
    try:
        env_url, env_namespace = configured_cache()
    except ConfigError as exc:
        raise _fail(str(exc)) from None
    chosen = url or env_url
    scheme = urlsplit(chosen).scheme
    if scheme not in ("redis", "rediss", "unix"):
        raise _fail(
            f"{describe_url(chosen)!r} is not a Redis URL: a memory cache lives inside its "
            "process; pass --url redis://... or set UTILS_CACHE_URL",
            code=2,
        )
    options = dict(parse_qsl(urlsplit(chosen).query))
    try:
        version = int(options.get("version", "0"))
    except ValueError:
        raise _fail("the URL option version must be an integer", code=2) from None
    try:
        where = describe_url(chosen)
    except ValueError as exc:  # urllib: "Port out of range 0-65535", "Port could not be cast..."
        raise _fail(f"invalid Redis URL: {exc} (check the port)", code=2) from None
    return _Target(
        url=chosen,
        namespace=namespace or options.get("namespace") or env_namespace,
        version=version,
        where=where,
    )


def _open(target: _Target) -> Any:
    from utils.cache.redis_cache import RedisCache

    try:
        client = redis_client(target.url, timeout=TIMEOUT)
    except ConfigError as exc:  # a malformed URL or a mistyped option: say which, no traceback
        raise _fail(str(exc), code=2) from None
    return RedisCache(client, namespace=target.namespace, version=target.version, fail_open=False)


def _glob_escape(text: str) -> str:
    return "".join(f"\\{char}" if char in "\\*?[]" else char for char in text)


def _text_of_bytes(value: bytes) -> Any:
    try:
        return value.decode()
    except UnicodeDecodeError:
        return {"base64": b64encode(value).decode()}


#: How the non-JSON values JsonSerializer restores are shown.
_SHOWN_AS: tuple[tuple[type | tuple[type, ...], Callable[[Any], Any]], ...] = (
    ((datetime, date, time), lambda value: value.isoformat()),
    (timedelta, lambda value: value.total_seconds()),
    (bytes, _text_of_bytes),
    ((set, frozenset), lambda value: sorted((_jsonable(item) for item in value), key=repr)),
    ((list, tuple), lambda value: [_jsonable(item) for item in value]),
)


def _jsonable(value: Any) -> Any:
    """The value as JSON can show it (Decimal, UUID and unknown types become text)."""
    if isinstance(value, str | int | float | bool) or value is None:
        return value
    if isinstance(value, dict):
        return {
            key if isinstance(key, str | int | float | bool) or key is None else str(key): (
                _jsonable(item)
            )
            for key, item in value.items()
        }
    for kinds, show in _SHOWN_AS:
        if isinstance(value, kinds):
            return show(value)
    return str(value)


def _dumps(value: Any, *, pretty: bool) -> str:
    return json.dumps(_jsonable(value), ensure_ascii=False, indent=2 if pretty else None)


def _invalidate(client: Any, target: _Target, keys: list[str] | None) -> int:
    """Tell TieredCache processes to drop ``keys``; return how many listened."""
    message = invalidation_message(f"utils-cli:{uuid.uuid4().hex}", keys)
    try:
        return int(client.publish(invalidation_channel(target.namespace), message))
    except redis.exceptions.RedisError:
        return 0  # the delete already happened; listeners fall back to their L1 TTL


def _guard(error: BaseException, target: _Target | None = None) -> typer.Exit:
    unreachable = (
        CacheUnavailableError,
        redis.exceptions.ConnectionError,
        redis.exceptions.TimeoutError,
    )
    if isinstance(error, unreachable):
        where = f" at {target.where}" if target is not None else ""
        return _fail(f"{type(error).__name__}: {error} (is Redis running{where}? check --url)")
    if isinstance(error, UtilsError | redis.exceptions.RedisError):
        return _fail(f"{type(error).__name__}: {error}")
    raise error  # pragma: no cover - anything else is a bug: let it show


# -- stats -------------------------------------------------------------------------------


def _human_bytes(size: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    raise AssertionError("unreachable")  # pragma: no cover


def _scan_namespace(client: Any, target: _Target) -> tuple[dict[int, int], int, list[bytes]]:
    """Count the namespace's keys per version and its stampede locks in one SCAN walk."""
    start = len(target.namespace.encode()) + 1
    pattern = f"{_glob_escape(target.namespace)}#*"
    per_version: dict[int, int] = {}
    locks = 0
    sample: list[bytes] = []
    for name in client.scan_iter(match=pattern, count=BATCH):
        digits = name[start:].split(b":", 1)[0]
        if b"#" in digits:
            locks += 1
            continue
        try:
            version = int(digits)
        except ValueError:
            continue  # not a key of ours (a namespace can contain ':')
        per_version[version] = per_version.get(version, 0) + 1
        if version == target.version and len(sample) < MEMORY_SAMPLE:
            sample.append(name)
    return per_version, locks, sample


def _memory_estimate(client: Any, sample: list[bytes], count: int) -> int | None:
    if not sample:
        return 0
    pipe = client.pipeline(transaction=False)
    for name in sample:
        pipe.memory_usage(name)
    try:
        sizes = [size for size in pipe.execute() if size is not None]
    except redis.exceptions.ResponseError:  # MEMORY denied by an ACL or renamed
        return None
    if not sizes:
        return 0
    return round(float(sum(sizes)) / len(sizes) * count)


@app.command("stats")
def stats(
    url: UrlOption = None, namespace: NamespaceOption = None, as_json: JsonOption = False
) -> None:
    """Keys of the namespace (per version), their estimated memory and the server."""
    target = _target(url, namespace)
    try:
        client = _open(target).client
        per_version, locks, sample = _scan_namespace(client, target)
        keys = per_version.get(target.version, 0)
        memory = _memory_estimate(client, sample, keys)
        info = client.info()
        db_keys = int(client.dbsize())
    except (UtilsError, redis.exceptions.RedisError) as exc:
        raise _guard(exc, target) from None
    report = {
        "server": target.where,
        "redis_version": info.get("redis_version"),
        "namespace": target.namespace,
        "version": target.version,
        "keys": keys,
        "keys_by_version": {str(v): n for v, n in sorted(per_version.items())},
        "locks": locks,
        "memory_bytes_estimate": memory,
        "memory_sampled_keys": len(sample),
        "db_keys": db_keys,
        "server_used_memory": info.get("used_memory"),
        "connected_clients": info.get("connected_clients"),
        "uptime_seconds": info.get("uptime_in_seconds"),
    }
    if as_json:
        typer.echo(_dumps(report, pretty=False))
        return
    typer.echo(
        f"redis {report['redis_version']} at {target.where}: {db_keys:,} keys in the database, "
        f"{_human_bytes(float(info.get('used_memory', 0)))} used, "
        f"{info.get('connected_clients')} clients"
    )
    if memory is None:
        size = "memory unknown (MEMORY USAGE not allowed)"
    elif sample and len(sample) < keys:
        size = f"about {_human_bytes(memory)} (estimated from {len(sample)} keys)"
    else:
        size = _human_bytes(memory)
    typer.echo(
        f"namespace {target.namespace!r} version {target.version}: {keys:,} keys, {size}, "
        f"{locks} stampede locks"
    )
    others = {v: n for v, n in sorted(per_version.items()) if v != target.version}
    if others:
        listed = ", ".join(f"version {v}: {n:,}" for v, n in others.items())
        typer.echo(f"other versions (removed by `clear --all-versions`): {listed}")


# -- get / delete ------------------------------------------------------------------------


@app.command("get")
def get(
    key: Annotated[str, typer.Argument(help="The cache key (without the namespace prefix).")],
    url: UrlOption = None,
    namespace: NamespaceOption = None,
    as_json: JsonOption = False,
    raw: Annotated[
        bool, typer.Option("--raw", help="Print the stored bytes instead of decoding them.")
    ] = False,
) -> None:
    """Print the value under KEY as JSON (exit code 1 when it is missing)."""
    target = _target(url, namespace)
    try:
        cache = _open(target)
        if raw:
            data = cache.client.get(cache.redis_key(key))
            value = MISSING if data is None else data.decode(errors="backslashreplace")
        else:
            value = cache.get(key, MISSING)
        ttl = cache.ttl(key) if value is not MISSING else None
    except CacheUnavailableError as exc:
        raise _guard(exc, target) from None
    except CacheError as exc:
        raise _fail(
            f"{type(exc).__name__}: {exc} (is it stored with another serializer? try --raw)"
        ) from None
    except (UtilsError, redis.exceptions.RedisError) as exc:
        raise _guard(exc, target) from None
    if value is MISSING:
        if as_json:
            typer.echo(_dumps({"key": key, "found": False}, pretty=False))
        raise _fail(f"no value under {key!r} in namespace {target.namespace!r}")
    if as_json:
        typer.echo(_dumps({"key": key, "found": True, "value": value, "ttl": ttl}, pretty=False))
    elif raw:
        typer.echo(value)
    else:
        typer.echo(_dumps(value, pretty=True))


@app.command("delete")
def delete(
    key: Annotated[str, typer.Argument(help="The cache key (without the namespace prefix).")],
    url: UrlOption = None,
    namespace: NamespaceOption = None,
    as_json: JsonOption = False,
) -> None:
    """Delete KEY (and drop it from the L1 of running TieredCache processes)."""
    target = _target(url, namespace)
    try:
        cache = _open(target)
        deleted = cache.delete(key)
    except (UtilsError, redis.exceptions.RedisError) as exc:
        raise _guard(exc, target) from None
    listeners = _invalidate(cache.client, target, [key])
    if as_json:
        typer.echo(
            _dumps({"key": key, "deleted": deleted, "invalidated": listeners}, pretty=False)
        )
    else:
        typer.echo(f"deleted {key!r}" if deleted else f"{key!r} was not there")


# -- clear -------------------------------------------------------------------------------


@app.command("clear")
def clear(
    url: UrlOption = None,
    namespace: NamespaceOption = None,
    all_versions: Annotated[
        bool,
        typer.Option("--all-versions", help="Also remove older versions and stampede locks."),
    ] = False,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
    as_json: JsonOption = False,
) -> None:
    """Delete every key of the namespace (SCAN + UNLINK in batches, never FLUSHDB)."""
    target = _target(url, namespace)
    what = (
        f"namespace {target.namespace!r} (all versions)"
        if all_versions
        else f"namespace {target.namespace!r} version {target.version}"
    )
    try:
        cache = _open(target)
        client = cache.client
        # The namespace cannot contain '#' (RedisCache refuses it), so "ns#*" is only ours.
        prefix = f"{target.namespace}#" if all_versions else cache.prefix
        pattern = f"{_glob_escape(prefix)}*"
        total = sum(1 for _ in client.scan_iter(match=pattern, count=BATCH))
        if total and not yes:
            typer.confirm(
                f"Delete {total:,} keys of {what} at {target.where}?", abort=True, err=True
            )
        deleted = _unlink_all(client, pattern, total, show=not as_json) if total else 0
    except (UtilsError, redis.exceptions.RedisError) as exc:
        raise _guard(exc, target) from None
    listeners = _invalidate(client, target, None) if deleted else 0
    if as_json:
        typer.echo(
            _dumps(
                {
                    "namespace": target.namespace,
                    "version": None if all_versions else target.version,
                    "deleted": deleted,
                    "invalidated": listeners,
                },
                pretty=False,
            )
        )
    else:
        typer.echo(f"deleted {deleted:,} keys of {what}")


def _unlink_all(client: Any, pattern: str, total: int, *, show: bool) -> int:
    deleted = 0
    with typer.progressbar(
        length=total, label="deleting", file=sys.stderr, hidden=not show, show_pos=True
    ) as bar:
        batch: list[bytes] = []
        for name in client.scan_iter(match=pattern, count=BATCH):
            batch.append(name)
            if len(batch) >= BATCH:
                deleted += int(client.unlink(*batch))
                bar.update(len(batch))
                batch = []
        if batch:
            deleted += int(client.unlink(*batch))
            bar.update(len(batch))
    return deleted
