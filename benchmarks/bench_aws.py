"""utils.aws against raw boto3 and AWS Lambda Powertools, side by side (moto, no network).

Run with ``nox -s bench`` or ``python benchmarks/bench_aws.py [--quick] [--json PATH]
[--verbose]`` in an environment holding the utils-core and utils-aws[testing] wheels and the
peers of ``requirements.txt`` (boto3 comes with utils-aws; aws-lambda-powertools). Every
comparison checks first, untimed, that both sides do the same work (same client object
reused, same secret value, same keys listed, every message sent).

1. ``client("s3")`` cache hit against ``boto3.client("s3")`` (what ad-hoc code does per call):
   target at least 1,000x faster (ours/peer <= 0.001). CPU time.
2. ``get_secret(name)`` and ``get_parameter(name)`` cache hits against Powertools'
   ``parameters.get_secret`` / ``parameters.get_parameter`` cache hits (same max_age):
   target ours/peer <= 1.0. CPU time, moto in-process (only the first call reaches it).
3. ``list(S3(b).list_keys())`` over 10,000 objects on moto's server against the raw
   ``list_objects_v2`` paginator on the same cached client: target ours/peer <= 1.1 in CPU
   time of this process (what the client spends; robust on a loaded machine), wall time
   informational. 2,000 objects with ``--quick``.
4. ``SQS.send_many`` of 1,000 messages against 1,000 ``send_message`` calls: target at least
   8x faster (ours/peer <= 0.125). WALL time, against a loopback stub in a child process that
   answers like SQS (moto's SQS does work proportional to the queue's length for every message it accepts,
   which buries the round trips batching saves).

The moto rows talk HTTP to moto's server run in a child process (``python -m
moto.server`` on a free loopback port), so the server's work does not compete with the
client for one interpreter lock; moto's own per-request cost still dominates there, where
real AWS would add a network round trip per request.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import traceback
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from _harness import (
    Result,
    Settings,
    compare,
    environment,
    installed_version,
    loop,
    parse_args,
    print_table,
    summarize,
    write_json,
)

PEERS = ("boto3", "botocore", "moto", "aws-lambda-powertools")


def bench_client_cache(settings: Settings) -> tuple[list[Result], dict[str, Any]]:
    import boto3

    from utils.aws import client

    assert client("s3") is client("s3")  # the check: one object, reused
    result = compare(
        'client("s3") cache hit',
        ours=("utils.aws.client", loop('client("s3")', client=client)),
        peer=("boto3.client", loop('client("s3")', client=boto3.client)),
        settings=settings,
        max_ratio=0.001,
        target=">= 1,000x faster",
    )
    return [result], {"checks": 1}


def bench_parameters(settings: Settings) -> tuple[list[Result], dict[str, Any]]:
    from aws_lambda_powertools.utilities import parameters as powertools

    from utils.aws import client, get_parameter, get_secret

    client("secretsmanager").create_secret(Name="bench-db", SecretString="hunter2")
    client("ssm").put_parameter(Name="/bench/mode", Value="fast", Type="String")
    # The checks: same values, and both caches hold them (one fetch each, then hits).
    assert get_secret("bench-db", max_age=300).get_secret_value() == "hunter2"
    assert powertools.get_secret("bench-db", max_age=300) == "hunter2"
    assert get_parameter("/bench/mode", max_age=300) == "fast"
    assert powertools.get_parameter("/bench/mode", max_age=300) == "fast"
    results = [
        compare(
            "get_secret cache hit",
            ours=(
                "utils.aws.get_secret",
                loop('get_secret("bench-db", max_age=300)', get_secret=get_secret),
            ),
            peer=(
                "powertools get_secret",
                loop('get_secret("bench-db", max_age=300)', get_secret=powertools.get_secret),
            ),
            settings=settings,
            max_ratio=1.0,
            target="<= 1.0x Powertools",
        ),
        compare(
            "get_parameter cache hit",
            ours=(
                "utils.aws.get_parameter",
                loop('get_parameter("/bench/mode", max_age=300)', get_parameter=get_parameter),
            ),
            peer=(
                "powertools get_parameter",
                loop(
                    'get_parameter("/bench/mode", max_age=300)',
                    get_parameter=powertools.get_parameter,
                ),
            ),
            settings=settings,
            max_ratio=1.0,
            target="<= 1.0x Powertools",
        ),
    ]
    return results, {"checks": 4}


def _timed(fn: Callable[[], object]) -> tuple[float, float]:
    """(wall µs, CPU µs of this process) of one call."""
    wall, cpu = time.perf_counter(), time.process_time()
    fn()
    return (time.perf_counter() - wall) * 1e6, (time.process_time() - cpu) * 1e6


def _rounds(
    ours: Callable[[], object], peer: Callable[[], object], rounds: int
) -> tuple[list[tuple[float, float]], list[tuple[float, float]]]:
    """Interleaved rounds (peer first on odd ones): (wall, cpu) lists of (ours, peer) µs."""
    wall, cpu = [], []
    for index in range(rounds):
        if index % 2 == 0:
            o, p = _timed(ours), _timed(peer)
        else:
            p, o = _timed(peer), _timed(ours)
        wall.append((o[0], p[0]))
        cpu.append((o[1], p[1]))
    return wall, cpu


def bench_list_keys(settings: Settings, objects: int) -> tuple[list[Result], dict[str, Any]]:
    from utils.aws import S3, client

    s3 = client("s3")
    bucket = f"bench-{uuid.uuid4().hex[:8]}"
    s3.create_bucket(Bucket=bucket)
    with ThreadPoolExecutor(16) as pool:
        list(
            pool.map(
                lambda n: s3.put_object(Bucket=bucket, Key=f"k/{n:06}", Body=b""), range(objects)
            )
        )
    helper = S3(bucket)

    def ours() -> list[str]:
        return list(helper.list_keys())

    def peer() -> list[str]:
        paginator = s3.get_paginator("list_objects_v2")
        return [
            item["Key"]
            for page in paginator.paginate(Bucket=bucket)
            for item in page.get("Contents", ())
        ]

    assert ours() == peer()
    assert len(ours()) == objects
    wall, cpu = _rounds(ours, peer, 3 if settings.quick else 9)
    results = [
        summarize(
            f"list_keys {objects:,} objects (client CPU)",
            ours="S3.list_keys",
            peer="raw paginator",
            rounds_us=cpu,
            max_ratio=1.1,
            target="<= 1.1x raw paginator",
        ),
        summarize(
            f"list_keys {objects:,} objects (wall)",
            ours="S3.list_keys",
            peer="raw paginator",
            rounds_us=wall,
            target="info",
        ),
    ]
    return results, {"checks": 2, "objects": objects}


_SQS_STUB = r"""
import hashlib, json, sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

