"""``SQS(queue_url)``: send one, send many in batches, and a consumer loop that does it right.

- :meth:`SQS.send_many` packs batches of 10 (and at most 256 KiB), retries only the entries
  SQS refused for a reason that may pass (never the sender's fault), and returns what
  finally failed.
- :meth:`SQS.consume` long-polls, hands each message to your handler, deletes the handled
  ones in batches, leaves failed ones for redelivery (after the visibility timeout; the
  queue's redrive policy sends repeat offenders to a dead-letter queue), keeps extending the
  visibility of a message while a slow handler works on it, and stops cleanly after the
  current message on SIGTERM or when ``stop`` is set.

boto3 has no asyncio API: sync only.

Example:
    >>> from utils.aws import client
    >>> from utils.aws.testing import mocked_aws
    >>> with mocked_aws():
    ...     queue = SQS(client("sqs").create_queue(QueueName="jobs")["QueueUrl"])
    ...     queue.send_many(f"job {n}" for n in range(25))
    ...     seen = []
    ...     queue.consume(lambda message: seen.append(message.body), wait_time=0, max_messages=25)
    ...     len(seen)
    []
    ConsumeResult(delivered=25, handled=25, failed=0)
    25
"""

from __future__ import annotations

import contextlib
import json
import signal
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from utils.aws._service import Service
from utils.aws.errors import AWSError
from utils.core import ValidationError, with_current_context
from utils.core.report import Event
from utils.core.validate import non_negative_int, positive_int

__all__ = ["SQS", "ConsumeResult", "Message", "SendFailure"]

#: Entries per SendMessageBatch / DeleteMessageBatch (the SQS maximum).
BATCH = 10
#: Bytes per batch request (the SQS maximum).
MAX_BATCH_BYTES = 256 * 1024

SQS_SEND_FAILED = Event(
    "aws.sqs.send_failed", logger="utils.aws", level="warning", tags=("queue", "code")
)
SQS_HANDLER_FAILED = Event(
    "aws.sqs.handler_failed", logger="utils.aws", level="warning", tags=("queue", "error")
)
SQS_VISIBILITY_EXTENDED = Event(
    "aws.sqs.visibility_extended", logger="utils.aws", level="debug", tags=("queue",)
)
SQS_DELETE_FAILED = Event(
    "aws.sqs.delete_failed", logger="utils.aws", level="warning", tags=("queue", "code")
)


@dataclass(frozen=True)
class Message:
    """One received message.

    Example:
        >>> Message("id-1", '{"n": 1}', "rh", {"ApproximateReceiveCount": "2"}).json()
        {'n': 1}
    """

    id: str
    body: str
    receipt_handle: str = field(repr=False)
    attributes: Mapping[str, str] = field(default_factory=dict)
    message_attributes: Mapping[str, Any] = field(default_factory=dict)

    @property
    def receive_count(self) -> int:
        """How many times SQS delivered it (1 the first time).

        Example:
            >>> Message("i", "b", "rh", {"ApproximateReceiveCount": "3"}).receive_count
            3
        """
        return int(self.attributes.get("ApproximateReceiveCount", "1"))

    def json(self) -> Any:
        """The body parsed as JSON."""
        return json.loads(self.body)


@dataclass(frozen=True)
class SendFailure:
    """A message :meth:`SQS.send_many` could not send.

    Example:
        >>> SendFailure("hello", "InternalError", "try again", sender_fault=False).code
        'InternalError'
    """

    body: str
    code: str
    message: str
    sender_fault: bool


@dataclass(frozen=True)
class ConsumeResult:
    """What :meth:`SQS.consume` did before it stopped.

    Example:
        >>> ConsumeResult(delivered=3, handled=2, failed=1)
        ConsumeResult(delivered=3, handled=2, failed=1)
    """

    delivered: int
    handled: int
    failed: int


def _entry(item: str | Mapping[str, Any]) -> dict[str, Any]:
    if isinstance(item, str):
        return {"MessageBody": item}
    if isinstance(item, Mapping) and isinstance(item.get("MessageBody"), str):
        return {key: value for key, value in item.items() if key != "Id"}
    raise ValidationError(
        f"send_many() takes message bodies (str) or SendMessageBatch entries with a "
        f"'MessageBody', got {item!r:.80}"
    )


def _size(entry: Mapping[str, Any]) -> int:
    attributes = entry.get("MessageAttributes")
    size = len(entry["MessageBody"].encode())
    return size + len(json.dumps(attributes, default=str)) if attributes else size


