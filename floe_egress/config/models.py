"""The floe.yaml models: frozen, unknown keys forbidden, defaults explicit.

Secret references (`${env:NAME}`, `${credential:NAME}`) stay unresolved strings here;
`floe_egress.config.secrets` resolves them only when a destination is built.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic_core import PydanticCustomError

from floe_egress.config.fields import FiniteFloat, Identifier, Port, Prose, Text, TimeoutSeconds
from floe_egress.config.filters import EXAMPLE, MAX_LENGTH, parse_filter
from floe_egress.config.urls import check_catalog_value, check_state_url, is_host

DEFAULT_STATE_DIR = ".floe-egress"
DEFAULT_HOST = "127.0.0.1"
SyncMode = Literal["upsert", "update", "insert", "mirror", "append"]
SYNC_MODES: tuple[str, ...] = ("upsert", "update", "insert", "mirror", "append")
DUPLICATE_NAME_ERROR = "duplicate_destination_name"

_NAME = re.compile(r"[a-z0-9_]+")
_PART = r"[A-Za-z_][A-Za-z0-9_\-]*"
_TABLE = re.compile(rf"{_PART}(\.{_PART})+")
CRON_HORIZON = timedelta(days=3653)
"""A cron expression must fire within this long (ten years) to be accepted."""
DEFAULT_INTERVAL_SECONDS = 1.0

Column = Annotated[Text, Field(min_length=1, max_length=256)]
"""A source column name."""


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)


class Metadata(_Model):
    name: Annotated[
        Text,
        Field(min_length=1, max_length=256, description="Name of this floe-egress deployment."),
    ]
    description: Prose | None = None
    labels: dict[Text, Text] = Field(default_factory=dict)


class CatalogConfig(BaseModel):
    """A pyiceberg catalog: `name` plus the properties `load_catalog` takes.

    Extra keys are the catalog's own properties (`uri`, `warehouse`, `credential`,
    `s3.endpoint`, ...), passed through unchanged; values may be secret references.
    """

    model_config = ConfigDict(frozen=True, extra="allow")
    # Every property: no control characters; one that holds a URL, a well-formed one.
    __pydantic_extra__: dict[str, Annotated[Any, AfterValidator(check_catalog_value)]] = Field(
        init=False
    )

    name: Annotated[Text, Field(min_length=1, description="Catalog name for load_catalog.")] = (
        "gold"
    )
    type: Annotated[
        Text, Field(min_length=1, description="pyiceberg catalog type: sql, rest, glue, hive, ...")
    ] = "sql"

    def properties(self) -> dict[str, Any]:
        """The load_catalog properties, secret references unresolved."""
        props: dict[str, Any] = {"type": self.type}
        props.update(self.model_extra or {})
        return props


class StateConfig(_Model):
    url: Annotated[
        str,
        Field(
            min_length=1,
            description="State store: sqlite:///path or postgresql://user@host:port/db "
            "(may be a secret reference).",
        ),
        AfterValidator(check_state_url),
    ] = f"sqlite:///{DEFAULT_STATE_DIR}/state.db"


def _host(value: str) -> str:
    if value and not is_host(value):
        raise ValueError(f"{value!r} is not an IP address or a host name")
    return value


class ServerConfig(_Model):
    host: Annotated[
        Text, AfterValidator(_host), Field(description="Address of the HTTP endpoints.")
    ] = DEFAULT_HOST
    port: Port = 8686
    token: Annotated[
        Annotated[Text, Field(min_length=1)] | None,
        Field(description="Bearer token for POST /v1/... (a secret reference, preferably)."),
    ] = None
    shutdown_grace_seconds: Annotated[FiniteFloat, Field(ge=0.1, le=3600)] = 30.0
    lease_seconds: Annotated[FiniteFloat, Field(ge=1, le=3600)] = 30.0
    """How long a daemon holds a destination without renewing (several daemons, one
    PostgreSQL state store): a dead daemon's destinations move after this long."""


class RateLimit(_Model):
    requests_per_second: Annotated[FiniteFloat, Field(ge=0.01, le=100_000)]
    burst: Annotated[int, Field(ge=1, le=100_000)] | None = None
    max_concurrency: Annotated[int, Field(ge=1, le=256)] = 4
    account: Annotated[Text, Field(min_length=1, max_length=256)] | None = None
    """Destinations with the same account share one budget (default: the sink's host)."""


