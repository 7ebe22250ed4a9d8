"""Typed settings read from the environment, with every problem reported at once.

Subclass :class:`Settings`, annotate fields, give defaults where there is a sensible one, and
call :meth:`Settings.from_env`. Values are coerced from the annotations (``str``, ``int``,
``float``, ``bool``, ``Path``, ``Enum``, ``timedelta``, ``list[str]``, ``Literal``,
:class:`Secret`, and optionals of those). Instances are frozen dataclasses.

Example:
    >>> from datetime import timedelta
    >>> class RedisSettings(Settings, env_prefix="UTILS_REDIS_"):
    ...     url: Secret
    ...     timeout: timedelta = timedelta(seconds=2)
    ...     pool_size: int = 10
    >>> s = RedisSettings.from_env(
    ...     {"UTILS_REDIS_URL": "redis://:pw@cache:6379/0", "UTILS_REDIS_TIMEOUT": "500ms"}
    ... )
    >>> s
    RedisSettings(url=Secret('***'), timeout=datetime.timedelta(microseconds=500000), pool_size=10)
    >>> s.url.get_secret_value()
    'redis://:pw@cache:6379/0'
"""

from __future__ import annotations

import dataclasses
import enum
import hmac
import inspect
import json
import math
import os
import re
import types
import typing
from collections.abc import Callable, Mapping
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal, TypeVar, Union, get_args, get_origin

from utils.core._redact import MASK, is_sensitive_key, redact_text
from utils.core.errors import ConfigError
from utils.core.validate import FALSE_WORDS, TRUE_WORDS

if TYPE_CHECKING:
    from typing_extensions import Self, dataclass_transform
else:

    def dataclass_transform(**_: Any) -> Any:
        return lambda cls: cls


__all__ = ["Secret", "Settings", "parse_duration"]

T = TypeVar("T")


class Secret:
    """A string that never shows itself in ``repr``, ``str``, f-strings or logs.

    Call :meth:`get_secret_value` at the one place that needs the real value. Equality is
    constant-time.

    Example:
        >>> token = Secret("s3cr3t")
        >>> token, str(token), f"{token}"
        (Secret('***'), '***', '***')
        >>> token.get_secret_value()
        's3cr3t'
    """

    __slots__ = ("_value",)
    __utils_masked__: ClassVar[bool] = True  # tells the log renderer to use str()

    def __init__(self, value: str | Secret) -> None:
        self._value = value.get_secret_value() if isinstance(value, Secret) else str(value)

    def get_secret_value(self) -> str:
        """Return the real value. Keep the result out of logs and error messages.

        Example:
            >>> Secret("pw").get_secret_value()
            'pw'
        """
        return self._value

    def __repr__(self) -> str:
        return "Secret('***')"

    def __str__(self) -> str:
        return "***"

    def __format__(self, spec: str) -> str:
        return "***"

    def __bool__(self) -> bool:
        return bool(self._value)

    def __len__(self) -> int:
        return len(self._value)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Secret):
            return NotImplemented
        return hmac.compare_digest(self._value.encode(), other._value.encode())

    def __hash__(self) -> int:
        return hash((Secret, self._value))


_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)\s*(ms|us|µs|s|m|h|d|w)", re.IGNORECASE)
_UNIT_SECONDS = {
    "us": 1e-6,
    "µs": 1e-6,
    "ms": 1e-3,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
    "d": 86400.0,
    "w": 604800.0,
}


def parse_duration(text: str) -> timedelta:
    """Parse ``"30"`` (seconds), ``"1.5"``, ``"500ms"``, ``"5m"``, ``"1h30m"``, ``"2d"``.

    Example:
        >>> parse_duration("1h30m"), parse_duration("250ms"), parse_duration("90")
        (datetime.timedelta(seconds=5400), datetime.timedelta(microseconds=250000), datetime.timedelta(seconds=90))
    """
    cleaned = text.strip()
    try:
        seconds = float(cleaned)
    except ValueError:
        compact = cleaned.replace(" ", "")
        parts = _DURATION_PART.findall(compact)
        if not parts or "".join(number + unit for number, unit in parts) != compact:
            raise ValueError(
                f"{text!r} is not a duration; use seconds ('30') or units like "
                "'500ms', '5m', '1h30m', '2d'"
            ) from None
        seconds = sum(float(number) * _UNIT_SECONDS[unit.lower()] for number, unit in parts)
    if seconds < 0 or math.isnan(seconds):
        raise ValueError(f"{text!r} is not a duration >= 0")
    try:
        return timedelta(seconds=seconds)
    except OverflowError:
        raise ValueError(f"{text!r} is not a duration: too large") from None


