"""Settings from the environment, API keys and their client ids (property-based)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from orders_service.settings import ServiceSettings, client_id

from utils.core import ConfigError, Secret

REQUIRED = {
    "ORDERS_DATABASE_URL": "postgresql://orders:pw@db/shop",
    "ORDERS_PRICING_URL": "http://pricing",
    "ORDERS_API_KEYS": "k1",
}

keys = st.text(
    alphabet=st.characters(min_codepoint=33, max_codepoint=126, exclude_characters=","),
    min_size=1,
    max_size=40,
)


def test_every_missing_setting_is_named_at_once() -> None:
    with pytest.raises(ConfigError) as caught:
        ServiceSettings.from_env({"ORDERS_RATE_LIMIT": "many"})
    message = str(caught.value)
    for name in ("ORDERS_DATABASE_URL", "ORDERS_PRICING_URL", "ORDERS_API_KEYS"):
        assert name in message
    assert "ORDERS_RATE_LIMIT" in message


def test_secrets_stay_secret() -> None:
    settings = ServiceSettings.from_env({**REQUIRED, "ORDERS_REDIS_URL": "redis://:pw@r/0"})
    assert "pw" not in repr(settings)
    assert settings.redis_url.get_secret_value() == "redis://:pw@r/0"


@given(st.lists(keys, min_size=1, max_size=5))
def test_allowed_clients_are_the_ids_of_the_keys(api_keys: list[str]) -> None:
    settings = ServiceSettings.from_env({**REQUIRED, "ORDERS_API_KEYS": " , ".join(api_keys)})
    assert settings.allowed_clients() == {client_id(key) for key in api_keys}


@given(keys)
def test_a_client_id_never_shows_the_key(api_key: str) -> None:
    name = client_id(api_key)
    assert name == client_id(api_key)
    assert name.startswith("c-")
    assert len(name) == 18
    assert set(name[2:]) <= set("0123456789abcdef")  # a digest, not the key


def test_an_empty_key_list_allows_nobody() -> None:
    settings = ServiceSettings(
        database_url=Secret("postgresql://db/shop"), pricing_url="http://p", api_keys=Secret(" , ")
    )
    assert settings.allowed_clients() == frozenset()
