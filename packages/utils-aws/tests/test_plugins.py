"""Entry points (health, transient, cli, pytest11), the testing helpers and moto's server."""

from __future__ import annotations

import importlib.metadata
import os
from pathlib import Path
from typing import Any

import pytest

from utils.aws import S3, SQS, AWSUnavailableError, client
from utils.aws.health import NOT_CONFIGURED, aws_configured, sts_identity
from utils.aws.testing import MotoServer, RealAWSBlockedError, block_real_aws, moto_server


def test_entry_points_are_declared() -> None:
    groups = {
        group: {ep.name: ep.value for ep in importlib.metadata.entry_points(group=group)}
        for group in ("utils.health", "utils.transient", "utils.cli", "pytest11")
    }
    assert groups["utils.health"]["aws-sts"] == "utils.aws.health:sts_identity"
    assert groups["utils.transient"]["botocore"] == "utils.aws.transient:classify_botocore_error"
    assert groups["utils.cli"]["aws"] == "utils.aws.cli:app"
    assert groups["pytest11"]["utils_aws"] == "utils._aws_pytest"


def test_health_check(utils_mock_aws: None) -> None:
    assert sts_identity().startswith("account 123456789012 as arn:aws:")


def test_health_check_without_any_aws_configuration_makes_no_request(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    import os

    for name in list(os.environ):
        if name.startswith(("AWS_", "UTILS_AWS_")):
            monkeypatch.delenv(name)
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.aws
    monkeypatch.setattr(Path, "home", lambda: tmp_path)
    assert not aws_configured()
    assert sts_identity() == NOT_CONFIGURED  # no credential chain walk, no metadata probe
    (tmp_path / ".aws").mkdir()
    (tmp_path / ".aws" / "config").write_text("[default]\nregion = eu-west-1\n")
    assert aws_configured()


def test_health_check_failure(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("UTILS_AWS_ENDPOINT_URL", "http://127.0.0.1:9")
    from utils.aws import clear_clients

    clear_clients()
    with pytest.raises(AWSUnavailableError):
        sts_identity()
    clear_clients()


def test_the_guard_blocks_real_endpoints() -> None:
    with pytest.raises(RealAWSBlockedError, match=r"s3\.amazonaws\.com"):
        client("s3", endpoint_url="https://s3.amazonaws.com", max_attempts=1).list_buckets()
    with block_real_aws(), pytest.raises(RealAWSBlockedError):  # nested: still one patch
        client("sqs", region="eu-west-1", max_attempts=1).list_queues()


def test_fixtures_over_the_moto_server(utils_aws_endpoint: str, utils_moto_server: Any) -> None:
    assert client("s3").meta.endpoint_url == utils_aws_endpoint
    client("s3").create_bucket(Bucket="real-http")
    bucket = S3("real-http")
    bucket.put_json("k", {"over": "http"})
    assert bucket.get_json("k") == {"over": "http"}
    queue = SQS(client("sqs").create_queue(QueueName="q")["QueueUrl"])
    assert queue.send_many(str(n) for n in range(15)) == []
    seen: list[str] = []
    result = queue.consume(lambda m: seen.append(m.body), wait_time=0, max_messages=15)
    assert result.handled == 15
    assert sorted(seen, key=int) == [str(n) for n in range(15)]
    utils_moto_server.reset()
    assert client("s3").list_buckets()["Buckets"] == []


def test_credentials_fixture(utils_aws_credentials: None) -> None:
    assert os.environ["AWS_ACCESS_KEY_ID"] == "testing"
    assert "AWS_PROFILE" not in os.environ


def test_no_network_fixture(utils_aws_no_network: None) -> None:
    with pytest.raises(RealAWSBlockedError):
        client("s3", endpoint_url="https://example.com", max_attempts=1).list_buckets()


def test_private_moto_server() -> None:
    server = MotoServer()
    server.stop()  # stopping a server that never started is fine
    with moto_server() as url:
        assert client("sts").get_caller_identity()["Account"] == "123456789012"
        assert client("sts").meta.endpoint_url == url
