"""The one entry point for testing, linting, type checking, docs, builds and releases.

Every distribution lives in ``packages/<dist>/`` and is discovered from its ``pyproject.toml``,
so adding a package needs no edit here. Sessions test what users install: each package is
built into a wheel (``dist/<dist>/``) and the wheel, not ``src/``, is installed and tested.

    nox -l                                  # list sessions
    nox                                     # the default set, what CI runs
    nox -s "tests(utils-core)" -- -x        # one package, extra pytest arguments
    nox -s changelog -- utils-core --draft  # preview the next changelog section
    nox -s release -- utils-core minor      # bump, changelog, commit and tag (no publishing)
"""

from __future__ import annotations

import copy
import json
import os
import re
import shutil
import sys
import zipfile
from pathlib import Path
from typing import Any

import nox
from nox.command import CommandFailed

# uv makes every session take seconds; plain virtualenv keeps nox usable without it.
nox.options.default_venv_backend = "uv|virtualenv"
# Fresh environments every run: a stale venv must never hide a missing dependency.
nox.options.reuse_existing_virtualenvs = False
nox.options.error_on_missing_interpreters = True
# What `nox` (and therefore CI) runs. bench, changelog and release are run by hand.
nox.options.sessions = ["lint", "typecheck", "tests", "docs", "build", "coinstall", "demo"]

ROOT = Path(__file__).resolve().parent
PACKAGES_DIR = ROOT / "packages"
DIST_DIR = ROOT / "dist"
SCRATCH_DIR = ROOT / ".nox" / "_scratch"
ROOT_PYPROJECT = ROOT / "pyproject.toml"
CORE = "utils-core"

DOCS_DEPS = ["sphinx", "furo", "myst-parser", "sphinx-autodoc-typehints"]
CHANGELOG_TYPES = ("added", "changed", "deprecated", "removed", "fixed", "security")
VERSION_RE = re.compile(r"""^__version__\s*=\s*["'](?P<version>[^"']+)["']""", re.MULTILINE)
SEMVER_RE = re.compile(r"^(?P<major>\d+)\.(?P<minor>\d+)\.(?P<patch>\d+)$")


# --------------------------------------------------------------------------- discovery


def discover_packages() -> list[str]:
    """Every folder under packages/ with a pyproject.toml is a distribution."""
    return sorted(p.parent.name for p in PACKAGES_DIR.glob("*/pyproject.toml"))


PACKAGES = discover_packages()


def short_name(dist: str) -> str:
    """``utils-foo-bar`` -> ``foo_bar``: the module inside the ``utils`` namespace."""
    return dist.removeprefix("utils-").replace("-", "_")


def import_name(dist: str) -> str:
    return f"utils.{short_name(dist)}"


def package_dir(dist: str) -> Path:
    return PACKAGES_DIR / dist


def init_file(dist: str) -> Path:
    """The single version source of a distribution (hatch reads it at build time)."""
    return package_dir(dist) / "src" / "utils" / short_name(dist) / "__init__.py"


def pyproject(dist: str) -> dict[str, Any]:
    return nox.project.load_toml(package_dir(dist) / "pyproject.toml")


def extras(dist: str) -> list[str]:
    return sorted(pyproject(dist).get("project", {}).get("optional-dependencies", {}))


def read_version(dist: str) -> str:
    match = VERSION_RE.search(init_file(dist).read_text(encoding="utf-8"))
    if match is None:
        raise ValueError(f"no __version__ line in {init_file(dist)}")
    return match["version"]


def require_package(session: nox.Session, dist: str) -> None:
    if dist not in PACKAGES:
        session.error(f"unknown distribution {dist!r}; known: {', '.join(PACKAGES)}")


# --------------------------------------------------------------------------- building

# Wheels and sdists built during this nox run: sessions share them instead of rebuilding.
_BUILT: dict[str, tuple[Path, Path]] = {}


def uses_uv(session: nox.Session) -> bool:
    return session.venv_backend == "uv"


def build_dist(session: nox.Session, dist: str) -> tuple[Path, Path]:
    """Build the sdist and wheel of ``dist`` into ``dist/<dist>/``; return (wheel, sdist).

    The wheel is built from the sdist (both uv and ``python -m build`` do this by
    default), which proves the sdist is complete.
    """
    if dist in _BUILT:
        return _BUILT[dist]
    out = DIST_DIR / dist
    shutil.rmtree(out, ignore_errors=True)  # never pick up an artefact from an old version
    if uses_uv(session):
        session.run("uv", "build", str(package_dir(dist)), "-o", str(out), external=True)
    else:
        session.install("build")
        session.run("python", "-m", "build", "--outdir", str(out), str(package_dir(dist)))
    wheels = sorted(out.glob("*.whl"))
    sdists = sorted(out.glob("*.tar.gz"))
    if len(wheels) != 1 or len(sdists) != 1:
        session.error(f"expected one wheel and one sdist in {out}, found {wheels + sdists}")
    _BUILT[dist] = (wheels[0], sdists[0])
    return _BUILT[dist]


