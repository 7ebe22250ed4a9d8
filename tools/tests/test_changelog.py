from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tools import changelog_check as check
from tools import changelog_section as section
from tools import release as rel

CHANGELOG = """# Changelog

Intro text with a ## [9.9.9] that is not a heading.

<!-- towncrier release notes start -->

## [0.2.0](https://example.invalid/tree/utils-core-v0.2.0) - 2026-12-01

### Added

- New thing. ([#12](https://example.invalid/12))

### Fixed

- Old bug.

## [0.1.0](https://example.invalid/tree/utils-core-v0.1.0) - 2026-11-01

### Added

- First release.
"""


def test_extract_section_newest_and_older() -> None:
    newest = section.extract_section(CHANGELOG, "0.2.0")
    assert newest.startswith("### Added\n\n- New thing.")
    assert newest.endswith("- Old bug.\n")
    assert "0.1.0" not in newest
    assert section.extract_section(CHANGELOG, "0.1.0") == "### Added\n\n- First release.\n"


@pytest.mark.parametrize("version", ["0.3.0", "9.9.9", "0.2"])
def test_extract_section_missing(version: str) -> None:
    with pytest.raises(ValueError, match="no section"):
        section.extract_section(CHANGELOG, version)


def test_extract_section_empty() -> None:
    with pytest.raises(ValueError, match="empty"):
        section.extract_section("## [1.0.0](x) - d\n\n## [0.9.0](y) - d\n- a\n", "1.0.0")


def test_section_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert section.main(["utils-core"]) == 2
    assert section.main(["utils-does-not-exist", "1.0.0"]) == 1
    assert "utils-does-not-exist" in capsys.readouterr().err


TABLE = """
[[tool.towncrier.type]]
directory = "{first}"
name = "X"
showcontent = true
"""


def write_pyproject(packages: Path, dist: str, types: list[str]) -> None:
    (packages / dist).mkdir(parents=True, exist_ok=True)
    body = "".join(
        f'[[tool.towncrier.type]]\ndirectory = "{t}"\nname = "{t.title()}"\nshowcontent = true\n'
        for t in types
    )
    (packages / dist / "pyproject.toml").write_text(body, encoding="utf-8")


def test_tables_identical(tmp_path: Path) -> None:
    types = list(rel.FRAGMENT_TYPES)
    write_pyproject(tmp_path, "utils-core", types)
    write_pyproject(tmp_path, "utils-x", types)
    assert check.check_tables(["utils-core", "utils-x"], tmp_path) == []
    write_pyproject(tmp_path, "utils-x", types[::-1])  # same set, other order
    assert "differs" in check.check_tables(["utils-core", "utils-x"], tmp_path)[0]
    write_pyproject(tmp_path, "utils-x", [*types, "misc"])
    assert any("!= allowed" in e for e in check.check_tables(["utils-core", "utils-x"], tmp_path))
    write_pyproject(tmp_path, "utils-x", [])
    assert "no [[tool.towncrier.type]]" in check.check_tables(["utils-x"], tmp_path)[0]


def test_check_names(tmp_path: Path) -> None:
    for name in ("utils-core", "utils-gone"):
        (tmp_path / name).mkdir()
    (tmp_path / "utils-core" / ".gitkeep").write_text("")
    (tmp_path / "utils-core" / "1.added.md").write_text("Fine.\n")
    (tmp_path / "utils-core" / "2.misc.md").write_text("Unknown type.\n")
    (tmp_path / "utils-core" / "3.fixed.md").write_text("")
    errors = check.check_names(["utils-core"], tmp_path)
    assert len(errors) == 3
    assert "unknown fragment type 'misc'" in errors[0]
    assert "empty fragment" in errors[1]
    assert "utils-gone" in errors[2]


def test_check_against_base() -> None:
    dists = ["utils-core", "utils-x"]
    changed = {"packages/utils-core/src/utils/core/a.py", "packages/utils-x/tests/t.py"}
    assert "utils-core:" in check.check_against_base(dists, changed, set(), set())[0]
    assert check.check_against_base(dists, changed, set(), {"utils-core"}) == []
    added = {"CHANGELOG.d/utils-core/+a.fixed.md"}
    assert check.check_against_base(dists, changed, added, set()) == []
    wrong_place = {"CHANGELOG.d/utils-x/+a.fixed.md", "CHANGELOG.d/utils-core/bad.md"}
    assert len(check.check_against_base(dists, changed, wrong_place, set())) == 1


def git(cwd: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@t", *args],
        cwd=cwd,
        check=True,
        capture_output=True,
        text=True,
    ).stdout


def test_base_and_changed_paths_in_a_real_repo(tmp_path: Path) -> None:
    git(tmp_path, "init", "-q", "-b", "main")
    src = tmp_path / "packages" / "utils-x" / "src"
    src.mkdir(parents=True)
    (src / "m.py").write_text("a = 1\n")
    git(tmp_path, "add", ".")
    git(tmp_path, "commit", "-qm", "one")
    assert check.find_base(None, tmp_path)[0] is None  # no origin/main: names only
    git(tmp_path, "update-ref", "refs/remotes/origin/main", "HEAD")
    base, how = check.find_base(None, tmp_path)
    assert base is not None
    assert "origin/main" in how
    (src / "m.py").write_text("a = 2\n")
    frag = tmp_path / "CHANGELOG.d" / "utils-x"
    frag.mkdir(parents=True)
    (frag / "+a.fixed.md").write_text("Fixed.\n")
    changed, added = check.changed_paths(base, tmp_path)
    assert "packages/utils-x/src/m.py" in changed
    assert added == {"CHANGELOG.d/utils-x/+a.fixed.md"}
    with pytest.raises(SystemExit, match="merge base"):
        check.find_base("no-such-ref", tmp_path)
