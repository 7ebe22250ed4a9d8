"""The WSGI application: ``gunicorn shop_project.wsgi`` (or any WSGI server).

Three layers, outermost first:

1. :func:`~utils.core.wsgi_health_app` answers ``/livez``, ``/readyz`` and ``/startupz``
   itself (JSON, 200 or 503, answers reused for a second so probe storms never reach the
   database) and hands every other path on. Outside the request-context middleware on
   purpose: the kubelet's probes every few seconds are no access log material.
2. :class:`~utils.core.WSGIRequestContextMiddleware` takes or makes the request id, binds it
   (with method and path) to every log line of the request — Django's, the app's, utils' —,
   echoes it in ``X-Request-ID`` and ends each request with one ``http.request`` line and
   latency metric.
3. Django.
"""

from __future__ import annotations

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "shop_project.settings")

# Sets Django up: settings (a ConfigError here names every bad SHOP_* variable), LOGGING.
django_app = get_wsgi_application()

from shop_project.health import register_checks  # noqa: E402 - needs Django set up
from utils.core import WSGIRequestContextMiddleware, wsgi_health_app  # noqa: E402

register_checks()

application = wsgi_health_app(
    fallback=WSGIRequestContextMiddleware(django_app),
    entry_points=False,  # the checks registered above, not the UTILS_* environment's
)
