"""The ``aws-sts`` health check (entry-point group ``utils.health``), run by ``utils doctor``.

It asks STS who the configured credentials are (``GetCallerIdentity``: allowed for every
identity, no IAM permission needed), with at most 2 attempts and short timeouts, capped by
the doctor's deadline. The detail names the account and the identity's ARN, never keys.

Example:
    >>> from utils.aws.testing import mocked_aws
    >>> with mocked_aws():
    ...     sts_identity()
    'account 123456789012 as arn:aws:sts::123456789012:user/moto'
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from utils.aws._service import Service

__all__ = ["NOT_CONFIGURED", "aws_configured", "sts_identity"]

#: What the check answers when nothing in the environment or ``~/.aws`` configures AWS.
NOT_CONFIGURED = "not configured: no AWS credentials, profile or region in the environment"

# Any of these says "this process is meant to talk to AWS"; without one, the credential
# chain would end by probing the instance-metadata address, which doctor must not do on a
# laptop or a CI host (it waits a second, then fails with "Unable to locate credentials").
_SIGNS = (
    "AWS_ACCESS_KEY_ID",
    "AWS_PROFILE",
    "AWS_DEFAULT_PROFILE",
    "AWS_REGION",
    "AWS_DEFAULT_REGION",
    "AWS_ROLE_ARN",
    "AWS_WEB_IDENTITY_TOKEN_FILE",
    "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
    "AWS_CONTAINER_CREDENTIALS_FULL_URI",
    "AWS_SHARED_CREDENTIALS_FILE",
    "AWS_CONFIG_FILE",
)


def aws_configured(environ: Mapping[str, str] | None = None, home: Path | None = None) -> bool:
    """Whether anything configures AWS here: credentials, a profile, a region, ``~/.aws``.

    Example:
        >>> aws_configured({}, home=Path("/nonexistent"))
        False
        >>> aws_configured({"AWS_REGION": "eu-west-1"}, home=Path("/nonexistent"))
        True
    """
    environ = os.environ if environ is None else environ
    if any(environ.get(name) for name in _SIGNS):
        return True
    if any(name.startswith("UTILS_AWS_") and value for name, value in environ.items()):
        return True
    folder = (Path.home() if home is None else home) / ".aws"
    return (folder / "credentials").is_file() or (folder / "config").is_file()


class _STS(Service):
    service = "sts"


def sts_identity() -> str:
    """Health check: return ``"account <id> as <arn>"`` of the configured credentials.

    Passes with :data:`NOT_CONFIGURED`, without any request, when nothing configures AWS
    (see :func:`aws_configured`).

    Raises:
        AWSConfigError: no credentials or region could be found.
        AWSPermissionDeniedError: the credentials are invalid or expired.
        AWSUnavailableError: STS could not be reached.
    """
    if not aws_configured():
        return NOT_CONFIGURED
    identity = _STS(max_attempts=2, connect_timeout=2.0, read_timeout=3.0)._call(
        "get_caller_identity"
    )
    return f"account {identity['Account']} as {identity['Arn']}"
