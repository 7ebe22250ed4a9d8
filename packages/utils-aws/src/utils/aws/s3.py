"""``S3(bucket)``: bytes, text, JSON and files in one bucket, with errors that say what happened.

Every method is one boto3 call (or a paginator, or boto3's managed transfer) through the
cached :func:`~utils.aws.client`; failures are translated (a missing key is
:class:`~utils.aws.AWSNotFoundError`, a 403 is never "missing"). Listing is lazy and
paginated, ``delete_prefix`` deletes in batches of 1,000 and reports per-key failures, and
presigned URLs are SigV4, signed for the bucket's own region, valid at most 7 days — and
never logged.

boto3 has no asyncio API: these helpers are sync only (run them in a thread from async
code, e.g. with :func:`utils.core.run_in_thread`).

Example:
    >>> from utils.aws.testing import mocked_aws
    >>> with mocked_aws():
    ...     _ = client("s3").create_bucket(Bucket="docs")
    ...     bucket = S3("docs")
    ...     _ = bucket.put_json("a/1.json", {"n": 1})
    ...     bucket.get_json("a/1.json"), list(bucket.list_keys("a/")), bucket.exists("a/2.json")
    ({'n': 1}, ['a/1.json'], False)
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from utils.aws._service import Service, failure
from utils.aws.clients import client
from utils.aws.errors import AWSError, AWSNotFoundError
from utils.core import ValidationError
from utils.core.report import Event
from utils.core.validate import positive_int

__all__ = ["MAX_PRESIGN_SECONDS", "S3", "DeleteResult"]

#: SigV4 presigned URLs live at most 7 days.
MAX_PRESIGN_SECONDS = 7 * 24 * 3600
#: Keys per DeleteObjects request (the S3 maximum).
DELETE_BATCH = 1000
_MiB = 1024 * 1024

S3_DELETE_FAILED = Event(
    "aws.s3.delete_failed", logger="utils.aws", level="warning", tags=("bucket", "code")
)
S3_UPLOAD_ABORTED = Event(
    "aws.s3.upload_aborted", logger="utils.aws", level="warning", tags=("bucket",)
)


@dataclass
class DeleteResult:
    """What :meth:`S3.delete_prefix` did.

    Example:
        >>> DeleteResult(deleted=3).ok
        True
    """

    #: Keys deleted.
    deleted: int = 0
    #: ``(key, code, message)`` of every key S3 refused to delete.
    errors: list[tuple[str, str, str]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when every key was deleted."""
        return not self.errors


