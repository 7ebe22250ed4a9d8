"""Serve the project under a real WSGI server until stdin closes: ``python -m tests.serve``.

Used by test_logging in a fresh process, so the logging configuration is exactly the one
``settings.py`` makes. Prints the base URL on the first line of stdout.
"""

from __future__ import annotations

import os
import sys

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "shop_project.settings")

from shop_project.wsgi import application

from utils.core.testing import serve_wsgi

if __name__ == "__main__":
    with serve_wsgi(application) as url:
        print(url, flush=True)
        sys.stdin.read()
