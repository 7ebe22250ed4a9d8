from __future__ import annotations

import asyncio
import io
import json
import logging
import subprocess
import sys
import threading
from typing import Any, NamedTuple

import pytest
import structlog

from utils.core import (
    ConfigError,
    Secret,
    bind_context,
    capture_logs,
    configure_logging,
    get_logger,
    reset_logging,
    run_in_thread,
    with_current_context,
)


def lines(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stream.getvalue().splitlines() if line]


def test_get_logger_is_cached_per_name() -> None:
    assert get_logger("utils.a") is get_logger("utils.a")
    assert get_logger("utils.a") is not get_logger("utils.b")
    assert "library mode" in repr(get_logger("utils.a"))


def test_library_logger_prints_nothing_before_configuration(
    capfd: pytest.CaptureFixture[str],
) -> None:
    log = get_logger("utils.quiet")
    log.warning("quiet.warning", detail="x")
    log.error("quiet.error")
    out, err = capfd.readouterr()
    assert out == ""
    assert err == ""


def test_import_changes_no_global_logging_state() -> None:
    # A fresh interpreter: importing every utils.core module must not configure anything.
    code = """
import logging, structlog
root_handlers = list(logging.getLogger().handlers)
other = logging.getLogger("somebody.else"); other.setLevel(logging.ERROR)
import utils.core, utils.core.config, utils.core.metrics, utils.core.plugins
import utils.core.health, utils.core.testing, utils.core.cli
assert logging.getLogger().handlers == root_handlers, logging.getLogger().handlers
assert other.level == logging.ERROR
assert not structlog.is_configured()
assert any(isinstance(h, logging.NullHandler) for h in logging.getLogger("utils").handlers)
utils.core.get_logger("utils.x").warning("must.not.print")
print("clean")
"""
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "clean"
    assert result.stderr == ""


