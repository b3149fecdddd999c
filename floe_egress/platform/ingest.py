"""The ingestion half of the floe-egress plugin: load an Arrow table or a dlt source into Iceberg.

Small on purpose: the demo and the tests use it to build Gold tables. Write modes:
`append`, `replace` (overwrite the table) and `merge` (upsert by the primary key).
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
from pyiceberg.catalog import Catalog
from pyiceberg.exceptions import NamespaceAlreadyExistsError, NoSuchTableError
from pyiceberg.table import Table

from floe_egress.platform.contract import IngestionConfig, IngestionResult

WRITE_MODES = ("append", "replace", "merge")
SOURCE_TYPES = ("arrow", "dlt")


@dataclass(frozen=True, slots=True)
class IngestionPipeline:
    """A validated ingestion: where the rows come from and how they are written."""

    catalog: Catalog
    source_type: str
    source: Any
    identifier: str
    write_mode: str
    primary_key: tuple[str, ...]


def validate(config: IngestionConfig) -> None:
    if config.source_type not in SOURCE_TYPES:
        raise ValueError(
            f"source_type {config.source_type!r} is not supported; use one of {SOURCE_TYPES}"
        )
    if config.write_mode not in WRITE_MODES:
        raise ValueError(f"write_mode {config.write_mode!r}: use one of {WRITE_MODES}")
    if config.destination_table.count(".") < 1:
        raise ValueError(
            f"destination_table {config.destination_table!r}: expected namespace.table"
        )
    if config.source_type == "arrow" and not isinstance(config.source_config.get("data"), pa.Table):
        raise ValueError("source_config['data'] must be a pyarrow.Table for source_type 'arrow'")
    if config.source_type == "dlt" and "source" not in config.source_config:
        raise ValueError("source_config['source'] must be a dlt source or resource")
    if config.write_mode == "merge" and not config.source_config.get("primary_key"):
        raise ValueError("write_mode 'merge' needs source_config['primary_key']")


def _rows_of_dlt_source(source: Any) -> pa.Table:
    """Extract every item of a dlt source/resource into one Arrow table."""
    batches: list[pa.Table] = []
    dicts: list[dict[str, Any]] = []
    for item in source:
        if isinstance(item, pa.Table):
            batches.append(item)
        elif isinstance(item, pa.RecordBatch):
            batches.append(pa.Table.from_batches([item]))
        elif isinstance(item, dict):
            dicts.append(item)
        elif isinstance(item, list):
            dicts.extend(item)
    if dicts:
        batches.append(pa.Table.from_pylist(dicts))
    if not batches:
        return pa.table({})
    return pa.concat_tables(batches, promote_options="permissive")


def _table(catalog: Catalog, identifier: str, data: pa.Table, key: tuple[str, ...]) -> Table:
    namespace = identifier.rsplit(".", 1)[0]
    with contextlib.suppress(NamespaceAlreadyExistsError):
        catalog.create_namespace(namespace)
    try:
        return catalog.load_table(identifier)
    except NoSuchTableError:
        pass
    fields = [f.with_nullable(False) if f.name in key else f for f in data.schema]
    table = catalog.create_table(identifier, schema=pa.schema(fields))
    if key:
        with table.update_schema() as update:
            update.set_identifier_fields(*key)
        table = catalog.load_table(identifier)
    return table


def run(pipeline: IngestionPipeline) -> IngestionResult:
    started = time.monotonic()
    if pipeline.source_type == "arrow":
        data: pa.Table = pipeline.source
    else:
        data = _rows_of_dlt_source(pipeline.source)
    key = pipeline.primary_key
    if key:
        data = data.cast(
            pa.schema([f.with_nullable(False) if f.name in key else f for f in data.schema])
        )
    table = _table(pipeline.catalog, pipeline.identifier, data, key)
    if pipeline.write_mode == "append":
        table.append(data)
    elif pipeline.write_mode == "replace":
        table.overwrite(data)
    else:
        table.upsert(data, join_cols=list(key))
    table = pipeline.catalog.load_table(pipeline.identifier)
    snapshot = table.current_snapshot()
    written = 0
    if snapshot is not None and snapshot.summary is not None:
        written = int(snapshot.summary.additional_properties.get("added-files-size", "0"))
    return IngestionResult(
        success=True,
        rows_loaded=data.num_rows,
        bytes_written=written,
        duration_seconds=time.monotonic() - started,
    )
