"""S3 helpers against moto (in-process), plus stubs for per-key delete errors."""

from __future__ import annotations

import gc
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from tests._stubs import StubServer

from utils.aws import S3, AWSNotFoundError, AWSPermissionDeniedError, DeleteResult, client
from utils.aws.s3 import MAX_PRESIGN_SECONDS
from utils.aws.testing import mocked_aws
from utils.core import ValidationError

MiB = 1024 * 1024


@pytest.fixture
def bucket() -> Iterator[S3]:
    with mocked_aws():
        client("s3").create_bucket(Bucket="bkt")
        yield S3("bkt")


def test_bytes_text_json(bucket: S3) -> None:
    etag = bucket.put_bytes(
        "b", b"\x00\x01", content_type="application/x-thing", metadata={"a": "1"}
    )
    assert etag
    assert bucket.get_bytes("b") == b"\x00\x01"
    head = client("s3").head_object(Bucket="bkt", Key="b")
    assert head["ContentType"] == "application/x-thing"
    assert head["Metadata"] == {"a": "1"}
    bucket.put_text("t", "grüße", encoding="latin-1")
    assert bucket.get_text("t", encoding="latin-1") == "grüße"
    bucket.put_json("j", {"x": [1, 2], "é": None})
    assert bucket.get_json("j") == {"x": [1, 2], "é": None}
    assert client("s3").head_object(Bucket="bkt", Key="j")["ContentType"] == "application/json"


def test_missing_key(bucket: S3) -> None:
    with pytest.raises(AWSNotFoundError) as info:
        bucket.get_bytes("nope")
    assert info.value.details["code"] == "NoSuchKey"
    assert bucket.exists("nope") is False
    bucket.put_bytes("yes", b"")
    assert bucket.exists("yes") is True


def test_exists_raises_on_403() -> None:
    def forbidden(stub: StubServer, path: str, body: bytes) -> Any:
        return 403, {"x-amz-request-id": "R"}, b""

    with StubServer(forbidden) as stub, pytest.raises(AWSPermissionDeniedError):
        S3("bkt", endpoint_url=stub.url, max_attempts=1).exists("k")


def test_listing_is_lazy_and_paginated(bucket: S3) -> None:
    for n in range(25):
        bucket.put_bytes(f"p/{n:02}", b"x" * n)
    bucket.put_bytes("other", b"")
    keys = bucket.list_keys("p/", page_size=10)
    assert next(keys) == "p/00"
    assert [*keys] == [f"p/{n:02}" for n in range(1, 25)]
    objects = list(bucket.iter_objects("p/", page_size=7))
    assert [o["Size"] for o in objects] == list(range(25))
    assert list(bucket.list_keys("none/")) == []
    with pytest.raises(ValidationError):
        list(bucket.list_keys("p/", page_size=0))


def test_delete_and_delete_prefix_in_batches(bucket: S3) -> None:
    s3 = client("s3")
    for n in range(1005):
        s3.put_object(Bucket="bkt", Key=f"tmp/{n}", Body=b"")
    bucket.put_bytes("keep", b"")
    result = bucket.delete_prefix("tmp/")
    assert result == DeleteResult(deleted=1005)
    assert result.ok
    assert list(bucket.list_keys()) == ["keep"]
    bucket.delete("keep")
    bucket.delete("keep")  # deleting a missing key is fine
    assert list(bucket.list_keys()) == []


def test_delete_prefix_reports_per_key_errors(utils_logs: list[dict[str, Any]]) -> None:
    listing = (
        b"<?xml version='1.0' encoding='UTF-8'?><ListBucketResult><Name>bkt</Name>"
        b"<Prefix>p/</Prefix><KeyCount>2</KeyCount><MaxKeys>1000</MaxKeys><IsTruncated>false</IsTruncated>"
        b"<Contents><Key>p/a</Key><Size>1</Size></Contents><Contents><Key>p/b</Key><Size>1</Size></Contents>"
        b"</ListBucketResult>"
    )
    deleted = (
        b"<?xml version='1.0' encoding='UTF-8'?><DeleteResult><Error><Key>p/b</Key>"
        b"<Code>AccessDenied</Code><Message>Access Denied</Message></Error></DeleteResult>"
    )

    def answer(stub: StubServer, path: str, body: bytes) -> Any:
        return 200, {"Content-Type": "application/xml"}, deleted if "delete" in path else listing

    with StubServer(answer) as stub:
        result = S3("bkt", endpoint_url=stub.url).delete_prefix("p/")
    assert result.deleted == 1
    assert result.errors == [("p/b", "AccessDenied", "Access Denied")]
    assert not result.ok
    failed = [e for e in utils_logs if e["event"] == "aws.s3.delete_failed"]
    assert failed[0]["key"] == "p/b"


def test_copy(bucket: S3) -> None:
    client("s3").create_bucket(Bucket="other")
    S3("other").put_text("src", "payload")
    bucket.copy("src", "dst", source_bucket="other")
    assert bucket.get_text("dst") == "payload"


