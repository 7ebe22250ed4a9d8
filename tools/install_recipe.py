"""Helpers of ``nox -s install_recipe``: an index on disk and a consumer project using it.

``write_simple_index(wheels, out)`` writes a PEP 503 "simple" index for a folder of wheels: it
creates ``out/index.html`` and
``out/<normalized-name>/index.html`` with links (and ``#sha256=`` fragments) to the wheels,
which is what a real package index serves; ``out.as_uri()`` can then be given to pip's
``--index-url`` or to a uv ``[[tool.uv.index]]``.
"""

from __future__ import annotations

import hashlib
import html
import json
import os
import re
import sys
from pathlib import Path
from typing import Any

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - nox itself depends on tomli below 3.11
    import tomli as tomllib


def normalize(name: str) -> str:
    """PEP 503 name normalization."""
    return re.sub(r"[-_.]+", "-", name).lower()


def write_simple_index(wheels: Path, out: Path) -> dict[str, list[str]]:
    """Index every ``*.whl`` in ``wheels`` under ``out``; return {project: [files]}."""
    projects: dict[str, list[Path]] = {}
    for wheel in sorted(wheels.glob("*.whl")):
        projects.setdefault(normalize(wheel.name.split("-", 1)[0]), []).append(wheel)
    out.mkdir(parents=True, exist_ok=True)
    root_links = "".join(f'<a href="{p}/">{p}</a>\n' for p in sorted(projects))
    (out / "index.html").write_text(_page("Simple index", root_links), encoding="utf-8")
    for project, files in projects.items():
        folder = out / project
        folder.mkdir(exist_ok=True)
        links = ""
        for wheel in files:
            digest = hashlib.sha256(wheel.read_bytes()).hexdigest()
            href = Path(os.path.relpath(wheel, folder)).as_posix()
            links += (
                f'<a href="{html.escape(href)}#sha256={digest}">{html.escape(wheel.name)}</a>\n'
            )
        (folder / "index.html").write_text(_page(f"Links for {project}", links), encoding="utf-8")
    return {p: [w.name for w in files] for p, files in projects.items()}


def _page(title: str, body: str) -> str:
    return (
        '<!DOCTYPE html>\n<html><head><meta name="pypi:repository-version" content="1.0">'
        f"<title>{title}</title></head><body>\n{body}</body></html>\n"
    )


RECIPE_PYPROJECT = """\
[project]
name = "recipe-consumer"
version = "0"
requires-python = ">=3.10"
dependencies = {dependencies}

# The documented recipe (SECURITY.md): every family member comes from the family's index
# and only from there; everything else from the default index. uv applies sources to direct
# dependencies only, so utils-core must be a direct dependency too.
[tool.uv.sources]
utils-core = {{ index = "utils" }}
utils-cache = {{ index = "utils" }}

[[tool.uv.index]]
name = "utils"
url = "{url}"
explicit = true
"""

RECIPE_CHECK = """
import importlib.metadata, sys, utils, utils.cache, utils.core
expected = sys.argv[1]
found = importlib.metadata.version("utils-core")
assert found == expected, f"utils-core {found} installed, expected ours ({expected})"
assert getattr(utils, "__file__", None) is None, f"utils is not a namespace: {utils.__file__}"
print(f"recipe ok: utils-core {found}, utils-cache {utils.cache.__version__}, family index only")
"""


def recipe_project(folder: Path, index: Path, dependencies: list[str]) -> Path:
    """A consumer project using the documented uv recipe with ``index`` as the family's."""
    folder.mkdir(parents=True)
    text = RECIPE_PYPROJECT.format(dependencies=json.dumps(dependencies), url=index.as_uri())
    (folder / "pyproject.toml").write_text(text, encoding="utf-8")
    return folder


def locked_core(project: Path, name: str) -> dict[str, Any]:
    """The ``[[package]]`` entry of ``name`` in the project's uv.lock."""
    lock = tomllib.loads((project / "uv.lock").read_text(encoding="utf-8"))
    entry: dict[str, Any] = next(p for p in lock["package"] if p["name"] == name)
    return entry