def wheel_spec(session: nox.Session, dist: str, *, with_extras: bool = True) -> str:
    """``/abs/path/pkg.whl[extra1,extra2]``: the wheel plus all its declared extras."""
    wheel, _ = build_dist(session, dist)
    names = extras(dist) if with_extras else []
    return f"{wheel}[{','.join(names)}]" if names else str(wheel)


def install_wheels(session: nox.Session, dists: list[str], *extra_reqs: str) -> None:
    """Install the wheels of ``dists`` (all extras) plus the local utils-core wheel.

    utils-core is always installed from the local build: every member depends on it and the
    version being tested may not be on the index yet.
    """
    specs = [wheel_spec(session, dist) for dist in dists]
    if CORE not in dists:
        specs.append(wheel_spec(session, CORE, with_extras=False))
    session.install(*specs, *extra_reqs)


def fresh_venv(session: nox.Session, name: str) -> Path:
    """Create an empty venv under .nox/_scratch/<name>; return its python."""
    location = SCRATCH_DIR / name
    shutil.rmtree(location, ignore_errors=True)
    location.parent.mkdir(parents=True, exist_ok=True)
    if uses_uv(session):
        session.run(
            "uv", "venv", "--quiet", "--python", sys.executable, str(location), external=True
        )
    else:
        session.run(sys.executable, "-m", "venv", str(location), external=True)
    scripts = "Scripts" if sys.platform == "win32" else "bin"
    return location / scripts / "python"


def install_into(session: nox.Session, python: Path, *reqs: str) -> None:
    if uses_uv(session):
        session.run(
            "uv", "pip", "install", "--quiet", "--python", str(python), *reqs, external=True
        )
    else:
        session.run(str(python), "-m", "pip", "install", "--quiet", *reqs, external=True)


# --------------------------------------------------------------------------- checks inside venvs

# Small programs run by the venv's own python (so they see what the venv sees). They are
# written to the session's tmp folder, which keeps the logged command short.

FROM_WHEEL = """
import importlib, pathlib, sys
for name in sys.argv[1:]:
    module = importlib.import_module(name)
    where = pathlib.Path(module.__file__).resolve()
    assert where.is_relative_to(pathlib.Path(sys.prefix).resolve()), f"{name} from {where}"
    assert "site-packages" in where.parts, f"{name} imported from {where}, not the wheel"
    print(f"{name} {module.__version__} from {where.parent}")
"""

IMPORT_ALL = """
import importlib, pkgutil, sys
# Test helpers need pytest, which library users do not have (the tests sessions cover
# them); __main__ would run a CLI.
SKIP = {"testing", "_pytest_plugin", "__main__"}
for top in sys.argv[1:]:
    package = importlib.import_module(top)
    count = 1
    for info in pkgutil.walk_packages(package.__path__, top + "."):
        if SKIP.isdisjoint(info.name.split(".")):
            importlib.import_module(info.name)
            count += 1
    print(f"{top}: imported {count} modules")
import utils
assert getattr(utils, "__file__", None) is None, f"utils is not a namespace: {utils.__file__}"
"""


def tmp_dir(session: nox.Session) -> Path:
    """The session's tmp folder as an absolute path.

    Not ``session.create_tmp()``: it returns a path relative to the folder nox started in,
    which is wrong once ``session.chdir`` has moved elsewhere.
    """
    path = Path(session.virtualenv.location) / "tmp"
    path.mkdir(exist_ok=True)
    return path


def run_check(
    session: nox.Session, code: str, *args: str, python: str = "python", external: bool = False
) -> None:
    script = tmp_dir(session) / "check.py"
    script.write_text(code.lstrip(), encoding="utf-8")
    session.run(python, str(script), *args, external=external)


# --------------------------------------------------------------------------- coverage


