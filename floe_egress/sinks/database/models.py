"""sink_config of the database sink types: `postgres`, `mysql`, `sqlite`, `duckdb`.

Values may be secret references (`${env:APP_DB_URL}`) when floe.yaml is validated; they
are resolved before a destination is built and validated again then. `describe()` gives
the destination without its password, for messages and logs.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated
from urllib.parse import unquote, urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from floe_egress.config.secrets import has_references

DEFAULT_BATCH_SIZE = 100_000
"""Rows per dlt run; a run costs 0.1-0.2 s whatever its size, so database batches are large."""

_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")
_POSTGRES_SCHEMES = ("postgresql", "postgres", "postgresql+psycopg2")
_MYSQL_SCHEMES = ("mysql", "mysql+pymysql", "mariadb", "mariadb+pymysql")


def _identifier(value: str) -> str:
    if has_references(value) or _IDENTIFIER.fullmatch(value):
        return value
    raise ValueError(
        f"{value!r} is not a plain SQL identifier: use letters, digits and underscores, "
        "starting with a letter or underscore, at most 63 characters"
    )


def url_password(url: str) -> str | None:
    """The password of a database URL, for masking; None when it has none."""
    try:
        password = urlsplit(url).password
    except ValueError:
        return None
    return unquote(password) if password else None


def redacted_url(url: str) -> str:
    """scheme://user@host:port/database, without password or query."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        return url.split("://", 1)[0] + "://<unparsable URL>"
    user = f"{unquote(parts.username)}@" if parts.username else ""
    return f"{parts.scheme}://{user}{host}{port}{parts.path}"


def _url(value: str, schemes: tuple[str, ...], example: str) -> str:
    if has_references(value):
        return value
    scheme = value.split("://", 1)[0] if "://" in value else ""
    if scheme not in schemes:
        raise ValueError(f"must be a URL like {example} (got scheme {scheme or 'none'!r})")
    try:
        parts = urlsplit(value)
        _ = parts.port
    except ValueError as exc:
        raise ValueError(f"is not a valid URL: {exc}") from None
    if not parts.hostname:
        raise ValueError(f"names no host: expected a URL like {example}")
    return value


class _DbConfig(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    table: Annotated[str, Field(description="Destination table (created on first load).")]
    key_index: Annotated[
        bool,
        Field(
            description="Create a unique index on the key columns (the event identity in "
            "append mode) when the table has none by that name; merges look keys up by it."
        ),
    ] = True

    _valid_table = field_validator("table")(_identifier)


class PostgresConfig(_DbConfig):
    credentials: Annotated[str, Field(description="postgresql://user:password@host:5432/database")]
    dataset: Annotated[str, Field(description="Schema in the database (created if missing).")] = (
        "public"
    )

    @field_validator("credentials")
    @classmethod
    def _valid_url(cls, value: str) -> str:
        return _url(value, _POSTGRES_SCHEMES, "postgresql://user:password@host:5432/database")

    _valid_dataset = field_validator("dataset")(_identifier)

    def describe(self) -> str:
        return f"postgres {redacted_url(self.credentials)}, table {self.dataset}.{self.table}"


class MysqlConfig(_DbConfig):
    credentials: Annotated[
        str, Field(description="mysql://user:password@host:3306/database (MySQL or MariaDB)")
    ]
    dataset: Annotated[
        str | None,
        Field(description="Database of the table (default: the database of the URL)."),
    ] = None

    @field_validator("credentials")
    @classmethod
    def _valid_url(cls, value: str) -> str:
        value = _url(value, _MYSQL_SCHEMES, "mysql://user:password@host:3306/database")
        if not has_references(value) and not urlsplit(value).path.strip("/"):
            raise ValueError("names no database: expected mysql://user:password@host:3306/database")
        return value

    @field_validator("dataset")
    @classmethod
    def _valid_dataset(cls, value: str | None) -> str | None:
        return None if value is None else _identifier(value)

    @property
    def database(self) -> str:
        return self.dataset or unquote(urlsplit(self.credentials).path.strip("/"))

    def describe(self) -> str:
        return f"mysql {redacted_url(self.credentials)}, table {self.database}.{self.table}"


class SqliteConfig(_DbConfig):
    path: Annotated[str | None, Field(description="The database file (created if missing).")] = None
    credentials: Annotated[
        str | None, Field(description="Or a URL: sqlite:////absolute/path.db")
    ] = None

    @model_validator(mode="after")
    def _one_location(self) -> SqliteConfig:
        if (self.path is None) == (self.credentials is None):
            raise ValueError("give either path or credentials (a sqlite:/// URL), not both")
        credentials = self.credentials
        if (
            credentials is not None
            and not has_references(credentials)
            and not credentials.startswith("sqlite:///")
        ):
            raise ValueError("credentials must be a sqlite:///path URL")
        return self

    @property
    def file(self) -> Path:
        if self.path is not None:
            return Path(self.path).expanduser().resolve()
        assert self.credentials is not None
        return Path(self.credentials.removeprefix("sqlite:///")).expanduser().resolve()

    def describe(self) -> str:
        return f"sqlite {self.file}, table {self.table}"


class DuckdbConfig(_DbConfig):
    path: Annotated[str, Field(min_length=1, description="The DuckDB database file.")]
    dataset: Annotated[str, Field(description="Schema in the database.")] = "main"
    key_index: Annotated[
        bool,
        Field(description="Not offered: DuckDB's unique indexes refuse updates of indexed rows."),
    ] = False

    _valid_dataset = field_validator("dataset")(_identifier)

    @field_validator("key_index")
    @classmethod
    def _no_index(cls, value: bool) -> bool:
        if value:
            raise ValueError("is not offered for duckdb (its unique indexes refuse updates)")
        return value

    @property
    def file(self) -> Path:
        return Path(self.path).expanduser().resolve()

    def describe(self) -> str:
        return f"duckdb {self.file}, table {self.dataset}.{self.table}"


DbConfig = PostgresConfig | MysqlConfig | SqliteConfig | DuckdbConfig

__all__ = [
    "DEFAULT_BATCH_SIZE",
    "DbConfig",
    "DuckdbConfig",
    "MysqlConfig",
    "PostgresConfig",
    "SqliteConfig",
    "redacted_url",
    "url_password",
]
