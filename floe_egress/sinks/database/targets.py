"""What differs between the database types: dlt destination, file format, merge strategy."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel

from floe_egress.changes.keys import json_default
from floe_egress.errors import ConfigError
from floe_egress.sinks.database import ping, refusals
from floe_egress.sinks.database.models import (
    DuckdbConfig,
    MysqlConfig,
    PostgresConfig,
    SqliteConfig,
    url_password,
)
from floe_egress.sinks.database.pgdirect import PgDirect
from floe_egress.sinks.values import Rule

MergeStrategy = Literal["upsert", "delete-insert"]


def _json_text(value: Any) -> str:
    """JSON columns through SQLAlchemy (MySQL, SQLite): nested values may hold what
    `json` alone cannot write (dates, timestamps, decimals, binary)."""
    return json.dumps(value, default=json_default)


_JSON_ENGINE = {"json_serializer": _json_text}


@dataclass(frozen=True, slots=True)
class Target:
    sink_type: str
    where: str
    """The destination for messages: URL without password, dataset and table."""
    dataset: str
    table: str
    file_format: Literal["csv", "parquet"]
    merge_strategy: MergeStrategy
    text_only: bool
    """CSV load files: nested and binary values are sent as text (see frames.build_frame)."""
    key_index: bool
    masked: tuple[str, ...]
    """Values that must never appear in a message (the password)."""
    make_destination: Callable[[], Any]
    ping: Callable[[], None]
    """Connects and runs one query through the driver, without dlt (ping.py)."""
    refuses: tuple[Rule, ...] = ()
    """Values the database cannot store: their rows fail before the batch is sent."""
    direct: Callable[[], PgDirect] | None = None
    """Writes without dlt once dlt has made the table (pgdirect.py); PostgreSQL only."""


def _postgres(config: PostgresConfig) -> Target:
    url = config.credentials.replace("postgresql+psycopg2://", "postgresql://", 1)

    def destination() -> Any:
        import dlt
        from dlt.destinations.impl.postgres.configuration import PostgresCredentials

        credentials = PostgresCredentials(url)
        if credentials.password is None:
            # dlt insists on a password; trust and peer authentication need none
            credentials.password = ""
        return dlt.destinations.postgres(credentials=credentials)

    return Target(
        sink_type="postgres",
        where=config.describe(),
        dataset=config.dataset,
        table=config.table,
        file_format="csv",
        merge_strategy="upsert",
        text_only=True,
        key_index=config.key_index,
        masked=_masked(config.credentials),
        make_destination=destination,
        ping=lambda: ping.postgres(url),
        refuses=refusals.POSTGRES,
        direct=lambda: PgDirect(url, config.dataset, config.table),
    )


def _mysql(config: MysqlConfig) -> Target:
    scheme, rest = config.credentials.split("://", 1)
    url = f"mysql+pymysql://{rest}" if "+" not in scheme else config.credentials

    def destination() -> Any:
        import dlt

        return dlt.destinations.sqlalchemy(credentials=url, engine_kwargs=_JSON_ENGINE)

    return Target(
        sink_type="mysql",
        where=config.describe(),
        dataset=config.database,
        table=config.table,
        file_format="parquet",
        merge_strategy="delete-insert",
        text_only=False,
        key_index=config.key_index,
        masked=_masked(config.credentials),
        make_destination=destination,
        ping=lambda: ping.sqlalchemy_url(url),
        refuses=refusals.MYSQL,
    )


def _sqlite(config: SqliteConfig) -> Target:
    path = config.file

    def destination() -> Any:
        import dlt

        path.parent.mkdir(parents=True, exist_ok=True)
        return dlt.destinations.sqlalchemy(
            credentials=f"sqlite:///{path}", engine_kwargs=_JSON_ENGINE
        )

    return Target(
        sink_type="sqlite",
        where=config.describe(),
        # `main` is the file itself; other dlt datasets are separate ATTACHed files
        dataset="main",
        table=config.table,
        file_format="parquet",
        merge_strategy="delete-insert",
        text_only=False,
        key_index=config.key_index,
        masked=(),
        make_destination=destination,
        ping=lambda: ping.sqlite(path),
        refuses=refusals.SQLITE,
    )


def _duckdb(config: DuckdbConfig) -> Target:
    path = config.file

    def destination() -> Any:
        import dlt

        path.parent.mkdir(parents=True, exist_ok=True)
        return dlt.destinations.duckdb(credentials=str(path))

    return Target(
        sink_type="duckdb",
        where=config.describe(),
        dataset=config.dataset,
        table=config.table,
        file_format="parquet",
        merge_strategy="upsert",
        text_only=False,
        key_index=False,
        masked=(),
        make_destination=destination,
        ping=lambda: ping.duckdb(path),
        refuses=refusals.DUCKDB,
    )


def _masked(url: str) -> tuple[str, ...]:
    password = url_password(url)
    return (password,) if password else ()


def target_for(config: BaseModel) -> Target:
    if isinstance(config, PostgresConfig):
        return _postgres(config)
    if isinstance(config, MysqlConfig):
        return _mysql(config)
    if isinstance(config, SqliteConfig):
        return _sqlite(config)
    if isinstance(config, DuckdbConfig):
        return _duckdb(config)
    raise ConfigError(f"{type(config).__name__} is not a database sink_config")


__all__ = ["MergeStrategy", "Target", "target_for"]
