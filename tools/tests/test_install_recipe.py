from __future__ import annotations

import hashlib
from pathlib import Path

from tools import install_recipe as simple_index


def test_normalize() -> None:
    assert simple_index.normalize("Utils_Core") == "utils-core"
    assert simple_index.normalize("a.b--c") == "a-b-c"


def test_write_simple_index(tmp_path: Path) -> None:
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    wheel = wheels / "utils_core-0.1.0-py3-none-any.whl"
    wheel.write_bytes(b"not really a wheel")
    (wheels / "utils_cache-0.1.0-py3-none-any.whl").write_bytes(b"x")
    out = tmp_path / "simple"
    assert simple_index.write_simple_index(wheels, out) == {
        "utils-cache": ["utils_cache-0.1.0-py3-none-any.whl"],
        "utils-core": ["utils_core-0.1.0-py3-none-any.whl"],
    }
    root = (out / "index.html").read_text()
    assert '<a href="utils-cache/">' in root
    assert '<a href="utils-core/">' in root
    page = (out / "utils-core" / "index.html").read_text()
    digest = hashlib.sha256(b"not really a wheel").hexdigest()
    assert f'href="../../wheels/utils_core-0.1.0-py3-none-any.whl#sha256={digest}"' in page


def test_recipe_project_and_locked_core(tmp_path: Path) -> None:
    project = simple_index.recipe_project(tmp_path / "p", tmp_path / "simple", ["utils-core"])
    text = (project / "pyproject.toml").read_text()
    assert 'dependencies = ["utils-core"]' in text
    assert f'url = "{(tmp_path / "simple").as_uri()}"' in text
    assert "explicit = true" in text
    (project / "uv.lock").write_text(
        '[[package]]\nname = "utils-core"\nversion = "0.1.0"\nsource = { registry = "x" }\n'
    )
    assert simple_index.locked_core(project, "utils-core")["version"] == "0.1.0"