def test_files_multipart_with_progress(bucket: S3, tmp_path: Path) -> None:
    source = tmp_path / "big.bin"
    source.write_bytes(b"z" * (6 * MiB))
    sent: list[int] = []
    bucket.upload_file(
        source,
        "big.bin",
        progress=sent.append,
        multipart_threshold=5 * MiB,
        multipart_chunksize=5 * MiB,
    )
    assert sum(sent) == 6 * MiB
    assert client("s3").head_object(Bucket="bkt", Key="big.bin")["ETag"].endswith('-2"')
    target = tmp_path / "copy.bin"
    got: list[int] = []
    bucket.download_file("big.bin", target, progress=got.append, multipart_threshold=5 * MiB)
    assert target.read_bytes() == source.read_bytes()
    assert sum(got) == 6 * MiB
    with pytest.raises(AWSNotFoundError):
        bucket.download_file("missing", tmp_path / "x")


# s3transfer leaves its file handle to the garbage collector when a callback raises.
@pytest.mark.filterwarnings("ignore::ResourceWarning")
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_a_failed_multipart_upload_is_aborted(bucket: S3, tmp_path: Path) -> None:
    source = tmp_path / "big.bin"
    source.write_bytes(b"z" * (12 * MiB))

    def explode(sent: int) -> None:
        raise RuntimeError("disk on fire")

    with pytest.raises(RuntimeError, match="disk on fire"):
        bucket.upload_file(
            source,
            "big.bin",
            progress=explode,
            multipart_threshold=5 * MiB,
            multipart_chunksize=5 * MiB,
        )
    assert client("s3").list_multipart_uploads(Bucket="bkt").get("Uploads", []) == []
    assert bucket.exists("big.bin") is False
    gc.collect()  # let s3transfer's abandoned file handle go while the warning is ignored


def test_leftover_multipart_uploads_of_the_key_are_aborted(
    bucket: S3, tmp_path: Path, utils_logs: list[dict[str, Any]]
) -> None:
    # Simulate a multipart upload s3transfer could not abort, then a failing upload.
    s3 = client("s3")
    s3.create_multipart_upload(Bucket="bkt", Key="k")
    bucket._abort_uploads(
        "k", since=s3.list_multipart_uploads(Bucket="bkt")["Uploads"][0]["Initiated"]
    )
    assert s3.list_multipart_uploads(Bucket="bkt").get("Uploads", []) == []
    assert [e for e in utils_logs if e["event"] == "aws.s3.upload_aborted"]
    S3("no-such-bucket")._abort_uploads("k", since=s3.list_buckets()["Buckets"][0]["CreationDate"])


def test_presigned_urls(
    bucket: S3, caplog: pytest.LogCaptureFixture, utils_logs: list[dict[str, Any]]
) -> None:
    caplog.set_level(logging.DEBUG)
    url = bucket.presign_get("k", expires=MAX_PRESIGN_SECONDS)
    assert "X-Amz-Algorithm=AWS4-HMAC-SHA256" in url
    assert "X-Amz-Expires=604800" in url
    assert "X-Amz-Security-Token=" in url  # fake session credentials
    put = bucket.presign_put("k", expires=60, content_type="text/plain")
    assert "X-Amz-Signature=" in put
    assert bucket.region() == "us-east-1"
    query = parse_qs(urlsplit(url).query)
    signature = query["X-Amz-Signature"][0]
    token = query["X-Amz-Security-Token"][0]
    assert token == "testing"
    for record in caplog.records:
        message = record.getMessage()
        assert signature not in message
        assert "Token=testing" not in message
        assert "Token': b'testing'" not in message
    assert "X-Amz" not in repr(utils_logs)


@pytest.mark.parametrize("expires", [0, -1, MAX_PRESIGN_SECONDS + 1, 1.5, True])
def test_presign_limits(bucket: S3, expires: Any) -> None:
    with pytest.raises(ValidationError, match="expires"):
        bucket.presign_get("k", expires=expires)


def test_presign_with_an_explicit_client() -> None:
    with mocked_aws():
        url = S3("bkt", client=client("s3")).presign_get("k")
    assert url.startswith("https://")


def test_region_of_a_bucket_elsewhere() -> None:
    with mocked_aws():
        client("s3", region="eu-west-1").create_bucket(
            Bucket="euro", CreateBucketConfiguration={"LocationConstraint": "eu-west-1"}
        )
        bucket = S3("euro")
        assert bucket.region() == "eu-west-1"
        assert ".eu-west-1." in bucket.presign_get("k") or "eu-west-1" in bucket.presign_get("k")


def test_validation() -> None:
    with pytest.raises(ValidationError):
        S3("")
    with pytest.raises(ValidationError, match="unknown option"):
        S3("bkt", regoin="x")
    with pytest.raises(ValidationError, match="not both"):
        S3("bkt", client=object(), region="x")
    assert repr(S3("bkt")) == "S3('bkt')"
