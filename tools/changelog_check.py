"""The changelog gate: ``nox -s changelog_check`` (also a pre-commit hook and a CI job).

Always (no git history needed):

* every file in ``CHANGELOG.d/<dist>/`` is a well-formed fragment of a known type;
* every ``CHANGELOG.d/<folder>/`` belongs to a distribution in ``packages/``;
* every package's ``[[tool.towncrier.type]]`` table is identical (same types, names, order,
  ``showcontent``) and matches the allowed fragment types.

Against a base commit, when one is found:

* every distribution whose ``packages/<dist>/src/`` changed since the base has at least one
  fragment in ``CHANGELOG.d/<dist>/`` that is new since the base.

The base is, in order: ``--base REF``; ``$CHANGELOG_BASE``; the merge base of HEAD with
``origin/main`` when that ref exists. Without one (a fresh repository, a checkout without
remotes) only the first set of checks runs and the output says so: comparing with
``HEAD~1`` instead would fail spuriously on commits that change code without a
user-visible change. Changes in the work tree (staged, unstaged and untracked) count, so the
check works before committing. A change that needs no entry is waived with ``--skip <dist>``
(CI: the pull-request label ``no changelog``).

Standard library only: run it as ``python -m tools.changelog_check [--base REF]``.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from tools.release import (
    CHANGELOG_DIR,
    FRAGMENT_TYPES,
    PACKAGES_DIR,
    ROOT,
    check_fragment_name,
    discover_packages,
    load_pyproject,
)


def git(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, check=False)


def find_base(explicit: str | None = None, cwd: Path = ROOT) -> tuple[str | None, str]:
    """(commit, how it was found) or (None, why there is none)."""
    ref = explicit or os.environ.get("CHANGELOG_BASE") or None
    if ref:
        out = git("merge-base", "HEAD", ref, cwd=cwd)
        if out.returncode != 0:
            raise SystemExit(f"changelog_check: cannot find a merge base with {ref!r}")
        return out.stdout.strip(), f"merge base with {ref}"
    if git("rev-parse", "--verify", "--quiet", "origin/main", cwd=cwd).returncode == 0:
        out = git("merge-base", "HEAD", "origin/main", cwd=cwd)
        if out.returncode == 0:
            return out.stdout.strip(), "merge base with origin/main"
        return None, "HEAD shares no history with origin/main"
    return None, "no origin/main ref and no --base/CHANGELOG_BASE given"


def changed_paths(base: str, cwd: Path = ROOT) -> tuple[set[str], set[str]]:
    """(paths changed since ``base`` incl. the work tree, paths added since ``base``)."""
    diff = git("diff", "--name-status", "--no-renames", base, cwd=cwd)
    if diff.returncode != 0:
        raise SystemExit(f"changelog_check: git diff failed: {diff.stderr.strip()}")
    changed, added = set(), set()
    for line in diff.stdout.splitlines():
        status, _, path = line.partition("\t")
        changed.add(path)
        if status.startswith("A"):
            added.add(path)
    untracked = git("ls-files", "--others", "--exclude-standard", cwd=cwd).stdout.split()
    return changed | set(untracked), added | set(untracked)


def check_names(dists: list[str], changelog_dir: Path = CHANGELOG_DIR) -> list[str]:
    errors = []
    for folder in sorted(p for p in changelog_dir.iterdir() if p.is_dir()):
        if folder.name not in dists:
            errors.append(f"CHANGELOG.d/{folder.name}/: no packages/{folder.name}/pyproject.toml")
        for path in sorted(folder.iterdir()):
            problem = check_fragment_name(path.name)
            empty = path.is_file() and path.name.endswith(".md") and not path.stat().st_size
            if problem is None and empty:
                problem = f"{path.name}: empty fragment"
            if problem:
                errors.append(f"CHANGELOG.d/{folder.name}/{problem}")
    return errors


def type_table(pyproject: dict[str, Any]) -> list[tuple[str, str, bool]]:
    types = pyproject.get("tool", {}).get("towncrier", {}).get("type", [])
    return [(t.get("directory", ""), t.get("name", ""), bool(t.get("showcontent"))) for t in types]


def check_tables(dists: list[str], packages_dir: Path = PACKAGES_DIR) -> list[str]:
    """Every package's towncrier type table is identical and lists exactly FRAGMENT_TYPES."""
    errors = []
    tables = {d: type_table(load_pyproject(d, packages_dir)) for d in dists}
    for dist, table in tables.items():
        if not table:
            errors.append(f"{dist}: no [[tool.towncrier.type]] entries")
        elif sorted(t[0] for t in table) != sorted(FRAGMENT_TYPES):
            errors.append(
                f"{dist}: towncrier types {[t[0] for t in table]} != allowed {list(FRAGMENT_TYPES)}"
            )
    reference = tables.get("utils-core") or next(iter(tables.values()), [])
    errors += [
        f"{dist}: [[tool.towncrier.type]] table differs from utils-core's"
        for dist, table in tables.items()
        if table and table != reference
    ]
    return errors


def check_against_base(
    dists: list[str], changed: set[str], added: set[str], skip: set[str]
) -> list[str]:
    errors = []
    for dist in dists:
        if dist in skip:
            continue
        if not any(p.startswith(f"packages/{dist}/src/") for p in changed):
            continue
        new = [
            p
            for p in added
            if p.startswith(f"CHANGELOG.d/{dist}/")
            and check_fragment_name(p.rsplit("/", 1)[1]) is None
            and p.endswith(".md")
        ]
        if not new:
            errors.append(
                f"{dist}: packages/{dist}/src/ changed but CHANGELOG.d/{dist}/ has no new "
                "fragment (see CHANGELOG.d/README.md; waive with --skip "
                f"{dist} / the 'no changelog' PR label if users cannot notice the change)"
            )
    return errors


def run(base_ref: str | None = None, skip: set[str] | frozenset[str] = frozenset()) -> int:
    dists = discover_packages()
    errors = check_names(dists) + check_tables(dists)
    base, how = find_base(base_ref)
    if base is None:
        print(f"changelog_check: {how}: only fragment names, types and tables were checked")
    else:
        changed, added = changed_paths(base)
        errors += check_against_base(dists, changed, added, set(skip))
        touched = sorted(
            d for d in dists if any(p.startswith(f"packages/{d}/src/") for p in changed)
        )
        print(f"changelog_check: base {base[:12]} ({how}); src changed in: {touched or 'none'}")
    for error in errors:
        print(f"changelog_check: {error}", file=sys.stderr)
    if not errors:
        print(f"changelog_check: ok ({len(dists)} distributions)")
    return 1 if errors else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="changelog_check", description=__doc__.split("\n")[0])
    parser.add_argument("--base", help="compare with the merge base of HEAD and this ref")
    parser.add_argument("--skip", action="append", default=[], help="a dist needing no fragment")
    args = parser.parse_args(argv)
    return run(args.base, set(args.skip))


if __name__ == "__main__":
    sys.exit(main())
