"""Release planning: versions, tags, changelog fragments, implied bumps and utils-core floors.

Pure functions (no nox, no network) so they can be unit-tested in ``tools/tests/`` and used
by the noxfile, pre-commit and the release workflow alike. The only side effects are
read-only ``git`` calls in :func:`git_tags`.

Bump rules (documented for contributors in docs/release.md):

* a ``removed`` fragment, or a ``changed`` fragment whose text starts with
  ``**Breaking:**``, is *breaking* and implies ``major``;
* ``added`` or ``deprecated`` implies ``minor``;
* anything else (``fixed``, ``security``, a non-breaking ``changed``) implies ``patch``.

While a distribution is at ``0.x`` (semver: anything may change), the implied bump is
shifted down one level for breaking changes only: breaking → ``minor`` (0.3.1 → 0.4.0);
``added``/``deprecated`` → ``minor``; the rest → ``patch``. ``1.0.0`` is never implied: it is
made by asking for ``major`` (or ``1.0.0``) explicitly.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - nox itself depends on tomli below 3.11
    import tomli as tomllib

ROOT = Path(__file__).resolve().parent.parent
PACKAGES_DIR = ROOT / "packages"
CHANGELOG_DIR = ROOT / "CHANGELOG.d"
CORE = "utils-core"

# Keep a Changelog types, in the order towncrier renders them.
FRAGMENT_TYPES = ("security", "removed", "deprecated", "added", "changed", "fixed")
BREAKING_MARKER = "**Breaking:**"
# `<issue number or +slug>.<type>[.<counter>].md`, e.g. `412.fixed.md`, `+redis.added.1.md`.
FRAGMENT_RE = re.compile(
    r"^(?P<ref>[1-9][0-9]*|\+[a-z0-9]+(?:-[a-z0-9]+)*)"
    r"\.(?P<type>[a-z]+)(?:\.(?P<counter>[0-9]+))?\.md$"
)
# Files allowed in a fragment folder that are not fragments.
NOT_FRAGMENTS = frozenset({".gitkeep", ".gitignore"})
VERSION_RE = re.compile(r"""^__version__\s*=\s*["'](?P<version>[^"']+)["']""", re.MULTILINE)
SEMVER_RE = re.compile(r"^(?P<major>0|[1-9]\d*)\.(?P<minor>0|[1-9]\d*)\.(?P<patch>0|[1-9]\d*)$")
PARTS = ("patch", "minor", "major")  # in increasing order
CORE_REQ_RE = re.compile(r"^utils-core(?:\[[^\]]*\])?\s*(?P<spec>[^;]*)")
FLOOR_RE = re.compile(r">=\s*(?P<floor>[0-9][0-9.]*)")


# --------------------------------------------------------------------------- versions


def parse_version(version: str) -> tuple[int, int, int]:
    match = SEMVER_RE.match(version)
    if match is None:
        raise ValueError(f"{version!r} is not MAJOR.MINOR.PATCH")
    return int(match["major"]), int(match["minor"]), int(match["patch"])


def bump(version: str, part: str) -> str:
    """``bump("0.1.3", "minor") == "0.2.0"``."""
    major, minor, patch = parse_version(version)
    if part == "major":
        return f"{major + 1}.0.0"
    if part == "minor":
        return f"{major}.{minor + 1}.0"
    if part == "patch":
        return f"{major}.{minor}.{patch + 1}"
    raise ValueError(f"unknown part {part!r}; expected one of {', '.join(PARTS)}")


def bump_level(old: str, new: str) -> str:
    """The part that changed from ``old`` to ``new``; ValueError unless ``new > old``."""
    o, n = parse_version(old), parse_version(new)
    if n <= o:
        raise ValueError(f"{new} is not above {old}")
    if n[0] > o[0]:
        return "major"
    if n[1] > o[1]:
        return "minor"
    return "patch"


def level_index(part: str) -> int:
    return PARTS.index(part)


# --------------------------------------------------------------------------- fragments


@dataclass(frozen=True)
class Fragment:
    path: Path
    ref: str
    type: str
    breaking: bool

    @property
    def implies(self) -> str:
        if self.breaking:
            return "major"
        if self.type in ("added", "deprecated"):
            return "minor"
        return "patch"


def is_breaking(fragment_type: str, text: str) -> bool:
    """``removed`` always breaks; ``changed`` breaks when its text starts with the marker."""
    if fragment_type == "removed":
        return True
    return fragment_type == "changed" and text.lstrip().startswith(BREAKING_MARKER)


def check_fragment_name(name: str, types: tuple[str, ...] = FRAGMENT_TYPES) -> str | None:
    """None when ``name`` is a well-formed fragment file name, else what is wrong with it."""
    if name in NOT_FRAGMENTS:
        return None
    match = FRAGMENT_RE.match(name)
    if match is None:
        return (
            f"{name}: not <issue number or +slug>.<type>[.<n>].md "
            "(slug: lowercase letters, digits and single dashes)"
        )
    if match["type"] not in types:
        return f"{name}: unknown fragment type {match['type']!r}; use one of {', '.join(types)}"
    return None


def fragments(dist: str, changelog_dir: Path = CHANGELOG_DIR) -> list[Fragment]:
    """The well-formed fragments waiting in ``CHANGELOG.d/<dist>/`` (others are ignored here;
    ``changelog_check`` reports them)."""
    folder = changelog_dir / dist
    found = []
    for path in sorted(folder.glob("*")) if folder.is_dir() else []:
        match = FRAGMENT_RE.match(path.name)
        if not path.is_file() or match is None or match["type"] not in FRAGMENT_TYPES:
            continue
        text = path.read_text(encoding="utf-8")
        found.append(Fragment(path, match["ref"], match["type"], is_breaking(match["type"], text)))
    return found


def implied_bump(version: str, frags: list[Fragment]) -> str | None:
    """The smallest bump the fragments allow (see the module docstring); None if none."""
    if not frags:
        return None
    part = max((f.implies for f in frags), key=level_index)
    if parse_version(version)[0] == 0 and part == "major":
        return "minor"  # 0.x: breaking changes bump the minor
    return part


# --------------------------------------------------------------------------- packages


def discover_packages(packages_dir: Path = PACKAGES_DIR) -> list[str]:
    return sorted(p.parent.name for p in packages_dir.glob("*/pyproject.toml"))


def short_name(dist: str) -> str:
    return dist.removeprefix("utils-").replace("-", "_")


def init_file(dist: str, packages_dir: Path = PACKAGES_DIR) -> Path:
    return packages_dir / dist / "src" / "utils" / short_name(dist) / "__init__.py"


def read_version_text(text: str) -> str:
    match = VERSION_RE.search(text)
    if match is None:
        raise ValueError("no __version__ line")
    return match["version"]


def read_version(dist: str, packages_dir: Path = PACKAGES_DIR) -> str:
    return read_version_text(init_file(dist, packages_dir).read_text(encoding="utf-8"))


def load_pyproject(dist: str, packages_dir: Path = PACKAGES_DIR) -> dict[str, Any]:
    with (packages_dir / dist / "pyproject.toml").open("rb") as f:
        data: dict[str, Any] = tomllib.load(f)
    return data


def requirements(project: dict[str, Any]) -> list[str]:
    """Runtime requirements plus those of every extra, as written."""
    reqs = list(project.get("dependencies", []))
    for extra in project.get("optional-dependencies", {}).values():
        reqs += extra
    return reqs


def core_floor(pyproject: dict[str, Any]) -> str | None:
    """The X of ``utils-core>=X`` in ``[project] dependencies`` (None: no such requirement).

    ValueError when utils-core is required without a lower bound, or when an extra asks for
    a different floor than the main requirement (the matrix could not prove both).
    """
    project = pyproject.get("project", {})
    floors = set()
    main = None
    for req in requirements(project):
        match = CORE_REQ_RE.match(req.strip())
        if match is None:
            continue
        floor = FLOOR_RE.search(match["spec"])
        if floor is None:
            raise ValueError(f"{req!r}: utils-core needs a lower bound (>=X.Y.Z)")
        value = normalize_floor(floor["floor"])
        floors.add(value)
        if req in project.get("dependencies", []):
            main = value
    if len(floors) > 1:
        raise ValueError(f"utils-core is required with different floors: {sorted(floors)}")
    return main or (floors.pop() if floors else None)


def normalize_floor(floor: str) -> str:
    """``0.1`` -> ``0.1.0``: the form tags and ``__version__`` use (PEP 440 equal)."""
    parts = floor.rstrip(".").split(".")
    if len(parts) < 3 and all(p.isdigit() for p in parts):
        parts += ["0"] * (3 - len(parts))
    return ".".join(parts)


# --------------------------------------------------------------------------- git


def git_tags(pattern: str, cwd: Path = ROOT) -> list[str]:
    out = subprocess.run(
        ["git", "tag", "--list", pattern], cwd=cwd, capture_output=True, text=True, check=True
    ).stdout
    return out.split()


def released_versions(dist: str, tags: list[str]) -> list[str]:
    """Versions of ``dist`` that have a ``<dist>-vX.Y.Z`` tag, oldest first."""
    prefix = f"{dist}-v"
    versions = [t.removeprefix(prefix) for t in tags if t.startswith(prefix)]
    return sorted((v for v in versions if SEMVER_RE.match(v)), key=parse_version)


# --------------------------------------------------------------------------- the plan


@dataclass
class PlanRow:
    dist: str
    version: str
    last_tag: str | None
    fragments: dict[str, int] = field(default_factory=dict)
    breaking: int = 0
    implied: str | None = None
    next_version: str | None = None
    core_floor: str | None = None
    core_released: str | None = None
    floor_status: str = ""
    problems: list[str] = field(default_factory=list)


def floor_status(dist: str, floor: str | None, core_version: str, core_tags: list[str]) -> str:
    if dist == CORE:
        return "n/a (is utils-core)"
    if floor is None:
        return "no utils-core requirement"
    if floor in core_tags:
        return "ok: floor released"
    if floor == core_version:
        return "blocked: floor is the unreleased working tree; release utils-core first"
    return f"broken: utils-core {floor} was never released nor is the working tree"


def plan_row(
    dist: str,
    tags: list[str],
    packages_dir: Path = PACKAGES_DIR,
    changelog_dir: Path = CHANGELOG_DIR,
) -> PlanRow:
    try:
        version = read_version(dist, packages_dir)
    except (OSError, ValueError) as exc:  # a package being created: show it, do not crash
        problem = (
            f"no version: {type(exc).__name__} reading src/utils/{short_name(dist)}/__init__.py"
        )
        return PlanRow(dist, "?", None, floor_status="?", problems=[problem])
    released = released_versions(dist, tags)
    frags = fragments(dist, changelog_dir)
    counts: dict[str, int] = {}
    for frag in frags:
        counts[frag.type] = counts.get(frag.type, 0) + 1
    row = PlanRow(
        dist=dist,
        version=version,
        last_tag=f"{dist}-v{released[-1]}" if released else None,
        fragments={t: counts[t] for t in FRAGMENT_TYPES if t in counts},
        breaking=sum(f.breaking for f in frags),
    )
    row.implied = implied_bump(version, frags)
    if row.implied is not None:
        row.next_version = version if not released else bump(version, row.implied)
    core_tags = released_versions(CORE, tags)
    try:
        row.core_floor = core_floor(load_pyproject(dist, packages_dir))
    except ValueError as exc:
        row.problems.append(str(exc))
    row.core_released = core_tags[-1] if core_tags else None
    row.floor_status = floor_status(
        dist, row.core_floor, read_version(CORE, packages_dir), core_tags
    )
    if released and parse_version(released[-1]) > parse_version(version):
        row.problems.append(f"version {version} is below the last tag {row.last_tag}")
    return row


def plan(
    tags: list[str] | None = None,
    packages_dir: Path = PACKAGES_DIR,
    changelog_dir: Path = CHANGELOG_DIR,
) -> list[PlanRow]:
    tags = git_tags("utils-*-v*") if tags is None else tags
    return [
        plan_row(d, tags, packages_dir, changelog_dir) for d in discover_packages(packages_dir)
    ]


def plan_json(rows: list[PlanRow]) -> str:
    return json.dumps([asdict(r) for r in rows], indent=2)


def plan_table(rows: list[PlanRow]) -> str:
    """A Markdown table (readable in a terminal too)."""
    head = (
        "| distribution | version | last tag | unreleased fragments | implied bump | next "
        "| utils-core floor | released utils-core | floor status |"
    )
    lines = [head, "|" + "---|" * 9]
    for r in rows:
        frags = ", ".join(f"{n} {t}" for t, n in r.fragments.items()) or "none"
        if r.breaking:
            frags += f" ({r.breaking} breaking)"
        next_version = r.next_version or "-"
        if r.next_version and r.last_tag is None:
            next_version += " (first release)"
        cells = [
            r.dist,
            r.version,
            r.last_tag or "never released",
            frags,
            r.implied or "nothing to release",
            next_version,
            r.core_floor or "-",
            r.core_released or "never released",
            r.floor_status + "".join(f"; PROBLEM: {p}" for p in r.problems),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


# --------------------------------------------------------------------------- release checks


def resolve_target(
    dist: str, version: str, request: str, frags: list[Fragment], released: list[str]
) -> tuple[str, list[str]]:
    """The version ``request`` (a part or X.Y.Z) leads to, and every reason to refuse it.

    A first release (no tag of ``dist`` yet) may be made at the current version itself by
    naming it (``release -- utils-core 0.1.0``); the bump check does not apply to it.
    """
    errors: list[str] = []
    if not frags:
        errors.append(f"no changelog fragments in CHANGELOG.d/{dist}/; nothing to release")
    if request in PARTS:
        new = bump(version, request)
    elif SEMVER_RE.match(request):
        new = request
    else:
        return version, [f"{request!r} is neither major/minor/patch nor X.Y.Z"]
    if new in released:
        errors.append(f"{dist} {new} is already released (tag {dist}-v{new})")
        return new, errors
    first_release_as_is = not released and new == version
    if first_release_as_is:
        return new, errors
    try:
        level = bump_level(version, new)
    except ValueError as exc:
        return new, [*errors, str(exc)]
    needed = implied_bump(version, frags)
    if needed is not None and level_index(level) < level_index(needed):
        kinds = sorted({f.type + (" (breaking)" if f.breaking else "") for f in frags})
        errors.append(
            f"a {level} bump ({version} -> {new}) is smaller than the fragments imply: "
            f"{needed} (fragments: {', '.join(kinds)})"
        )
    return new, errors


def floor_errors(dist: str, floor: str | None, core_tags: list[str]) -> list[str]:
    """Refuse to release a package whose utils-core floor is not itself released."""
    if dist == CORE or floor is None or floor in core_tags:
        return []
    return [
        f"{dist} requires utils-core>={floor}, which is not released (no tag utils-core-v{floor}); "
        f"release utils-core {floor} first"
    ]


def commit_message(dist: str, version: str) -> str:
    return f"{dist} v{version}"


def tag_name(dist: str, version: str) -> str:
    return f"{dist}-v{version}"