def _parse_bool(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in TRUE_WORDS:  # the family's one boolean-word table
        return True
    if lowered in FALSE_WORDS:
        return False
    raise ValueError(f"{text!r} is not a boolean; use true/false, yes/no, on/off or 1/0")


def _parse_list(text: str) -> list[str]:
    stripped = text.strip()
    if stripped.startswith("["):
        try:
            value = json.loads(stripped)
        except RecursionError:  # "[[[[...": json recurses once per bracket
            raise ValueError("the JSON list is nested too deeply") from None
        if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
            raise ValueError("a JSON list of strings was expected")
        return value
    return [item.strip() for item in stripped.split(",") if item.strip()]


def _enum_parser(enum_type: type[enum.Enum]) -> Callable[[str], Any]:
    def parse(text: str) -> Any:
        for member in enum_type:
            if text == member.name or text.lower() == member.name.lower():
                return member
            if str(member.value) == text:
                return member
        choices = ", ".join(member.name.lower() for member in enum_type)
        raise ValueError(f"{text!r} is not one of: {choices}")

    return parse


def _literal_parser(choices: tuple[Any, ...]) -> Callable[[str], Any]:
    def parse(text: str) -> Any:
        for choice in choices:
            if str(choice) == text or (isinstance(choice, str) and choice.lower() == text.lower()):
                return choice
        raise ValueError(f"{text!r} is not one of: {', '.join(map(str, choices))}")

    return parse


def _int(text: str) -> int:
    return int(text.strip().replace("_", ""))


_SIMPLE_PARSERS: dict[Any, Callable[[str], Any]] = {
    str: str,
    int: _int,
    float: lambda text: float(text.strip()),
    bool: _parse_bool,
    Path: lambda text: Path(text.strip()).expanduser(),
    timedelta: parse_duration,
    Secret: Secret,
}


class _FieldParser:
    """How to turn one environment variable into one field value."""

    __slots__ = ("optional", "parse", "type_name")

    def __init__(self, parse: Callable[[str], Any], type_name: str, optional: bool) -> None:
        self.parse = parse
        self.type_name = type_name
        self.optional = optional


def _parser_for(annotation: Any) -> _FieldParser | None:
    optional = False
    origin = get_origin(annotation)
    if origin in (Union, types.UnionType):
        members = [arg for arg in get_args(annotation) if arg is not type(None)]
        optional = len(members) < len(get_args(annotation))
        if len(members) != 1:
            return None
        annotation = members[0]
        origin = get_origin(annotation)
    if annotation in _SIMPLE_PARSERS:
        name = getattr(annotation, "__name__", str(annotation))
        return _FieldParser(_SIMPLE_PARSERS[annotation], name, optional)
    if isinstance(annotation, type) and issubclass(annotation, enum.Enum):
        return _FieldParser(_enum_parser(annotation), annotation.__name__, optional)
    if origin is Literal:
        return _FieldParser(_literal_parser(get_args(annotation)), "literal", optional)
    if origin is list and get_args(annotation) in ((str,), ()):
        return _FieldParser(_parse_list, "list[str]", optional)
    return None


def _copier(value: Any) -> Callable[[], Any]:
    return lambda: type(value)(value)


def _type_hints(cls: type) -> dict[str, Any]:
    """Resolve ``cls``'s annotations, also in the function that defines it.

    Under ``from __future__ import annotations`` annotations are strings, resolved against
    the module's globals; a class defined inside a function may name types that exist only
    in that function (``from pathlib import Path`` in the body, a local ``Enum``). Those are
    looked up in the locals of the frame running the ``class`` statement, which is still on
    the stack while ``__init_subclass__`` runs.
    """
    try:
        return typing.get_type_hints(cls)
    except NameError:
        frame_locals = _defining_frame_locals()
        if frame_locals is None:
            raise
        # Module globals stay the global namespace; the function's names shadow them, as
        # they do in the function itself.
        return typing.get_type_hints(cls, localns=frame_locals)


def _defining_frame_locals() -> dict[str, Any] | None:
    """The locals of the first frame outside this module and any ``__init_subclass__``."""
    frame = inspect.currentframe()
    try:
        while frame is not None and (
            frame.f_code.co_filename == __file__ or frame.f_code.co_name == "__init_subclass__"
        ):
            frame = frame.f_back
        return None if frame is None else dict(frame.f_locals)
    finally:
        del frame  # a frame reference kept alive would keep every local alive with it


@dataclass_transform(kw_only_default=True, frozen_default=True)
class Settings:
    """Base class for typed settings read from environment variables.

    Subclass it with ``env_prefix``; each field ``name`` reads ``<PREFIX><NAME>``. Fields
    without a default are required. Instances are frozen, keyword-only dataclasses, so they
    can also be built directly in tests: ``RedisSettings(url=Secret("redis://..."))``.

    Fields named like secrets (``db_password``, ``api_key``, ``token``: the rule log redaction
    uses) are masked in ``repr``, and a bad value of one is never quoted in a ``ConfigError``.
    Annotate them as :class:`Secret` to keep the value masked everywhere else too.

    Example:
        >>> class AppSettings(Settings, env_prefix="APP_"):
        ...     debug: bool = False
        ...     hosts: list[str] = ["localhost"]
        ...     api_key: str = ""
        >>> AppSettings.from_env({"APP_DEBUG": "yes", "APP_HOSTS": "a.example, b.example"})
        AppSettings(debug=True, hosts=['a.example', 'b.example'], api_key='***')
    """

    __env_prefix__: ClassVar[str] = ""
    __parsers__: ClassVar[dict[str, _FieldParser]] = {}

    def __init_subclass__(cls, env_prefix: str | None = None, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if env_prefix is not None:
            cls.__env_prefix__ = env_prefix
        # Mutable defaults (lists) become per-instance copies, as a user would expect.
        for name, value in list(vars(cls).items()):
            if isinstance(value, list | dict | set) and name in inspect.get_annotations(cls):
                setattr(cls, name, dataclasses.field(default_factory=_copier(value)))
        dataclasses.dataclass(frozen=True, kw_only=True, repr=False)(cls)
        try:
            hints = _type_hints(cls)
        except NameError as exc:
            raise ConfigError(
                f"{cls.__name__} has an annotation that cannot be resolved ({exc}); define "
                "the types it uses at module level, or drop `from __future__ import annotations`",
                details={"settings": cls.__name__},
            ) from exc
        parsers: dict[str, _FieldParser] = {}
        problems: list[str] = []
        for field in dataclasses.fields(cls):  # type: ignore[arg-type]
            parser = _parser_for(hints[field.name])
            if parser is None:
                problems.append(f"{field.name}: unsupported type {hints[field.name]!r}")
            else:
                parsers[field.name] = parser
        if problems:
            raise ConfigError(
                f"{cls.__name__} has fields that cannot be read from the environment: "
                + "; ".join(problems)
                + ". Supported: str, int, float, bool, Path, Enum, timedelta, list[str], "
                "Literal, Secret and optionals of those.",
                details={"settings": cls.__name__, "problems": problems},
            )
        cls.__parsers__ = parsers

    @classmethod
    def env_name(cls, field: str) -> str:
        """Return the environment variable that feeds ``field``.

        Example:
            >>> class S(Settings, env_prefix="APP_"):
            ...     port: int = 80
            >>> S.env_name("port")
            'APP_PORT'
        """
        return f"{cls.__env_prefix__}{field}".upper()

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Self:
        """Build the settings from ``environ`` (default: ``os.environ``).

        Raises:
            ConfigError: listing *every* missing or invalid variable, each with the
                expected type, so one run tells you everything to fix.

        Example:
            >>> class S(Settings, env_prefix="APP_"):
            ...     port: int
            ...     workers: int
            >>> S.from_env({"APP_PORT": "eighty"})
            Traceback (most recent call last):
            ...
            utils.core.errors.ConfigError: invalid S settings: APP_PORT: 'eighty' is not a valid int; APP_WORKERS: missing (required, no default)
        """
        source = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        problems: list[str] = []
        for field in dataclasses.fields(cls):  # type: ignore[arg-type]
            variable = cls.env_name(field.name)
            parser = cls.__parsers__[field.name]
            raw = source.get(variable)
            if raw is None:
                required = (
                    field.default is dataclasses.MISSING
                    and field.default_factory is dataclasses.MISSING
                )
                if required:
                    problems.append(f"{variable}: missing (required, no default)")
                continue
            if raw.strip() == "" and parser.optional:
                values[field.name] = None
                continue
            try:
                values[field.name] = parser.parse(raw)
            except (ValueError, TypeError) as exc:
                # A field named like a secret never shows its value, nor the parser's reason
                # (which usually quotes the value): the same key rule as log redaction.
                if parser.type_name == "Secret" or is_sensitive_key(field.name):
                    problems.append(f"{variable}: the value is not a valid {parser.type_name}")
                    continue
                shown = repr(redact_text(raw))
                reason = redact_text(str(exc)) if parser.type_name not in ("int", "float") else ""
                problems.append(
                    f"{variable}: {shown} is not a valid {parser.type_name}"
                    + (f" ({reason})" if reason else "")
                )
        if problems:
            raise ConfigError(
                f"invalid {cls.__name__} settings: " + "; ".join(problems),
                details={"settings": cls.__name__, "problems": problems},
            )
        return cls(**values)

    def __repr__(self) -> str:
        shown = ", ".join(
            f"{field.name}={_shown(field.name, getattr(self, field.name))}"
            for field in dataclasses.fields(self)  # type: ignore[arg-type]
            if field.repr
        )
        return f"{type(self).__name__}({shown})"


def _shown(name: str, value: Any) -> str:
    """A field's value for ``repr``: masked by key as log redaction does, else redacted text."""
    # None and a Secret (whose repr masks itself) reveal nothing and say more than a mask.
    if value is None or isinstance(value, Secret) or not is_sensitive_key(name):
        return redact_text(repr(value))
    return repr(MASK)
