"""Where a table's current metadata file is, asked without loading the table.

Every commit to an Iceberg table writes a new metadata file (its name carries a random
UUID) and moves the catalog's pointer to it, so an unchanged pointer is an unchanged
table. pyiceberg's SQL catalog keeps the pointer in one row of `iceberg_tables`
(`metadata_location`), the row its own `load_table` selects before reading the file:
that row alone is read here. pyiceberg 0.12's REST catalog has no conditional load
(no `If-None-Match`), and other catalogs no cheaper question than a load: for them
`metadata_pointer` says None, and the caller loads the table.
"""

from __future__ import annotations

import sys
import weakref
from typing import Any

from pyiceberg.catalog import Catalog

_statements: weakref.WeakKeyDictionary[Catalog, dict[str, Any]] = weakref.WeakKeyDictionary()
"""The SELECT of each table, per catalog: building one costs more than running it."""


def metadata_pointer(catalog: Catalog, identifier: str) -> str | None:
    """The metadata location of table `identifier` from the SQL catalog's row; None for
    other catalogs, and when the row is missing (the load says why)."""
    # A SqlCatalog instance means its module is imported: other catalogs never pay for
    # importing SQLAlchemy here.
    sql = sys.modules.get("pyiceberg.catalog.sql")
    if sql is None or not isinstance(catalog, sql.SqlCatalog):
        return None
    statements = _statements.setdefault(catalog, {})
    stmt = statements.get(identifier)
    if stmt is None:
        stmt = statements[identifier] = _statement(sql, catalog, identifier)
    with catalog.engine.connect() as conn:
        location = conn.execute(stmt).scalar_one_or_none()
    return None if location is None else str(location)


def _statement(sql: Any, catalog: Any, identifier: str) -> Any:
    """The SELECT of `SqlCatalog.load_table`, of the pointer column only."""
    from sqlalchemy import select

    rows = sql.IcebergTables
    stmt = select(rows.metadata_location).where(
        rows.catalog_name == catalog.name,
        rows.table_namespace == Catalog.namespace_to_string(Catalog.namespace_from(identifier)),
        rows.table_name == Catalog.table_name_from(identifier),
    )
    # Views share the table (iceberg-java, iceberg-rust): pyiceberg's own filter skips them.
    type_filter = getattr(catalog, "_iceberg_type_filter", None)
    only_tables = type_filter() if type_filter is not None else None
    return stmt if only_tables is None else stmt.where(only_tables)


__all__ = ["metadata_pointer"]
