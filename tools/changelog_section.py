"""Print exactly one version's section of a distribution's CHANGELOG.md.

Used by .github/workflows/release.yml for the body of the GitHub release::

    python tools/changelog_section.py utils-core 0.2.0 > notes.md

Exit status 1 (and a message on stderr) when the changelog has no section for that version,
so a release can never go out with an empty or wrong body. Standard library only.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
START = "<!-- towncrier release notes start -->"
# towncrier's title_format in every package: "## [X.Y.Z](link) - date"; a plain "## X.Y.Z"
# heading is accepted too.
HEADING_RE = re.compile(r"^## \[?(?P<version>[0-9]+\.[0-9]+\.[0-9]+)\]?(?:\(|\s|$)")


def extract_section(text: str, version: str) -> str:
    """The body (without its heading) of ``version``'s section; ValueError if absent/empty."""
    if START in text:
        text = text.split(START, 1)[1]
    lines = text.splitlines()
    body: list[str] | None = None
    for line in lines:
        match = HEADING_RE.match(line)
        if body is None:
            if match and match["version"] == version:
                body = []
            continue
        if match or line.startswith("# "):
            break  # the next (older) release
        body.append(line)
    if body is None:
        raise ValueError(f"no section for version {version}")
    section = "\n".join(body).strip()
    if not section:
        raise ValueError(f"the section for version {version} is empty")
    return section + "\n"


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: changelog_section.py <dist> <version>", file=sys.stderr)
        return 2
    dist, version = argv
    path = ROOT / "packages" / dist / "CHANGELOG.md"
    try:
        sys.stdout.write(extract_section(path.read_text(encoding="utf-8"), version))
    except (OSError, ValueError) as exc:
        print(f"{path}: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