class _Heartbeat:
    """Extends a message's visibility every half timeout while the handler runs."""

    def __init__(self, queue: SQS, message: Message, visibility_timeout: int) -> None:
        self._queue = queue
        self._message = message
        self._timeout = visibility_timeout
        self._done = threading.Event()
        self._thread = threading.Thread(
            target=with_current_context(self._run), name="utils-aws-sqs-heartbeat", daemon=True
        )

    def _run(self) -> None:
        interval = max(self._timeout / 2, 0.5)
        while not self._done.wait(interval):
            try:
                self._queue._call(
                    "change_message_visibility",
                    QueueUrl=self._queue.queue_url,
                    ReceiptHandle=self._message.receipt_handle,
                    VisibilityTimeout=self._timeout,
                )
            except AWSError:
                return  # reported as aws.error; the message may be redelivered
            SQS_VISIBILITY_EXTENDED.emit(queue=self._queue.name, message_id=self._message.id)

    def __enter__(self) -> None:
        if self._timeout > 0:
            self._thread.start()

    def __exit__(self, *exc_info: object) -> None:
        self._done.set()
        if self._thread.is_alive():
            self._thread.join()


class SQS(Service):
    """One queue, by URL. ``client=`` or client options (``region=`` ...) optional.

    Example:
        >>> SQS("https://sqs.eu-west-1.amazonaws.com/123456789012/jobs").name
        'jobs'
    """

    service = "sqs"

    def __init__(self, queue_url: str, *, client: Any = None, **overrides: Any) -> None:
        if not isinstance(queue_url, str) or "/" not in queue_url:
            raise ValidationError(f"queue_url must be the queue's URL, got {queue_url!r}")
        super().__init__(client=client, **overrides)
        self.queue_url: str = queue_url
        self.name: str = queue_url.rstrip("/").rsplit("/", 1)[-1]

    def __repr__(self) -> str:
        return f"SQS({self.queue_url!r})"

    def send(
        self,
        body: str,
        *,
        delay_seconds: int = 0,
        attributes: Mapping[str, Any] | None = None,
        group_id: str | None = None,
        deduplication_id: str | None = None,
    ) -> str:
        """Send one message; return its message id.

        ``group_id`` / ``deduplication_id`` are for FIFO queues; ``attributes`` are
        SQS message attributes (``{"kind": {"DataType": "String", "StringValue": "x"}}``).
        """
        if not isinstance(body, str):
            raise ValidationError(f"an SQS message body is a str, got {type(body).__name__}")
        params: dict[str, Any] = {"QueueUrl": self.queue_url, "MessageBody": body}
        if delay_seconds:
            params["DelaySeconds"] = non_negative_int(delay_seconds, "delay_seconds")
        if attributes:
            params["MessageAttributes"] = dict(attributes)
        if group_id is not None:
            params["MessageGroupId"] = group_id
        if deduplication_id is not None:
            params["MessageDeduplicationId"] = deduplication_id
        return str(self._call("send_message", **params)["MessageId"])

    def send_many(
        self,
        messages: Iterable[str | Mapping[str, Any]],
        *,
        max_tries: int = 3,
        sleep: Callable[[float], None] = time.sleep,
    ) -> list[SendFailure]:
        """Send in batches of 10 (<= 256 KiB); retry failed entries; return what still failed.

        Entries SQS refused because of the sender (bad attributes, too large) are not
        retried. ``messages`` are bodies or ``SendMessageBatch`` entries without ``Id``.

        Example:
            >>> from utils.aws import client
            >>> from utils.aws.testing import mocked_aws
            >>> with mocked_aws():
            ...     queue = SQS(client("sqs").create_queue(QueueName="q")["QueueUrl"])
            ...     queue.send_many(["a", "b", {"MessageBody": "c", "DelaySeconds": 1}])
            []
        """
        positive_int(max_tries, "max_tries")
        failures: list[SendFailure] = []
        batch: list[dict[str, Any]] = []
        size = 0
        for item in messages:
            entry = _entry(item)
            entry_size = _size(entry)
            if batch and (len(batch) == BATCH or size + entry_size > MAX_BATCH_BYTES):
                failures += self._send_batch(batch, max_tries, sleep)
                batch, size = [], 0
            batch.append(entry)
            size += entry_size
        if batch:
            failures += self._send_batch(batch, max_tries, sleep)
        return failures

    def _send_batch(
        self, entries: list[dict[str, Any]], max_tries: int, sleep: Callable[[float], None]
    ) -> list[SendFailure]:
        pending = {str(index): entry for index, entry in enumerate(entries)}
        final: list[SendFailure] = []
        for attempt in range(1, max_tries + 1):
            response = self._call(
                "send_message_batch",
                QueueUrl=self.queue_url,
                Entries=[{"Id": id_, **entry} for id_, entry in pending.items()],
            )
            failed = response.get("Failed", ())
            retry: dict[str, dict[str, Any]] = {}
            for item in failed:
                entry = pending[item["Id"]]
                failure = SendFailure(
                    body=entry["MessageBody"],
                    code=str(item.get("Code", "Unknown")),
                    message=str(item.get("Message", "")),
                    sender_fault=bool(item.get("SenderFault", False)),
                )
                if failure.sender_fault or attempt == max_tries:
                    final.append(failure)
                    SQS_SEND_FAILED.emit(queue=self.name, code=failure.code)
                else:
                    retry[item["Id"]] = entry
            if not retry:
                break
            pending = retry
            sleep(0.05 * 2 ** (attempt - 1))
        return final

    def consume(
        self,
        handler: Callable[[Message], object],
        *,
        batch_size: int = 10,
        wait_time: int = 20,
        visibility_timeout: int = 30,
        max_messages: int | None = None,
        stop: threading.Event | None = None,
        handle_sigterm: bool = True,
    ) -> ConsumeResult:
        """Receive and handle messages until ``stop`` is set, SIGTERM, or ``max_messages``.

        Args:
            handler: Called with each :class:`Message`; returning means handled (the message
                is deleted), raising means failed (it stays for redelivery).
            batch_size: Messages per ReceiveMessage (1-10).
            wait_time: Long-poll seconds (0-20); ``stop`` is noticed between polls.
            visibility_timeout: Seconds a received message stays hidden; extended every half
                of it while the handler runs.
            max_messages: Stop after this many deliveries handed to the handler
                (redeliveries count); None = no limit.
            stop: Set it (from another thread) to stop after the current message.
            handle_sigterm: In the main thread, SIGTERM sets ``stop`` while consuming.
        """
        batch_size = positive_int(batch_size, "batch_size")
        if batch_size > BATCH:
            raise ValidationError(f"batch_size must be at most {BATCH}, got {batch_size}")
        wait_time = non_negative_int(wait_time, "wait_time")
        visibility_timeout = non_negative_int(visibility_timeout, "visibility_timeout")
        if max_messages is not None:
            positive_int(max_messages, "max_messages")
        stop = stop if stop is not None else threading.Event()
        restore = self._on_sigterm(stop) if handle_sigterm else None
        delivered = handled = failed = 0
        try:
            while not stop.is_set() and (max_messages is None or delivered < max_messages):
                want = (
                    batch_size
                    if max_messages is None
                    else min(batch_size, max_messages - delivered)
                )
                response = self._call(
                    "receive_message",
                    QueueUrl=self.queue_url,
                    MaxNumberOfMessages=want,
                    WaitTimeSeconds=wait_time,
                    VisibilityTimeout=visibility_timeout,
                    AttributeNames=["All"],
                    MessageAttributeNames=["All"],
                )
                done: list[Message] = []
                left: list[Message] = []
                for raw in response.get("Messages", ()):
                    message = Message(
                        id=raw["MessageId"],
                        body=raw.get("Body", ""),
                        receipt_handle=raw["ReceiptHandle"],
                        attributes=raw.get("Attributes", {}),
                        message_attributes=raw.get("MessageAttributes", {}),
                    )
                    if stop.is_set():
                        left.append(message)
                        continue
                    delivered += 1
                    if self._handle(handler, message, visibility_timeout):
                        done.append(message)
                        handled += 1
                    else:
                        failed += 1
                self._delete(done)
                self._release(left)
        finally:
            if restore is not None:
                restore()
        return ConsumeResult(delivered=delivered, handled=handled, failed=failed)

    def _handle(
        self, handler: Callable[[Message], object], message: Message, visibility_timeout: int
    ) -> bool:
        with _Heartbeat(self, message, visibility_timeout):
            try:
                handler(message)
            except Exception as exc:
                SQS_HANDLER_FAILED.emit(
                    queue=self.name,
                    error=type(exc).__name__,
                    message_id=message.id,
                    receive_count=message.receive_count,
                    detail=str(exc)[:200],
                )
                return False
        return True

    def _delete(self, messages: list[Message]) -> None:
        for start in range(0, len(messages), BATCH):
            chunk = messages[start : start + BATCH]
            response = self._call(
                "delete_message_batch",
                QueueUrl=self.queue_url,
                Entries=[
                    {"Id": str(index), "ReceiptHandle": message.receipt_handle}
                    for index, message in enumerate(chunk)
                ],
            )
            for item in response.get("Failed", ()):
                SQS_DELETE_FAILED.emit(
                    queue=self.name,
                    code=str(item.get("Code", "Unknown")),
                    message_id=chunk[int(item["Id"])].id,
                )

    def _release(self, messages: list[Message]) -> None:
        """Make messages received but not handled (we are stopping) visible again at once."""
        for message in messages:
            # On failure it becomes visible when its visibility timeout ends anyway.
            with contextlib.suppress(AWSError):
                self._call(
                    "change_message_visibility",
                    QueueUrl=self.queue_url,
                    ReceiptHandle=message.receipt_handle,
                    VisibilityTimeout=0,
                )

    @staticmethod
    def _on_sigterm(stop: threading.Event) -> Callable[[], None] | None:
        if threading.current_thread() is not threading.main_thread():
            return None
        previous = signal.getsignal(signal.SIGTERM)

        def on_sigterm(signum: int, frame: object) -> None:
            stop.set()

        signal.signal(signal.SIGTERM, on_sigterm)

        def restore() -> None:
            signal.signal(signal.SIGTERM, previous)

        return restore
