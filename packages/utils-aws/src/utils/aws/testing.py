"""Test helpers for code that uses AWS: fake credentials, moto in-process and as a server.

Install ``utils-aws[testing]`` (moto). The same helpers are pytest fixtures
(``utils_aws_credentials``, ``utils_mock_aws``, ``utils_moto_server``,
``utils_aws_no_network``) through the ``pytest11`` entry point.

- :func:`fake_credentials`: ``testing`` keys, region ``us-east-1``, no profile, no config
  files, no instance metadata; the cached clients are dropped before and after.
- :func:`mocked_aws`: the above plus moto's in-process ``mock_aws`` (no HTTP at all).
- :class:`MotoServer` / :func:`moto_server`: moto's ``ThreadedMotoServer`` on a free
  loopback port, with ``UTILS_AWS_ENDPOINT_URL`` pointing every ``utils.aws`` client at it:
  real HTTP, real retries and timeouts.
- :func:`block_real_aws`: fail any HTTP request botocore sends to a host that is not
  loopback (your suite can never reach real AWS by mistake).

Example:
    >>> from utils.aws import S3, client
    >>> with mocked_aws():
    ...     _ = client("s3").create_bucket(Bucket="demo")
    ...     _ = S3("demo").put_text("hello.txt", "hi")
    ...     S3("demo").get_text("hello.txt")
    'hi'
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import urllib.request
from collections.abc import Iterator, MutableMapping
from typing import Any
from urllib.parse import urlsplit

from utils.aws.clients import clear_clients
from utils.core.testing import find_free_port

__all__ = [
    "FAKE_ENVIRONMENT",
    "LOOPBACK_HOSTS",
    "MotoServer",
    "RealAWSBlockedError",
    "block_real_aws",
    "fake_credentials",
    "mocked_aws",
    "moto_server",
]

#: What :func:`fake_credentials` sets (values are moto's conventional fakes).
FAKE_ENVIRONMENT = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",  # nosec B105 - moto's fake test credentials
    "AWS_SECURITY_TOKEN": "testing",  # nosec B105 - moto's fake test credentials
    "AWS_SESSION_TOKEN": "testing",  # nosec B105 - moto's fake test credentials
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_EC2_METADATA_DISABLED": "true",
    "AWS_CONFIG_FILE": os.devnull,
    "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
}
_REMOVED = ("AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_REGION", "UTILS_AWS_PROFILE")
#: Hosts :func:`block_real_aws` lets through.
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})


class RealAWSBlockedError(AssertionError):
    """Raised by :func:`block_real_aws` for a request to a host that is not loopback.

    Example:
        >>> issubclass(RealAWSBlockedError, AssertionError)
        True
    """


def _forget() -> None:
    from utils.aws.parameters import clear_parameter_cache

    clear_clients()
    clear_parameter_cache()


@contextlib.contextmanager
def _environment(
    values: dict[str, str], removed: tuple[str, ...], environ: MutableMapping[str, str]
) -> Iterator[None]:
    saved = {name: environ.get(name) for name in (*values, *removed)}
    try:
        for name in removed:
            environ.pop(name, None)
        environ.update(values)
        _forget()
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                environ.pop(name, None)
            else:
                environ[name] = value
        _forget()


@contextlib.contextmanager
def fake_credentials(region: str = "us-east-1") -> Iterator[None]:
    """Fake AWS credentials and no profile for the block (process environment).

    Example:
        >>> with fake_credentials():
        ...     os.environ["AWS_ACCESS_KEY_ID"]
        'testing'
    """
    values = {**FAKE_ENVIRONMENT, "AWS_DEFAULT_REGION": region}
    with _environment(values, (*_REMOVED, "UTILS_AWS_ENDPOINT_URL"), os.environ):
        yield


@contextlib.contextmanager
def mocked_aws(region: str = "us-east-1") -> Iterator[None]:
    """Moto's in-process ``mock_aws`` with fake credentials: no network at all.

    Example:
        >>> from utils.aws import client
        >>> with mocked_aws():
        ...     client("sqs").create_queue(QueueName="q")["QueueUrl"].endswith("/q")
        True
    """
    from moto import mock_aws

    with fake_credentials(region), mock_aws():
        yield


class MotoServer:
    """moto's threaded HTTP server on a free loopback port.

    Example:
        >>> with MotoServer() as server:
        ...     server.endpoint_url.startswith("http://127.0.0.1:")
        True
    """

    def __init__(self, port: int | None = None) -> None:
        self.port: int = port or find_free_port()
        self.endpoint_url: str = f"http://127.0.0.1:{self.port}"
        self._server: Any = None

    def start(self) -> MotoServer:
        """Start serving (returns self); werkzeug's per-request log lines are silenced."""
        from moto.server import ThreadedMotoServer

        logging.getLogger("werkzeug").setLevel(logging.ERROR)

        self._server = ThreadedMotoServer(ip_address="127.0.0.1", port=self.port, verbose=False)
        self._server.start()
        return self

    def reset(self) -> None:
        """Forget every bucket, queue, table, secret ... the server holds."""
        request = urllib.request.Request(  # noqa: S310 - our own loopback server
            f"{self.endpoint_url}/moto-api/reset", method="POST"
        )
        with urllib.request.urlopen(request, timeout=10):  # noqa: S310 - loopback moto server URL
            pass

    def stop(self) -> None:
        """Stop serving."""
        if self._server is not None:
            self._server.stop()
            self._server = None

    def __enter__(self) -> MotoServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


