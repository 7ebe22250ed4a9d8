-- The orders service's tables. Apply once per database (or schema) before starting the
-- service: psql "$ORDERS_DATABASE_URL" -f schema.sql. The service never creates tables:
-- schema changes belong to a migration step, not to every pod's start-up.

CREATE TABLE IF NOT EXISTS products (
    id          bigint      PRIMARY KEY,
    sku         text        NOT NULL UNIQUE,
    name        text        NOT NULL,
    -- The CHECK is the last line of defence: the conditional UPDATE in store.py never
    -- lets stock go below zero, and this makes any other writer fail loudly if it tried.
    stock       integer     NOT NULL CHECK (stock >= 0),
    updated_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE IF NOT EXISTS orders (
    id                bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    product_id        bigint      NOT NULL REFERENCES products (id),
    quantity          integer     NOT NULL CHECK (quantity > 0),
    unit_price_cents  integer     NOT NULL CHECK (unit_price_cents >= 0),
    -- A hash of the API key that placed the order: who ordered, never the key itself.
    client            text        NOT NULL,
    created_at        timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX IF NOT EXISTS orders_product_id ON orders (product_id);
