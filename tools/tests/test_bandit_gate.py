from __future__ import annotations

import json
from pathlib import Path

import pytest

from tools import bandit_gate


@pytest.mark.parametrize(
    ("line", "ok"),
    [
        ("x = pickle.loads(b)  # noqa: S301 - our own bytes", True),
        ("x = pickle.loads(b)  # noqa: E501, S301 - signed", True),
        ("x = pickle.loads(b)  # nosec B301 - signed", True),
        ("x = pickle.loads(b)  # noqa: S301", False),  # no reason
        ("x = pickle.loads(b)  # noqa: S311 - wrong rule", False),
        ("x = pickle.loads(b)", False),
    ],
)
def test_justified(line: str, ok: bool) -> None:
    assert bandit_gate.justified("B301", line) is ok


def test_unjustified_and_main(tmp_path: Path) -> None:
    src = tmp_path / "m.py"
    src.write_text("a = 1  # noqa: S311 - jitter\nb = 2\n", encoding="utf-8")
    result = {"filename": str(src), "issue_severity": "LOW", "issue_text": "random"}
    report = {
        "results": [
            {**result, "line_number": 1, "line_range": [1], "test_id": "B311"},
            {**result, "line_number": 2, "line_range": [2], "test_id": "B311"},
        ]
    }
    assert bandit_gate.unjustified(report) == [f"{src}:2: B311 random (severity low)"]
    path = tmp_path / "bandit.json"
    path.write_text(json.dumps(report), encoding="utf-8")
    assert bandit_gate.main([str(path)]) == 1
