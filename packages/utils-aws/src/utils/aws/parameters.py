"""Secrets Manager secrets and SSM parameters, cached in-process with a TTL.

``get_secret`` / ``get_parameter`` / ``get_parameters_by_path`` answer from a thread-safe
cache while the value is younger than ``max_age`` seconds (default 300); on a miss one
caller fetches while concurrent callers of the same name wait for it (single flight);
``force_fetch=True`` skips the cache. Secret values come back as
:class:`~utils.core.Secret` (masked in ``repr``, ``str`` and logs): secret strings and
decrypted ``SecureString`` parameters. ``transform="json"`` parses the value (you asked for
it in the clear), ``transform="binary"`` returns bytes (``SecretBinary``, or base64 text).
Values never appear in log events, metrics or error messages.

The module functions share one :class:`Parameters` store; make your own for other client
options or an injected clock.

Example:
    >>> from utils.aws import client
    >>> from utils.aws.testing import mocked_aws
    >>> with mocked_aws():
    ...     _ = client("secretsmanager").create_secret(Name="db", SecretString='{"pw": "x"}')
    ...     _ = client("ssm").put_parameter(Name="/app/mode", Value="fast", Type="String")
    ...     get_secret("db"), get_secret("db", transform="json"), get_parameter("/app/mode")
    (Secret('***'), {'pw': 'x'}, 'fast')
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Callable
from typing import Any, Literal, TypeAlias

from utils.aws._service import Service
from utils.aws._ttlcache import TTLCache
from utils.core import Secret, ValidationError
from utils.core.report import Event
from utils.core.validate import duration

__all__ = [
    "Parameters",
    "Transform",
    "clear_parameter_cache",
    "get_parameter",
    "get_parameters_by_path",
    "get_secret",
]

Transform: TypeAlias = Literal["json", "binary"] | None
_TRANSFORMS = (None, "json", "binary")

PARAMETERS_HIT = Event("aws.parameters.hit", logger="utils.aws", level=None, tags=("kind",))
PARAMETERS_MISS = Event("aws.parameters.miss", logger="utils.aws", level=None, tags=("kind",))
_SECRET_HIT = PARAMETERS_HIT.bind(kind="secret")
_PARAMETER_HIT = PARAMETERS_HIT.bind(kind="parameter")
_PATH_HIT = PARAMETERS_HIT.bind(kind="path")


class _SecretsManager(Service):
    service = "secretsmanager"


class _SSM(Service):
    service = "ssm"


def _max_age(value: float) -> float:
    seconds = duration(value, "max_age", allow_none=False, allow_infinite=False)
    assert seconds is not None
    return seconds


def _check_transform(transform: object) -> None:
    if transform not in _TRANSFORMS:
        raise ValidationError(f"transform must be None, 'json' or 'binary', got {transform!r}")


def _transformed(text: str, transform: Transform, *, secret: bool) -> Any:
    if transform == "json":
        return json.loads(text)
    if transform == "binary":
        return base64.b64decode(text)
    return Secret(text) if secret else text


class Parameters:
    """A cache of secrets and parameters with its own client options and clock.

    Example:
        >>> from utils.core.testing import FakeClock
        >>> store = Parameters(clock=FakeClock(), region="us-east-1")
        >>> store.clear()
    """

    def __init__(self, *, clock: Callable[[], float] = time.monotonic, **overrides: Any) -> None:
        self._secrets = _SecretsManager(**overrides)
        self._ssm = _SSM(**overrides)
        self._cache = TTLCache(clock)

    def clear(self) -> None:
        """Forget every cached value."""
        self._cache.clear()

    def get_secret(
        self,
        name: str,
        *,
        max_age: float = 300,
        transform: Transform = None,
        force_fetch: bool = False,
    ) -> Any:
        """A Secrets Manager secret: a :class:`~utils.core.Secret`, or see ``transform``.

        Raises :class:`~utils.aws.AWSNotFoundError` when there is no such secret.
        """
        key = ("secret", name, transform)
        if not force_fetch:
            found, value = self._cache.lookup(key)
            if found:
                _SECRET_HIT()
                return value
        _check_transform(transform)
        seconds = _max_age(max_age)
        PARAMETERS_MISS.emit(kind="secret")
        return self._cache.fetch(key, seconds, lambda: self._fetch_secret(name, transform))

    def _fetch_secret(self, name: str, transform: Transform) -> Any:
        response = self._secrets._call("get_secret_value", SecretId=name)
        if "SecretString" in response:
            return _transformed(response["SecretString"], transform, secret=True)
        data = bytes(response["SecretBinary"])
        if transform == "json":
            return json.loads(data)
        return data

    def get_parameter(
        self,
        name: str,
        *,
        decrypt: bool = True,
        max_age: float = 300,
        transform: Transform = None,
        force_fetch: bool = False,
    ) -> Any:
        """An SSM parameter: ``str``, or a :class:`~utils.core.Secret` if a ``SecureString``.

        A ``SecureString`` read with ``decrypt=False`` is the encrypted text (``str``); see
        ``transform`` for the others.

        Raises :class:`~utils.aws.AWSNotFoundError` when there is no such parameter.
        """
        key = ("parameter", name, decrypt, transform)
        if not force_fetch:
            found, value = self._cache.lookup(key)
            if found:
                _PARAMETER_HIT()
                return value
        _check_transform(transform)
        seconds = _max_age(max_age)
        PARAMETERS_MISS.emit(kind="parameter")
        return self._cache.fetch(
            key, seconds, lambda: self._fetch_parameter(name, decrypt, transform)
        )

    def _fetch_parameter(self, name: str, decrypt: bool, transform: Transform) -> Any:
        response = self._ssm._call("get_parameter", Name=name, WithDecryption=decrypt)
        parameter = response["Parameter"]
        secret = decrypt and parameter.get("Type") == "SecureString"
        return _transformed(parameter["Value"], transform, secret=secret)

    def get_parameters_by_path(
        self,
        path: str,
        *,
        recursive: bool = True,
        decrypt: bool = True,
        max_age: float = 300,
        force_fetch: bool = False,
    ) -> dict[str, Any]:
        """Every parameter under ``path``, by name relative to it (``/app/db/host`` -> ``db/host``).

        Example:
            >>> from utils.aws import client
            >>> from utils.aws.testing import mocked_aws
            >>> with mocked_aws():
            ...     for name, value in [("/app/a", "1"), ("/app/b/c", "2")]:
            ...         _ = client("ssm").put_parameter(Name=name, Value=value, Type="String")
            ...     get_parameters_by_path("/app")
            {'a': '1', 'b/c': '2'}
        """
        key = ("path", path, recursive, decrypt)
        if not force_fetch:
            found, value = self._cache.lookup(key)
            if found:
                _PATH_HIT()
                return dict(value)
        seconds = _max_age(max_age)
        PARAMETERS_MISS.emit(kind="path")
        values = self._cache.fetch(
            key, seconds, lambda: self._fetch_path(path, recursive, decrypt)
        )
        return dict(values)

    def _fetch_path(self, path: str, recursive: bool, decrypt: bool) -> dict[str, Any]:
        prefix = path.rstrip("/") + "/"
        values: dict[str, Any] = {}
        for page in self._ssm._pages(
            "get_parameters_by_path", Path=path, Recursive=recursive, WithDecryption=decrypt
        ):
            for parameter in page.get("Parameters", ()):
                name = str(parameter["Name"])
                relative = name[len(prefix) :] if name.startswith(prefix) else name
                secret = decrypt and parameter.get("Type") == "SecureString"
                values[relative] = Secret(parameter["Value"]) if secret else parameter["Value"]
        return values


_default: Parameters | None = None


def _store() -> Parameters:
    global _default  # noqa: PLW0603 - one shared store, made on first use
    store = _default
    if store is None:
        store = _default = Parameters()
    return store


def get_secret(
    name: str, *, max_age: float = 300, transform: Transform = None, force_fetch: bool = False
) -> Any:
    """:meth:`Parameters.get_secret` on the shared store.

    Example:
        >>> from utils.aws import client
        >>> from utils.aws.testing import mocked_aws
        >>> with mocked_aws():
        ...     _ = client("secretsmanager").create_secret(Name="k", SecretString="v")
        ...     get_secret("k").get_secret_value()
        'v'
    """
    store = _default or _store()
    return store.get_secret(name, max_age=max_age, transform=transform, force_fetch=force_fetch)


def get_parameter(
    name: str,
    *,
    decrypt: bool = True,
    max_age: float = 300,
    transform: Transform = None,
    force_fetch: bool = False,
) -> Any:
    """:meth:`Parameters.get_parameter` on the shared store.

    Example:
        >>> from utils.aws import client
        >>> from utils.aws.testing import mocked_aws
        >>> with mocked_aws():
        ...     _ = client("ssm").put_parameter(Name="/pw", Value="x", Type="SecureString")
        ...     get_parameter("/pw")
        Secret('***')
    """
    store = _default or _store()
    return store.get_parameter(
        name, decrypt=decrypt, max_age=max_age, transform=transform, force_fetch=force_fetch
    )


def get_parameters_by_path(
    path: str,
    *,
    recursive: bool = True,
    decrypt: bool = True,
    max_age: float = 300,
    force_fetch: bool = False,
) -> dict[str, Any]:
    """:meth:`Parameters.get_parameters_by_path` on the shared store."""
    return _store().get_parameters_by_path(
        path, recursive=recursive, decrypt=decrypt, max_age=max_age, force_fetch=force_fetch
    )


def clear_parameter_cache() -> None:
    """Forget every value cached by the module functions.

    Example:
        >>> clear_parameter_cache()
    """
    if _default is not None:
        _default.clear()
