"""Database destinations: `postgres`, `mysql` (MySQL/MariaDB), `sqlite` and `duckdb`.

Each is loaded through dlt's own destination (postgres, sqlalchemy, duckdb). Importing
this package registers the four sink types without importing dlt, and so do building one
and checking its connection (ping.py): dlt is imported when the first batch is loaded.
"""

from __future__ import annotations

from floe_egress.sinks.database.models import (
    DuckdbConfig,
    MysqlConfig,
    PostgresConfig,
    SqliteConfig,
)
from floe_egress.sinks.database.types import DUCKDB, MYSQL, POSTGRES, SQLITE

__all__ = [
    "DUCKDB",
    "MYSQL",
    "POSTGRES",
    "SQLITE",
    "DuckdbConfig",
    "MysqlConfig",
    "PostgresConfig",
    "SqliteConfig",
]