def write_coverage_config(session: nox.Session, dist: str) -> Path:
    """Derive a per-package coverage config from the root one.

    The root config holds the shared policy (branch, exclusions, fail_under). Two settings
    must be per package: what to measure (exactly the modules this wheel ships, not every
    ``utils.*`` portion installed next to it) and the path mapping from the venv's
    site-packages back to ``packages/<dist>/src`` so reports name the source files.
    """
    cfg = copy.deepcopy(nox.project.load_toml(ROOT_PYPROJECT)["tool"]["coverage"])
    tmp = tmp_dir(session)
    run = cfg.setdefault("run", {})
    run.update(
        branch=True,
        parallel=True,
        source_pkgs=wheel_modules(build_dist(session, dist)[0]),
        data_file=str(tmp / ".coverage"),
    )
    run.pop("source", None)
    cfg["paths"] = {
        "source": [
            str(package_dir(dist) / "src" / "utils"),
            "*/site-packages/utils",
            "*\\site-packages\\utils",
        ]
    }
    cfg.setdefault("report", {}).setdefault("fail_under", 90)
    path = tmp / "coverage.toml"
    path.write_text(_to_toml({"tool": {"coverage": cfg}}), encoding="utf-8")
    return path


def wheel_modules(wheel: Path) -> list[str]:
    """The top-level ``utils.*`` packages and modules a wheel ships (e.g. ``utils.core``)."""
    with zipfile.ZipFile(wheel) as zf:
        names = zf.namelist()
    tops = {n.split("/")[1] for n in names if n.startswith("utils/") and n.count("/") >= 1}
    return sorted(f"utils.{top.removesuffix('.py')}" for top in tops if top and top != "py.typed")


def _to_toml(data: dict[str, Any], prefix: str = "") -> str:
    """Tiny TOML writer for tables of str/bool/number/list values (JSON literals are TOML)."""
    lines, tables = [], []
    for key, value in data.items():
        if isinstance(value, dict):
            tables.append(_to_toml(value, f"{prefix}{key}."))
        else:
            lines.append(f"{json.dumps(key)} = {json.dumps(value)}")
    header = [f"[{prefix.rstrip('.')}]"] if prefix and lines else []
    return "\n".join([*header, *lines, "", *tables]).lstrip("\n")


# --------------------------------------------------------------------------- sessions


@nox.session(python=None)
def lint(session: nox.Session) -> None:
    """ruff lint and format check over the whole repository."""
    session.install("ruff")
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")


@nox.session(python=None)
def typecheck(session: nox.Session) -> None:
    """mypy --strict (root config) over each package's src, tests and typing_tests."""
    test_deps = {req for dist in PACKAGES for req in test_group(dist)}
    # The wheels bring every runtime dependency (and their type hints); the code under check
    # is read from src/ through MYPYPATH, which mypy searches before site-packages.
    install_wheels(session, PACKAGES, "mypy", *sorted(test_deps))
    failed = []
    for dist in PACKAGES:
        pkg = package_dir(dist)
        targets = [pkg / "src"]
        targets += [pkg / sub for sub in ("tests", "typing_tests") if has_python(pkg / sub)]
        # src/ makes `utils` a PEP 420 namespace rooted there; the package folder makes
        # tests/ and typing_tests/ importable as `tests.*` / `typing_tests.*` (its name has a
        # dash, so the repository root cannot be the base of those modules).
        mypypath = os.pathsep.join([str(pkg / "src"), str(pkg)])
        try:
            session.run(
                "mypy",
                "--config-file",
                str(ROOT_PYPROJECT),
                *(str(t.relative_to(ROOT)) for t in targets),
                env={"MYPYPATH": mypypath},
            )
        except CommandFailed:  # report every package's errors, not just the first one's
            failed.append(dist)
    if failed:
        session.error(f"mypy found errors in: {', '.join(failed)}")


def has_python(folder: Path) -> bool:
    return any(folder.rglob("*.py")) or any(folder.rglob("*.pyi"))


@nox.session(python=None)
@nox.parametrize("package", PACKAGES, ids=PACKAGES)
def tests(session: nox.Session, package: str) -> None:
    """pytest against the installed wheel, with branch coverage and a 90% floor."""
    install_wheels(session, [package], *test_group(package))
    run_tests(session, package)


@nox.session(python=None)
@nox.parametrize("package", PACKAGES, ids=PACKAGES)
def tests_lowest(session: nox.Session, package: str) -> None:
    """Like tests, with the lowest versions the package's requirements allow (not default)."""
    if not uses_uv(session):
        session.skip("needs uv (--resolution=lowest-direct)")
    # lowest-direct lowers only the requirements named on the command line, so the package's
    # own declared requirements are named explicitly next to its wheel. utils-* members come
    # from the local wheels until they are published.
    declared = [r for r in declared_requirements(package) if not r.startswith("utils-")]
    install_wheels(session, [package], "--resolution=lowest-direct", *declared)
    session.install(*test_group(package))  # test tools at their newest
    run_tests(session, package)


