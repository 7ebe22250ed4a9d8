"""Transient-error classifier for raw botocore errors (entry-point group ``utils.transient``).

:func:`utils.core.is_transient` asks it about exceptions it does not know, so ``@retry()``
from utils-resilience retries a raw botocore throttle or 503 without importing this
package. It recognises botocore exceptions by their module and never imports botocore for
anything else (an exception from botocore means botocore is already loaded).

- **True**: throttling codes, 5xx answers, endpoint and connection errors, socket timeouts
  — *unless* botocore already retried the call (``RetryAttempts > 0`` in the response):
  then its budget is spent and retrying again would multiply the attempts (False).
- **False**: every other botocore error (not found, denied, validation, no credentials).
- **None**: not a botocore exception.

Errors raised by the ``utils.aws`` helpers are already translated
(:class:`~utils.aws.AWSError` carries ``retryable``) and never reach this classifier.

Example:
    >>> from botocore.exceptions import ClientError, EndpointConnectionError
    >>> classify_botocore_error(ClientError({"Error": {"Code": "SlowDown"}}, "PutObject"))
    True
    >>> classify_botocore_error(ClientError({"Error": {"Code": "AccessDenied"}}, "GetObject"))
    False
    >>> classify_botocore_error(ValueError("not botocore")) is None
    True
"""

from __future__ import annotations

__all__ = ["classify_botocore_error"]


def classify_botocore_error(exc: BaseException) -> bool | None:
    """Return True (transient), False (permanent) or None (not a botocore error).

    Example:
        >>> from botocore.exceptions import ReadTimeoutError
        >>> classify_botocore_error(ReadTimeoutError(endpoint_url="https://s3.example"))
        True
    """
    module = type(exc).__module__
    if not (module == "botocore" or module.startswith("botocore.")):
        return None
    try:
        from utils.aws.translation import translate

        return translate(exc).retryable
    except Exception:  # pragma: no cover - a classifier must never raise
        return None
