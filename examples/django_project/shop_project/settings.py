"""Django settings, all read from the environment through :class:`~shop_project.config.ShopSettings`.

Nothing here is a literal secret or a host name: ``SHOP_*`` variables decide (see the
README). A missing ``SHOP_SECRET_KEY`` or an invalid value stops every ``manage.py`` command
and the WSGI server at start-up with one :class:`~utils.core.ConfigError` naming each
problem.
"""

from __future__ import annotations

from shop_project.config import ShopSettings, database_settings
from utils.core import django_logging_config

#: The typed settings; application code reads them as ``django.conf.settings.SHOP``.
SHOP = ShopSettings.from_env()

SECRET_KEY = SHOP.secret_key.get_secret_value()
DEBUG = SHOP.debug
ALLOWED_HOSTS = SHOP.allowed_hosts

INSTALLED_APPS = ["shop.apps.ShopConfig"]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.middleware.common.CommonMiddleware",
    # The route template for the access event's `route` tag (a bounded metric label).
    "shop_project.middleware.RouteMiddleware",
    # RFC 9457 bodies for what views raise; last, so it sees the views' exceptions first.
    "shop_project.middleware.ProblemDetailsMiddleware",
]

ROOT_URLCONF = "shop_project.urls"
# The request-context middleware and the probes wrap Django's app here (see wsgi.py).
WSGI_APPLICATION = "shop_project.wsgi.application"

DATABASES = {"default": database_settings(SHOP.database_url, conn_max_age=SHOP.conn_max_age)}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

CACHES = {
    "default": {
        "BACKEND": "utils.cache.django.TieredCacheBackend",
        "LOCATION": SHOP.redis_url.get_secret_value(),
        "TIMEOUT": SHOP.product_ttl,
        "KEY_PREFIX": "shop",
        "OPTIONS": {
            "namespace": SHOP.cache_namespace,
            "l1_maxsize": 10_000,
            # The longest a process may serve a value another process has changed, should
            # an invalidation message be lost (Redis restarted): pub/sub is not durable.
            "l1_ttl": 30,
        },
    }
}

# Django's loggers (django.request, django.server, django.db.backends...) propagate to the
# utils handler: their lines are the same JSON as the application's and utils', and carry
# the request id bound by WSGIRequestContextMiddleware. Applying it configures utils
# logging with this level and format.
LOGGING = django_logging_config(SHOP.log_level, format=SHOP.log_format)

USE_TZ = True
TIME_ZONE = "UTC"
LANGUAGE_CODE = "en-us"
USE_I18N = False

# `python manage.py test`: unique test database and cache namespace per run (see testing.py).
TEST_RUNNER = "shop_project.testing.ShopTestRunner"
