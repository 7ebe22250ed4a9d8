"""Pytest fixtures of utils-aws, registered through the ``pytest11`` entry point.

It lives outside ``utils.aws`` so that pytest start-up imports neither boto3 nor moto.

- ``utils_aws_credentials``: fake credentials, no profile, no config files (function scope).
- ``utils_mock_aws``: moto's in-process ``mock_aws`` with fake credentials.
- ``utils_moto_server``: one moto ``ThreadedMotoServer`` per session on a free loopback port
  (its URL); reset before each test that uses ``utils_aws_endpoint``.
- ``utils_aws_endpoint``: fake credentials and every ``utils.aws`` client pointed at the
  session's moto server (reset first); yields the endpoint URL.
- ``utils_aws_no_network``: botocore refuses requests to any host that is not loopback.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest


@pytest.fixture
def utils_aws_credentials() -> Iterator[None]:
    """Fake AWS credentials (``testing``), region us-east-1, no profile, for the test."""
    from utils.aws.testing import fake_credentials

    with fake_credentials():
        yield


@pytest.fixture
def utils_mock_aws() -> Iterator[None]:
    """Moto's in-process ``mock_aws`` with fake credentials, for the test."""
    from utils.aws.testing import mocked_aws

    with mocked_aws():
        yield


@pytest.fixture(scope="session")
def utils_moto_server() -> Iterator[Any]:
    """A moto ThreadedMotoServer on a free loopback port for the whole session."""
    from utils.aws.testing import MotoServer

    with MotoServer() as server:
        yield server


@pytest.fixture
def utils_aws_endpoint(utils_moto_server: Any) -> Iterator[str]:
    """Every ``utils.aws`` client pointed at the (reset) session moto server; its URL."""
    from utils.aws.testing import moto_server

    utils_moto_server.reset()
    with moto_server(utils_moto_server) as url:
        yield url


@pytest.fixture
def utils_aws_no_network() -> Iterator[None]:
    """Fail any botocore request to a host that is not loopback (moto and stubs only)."""
    from utils.aws.testing import block_real_aws

    with block_real_aws():
        yield
