"""The command line: ``python -m pipeline load s3://bucket/prefix``.

Settings come from the environment the family's way: the database from ``UTILS_PG_DSN``
(or ``UTILS_PG_HOST`` ...; :class:`~utils.db.PostgresSettings`), AWS from the usual
variables and ``UTILS_AWS_*``. Progress goes to stderr, the summary to stdout (``--json`` for
machines). Exit status: 0 when every object was loaded (rejected rows included), 1 when the
run stopped on an error; run it again to resume.

Test hook: ``PIPELINE_CRASH_AT=N`` ends the process abruptly (``os._exit``, as a kill
would) while the N-th object of the run is inside its transaction, after its rows were
copied. The tests use it to prove that a rerun loads nothing twice.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated
from urllib.parse import urlsplit

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from pipeline.load import Loader, Summary
from utils.aws import S3
from utils.core import UtilsError, configure_logging
from utils.db import Database, PostgresSettings
from utils.resilience import RateLimiter

__all__ = ["CRASH_EXIT_CODE", "app", "main"]

#: The exit status of a crash injected with PIPELINE_CRASH_AT.
CRASH_EXIT_CODE = 70

app = typer.Typer(add_completion=False, no_args_is_help=True, help=__doc__.split("\n")[0])


@app.callback()
def _main() -> None:
    """Load order lines from S3 into PostgreSQL."""


def _location(url: str) -> tuple[str, str]:
    parts = urlsplit(url)
    if parts.scheme != "s3" or not parts.netloc:
        raise typer.BadParameter(f"expected s3://bucket/prefix, got {url!r}")
    return parts.netloc, parts.path.lstrip("/")


def _crash_hook() -> Callable[[int], None] | None:
    at = os.environ.get("PIPELINE_CRASH_AT")
    if not at:
        return None

    def crash(number: int) -> None:
        if number == int(at):
            sys.stderr.write(f"PIPELINE_CRASH_AT={at}: exiting inside the transaction\n")
            sys.stderr.flush()
            os._exit(CRASH_EXIT_CODE)

    return crash


@app.command()
def load(
    source: Annotated[str, typer.Argument(help="s3://bucket/prefix of the objects to load.")],
    schema: Annotated[str, typer.Option(help="PostgreSQL schema of the tables.")] = "pipeline",
    rejects: Annotated[
        Path, typer.Option(help="Where to write the rejected rows (JSON lines).")
    ] = Path("rejects.jsonl"),
    reads_per_second: Annotated[
        float, typer.Option(help="At most this many S3 reads per second.", min=0.01)
    ] = 20.0,
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
    progress: Annotated[bool, typer.Option(help="Show a progress bar on stderr.")] = True,
    log_level: Annotated[str, typer.Option(help="DEBUG, INFO, WARNING or ERROR.")] = "WARNING",
) -> None:
    """Load every object under SOURCE not loaded yet; write the rejects; print a summary."""
    bucket_name, prefix = _location(source)
    configure_logging(level=log_level.upper(), format="auto")
    limiter = RateLimiter(reads_per_second, per=1.0, name="s3-reads")
    err = Console(stderr=True)
    try:
        with Database(PostgresSettings.from_env(), max_size=2) as db:
            loader = Loader(
                db,
                # One attempt per call: the loader's retry policies own the retry budget.
                S3(bucket_name, max_attempts=1),
                schema=schema,
                limiter=limiter,
                after_copy=_crash_hook(),
            )
            summary = _run(loader, prefix, err if progress else None)
            written = _write_rejects(loader, prefix, rejects)
    except UtilsError as exc:
        typer.echo(f"error: {type(exc).__name__}: {exc}", err=True)
        raise typer.Exit(1) from exc
    _print_summary(summary, rejects, written, as_json)


def _run(loader: Loader, prefix: str, console: Console | None) -> Summary:
    if console is None:
        return loader.run(prefix)
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rows]:,} rows"),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=console, transient=False) as bar:
        task = bar.add_task("objects", total=None, rows=0)

        def update(done: int, total: int, rows: int) -> None:
            bar.update(task, completed=done, total=total, rows=rows)

        return loader.run(prefix, update)


def _write_rejects(loader: Loader, prefix: str, path: Path) -> int:
    count = 0
    with path.open("w", encoding="utf-8") as out:
        for row in loader.rejects(prefix):
            out.write(json.dumps(row, ensure_ascii=False) + "\n")
            count += 1
    return count


def _print_summary(summary: Summary, path: Path, written: int, as_json: bool) -> None:
    if as_json:
        print(
            json.dumps(
                {**summary.as_dict(), "rejects_file": str(path), "rejects_written": written}
            )
        )
        return
    print(
        f"objects: {summary.objects_seen} seen, {summary.objects_loaded} loaded, "
        f"{summary.objects_skipped} already loaded, {summary.objects_ignored} ignored\n"
        f"rows:    {summary.rows_read:,} read, {summary.rows_loaded:,} loaded, "
        f"{summary.rows_rejected:,} rejected\n"
        f"time:    {summary.seconds:.2f} s, {summary.rows_per_second:,.0f} rows/s\n"
        f"rejects: {written:,} rows in {path} (every run's rejects under the prefix)"
    )


def main() -> None:
    """The console entry point."""
    app()
