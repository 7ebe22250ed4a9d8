"""Gate on bandit's JSON report: every finding must be justified on its own line.

``python tools/bandit_gate.py bandit.json`` exits 1 listing each finding that is not
justified. A finding is justified by a reason on the flagged line, either

* ``# nosec B301 - why this is safe`` (bandit's own marker; bandit then drops it), or
* ``# noqa: S301 - why this is safe``: ruff's flake8-bandit rule with the same number, which
  the ``lint`` session already requires, so one comment serves both tools.

A bare ``# noqa: S311`` without `` - reason`` does not count: the reason is the point.
Skipped tests (``[tool.bandit] skips`` in the root pyproject) are policy, explained there.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any

# Matches a noqa or nosec marker followed by " - " and a reason (see the docstring).
MARKER_RE = re.compile(
    r"#\s*(?:noqa:\s*(?P<noqa>[A-Z0-9, ]+)|nosec\s+(?P<nosec>[B0-9, ]+))\s*-\s*\S"
)


def justified(test_id: str, line: str) -> bool:
    """Whether ``line`` carries a reasoned marker for bandit test ``test_id`` (``B301``)."""
    ruff_code = "S" + test_id.removeprefix("B")
    for match in MARKER_RE.finditer(line):
        codes = {c.strip() for c in (match["noqa"] or match["nosec"]).split(",")}
        if test_id in codes or ruff_code in codes:
            return True
    return False


def unjustified(report: dict[str, Any]) -> list[str]:
    problems = []
    for result in report.get("results", []):
        path, number = Path(result["filename"]), int(result["line_number"])
        lines = path.read_text(encoding="utf-8").splitlines()
        # A multi-line statement is reported at its first line; accept a marker on any of
        # the lines bandit quotes for it.
        span = result.get("line_range") or [number]
        candidates = [lines[n - 1] for n in span if 0 < n <= len(lines)]
        if not any(justified(result["test_id"], line) for line in candidates):
            problems.append(
                f"{path}:{number}: {result['test_id']} {result['issue_text']} "
                f"(severity {result['issue_severity'].lower()})"
            )
    return problems


def main(argv: list[str]) -> int:
    report = json.loads(Path(argv[0]).read_text(encoding="utf-8"))
    problems = unjustified(report)
    for problem in problems:
        print(f"bandit: {problem}")
    total = len(report.get("results", []))
    print(f"bandit: {total} findings, {total - len(problems)} justified inline, "
          f"{len(problems)} not justified")  # fmt: skip
    return 1 if problems else 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