def md5(entry):
    return hashlib.md5(entry["MessageBody"].encode()).hexdigest()

class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    wbufsize = -1  # one segment per response: no delayed-ACK stall
    disable_nagle_algorithm = True
    requests = messages = 0

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        if "Entries" in body:
            Handler.requests += 1
            Handler.messages += len(body["Entries"])
            ok = [{"Id": e["Id"], "MessageId": str(n), "MD5OfMessageBody": md5(e)}
                  for n, e in enumerate(body["Entries"])]
            reply = {"Successful": ok, "Failed": []}
        elif "MessageBody" in body:
            Handler.requests += 1
            Handler.messages += 1
            reply = {"MessageId": "1", "MD5OfMessageBody": md5(body)}
        else:  # GetQueueAttributes: the stub's counters, for the checks
            reply = {"Attributes": {"Requests": str(Handler.requests),
                                    "Messages": str(Handler.messages)}}
        data = json.dumps(reply).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/x-amz-json-1.0")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass

server = ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Handler)
server.serve_forever()
"""


class SQSStub:
    """A child process answering SendMessage / SendMessageBatch the way SQS does (JSON)."""

    def __init__(self) -> None:
        from utils.core.testing import find_free_port

        self.port = find_free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._process: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> SQSStub:
        self._process = subprocess.Popen([sys.executable, "-c", _SQS_STUB, str(self.port)])
        _wait_for_port(self.port)
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._process is not None:
            self._process.terminate()
            self._process.wait(10)


def _wait_for_port(port: int) -> None:
    give_up = time.monotonic() + 30
    while time.monotonic() < give_up:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"nothing listens on port {port}")


def bench_send_many(settings: Settings) -> tuple[list[Result], dict[str, Any]]:
    """Against a loopback stub: moto's SQS does O(queue length) work per message sent, which
    buries the round trips that batching saves (1,000 messages take tens of seconds either
    way), so the comparison runs where the client and the HTTP round trips are what counts."""
    from utils.aws import SQS, client

    bodies = [f"message {n}" for n in range(1000)]
    with SQSStub() as stub:
        sqs = client("sqs", endpoint_url=stub.url)
        url = f"{stub.url}/123456789012/bench"
        queue = SQS(url, endpoint_url=stub.url)

        def ours() -> None:
            assert queue.send_many(bodies) == []

        def peer() -> None:
            for body in bodies:
                sqs.send_message(QueueUrl=url, MessageBody=body)

        def counters() -> tuple[int, int]:
            got = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
            return int(got["Requests"]), int(got["Messages"])

        ours()
        assert counters() == (100, 1000)  # the checks: batches of 10
        peer()
        assert counters() == (1100, 2000)

        def raw_batches() -> None:
            for start in range(0, len(bodies), 10):
                entries = [
                    {"Id": str(n), "MessageBody": body}
                    for n, body in enumerate(bodies[start : start + 10])
                ]
                sqs.send_message_batch(QueueUrl=url, Entries=entries)

        rounds = 3 if settings.quick else 9
        wall, _ = _rounds(ours, peer, rounds)
        batched, _ = _rounds(ours, raw_batches, rounds)
    results = [
        summarize(
            "send_many 1,000 (wall, loopback stub)",
            ours="SQS.send_many",
            peer="1,000 send_message",
            rounds_us=wall,
            max_ratio=0.125,
            target=">= 8x faster",
        ),
        summarize(
            "send_many 1,000 vs raw batches (wall)",
            ours="SQS.send_many",
            peer="100 raw send_message_batch",
            rounds_us=batched,
            target="info",
        ),
    ]
    return results, {"checks": 2}


class ProcessMotoServer:
    """moto's server in a child process: the server's CPU does not compete for our GIL."""

    def __init__(self) -> None:
        from utils.core.testing import find_free_port

        self.port = find_free_port()
        self.endpoint_url = f"http://127.0.0.1:{self.port}"
        self._process: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> ProcessMotoServer:
        self._process = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        _wait_for_port(self.port)
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._process is not None:
            self._process.terminate()
            self._process.wait(10)


def section(
    name: str, run: Callable[[], tuple[list[Result], dict[str, Any]]], errors: dict[str, str]
) -> tuple[list[Result], dict[str, Any]]:
    """Run one section; a failure is reported and the other sections still run."""
    try:
        return run()
    except Exception:
        errors[name] = traceback.format_exc()
        print(f"ERROR in {name} (reported, not gating):\n{errors[name]}", file=sys.stderr)
        return [], {}


def main() -> int:
    settings = parse_args(__doc__.splitlines()[0], rounds=(15, 3))
    from utils.aws.testing import mocked_aws, moto_server

    # No real AWS anywhere: fake credentials, moto in-process for the CPU rows and moto's
    # threaded server (loopback) for the wall-clock rows.
    os.environ.setdefault("POWERTOOLS_SERVICE_NAME", "bench")
    errors: dict[str, str] = {}
    extra: dict[str, Any] = {}
    cpu_results: list[Result] = []
    wall_results: list[Result] = []
    with mocked_aws():
        for name, run in (
            ("client", lambda: bench_client_cache(settings)),
            ("parameters", lambda: bench_parameters(settings)),
        ):
            results, extra[name] = section(name, run, errors)
            cpu_results.extend(results)
    objects = 2_000 if settings.quick else 10_000
    with ProcessMotoServer() as server, moto_server(server):  # type: ignore[arg-type]
        results, extra["list_keys"] = section(
            "list_keys", lambda: bench_list_keys(settings, objects), errors
        )
        wall_results.extend(results)
        results, extra["send_many"] = section(
            "send_many", lambda: bench_send_many(settings), errors
        )
        wall_results.extend(results)

    versions = {dist: installed_version(dist) for dist in PEERS}
    env = environment({"peer_versions": versions})
    title = f"bench_aws  Python {env['python']}, {env['cpus']} CPUs, " + ", ".join(
        f"{dist} {version}" for dist, version in versions.items()
    )
    print_table(title, cpu_results, settings)
    print_table("bench_aws, over HTTP (time per whole operation)", wall_results, settings)
    checked = sum(part.get("checks", 0) for part in extra.values())
    print(f"\nchecks before timing: {checked} made")
    if settings.verbose:
        print(f"environment: {env}")
    if errors:
        print(f"\nsections that failed (see stderr): {', '.join(errors)}")
    if settings.json_path:
        write_json(
            settings.json_path,
            "aws",
            cpu_results + wall_results,
            env,
            details=extra,
            errors=errors,
        )
    return 0  # reports, never gates


if __name__ == "__main__":
    sys.exit(main())