class S3(Service):
    """One bucket. ``client=`` or client options (``region=``, ``endpoint_url=`` ...) optional.

    Example:
        >>> S3("my-bucket", region="eu-west-1").bucket
        'my-bucket'
    """

    service = "s3"

    def __init__(self, bucket: str, *, client: Any = None, **overrides: Any) -> None:
        if not isinstance(bucket, str) or not bucket:
            raise ValidationError(f"bucket must be a non-empty string, got {bucket!r}")
        super().__init__(client=client, **overrides)
        self.bucket = bucket
        self._region: str | None = None

    def __repr__(self) -> str:
        return f"S3({self.bucket!r})"

    # -- objects -----------------------------------------------------------------------------

    def put_bytes(
        self,
        key: str,
        data: bytes,
        *,
        content_type: str | None = None,
        metadata: dict[str, str] | None = None,
        **extra: Any,
    ) -> str:
        """Store ``data`` under ``key``; return the ETag. ``extra``: more PutObject arguments.

        Example:
            >>> from utils.aws.testing import mocked_aws
            >>> with mocked_aws():
            ...     _ = client("s3").create_bucket(Bucket="bkt")
            ...     len(S3("bkt").put_bytes("k", b"data")) > 0
            True
        """
        params: dict[str, Any] = {"Bucket": self.bucket, "Key": key, "Body": data, **extra}
        if content_type is not None:
            params["ContentType"] = content_type
        if metadata:
            params["Metadata"] = metadata
        response = self._call("put_object", **params)
        return str(response.get("ETag", "")).strip('"')

    def get_bytes(self, key: str, **extra: Any) -> bytes:
        """The content of ``key`` (raises :class:`AWSNotFoundError` when it is missing).

        Example:
            >>> from utils.aws.testing import mocked_aws
            >>> with mocked_aws():
            ...     _ = client("s3").create_bucket(Bucket="bkt")
            ...     _ = S3("bkt").put_bytes("k", b"data")
            ...     S3("bkt").get_bytes("k")
            b'data'
        """
        response = self._call("get_object", Bucket=self.bucket, Key=key, **extra)
        body = response["Body"]
        try:
            return bytes(body.read())
        except Exception as exc:
            raise failure(self.client(), self.service, "GetObject", exc) from exc
        finally:
            body.close()

    def put_text(self, key: str, text: str, *, encoding: str = "utf-8", **extra: Any) -> str:
        """Store ``text`` (``text/plain`` with its charset); return the ETag.

        Example:
            >>> from utils.aws.testing import mocked_aws
            >>> with mocked_aws():
            ...     _ = client("s3").create_bucket(Bucket="bkt")
            ...     _ = S3("bkt").put_text("t", "héllo")
            ...     S3("bkt").get_text("t")
            'héllo'
        """
        extra.setdefault("content_type", f"text/plain; charset={encoding}")
        return self.put_bytes(key, text.encode(encoding), **extra)

    def get_text(self, key: str, *, encoding: str = "utf-8") -> str:
        """The content of ``key`` decoded as text (see :meth:`put_text`)."""
        return self.get_bytes(key).decode(encoding)

    def put_json(self, key: str, value: Any, **extra: Any) -> str:
        """Store ``value`` as JSON (``application/json``); return the ETag."""
        data = json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode()
        extra.setdefault("content_type", "application/json")
        return self.put_bytes(key, data, **extra)

    def get_json(self, key: str) -> Any:
        """The JSON value stored under ``key`` (see :meth:`put_json`)."""
        return json.loads(self.get_bytes(key))

    def exists(self, key: str) -> bool:
        """Whether ``key`` exists: only a 404 means False; a 403 raises.

        Example:
            >>> from utils.aws.testing import mocked_aws
            >>> with mocked_aws():
            ...     _ = client("s3").create_bucket(Bucket="bkt")
            ...     S3("bkt").exists("nothing")
            False
        """
        try:
            self._call("head_object", Bucket=self.bucket, Key=key)
        except AWSNotFoundError:
            return False
        return True

    def delete(self, key: str) -> None:
        """Delete ``key`` (S3 answers the same whether it existed or not)."""
        self._call("delete_object", Bucket=self.bucket, Key=key)

    def copy(self, source_key: str, dest_key: str, *, source_bucket: str | None = None) -> None:
        """Copy an object into this bucket (managed copy: multipart above 8 MiB, any size).

        Example:
            >>> from utils.aws.testing import mocked_aws
            >>> with mocked_aws():
            ...     _ = client("s3").create_bucket(Bucket="bkt")
            ...     _ = S3("bkt").put_text("a", "x")
            ...     S3("bkt").copy("a", "b")
            ...     S3("bkt").get_text("b")
            'x'
        """
        source = {"Bucket": source_bucket or self.bucket, "Key": source_key}
        self._call("copy", CopySource=source, Bucket=self.bucket, Key=dest_key)

    # -- listing -----------------------------------------------------------------------------

    def iter_objects(self, prefix: str = "", *, page_size: int = 1000) -> Iterator[dict[str, Any]]:
        """Lazily yield the object summaries (``Key``, ``Size``, ``ETag`` ...) under ``prefix``.

        One ListObjectsV2 request per ``page_size`` objects, made as the iteration needs it.
        """
        positive_int(page_size, "page_size")
        params = {
            "Bucket": self.bucket,
            "Prefix": prefix,
            "PaginationConfig": {"PageSize": page_size},
        }
        for page in self._pages("list_objects_v2", **params):
            yield from page.get("Contents", ())

    def list_keys(self, prefix: str = "", *, page_size: int = 1000) -> Iterator[str]:
        """Lazily yield the keys under ``prefix`` (see :meth:`iter_objects`)."""
        for page in self._pages(
            "list_objects_v2",
            Bucket=self.bucket,
            Prefix=prefix,
            PaginationConfig={"PageSize": positive_int(page_size, "page_size")},
        ):
            for item in page.get("Contents", ()):
                yield item["Key"]

    def delete_prefix(self, prefix: str) -> DeleteResult:
        """Delete every key under ``prefix``, 1,000 per request; per-key failures are reported.

        An empty prefix would empty the bucket: pass ``prefix=""`` explicitly only if meant.

        Example:
            >>> from utils.aws.testing import mocked_aws
            >>> with mocked_aws():
            ...     _ = client("s3").create_bucket(Bucket="bkt")
            ...     for n in range(3):
            ...         _ = S3("bkt").put_text(f"tmp/{n}", "x")
            ...     S3("bkt").delete_prefix("tmp/")
            DeleteResult(deleted=3, errors=[])
        """
        result = DeleteResult()
        params: dict[str, Any] = {"Bucket": self.bucket, "Prefix": prefix, "MaxKeys": DELETE_BATCH}
        while True:
            # StartAfter (a key), not a continuation token: the listing stays right while the
            # keys it has returned are being deleted, on S3 and on S3-compatible stores.
            page = self._call("list_objects_v2", **params)
            keys = [item["Key"] for item in page.get("Contents", ())]
            if keys:
                self._delete_batch(keys, result)
            if not page.get("IsTruncated") or not keys:
                return result
            params["StartAfter"] = keys[-1]

    def _delete_batch(self, keys: list[str], result: DeleteResult) -> None:
        response = self._call(
            "delete_objects",
            Bucket=self.bucket,
            Delete={"Objects": [{"Key": key} for key in keys], "Quiet": True},
        )
        errors = response.get("Errors", ())
        result.deleted += len(keys) - len(errors)
        for error in errors:
            code = str(error.get("Code", "Unknown"))
            result.errors.append((str(error.get("Key", "")), code, str(error.get("Message", ""))))
            S3_DELETE_FAILED.emit(bucket=self.bucket, code=code, key=error.get("Key"))

    # -- files -------------------------------------------------------------------------------

    def _transfer_config(self, threshold: int, chunk_size: int, concurrency: int) -> Any:
        from boto3.s3.transfer import TransferConfig

        return TransferConfig(
            multipart_threshold=positive_int(threshold, "multipart_threshold"),
            multipart_chunksize=positive_int(chunk_size, "multipart_chunksize"),
            max_concurrency=positive_int(concurrency, "max_concurrency"),
        )

    def upload_file(
        self,
        path: str | os.PathLike[str],
        key: str,
        *,
        progress: Callable[[int], object] | None = None,
        multipart_threshold: int = 8 * _MiB,
        multipart_chunksize: int = 8 * _MiB,
        max_concurrency: int = 10,
        extra_args: dict[str, Any] | None = None,
    ) -> None:
        """Upload a file (multipart above ``multipart_threshold``); ``progress(bytes_sent)``.

        A failed multipart upload is aborted: no parts are left behind to be billed.
        """
        config = self._transfer_config(multipart_threshold, multipart_chunksize, max_concurrency)
        started = datetime.now(timezone.utc)
        try:
            self._call(
                "upload_file",
                Filename=os.fspath(path),
                Bucket=self.bucket,
                Key=key,
                Config=config,
                Callback=progress,
                ExtraArgs=extra_args,
            )
        except Exception:
            self._abort_uploads(key, started)
            raise

    def _abort_uploads(self, key: str, since: datetime) -> None:
        """Abort the multipart uploads of ``key`` started since ``since``.

        s3transfer aborts its own on failure, but that abort can fail too: make sure.
        """
        try:
            listing = self._call("list_multipart_uploads", Bucket=self.bucket, Prefix=key)
            for upload in listing.get("Uploads", ()):
                if upload.get("Key") == key and upload.get("Initiated", since) >= since:
                    self._call(
                        "abort_multipart_upload",
                        Bucket=self.bucket,
                        Key=key,
                        UploadId=upload["UploadId"],
                    )
                    S3_UPLOAD_ABORTED.emit(bucket=self.bucket, key=key)
        except AWSError:  # the upload's own error is what the caller needs to see
            pass

    def download_file(
        self,
        key: str,
        path: str | os.PathLike[str],
        *,
        progress: Callable[[int], object] | None = None,
        multipart_threshold: int = 8 * _MiB,
        multipart_chunksize: int = 8 * _MiB,
        max_concurrency: int = 10,
    ) -> None:
        """Download ``key`` to ``path`` (ranged parts in parallel above the threshold)."""
        config = self._transfer_config(multipart_threshold, multipart_chunksize, max_concurrency)
        self._call(
            "download_file",
            Bucket=self.bucket,
            Key=key,
            Filename=os.fspath(path),
            Config=config,
            Callback=progress,
        )

    # -- presigned URLs ----------------------------------------------------------------------

    def region(self) -> str:
        """The bucket's region (asked once, then remembered)."""
        if self._region is None:
            response = self._call("head_bucket", Bucket=self.bucket)
            headers = response.get("ResponseMetadata", {}).get("HTTPHeaders", {})
            self._region = str(
                headers.get("x-amz-bucket-region") or response.get("BucketRegion") or "us-east-1"
            )
        return self._region

    def _presign(self, method: str, key: str, expires: int, params: dict[str, Any]) -> str:
        if isinstance(expires, bool) or not isinstance(expires, int) or expires <= 0:
            raise ValidationError(f"expires must be a positive number of seconds, got {expires!r}")
        if expires > MAX_PRESIGN_SECONDS:
            raise ValidationError(
                f"expires must be at most 7 days ({MAX_PRESIGN_SECONDS} s) for a SigV4 "
                f"presigned URL, got {expires}"
            )
        from botocore.config import Config

        signer = self._explicit
        if signer is None:
            signer = client(
                "s3",
                **{**self._overrides, "region": self.region()},
                config=Config(signature_version="s3v4", s3={"addressing_style": "virtual"}),
            )
        try:
            url = signer.generate_presigned_url(
                method, Params={"Bucket": self.bucket, "Key": key, **params}, ExpiresIn=expires
            )
        except Exception as exc:
            raise failure(signer, self.service, method, exc) from exc
        return str(url)

    def presign_get(self, key: str, expires: int = 3600) -> str:
        """A SigV4 URL that downloads ``key`` for ``expires`` seconds (at most 7 days).

        Example:
            >>> from utils.aws.testing import mocked_aws
            >>> with mocked_aws():
            ...     _ = client("s3").create_bucket(Bucket="bkt")
            ...     "X-Amz-Signature=" in S3("bkt").presign_get("k", expires=60)
            True
        """
        return self._presign("get_object", key, expires, {})

    def presign_put(
        self, key: str, expires: int = 3600, *, content_type: str | None = None
    ) -> str:
        """A SigV4 URL that uploads ``key`` (HTTP PUT) for ``expires`` seconds (at most 7 days)."""
        params = {} if content_type is None else {"ContentType": content_type}
        return self._presign("put_object", key, expires, params)
