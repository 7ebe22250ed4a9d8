"""AWS health checks: for the application's own client or session, and from the environment.

:func:`aws_check` takes the boto3 session, client or resource the application already uses
and returns a check for :func:`utils.core.health.register_check`: STS ``GetCallerIdentity``
for a session (or an STS client), a cheap read on any other client.

The ``aws-sts`` entry-point check (group ``utils.health``, run by ``utils doctor`` and the
probes' ``/readyz``) asks STS who the configured credentials are (``GetCallerIdentity``:
allowed for every identity, no IAM permission needed), with at most 2 attempts and short
timeouts, capped by the check's deadline. The detail names the account and the identity's ARN, never keys.

Example:
    >>> import boto3
    >>> from utils.aws.testing import mocked_aws
    >>> with mocked_aws():
    ...     aws_check(boto3.session.Session())() == sts_identity()
    True
    >>> with mocked_aws():
    ...     sts_identity()
    'account 123456789012 as arn:aws:sts::123456789012:user/moto'
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from utils.aws._service import Service
from utils.core import ValidationError

__all__ = [
    "CHEAP_CALLS",
    "NOT_CONFIGURED",
    "REACHABLE_CODES",
    "aws_check",
    "aws_configured",
    "sts_identity",
]

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


#: The call :func:`aws_check` makes on a client of each service when no ``operation`` is
#: given: a read that returns at most one item.
CHEAP_CALLS: Mapping[str, tuple[str, Mapping[str, Any]]] = {
    "sts": ("get_caller_identity", {}),
    "s3": ("list_buckets", {}),
    "sqs": ("list_queues", {"MaxResults": 1}),
    "dynamodb": ("list_tables", {"Limit": 1}),
    "secretsmanager": ("list_secrets", {"MaxResults": 1}),
    "ssm": ("describe_parameters", {"MaxResults": 1}),
    "sns": ("list_topics", {}),
    "kinesis": ("list_streams", {"Limit": 1}),
    "lambda": ("list_functions", {"MaxItems": 1}),
}

#: Error codes that prove AWS answered a signed request from valid credentials that are not
#: allowed this one call: the dependency is reachable, so the check passes (least-privilege
#: roles often may not list anything). Expired or invalid credentials still fail.
REACHABLE_CODES = frozenset(
    {"AccessDenied", "AccessDeniedException", "UnauthorizedOperation", "AuthorizationError"}
)


def _describe_identity(identity: Mapping[str, Any]) -> str:
    return f"account {identity['Account']} as {identity['Arn']}"


def aws_check(
    client_or_session: Any, *, operation: str | None = None, **params: Any
) -> Callable[[], str]:
    """A health check that makes one cheap call with the application's own AWS objects.

    Register it as a readiness check only if the service really is needed to serve
    traffic: an AWS-wide problem then takes every pod out of service at once::

        register_check("aws", aws_check(session), kind="readiness", timeout=2.0)

    Args:
        client_or_session: A ``boto3.session.Session`` (STS ``GetCallerIdentity`` through
            a client built once from it), a boto3 client, or a boto3 resource (its client).
        operation: The client method to call (with ``params``) instead of the default
            from :data:`CHEAP_CALLS`; e.g. ``operation="head_bucket", Bucket="reports"``.
        params: Keyword arguments of ``operation``.

    Returns:
        A sync callable taking no arguments: it returns ``"account ... as arn:..."`` (STS)
        or ``"s3 list_buckets answered (12.3 ms)"``, and raises the translated
        :class:`~utils.aws.AWSError` when the call fails. An access-denied answer
        (:data:`REACHABLE_CODES`) passes: AWS was reached with valid credentials.

    Raises:
        ValidationError: Not a boto3 session, client or resource; or a client of a service
            without a default call and no ``operation``; or ``operation`` not one of the
            client's methods.

    Example:
        >>> from utils.aws import client
        >>> from utils.aws.testing import mocked_aws
        >>> with mocked_aws():
        ...     aws_check(client("sqs"))()  # doctest: +ELLIPSIS
        'sqs list_queues answered (... ms)'
    """
    if hasattr(client_or_session, "get_credentials") and hasattr(client_or_session, "client"):
        if operation is not None:
            raise ValidationError(
                "aws_check(session) calls STS GetCallerIdentity: pass a client to call "
                f"{operation!r}",
                details={"name": "operation"},
            )
        return _session_check(client_or_session)
    built = getattr(getattr(client_or_session, "meta", None), "client", client_or_session)
    model = getattr(getattr(built, "meta", None), "service_model", None)
    if model is None:
        raise ValidationError(
            "aws_check needs a boto3 Session, client or resource, got "
            f"{type(client_or_session).__name__}",
            details={"name": "client_or_session"},
        )
    service = str(model.service_name)
    if operation is None:
        default = CHEAP_CALLS.get(service)
        if default is None:
            raise ValidationError(
                f"aws_check has no default call for {service!r} clients: pass operation= "
                "(a cheap read, e.g. operation='describe_table', TableName='users')",
                details={"name": "operation", "service": service},
            )
        operation, params = default[0], dict(default[1])
    if not callable(getattr(built, operation, None)):
        raise ValidationError(
            f"{operation!r} is not an operation of {service!r} clients",
            details={"name": "operation", "service": service},
        )
    return _client_check(built, service, operation, params)


def _call(built: Any, operation: str, params: Mapping[str, Any]) -> Any:
    from utils.aws.translation import error_code, translate

    try:
        return getattr(built, operation)(**params)
    except Exception as exc:
        if error_code(exc) in REACHABLE_CODES:
            return _Denied(str(error_code(exc)))
        error = translate(exc)
        raise error from exc


class _Denied:
    """An access-denied answer: AWS reached, credentials valid, the call not allowed."""

    __slots__ = ("code",)

    def __init__(self, code: str) -> None:
        self.code = code


def _client_check(
    built: Any, service: str, operation: str, params: Mapping[str, Any]
) -> Callable[[], str]:
    def check_client() -> str:
        started = time.perf_counter()
        answer = _call(built, operation, params)
        elapsed_ms = (time.perf_counter() - started) * 1000
        if isinstance(answer, _Denied):
            return f"{service} reachable, {operation} not allowed ({answer.code}, {elapsed_ms:.1f} ms)"
        if service == "sts" and operation == "get_caller_identity":
            return _describe_identity(answer)
        return f"{service} {operation} answered ({elapsed_ms:.1f} ms)"

    return check_client


def _session_check(session: Any) -> Callable[[], str]:
    built: list[Any] = []  # the STS client, built on the first run (not at registration)
    lock = threading.Lock()

    def sts_client() -> Any:
        with lock:
            if not built:
                from botocore.config import Config

                from utils.aws.translation import translate

                # Short timeouts and one retry, as the aws-sts entry-point check uses.
                config = Config(
                    connect_timeout=2.0,
                    read_timeout=3.0,
                    retries={"mode": "standard", "total_max_attempts": 2},
                )
                try:
                    built.append(session.client("sts", config=config))
                except Exception as exc:  # no region, unknown profile...
                    raise translate(exc) from exc
            return built[0]

    def check_session() -> str:
        return _describe_identity(_call(sts_client(), "get_caller_identity", {}))

    return check_session
