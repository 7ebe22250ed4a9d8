"""aws_check(client_or_session) with moto in-process, and an unreachable endpoint."""

from __future__ import annotations

from collections.abc import Iterator

import boto3
import pytest
from botocore.config import Config

from utils.aws import (
    AWSNotFoundError,
    AWSPermissionDeniedError,
    AWSUnavailableError,
    client,
    resource,
)
from utils.aws.health import CHEAP_CALLS, aws_check
from utils.core import ValidationError
from utils.core import health as health_module
from utils.core.health import register_check, run_checks
from utils.core.testing import find_free_port

ACCOUNT = "account 123456789012 as arn:aws:sts::123456789012:user/moto"


@pytest.fixture(autouse=True)
def _clean_registry() -> Iterator[None]:
    before = dict(health_module._state.checks)
    yield
    health_module._state.checks = before


def test_session_and_sts_client_ask_who_we_are(utils_mock_aws: None) -> None:
    assert aws_check(boto3.session.Session(region_name="eu-west-1"))() == ACCOUNT
    assert aws_check(client("sts"))() == ACCOUNT


@pytest.mark.parametrize("service", sorted(set(CHEAP_CALLS) - {"sts"}))
def test_every_default_call_answers_under_moto(utils_mock_aws: None, service: str) -> None:
    operation = CHEAP_CALLS[service][0]
    detail = aws_check(client(service))()
    assert detail.startswith(f"{service} {operation} answered (")


def test_resources_and_explicit_operations(utils_mock_aws: None) -> None:
    client("s3").create_bucket(Bucket="reports")
    assert aws_check(resource("dynamodb"))().startswith("dynamodb list_tables answered")
    assert aws_check(client("s3"), operation="head_bucket", Bucket="reports")().startswith(
        "s3 head_bucket answered"
    )
    missing = aws_check(client("s3"), operation="head_bucket", Bucket="nope")
    with pytest.raises(AWSNotFoundError):
        missing()
    register_check("reports", missing, timeout=5.0)
    [result] = run_checks(["reports"], kind="readiness")
    assert (result.ok, result.detail.split(":")[0]) == (False, "AWSNotFoundError")


def test_access_denied_means_reachable(utils_mock_aws: None) -> None:
    from moto.core import set_initial_no_auth_action_count

    iam = client("iam")

    @set_initial_no_auth_action_count(3)  # create_user, put_user_policy, create_access_key
    def scenario() -> str:
        iam.create_user(UserName="probe")
        iam.put_user_policy(
            UserName="probe",
            PolicyName="sts-only",
            PolicyDocument='{"Version": "2012-10-17", "Statement": [{"Effect": "Allow",'
            ' "Action": "sts:GetCallerIdentity", "Resource": "*"}]}',
        )
        keys = iam.create_access_key(UserName="probe")["AccessKey"]
        limited = boto3.session.Session(
            aws_access_key_id=keys["AccessKeyId"],
            aws_secret_access_key=keys["SecretAccessKey"],
            region_name="us-east-1",
        )
        bogus = boto3.session.Session(
            aws_access_key_id="AKIAIOSFODNN7EXAMPLE",
            aws_secret_access_key="not-a-real-secret",
            region_name="us-east-1",
        )
        with pytest.raises(AWSPermissionDeniedError):  # invalid keys still fail the check
            aws_check(bogus.client("s3"))()
        return aws_check(limited.client("s3"))()

    assert scenario().startswith("s3 reachable, list_buckets not allowed (AccessDenied")


def test_unreachable_endpoint_fails(utils_aws_credentials: None) -> None:
    unreachable = boto3.session.Session().client(
        "sqs",
        endpoint_url=f"http://127.0.0.1:{find_free_port()}",
        config=Config(retries={"total_max_attempts": 1}, connect_timeout=1, read_timeout=1),
    )
    with pytest.raises(AWSUnavailableError):
        aws_check(unreachable)()
    register_check("sqs", aws_check(unreachable), timeout=5.0)
    [result] = run_checks(["sqs"])
    assert result.detail.startswith("AWSUnavailableError: ")
    assert "testing" not in result.detail  # the fake keys never show


def test_bad_arguments_are_refused(utils_mock_aws: None) -> None:
    with pytest.raises(ValidationError, match="needs a boto3 Session, client or resource"):
        aws_check(object())
    with pytest.raises(ValidationError, match="no default call for 'ec2' clients"):
        aws_check(client("ec2"))
    with pytest.raises(ValidationError, match="'list_everything' is not an operation"):
        aws_check(client("s3"), operation="list_everything")
    with pytest.raises(ValidationError, match="pass a client to call 'list_buckets'"):
        aws_check(boto3.session.Session(), operation="list_buckets")