def test_group(dist: str) -> tuple[str, ...]:
    return nox.project.dependency_groups(pyproject(dist), "test")


def declared_requirements(dist: str) -> list[str]:
    """Runtime requirements plus those of every extra, as written in the pyproject."""
    project = pyproject(dist).get("project", {})
    reqs = list(project.get("dependencies", []))
    for extra_reqs in project.get("optional-dependencies", {}).values():
        reqs += extra_reqs
    return reqs


def run_tests(session: nox.Session, package: str) -> None:
    pkg = package_dir(package)
    rcfile = write_coverage_config(session, package)

    # From inside packages/<dist>/ nothing puts src/ on sys.path, so `utils.<name>` can only
    # come from the wheel. Prove it before trusting the test results.
    with session.chdir(pkg):
        _run_tests(session, package, pkg, rcfile)


def _run_tests(session: nox.Session, package: str, pkg: Path, rcfile: Path) -> None:
    run_check(session, FROM_WHEEL, import_name(package))

    # `coverage run` rather than pytest-cov: the package's pytest11 plugin is imported while
    # pytest starts, before pytest-cov would begin measuring.
    session.run("coverage", "erase", "--rcfile", str(rcfile))
    session.run(
        "coverage",
        "run",
        "--rcfile",
        str(rcfile),
        "-m",
        "pytest",
        "-c",
        str(ROOT_PYPROJECT),
        "--rootdir",
        str(pkg),
        *_pytest_targets(pkg, session.posargs),
        *session.posargs,
    )  # exit code 5 (no tests collected) is non-zero and fails the session like any other
    session.run("coverage", "combine", "--quiet", "--rcfile", str(rcfile))
    session.run("coverage", "report", "--rcfile", str(rcfile))


def _pytest_targets(pkg: Path, posargs: list[str]) -> list[str]:
    """Run tests/ unless the caller named test paths of their own."""
    named = [a for a in posargs if not a.startswith("-") and (pkg / a.split("::")[0]).exists()]
    return [] if named else ["tests"]


@nox.session(python=None)
def docs(session: nox.Session) -> None:
    """Build the Sphinx site with warnings as errors."""
    if not (ROOT / "docs" / "conf.py").is_file():
        session.error("docs/conf.py does not exist")
    requirements = ROOT / "docs" / "requirements.txt"
    deps = ["-r", str(requirements)] if requirements.is_file() else DOCS_DEPS
    install_wheels(session, PACKAGES, *deps)
    shutil.rmtree(ROOT / "docs" / "_build", ignore_errors=True)
    session.run("sphinx-build", "-W", "--keep-going", "-b", "html", "docs", "docs/_build/html")


@nox.session(python=None)
def build(session: nox.Session) -> None:
    """Build every package, check metadata and layout, and import each wheel on its own."""
    session.install("twine")
    for dist in PACKAGES:
        wheel, sdist = build_dist(session, dist)
        session.run("twine", "check", "--strict", str(wheel), str(sdist))
        check_wheel_layout(session, dist, wheel)

        # A fresh venv holding only this wheel and its declared dependencies: catches a
        # dependency that is only ever present because another package brought it.
        python = fresh_venv(session, dist)
        reqs = [str(wheel)]
        if dist != CORE:
            reqs.append(str(build_dist(session, CORE)[0]))
        install_into(session, python, *reqs)
        run_check(session, FROM_WHEEL, import_name(dist), python=str(python), external=True)


def check_wheel_layout(session: nox.Session, dist: str, wheel: Path) -> None:
    """A namespace portion: no utils/__init__.py (it would shadow the other members)."""
    name = short_name(dist)
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
    problems = []
    if "utils/__init__.py" in names:
        problems.append("contains utils/__init__.py (breaks the PEP 420 namespace)")
    required = (f"utils/{name}/__init__.py", f"utils/{name}/py.typed")
    problems += [f"lacks {path}" for path in required if path not in names]
    if problems:
        session.error(f"{wheel.name}: " + "; ".join(problems))
    session.log(f"{wheel.name}: layout ok")


@nox.session(python=None)
def coinstall(session: nox.Session) -> None:
    """Every package with every extra in one venv: all modules import, no conflicts."""
    install_wheels(session, PACKAGES)
    run_check(session, IMPORT_ALL, *(import_name(dist) for dist in PACKAGES))
    if uses_uv(session):
        venv = str(session.virtualenv.location)
        session.run("uv", "pip", "check", "--python", venv, external=True)
    else:
        session.run("python", "-m", "pip", "check")


