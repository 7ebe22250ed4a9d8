"""Tests of utils.core.config: typed settings from the environment, Secret, durations."""

from __future__ import annotations

import dataclasses
import enum
import typing
from datetime import timedelta
from pathlib import Path
from typing import ClassVar, Literal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from utils.core import ConfigError
from utils.core.config import Secret, Settings, _parse_bool, parse_duration

DSN = "postgresql://u:pw@h/db"


class Color(enum.Enum):
    RED = "red"
    GREEN = "green"
    BLUE = 3


class Everything(Settings, env_prefix="T_"):
    """One field of every supported annotation, all required."""

    name: str
    count: int
    ratio: float
    debug: bool
    home: Path
    color: Color
    timeout: timedelta
    hosts: list[str]
    token: Secret
    mode: Literal["fast", "safe"]
    port: int | None
    level: typing.Optional[float]  # noqa: UP045 - the typing spelling is supported too
    key: Secret | None


EVERYTHING_ENV = {
    "T_NAME": "svc",
    "T_COUNT": "1_000",
    "T_RATIO": " 0.5 ",
    "T_DEBUG": "yes",
    "T_HOME": "/srv/app",
    "T_COLOR": "green",
    "T_TIMEOUT": "1h30m",
    "T_HOSTS": "a.example, b.example,,",
    "T_TOKEN": "tok-123",
    "T_MODE": "SAFE",
    "T_PORT": "8080",
    "T_LEVEL": "",
    "T_KEY": "",
}


class Defaults(Settings, env_prefix="D_"):
    host: str = "localhost"
    port: int = 5432
    hosts: list[str] = ["a", "b"]  # noqa: RUF012 - Settings copies it per instance
    timeout: timedelta = timedelta(seconds=2)
    optional: int | None = None


class WithSecret(Settings, env_prefix="APP_"):
    password: Secret
    workers: int = 4
    url: str = "redis://localhost"


# --- reading every annotation --------------------------------------------------------------


def test_every_supported_annotation_is_coerced() -> None:
    s = Everything.from_env(EVERYTHING_ENV)
    assert s.name == "svc"
    assert s.count == 1000
    assert s.ratio == 0.5
    assert s.debug is True
    assert s.home == Path("/srv/app")
    assert s.color is Color.GREEN
    assert s.timeout == timedelta(hours=1, minutes=30)
    assert s.hosts == ["a.example", "b.example"]
    assert isinstance(s.token, Secret)
    assert s.token.get_secret_value() == "tok-123"
    assert s.mode == "safe"
    assert s.port == 8080
    assert s.level is None
    assert s.key is None


def test_optionals_parse_when_set() -> None:
    s = Everything.from_env({**EVERYTHING_ENV, "T_LEVEL": "2.5", "T_KEY": "k", "T_PORT": " "})
    assert s.level == 2.5
    assert s.key == Secret("k")
    assert s.port is None


def test_empty_plain_str_is_kept() -> None:
    assert Everything.from_env({**EVERYTHING_ENV, "T_NAME": ""}).name == ""


@pytest.mark.parametrize(
    ("raw", "member"),
    [("RED", Color.RED), ("red", Color.RED), ("Green", Color.GREEN), ("3", Color.BLUE)],
)
def test_enum_by_name_any_case_or_by_value(raw: str, member: Color) -> None:
    assert Everything.from_env({**EVERYTHING_ENV, "T_COLOR": raw}).color is member


@pytest.mark.parametrize(
    ("raw", "hosts"),
    [
        ('["x", "y, z"]', ["x", "y, z"]),
        ("  [] ", []),
        ("", []),
        ("single", ["single"]),
        (" a ,b ", ["a", "b"]),
    ],
)
def test_list_of_str_as_csv_or_json(raw: str, hosts: list[str]) -> None:
    assert Everything.from_env({**EVERYTHING_ENV, "T_HOSTS": raw}).hosts == hosts


