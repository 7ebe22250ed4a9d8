from __future__ import annotations

from pathlib import Path

import pytest

from tools import release as rel

PYPROJECT = """
[project]
name = "{dist}"
dependencies = [{deps}]
[project.optional-dependencies]
cli = [{cli}]
"""


def make_repo(tmp_path: Path, dists: dict[str, tuple[str, str, str]]) -> tuple[Path, Path]:
    """dists: name -> (version, dependencies toml list body, cli extra list body)."""
    packages, changelog = tmp_path / "packages", tmp_path / "CHANGELOG.d"
    for dist, (version, deps, cli) in dists.items():
        init = rel.init_file(dist, packages)
        init.parent.mkdir(parents=True)
        init.write_text(f'"""Doc."""\n\n__version__ = "{version}"\n', encoding="utf-8")
        (packages / dist / "pyproject.toml").write_text(
            PYPROJECT.format(dist=dist, deps=deps, cli=cli), encoding="utf-8"
        )
        (changelog / dist).mkdir(parents=True)
    return packages, changelog


def add_fragment(changelog: Path, dist: str, name: str, text: str = "Something.") -> None:
    (changelog / dist / name).write_text(text + "\n", encoding="utf-8")


@pytest.mark.parametrize(
    ("version", "part", "expected"),
    [
        ("0.1.0", "patch", "0.1.1"),
        ("0.1.3", "minor", "0.2.0"),
        ("0.9.9", "major", "1.0.0"),
        ("1.2.3", "major", "2.0.0"),
    ],
)
def test_bump(version: str, part: str, expected: str) -> None:
    assert rel.bump(version, part) == expected


@pytest.mark.parametrize("bad", ["1.0", "v1.0.0", "01.0.0", "1.0.0rc1"])
def test_bump_rejects_non_semver(bad: str) -> None:
    with pytest.raises(ValueError, match=r"MAJOR\.MINOR\.PATCH"):
        rel.bump(bad, "patch")


def test_bump_level() -> None:
    assert rel.bump_level("1.2.3", "1.2.4") == "patch"
    assert rel.bump_level("1.2.3", "1.3.0") == "minor"
    assert rel.bump_level("1.2.3", "2.0.0") == "major"
    with pytest.raises(ValueError, match="not above"):
        rel.bump_level("1.2.3", "1.2.3")


@pytest.mark.parametrize(
    ("name", "ok"),
    [
        ("412.fixed.md", True),
        ("412.fixed.1.md", True),
        ("+redis-timeouts.added.md", True),
        (".gitkeep", True),
        ("412.feature.md", False),  # unknown type
        ("+Redis.added.md", False),  # uppercase slug
        ("redis.added.md", False),  # slug without +
        ("+a--b.added.md", False),
        ("412.fixed.txt", False),
        ("412.fixed", False),
        ("0.fixed.md", False),
    ],
)
def test_fragment_names(name: str, ok: bool) -> None:
    assert (rel.check_fragment_name(name) is None) is ok


def test_breaking_marker() -> None:
    assert rel.is_breaking("removed", "Anything.")
    assert rel.is_breaking("changed", "  **Breaking:** `x` now raises.")
    assert not rel.is_breaking("changed", "`x` is faster. **Breaking:** not at the start")
    assert not rel.is_breaking("added", "**Breaking:** ignored outside changed")


def test_implied_bump(tmp_path: Path) -> None:
    _, changelog = make_repo(tmp_path, {"utils-core": ("1.0.0", "", "")})

    def implied(version: str = "1.0.0") -> str | None:
        return rel.implied_bump(version, rel.fragments("utils-core", changelog))

    assert implied() is None
    add_fragment(changelog, "utils-core", "1.fixed.md")
    add_fragment(changelog, "utils-core", "2.changed.md", "Faster.")
    add_fragment(changelog, "utils-core", "+x.security.md")
    assert implied() == "patch"
    add_fragment(changelog, "utils-core", "3.deprecated.md")
    assert implied() == "minor"
    add_fragment(changelog, "utils-core", "4.changed.md", "**Breaking:** `f` returns a tuple.")
    assert implied() == "major"
    assert implied("0.4.2") == "minor"  # 0.x: breaking bumps the minor


def test_removed_is_major_and_bad_names_are_ignored(tmp_path: Path) -> None:
    _, changelog = make_repo(tmp_path, {"utils-core": ("2.1.0", "", "")})
    add_fragment(changelog, "utils-core", "7.removed.md")
    add_fragment(changelog, "utils-core", "8.feature.md")  # unknown: changelog_check's job
    frags = rel.fragments("utils-core", changelog)
    assert [f.type for f in frags] == ["removed"]
    assert rel.implied_bump("2.1.0", frags) == "major"


@pytest.mark.parametrize(
    ("deps", "cli", "floor"),
    [
        ('"utils-core>=0.1.0", "redis>=5"', '"utils-core[cli]>=0.1.0"', "0.1.0"),
        ('"utils-core>=0.2.1,<0.3"', "", "0.2.1"),
        ('"redis>=5"', "", None),
        ('"utils-core>=0.1"', '"utils-core[cli]>=0.1.0"', "0.1.0"),
    ],
)
def test_core_floor(tmp_path: Path, deps: str, cli: str, floor: str | None) -> None:
    packages, _ = make_repo(tmp_path, {"utils-x": ("0.1.0", deps, cli)})
    assert rel.core_floor(rel.load_pyproject("utils-x", packages)) == floor


