"""utils is a PEP 420 namespace; a regular `utils` module shadows it (README troubleshooting)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

import utils
import utils.core

README = Path(__file__).resolve().parents[3] / "README.md"


def test_utils_is_a_namespace_package() -> None:
    assert not hasattr(utils, "__file__") or utils.__file__ is None
    assert type(utils.__path__).__name__ == "_NamespacePath"


def _import_from(directory: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", "import utils.core"],
        cwd=directory,
        capture_output=True,
        text=True,
        check=False,
    )


@pytest.mark.parametrize(
    ("layout", "expected"),
    [
        ("module", "ModuleNotFoundError: No module named 'utils.core'; 'utils' is not a package"),
        ("package", "ModuleNotFoundError: No module named 'utils.core'"),
    ],
)
def test_shadowing_gives_the_documented_error(tmp_path: Path, layout: str, expected: str) -> None:
    if layout == "module":
        (tmp_path / "utils.py").write_text("HELPERS = 1\n")
    else:
        (tmp_path / "utils").mkdir()
        (tmp_path / "utils" / "__init__.py").write_text("HELPERS = 1\n")
    result = _import_from(tmp_path)
    assert result.returncode == 1
    last_line = result.stderr.strip().splitlines()[-1]
    assert last_line == expected
    if README.exists():  # the source checkout documents the exact message
        assert expected in README.read_text()


def test_a_plain_directory_does_not_shadow(tmp_path: Path) -> None:
    (tmp_path / "utils").mkdir()  # no __init__.py: merges into the namespace
    assert _import_from(tmp_path).returncode == 0