def test_path_expands_user(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    s = Everything.from_env({**EVERYTHING_ENV, "T_HOME": " ~/data "})
    assert s.home == tmp_path / "data"


def test_literal_of_ints() -> None:
    class Level(Settings, env_prefix="L_"):
        level: Literal[1, 2, 3] = 1

    assert Level.from_env({"L_LEVEL": "2"}).level == 2
    with pytest.raises(ConfigError, match="L_LEVEL: '4' is not a valid literal"):
        Level.from_env({"L_LEVEL": "4"})


def test_bare_list_annotation_is_supported() -> None:
    class Bare(Settings, env_prefix="B_"):
        items: typing.List = []  # type: ignore[type-arg]  # noqa: UP006, RUF012

    assert Bare.from_env({"B_ITEMS": "a,b"}).items == ["a", "b"]


def test_classvars_are_not_fields() -> None:
    class WithClassVar(Settings, env_prefix="C_"):
        limit: ClassVar[int] = 3
        port: int = 1

    assert WithClassVar.from_env({"C_LIMIT": "nonsense"}) == WithClassVar(port=1)
    assert WithClassVar.limit == 3


# --- prefix and env_name --------------------------------------------------------------------


def test_env_name_uses_prefix_and_upper_case() -> None:
    class Lower(Settings, env_prefix="app_"):
        pool_size: int = 1

    assert Lower.env_name("pool_size") == "APP_POOL_SIZE"
    assert Everything.env_name("timeout") == "T_TIMEOUT"
    assert Lower.from_env({"APP_POOL_SIZE": "7"}).pool_size == 7
    assert Lower.from_env({"app_pool_size": "7"}).pool_size == 1


def test_no_prefix() -> None:
    class Bare(Settings):
        my_port: int = 1

    assert Bare.env_name("my_port") == "MY_PORT"
    assert Bare.from_env({"MY_PORT": "2"}).my_port == 2


def test_prefix_is_inherited_and_can_be_overridden() -> None:
    class Child(Defaults):
        extra: int = 0

    class Renamed(Defaults, env_prefix="R_"):
        pass

    child = Child.from_env({"D_EXTRA": "5", "D_PORT": "1"})
    assert (child.extra, child.port) == (5, 1)
    assert Renamed.from_env({"R_PORT": "2", "D_PORT": "3"}).port == 2
    assert Defaults.env_name("port") == "D_PORT"


# --- defaults -------------------------------------------------------------------------------


def test_defaults_apply_when_unset() -> None:
    s = Defaults.from_env({})
    assert s == Defaults()
    assert (s.host, s.port, s.hosts, s.timeout, s.optional) == (
        "localhost",
        5432,
        ["a", "b"],
        timedelta(seconds=2),
        None,
    )


def test_mutable_default_lists_are_per_instance() -> None:
    first, second, third = Defaults.from_env({}), Defaults.from_env({}), Defaults()
    assert first.hosts is not second.hosts
    assert third.hosts is not first.hosts
    first.hosts.append("c")
    assert second.hosts == ["a", "b"]
    assert third.hosts == ["a", "b"]
    assert Defaults().hosts == ["a", "b"]


# --- errors ---------------------------------------------------------------------------------


def test_missing_required_field() -> None:
    with pytest.raises(ConfigError) as info:
        WithSecret.from_env({})
    error = info.value
    assert str(error) == (
        "invalid WithSecret settings: APP_PASSWORD: missing (required, no default)"
    )
    assert error.details == {
        "settings": "WithSecret",
        "problems": ["APP_PASSWORD: missing (required, no default)"],
    }


def test_every_problem_is_reported_at_once() -> None:
    env = {
        "T_COUNT": "many",
        "T_RATIO": "half",
        "T_DEBUG": "perhaps",
        "T_COLOR": "purple",
        "T_TIMEOUT": "soon",
        "T_HOSTS": "[1, 2]",
        "T_MODE": "turbo",
        "T_PORT": "http",
        "T_LEVEL": "high",
    }
    with pytest.raises(ConfigError) as info:
        Everything.from_env(env)
    error = info.value
    message = str(error)
    missing = ["T_NAME", "T_HOME", "T_TOKEN", "T_KEY"]
    for variable in [*env, *missing]:
        assert f"{variable}: " in message
    problems = error.details["problems"]
    assert len(problems) == len(env) + len(missing)
    assert {problem.split(":")[0] for problem in problems} == {*env, *missing}
    assert error.details["settings"] == "Everything"
    assert message == "invalid Everything settings: " + "; ".join(problems)
    assert error.code == "config_error"
    # each problem names the expected type
    expected_types = {
        "T_COUNT": "int",
        "T_RATIO": "float",
        "T_DEBUG": "bool",
        "T_COLOR": "Color",
        "T_TIMEOUT": "timedelta",
        "T_HOSTS": "list[str]",
        "T_MODE": "literal",
        "T_PORT": "int",
        "T_LEVEL": "float",
    }
    for problem in problems:
        variable = problem.split(":")[0]
        if variable in expected_types:
            assert f"is not a valid {expected_types[variable]}" in problem
        else:
            assert problem.endswith("missing (required, no default)")


def test_problem_messages_explain_choices() -> None:
    with pytest.raises(ConfigError) as info:
        Everything.from_env({**EVERYTHING_ENV, "T_COLOR": "purple", "T_MODE": "turbo"})
    message = str(info.value)
    assert "'purple' is not one of: red, green, blue" in message
    assert "'turbo' is not one of: fast, safe" in message
    assert "T_COUNT" not in message


def test_int_problem_has_no_python_internals() -> None:
    with pytest.raises(ConfigError) as info:
        Everything.from_env({**EVERYTHING_ENV, "T_COUNT": "x"})
    assert info.value.details["problems"] == ["T_COUNT: 'x' is not a valid int"]


def test_secret_never_appears_in_errors_or_repr() -> None:
    secret = "hunter2-very-secret"
    env = {"APP_PASSWORD": secret, "APP_WORKERS": "lots"}
    with pytest.raises(ConfigError) as info:
        WithSecret.from_env(env)
    assert secret not in str(info.value)
    assert secret not in repr(info.value)
    assert secret not in repr(info.value.details)
    assert "APP_WORKERS" in str(info.value)
    settings = WithSecret.from_env({"APP_PASSWORD": secret})
    assert secret not in repr(settings)
    assert secret not in str(settings)
    assert "password=Secret('***')" in repr(settings)
    assert settings.password.get_secret_value() == secret


def test_dsn_in_plain_str_field_is_redacted_in_repr() -> None:
    settings = WithSecret.from_env({"APP_PASSWORD": "x", "APP_URL": DSN})
    assert settings.url == DSN  # the value itself is untouched
    assert repr(settings) == (
        "WithSecret(password=Secret('***'), workers=4, url='postgresql://u:***@h/db')"
    )
    assert "pw" not in repr(settings)


def test_dsn_in_invalid_int_is_redacted_in_error() -> None:
    with pytest.raises(ConfigError) as info:
        WithSecret.from_env({"APP_PASSWORD": "x", "APP_WORKERS": DSN})
    assert "postgresql://u:***@h/db" in str(info.value)
    assert ":pw@" not in str(info.value)


@pytest.mark.parametrize("variable", ["T_DEBUG", "T_TIMEOUT", "T_COLOR", "T_MODE"])
def test_dsn_in_invalid_value_is_redacted_in_reason(variable: str) -> None:
    with pytest.raises(ConfigError) as info:
        Everything.from_env({**EVERYTHING_ENV, variable: DSN})
    assert ":pw@" not in str(info.value)
    assert ":pw@" not in repr(info.value.details["problems"])


def test_overflowing_duration_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="T_TIMEOUT"):
        Everything.from_env({**EVERYTHING_ENV, "T_TIMEOUT": "inf"})


