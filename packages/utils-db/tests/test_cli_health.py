from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from utils.core import ConfigError
from utils.db import Database
from utils.db.cli import app
from utils.db.health import NOT_CONFIGURED, check_server, configured_conninfo, postgres_ping

runner = CliRunner()


def test_check(utils_postgres_url: str) -> None:
    result = runner.invoke(app, ["check", "--dsn", utils_postgres_url])
    assert result.exit_code == 0
    assert "PostgreSQL 15" in result.output
    result = runner.invoke(app, ["check", "--dsn", utils_postgres_url, "--json"])
    assert json.loads(result.output)["ok"] is True
    result = runner.invoke(
        app, ["check", "--dsn", "postgresql://u:hunter2@127.0.0.1:1/x", "--json"]
    )
    assert result.exit_code == 1
    assert "hunter2" not in result.output
    assert json.loads(result.output.splitlines()[0])["ok"] is False


def test_check_needs_configuration(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("UTILS_PG_DSN", "UTILS_PG_HOST", "UTILS_PG_DBNAME"):
        monkeypatch.delenv(name, raising=False)
    result = runner.invoke(app, ["check"])
    assert result.exit_code == 2
    assert "UTILS_PG_DSN" in result.output


def test_copy_in_and_out(
    db: Database, table: str, tmp_path: Path, utils_postgres_url: str
) -> None:
    source = tmp_path / "in.csv"
    source.write_text('name,n\nann,1\n"with, comma",2\n"new\nline",\n', encoding="utf-8")
    result = runner.invoke(
        app, ["copy-in", table, str(source), "--columns", "name,n", "--dsn", utils_postgres_url]
    )
    assert result.exit_code == 0, result.output
    assert "copied 3 rows" in result.output
    assert db.fetch_all(f"select name, n from {table} order by id")[1] == {
        "name": "with, comma",
        "n": 2,
    }
    target = tmp_path / "out.csv"
    query = f"select name, n from {table} order by id"
    result = runner.invoke(
        app, ["copy-out", query, str(target), "--dsn", utils_postgres_url, "--json"]
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.output.splitlines()[-1])["rows"] == 3
    assert target.read_text(encoding="utf-8") == source.read_text(encoding="utf-8")
    headless = tmp_path / "noheader.csv"
    headless.write_text("zed,9\n", encoding="utf-8")
    result = runner.invoke(
        app,
        [
            "copy-in",
            table,
            str(headless),
            "--no-header",
            "--columns",
            "name,n",
            "--dsn",
            utils_postgres_url,
            "--json",
        ],
    )
    assert json.loads(result.output.splitlines()[-1]) == {"table": table, "rows": 1}
    result = runner.invoke(
        app, ["copy-out", query, str(target), "--no-header", "--dsn", utils_postgres_url]
    )
    assert "copied 4 rows" in result.output


def test_copy_errors(utils_postgres_url: str, tmp_path: Path) -> None:
    source = tmp_path / "in.csv"
    source.write_text("a\n", encoding="utf-8")
    result = runner.invoke(
        app, ["copy-in", 'x"; drop table t; --', str(source), "--dsn", utils_postgres_url]
    )
    assert result.exit_code == 1
    assert "UndefinedTable" not in result.output
    assert "error:" in result.output
    result = runner.invoke(
        app, ["copy-out", "selec", str(tmp_path / "o.csv"), "--dsn", utils_postgres_url]
    )
    assert result.exit_code == 1


def test_health_entry_point(utils_postgres_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("UTILS_PG_DSN", utils_postgres_url)
    assert postgres_ping().startswith("PostgreSQL 15")
    assert check_server(utils_postgres_url)["database"] == "test"
    with pytest.raises(ConfigError):
        configured_conninfo({})
    assert postgres_ping({}) == NOT_CONFIGURED  # installed, configured in code: nothing to reach
    with pytest.raises(ConfigError):
        postgres_ping({"UTILS_PG_PORT": "not-a-port"})  # misconfigured is still a failure
    from utils.core.health import run_checks

    results = run_checks(["postgres"])
    assert results[0].ok, results[0].detail


def test_registered_entry_points() -> None:
    from utils.core import plugins

    assert "db" in plugins.names("utils.cli")
    assert "postgres" in plugins.names("utils.health")
    assert "psycopg" in plugins.names("utils.transient")
