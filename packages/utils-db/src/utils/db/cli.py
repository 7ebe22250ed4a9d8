"""``utils db``: check a database and move CSV in and out of it (entry-point group ``utils.cli``).

Commands: ``check`` (round trip, server version; ``--json``), ``copy-in TABLE FILE.csv``
(CSV into a table through ``COPY FROM STDIN``) and ``copy-out QUERY FILE.csv`` (a query's
rows into CSV through ``COPY TO STDOUT``); both copies stream (constant memory) and show a
progress bar on stderr. Every command takes ``--dsn`` (default: the ``UTILS_PG_*``
variables, e.g. ``UTILS_PG_DSN``). Errors go to stderr with exit code 1 (2 for missing
configuration). Passwords are never printed: a server is shown as ``user@host:port/db``.

Example:
    >>> from typer.testing import CliRunner
    >>> result = CliRunner().invoke(app, ["check", "--dsn", "postgresql://nobody@127.0.0.1:1/x"])
    >>> result.exit_code
    1
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from utils.core import ConfigError, UtilsError
from utils.db.health import check_server, configured_conninfo

__all__ = ["app"]

#: Bytes read from the CSV file per COPY write.
CHUNK = 1 << 16

app: typer.Typer = typer.Typer(
    name="db",
    help="Check a PostgreSQL database and copy CSV in and out of it.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

DsnOption = Annotated[
    str | None,
    typer.Option("--dsn", help="Connection string (default: UTILS_PG_DSN / UTILS_PG_*)."),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON.")]
HeaderOption = Annotated[
    bool, typer.Option("--header/--no-header", help="The CSV has (gets) a header line.")
]


def _fail(message: str, code: int = 1) -> typer.Exit:
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(code=code)


def _conninfo(dsn: str | None) -> str:
    if dsn:
        return dsn
    try:
        return configured_conninfo()
    except ConfigError as exc:
        raise _fail(str(exc), code=2) from None


def _database(dsn: str | None) -> Any:
    from utils.db.database import Database

    return Database(_conninfo(dsn), min_size=1, max_size=1, name="cli")


@app.command("check")
def check(dsn: DsnOption = None, as_json: JsonOption = False) -> None:
    """Connect once and print the server version (exit code 1 when it fails)."""
    try:
        report = check_server(_conninfo(dsn))
    except UtilsError as exc:
        if as_json:
            typer.echo(json.dumps({"ok": False, "error": f"{type(exc).__name__}: {exc}"}))
        raise _fail(f"{type(exc).__name__}: {exc}") from None
    if as_json:
        typer.echo(json.dumps(report))
    else:
        typer.echo(
            f"ok  PostgreSQL {report['server_version']} at {report['server']} "
            f"({report['seconds'] * 1000:.1f} ms)"
        )


@app.command("copy-in")
def copy_in(
    table: Annotated[str, typer.Argument(help="Target table (schema.table allowed).")],
    file: Annotated[Path, typer.Argument(help="CSV file to load.", exists=True, dir_okay=False)],
    columns: Annotated[
        str | None, typer.Option("--columns", help="Comma-separated target columns.")
    ] = None,
    header: HeaderOption = True,
    dsn: DsnOption = None,
    as_json: JsonOption = False,
) -> None:
    """Load FILE.csv into TABLE with COPY FROM STDIN (streamed, with a progress bar)."""
    from utils.db import _sql

    names = [name.strip() for name in columns.split(",")] if columns else None
    try:
        statement = _sql.csv_copy_in_sql(table, names, header)
        with _database(dsn) as db, db.connection() as conn, file.open("rb") as source:
            cursor = conn.cursor()
            with (
                typer.progressbar(
                    length=file.stat().st_size,
                    label="copying in",
                    file=sys.stderr,
                    hidden=as_json,
                ) as bar,
                cursor.copy(statement) as copy,
            ):
                while chunk := source.read(CHUNK):
                    copy.write(chunk)
                    bar.update(len(chunk))
            rows = cursor.rowcount
    except UtilsError as exc:
        raise _fail(f"{type(exc).__name__}: {exc}") from None
    if as_json:
        typer.echo(json.dumps({"table": table, "rows": rows}))
    else:
        typer.echo(f"copied {rows:,} rows into {table}")


@app.command("copy-out")
def copy_out(
    query: Annotated[str, typer.Argument(help="The SELECT statement.")],
    file: Annotated[Path, typer.Argument(help="CSV file to write.", dir_okay=False)],
    header: HeaderOption = True,
    dsn: DsnOption = None,
    as_json: JsonOption = False,
) -> None:
    """Write the rows of QUERY to FILE.csv with COPY TO STDOUT (streamed, with progress)."""
    from utils.db import _sql

    written = 0
    try:
        statement = _sql.csv_copy_out_sql(query, header)
        with _database(dsn) as db, db.connection() as conn, file.open("wb") as target:
            cursor = conn.cursor()
            with (
                cursor.copy(statement) as copy,
                typer.progressbar(
                    copy, label="copying out", file=sys.stderr, hidden=as_json, show_pos=True
                ) as chunks,
            ):
                for chunk in chunks:
                    target.write(chunk)
                    written += len(chunk)
            rows = cursor.rowcount
    except UtilsError as exc:
        raise _fail(f"{type(exc).__name__}: {exc}") from None
    if as_json:
        typer.echo(json.dumps({"file": str(file), "rows": rows, "bytes": written}))
    else:
        typer.echo(f"copied {rows:,} rows ({written:,} bytes) to {file}")
