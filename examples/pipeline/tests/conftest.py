"""Fixtures: a PostgreSQL schema of the test's own (dropped after it), S3 in moto."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import psycopg
import pytest
from botocore import handlers
from botocore.awsrequest import AWSResponse, HTTPHeaders
from pipeline.load import Loader
from psycopg import sql
from tests.data import Batch

from utils.aws import S3, clear_clients, client
from utils.aws.testing import mocked_aws
from utils.db import Database
from utils.db.testing import unique_name
from utils.resilience import RateLimiter

__all__ = ["Faults", "upload"]


@pytest.fixture
def schema(utils_postgres_url: str) -> Iterator[str]:
    """A schema name nobody else uses on the real server; dropped with its tables after."""
    name = unique_name("pipeline_test")
    yield name
    with psycopg.connect(utils_postgres_url, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(name)))


@pytest.fixture
def db(utils_postgres_url: str) -> Iterator[Database]:
    with Database(utils_postgres_url, max_size=2) as database:
        yield database


@pytest.fixture
def lake() -> Iterator[S3]:
    """The bucket ``lake`` in moto's in-process AWS."""
    with mocked_aws():
        client("s3").create_bucket(Bucket="lake")
        yield S3("lake", max_attempts=1)  # the loader's retry policies own the retries


def upload(bucket: S3, batches: list[Batch]) -> None:
    for batch in batches:
        bucket.put_bytes(batch.key, batch.body)


@pytest.fixture
def make_loader(db: Database, lake: S3, schema: str) -> Callable[..., Loader]:
    """Loaders on the test's schema and bucket; options as :class:`Loader` takes them."""

    def make(**options: Any) -> Loader:
        options.setdefault("limiter", RateLimiter(1000, per=1.0))
        return Loader(db, lake, schema=schema, **options)

    return make


class Faults:
    """Answers chosen S3 GetObject calls with ``503 SlowDown``, as S3 does under load.

    A botocore ``before-call`` handler registered first in every new session: botocore
    sends nothing for those calls and raises the modelled error exactly as for a real
    answer, so utils.aws's translation and the retry policy run for real. ``fail(n)`` makes
    the next ``n`` calls fail.
    """

    def __init__(self) -> None:
        self.left = 0
        self.calls = 0
        self.failed = 0

    def fail(self, times: int) -> None:
        self.left = times

    def __call__(self, params: dict[str, Any], **kwargs: Any) -> tuple[Any, dict[str, Any]] | None:
        self.calls += 1
        if self.left == 0:
            return None
        self.left -= 1
        self.failed += 1
        error = {"Code": "SlowDown", "Message": "Please reduce your request rate."}
        metadata = {"RequestId": "slow", "HTTPStatusCode": 503, "RetryAttempts": 0}
        headers = HTTPHeaders.from_dict({"x-amz-request-id": "slow"})
        return AWSResponse(params["url"], 503, headers, None), {
            "Error": error,
            "ResponseMetadata": metadata,
        }


@pytest.fixture
def faults() -> Iterator[Faults]:
    injector = Faults()
    spec = ("before-call.s3.GetObject", injector, handlers.REGISTER_FIRST)
    handlers.BUILTIN_HANDLERS.append(spec)
    clear_clients()  # the next clients come from new sessions, which register the handler
    try:
        yield injector
    finally:
        handlers.BUILTIN_HANDLERS.remove(spec)
        clear_clients()
