"""The shop app: products on PostgreSQL, cached in the tiered cache, prices from upstream."""
