"""The four database sink types, registered when this module is imported."""

from __future__ import annotations

from floe_egress.sinks.base import Sink
from floe_egress.sinks.database.models import (
    DEFAULT_BATCH_SIZE,
    DuckdbConfig,
    MysqlConfig,
    PostgresConfig,
    SqliteConfig,
)
from floe_egress.sinks.registry import BuildRequest, SinkType, register

MODES = frozenset({"upsert", "update", "insert", "mirror", "append"})


def build(request: BuildRequest) -> Sink:
    from floe_egress.sinks.database.sink import DatabaseSink

    return DatabaseSink(request)


POSTGRES = register(
    SinkType(
        name="postgres",
        config_model=PostgresConfig,
        modes=MODES,
        build=build,
        description="A PostgreSQL table (dlt postgres destination, COPY of CSV load files)",
        default_batch_size=DEFAULT_BATCH_SIZE,
    )
)
MYSQL = register(
    SinkType(
        name="mysql",
        config_model=MysqlConfig,
        modes=MODES,
        build=build,
        description="A MySQL or MariaDB table (dlt sqlalchemy destination, pymysql)",
        default_batch_size=DEFAULT_BATCH_SIZE,
    )
)
SQLITE = register(
    SinkType(
        name="sqlite",
        config_model=SqliteConfig,
        modes=MODES,
        build=build,
        description="A table in a SQLite file (dlt sqlalchemy destination)",
        default_batch_size=DEFAULT_BATCH_SIZE,
    )
)
DUCKDB = register(
    SinkType(
        name="duckdb",
        config_model=DuckdbConfig,
        modes=MODES,
        build=build,
        description="A table in a local DuckDB file (dlt duckdb destination)",
        default_batch_size=DEFAULT_BATCH_SIZE,
    )
)

__all__ = ["DUCKDB", "MYSQL", "POSTGRES", "SQLITE", "build"]
