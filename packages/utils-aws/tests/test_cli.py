"""``utils aws ...`` through typer's CliRunner against moto."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from utils.aws import client
from utils.aws.cli import app
from utils.aws.testing import mocked_aws

runner = CliRunner()


@pytest.fixture
def aws() -> Iterator[None]:
    with mocked_aws():
        client("s3").create_bucket(Bucket="bkt")
        yield


def test_whoami(aws: None) -> None:
    result = runner.invoke(app, ["whoami"])
    assert result.exit_code == 0
    assert "123456789012" in result.output
    result = runner.invoke(app, ["whoami", "--json", "--region", "eu-west-1"])
    assert json.loads(result.output)["Account"] == "123456789012"


def test_whoami_failure() -> None:
    result = runner.invoke(
        app, ["whoami", "--endpoint-url", "http://127.0.0.1:9", "--region", "us-east-1"]
    )
    assert result.exit_code == 1
    assert "AWSUnavailableError" in result.output


def test_s3_cp_and_ls(aws: None, tmp_path: Path) -> None:
    source = tmp_path / "report.csv"
    source.write_text("a,b\n")
    result = runner.invoke(app, ["s3", "cp", str(source), "s3://bkt/reports/"])
    assert result.exit_code == 0, result.output
    result = runner.invoke(app, ["s3", "cp", str(source), "s3://bkt/named.csv", "--json"])
    assert json.loads(result.output)["bytes"] == 4
    result = runner.invoke(app, ["s3", "ls", "s3://bkt/"])
    assert "reports/report.csv" in result.output
    assert "named.csv" in result.output
    listing = json.loads(runner.invoke(app, ["s3", "ls", "s3://bkt/reports", "--json"]).output)
    assert [row["key"] for row in listing] == ["reports/report.csv"]
    target = tmp_path / "down"
    target.mkdir()
    result = runner.invoke(app, ["s3", "cp", "s3://bkt/reports/report.csv", str(target), "-q"])
    assert result.exit_code == 0, result.output
    assert (target / "report.csv").read_text() == "a,b\n"
    result = runner.invoke(app, ["s3", "cp", "s3://bkt/named.csv", "s3://bkt/copy.csv"])
    assert result.exit_code == 0, result.output
    assert client("s3").get_object(Bucket="bkt", Key="copy.csv")["Body"].read() == b"a,b\n"


def test_s3_errors(aws: None, tmp_path: Path) -> None:
    assert runner.invoke(app, ["s3", "ls", "bkt"]).exit_code == 2
    assert runner.invoke(app, ["s3", "cp", "a", "b"]).exit_code == 2
    assert runner.invoke(app, ["s3", "cp", str(tmp_path / "none"), "s3://bkt/x"]).exit_code == 2
    result = runner.invoke(app, ["s3", "ls", "s3://no-such-bucket/"])
    assert result.exit_code == 1
    assert "AWSNotFoundError" in result.output
    result = runner.invoke(app, ["s3", "cp", "s3://bkt/missing", str(tmp_path / "x")])
    assert result.exit_code == 1


def test_secret_get(aws: None) -> None:
    sm = client("secretsmanager")
    sm.create_secret(Name="text", SecretString="plain")
    sm.create_secret(Name="doc", SecretString='{"a": 1}')
    sm.create_secret(Name="bin", SecretBinary=b"\x00")
    assert runner.invoke(app, ["secret", "get", "text"]).output == "plain\n"
    assert json.loads(runner.invoke(app, ["secret", "get", "doc", "--json"]).output) == {
        "name": "doc",
        "value": {"a": 1},
    }
    assert (
        json.loads(runner.invoke(app, ["secret", "get", "text", "--json"]).output)["value"]
        == "plain"
    )
    assert runner.invoke(app, ["secret", "get", "bin"]).exit_code == 1
    missing = runner.invoke(app, ["secret", "get", "nope"])
    assert missing.exit_code == 1
    assert "AWSNotFoundError" in missing.output