@contextlib.contextmanager
def moto_server(server: MotoServer | None = None, region: str = "us-east-1") -> Iterator[str]:
    """Fake credentials and every ``utils.aws`` client pointed at a moto server; yields its URL.

    Starts (and stops) a private server unless ``server`` is given.

    Example:
        >>> from utils.aws import client
        >>> with moto_server() as url:
        ...     client("s3").meta.endpoint_url == url
        True
    """
    with contextlib.ExitStack() as stack:
        if server is None:
            server = stack.enter_context(MotoServer())
        values = {**FAKE_ENVIRONMENT, "AWS_DEFAULT_REGION": region}
        values["UTILS_AWS_ENDPOINT_URL"] = server.endpoint_url
        stack.enter_context(_environment(values, _REMOVED, os.environ))
        yield server.endpoint_url


_guard_lock = threading.Lock()
_guard_depth = 0
_original_send: Any = None


def _checked_send(self: Any, request: Any) -> Any:
    host = urlsplit(request.url).hostname or ""
    if host not in LOOPBACK_HOSTS:
        raise RealAWSBlockedError(
            f"a test tried to reach {host!r}: only moto (mock_aws, a moto server) and "
            "loopback stubs may be called"
        )
    return _original_send(self, request)


@contextlib.contextmanager
def block_real_aws() -> Iterator[None]:
    """Make botocore refuse (``RealAWSBlockedError``) any request to a non-loopback host.

    moto's in-process ``mock_aws`` answers before anything is sent, so it keeps working.

    Example:
        >>> from utils.aws import client
        >>> with block_real_aws(), fake_credentials():
        ...     client("s3", endpoint_url="https://s3.amazonaws.com", max_attempts=1).list_buckets()
        Traceback (most recent call last):
        ...
        utils.aws.testing.RealAWSBlockedError: a test tried to reach 's3.amazonaws.com': ...
    """
    global _guard_depth, _original_send  # noqa: PLW0603 - one patch, however deeply nested
    from botocore.httpsession import URLLib3Session

    with _guard_lock:
        if _guard_depth == 0:
            _original_send = URLLib3Session.send
            URLLib3Session.send = _checked_send  # type: ignore[method-assign]
        _guard_depth += 1
    try:
        yield
    finally:
        with _guard_lock:
            _guard_depth -= 1
            if _guard_depth == 0:
                URLLib3Session.send = _original_send  # type: ignore[method-assign]
