"""The guard: no test of this suite can reach anything but moto or a loopback stub."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from utils.aws.testing import block_real_aws, fake_credentials


@pytest.fixture(autouse=True)
def _no_real_aws() -> Iterator[None]:
    # Fake credentials and no profile for every test, and botocore refuses any request to a
    # host that is not loopback (mock_aws answers before anything is sent).
    with block_real_aws(), fake_credentials():
        yield
