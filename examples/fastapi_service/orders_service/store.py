"""Products and orders in PostgreSQL, with product reads cached in a tiered cache.

**No lost updates.** Placing an order decrements the stock with one conditional statement,
``UPDATE products SET stock = stock - %s WHERE id = %s AND stock >= %s``, inside
:meth:`~utils.db.AsyncDatabase.run_in_transaction` at ``read committed``. Concurrent orders
of one product queue on its row lock, and PostgreSQL re-checks the ``WHERE`` against the
row as the previous order left it, so each order sees the true stock: fifty concurrent
orders of forty items sell exactly forty. (No read-modify-write in Python, so no need for
``serializable`` and its retries; ``run_in_transaction`` still retries deadlocks.)

**Cache invalidation.** ``product:<id>`` lives in an :class:`~utils.cache.AsyncTieredCache`
(memory in every process, Redis shared). A write to a product — a PUT or an order changing
its stock — deletes the key *after* the transaction committed, which also tells every other
process to drop its memory copy. Deleting before the commit would let a concurrent read put
the old row back.

Example:
    >>> Product(id=7, sku="BOOK-1", name="A book", stock=3).as_dict()
    {'id': 7, 'sku': 'BOOK-1', 'name': 'A book', 'stock': 3}
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from utils.cache import AsyncTieredCache
from utils.core import ConflictError, NotFoundError
from utils.db import AsyncDatabase, UniqueViolationError

__all__ = ["InsufficientStockError", "Order", "Product", "Store", "product_key"]


class InsufficientStockError(ConflictError):
    """Fewer items in stock than the order asks for: answered ``409 Conflict``.

    Example:
        >>> InsufficientStockError("product 7 has 2 in stock, 3 requested").code
        'insufficient_stock'
    """

    default_code = "insufficient_stock"


@dataclass(frozen=True)
class Product:
    """A product as the API shows it.

    Example:
        >>> Product(id=1, sku="MUG", name="Mug", stock=0).stock
        0
    """

    id: int
    sku: str
    name: str
    stock: int

    def as_dict(self) -> dict[str, Any]:
        """The JSON-ready dict (also what the cache stores).

        Example:
            >>> Product(id=1, sku="MUG", name="Mug", stock=0).as_dict()["sku"]
            'MUG'
        """
        return asdict(self)


@dataclass(frozen=True)
class Order:
    """A placed order.

    Example:
        >>> Order(id=1, product_id=7, quantity=2, unit_price_cents=1250).total_cents
        2500
    """

    id: int
    product_id: int
    quantity: int
    unit_price_cents: int

    @property
    def total_cents(self) -> int:
        """What the order costs.

        Example:
            >>> Order(id=1, product_id=7, quantity=3, unit_price_cents=5).total_cents
            15
        """
        return self.quantity * self.unit_price_cents

    def as_dict(self) -> dict[str, Any]:
        """The JSON-ready dict, with the total.

        Example:
            >>> Order(id=1, product_id=7, quantity=2, unit_price_cents=5).as_dict()["total_cents"]
            10
        """
        return {**asdict(self), "total_cents": self.total_cents}


def product_key(product_id: int) -> str:
    """The cache key of a product.

    Example:
        >>> product_key(42)
        'product:42'
    """
    return f"product:{product_id}"


class Store:
    """The service's data: the database for the truth, the cache for fast product reads.

    Args:
        db: An open :class:`~utils.db.AsyncDatabase` on a database with ``schema.sql``.
        cache: The product cache.
        product_ttl: Seconds a product stays cached.

    Example:
        >>> Store  # doctest: +ELLIPSIS
        <class '...Store'>
    """

    def __init__(self, db: AsyncDatabase, cache: AsyncTieredCache, *, product_ttl: float) -> None:
        self.db = db
        self.cache = cache
        self.product_ttl = product_ttl

    async def product(self, product_id: int) -> Product:
        """The product, from the cache when it is there (a miss loads it once per process).

        Raises:
            NotFoundError: No such product (not cached: a later PUT creates it).
        """

        async def load() -> dict[str, Any]:
            row = await self.db.fetch_one(
                "SELECT id, sku, name, stock FROM products WHERE id = %s", [product_id]
            )
            if row is None:
                raise NotFoundError(f"no product {product_id}")
            return dict(row)

        data = await self.cache.get_or_set(product_key(product_id), load, ttl=self.product_ttl)
        return Product(**data)

    async def put_product(self, product_id: int, sku: str, name: str, stock: int) -> Product:
        """Create or replace a product; its cached copy is dropped everywhere.

        Raises:
            ConflictError: Another product already has this SKU.
        """
        try:
            row = await self.db.fetch_one(
                """
                INSERT INTO products (id, sku, name, stock) VALUES (%s, %s, %s, %s)
                ON CONFLICT (id) DO UPDATE
                    SET sku = excluded.sku, name = excluded.name, stock = excluded.stock,
                        updated_at = now()
                RETURNING id, sku, name, stock
                """,
                [product_id, sku, name, stock],
            )
        except UniqueViolationError:
            # Our own words: the driver's message names the constraint, not for clients.
            raise ConflictError(f"another product already has the SKU {sku!r}") from None
        await self.cache.delete(product_key(product_id))
        assert row is not None  # INSERT ... RETURNING always returns the row
        return Product(**row)

    async def place_order(
        self, product_id: int, quantity: int, unit_price_cents: int, client: str
    ) -> Order:
        """Take ``quantity`` items from the stock and record the order, atomically.

        Raises:
            NotFoundError: No such product.
            InsufficientStockError: Not enough stock; nothing was changed.
        """

        async def place() -> Order:
            left = await self.db.fetch_val(
                "UPDATE products SET stock = stock - %s, updated_at = now() "
                "WHERE id = %s AND stock >= %s RETURNING stock",
                [quantity, product_id, quantity],
            )
            if left is None:
                stock = await self.db.fetch_val(
                    "SELECT stock FROM products WHERE id = %s", [product_id]
                )
                if stock is None:
                    raise NotFoundError(f"no product {product_id}")
                raise InsufficientStockError(
                    f"product {product_id} has {stock} in stock, {quantity} requested"
                )
            order_id = await self.db.fetch_val(
                "INSERT INTO orders (product_id, quantity, unit_price_cents, client) "
                "VALUES (%s, %s, %s, %s) RETURNING id",
                [product_id, quantity, unit_price_cents, client],
            )
            return Order(int(order_id), product_id, quantity, unit_price_cents)

        order = await self.db.run_in_transaction(place, isolation="read committed")
        await self.cache.delete(product_key(product_id))  # after the commit: see the docs
        return order

    async def order(self, order_id: int) -> Order:
        """A placed order (always from the database: orders are not cached).

        Raises:
            NotFoundError: No such order.
        """
        row = await self.db.fetch_one(
            "SELECT id, product_id, quantity, unit_price_cents FROM orders WHERE id = %s",
            [order_id],
        )
        if row is None:
            raise NotFoundError(f"no order {order_id}")
        return Order(**row)
