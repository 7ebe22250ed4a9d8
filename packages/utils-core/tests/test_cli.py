from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from utils.core import __version__
from utils.core.cli import build_app, installed_distributions, main

runner = CliRunner()


def test_version_lists_installed_members() -> None:
    result = runner.invoke(build_app(), ["version"])
    assert result.exit_code == 0
    assert f"utils-core  {__version__}" in result.output
    result = runner.invoke(build_app(), ["version", "--json"])
    assert json.loads(result.output)["utils-core"] == __version__
    assert installed_distributions()["utils-core"] == __version__


def test_doctor_passes_with_builtin_checks() -> None:
    result = runner.invoke(build_app(), ["doctor"])
    assert result.exit_code == 0, result.output
    assert "ok    python" in result.output
    assert "all " in result.output


def test_doctor_json_and_failure_exit_code(fake_distribution: Any) -> None:
    fake_distribution(
        "utils-failing",
        {"utils.health": {"db": "failing_check_mod:check"}},
        module="failing_check_mod",
        module_source="def check(): raise ConnectionError('connection refused')",
    )
    result = runner.invoke(build_app(), ["doctor", "--json"])
    assert result.exit_code == 1
    report = json.loads(result.stdout)
    assert report["ok"] is False
    by_name = {check["name"]: check for check in report["checks"]}
    assert by_name["db"]["detail"] == "ConnectionError: connection refused"
    assert by_name["python"]["ok"] is True

    human = runner.invoke(build_app(), ["doctor", "--check", "db"])
    assert human.exit_code == 1
    assert "FAIL  db  ConnectionError: connection refused" in human.output


def test_sub_apps_are_mounted_and_broken_ones_skipped(fake_distribution: Any) -> None:
    fake_distribution(
        "utils-greeter",
        {"utils.cli": {"greet": "greeter_cli_mod:app", "notapp": "greeter_cli_mod:VALUE"}},
        module="greeter_cli_mod",
        module_source="""
            import typer
            app = typer.Typer()
            VALUE = 3
            @app.command()
            def hello(name: str) -> None:
                typer.echo(f"hello {name}")
            @app.command()
            def bye() -> None:
                typer.echo("bye")
        """,
    )
    fake_distribution(
        "utils-brokencli",
        {"utils.cli": {"broken": "broken_cli_mod:app"}},
        module="broken_cli_mod",
        module_source="raise ImportError('typer plugin is broken')",
    )
    result = runner.invoke(build_app(), ["greet", "hello", "ann"])
    assert result.exit_code == 0, result.output
    assert result.output.strip() == "hello ann"


def test_main_runs_the_app(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["version", "--json"])
    assert exited.value.code == 0
    assert json.loads(capsys.readouterr().out)["utils-core"] == __version__


def test_console_script_is_installed_and_works() -> None:
    script = shutil.which("utils", path=str(Path(sys.executable).parent))
    assert script is not None, "the `utils` console script is not installed"
    result = subprocess.run(
        [script, "doctor", "--json"], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["ok"] is True


def test_cli_without_typer_says_which_extra_to_install() -> None:
    code = "import sys; sys.modules['typer'] = None\nfrom utils.core.cli import main\nmain([])\n"
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "PYTHONWARNINGS": "ignore"},
    )
    assert result.returncode == 1
    assert "pip install 'utils-core[cli]'" in result.stderr


def test_doctor_loads_plugins_once(
    fake_distribution: Any, utils_logs: list[dict[str, Any]]
) -> None:
    fake_distribution(
        "utils-halfbroken",
        {"utils.health": {"broken": "halfbroken_mod:check", "fine": "halfbroken_ok:check"}},
        module="halfbroken_mod",
        module_source="raise ImportError('nope')",
    )
    fake_distribution(
        "utils-halfbroken-ok",
        {},
        module="halfbroken_ok",
        module_source="def check(): return 'fine'",
    )
    result = runner.invoke(build_app(), ["doctor"])
    assert result.exit_code == 1
    assert "FAIL  broken  failed to import" in result.output
    assert "ok    fine  fine" in result.output
    failures = [e for e in utils_logs if e["event"] == "plugins.load_failed"]
    assert len(failures) == 1
