"""``utils doctor --kind``: the exec probe, with checks registered by an imported module."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from utils.core import health as health_module
from utils.core import plugins
from utils.core.cli import build_app

runner = CliRunner()

APP_HEALTH = """
    from utils.core import register_check

    def db() -> None:
        raise ConnectionError("refused by postgresql://app:hunter2@db/x")

    register_check("db", db, kind="readiness", replace=True)
    register_check("loop", lambda: "alive", kind="liveness", replace=True)
"""


@pytest.fixture
def app_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    (tmp_path / "probe_app_health.py").write_text(textwrap.dedent(APP_HEALTH))
    monkeypatch.syspath_prepend(str(tmp_path))
    before = dict(health_module._state.checks)
    yield "probe_app_health"
    health_module._state.checks = before
    sys.modules.pop("probe_app_health", None)


def test_kind_runs_only_that_kind(app_module: str) -> None:
    live = runner.invoke(build_app(), ["doctor", "--kind", "liveness", "--import", app_module])
    assert live.exit_code == 0, live.output
    assert "ok    loop  alive" in live.output
    assert "python" not in live.output
    ready = runner.invoke(
        build_app(), ["doctor", "--kind", "readiness", "--import", app_module, "--json"]
    )
    assert ready.exit_code == 1
    report = json.loads(ready.stdout)
    by_name = {check["name"]: check for check in report["checks"]}
    assert by_name["db"]["kind"] == "readiness"
    assert "hunter2" not in ready.stdout
    assert "loop" not in by_name
    assert "python" not in by_name  # doctor diagnostics run only without --kind
    # Every installed utils.health entry point is a readiness check, except the doctor's own
    # diagnostics (python, plugins): whichever siblings this environment has.
    installed = set(plugins.names("utils.health")) - {"python", "plugins"}
    assert installed <= set(by_name)


def test_bad_kind_module_or_timeout_is_a_usage_error() -> None:
    bad_kind = runner.invoke(build_app(), ["doctor", "--kind", "ready"])
    assert bad_kind.exit_code == 2
    assert "liveness, readiness, startup" in bad_kind.output
    bad_module = runner.invoke(build_app(), ["doctor", "--import", "no_such_module_here"])
    assert bad_module.exit_code == 2
    assert "cannot import 'no_such_module_here'" in bad_module.output
    bad_timeout = runner.invoke(build_app(), ["doctor", "--timeout", "0"])
    assert bad_timeout.exit_code == 2
    assert "timeout must be seconds > 0" in bad_timeout.output


def test_exec_probe_exit_codes_in_a_real_process(app_module: str, tmp_path: Path) -> None:
    command = [sys.executable, "-c", "from utils.core.cli import main; main()", "doctor"]
    env = {**os.environ, "PYTHONPATH": str(tmp_path), "PYTHONWARNINGS": "ignore"}
    failing = subprocess.run(
        [*command, "--kind", "readiness", "--import", app_module],
        capture_output=True,
        text=True,
        check=False,
        env=env,
        timeout=60,
    )
    assert failing.returncode == 1, failing.stderr
    assert "FAIL  db  ConnectionError: refused by postgresql://app:***@db/x" in failing.stdout
    passing = subprocess.run(
        [*command, "--kind", "liveness", "--import", app_module],
        capture_output=True,
        text=True,
        check=False,
        env=env,
        timeout=60,
    )
    assert passing.returncode == 0, passing.stdout + passing.stderr
    assert "all 1 checks passed" in passing.stdout
