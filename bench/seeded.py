"""The benchmarks' database: migrated, and seeded once with the deterministic demo data (the last customer has
BIG_CUSTOMER_ORDERS orders); later runs reuse it."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import func, select

from bot.db import Database
from bot.models import Customer
from devkit.seed import seed

BIG_CUSTOMER_ORDERS = 5000


def seeded_database(database_url: str, customers: int) -> tuple[Database, int]:
    """The database at `database_url`, seeded with `customers` customers when it has none; (it, its customers)."""
    if database_url.startswith("sqlite:///"):
        Path(database_url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    db = Database(database_url)
    db.upgrade()
    if _customers(db) == 0:
        print(f"seeding {customers:,} customers and one with {BIG_CUSTOMER_ORDERS:,} orders …", flush=True)
        summary = seed(db, customers, big_customer_orders=BIG_CUSTOMER_ORDERS)
        print(f"seeded {summary.customers:,} customers, {summary.orders:,} orders in {summary.seconds:.0f} s")
    return db, _customers(db)


def _customers(db: Database) -> int:
    with db.session() as session:
        return session.scalar(select(func.count()).select_from(Customer)) or 0