@pytest.mark.parametrize(
    "annotation",
    [dict[str, str], set[str], list[int], int | str, tuple[str, ...], bytes, "typing.Any"],
)
def test_unsupported_annotation_fails_at_class_definition(annotation: object) -> None:
    with pytest.raises(ConfigError) as info:
        type("Bad", (Settings,), {"__annotations__": {"ok": int, "weird": annotation}})
    error = info.value
    assert "Bad has fields that cannot be read from the environment" in str(error)
    assert "weird: unsupported type" in str(error)
    assert error.details["settings"] == "Bad"
    assert len(error.details["problems"]) == 1
    assert error.details["problems"][0].startswith("weird: unsupported type")


def test_unsupported_annotation_in_class_statement() -> None:
    with pytest.raises(ConfigError, match="mapping: unsupported type"):

        class Bad(Settings, env_prefix="X_"):
            mapping: dict[str, int] = {}  # noqa: RUF012


# --- from_env default source, construction, frozen -----------------------------------------


def test_from_env_reads_os_environ_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("APP_PASSWORD", "from-os-environ")
    monkeypatch.setenv("APP_WORKERS", "9")
    monkeypatch.delenv("APP_URL", raising=False)
    settings = WithSecret.from_env()
    assert settings.password.get_secret_value() == "from-os-environ"
    assert settings.workers == 9
    assert settings.url == "redis://localhost"