def test_import_utils_core_does_not_import_typer_or_optional_extras() -> None:
    code = (
        "import sys, utils.core; "
        "print([m for m in ('typer', 'prometheus_client', 'click') if m in sys.modules])"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "[]"


def test_library_mode_routes_through_stdlib(caplog: pytest.LogCaptureFixture) -> None:
    log = get_logger("utils.lib")
    with caplog.at_level(logging.INFO, logger="utils.lib"):
        log.info("lib.event", password="hunter2", url="redis://u:pw@host/0", n=3)
        log.debug("lib.filtered")
    assert len(caplog.records) == 1
    record = caplog.records[0]
    assert record.name == "utils.lib"
    assert record.levelno == logging.INFO
    message = record.getMessage()
    assert message.startswith("lib.event ")
    assert "hunter2" not in message
    assert ":pw@" not in message
    assert "n=3" in message


def test_library_mode_exception_is_rendered_once_and_redacted(
    caplog: pytest.LogCaptureFixture,
) -> None:
    log = get_logger("utils.lib")
    with caplog.at_level(logging.ERROR, logger="utils.lib"):
        try:
            raise RuntimeError("cannot reach postgresql://app:s3cret@db/main")
        except RuntimeError:
            log.exception("lib.failed")
    [record] = caplog.records
    assert not record.exc_info  # the traceback is already in the (redacted) message
    message = record.getMessage()
    assert message.count("Traceback") == 1
    assert "s3cret" not in message
    assert "postgresql://app:***@db/main" in message


def test_library_mode_bind_and_rare_methods(caplog: pytest.LogCaptureFixture) -> None:
    log = get_logger("utils.lib")
    with caplog.at_level(logging.INFO, logger="utils.lib"):
        log.bind(job="nightly").info("bound.event")
        log.new(job="weekly").info("new.event")
        log.log(logging.INFO, "generic.event")
    messages = [record.getMessage() for record in caplog.records]
    assert messages == ["bound.event job='nightly'", "new.event job='weekly'", "generic.event"]


def test_json_output_shape_and_redaction() -> None:
    out = io.StringIO()
    configure_logging(level="INFO", format="json", stream=out)
    log = get_logger("utils.cache")
    with bind_context(request_id="r-1", authorization="Bearer abc"):
        log.info(
            "cache.miss",
            key="user:42",
            db_password="p",
            api_key="k",
            settings_dsn="postgresql://app:pw@db/main",
            nested={"token": "t", "items": [{"secret": 1}, "redis://:pw@h"]},
            secret_obj=Secret("hidden-value"),
            aws="AKIAIOSFODNN7EXAMPLE wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
        )
    [event] = lines(out)
    assert event["event"] == "cache.miss"
    assert event["level"] == "info"
    assert event["logger"] == "utils.cache"
    assert event["request_id"] == "r-1"
    assert event["timestamp"].endswith("Z")
    assert event["timestamp"][10] == "T"
    assert event["authorization"] == "***"
    assert event["db_password"] == "***"
    assert event["api_key"] == "***"
    assert event["settings_dsn"] == "postgresql://app:***@db/main"
    assert event["nested"] == {"token": "***", "items": [{"secret": "***"}, "redis://:***@h"]}
    assert event["secret_obj"] == "***"
    assert event["aws"] == "*** ***"
    assert "hidden-value" not in out.getvalue()


def test_timestamp_matches_structlog_format() -> None:
    out = io.StringIO()
    configure_logging(format="json", stream=out)
    get_logger("utils.t").info("tick")
    stamp = lines(out)[0]["timestamp"]
    # 2026-11-27T09:36:52.430178Z
    assert len(stamp) == 27
    assert stamp[4] == stamp[7] == "-"
    assert stamp[19] == "."


def test_exceptions_in_json_are_plain_text_without_locals_and_redacted() -> None:
    out = io.StringIO()
    configure_logging(format="json", stream=out)
    secret_local = "do-not-show-this-local"  # noqa: F841 - must not appear in the output
    try:
        raise ValueError("login failed for postgresql://u:hunter2@h/db")
    except ValueError:
        get_logger("utils.x").exception("job.failed")
    [event] = lines(out)
    assert event["level"] == "error"
    assert "Traceback (most recent call last)" in event["exception"]
    assert "hunter2" not in out.getvalue()
    assert "do-not-show-this-local" not in out.getvalue()


def test_redaction_can_be_disabled_and_extended() -> None:
    out = io.StringIO()
    configure_logging(format="json", stream=out, redact=False)
    get_logger("utils.x").info("e", password="visible")
    assert lines(out)[0]["password"] == "visible"
    out2 = io.StringIO()
    configure_logging(format="json", stream=out2, redact_keys=["ssn"])
    get_logger("utils.x").info("e", customer_ssn="123-45-6789", password="p")
    event = lines(out2)[0]
    assert event["customer_ssn"] == "***"
    assert event["password"] == "***"


def test_filtering_by_level_and_per_logger_overrides() -> None:
    out = io.StringIO()
    early = get_logger("utils.cache.redis")  # created before configuration
    configure_logging(
        level="WARNING",
        format="json",
        stream=out,
        levels={"utils.cache": "DEBUG", "noisy": logging.ERROR},
    )
    other = get_logger("utils.db")
    early.debug("cache.debug")
    other.info("db.info")
    other.warning("db.warning")
    logging.getLogger("noisy").warning("dropped")
    logging.getLogger("noisy").error("kept")
    events = [event["event"] for event in lines(out)]
    assert events == ["cache.debug", "db.warning", "kept"]
    reset_logging()
    assert logging.getLogger("noisy").level == logging.NOTSET


def test_configure_twice_does_not_duplicate_handlers() -> None:
    root = logging.getLogger()
    before = len(root.handlers)
    out = io.StringIO()
    configure_logging(format="json", stream=out)
    configure_logging(format="json", stream=out)
    assert len(root.handlers) == before + 1
    get_logger("utils.x").info("once")
    logging.getLogger("foreign").warning("foreign once")
    assert [event["event"] for event in lines(out)] == ["once", "foreign once"]
    reset_logging()
    assert len(root.handlers) == before


def test_foreign_stdlib_and_app_structlog_loggers_render_the_same_way() -> None:
    out = io.StringIO()
    configure_logging(format="json", stream=out)
    with bind_context(request_id="r-9"):
        logging.getLogger("botocore").warning("retrying %s", "PutObject", extra={"x": 1})
        structlog.get_logger("myapp").info("app.event", token="t")
        structlog.get_logger().info("anonymous.event")
    foreign, app, anonymous = lines(out)
    assert foreign["event"] == "retrying PutObject"
    assert foreign["logger"] == "botocore"
    assert foreign["request_id"] == "r-9"
    assert app["logger"] == "myapp"
    assert app["token"] == "***"
    assert anonymous["event"] == "anonymous.event"


def test_foreign_exception_is_redacted() -> None:
    out = io.StringIO()
    configure_logging(format="json", stream=out)
    try:
        raise ConnectionError("redis://:topsecret@cache:6379 refused")
    except ConnectionError:
        logging.getLogger("redis").exception("connection failed")
    assert "topsecret" not in out.getvalue()
    assert "Traceback" in lines(out)[0]["exception"]


def test_console_format_and_auto_detection() -> None:
    out = io.StringIO()
    configure_logging(format="auto", stream=out)  # StringIO is not a TTY: JSON
    get_logger("utils.x").info("auto.json")
    assert lines(out)[0]["event"] == "auto.json"

    class FakeTTY(io.StringIO):
        def isatty(self) -> bool:
            return True

    tty = FakeTTY()
    configure_logging(format="auto", stream=tty)
    get_logger("utils.x").info("auto.console", password="p")
    text = tty.getvalue()
    assert "auto.console" in text
    assert not text.startswith("{")
    assert "password" in text
    assert "=p" not in text.replace("\x1b", "")


def test_closed_stream_is_not_a_tty() -> None:
    stream = io.StringIO()
    stream.close()
    configure_logging(format="auto", stream=stream)  # must not raise


def test_bad_level_and_format_are_config_errors() -> None:
    with pytest.raises(ConfigError, match="unknown log level 'LOUD'"):
        configure_logging(level="LOUD")
    with pytest.raises(ConfigError, match="unknown log format"):
        configure_logging(format="xml")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="logger 'x'"):
        configure_logging(levels={"x": "nope"})


