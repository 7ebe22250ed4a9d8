"""``python -m orders_service``: serve the application with uvicorn, logging as JSON.

Settings come from the environment (``ORDERS_*``, see :mod:`orders_service.settings`); a
missing or malformed one stops the start with every problem listed. On SIGTERM uvicorn
stops accepting connections, lets the requests in flight finish (at most
``--graceful-timeout`` seconds, below the pod's ``terminationGracePeriodSeconds``), runs
the lifespan shutdown, which closes every client, and exits with status 0.
"""

from __future__ import annotations

import uvicorn

from orders_service.app import create_app
from orders_service.settings import ServiceSettings
from utils.core import configure_logging, uvicorn_log_config

__all__ = ["main"]

#: Seconds the requests in flight get after SIGTERM (terminationGracePeriodSeconds is 30).
GRACEFUL_TIMEOUT = 20


def main() -> None:
    """Read the settings, configure logging and serve until SIGTERM or SIGINT."""
    settings = ServiceSettings.from_env()
    configure_logging(level=settings.log_level, format="json")
    uvicorn.run(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        # The middleware's http.request event is the access line: uvicorn's is turned off.
        log_config=uvicorn_log_config(settings.log_level, format="json", access_log=False),
        access_log=False,
        timeout_graceful_shutdown=GRACEFUL_TIMEOUT,
        proxy_headers=True,
    )


if __name__ == "__main__":
    main()
