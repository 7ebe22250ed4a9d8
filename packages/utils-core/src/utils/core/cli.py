"""The ``utils`` command (``pip install "utils-core[cli]"``).

``utils version`` lists the installed family members, ``utils doctor`` runs the health
checks (every installed one; ``--kind readiness`` makes it a Kubernetes exec probe, and
``--import app.health`` runs the checks that module registers), and installed packages add sub-commands through the ``utils.cli`` entry-point
group (``utils cache ...``, ``utils db ...``). Output is for humans by default and JSON with
``--json``.

Example:
    >>> from typer.testing import CliRunner
    >>> result = CliRunner().invoke(build_app(), ["version", "--json"])
    >>> result.exit_code, '"utils-core"' in result.output
    (0, True)
"""

from __future__ import annotations

import json
import sys
from typing import Annotated, Any

try:
    import typer

    _HAS_TYPER = True
except ImportError:  # tested in a subprocess that hides typer
    _HAS_TYPER = False

__all__ = ["build_app", "installed_distributions", "main"]

_MISSING_TYPER = "the utils command needs the cli extra: pip install 'utils-core[cli]'"


def installed_distributions() -> dict[str, str]:
    """Return ``{distribution: version}`` for the installed ``utils-*`` family members.

    Example:
        >>> "utils-core" in installed_distributions()
        True
    """
    from importlib.metadata import distributions

    found: dict[str, str] = {}
    for dist in distributions():
        name = (dist.metadata["Name"] or "").lower().replace("_", "-")
        if name.startswith("utils-"):
            found[name] = dist.version
    return dict(sorted(found.items()))


def _version(as_json: bool) -> None:
    members = installed_distributions()
    if as_json:
        typer.echo(json.dumps(members, indent=2))
        return
    width = max((len(name) for name in members), default=0)
    for name, version in members.items():
        typer.echo(f"{name:<{width}}  {version}")


def _doctor(
    as_json: bool, timeout: float, only: list[str] | None, kind: str | None, imports: list[str]
) -> None:
    import importlib

    from utils.core.errors import ValidationError
    from utils.core.health import KINDS, iter_checks

    if kind is not None and kind not in KINDS:
        raise typer.BadParameter(f"use one of {', '.join(KINDS)}", param_hint="'--kind'")
    for module in imports:  # modules that call register_check(), like the app does
        try:
            importlib.import_module(module)
        except Exception as exc:  # the module's own error, shown as a usage error
            message = f"cannot import {module!r}: {type(exc).__name__}: {exc}"
            raise typer.BadParameter(message, param_hint="'--import'") from exc
    try:
        checks = iter_checks(only or None, kind=kind, timeout=timeout)
    except ValidationError as exc:
        raise typer.BadParameter(str(exc), param_hint="'--timeout'") from exc
    results = []
    for result in checks:  # printed as they finish
        results.append(result)
        if not as_json:
            mark = "ok  " if result.ok else "FAIL"
            detail = f"  {result.detail}" if result.detail else ""
            typer.echo(f"{mark}  {result.name}{detail}  ({result.seconds * 1000:.1f} ms)")
    failed = [result.name for result in results if not result.ok]
    if as_json:
        typer.echo(json.dumps({"ok": not failed, "checks": [r.as_dict() for r in results]}))
    elif failed:
        typer.echo(f"{len(failed)} of {len(results)} checks failed: {', '.join(failed)}", err=True)
    else:
        typer.echo(f"all {len(results)} checks passed")
    if failed:
        raise typer.Exit(code=1)


def build_app() -> Any:
    """Build the typer application, mounting the installed ``utils.cli`` sub-apps.

    A sub-app whose plugin fails to import is skipped with a warning; the rest of the CLI
    still works (that is what ``utils doctor`` is for).

    Example:
        >>> app = build_app()
        >>> app.info.name
        'utils'
    """
    if not _HAS_TYPER:
        from utils.core.errors import ConfigError

        raise ConfigError(_MISSING_TYPER)
    from utils.core import plugins

    app = typer.Typer(
        name="utils",
        help="Tools of the utils family: versions, health checks and package sub-commands.",
        no_args_is_help=True,
        add_completion=False,
        pretty_exceptions_enable=False,
    )

    @app.command("version")
    def version(
        as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    ) -> None:
        """List the installed utils distributions and their versions."""
        _version(as_json)

    @app.command("doctor")
    def doctor(
        as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
        timeout: Annotated[float, typer.Option(help="Seconds allowed per check.")] = 5.0,
        check: Annotated[
            list[str] | None, typer.Option("--check", help="Run only this check (repeatable).")
        ] = None,
        kind: Annotated[
            str | None,
            typer.Option(
                help="Run only checks of this kind: liveness, readiness or startup "
                "(an exec probe: utils doctor --kind readiness)."
            ),
        ] = None,
        import_: Annotated[
            list[str] | None,
            typer.Option(
                "--import",
                help="Import this module first, so the checks it registers run (repeatable).",
            ),
        ] = None,
    ) -> None:
        """Run the health checks; exit with 1 when any fails."""
        _doctor(as_json, timeout, check, kind, import_ or [])

    for name, sub_app in plugins.load("utils.cli").items():
        if isinstance(sub_app, typer.Typer):
            app.add_typer(sub_app, name=name)
    return app


def main(argv: list[str] | None = None) -> None:
    """Entry point of the ``utils`` console script.

    Example:
        >>> main(["version"])  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        SystemExit: 0
    """
    if not _HAS_TYPER:
        sys.stderr.write(f"error: {_MISSING_TYPER}\n")
        raise SystemExit(1)
    from utils.core.log import configure_logging

    # Warnings (a broken plugin) go to stderr so --json output on stdout stays parseable.
    configure_logging(level="WARNING", format="console", stream=sys.stderr)
    app = build_app()
    app(args=argv, prog_name="utils")