def test_explicit_environ_ignores_os_environ(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("APP_WORKERS", "9")
    assert WithSecret.from_env({"APP_PASSWORD": "p"}).workers == 4


def test_instances_are_frozen() -> None:
    settings = WithSecret.from_env({"APP_PASSWORD": "p"})
    with pytest.raises(dataclasses.FrozenInstanceError):
        settings.workers = 5  # type: ignore[misc]
    assert settings.workers == 4


def test_direct_construction() -> None:
    settings = WithSecret(password=Secret("x"))
    assert settings.password.get_secret_value() == "x"
    assert settings.workers == 4
    assert settings == WithSecret(password=Secret("x"), workers=4)
    assert settings != WithSecret(password=Secret("y"))
    with pytest.raises(TypeError):
        WithSecret(Secret("x"))  # type: ignore[call-arg]  # keyword-only
    with pytest.raises(TypeError):
        WithSecret()  # type: ignore[call-arg]  # password is required


def test_settings_are_hashable_dataclasses() -> None:
    assert dataclasses.is_dataclass(Defaults)
    settings = WithSecret(password=Secret("x"))
    assert hash(settings) == hash(WithSecret(password=Secret("x")))
    assert dataclasses.replace(settings, workers=1).workers == 1


# --- Secret ---------------------------------------------------------------------------------


def test_secret_is_masked_everywhere() -> None:
    token = Secret("s3cr3t")
    assert repr(token) == "Secret('***')"
    assert str(token) == "***"
    assert f"{token}" == "***"
    assert f"{token:>20}" == "***"
    assert format(token, "s") == "***"
    assert "{}".format(token) == "***"  # noqa: UP032 - str.format is what is tested
    assert "%s" % token == "***"  # noqa: UP031 - %-formatting is what is tested
    assert "s3cr3t" not in repr([token, {"k": token}])


def test_secret_value() -> None:
    assert Secret("pw").get_secret_value() == "pw"


def test_secret_equality_and_hash() -> None:
    assert Secret("a") == Secret("a")
    assert Secret("a") != Secret("b")
    assert Secret("a") != "a"
    assert hash(Secret("a")) == hash(Secret("a"))
    assert len({Secret("a"), Secret("a"), Secret("b")}) == 2
    assert Secret("é") == Secret("é")


def test_secret_bool_and_len() -> None:
    assert not Secret("")
    assert Secret("x")
    assert len(Secret("")) == 0
    assert len(Secret("four")) == 4


def test_secret_wrapping_a_secret_unwraps() -> None:
    inner = Secret("pw")
    outer = Secret(inner)
    assert outer.get_secret_value() == "pw"
    assert outer == inner
    assert repr(outer) == "Secret('***')"


def test_secret_has_no_dict() -> None:
    with pytest.raises(AttributeError):
        Secret("x").other = 1  # type: ignore[attr-defined]


# --- parse_duration -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("30", timedelta(seconds=30)),
        ("1.5", timedelta(seconds=1.5)),
        (" 90 ", timedelta(seconds=90)),
        ("0", timedelta(0)),
        ("500ms", timedelta(milliseconds=500)),
        ("250us", timedelta(microseconds=250)),
        ("7µs", timedelta(microseconds=7)),
        ("5s", timedelta(seconds=5)),
        ("5m", timedelta(minutes=5)),
        ("1h30m", timedelta(hours=1, minutes=30)),
        ("1h 30m", timedelta(hours=1, minutes=30)),
        ("1H30M", timedelta(hours=1, minutes=30)),
        ("2d", timedelta(days=2)),
        ("1w", timedelta(weeks=1)),
        ("1.5h", timedelta(minutes=90)),
        ("1d2h3m4s5ms", timedelta(days=1, hours=2, minutes=3, seconds=4, milliseconds=5)),
        ("10MS", timedelta(milliseconds=10)),
    ],
)
def test_parse_duration_examples(text: str, expected: timedelta) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize(
    "text", ["", " ", "abc", "5x", "-5", "-5m", "nan", "1h-30m", "h", "m5", "5 m x", "1.2.3s"]
)
def test_parse_duration_rejects_garbage(text: str) -> None:
    with pytest.raises(ValueError, match="duration"):
        parse_duration(text)