@pytest.mark.parametrize(
    ("deps", "cli", "message"),
    [
        ('"utils-core"', "", "lower bound"),
        ('"utils-core>=0.1.0"', '"utils-core[cli]>=0.2.0"', "different floors"),
    ],
)
def test_core_floor_errors(tmp_path: Path, deps: str, cli: str, message: str) -> None:
    packages, _ = make_repo(tmp_path, {"utils-x": ("0.1.0", deps, cli)})
    with pytest.raises(ValueError, match=message):
        rel.core_floor(rel.load_pyproject("utils-x", packages))


def test_released_versions_sorts_and_filters() -> None:
    tags = ["utils-core-v0.10.0", "utils-core-v0.9.1", "utils-cache-v1.0.0", "utils-core-vx"]
    assert rel.released_versions("utils-core", tags) == ["0.9.1", "0.10.0"]
    assert rel.released_versions("utils-db", tags) == []


def frags_of(*kinds: tuple[str, bool]) -> list[rel.Fragment]:
    return [rel.Fragment(Path(f"{i}.{t}.md"), str(i), t, b) for i, (t, b) in enumerate(kinds, 1)]


def test_resolve_target_refuses_too_small_a_bump() -> None:
    frags = frags_of(("added", False))
    new, errors = rel.resolve_target("utils-core", "1.2.0", "patch", frags, ["1.2.0"])
    assert new == "1.2.1"
    assert "smaller than the fragments imply: minor" in errors[0]
    assert rel.resolve_target("utils-core", "1.2.0", "minor", frags, ["1.2.0"]) == ("1.3.0", [])
    assert rel.resolve_target("utils-core", "1.2.0", "2.0.0", frags, ["1.2.0"]) == ("2.0.0", [])
    _, errors = rel.resolve_target("utils-core", "1.2.0", "1.2.5", frags, ["1.2.0"])
    assert "smaller" in errors[0]


def test_resolve_target_breaking_in_0x_needs_minor_only() -> None:
    frags = frags_of(("changed", True))
    assert rel.resolve_target("utils-x", "0.3.1", "minor", frags, ["0.3.1"]) == ("0.4.0", [])
    _, errors = rel.resolve_target("utils-x", "0.3.1", "patch", frags, ["0.3.1"])
    assert errors


def test_resolve_target_first_release_at_current_version() -> None:
    frags = frags_of(("added", False))
    assert rel.resolve_target("utils-x", "0.1.0", "0.1.0", frags, []) == ("0.1.0", [])
    _, errors = rel.resolve_target("utils-x", "0.1.0", "0.1.0", frags, ["0.1.0"])
    assert "already released" in errors[0]


def test_resolve_target_other_refusals() -> None:
    _, errors = rel.resolve_target("utils-x", "0.1.0", "minor", [], ["0.1.0"])
    assert "no changelog fragments" in errors[0]
    _, errors = rel.resolve_target("utils-x", "0.2.0", "0.1.5", frags_of(("fixed", False)), [])
    assert "not above" in errors[0]
    _, errors = rel.resolve_target("utils-x", "0.2.0", "huge", frags_of(("fixed", False)), [])
    assert "neither" in errors[0]


def test_floor_errors() -> None:
    assert rel.floor_errors("utils-core", "0.1.0", []) == []
    assert rel.floor_errors("utils-x", None, []) == []
    assert rel.floor_errors("utils-x", "0.1.0", ["0.1.0"]) == []
    assert "release utils-core 0.1.0 first" in rel.floor_errors("utils-x", "0.1.0", [])[0]


def test_plan(tmp_path: Path) -> None:
    packages, changelog = make_repo(
        tmp_path,
        {
            "utils-core": ("0.2.0", '"structlog>=24.1"', ""),
            "utils-x": ("0.1.0", '"utils-core>=0.2.0"', ""),
            "utils-y": ("1.0.0", '"utils-core>=0.1.0"', ""),
        },
    )
    add_fragment(changelog, "utils-core", "1.removed.md")
    add_fragment(changelog, "utils-y", "2.fixed.md")
    tags = ["utils-core-v0.1.0", "utils-core-v0.2.0", "utils-y-v1.0.0"]
    rows = {r.dist: r for r in rel.plan(tags, packages, changelog)}
    core, x, y = rows["utils-core"], rows["utils-x"], rows["utils-y"]
    assert (core.last_tag, core.implied, core.next_version) == (
        "utils-core-v0.2.0",
        "minor",
        "0.3.0",
    )
    assert core.breaking == 1
    assert (x.last_tag, x.implied, x.core_floor) == (None, None, "0.2.0")
    assert x.floor_status.startswith("ok")
    assert (y.implied, y.next_version, y.core_released) == ("patch", "1.0.1", "0.2.0")
    table = rel.plan_table(list(rows.values()))
    assert "never released" in table
    assert table.count("\n") == 4
    assert '"dist": "utils-x"' in rel.plan_json(list(rows.values()))


def test_plan_floor_status_blocked_and_broken() -> None:
    assert rel.floor_status("utils-x", "0.1.0", "0.1.0", []).startswith("blocked")
    assert rel.floor_status("utils-x", "0.0.9", "0.1.0", []).startswith("broken")


def test_normalize_floor() -> None:
    assert rel.normalize_floor("1") == "1.0.0"
    assert rel.normalize_floor("0.1") == "0.1.0"
    assert rel.normalize_floor("0.1.2") == "0.1.2"
    assert rel.normalize_floor("1.0.0rc1") == "1.0.0rc1"
