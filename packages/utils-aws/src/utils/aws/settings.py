"""``AWSSettings``: the AWS configuration read from ``UTILS_AWS_*`` variables.

Unset fields fall back to boto3's own resolution (``AWS_REGION``/``AWS_DEFAULT_REGION``,
``AWS_PROFILE``, ``~/.aws/config``), so an application that already configures boto3 needs
nothing more.

Example:
    >>> settings = AWSSettings.from_env({"UTILS_AWS_REGION": "eu-west-1",
    ...                                  "UTILS_AWS_MAX_ATTEMPTS": "5"})
    >>> settings.region, settings.max_attempts, settings.retry_mode
    ('eu-west-1', 5, 'standard')
"""

from __future__ import annotations

from typing import Literal

from utils.core import Settings

__all__ = ["AWSSettings"]


class AWSSettings(Settings, env_prefix="UTILS_AWS_"):
    """Region, profile, endpoint, retries and timeouts of every client ``utils.aws`` builds.

    ``max_attempts`` is the whole retry budget of a call, the first attempt included:
    botocore spends it, and errors that come out after it are not retried again by
    ``utils.resilience.retry`` (see :func:`~utils.aws.translate`).

    Example:
        >>> AWSSettings.from_env({}).connect_timeout
        5.0
    """

    #: AWS region (``eu-west-1``); unset = boto3's resolution (``AWS_REGION``, config file).
    region: str | None = None
    #: Named profile of ``~/.aws/config``; unset = the default credential chain.
    profile: str | None = None
    #: Endpoint URL for every service (LocalStack, moto server, a VPC endpoint).
    endpoint_url: str | None = None
    #: HTTP attempts per call, the first included (botocore's ``total_max_attempts``).
    max_attempts: int = 3
    #: botocore retry mode: ``standard`` (default), ``adaptive`` or ``legacy``.
    retry_mode: Literal["standard", "adaptive", "legacy"] = "standard"
    #: Seconds to open a connection.
    connect_timeout: float = 5.0
    #: Seconds to wait for each read from the socket.
    read_timeout: float = 60.0