def test_parse_duration_error_message_shows_examples() -> None:
    with pytest.raises(ValueError, match=r"'soon' is not a duration; use seconds \('30'\)"):
        parse_duration("soon")
    with pytest.raises(ValueError, match=r"'-1' is not a duration >= 0"):
        parse_duration("-1")


@pytest.mark.parametrize("text", ["inf", "1e400", "1e20", "99999999999999999999w"])
def test_parse_duration_overflow_is_a_value_error(text: str) -> None:
    with pytest.raises(ValueError, match="duration"):
        parse_duration(text)


@given(
    h=st.integers(min_value=0, max_value=100_000),
    m=st.integers(min_value=0, max_value=100_000),
    s=st.integers(min_value=0, max_value=100_000),
)
def test_parse_duration_hms_property(h: int, m: int, s: int) -> None:
    assert parse_duration(f"{h}h{m}m{s}s") == timedelta(hours=h, minutes=m, seconds=s)


@given(
    d=st.integers(min_value=0, max_value=1000),
    ms=st.integers(min_value=0, max_value=10**6),
    spaces=st.booleans(),
)
def test_parse_duration_days_and_millis_property(d: int, ms: int, spaces: bool) -> None:
    text = f"{d}d {ms}ms" if spaces else f"{d}d{ms}ms"
    assert parse_duration(text) == timedelta(days=d, milliseconds=ms)


@given(st.floats(min_value=0, max_value=1e9, allow_nan=False, allow_infinity=False))
def test_parse_duration_plain_float_is_seconds(seconds: float) -> None:
    assert parse_duration(repr(seconds)) == timedelta(seconds=seconds)
    assert parse_duration(str(seconds)) == timedelta(seconds=seconds)


@given(st.integers(min_value=0, max_value=10**9))
def test_parse_duration_plain_int_is_seconds(seconds: int) -> None:
    assert parse_duration(str(seconds)) == timedelta(seconds=seconds)


@given(st.text().map(lambda text: text + "?") | st.text().map(lambda text: "x" + text))
def test_parse_duration_garbage_raises_value_error(text: str) -> None:
    with pytest.raises(ValueError, match="not a duration"):
        parse_duration(text)


@given(st.floats(max_value=-1e-9, allow_nan=False) | st.integers(max_value=-1))
def test_parse_duration_negative_raises(value: float) -> None:
    with pytest.raises(ValueError, match="duration"):
        parse_duration(str(value))


