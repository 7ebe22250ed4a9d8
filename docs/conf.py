"""Sphinx configuration of the utils documentation site (one site for every package)."""

from __future__ import annotations

import os
import re
import warnings
from typing import Any

import utils.core

# -- Project -----------------------------------------------------------------------------

project = "utils"
author = "The utils developers"
copyright = "The utils developers"
version = release = utils.core.__version__

# -- General -----------------------------------------------------------------------------

extensions = [
    "myst_parser",
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinx.ext.intersphinx",
    "sphinx_autodoc_typehints",  # after napoleon, as its docs require
]

source_suffix = {".md": "markdown", ".rst": "restructuredtext"}
root_doc = "index"
exclude_patterns = ["_build", "Thumbs.db", ".DS_Store"]
nitpicky = False

# -- MyST --------------------------------------------------------------------------------

myst_enable_extensions = ["colon_fence", "deflist"]
myst_heading_anchors = 3

# -- autodoc, napoleon, typehints ---------------------------------------------------------

autodoc_preserve_defaults = True  # show `on=is_transient`, not a function repr
autodoc_member_order = "bysource"
# With a module ``__all__``, autodoc's "bysource" means "in ``__all__`` order", and ruff
# keeps every ``__all__`` sorted alphabetically. Ignoring ``__all__`` gives the real source
# order (``UtilsError`` before its subclasses); members are then the documented objects
# *defined* in each module, which is the same set as the ``__all__`` lists, minus re-exports.
autodoc_default_options = {"show-inheritance": True, "ignore-module-all": True}
# sphinx_autodoc_typehints owns the type hints: it moves them from signatures into the
# parameter and return descriptions. Sphinx's own "description" mode would add them a
# second time, so autodoc is told to leave signatures alone.
autodoc_typehints = "none"
typehints_document_rtype = True
typehints_defaults = "comma"
always_use_bars_union = True

napoleon_google_docstring = True
napoleon_numpy_docstring = False
napoleon_use_rtype = False  # the return type comes from the annotation

# -- intersphinx ---------------------------------------------------------------------------
#
# Links into the Python and structlog docs. Fetching an inventory needs the network, and
# Sphinx reports a failed fetch as an untyped warning ("failed to reach any of the
# inventories ..."): it cannot be targeted by ``suppress_warnings``, so under ``-W`` an
# offline build would fail. Silencing all warnings would make ``-W`` meaningless, so the
# mapping is opt-in instead: builds with network access (Read the Docs, release builds) set
# UTILS_DOCS_INTERSPHINX=1 and get the links; offline builds get plain text, and every other
# warning still fails the build.

intersphinx_mapping: dict[str, tuple[str, str | None]] = {}
if os.environ.get("UTILS_DOCS_INTERSPHINX", "0") == "1":
    intersphinx_mapping = {
        "python": ("https://docs.python.org/3", None),
        "structlog": ("https://www.structlog.org/en/stable/", None),
    }
intersphinx_timeout = 5

# -- Cross-references to re-exported names --------------------------------------------------
#
# Docstrings name the public paths (``:func:`~utils.core.configure_logging```) or bare names
# from a sibling module (``:class:`UtilsError```), while the API reference documents each
# object once, where it is defined (``utils.core.log.configure_logging``). This resolves such
# a reference to the documented object when exactly one ``utils.*`` object has that name.
# Anything still unresolved stays plain text, exactly as without this hook.


_PACKAGE_PREFIX = re.compile(r"^utils\.[a-z_]+\.")
# When a short name matches several objects, prefer what a reader means by it.
_PREFERRED_TYPES = ("function", "class", "exception", "data")


def _resolve_reexported(app: Any, env: Any, node: Any, contnode: Any) -> Any:
    """Resolve ``utils.<pkg>.Name`` (a re-export) to where ``Name`` is documented."""
    if node.get("refdomain") != "py":
        return None
    target = node["reftarget"]
    name = _PACKAGE_PREFIX.sub("", target)
    if target == name and "." in name:
        return None  # a dotted name outside the utils packages: not ours to guess
    package = target[: len(target) - len(name)] if target != name else "utils."
    domain = env.get_domain("py")
    candidates = [
        (fullname, entry.objtype)
        for fullname, entry in domain.objects.items()
        if fullname.startswith(package)
        and fullname.endswith("." + name)
        and entry.objtype != "module"
    ]
    if len(candidates) > 1:
        candidates = [c for c in candidates if c[1] in _PREFERRED_TYPES] or candidates
    if len(candidates) != 1:
        return None
    return domain.resolve_xref(
        env, node["refdoc"], app.builder, "obj", candidates[0][0], node, contnode
    )


def setup(app: Any) -> None:
    app.connect("missing-reference", _resolve_reexported)


# sphinx-autodoc-typehints calls an API that Sphinx 9 deprecated; the DeprecationWarning is
# printed once per docstring and says nothing about these docs. Only that message is hidden.
warnings.filterwarnings("ignore", message=r".*_RstSnippetParser\.set_application.* is deprecated")

# -- HTML ----------------------------------------------------------------------------------

html_theme = "furo"
html_title = f"utils {release}"

# -- Pages generated at build time -----------------------------------------------------------
#
# The release plan (`nox -s release_plan`) changes with every fragment and tag, so it is
# rendered while the site is built, never committed; docs/release.md includes it.
# tools/ is the repository's standard-library-only release tooling.


def _write_release_plan() -> None:
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    sys.path.insert(0, str(root))
    try:
        from tools.release import plan, plan_table

        text = plan_table(plan())
    except (OSError, ValueError, subprocess.CalledProcessError) as exc:  # e.g. no git
        text = f"*The release plan could not be computed here: {exc}.*"
    finally:
        sys.path.remove(str(root))
    out = Path(__file__).resolve().parent / "_build" / "_generated"  # ignored by git and Sphinx
    out.mkdir(parents=True, exist_ok=True)
    (out / "release_plan.md").write_text(text + "\n", encoding="utf-8")


_write_release_plan()