def test_default_stream_is_stderr(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging(format="json")
    get_logger("utils.x").warning("to.stderr")
    captured = capsys.readouterr()
    assert captured.out == ""
    assert json.loads(captured.err)["event"] == "to.stderr"


def test_stack_info_is_rendered() -> None:
    out = io.StringIO()
    configure_logging(format="json", stream=out)
    get_logger("utils.x").info("with.stack", stack_info=True)
    assert "Stack (most recent call last)" in lines(out)[0]["stack"]


def test_bind_on_configured_logger() -> None:
    out = io.StringIO()
    configure_logging(format="json", stream=out)
    get_logger("utils.x").bind(job="a").info("bound")
    assert lines(out)[0]["job"] == "a"


def test_context_survives_await_and_threads() -> None:
    out = io.StringIO()
    configure_logging(format="json", stream=out)
    log = get_logger("utils.ctx")

    async def handler() -> None:
        with bind_context(request_id="r-async"):
            await asyncio.sleep(0)
            log.info("after.await")
            await run_in_thread(log.info, "in.executor")

    asyncio.run(handler())

    with bind_context(request_id="r-thread"):
        worker = threading.Thread(target=with_current_context(log.info), args=("in.thread",))
    worker.start()
    worker.join()
    plain = threading.Thread(target=log.info, args=("plain.thread",))
    plain.start()
    plain.join()

    events = {event["event"]: event.get("request_id") for event in lines(out)}
    assert events == {
        "after.await": "r-async",
        "in.executor": "r-async",
        "in.thread": "r-thread",
        "plain.thread": None,
    }


def test_bind_context_restores_previous_values() -> None:
    from utils.core import get_context

    with bind_context(a=1):
        with bind_context(a=2, b=3):
            assert get_context() == {"a": 2, "b": 3}
        assert get_context() == {"a": 1}
    assert get_context() == {}


def test_concurrent_writers_never_interleave_lines() -> None:
    out = io.StringIO()
    configure_logging(format="json", stream=out)
    log = get_logger("utils.threads")

    def work(n: int) -> None:
        for i in range(200):
            log.info("tick", worker=n, i=i)
            logging.getLogger("foreign").warning("tock")

    threads = [threading.Thread(target=work, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(lines(out)) == 4 * 200 * 2  # every line is valid JSON


def test_capture_logs_collects_and_restores() -> None:
    out = io.StringIO()
    configure_logging(format="json", stream=out)
    with capture_logs() as logs:
        get_logger("utils.cap").debug("cap.debug", password="p")
        structlog.get_logger("app").warning("app.warn")
    assert logs == [
        {"password": "***", "event": "cap.debug", "logger": "utils.cap", "log_level": "debug"},
        {"event": "app.warn", "logger": "app", "log_level": "warning"},
    ]
    assert out.getvalue() == ""
    get_logger("utils.cap").info("after.capture")
    assert lines(out)[0]["event"] == "after.capture"


def test_capture_logs_level_and_warn_alias() -> None:
    with capture_logs(level="WARNING") as logs:
        get_logger("utils.cap").info("ignored")
        get_logger("utils.cap").warn("alias")
    assert [(entry["event"], entry["log_level"]) for entry in logs] == [("alias", "warning")]


def test_utils_logs_fixture(utils_logs: list[dict[str, Any]]) -> None:
    get_logger("utils.fixture").info("from.fixture", token="abc")
    assert utils_logs == [
        {"token": "***", "event": "from.fixture", "logger": "utils.fixture", "log_level": "info"}
    ]


# --- values redaction used to choke on or miss (regressions) --------------------------------


class Snapshot(NamedTuple):
    state: str
    failures: int


class _Unprintable(Exception):
    def __str__(self) -> str:
        raise RuntimeError("broken __str__")


AWKWARD_VALUES: dict[str, Any] = {
    "version": sys.version_info,
    "snapshot": Snapshot("redis://u:hunter2@h/0", 2),
    "hosts": {"redis://u:hunter2@h/0"},
    "frozen": frozenset({"redis://u:hunter2@h/0"}),
    "raw": b"redis://u:hunter2@h/0",
    "broken": [_Unprintable("redis://u:hunter2@h/0")],
}


@pytest.mark.parametrize("format", ["json", "console"])
def test_awkward_values_are_logged_and_masked(format: Any) -> None:
    out = io.StringIO()
    configure_logging(format=format, stream=out)
    get_logger("utils.x").info("awkward", **AWKWARD_VALUES)
    text = out.getvalue()
    assert "awkward" in text
    assert "hunter2" not in text
    assert "redis://u:***@h/0" in text
    assert "not logged: redaction failed" in text
    if format == "json":
        [event] = lines(out)
        assert event["version"] == list(sys.version_info)


def test_awkward_values_in_library_mode(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="utils.lib"):
        get_logger("utils.lib").info("awkward", **AWKWARD_VALUES)
    [record] = caplog.records
    message = record.getMessage()
    assert "hunter2" not in message
    assert "snapshot=Snapshot(state='redis://u:***@h/0', failures=2)" in message


def test_awkward_values_in_capture_logs() -> None:
    with capture_logs() as logs:
        get_logger("utils.x").info("awkward", **AWKWARD_VALUES)
    [entry] = logs
    assert entry["snapshot"] == Snapshot("redis://u:***@h/0", 2)
    assert entry["raw"] == b"redis://u:***@h/0"
    assert "hunter2" not in repr(entry)


@pytest.mark.parametrize("orjson_missing", [False, True])
def test_values_the_json_encoder_refuses_are_logged_not_raised(
    orjson_missing: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    if orjson_missing:  # the stdlib encoder path
        monkeypatch.setitem(sys.modules, "orjson", None)
    out = io.StringIO()
    configure_logging(format="json", stream=out)
    log = get_logger("utils.x")
    log.info("odd_keys", mapping={(1, 2): "tuple key", b"raw": "bytes key"})
    log.info("huge_int", value=10**30)
    [odd, huge] = lines(out)
    assert odd["mapping"] == {"(1, 2)": "tuple key", "b'raw'": "bytes key"}
    assert huge["value"] in (10**30, str(10**30))  # stdlib json writes it, orjson cannot


def test_nesting_beyond_the_encoders_limit_is_cut_not_raised() -> None:
    from utils.core.log import _dumps_anything

    deep: list[Any] = []
    cursor = deep
    for _ in range(500):
        cursor.append([])
        cursor = cursor[0]
    text = _dumps_anything({"event": "deep", "value": deep})
    assert "<nested too deeply to log>" in text
    assert json.loads(text)["event"] == "deep"
