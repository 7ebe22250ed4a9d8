from __future__ import annotations

import subprocess
import sys

import utils.db


def test_import_does_not_import_psycopg() -> None:
    code = "import sys, utils.db; assert 'psycopg' not in sys.modules, 'psycopg imported'; print('ok')"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=False
    )
    assert result.stdout.strip() == "ok", result.stderr


def test_public_names() -> None:
    for name in utils.db.__all__:
        assert getattr(utils.db, name) is not None
    assert "Database" in dir(utils.db)
    assert utils.db.__version__ == "0.1.0"