class Schedule(_Model):
    interval_seconds: Annotated[FiniteFloat, Field(ge=0.1, le=7 * 86_400)] | None = None
    """Seconds between polls, from 0.1 s to a week (default 1 s); longer: use cron."""
    cron: Annotated[Text, Field(min_length=1, max_length=256)] | None = None

    @model_validator(mode="after")
    def _one_of(self) -> Schedule:
        if self.interval_seconds is not None and self.cron is not None:
            raise ValueError("give either interval_seconds or cron, not both")
        return self

    @field_validator("cron")
    @classmethod
    def _valid_cron(cls, value: str | None) -> str | None:
        if value is None:
            return value
        from apscheduler.triggers.cron import CronTrigger

        try:
            CronTrigger.from_crontab(value, timezone="UTC")
        except ValueError as exc:
            raise ValueError(
                f"invalid cron expression {value!r}: {exc} "
                "(expected five fields: minute hour day month day_of_week)"
            ) from None
        minute, hour, day, month, day_of_week = value.split()
        now = datetime.now(UTC)
        # The end date stops the search at the horizon instead of the year 9999.
        horizon = CronTrigger(
            minute=minute,
            hour=hour,
            day=day,
            month=month,
            day_of_week=day_of_week,
            timezone="UTC",
            end_date=now + CRON_HORIZON,
        )
        if horizon.get_next_fire_time(None, now) is None:
            raise ValueError(
                f"cron expression {value!r} never fires (no time in the next ten years "
                "matches it): check the day and month fields"
            )
        return value

    @property
    def effective_interval(self) -> float | None:
        if self.cron is not None:
            return None
        return (
            self.interval_seconds if self.interval_seconds is not None else DEFAULT_INTERVAL_SECONDS
        )


class RetryConfig(_Model):
    max_attempts: Annotated[int, Field(ge=1, le=100)] = 5
    initial_backoff_seconds: Annotated[FiniteFloat, Field(ge=0.01, le=3600)] = 0.5
    max_backoff_seconds: Annotated[FiniteFloat, Field(ge=0.01, le=3600)] = 60.0
    timeout_seconds: TimeoutSeconds = 30.0


