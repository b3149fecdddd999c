"""Opening the Gold table: catalog, table, ref, schema and key."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import pyarrow as pa
from pyiceberg.catalog import Catalog, load_catalog
from pyiceberg.exceptions import NoSuchNamespaceError, NoSuchTableError
from pyiceberg.io.pyarrow import schema_to_pyarrow
from pyiceberg.schema import Schema
from pyiceberg.table import Table
from pyiceberg.table.snapshots import Snapshot
from pyiceberg.types import PrimitiveType

from floe_egress.errors import SourceError


def open_catalog(name: str, properties: Mapping[str, Any]) -> Catalog:
    """Load a pyiceberg catalog from explicit properties (never from ~/.pyiceberg.yaml)."""
    try:
        return load_catalog(name, **{k: v for k, v in properties.items() if v is not None})
    except Exception as exc:  # pyiceberg raises many unrelated types here
        raise SourceError(f"cannot open catalog {name!r}: {type(exc).__name__}: {exc}") from exc


def load_table(catalog: Catalog, identifier: str) -> Table:
    try:
        return catalog.load_table(identifier)
    except (NoSuchTableError, NoSuchNamespaceError) as exc:
        raise SourceError(f"table {identifier} does not exist in catalog {catalog.name!r}") from exc


def table_name(table: Table) -> str:
    return ".".join(table.name())


def snapshot_of_ref(table: Table, ref: str) -> Snapshot | None:
    """The snapshot the branch or tag `ref` points at; None for a table with no data yet."""
    if ref not in table.metadata.refs:
        if ref == "main" and table.metadata.current_snapshot_id is None:
            return None
        known = ", ".join(sorted(table.metadata.refs)) or "none"
        raise SourceError(f"table {table_name(table)} has no branch or tag {ref!r} (refs: {known})")
    return table.snapshot_by_name(ref)


def schema_of(table: Table, snapshot: Snapshot | None) -> Schema:
    if snapshot is not None and snapshot.schema_id is not None:
        schema = table.metadata.schema_by_id(snapshot.schema_id)
        if schema is not None:
            return schema
    return table.schema()


def arrow_schema(schema: Schema) -> pa.Schema:
    return schema_to_pyarrow(schema, include_field_ids=False)


def resolve_key(table: Table, schema: Schema, configured: Sequence[str] | None) -> tuple[str, ...]:
    """The key columns: the configured ones, else the table's identifier fields."""
    name = table_name(table)
    if configured:
        key = tuple(configured)
    else:
        key = tuple(schema.identifier_field_names())
        if not key:
            raise SourceError(
                f"table {name} has no identifier fields; set primary_key for this "
                "destination (e.g. primary_key: [id])"
            )
    columns = [f.name for f in schema.fields]
    for column in key:
        field = schema.find_field(column) if column in columns else None
        if field is None:
            raise SourceError(
                f"primary key column {column!r} is not a top-level column of table {name} "
                f"(columns: {', '.join(columns)})"
            )
        if not isinstance(field.field_type, PrimitiveType):
            raise SourceError(
                f"primary key column {column!r} of table {name} has type "
                f"{field.field_type}; a key column must be a primitive type"
            )
    return key