# --- _parse_bool ----------------------------------------------------------------------------


@pytest.mark.parametrize("text", ["1", "true", "TRUE", "True", "yes", "on", "y", "t", " yes "])
def test_parse_bool_true(text: str) -> None:
    assert _parse_bool(text) is True


@pytest.mark.parametrize("text", ["0", "false", "FALSE", "no", "off", "n", "f", "\toff\n"])
def test_parse_bool_false(text: str) -> None:
    assert _parse_bool(text) is False


@pytest.mark.parametrize("text", ["", "maybe", "2", "yess", "tru", "-1", "none"])
def test_parse_bool_invalid(text: str) -> None:
    with pytest.raises(ValueError, match="is not a boolean; use true/false"):
        _parse_bool(text)


BOOL_WORDS = {"1", "true", "yes", "on", "y", "t", "0", "false", "no", "off", "n", "f"}


@given(st.text())
def test_parse_bool_accepts_only_known_words(text: str) -> None:
    if text.strip().lower() in BOOL_WORDS:
        assert _parse_bool(text) is (text.strip().lower() in {"1", "true", "yes", "on", "y", "t"})
    else:
        with pytest.raises(ValueError, match="not a boolean"):
            _parse_bool(text)


# --- regressions: deep JSON, fields named like secrets ---------------------------------------


def test_deeply_nested_json_list_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="T_HOSTS") as info:
        Everything.from_env({**EVERYTHING_ENV, "T_HOSTS": "[" * 1000 + "]" * 1000})
    assert "is not a valid list[str]" in str(info.value)
    assert "nested too deeply" in str(info.value)


class NamedLikeSecrets(Settings, env_prefix="S_"):
    db_password: str
    api_key: str = "default-api-key-value"
    token: str | None = None
    password_min_length: int = 12
    secret_mode: Literal["strict", "lax"] = "strict"
    session_token_ttl: timedelta = timedelta(hours=1)
    user: str = "app"


def test_fields_named_like_secrets_are_masked_in_repr() -> None:
    settings = NamedLikeSecrets.from_env(
        {"S_DB_PASSWORD": "hunter2-db", "S_TOKEN": "tok-hunter2", "S_USER": "ann"}
    )
    shown = repr(settings)
    assert "hunter2" not in shown
    assert "default-api-key-value" not in shown
    assert shown == (
        "NamedLikeSecrets(db_password='***', api_key='***', token='***', "
        "password_min_length='***', secret_mode='***', session_token_ttl='***', user='ann')"
    )
    assert str(settings) == shown
    assert settings.db_password == "hunter2-db"  # the values themselves are untouched
    unset = NamedLikeSecrets(db_password="x")
    assert "token=None" in repr(unset)  # nothing to hide


def test_the_settings_rule_is_the_log_redaction_rule() -> None:
    from utils.core._redact import Redactor

    redactor = Redactor()
    for field in dataclasses.fields(NamedLikeSecrets):
        masked = f"{field.name}='***'" in repr(NamedLikeSecrets(db_password="x", token="t"))
        assert masked == redactor.is_sensitive(field.name), field.name


@pytest.mark.parametrize(
    ("variable", "type_name"),
    [
        ("S_PASSWORD_MIN_LENGTH", "int"),
        ("S_SECRET_MODE", "literal"),
        ("S_SESSION_TOKEN_TTL", "timedelta"),
    ],
)
def test_bad_values_of_fields_named_like_secrets_are_not_echoed(
    variable: str, type_name: str
) -> None:
    with pytest.raises(ConfigError) as info:
        NamedLikeSecrets.from_env({"S_DB_PASSWORD": "x", variable: "hunter2-is-not-valid"})
    error = info.value
    assert "hunter2" not in str(error)
    assert "hunter2" not in repr(error)
    assert "hunter2" not in repr(error.details)
    assert error.details["problems"] == [f"{variable}: the value is not a valid {type_name}"]
