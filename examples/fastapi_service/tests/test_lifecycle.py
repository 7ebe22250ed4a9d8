"""Start-up, /metrics, probes, and the graceful shutdown on SIGTERM of ``python -m orders_service``."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
from tests.support import KEY, Service, ServiceFactory, Upstream, new_product_id, put_product

from utils.core.health import unregister_check
from utils.core.testing import find_free_port, wait_until

EXAMPLE = Path(__file__).resolve().parent.parent


def test_metrics_are_exported_for_prometheus(service: Service) -> None:
    product_id = new_product_id()
    with service.client() as client:
        put_product(client, product_id)
        client.get(f"/products/{product_id}")
        reply = client.get("/metrics")
    assert reply.status_code == 200
    assert reply.headers["content-type"].startswith("text/plain")
    text = reply.text
    # The middleware's access metric, by route template (never the raw path).
    assert 'orders_http_request_count{method="GET",route="/products/{product_id}"' in text
    assert f"/products/{product_id}" not in text
    assert "orders_db_" in text  # the family's own metrics land in the same registry


def test_probes(service: Service) -> None:
    with service.client(key=None) as client:
        live, ready, start = (client.get(p) for p in ("/livez", "/readyz", "/startupz"))
    assert (live.status_code, ready.status_code, start.status_code) == (200, 200, 200)
    checks = {check["name"]: check for check in ready.json()["checks"]}
    assert sorted(checks) == ["postgres", "redis"]
    assert all(check["kind"] == "readiness" for check in checks.values())
    assert "X-Request-ID" in ready.headers  # the probes are behind the request middleware


def test_shutdown_removes_the_checks(make_service: ServiceFactory) -> None:
    with make_service():
        pass
    # The lifespan shutdown unregistered them: nothing left to remove.
    assert unregister_check("postgres") is False
    assert unregister_check("redis") is False


def test_sigterm_lets_the_request_in_flight_finish(
    database_url: str, utils_redis_url: str, upstream: Upstream, namespace: str
) -> None:
    port = find_free_port()
    env = {
        **os.environ,
        "ORDERS_DATABASE_URL": database_url,
        "ORDERS_PRICING_URL": upstream.url,
        "ORDERS_API_KEYS": KEY,
        "ORDERS_REDIS_URL": utils_redis_url,
        "ORDERS_REDIS_NAMESPACE": namespace,
        "ORDERS_HOST": "127.0.0.1",
        "ORDERS_PORT": str(port),
        "ORDERS_PRICING_ATTEMPT_TIMEOUT": "1",
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "orders_service"],
        cwd=EXAMPLE,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    url = f"http://127.0.0.1:{port}"

    def ready() -> bool:
        try:
            return httpx.get(url + "/readyz").status_code == 200
        except httpx.TransportError:
            assert process.poll() is None, "the service exited at start-up"
            return False

    try:
        wait_until(ready, timeout=30, interval=0.05, message="the service never became ready")
        product_id = new_product_id()
        with httpx.Client(base_url=url, headers={"X-API-Key": KEY}, timeout=30) as client:
            put_product(client, product_id)
            # An order in flight when SIGTERM arrives: its first price lookup hangs until
            # the attempt's timeout (ORDERS_PRICING_ATTEMPT_TIMEOUT), the retry succeeds.
            upstream.then("hang")
            with ThreadPoolExecutor(1) as pool:
                in_flight = pool.submit(
                    client.post, "/orders", json={"product_id": product_id, "quantity": 1}
                )
                wait_until(lambda: len(upstream.calls) == 1, message="the order never started")
                process.send_signal(signal.SIGTERM)
                reply = in_flight.result(timeout=30)
        _, stderr = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert reply.status_code == 201, reply.text  # finished, not cut off
    assert len(upstream.calls) == 2
    # uvicorn re-raises SIGTERM once it has shut down, so the status says "terminated by
    # SIGTERM" (older uvicorn exits with 0): either way, after the lifespan shutdown ran.
    assert process.returncode in {0, -signal.SIGTERM}, stderr
    events = [json.loads(line)["event"] for line in stderr.splitlines()]  # JSON lines only
    assert "orders.started" in events
    assert events.index("Waiting for application shutdown.") < events.index("orders.stopped")
    assert events[-1].startswith("Finished server process")
    assert KEY not in stderr
