"""Loopback HTTP stubs for what moto cannot do: throttling, 503 + Retry-After, hangs."""

from __future__ import annotations

import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

#: (status, headers, body) or None to hang until the stub stops.
Answer = tuple[int, dict[str, str], bytes] | None


def s3_error(status: int, code: str, *, headers: dict[str, str] | None = None) -> Answer:
    body = (
        f"<?xml version='1.0' encoding='UTF-8'?><Error><Code>{code}</Code>"
        f"<Message>stub says {code}</Message><RequestId>REQ-{code}</RequestId></Error>"
    ).encode()
    base = {"Content-Type": "application/xml", "x-amz-request-id": f"REQ-{code}"}
    return status, {**base, **(headers or {})}, body


class StubServer:
    """A threaded HTTP server on 127.0.0.1 that answers every request with ``answer(path)``."""

    def __init__(self, answer: Callable[[StubServer, str, bytes], Answer]) -> None:
        self.answer = answer
        self.requests: list[tuple[str, str]] = []
        self.release = threading.Event()
        stub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            # One segment per response (and no Nagle): no 40 ms delayed-ACK stall per request.
            wbufsize = -1
            disable_nagle_algorithm = True

            def _serve(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                stub.requests.append((self.command, self.path))
                reply = stub.answer(stub, self.path, body)
                if reply is None:
                    stub.release.wait(10)
                    self.close_connection = True
                    return
                status, headers, data = reply
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_PUT = do_POST = do_HEAD = do_DELETE = _serve

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def count(self) -> int:
        return len(self.requests)

    def __enter__(self) -> StubServer:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.release.set()
        self._server.shutdown()
        self._server.server_close()
