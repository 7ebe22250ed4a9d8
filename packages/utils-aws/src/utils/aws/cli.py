"""``utils aws``: who am I, list and copy S3 objects, read a secret (entry-point group ``utils.cli``).

Commands: ``whoami`` (STS GetCallerIdentity), ``s3 ls s3://bucket/prefix``,
``s3 cp SRC DST`` (a local path and an ``s3://`` URL either way, or two ``s3://`` URLs; a
progress bar on stderr) and ``secret get NAME`` (prints the secret: it is what you asked
for). Every command takes ``--region``, ``--profile`` and ``--endpoint-url`` (defaults:
``UTILS_AWS_*``, then boto3's own configuration). Output is for humans by default and JSON
with ``--json``; errors go to stderr with exit code 1 (2 for a bad argument).

Example:
    >>> from typer.testing import CliRunner
    >>> result = CliRunner().invoke(app, ["s3", "ls", "not-an-s3-url"])
    >>> result.exit_code
    2
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlsplit

import typer

from utils.core import UtilsError

__all__ = ["app"]

app: typer.Typer = typer.Typer(
    name="aws",
    help="AWS helpers: identity, S3 objects, secrets.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
s3_app: typer.Typer = typer.Typer(
    name="s3", help="List and copy S3 objects.", no_args_is_help=True
)
secret_app: typer.Typer = typer.Typer(
    name="secret", help="Read Secrets Manager secrets.", no_args_is_help=True
)
app.add_typer(s3_app)
app.add_typer(secret_app)

RegionOption = Annotated[str | None, typer.Option("--region", help="AWS region.")]
ProfileOption = Annotated[str | None, typer.Option("--profile", help="Named AWS profile.")]
EndpointOption = Annotated[
    str | None, typer.Option("--endpoint-url", help="Endpoint URL (LocalStack, moto).")
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON.")]


def _fail(message: str, code: int = 1) -> typer.Exit:
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(code=code)


def _options(region: str | None, profile: str | None, endpoint_url: str | None) -> dict[str, Any]:
    chosen = {"region": region, "profile": profile, "endpoint_url": endpoint_url}
    return {name: value for name, value in chosen.items() if value}


def _s3_url(url: str) -> tuple[str, str]:
    parts = urlsplit(url)
    if parts.scheme != "s3" or not parts.netloc:
        raise _fail(f"{url!r} is not an s3://bucket/key URL", code=2)
    return parts.netloc, parts.path.lstrip("/")


def _guard(error: UtilsError) -> typer.Exit:
    return _fail(f"{type(error).__name__}: {error}")


@app.command("whoami")
def whoami(
    region: RegionOption = None,
    profile: ProfileOption = None,
    endpoint_url: EndpointOption = None,
    as_json: JsonOption = False,
) -> None:
    """Show the account, user id and ARN of the configured credentials."""
    from utils.aws.clients import client

    try:
        sts = client("sts", **_options(region, profile, endpoint_url))
        from utils.aws._service import failure

        try:
            identity = sts.get_caller_identity()
        except Exception as exc:
            raise failure(sts, "sts", "GetCallerIdentity", exc) from exc
    except UtilsError as exc:
        raise _guard(exc) from None
    shown = {name: identity[name] for name in ("Account", "UserId", "Arn")}
    if as_json:
        typer.echo(json.dumps(shown))
    else:
        typer.echo(f"account {shown['Account']} as {shown['Arn']} (user id {shown['UserId']})")


@s3_app.command("ls")
def s3_ls(
    url: Annotated[str, typer.Argument(help="s3://bucket/prefix")],
    region: RegionOption = None,
    profile: ProfileOption = None,
    endpoint_url: EndpointOption = None,
    as_json: JsonOption = False,
) -> None:
    """List the objects under a prefix (size, last modified, key)."""
    from utils.aws.s3 import S3

    bucket, prefix = _s3_url(url)
    try:
        objects = list(S3(bucket, **_options(region, profile, endpoint_url)).iter_objects(prefix))
    except UtilsError as exc:
        raise _guard(exc) from None
    if as_json:
        rows = [
            {"key": o["Key"], "size": o["Size"], "last_modified": o["LastModified"].isoformat()}
            for o in objects
        ]
        typer.echo(json.dumps(rows))
        return
    for item in objects:
        modified = item["LastModified"].strftime("%Y-%m-%d %H:%M:%S")
        typer.echo(f"{modified} {item['Size']:>12} {item['Key']}")


def _progress(total: int, label: str, *, show: bool) -> Any:
    return typer.progressbar(
        length=max(total, 1), label=label, file=sys.stderr, hidden=not show, show_pos=True
    )


@s3_app.command("cp")
def s3_cp(
    source: Annotated[str, typer.Argument(help="A local file or s3://bucket/key.")],
    destination: Annotated[str, typer.Argument(help="A local path or s3://bucket/key.")],
    region: RegionOption = None,
    profile: ProfileOption = None,
    endpoint_url: EndpointOption = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
    as_json: JsonOption = False,
) -> None:
    """Copy a file to or from S3 (multipart for large files), or between two S3 URLs."""
    from utils.aws.s3 import S3

    options = _options(region, profile, endpoint_url)
    up, down = destination.startswith("s3://"), source.startswith("s3://")
    try:
        if up and down:
            (src_bucket, src_key), (bucket, key) = _s3_url(source), _s3_url(destination)
            S3(bucket, **options).copy(
                src_key, key or src_key.rsplit("/", 1)[-1], source_bucket=src_bucket
            )
            size = None
        elif up:
            bucket, key = _s3_url(destination)
            path = Path(source)
            if not path.is_file():
                raise _fail(f"{source!r} is not a file", code=2)
            key = key if key and not key.endswith("/") else key + path.name
            size = path.stat().st_size
            with _progress(size, f"upload {path.name}", show=not (quiet or as_json)) as bar:
                S3(bucket, **options).upload_file(path, key, progress=bar.update)
        elif down:
            bucket, key = _s3_url(source)
            target = Path(destination)
            if target.is_dir() or destination.endswith(os.sep):
                target = target / key.rsplit("/", 1)[-1]
            s3 = S3(bucket, **options)
            head = s3._call("head_object", Bucket=bucket, Key=key)
            size = int(head.get("ContentLength", 0))
            with _progress(size, f"download {target.name}", show=not (quiet or as_json)) as bar:
                s3.download_file(key, target, progress=bar.update)
        else:
            raise _fail("one of SOURCE and DESTINATION must be an s3:// URL", code=2)
    except UtilsError as exc:
        raise _guard(exc) from None
    if as_json:
        typer.echo(json.dumps({"source": source, "destination": destination, "bytes": size}))
    else:
        typer.echo(f"copied {source} -> {destination}")


@secret_app.command("get")
def secret_get(
    name: Annotated[str, typer.Argument(help="Secret name or ARN.")],
    region: RegionOption = None,
    profile: ProfileOption = None,
    endpoint_url: EndpointOption = None,
    as_json: JsonOption = False,
) -> None:
    """Print a secret's value (with --json: {"name", "value"}, JSON secrets parsed)."""
    from utils.aws.parameters import Parameters

    store = Parameters(**_options(region, profile, endpoint_url))
    try:
        value = store.get_secret(name, max_age=0, force_fetch=True)
    except UtilsError as exc:
        raise _guard(exc) from None
    text = value.get_secret_value() if hasattr(value, "get_secret_value") else None
    if text is None:  # a binary secret
        raise _fail(f"secret {name!r} is binary: use the AWS console or SDK", code=1)
    if not as_json:
        typer.echo(text)
        return
    try:
        shown: Any = json.loads(text)
    except ValueError:
        shown = text
    typer.echo(json.dumps({"name": name, "value": shown}))