class Destination(_Model):
    name: Annotated[str, Field(max_length=64, description="Unique destination name, [a-z0-9_]+.")]
    source_table: Annotated[
        str, Field(max_length=512, description="Iceberg table to follow: namespace.table.")
    ]
    sink_type: Annotated[Text, Field(min_length=1, description="See `floe-egress sinks`.")]
    sink_config: dict[str, Any] = Field(
        default_factory=dict,
        description="The sink type's own settings; values may be secret references.",
    )
    allow_private_network: Annotated[bool, Field(strict=True)] = Field(
        default=False,
        description="HTTP sink types only: let requests go to loopback and private "
        "addresses (RFC 1918, fc00::/7, 100.64.0.0/10) and over plain http://. "
        "Link-local and cloud metadata addresses stay refused. Database destinations "
        "connect where their credentials say.",
    )
    ref: Annotated[
        Text, Field(min_length=1, max_length=256, description="Branch or tag to follow.")
    ] = "main"
    primary_key: Annotated[
        list[Column] | None,
        Field(max_length=64, description="Key columns (default: the identifier fields)."),
    ] = None
    mode: SyncMode = "upsert"
    field_mapping: Annotated[
        dict[Column, Identifier] | None,
        Field(description="source column -> destination field; unmapped columns are not sent."),
    ] = None
    batch_size: Annotated[int, Field(ge=1, le=100_000)] | None = Field(
        default=None, description="Rows per request or load (default: the sink type's)."
    )
    rate_limit: RateLimit | None = None
    schedule: Schedule = Field(default_factory=Schedule)
    retry: RetryConfig = Field(default_factory=RetryConfig)
    max_attempts: Annotated[int, Field(ge=1, le=1000)] = 10
    """Attempts at a failed row before it is parked (still visible in `failures`)."""
    max_delete_fraction: Annotated[FiniteFloat, Field(ge=0, le=1)] = 0.5
    enabled: bool = True
    filter: Annotated[str, Field(max_length=MAX_LENGTH)] | None = Field(
        default=None,
        description="The rows the destination holds, in pyiceberg's expression syntax "
        f"(e.g. {EXAMPLE}): rows that start to match are inserted, rows that stop "
        "matching are deleted in mirror mode (an op `delete` event in append mode).",
    )

    @field_validator("filter")
    @classmethod
    def _valid_filter(cls, value: str | None) -> str | None:
        if value is not None:
            parse_filter(value)
        return value

    @field_validator("name")
    @classmethod
    def _valid_name(cls, value: str) -> str:
        if not _NAME.fullmatch(value):
            raise ValueError(
                f"{value!r} is not a valid destination name: use lowercase letters, "
                "digits and underscores ([a-z0-9_]+)"
            )
        return value

    @field_validator("source_table")
    @classmethod
    def _valid_table(cls, value: str) -> str:
        if not _TABLE.fullmatch(value):
            raise ValueError(
                f"{value!r} is not a table identifier: expected namespace.table "
                "(for example gold.customers)"
            )
        return value

    @field_validator("primary_key")
    @classmethod
    def _valid_key(cls, value: list[str] | None) -> list[str] | None:
        if value is None:
            return value
        if not value:
            raise ValueError("must name at least one column (or be left out)")
        if len(set(value)) != len(value):
            raise ValueError(f"names a column twice: {value}")
        return value

    @field_validator("field_mapping")
    @classmethod
    def _valid_mapping(cls, value: dict[str, str] | None) -> dict[str, str] | None:
        if value is None:
            return value
        if not value:
            raise ValueError("must map at least one column (or be left out to send all)")
        targets = list(value.values())
        dupes = sorted({t for t in targets if targets.count(t) > 1})
        if dupes:
            raise ValueError(f"maps several columns onto the same field: {dupes}")
        return value

    @model_validator(mode="after")
    def _mapping_spares_unmapped_keys(self) -> Destination:
        """An unmapped key column is sent under its own name: no other column may be
        mapped onto that name."""
        if self.field_mapping is None or self.primary_key is None:
            return self
        for column in self.primary_key:
            if column in self.field_mapping:
                continue
            for source, target in self.field_mapping.items():
                if target == column:
                    raise ValueError(
                        f"field_mapping maps {source!r} onto {column!r}, the name key column "
                        f"{column!r} is sent under (it is not in field_mapping); map the key "
                        "column as well, or choose another field"
                    )
        return self

    @property
    def namespace(self) -> str:
        return self.source_table.rsplit(".", 1)[0]

    @property
    def table_name(self) -> str:
        return self.source_table.rsplit(".", 1)[1]


class Ingestion(_Model):
    destinations: list[Destination] = Field(default_factory=list)

    @field_validator("destinations")
    @classmethod
    def _unique_names(cls, value: list[Destination]) -> list[Destination]:
        seen: set[str] = set()
        for dest in value:
            if dest.name in seen:
                raise PydanticCustomError(
                    DUPLICATE_NAME_ERROR,
                    "duplicate destination name '{name}'",
                    {"name": dest.name},
                )
            seen.add(dest.name)
        return value


class FloeSpec(_Model):
    """floe.yaml: what floe-egress syncs, from which catalog, to which destinations."""

    model_config = ConfigDict(title="floe.yaml")

    api_version: Literal["floe.dev/v1"] = Field(alias="apiVersion")
    kind: Literal["FloeSpec"]
    metadata: Metadata
    catalog: CatalogConfig = Field(default_factory=CatalogConfig)
    state: StateConfig = Field(default_factory=StateConfig)
    server: ServerConfig = Field(default_factory=ServerConfig)
    ingestion: Ingestion = Field(default_factory=Ingestion)

    def destination(self, name: str) -> Destination:
        for dest in self.ingestion.destinations:
            if dest.name == name:
                return dest
        known = ", ".join(d.name for d in self.ingestion.destinations) or "none"
        from floe_egress.errors import ConfigError

        raise ConfigError(f"no destination named {name!r} (configured: {known})")