@nox.session(python=None)
def demo(session: nox.Session) -> None:
    """Run the quickstart against the installed wheels, on defaults, with no server."""
    install_wheels(session, PACKAGES)  # utils-core with all extras includes [cli]
    session.run("python", str(ROOT / "examples" / "quickstart.py"))


@nox.session(python=None)
def bench(session: nox.Session) -> None:
    """Run every benchmarks/bench_*.py side by side with its peers (not in the default set)."""
    scripts = sorted((ROOT / "benchmarks").glob("bench_*.py"))
    if not scripts:
        session.error("no benchmarks/bench_*.py found")
    install_wheels(session, PACKAGES, "-r", str(ROOT / "benchmarks" / "requirements.txt"))
    for script in scripts:
        session.run("python", str(script), *session.posargs)


@nox.session(python=None)
def changelog(session: nox.Session) -> None:
    """``nox -s changelog -- <dist> [--draft]``: build the next changelog section."""
    if not session.posargs:
        session.error("usage: nox -s changelog -- <dist> [--draft]")
    dist, *rest = session.posargs
    require_package(session, dist)
    if rest not in ([], ["--draft"]):
        session.error(f"unexpected arguments {rest}; usage: nox -s changelog -- <dist> [--draft]")
    session.install("towncrier")
    mode = ["--draft"] if rest else ["--yes"]
    with session.chdir(package_dir(dist)):
        session.run("towncrier", "build", *mode, "--version", read_version(dist))


@nox.session(python=None)
def release(session: nox.Session) -> None:
    """``nox -s release -- <dist> <major|minor|patch>``: bump, changelog, commit, tag.

    Publishing is not done here: pushing the tag triggers .github/workflows/release.yml,
    which builds that one distribution and uploads it to the configured index.
    """
    if len(session.posargs) != 2 or session.posargs[1] not in ("major", "minor", "patch"):
        session.error("usage: nox -s release -- <dist> <major|minor|patch>")
    dist, part = session.posargs
    require_package(session, dist)

    dirty = git(session, "status", "--porcelain")
    if dirty.strip():
        session.error(f"the work tree is not clean; commit or stash first:\n{dirty}")
    fragments = changelog_fragments(dist)
    if not fragments:
        session.error(f"no changelog fragments in CHANGELOG.d/{dist}/; nothing to release")

    old = read_version(dist)
    new = bump(old, part)
    tag = f"{dist}-v{new}"
    if git(session, "tag", "--list", tag).strip():
        session.error(f"tag {tag} already exists")

    session.install("towncrier")
    source = init_file(dist)
    original = source.read_text(encoding="utf-8")
    source.write_text(VERSION_RE.sub(f'__version__ = "{new}"', original, count=1), "utf-8")
    try:
        with session.chdir(package_dir(dist)):
            # --yes: removes the fragments with `git rm` and stages CHANGELOG.md.
            session.run("towncrier", "build", "--yes", "--version", new)
        git(session, "commit", "-am", f"{dist} v{new}")
    except BaseException:
        source.write_text(original, encoding="utf-8")
        session.log("release aborted: restored the version; check `git status` before retrying")
        raise
    git(session, "tag", "-a", tag, "-m", f"{dist} v{new}")
    session.log(
        f"{dist}: {old} -> {new}, tagged {tag}. Publish with: git push --atomic origin HEAD {tag}"
    )


def git(session: nox.Session, *args: str) -> str:
    out = session.run("git", *args, external=True, silent=True)
    return out if isinstance(out, str) else ""


def changelog_fragments(dist: str) -> list[Path]:
    """Fragment files look like ``<issue or +slug>.<type>[.<n>].md``."""
    folder = ROOT / "CHANGELOG.d" / dist
    if not folder.is_dir():
        return []
    return [
        p
        for p in folder.iterdir()
        if p.is_file()
        and not p.name.startswith(".")
        and set(p.name.split(".")[1:-1]) & {*CHANGELOG_TYPES}
    ]


def bump(version: str, part: str) -> str:
    match = SEMVER_RE.match(version)
    if match is None:
        raise ValueError(f"{version!r} is not MAJOR.MINOR.PATCH")
    major, minor, patch = (int(match[k]) for k in ("major", "minor", "patch"))
    if part == "major":
        return f"{major + 1}.0.0"
    if part == "minor":
        return f"{major}.{minor + 1}.0"
    return f"{major}.{minor}.{patch + 1}"
