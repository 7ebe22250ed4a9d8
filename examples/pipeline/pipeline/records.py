"""Parse, validate and transform the rows of one object (no I/O).

Input rows have five fields, as a CSV file with this header or as JSON-lines objects::

    order_id,sku,quantity,unit_price,ordered_at
    o-1001,book-1,2,12.50,2026-03-01T09:30:00+01:00

A valid row becomes one tuple of :data:`COLUMNS`: the SKU upper-cased, the price exact (a
decimal with two places, never a float), ``amount = quantity * unit_price``, and the time in
UTC. A bad row becomes a :class:`Reject` with its line number and the reason; it never stops
the load.
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from decimal import Decimal, InvalidOperation
from typing import Any

from utils.core import ValidationError

__all__ = ["COLUMNS", "FIELDS", "REJECT_COLUMNS", "Parsed", "Reject", "parse_object", "transform"]

#: The fields of an input row, in CSV header order.
FIELDS = ("order_id", "sku", "quantity", "unit_price", "ordered_at")
#: The columns loaded into ``order_lines``, in this order.
COLUMNS = (
    "source_key",
    "line_no",
    "order_id",
    "sku",
    "quantity",
    "unit_price",
    "amount",
    "ordered_at",
)
#: The columns of ``rejects``.
REJECT_COLUMNS = ("source_key", "line_no", "reason", "raw")
#: Object key suffixes and their format.
FORMATS = {".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl"}

_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")
_CENT = Decimal("0.01")
_MAX_PRICE = Decimal(1_000_000)
_MAX_QUANTITY = 10_000


@dataclass(frozen=True)
class Reject:
    """A row that was not loaded: where it was, why, and the row as read."""

    line_no: int
    reason: str
    raw: str


@dataclass
class Parsed:
    """The rows of one object: ``rows`` to load (tuples of :data:`COLUMNS`), ``rejects``."""

    rows: list[tuple[Any, ...]]
    rejects: list[Reject]

    @property
    def read(self) -> int:
        """Rows read: loaded plus rejected."""
        return len(self.rows) + len(self.rejects)


def format_of(key: str) -> str | None:
    """``"csv"``, ``"jsonl"``, or None for a key this pipeline does not read.

    Example:
        >>> format_of("2026/03/orders.csv"), format_of("orders.ndjson"), format_of("x.parquet")
        ('csv', 'jsonl', None)
    """
    for suffix, kind in FORMATS.items():
        if key.endswith(suffix):
            return kind
    return None


def transform(fields: Mapping[str, Any]) -> tuple[str, str, int, Decimal, Decimal, datetime]:
    """Validate one input row; return (order_id, sku, quantity, unit_price, amount, ordered_at).

    CSV gives every field as text; JSON may give numbers, so both are accepted where exact
    (an integer quantity, a price as text or integer: never a float, which cannot hold 0.10).

    Raises:
        ValidationError: The first problem, naming the field.

    Example:
        >>> transform({"order_id": "o-1", "sku": " book-1 ", "quantity": "3",
        ...            "unit_price": "2.50", "ordered_at": "2026-03-01T09:30:00+01:00"})
        ('o-1', 'BOOK-1', 3, Decimal('2.50'), Decimal('7.50'), datetime.datetime(2026, 3, 1, 8, 30, tzinfo=datetime.timezone.utc))
    """
    order_id = fields.get("order_id")
    if not isinstance(order_id, str) or not _ID.fullmatch(order_id):
        raise ValidationError(f"order_id must be 1-64 letters, digits, '-' or '_': {order_id!r}")
    sku = fields.get("sku")
    sku = sku.strip().upper() if isinstance(sku, str) else None
    if not sku or not _ID.fullmatch(sku):
        raise ValidationError(
            f"sku must be 1-64 letters, digits, '-' or '_': {fields.get('sku')!r}"
        )
    quantity = _quantity(fields.get("quantity"))
    price = _price(fields.get("unit_price"))
    return order_id, sku, quantity, price, quantity * price, _timestamp(fields.get("ordered_at"))


def _quantity(value: object) -> int:
    number = None
    if type(value) is int:  # not bool
        number = value
    elif isinstance(value, str) and value.strip().isdigit():
        number = int(value)
    if number is None or not 1 <= number <= _MAX_QUANTITY:
        raise ValidationError(f"quantity must be an integer from 1 to {_MAX_QUANTITY}: {value!r}")
    return number


def _price(value: object) -> Decimal:
    price = None
    if isinstance(value, str) or type(value) is int:
        try:
            price = Decimal(value.strip() if isinstance(value, str) else value)
        except InvalidOperation:
            price = None
    # is_finite first: comparing a NaN raises.
    if price is None or not price.is_finite() or not 0 <= price < _MAX_PRICE:
        raise ValidationError(f"unit_price must be a decimal from 0 to {_MAX_PRICE}: {value!r}")
    if price != price.quantize(_CENT):
        raise ValidationError(f"unit_price has more than two decimal places: {value!r}")
    return price.quantize(_CENT)


def _timestamp(value: object) -> datetime:
    try:
        # Python 3.10's fromisoformat does not read the "Z" suffix.
        text = value[:-1] + "+00:00" if isinstance(value, str) and value.endswith("Z") else value
        moment = datetime.fromisoformat(text) if isinstance(text, str) else None
    except ValueError:
        moment = None
    if moment is None or moment.tzinfo is None:
        raise ValidationError(
            f"ordered_at must be an ISO-8601 time with a UTC offset, like "
            f"2026-03-01T09:30:00+01:00: {value!r}"
        )
    return moment.astimezone(timezone.utc)


def _csv_rows(text: str) -> Iterator[tuple[int, str, Mapping[str, Any] | None, str | None]]:
    reader = csv.reader(io.StringIO(text, newline=""))
    header = next(reader, None)
    if header is None:
        return
    if tuple(name.strip() for name in header) != FIELDS:
        raise ValidationError(f"a CSV object must start with the header {','.join(FIELDS)}")
    for values in reader:
        line_no = reader.line_num
        raw = ",".join(values)
        if not values:
            continue  # an empty line
        if len(values) != len(FIELDS):
            yield line_no, raw, None, f"expected {len(FIELDS)} fields, found {len(values)}"
        else:
            yield line_no, raw, dict(zip(FIELDS, values, strict=True)), None


def _jsonl_rows(text: str) -> Iterator[tuple[int, str, Mapping[str, Any] | None, str | None]]:
    # Split on "\n" only: str.splitlines would also split inside a JSON string holding a
    # raw U+2028 or form feed, which JSON allows.
    for line_no, line in enumerate(text.split("\n"), 1):
        if not line.strip():
            continue
        try:
            data = json.loads(line)
        except ValueError:
            yield line_no, line, None, "not a JSON object"
            continue
        if isinstance(data, dict):
            yield line_no, line, data, None
        else:
            yield line_no, line, None, "not a JSON object"


def parse_object(key: str, body: bytes) -> Parsed:
    """Every row of one object, loaded or rejected; line numbers are the object's lines.

    Raises:
        ValidationError: The object as a whole cannot be read (not UTF-8, a CSV without the
            header, a key with an unknown suffix): nothing of it is loaded.

    Example:
        >>> body = b"order_id,sku,quantity,unit_price,ordered_at\\n" \\
        ...        b"o-1,a,1,1.00,2026-01-01T00:00:00Z\\no-2,b,zero,1.00,2026-01-01T00:00:00Z\\n"
        >>> parsed = parse_object("in/x.csv", body)
        >>> len(parsed.rows), parsed.rejects[0].line_no, parsed.rejects[0].reason
        (1, 3, "quantity must be an integer from 1 to 10000: 'zero'")
    """
    kind = format_of(key)
    if kind is None:
        raise ValidationError(f"{key!r}: unknown format; expected one of {', '.join(FORMATS)}")
    try:
        text = body.decode("utf-8-sig")  # tolerate the BOM spreadsheet exports write
    except UnicodeDecodeError as exc:
        raise ValidationError(f"{key!r} is not UTF-8 text: {exc.reason}") from exc
    parsed = Parsed([], [])
    rows = _csv_rows(text) if kind == "csv" else _jsonl_rows(text)
    try:
        for line_no, raw, fields, problem in rows:
            reason = problem
            if fields is not None:
                try:
                    parsed.rows.append((key, line_no, *transform(fields)))
                    continue
                except ValidationError as exc:
                    reason = str(exc)
            parsed.rejects.append(Reject(line_no, reason or "invalid", raw))
    except csv.Error as exc:  # an unterminated quote, a NUL byte on older Pythons
        raise ValidationError(f"{key!r} is not valid CSV: {exc}") from exc
    return parsed
